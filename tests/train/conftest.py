import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture
def text() -> bytes:
    """A hermetic ~60 KB byte corpus (this package's source)."""
    from run_train import corpus

    return corpus()


@pytest.fixture
def fake():
    from fake_model import FakeModel

    return FakeModel
