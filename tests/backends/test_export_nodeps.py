"""The MLIR backend without torch-mlir/IREE: one-line errors, lazy imports, import isolation."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from standin import make_standin

from nlc.backends.torch_mlir import ExportError, ExportResult

ROOT = Path(__file__).resolve().parents[2]


def _hide(monkeypatch, *names):
    for name in names:  # a None entry makes `import name` raise ImportError
        monkeypatch.setitem(sys.modules, name, None)


def test_missing_torch_mlir_is_one_line_error(monkeypatch):
    from nlc.backends.torch_mlir import export_module

    _hide(monkeypatch, "torch_mlir", "torch_mlir.fx", "torch_mlir.compiler_utils")
    with pytest.raises(ExportError) as e:
        export_module(make_standin(), 1, 4, "linalg")
    assert str(e.value) == "torch-mlir is not installed: pip install 'nlc[mlir]'"


def test_missing_iree_is_one_line_error(monkeypatch):
    from nlc.backends.torch_mlir import compile_vmfb

    _hide(monkeypatch, "iree", "iree.compiler", "iree.runtime")
    with pytest.raises(ExportError, match=r"^iree is not installed .*pip install 'nlc\[mlir\]'$") as e:
        compile_vmfb("module {}", "linalg")
    assert "\n" not in str(e.value)


def test_export_error_is_an_nlc_error():
    errors = pytest.importorskip("nlc.errors")
    assert issubclass(ExportError, errors.NlcError)
    assert str(ExportError("a\n  b")) == "a b"
    assert ExportResult.__dataclass_fields__.keys() >= {"path", "dialect", "bytes", "max_abs_diff", "seconds"}


def test_import_is_lazy():
    # importing the backend loads neither torch-mlir nor IREE
    code = (
        "import sys, nlc.backends.torch_mlir as b; b.ExportError; "
        "print(sorted(m for m in ('torch_mlir', 'iree') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


_IMPORT = re.compile(r"^\s*(?:import|from)\s+(?:torch_mlir|iree)\b", re.M)


def test_only_this_backend_imports_torch_mlir_and_iree():
    offenders = []
    for folder in ("nlc", "backends", "examples"):
        for path in (ROOT / folder).rglob("*.py"):
            if "torch_mlir" in path.relative_to(ROOT).parts[:2]:
                continue  # backends/torch_mlir itself
            if _IMPORT.search(path.read_text(errors="replace")):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == [], f"only backends/torch_mlir may import torch_mlir/iree: {offenders}"


@pytest.mark.parametrize("n", [1, 3, 4, 16, 17])
@pytest.mark.parametrize("upper, left, unit", [(False, True, True), (True, True, False), (False, False, False)])
def test_solve_triangular_decomposition(n, upper, left, unit):
    import torch

    from nlc.backends.torch_mlir.decompositions import solve_triangular

    g = torch.Generator().manual_seed(42)
    A = torch.randn(2, 3, n, n, generator=g) * 0.3 + torch.eye(n) * (1 if unit else 2)
    A = A.triu() if upper else A.tril()
    B = torch.randn(2, 3, n, 5, generator=g) if left else torch.randn(2, 3, 5, n, generator=g)
    want = torch.linalg.solve_triangular(A, B, upper=upper, left=left, unitriangular=unit)
    got = solve_triangular(A, B, upper=upper, left=left, unitriangular=unit)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
