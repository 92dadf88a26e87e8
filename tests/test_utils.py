"""The shared utilities of nuwa_lib.utils: seeding, provenance, atomic files, checkpoints,
the artifact cache, the worker pool, pictures as tensors (the layering: test_imports.py)."""
import json
import time

import numpy as np
import pytest
import torch

from nuwa_lib.utils import cache, checkpoint
from nuwa_lib.utils.files import atomic_path, atomic_write_bytes, write_json
from nuwa_lib.utils.pool import map_in_processes
from nuwa_lib.utils.provenance import provenance
from nuwa_lib.utils.seeding import seed_everything
from nuwa_lib.utils.tensors import evaluating, to_tensor


def test_same_seed_gives_same_random_numbers():
    seed_everything(3)
    a = torch.rand(4), torch.randn(2)
    seed_everything(3)
    b = torch.rand(4), torch.randn(2)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("bad", [-1, 1.5, "0", None, True])
def test_seed_must_be_a_non_negative_integer(bad):
    with pytest.raises(ValueError, match="seed"):
        seed_everything(bad)


def test_provenance_names_commit_versions_profile_and_seed():
    p = provenance("smoke", 7)
    for key in ("git_sha", "git_dirty", "python", "torch", "triton", "nuwa_lib", "utc_time"):
        assert key in p
    assert p["profile"] == "smoke" and p["seed"] == 7
    assert p["torch"].startswith("2.14.1")


def test_interrupted_write_leaves_old_file_and_no_temp(tmp_path):
    path = tmp_path / "t.json"
    write_json(path, {"ok": 1})
    with pytest.raises(TypeError):
        write_json(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"]


def test_written_results_are_readable_by_others(tmp_path):
    path = write_json(tmp_path / "m.json", {"a": 1})
    assert path.stat().st_mode & 0o044 == 0o044


def test_an_exception_mid_write_leaves_the_old_file_and_nothing_half_written(tmp_path):
    path = tmp_path / "sub" / "f.bin"
    atomic_write_bytes(path, b"old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"half of the n")
            raise RuntimeError("disk full")
    assert path.read_bytes() == b"old"
    assert [p.name for p in path.parent.iterdir()] == ["f.bin"]


def test_checkpoints_write_through_the_same_helper(tmp_path):
    path = checkpoint.save(tmp_path / "c.pt", {"format": "x", "w": torch.ones(2)})
    assert checkpoint.load(path, "x")["w"].tolist() == [1.0, 1.0]
    assert path.stat().st_mode & 0o044 == 0o044 and [p.name for p in tmp_path.iterdir()] == ["c.pt"]
    with pytest.raises(AttributeError, match="pickle"):              # torch.save fails mid-write
        checkpoint.save(path, {"format": "x", "bad": lambda: 0})
    assert checkpoint.load(path, "x")["w"].tolist() == [1.0, 1.0]
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_to_tensor_puts_channels_first_in_minus_one_to_one():
    img = np.zeros((2, 5, 6, 3), np.uint8)
    img[0, 0, 0] = 255
    x = to_tensor(img)
    assert x.shape == (2, 3, 5, 6) and x.dtype == torch.float32
    assert x[0, :, 0, 0].tolist() == [1.0, 1.0, 1.0] and x[1].min() == -1.0
    assert to_tensor(np.zeros((2, 4, 5, 6, 3), np.uint8)).shape == (2, 4, 3, 5, 6)


def test_to_tensor_rejects_floats_and_wrong_layouts():
    with pytest.raises(ValueError, match="uint8"):
        to_tensor(np.zeros((1, 4, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(\.\.\., H, W, 3\)"):
        to_tensor(np.zeros((1, 3, 4, 4), np.uint8))


def test_evaluating_restores_the_mode_even_when_the_block_raises():
    net = torch.nn.Dropout()
    with evaluating(net) as inside:
        assert inside is net and not net.training
    assert net.training
    net.eval()
    with pytest.raises(KeyError):
        with evaluating(net):
            raise KeyError("x")
    assert not net.training


# ----------------------------------------------------------------------------- the artifact cache
def test_the_cache_builds_once_then_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("NUWA_ARTIFACTS_DIR", str(tmp_path))
    path = cache.artifact_path("unit", "things", "thing", cache.key_hash({"b": 1, "a": [1, 2]}))
    assert path == tmp_path / "unit" / "things" / "thing-3813f9409eb0.pt"   # the hash is stable
    built = []

    def build():
        built.append(1)
        atomic_write_bytes(path, b"made")
        return "built"

    assert cache.fetch(path, lambda p: p.read_bytes(), build) == ("built", False)
    assert cache.fetch(path, lambda p: p.read_bytes(), build) == (b"made", True)
    assert built == [1]
    assert cache.fetch(path, lambda p: p.read_bytes(), build, rebuild=True) == ("built", False)
    with pytest.raises(FileNotFoundError, match="run notebook 99"):
        cache.fetch(tmp_path / "absent.pt", lambda p: 0, build, build_if_missing=False,
                    missing="run notebook 99")
    assert built == [1, 1]


def test_key_hash_ignores_key_order_and_sees_every_value():
    assert cache.key_hash({"a": 1, "b": (1, 2)}) == cache.key_hash({"b": [1, 2], "a": 1})
    assert cache.key_hash({"a": 1}) != cache.key_hash({"a": 2})
    assert len(cache.key_hash(None)) == 12


def test_profile_of_needs_a_name():
    assert cache.profile_of({"name": "smoke"}) == "smoke" == cache.profile_of({}, "smoke")
    with pytest.raises(ValueError, match="cfg has no 'name'"):
        cache.profile_of({})


# ----------------------------------------------------------------------------- the worker pool
def _slow_square(x, delay):
    time.sleep(delay)
    return x * x


def test_the_pool_returns_results_in_the_jobs_order_whatever_finishes_first():
    finished = []
    out = map_in_processes(_slow_square, [(3, 1.5), (4, 0.0), (5, 0.0)], 2,
                           done=lambda i, r: finished.append((i, r)))
    assert out == [9, 16, 25]
    assert sorted(finished) == [(0, 9), (1, 16), (2, 25)]      # each job reported once
    assert map_in_processes(_slow_square, [], 2) == []


def test_a_failing_job_raises_in_the_caller():
    with pytest.raises(TypeError):
        map_in_processes(pow, [(2, "x")], 1)
