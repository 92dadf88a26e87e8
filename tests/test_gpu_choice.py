"""What backend="auto" runs on CUDA (nuwa_lib.attention.gpu_choice) and the Triton kernels'
configuration (kernel_config): record parsing, its errors, and how blocks and precision follow
the device, dtype, the measured record and explicit overrides. No GPU needed."""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before torch/triton are imported

import importlib  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from nuwa_lib.attention import gpu_choice  # noqa: E402
from nuwa_lib.attention.gpu_choice import DEFAULT, read_choice  # noqa: E402


# ------------------------------------------------------------------------ read_choice
def test_missing_record_gives_default(tmp_path):
    choice = read_choice(tmp_path / "missing.json")
    assert choice == DEFAULT
    assert choice["backend"] == "triton" and choice["blocks"] is None
    choice["backend"] = "flex"  # a copy: DEFAULT itself is untouched
    assert DEFAULT["backend"] == "triton"


def test_default_path_is_the_repository_record(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_choice, "GPU_RECORD", tmp_path / "attention_gpu.json")
    assert read_choice() == DEFAULT
    (tmp_path / "attention_gpu.json").write_text(json.dumps({"choice": {"backend": "flex"}}))
    assert read_choice()["backend"] == "flex"


def _write(tmp_path, record, name="attention_gpu.json"):
    path = tmp_path / name
    path.write_text(record if isinstance(record, str) else json.dumps(record))
    return path


def test_valid_record(tmp_path):
    path = _write(tmp_path, {"timings": {"triton": 1.0}, "choice": {"backend": "flex",
                                                                    "blocks": [64, 32, 4]}})
    choice = read_choice(path)
    assert choice["backend"] == "flex"
    assert choice["blocks"] == (64, 32, 4) and isinstance(choice["blocks"], tuple)
    assert choice["source"] == "measured: attention_gpu.json"


@pytest.mark.parametrize("choice", [{"backend": "triton"},
                                    {"backend": "triton", "blocks": None}])
def test_record_without_blocks(tmp_path, choice):
    got = read_choice(_write(tmp_path, {"choice": choice}))
    assert got["backend"] == "triton" and got["blocks"] is None
    assert got["source"].startswith("measured")


@pytest.mark.parametrize("record", [
    "not json {",
    "",
    {"choice": {"blocks": [64, 64, 4]}},                  # no backend
    {"choice": "flex"},
    ["choice"],
    {"choice": {"backend": "cuda"}},
    {"choice": {"backend": "auto", "blocks": [64, 64, 4]}},
    {"choice": {"backend": "triton", "blocks": [64, 32]}},
    {"choice": {"backend": "triton", "blocks": [64, 32, 4, 1]}},
    {"choice": {"backend": "triton", "blocks": [64, 0, 4]}},
    {"choice": {"backend": "triton", "blocks": [64.0, 32, 4]}},
    {"choice": {"backend": "triton", "blocks": "64,32,4"}},
    {"choice": {"backend": "triton", "blocks": [64, 32, True]}},
    {"choice": {"backend": "triton", "blocks": [48, 64, 4]}},   # not a power of two
    {"choice": {"backend": "triton", "blocks": [8, 64, 4]}},    # below tl.dot's 16
    {"choice": {"backend": "triton", "blocks": [64, 64, 3]}},   # not a warp count
], ids=lambda r: re.sub(r"\W+", "_", str(r))[:40])
def test_invalid_record_names_the_file(tmp_path, record):
    path = _write(tmp_path, record, "bad_record.json")
    with pytest.raises(ValueError, match=re.escape(str(path))):
        read_choice(path)


@pytest.mark.parametrize("record,why", [
    ({"timings": {}}, "holds no choice"),
    ({"dry_run": True, "choice": {"backend": "flex", "blocks": None}}, "dry run"),
])
def test_records_that_measured_nothing_give_the_default(tmp_path, record, why):
    got = read_choice(_write(tmp_path, record, "attention_gpu.json"))
    assert (got["backend"], got["blocks"]) == ("triton", None) and why in got["source"]


# ---------------------------------------------------------------------- kernel_config
@pytest.fixture(scope="module")
def tn():
    pytest.importorskip("triton", reason="Triton is not installed")
    name = "nuwa_lib.attention.triton_nearby"
    module = importlib.import_module(name)
    if os.environ["TRITON_INTERPRET"] == "1" and not module.interpreted():
        module = importlib.reload(module)  # built earlier without the interpreter
    return module


@pytest.fixture
def measured(tn, monkeypatch):
    """Make the measured record say ``blocks`` (None: no record)."""
    def set_blocks(blocks):
        choice = {"backend": "triton", "blocks": blocks, "source": "x"}
        monkeypatch.setattr(tn, "measured_choice", lambda: choice)
    set_blocks(None)
    return set_blocks


def test_precision(tn, measured):
    cfg = tn.kernel_config
    assert cfg("cuda", torch.float32, 64, allow_tf32=True)["precision"] == "tf32"
    assert cfg("cuda", torch.float32, 64, allow_tf32=False)["precision"] == "ieee"
    for allow in (None, True, False):
        assert cfg("cpu", torch.float32, 64, allow_tf32=allow)["precision"] == "ieee"
    for device in ("cuda", "cpu"):
        for dtype in (torch.bfloat16, torch.float16):
            for allow in (None, True, False):
                assert cfg(device, dtype, 64, allow_tf32=allow)["precision"] == "tf32"


@pytest.mark.parametrize("flag", [True, False])
def test_precision_follows_torch_flag(tn, measured, flag):
    before = torch.backends.cuda.matmul.allow_tf32  # a property: monkeypatch can't set it
    torch.backends.cuda.matmul.allow_tf32 = flag
    try:
        got = tn.kernel_config("cuda", torch.float32, 32)["precision"]
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before
    assert got == ("tf32" if flag else "ieee")


def test_upcast_only_interpreted_bf16(tn, measured):
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        up = tn.kernel_config("cpu", dtype, 32)["upcast"]
        assert up == (tn.interpreted() and dtype == torch.bfloat16)


@pytest.mark.parametrize("D,block_d", [(1, 16), (8, 16), (16, 16), (17, 32), (40, 64),
                                       (64, 64), (65, 128), (128, 128)])
def test_block_d(tn, measured, D, block_d):
    for device in ("cpu", "cuda"):
        assert tn.kernel_config(device, torch.float32, D)["block_d"] == block_d


def test_default_blocks(tn, measured):
    cpu = tn.kernel_config("cpu", torch.float32, 32)
    assert (cpu["block_m"], cpu["block_n"], cpu["num_warps"]) == (16, 16, 4)
    assert cpu["tiling"] == "auto"
    cuda = tn.kernel_config("cuda", torch.bfloat16, 32)
    assert (cuda["block_m"], cuda["block_n"], cuda["num_warps"]) == tn.DEFAULT_CUDA_BLOCKS
    assert tn.DEFAULT_CUDA_BLOCKS == (64, 64, 4)


def test_cuda_blocks_follow_measured_choice(tn, measured):
    measured((32, 128, 8))
    cuda = tn.kernel_config("cuda", torch.bfloat16, 64)
    assert (cuda["block_m"], cuda["block_n"], cuda["num_warps"]) == (32, 128, 8)
    cpu = tn.kernel_config("cpu", torch.bfloat16, 64)  # the record is for CUDA only
    assert (cpu["block_m"], cpu["block_n"], cpu["num_warps"]) == (16, 16, 4)
    part = tn.kernel_config("cuda", torch.bfloat16, 64, block_n=32)
    assert (part["block_m"], part["block_n"], part["num_warps"]) == (32, 32, 8)


def test_measured_blocks_are_for_head_dims_up_to_64_and_stages_fit_shared_memory(tn, measured):
    measured((128, 128, 8))
    wide = tn.kernel_config("cuda", torch.float32, 128)
    assert (wide["block_m"], wide["block_n"], wide["num_warps"]) == tn.DEFAULT_CUDA_BLOCKS
    assert wide["num_stages"] == 2   # 3 stages of fp32 64x128 K and V blocks exceed 160 KiB
    assert tn.kernel_config("cuda", torch.bfloat16, 64)["num_stages"] == 3


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_explicit_overrides(tn, measured, device):
    measured((32, 128, 8))
    c = tn.kernel_config(device, torch.float32, 40, block_m=128, block_n=16, num_warps=2,
                         tiling="rows", allow_tf32=False)
    assert (c["block_m"], c["block_n"], c["num_warps"]) == (128, 16, 2)
    assert c["tiling"] == "rows" and c["block_d"] == 64 and c["precision"] == "ieee"
    box = tn.kernel_config(device, torch.float32, 40, tiling=(2, 4, 8))
    assert box["tiling"] == (2, 4, 8)
