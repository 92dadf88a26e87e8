"""Fixtures shared by several test modules."""
import pytest
import torch
from task_helpers import tiny_model, tiny_tokenizers


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one thread is faster than two fighting over a shared machine. Modules
    use it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def toks():
    """task_helpers' tiny tokenizers (a module may define its own ``toks``)."""
    return tiny_tokenizers()


@pytest.fixture(scope="module")
def model():
    """task_helpers' tiny NÜWA model (a module may define its own ``model``)."""
    return tiny_model()
