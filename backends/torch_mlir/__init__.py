"""nlc's MLIR backend: export a compiled program's forward step with torch-mlir, run it in IREE.

The only part of nlc that imports ``torch_mlir`` and ``iree`` (both optional:
``pip install 'nlc[mlir]'``). Importing this package is cheap: torch, torch-mlir and
IREE load on first use of an export function.

    from nlc.backends.torch_mlir import export_spec
    r = export_spec("specs/hope.nl", dialect="linalg", out_path="hope.mlir", seq_len=64, run_iree=True)
"""

from __future__ import annotations

import importlib

from ._common import DIALECTS, ExportError, ExportResult

_LAZY = {
    "export_module": "export",
    "StepFunction": "export",
    "step_function": "export",
    "unsupported_op": "export",
    "export_spec": "spec",
    "load_model": "spec",
    "compare_with_torch": "spec",
    "run_iree": "iree",
    "compile_vmfb": "iree",
    "IreeFunction": "iree",
    "IreeModule": "module",
    "mlir_backend": "module",
}

__all__ = ["DIALECTS", "ExportError", "ExportResult", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
