"""Export an nlc model's forward step (with its in-context memory updates) to MLIR.

The model is wrapped in a flat-signature step function,

    forward(tokens, *state) -> (logits, *new_state)        # state keys in sorted order

so the exported function carries the fast state across segments; it is traced with
``torch.export`` at a fixed batch and sequence length (the chunk loop unrolls) and
imported with ``torch_mlir.fx.export_and_import`` into the torch, linalg-on-tensors,
stablehlo or tosa dialect.
"""

from __future__ import annotations

import math
import re
import warnings
from contextlib import contextmanager

import torch
import torch.nn as nn

from ._common import DIALECTS, ExportError, check_dialect, import_torch_mlir


def _unpack(out):
    """``(logits, state)`` from a model output object, dict or tuple."""
    if isinstance(out, dict):
        return out["logits"], out.get("state") or {}
    if isinstance(out, (tuple, list)):
        return out[0], (out[1] if len(out) > 1 else {}) or {}
    return out.logits, getattr(out, "state", None) or {}


class StepFunction(nn.Module):
    """``forward(tokens, *state_tensors) -> (logits, *new_state_tensors)``.

    ``state_keys`` (sorted) names the state tensors; with ``with_state=False`` the step
    starts from ``model.init_state`` and returns the logits alone.

    ``pinned`` maps integer state (nlc's position counter ``pos``) to its example value.
    The model's chunk schedule is Python control flow on it, so the trace is specialized
    to that value: the model sees it as a constant, and the exported step advances the
    counter it is given by the same amount the model advanced the constant.
    """

    def __init__(self, model: nn.Module, state_keys: list[str], with_state: bool = True, pinned=None):
        super().__init__()
        self.model = model
        self.state_keys = list(state_keys)
        self.with_state = with_state
        self.pinned = dict(pinned or {})  # key -> (nested list of values, dtype)

    def _pin(self, state: dict, device) -> dict:
        call = dict(state)
        for k, (values, dtype) in self.pinned.items():
            call[k] = torch.tensor(values, dtype=dtype, device=device)
        return call

    def forward(self, tokens: torch.Tensor, *state: torch.Tensor):
        if not self.with_state:
            if not self.pinned:
                return _unpack(self.model(tokens))[0]
            start = self._pin(self.model.init_state(tokens.shape[0]), tokens.device)
            return _unpack(self.model(tokens, start))[0]
        given = dict(zip(self.state_keys, state))
        call = self._pin(given, tokens.device)
        logits, new = _unpack(self.model(tokens, call))
        missing = [k for k in self.state_keys if k not in new]
        if missing:
            raise ExportError(f"model returned no new state for {', '.join(missing)}")
        out = [given[k] + (new[k] - call[k]) if k in self.pinned else new[k] for k in self.state_keys]
        return (logits, *out)


def clock_period(model: nn.Module) -> int | None:
    """Tokens after which the model's chunk schedule repeats (lcm of its ``tokens(C)`` clocks).

    A step exported at position p is exact at every position p + k * period. None: unknown.
    """
    period = getattr(model, "clock_period", None)
    if isinstance(period, int):
        return period
    try:
        chunks = [int(lv.clock.period) for _, lv in model.plan.all_levels() if lv.clock.in_context]
    except (AttributeError, TypeError, ValueError):
        return None
    seg = getattr(model, "seg", None)
    if isinstance(seg, int) and 0 < seg < (1 << 30):
        chunks.append(seg)
    return math.lcm(*chunks) if chunks else 1


def vocab_size(model: nn.Module) -> int:
    for name in ("vocab", "vocab_size", "n_vocab"):
        v = getattr(model, name, None)
        if isinstance(v, int):
            return v
    for m in model.modules():
        if isinstance(m, nn.Embedding):
            return m.num_embeddings
    return 2


def example_inputs(model, batch: int, seq_len: int, seed: int = 0, with_state: bool = True, state=None):
    """``(state_keys, inputs)``: random tokens and the state (default ``model.init_state``)
    sorted by key."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, vocab_size(model), (batch, seq_len), generator=g)
    if state is None:
        if not hasattr(model, "init_state"):
            if with_state:
                raise ExportError("model has no init_state(batch); export it with with_state=False")
            return [], [tokens]
        with torch.no_grad():
            state = model.init_state(batch)
    keys = sorted(state)
    return keys, [tokens, *[state[k].detach().clone() for k in keys]]


@contextmanager
def _eval_mode(model: nn.Module):
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def step_function(model, batch, seq_len, with_state=True, seed=0, state=None):
    """``(step, state_keys, example_inputs)``; state keys are ``[]`` without state."""
    keys, inputs = example_inputs(model, batch, seq_len, seed, with_state, state)
    pinned = {
        k: (t.tolist(), t.dtype)
        for k, t in zip(keys, inputs[1:])
        if not (t.is_floating_point() or t.is_complex())
    }
    if not with_state:
        return StepFunction(model, [], False, pinned), [], inputs[:1]
    return StepFunction(model, keys, True, pinned), keys, inputs


def export_module(
    model: nn.Module,
    batch: int = 1,
    seq_len: int = 64,
    dialect: str = "linalg",
    with_state: bool = True,
    func_name: str = "forward",
    state: dict | None = None,
) -> str:
    """MLIR text of ``model``'s step at ``(batch, seq_len)`` in ``dialect``.

    ``state`` (default ``model.init_state(batch)``) gives the example state; its integer
    entries (the position) are pinned into the trace (see ``StepFunction``).
    Raises ExportError (one line) naming the unsupported op or the data-dependent branch.
    """
    dialect = check_dialect(dialect)
    step, _, inputs = step_function(model, batch, seq_len, with_state, state=state)
    with _eval_mode(model), torch.no_grad(), warnings.catch_warnings():
        # torch's own pytree deprecation, raised while torch.export copies specs
        warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
        program = _torch_export(step, inputs)
        return str(_import(program, dialect, func_name))


def _torch_export(step: nn.Module, inputs):
    try:
        return torch.export.export(step, tuple(inputs), strict=False)
    except ExportError:
        raise
    except Exception as e:  # noqa: BLE001 - every torch.export failure becomes one line
        raise ExportError(_explain_torch_export(e)) from e


def _explain_torch_export(e: Exception) -> str:
    text = str(e)
    first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
    where = re.search(r'File "([^"]+)", line (\d+), in \w+\n\s*(.+)', text)
    at = f" at {where.group(1)}:{where.group(2)} `{where.group(3).strip()}`" if where else ""
    if "data-dependent" in text or "GuardOnDataDependent" in type(e).__name__:
        return (
            f"torch.export hit data-dependent control flow{at}: {first} "
            "(the exported step needs control flow fixed by shapes alone)"
        )
    return f"torch.export failed{at}: {type(e).__name__}: {first}"


def _import(program, dialect: str, func_name: str):
    fx, utils = import_torch_mlir()
    from torch_mlir import ir
    from torch_mlir.dialects import torch as torch_d
    from torch_mlir.extras.fx_decomp_util import get_decomposition_table
    from torch_mlir.extras.fx_importer import FxImporter

    from .decompositions import decomposition_table

    context = ir.Context()
    torch_d.register_dialect(context)
    diagnostics: list = []

    def collect(d):  # MLIR prints diagnostics to fd 2 unless handled here
        diagnostics.append((str(d.location), str(d.message)))
        return True

    context.attach_diagnostic_handler(collect)
    try:
        return fx.export_and_import(
            program,
            output_type=DIALECTS[dialect],
            fx_importer=FxImporter(context=context),
            decomposition_table=decomposition_table(get_decomposition_table()),
            func_name=func_name,
        )
    except utils.TorchMlirCompilerError as e:
        raise ExportError(_explain_mlir(dialect, diagnostics, e)) from None
    except NotImplementedError as e:  # the FX importer meets an op it cannot express
        raise ExportError(f"torch-mlir cannot import the step: {e}") from None


_OP_PATTERNS = (
    r'name = "([\w.]+)"',  # torch.operator wrapping an op torch-mlir does not know
    r"failed to legalize operation '([\w.]+)'",
    r"'([\w.]+)' op ",
)


def unsupported_op(message: str) -> str | None:
    """The op an MLIR diagnostic complains about, e.g. ``torch.aten.special_zeta``."""
    for pattern in _OP_PATTERNS:
        m = re.search(pattern, message)
        if m:
            return m.group(1)
    return None


def _explain_mlir(dialect: str, diagnostics, e: Exception) -> str:
    if not diagnostics:
        first = str(e).strip().splitlines()[0]
        return f"torch-mlir lowering to {dialect} failed: {first}"
    loc, message = diagnostics[0]
    op = unsupported_op(message)
    m = re.match(r'loc\("([^"]+)":(\d+)', loc)
    at = f" (from {m.group(1)}:{m.group(2)})" if m else ""
    short = message.split(": %")[0]
    what = f"op {op} is not supported" if op else "lowering failed"
    return f"torch-mlir to {dialect}: {what}{at}: {short}"
