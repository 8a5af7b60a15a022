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


@pytest.fixture
def script():
    """Loads `scripts/NAME.py` as a module (the scripts are not a package), for tests of their functions."""
    import importlib.util
    from pathlib import Path

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, Path(HERE).parents[1] / "scripts" / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    return load
