"""``IreeModule``: a compiled nlc model whose forward step runs in IREE.

Same call interface as the PyTorch model (``model(tokens, state=None, targets=None)``
returning ``.logits``, ``.state``, ``.loss``; ``init_state(batch)``), so it drops in
wherever the model is used for inference: this is the ``mlir`` backend. One step is
exported and compiled per ``(batch, seq_len)`` and state shapes, and per phase of the
chunk schedule (position modulo the clock period), on first use.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ._common import ExportError, check_dialect
from .export import clock_period, export_module
from .iree import IreeFunction, compile_vmfb


@dataclass
class IreeOutput:
    logits: torch.Tensor
    state: dict[str, torch.Tensor] = field(default_factory=dict)
    loss: torch.Tensor | None = None


class IreeModule:
    def __init__(self, model, dialect: str = "linalg", func_name: str = "forward"):
        self.model = model
        self.dialect = check_dialect(dialect)
        self.func_name = func_name
        self.period = clock_period(model)
        self._steps: dict[tuple, IreeFunction] = {}

    def init_state(self, batch: int) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            return {k: v.detach() for k, v in self.model.init_state(batch).items()}

    def step(self, batch: int, seq_len: int, state: dict) -> IreeFunction:
        """The compiled step for this shape and chunk-schedule phase (integer state)."""
        ints = {k: v for k, v in state.items() if not v.is_floating_point()}
        phase = tuple(
            (k, tuple((v % self.period if self.period else v).flatten().tolist())) for k, v in sorted(ints.items())
        )
        key = (batch, seq_len, tuple((k, tuple(v.shape)) for k, v in sorted(state.items())), phase)
        if key not in self._steps:
            text = export_module(self.model, batch, seq_len, self.dialect, True, self.func_name, state)
            self._steps[key] = IreeFunction(compile_vmfb(text, self.dialect), self.func_name)
        return self._steps[key]

    def __call__(self, tokens: torch.Tensor, state=None, targets=None) -> IreeOutput:
        if tokens.dim() != 2:
            raise ExportError(f"tokens must be (batch, seq_len), got shape {tuple(tokens.shape)}")
        batch, seq_len = tokens.shape
        state = self.init_state(batch) if state is None else state
        keys = sorted(state)
        out = self.step(batch, seq_len, state)(tokens.long(), *[state[k] for k in keys])
        logits, new = out[0], dict(zip(keys, out[1:]))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        return IreeOutput(logits=logits, state=new, loss=loss)

    forward = __call__


def mlir_backend(model, dialect: str = "linalg", **_) -> IreeModule:
    """Backend entry point: wrap a compiled PyTorch model to run in IREE."""
    return IreeModule(model, dialect)
