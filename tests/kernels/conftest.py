"""Kernel tests: the Triton interpreter on CPU when there is no CUDA, seed 42, NaN-poisoned torch.empty."""
import os

import torch

if not torch.cuda.is_available():
    # must be set before the first @triton.jit kernel is defined (nlc.kernels defines them lazily)
    os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(42)


@pytest.fixture
def nan_poison(monkeypatch):
    """Make torch.empty / torch.empty_like return NaN-filled float tensors, so unwritten outputs show up."""
    empty, empty_like = torch.empty, torch.empty_like

    def _fill(t):
        if t.is_floating_point():
            t.fill_(float("nan"))
        return t

    monkeypatch.setattr(torch, "empty", lambda *a, **kw: _fill(empty(*a, **kw)))
    monkeypatch.setattr(torch, "empty_like", lambda *a, **kw: _fill(empty_like(*a, **kw)))
    yield


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip)
