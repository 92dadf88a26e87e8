"""Numbers in a notebook's prose, checked against its record.

A "What the numbers show" cell is written by a person from the record; the next run can
make it stale. :func:`unverified` lists every number such a cell quotes that no value of the
record reproduces at the precision the prose prints it with. The record of a notebook is its
tables (``tables/*.csv`` whose provenance names the notebook), the metrics JSON files, the
text its cells printed, the profile and the paper's numbers.

A quoted number x with d decimals is reproduced by a value v when v rounds to x at d decimals;
also when a percentage ("82 %") is a share (0.82), when a number written with a scale word or
suffix ("1.21B", "870M", "4k") is v in those units, and, for a whole number with trailing
zeros ("about 1800"), when v rounds to it at that many tens. Numbers that are references
(after "Eq.", "Table", "Sec.", "Fig." or "notebook") are not quotes.
"""
from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path
from typing import Iterable, Mapping

HEADING = "What the numbers show"
_QUOTE = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?(?:\s?(%|[kKMB])\b|\s?(%))?")
_REFERENCE = re.compile(r"(Eqs?\.|Tables?|Secs?\.|Sections?|Figs?\.|notebooks?|Appendix)\s*$")
_VALUE = re.compile(r"[-+]?(?:\d[\d,]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_SCALE = {"k": 1e3, "K": 1e3, "M": 1e6, "B": 1e9}


def values_in(text: str) -> list[float]:
    """Every number written in ``text`` (thousands separators allowed)."""
    return [float(m.group(0).replace(",", "")) for m in _VALUE.finditer(text)]


def _numbers(obj) -> Iterable[float]:
    if isinstance(obj, Mapping):
        obj = list(obj.values())
    if isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _numbers(v)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield float(obj)
    elif isinstance(obj, str):
        yield from values_in(obj)


def record_values(root, notebook: str, executed: Mapping, extra=()) -> list[float]:
    """The values a notebook's prose may quote (see the module docstring)."""
    root = Path(root)
    vals = list(_numbers(list(extra)))
    for prov in sorted((root / "tables").glob("*.provenance.json")):
        try:
            if json.loads(prov.read_text()).get("notebook") != notebook:
                continue
        except (OSError, ValueError):
            continue
        with open(prov.with_name(prov.name.replace(".provenance.json", ".csv"))) as fh:
            vals += [v for row in csv.reader(fh) for cell in row for v in values_in(cell)]
    for path in sorted((root / "metrics").glob("*.json")):
        vals += values_in(path.read_text())
    for cell in executed.get("cells", []):
        for o in cell.get("outputs", []):
            vals += values_in("".join(o.get("text", "")))
            vals += values_in("".join((o.get("data") or {}).get("text/plain", "")))
    return vals


def _reproduces(v: float, x: float, decimals: int, zeros: int) -> bool:
    if not math.isfinite(v):
        return False
    v, half = abs(v), 0.5 * 10.0 ** -decimals * (1 + 1e-9)   # either rounding of a half
    return abs(v - x) <= half or (zeros > 0 and abs(v - x) <= 0.5 * 10.0 ** zeros * (1 + 1e-9))


def quotes(text: str) -> list[tuple[str, list[tuple[float, int, float]], int]]:
    """The numbers ``text`` quotes: (as written, the forms it may stand for as (number,
    decimals, scale of the value), trailing zeros of a whole number)."""
    out = []
    for m in _QUOTE.finditer(text):
        if _REFERENCE.search(text[max(0, m.start() - 14):m.start()]):
            continue
        whole, frac = m.group(1).replace(",", ""), m.group(2)
        unit = m.group(3) or m.group(4)
        x = float(whole + ("." + frac if frac else ""))
        decimals = len(frac) if frac else 0
        zeros = 0 if frac else len(whole) - len(whole.rstrip("0"))
        forms = [(x, decimals, 1.0)]
        if unit == "%":
            forms.append((x / 100, decimals + 2, 1.0))
        elif unit in _SCALE:
            forms.append((x, decimals, _SCALE[unit]))
        out.append((m.group(0).strip(), forms, zeros))
    return out


def unverified(text: str, values: Iterable[float]) -> list[str]:
    """The numbers quoted in ``text`` that no value reproduces."""
    values = [v for v in values if math.isfinite(v)]
    return [written for written, forms, zeros in quotes(text)
            if not any(_reproduces(v / scale, x, decimals, zeros)
                       for x, decimals, scale in forms for v in values)]


def prose_cells(executed: Mapping) -> list[str]:
    """The markdown cells of a notebook under its "What the numbers show" heading."""
    return ["".join(c["source"]) for c in executed.get("cells", [])
            if c["cell_type"] == "markdown" and HEADING in "".join(c["source"])]


def check_notebook(path, root, extra=()) -> list[str]:
    """The unverified numbers of an executed notebook's prose against its record."""
    executed = json.loads(Path(path).read_text())
    values = record_values(root, Path(path).stem, executed, extra)
    return [n for text in prose_cells(executed) for n in unverified(text, values)]


def sync_markdown(source, executed) -> int:
    """Copy the markdown cells of a notebook ``source`` into its ``executed`` copy, matched by
    cell id (prose written after a run, without rerunning it; code cells and outputs are left
    alone). Returns how many cells changed; the copy is rewritten atomically."""
    from ..utils.files import atomic_write_bytes

    src = {c.get("id"): c["source"] for c in json.loads(Path(source).read_text())["cells"]
           if c["cell_type"] == "markdown"}
    nb = json.loads(Path(executed).read_text())
    changed = 0
    for c in nb["cells"]:
        if c["cell_type"] == "markdown" and c.get("id") in src and c["source"] != src[c["id"]]:
            c["source"], changed = src[c["id"]], changed + 1
    if changed:
        atomic_write_bytes(Path(executed), (json.dumps(nb, indent=1, ensure_ascii=False)
                                            + "\n").encode())
    return changed


if __name__ == "__main__":     # python -m nuwa_lib.experiments.prose results/mini/notebooks
    import sys

    from ..utils.paths import NOTEBOOKS_DIR

    for folder in sys.argv[1:]:
        for path in sorted(Path(folder).glob("[0-9][0-9]_*.ipynb")):
            n = sync_markdown(NOTEBOOKS_DIR / path.name, path)
            if n:
                print(f"{path}: {n} markdown cell(s) from {NOTEBOOKS_DIR / path.name}")
