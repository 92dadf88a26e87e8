"""Numbers quoted in the notebooks' "What the numbers show" cells come from the record: each
one is reproduced, at the precision it is printed with, by a value of the committed mini
record of that notebook (nuwa_lib.experiments.prose)."""
import json

import pytest

from nuwa_lib.experiments import paper, prose
from nuwa_lib.utils import profiles
from nuwa_lib.utils.paths import REPO_ROOT

MINI = REPO_ROOT / "results" / "mini"
EXECUTED = sorted((MINI / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _extra():
    return [profiles.load_profile("mini"), profiles.load_profile("paper"),
            {k: getattr(paper, k) for k in dir(paper) if k.isupper()}]


def test_quotes_skip_references_and_read_units():
    found = {w: forms for w, forms, _ in prose.quotes(
        "Eq. 16 and Table 6 aside, Acc is 82 % (0.82), 1.21B parameters, about 1800 s.")}
    assert set(found) == {"82 %", "0.82", "1.21B", "1800"}
    assert (0.82, 2, 1.0) in found["82 %"] and (1.21, 2, 1e9) in found["1.21B"]


def test_a_number_is_verified_only_at_the_precision_it_is_printed_with():
    values = [0.8249, 1_210_345_678, 1795.2, 6.25]
    assert prose.unverified("0.82, 82 %, 1.21B, about 1800, 6.3 % and 6.2 %", values) == []
    assert prose.unverified("0.83 and 0.826 and 1.22B and 1790", values) == \
        ["0.83", "0.826", "1.22B", "1790"]


@pytest.mark.parametrize("path", EXECUTED, ids=lambda p: p.stem)
def test_every_quoted_number_of_the_mini_record_is_in_the_record(path):
    assert prose.check_notebook(path, MINI, _extra()) == []


def test_a_stale_number_in_the_prose_is_caught(tmp_path):
    """The check is live on the real record: one changed digit in notebook 05's prose fails."""
    src = MINI / "notebooks" / "05_t2i.ipynb"
    nb = json.loads(src.read_text())
    cell = next(c for c in nb["cells"] if prose.HEADING in "".join(c["source"]))
    text = "".join(cell["source"])
    quoted = [w for w, _, _ in prose.quotes(text) if "." in w]
    assert quoted, "notebook 05's prose quotes no decimal number"
    cell["source"] = [text.replace(quoted[-1], quoted[-1] + "7", 1)]
    stale = tmp_path / "05_t2i.ipynb"
    stale.write_text(json.dumps(nb))
    assert prose.check_notebook(stale, MINI, _extra()) == [quoted[-1] + "7"]
