"""``export_spec``: a ``.nl`` spec or a training run -> an MLIR (or IREE vmfb) file."""

from __future__ import annotations

import importlib
import time
from pathlib import Path

import torch
import torch.nn as nn

from ._common import ExportError, ExportResult, check_dialect
from .export import _eval_mode, clock_period, export_module, step_function
from .iree import IreeFunction, compile_vmfb, max_abs_diffs

TARGETS = ("mlir", "vmfb")


def _nlc_api(name: str, what: str):
    try:
        api = importlib.import_module("nlc.api")
    except ModuleNotFoundError as e:
        if e.name not in ("nlc", "nlc.api"):
            raise  # nlc.api exists but is broken: show the real error
        api = None
    fn = getattr(api, name, None)
    if fn is None:
        raise ExportError(f"{what} needs nlc.api.{name}, which this nlc does not have yet")
    return fn


def load_model(spec_or_run, overrides: dict | None = None) -> nn.Module:
    """The PyTorch model for a ``.nl`` spec (``nlc.compile``) or a run dir (``nlc.load``).

    The one place where the exporter meets the rest of nlc.
    """
    path, overrides = Path(spec_or_run), dict(overrides or {})
    if path.is_dir():
        if not (path / "spec.json").is_file():
            raise ExportError(f"{path} is not a training run: it has no spec.json (written by nlc train)")
        load = _nlc_api("load", "exporting a training run")
        loaded = load(str(path), **overrides)
        model = loaded if isinstance(loaded, nn.Module) else getattr(loaded, "model", None)
        if not isinstance(model, nn.Module):
            raise ExportError(f"nlc.api.load({str(path)!r}) returned no nn.Module")
        return model
    if not path.is_file():
        raise ExportError(f"{path}: no such spec file or run directory")
    compile_ = _nlc_api("compile", "exporting a spec")
    return compile_(str(path), backend="torch", **overrides)


def default_out_path(spec_or_run, to: str = "mlir") -> Path:
    path = Path(spec_or_run)
    name = path.name if path.is_dir() else path.stem
    return Path(f"{name or 'model'}.{to}")


def compare_with_torch(
    model, mlir_text, dialect, batch, seq_len, with_state=True, func_name="forward", vmfb=None
):
    """``{output: max |IREE - PyTorch|}`` for one segment that starts from a non-trivial state.

    The float state is the one left by a first segment, so state-in is exercised too; the
    integer state (position) keeps the value the step was exported at.
    """
    step, keys, first = step_function(model, batch, seq_len, with_state, seed=0)
    second = step_function(model, batch, seq_len, with_state, seed=1)[2]
    with _eval_mode(model), torch.no_grad():
        if with_state:
            warm = step(*first)[1:]
            second = [second[0], *[w if w.is_floating_point() else f for w, f in zip(warm, first[1:])]]
        expected = step(*second)
    expected = list(expected) if isinstance(expected, (tuple, list)) else [expected]
    vmfb = vmfb if vmfb is not None else compile_vmfb(mlir_text, dialect)
    got = IreeFunction(vmfb, func_name)(*second)
    return max_abs_diffs(["logits", *keys], got, expected)


def export_spec(
    spec_or_run,
    *,
    to: str = "mlir",
    dialect: str = "linalg",
    out_path=None,
    seq_len: int = 64,
    batch: int = 1,
    overrides: dict | None = None,
    run_iree: bool = False,
    with_state: bool = True,
    func_name: str = "forward",
    module: nn.Module | None = None,
) -> ExportResult:
    """Export the forward step of a spec or run to ``out_path``; optionally check it in IREE.

    ``to="mlir"`` writes MLIR text in ``dialect``; ``to="vmfb"`` writes the IREE
    flatbuffer compiled from it (llvm-cpu). With ``run_iree`` the exported step runs in
    IREE and ``max_abs_diff`` is its largest distance from PyTorch (logits and state).
    ``module`` skips loading (tests, or a model already in hand). ``overrides`` go to
    ``nlc.compile`` (spec parameters, and ``model=`` to pick one model of a spec file).
    """
    start = time.perf_counter()
    dialect = check_dialect(dialect)
    if to not in TARGETS:
        raise ExportError(f"unknown export target {to!r}: expected one of {', '.join(TARGETS)}")
    if seq_len < 1 or batch < 1:
        raise ExportError(f"seq_len and batch must be >= 1 (got seq_len={seq_len}, batch={batch})")
    model = module if module is not None else load_model(spec_or_run, overrides)
    keys = step_function(model, batch, seq_len, with_state)[1]
    period = clock_period(model)
    text = export_module(model, batch, seq_len, dialect, with_state, func_name)
    out = Path(out_path) if out_path is not None else default_out_path(spec_or_run, to)
    out.parent.mkdir(parents=True, exist_ok=True)
    vmfb = compile_vmfb(text, dialect) if (to == "vmfb" or run_iree) else None
    data = vmfb if to == "vmfb" else text.encode()
    out.write_bytes(data)
    diffs = {}
    if run_iree:
        diffs = compare_with_torch(model, text, dialect, batch, seq_len, with_state, func_name, vmfb)
    return ExportResult(
        path=out,
        dialect=dialect,
        bytes=len(data),
        max_abs_diff=max(diffs.values()) if diffs else None,
        seconds=time.perf_counter() - start,
        func_name=func_name,
        state_keys=keys,
        diffs=diffs,
        period=period,
        warnings=_streaming_warnings(period, seq_len, with_state),
    )


def _streaming_warnings(period, seq_len, with_state) -> list[str]:
    if not with_state or period is None or seq_len % period == 0:
        return []
    return [
        f"seq_len {seq_len} is not a multiple of the clock period {period}: the step is exact for "
        f"a segment that starts at position 0 (mod {period}), so feeding it segment after "
        f"segment drifts off the chunk schedule; use --seq-len {period * max(1, round(seq_len / period))}"
    ]
