"""nuwa_lib: the library behind the NUWA companion notebooks."""
import sys as _sys

__version__ = "0.1.0"

# Notebook 03 reads ``from nuwa_lib.paths import BENCH_DIR``; the module lives in
# ``nuwa_lib.utils.paths`` and is the same object under both names.
from .utils import paths  # noqa: E402

_sys.modules[f"{__name__}.paths"] = paths
