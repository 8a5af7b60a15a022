"""Compile exported MLIR with IREE (llvm-cpu) and run it with iree.runtime."""

from __future__ import annotations

import re

import numpy as np
import torch

from ._common import IREE_INPUT_TYPES, ExportError, check_dialect, import_iree


def compile_vmfb(mlir_text: str, dialect: str, cpu: str = "host") -> bytes:
    """An IREE VM flatbuffer for ``mlir_text`` (llvm-cpu, tuned for ``cpu``)."""
    dialect = check_dialect(dialect)
    compiler, _ = import_iree()
    try:
        return compiler.compile_str(
            mlir_text,
            target_backends=["llvm-cpu"],
            input_type=IREE_INPUT_TYPES[dialect],
            extra_args=[f"--iree-llvmcpu-target-cpu={cpu}"],
        )
    except compiler.CompilerToolError as e:
        errors = re.findall(r"error: (.+)", str(e)) or [str(e).strip().splitlines()[0]]
        raise ExportError(f"iree-compile ({dialect} input) failed: {errors[0].strip()}") from None


class IreeFunction:
    """A compiled function: call with torch tensors, get a list of torch tensors back."""

    def __init__(self, vmfb: bytes, func_name: str = "forward", driver: str = "local-task"):
        _, runtime = import_iree()
        self._ctx = runtime.SystemContext(config=runtime.Config(driver))
        vm = runtime.VmModule.copy_buffer(self._ctx.instance, vmfb)
        self._ctx.add_vm_module(vm)
        try:
            self._fn = self._ctx.modules[vm.name][func_name]
        except (KeyError, AttributeError):
            raise ExportError(f"compiled module has no function @{func_name}") from None

    def __call__(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        arrays = [np.ascontiguousarray(t.detach().cpu().numpy()) for t in inputs]
        out = self._fn(*arrays)
        out = out if isinstance(out, (tuple, list)) else [out]
        return [torch.from_numpy(np.asarray(o.to_host()).copy()) for o in out]


def run_iree(mlir_text: str, inputs, dialect: str, func_name: str = "forward") -> list[torch.Tensor]:
    """Compile ``mlir_text`` with IREE and run ``func_name`` on ``inputs`` (torch tensors)."""
    return IreeFunction(compile_vmfb(mlir_text, dialect), func_name)(*inputs)


def max_abs_diffs(names, got, expected) -> dict[str, float]:
    """``{name: max |got - expected|}``; a shape mismatch is an ExportError."""
    if len(got) != len(expected):
        raise ExportError(f"IREE returned {len(got)} outputs, PyTorch {len(expected)}")
    diffs = {}
    for name, a, b in zip(names, got, expected):
        b = b.detach().cpu()
        if tuple(a.shape) != tuple(b.shape):
            raise ExportError(f"IREE output {name} has shape {tuple(a.shape)}, PyTorch {tuple(b.shape)}")
        diffs[name] = float((a.double() - b.double()).abs().max()) if b.numel() else 0.0
    return diffs
