"""Torch-free pieces of the MLIR backend: the error, the result record, lazy imports.

This is the only place in nlc that imports ``torch_mlir`` and ``iree``; both are
optional (``pip install 'nlc[mlir]'``) and imported on first use, so that importing
the backend (and ``nlc check``) stays fast and works without them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

try:  # one error hierarchy: the CLI renders NlcError subclasses and exits 2
    from nlc.errors import NlcError as _Base
except ImportError:  # pragma: no cover - nlc.errors not there yet
    _Base = Exception

# user-facing dialect name -> torch-mlir OutputType name
DIALECTS = {
    "torch": "torch",
    "linalg": "linalg-on-tensors",
    "stablehlo": "stablehlo",
    "tosa": "tosa",
}
# user-facing dialect name -> iree.compiler input_type; torch-mlir's linalg output may
# hold tm_tensor ops (scatter, sort, attention), which "tm_tensor" lowers
IREE_INPUT_TYPES = {
    "torch": "torch",
    "linalg": "tm_tensor",
    "stablehlo": "stablehlo",
    "tosa": "tosa",
}
_INSTALL = "pip install 'nlc[mlir]'"


class ExportError(_Base):
    """Export or IREE run failed; the message is one line that says what to do."""

    def __init__(self, message: str, hint: str | None = None):
        message = " ".join(str(message).split())  # always a single line
        if _Base is Exception:
            super().__init__(message)
            self.message, self.hint = message, hint
        else:
            super().__init__(message, hint=hint)


@dataclass
class ExportResult:
    """What ``export_spec`` wrote and, with ``run_iree``, how far IREE is from PyTorch."""

    path: Path
    dialect: str
    bytes: int
    max_abs_diff: float | None
    seconds: float
    func_name: str = "forward"
    state_keys: list[str] = field(default_factory=list)
    # per output ("logits", then each state key): max |iree - torch|
    diffs: dict[str, float] = field(default_factory=dict)
    # tokens after which the chunk schedule repeats (None: unknown, 1: no schedule)
    period: int | None = None
    # things the caller should tell the user (e.g. seq_len not a multiple of period)
    warnings: list[str] = field(default_factory=list)

    def format(self) -> str:
        """What the CLI prints: the file, its size and time, the IREE check, warnings."""
        size = f"{self.bytes / 1e6:.1f} MB" if self.bytes >= 1e5 else f"{self.bytes} bytes"
        lines = [
            f"wrote {self.path} ({self.dialect}, {size}, {self.seconds:.1f} s): "
            f"func @{self.func_name}(tokens, {len(self.state_keys)} state tensors)"
        ]
        if self.max_abs_diff is not None:
            worst = max(self.diffs, key=self.diffs.get) if self.diffs else "-"
            lines.append(f"IREE (llvm-cpu) vs PyTorch: max |diff| = {self.max_abs_diff:.3g} (at {worst})")
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def check_dialect(dialect: str) -> str:
    d = {"linalg-on-tensors": "linalg"}.get(dialect, dialect)
    if d not in DIALECTS:
        raise ExportError(f"unknown dialect {dialect!r}: expected one of {', '.join(DIALECTS)}")
    return d


def import_torch_mlir():
    """``torch_mlir.fx`` and ``torch_mlir.compiler_utils``, or a one-line ExportError."""
    try:
        import torch_mlir.compiler_utils as utils
        import torch_mlir.fx as fx
    except ImportError:
        raise ExportError(f"torch-mlir is not installed: {_INSTALL}") from None
    return fx, utils


def import_iree():
    """``(iree.compiler, iree.runtime)``, or a one-line ExportError."""
    try:
        import iree.compiler as compiler
        import iree.runtime as runtime
    except ImportError:
        raise ExportError(
            f"iree is not installed (iree-base-compiler, iree-base-runtime): {_INSTALL}"
        ) from None
    return compiler, runtime
