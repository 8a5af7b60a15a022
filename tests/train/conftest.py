import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: these models are tiny, and spinning threads on a busy 2-core box cost seconds."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def text() -> bytes:
    """A hermetic ~60 KB byte corpus (this package's source)."""
    from run_train import corpus

    return corpus()


@pytest.fixture
def fake():
    from fake_model import FakeModel

    return FakeModel
