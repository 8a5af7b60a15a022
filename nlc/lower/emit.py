"""Printable artifacts of the lowering (`nlc compile --emit schedule|py|fx`)."""
from __future__ import annotations

from nlc.errors import NlcError
from nlc.ir.schedule import schedule_text

LOWER_STAGES = ("schedule", "py", "fx")


def emit(m, stage: str) -> str:
    if stage in ("schedule", "plan"):  # `plan` is the name this printout had before the schedule stage
        return schedule_text(m.schedule, m.plan)
    if stage in ("py", "fx"):
        return program_text(m, stage)
    raise NlcError(f"nothing to emit for '{stage}'", hint=f"stages of the lowering: {', '.join(LOWER_STAGES)}")


def program_text(m, what) -> str:
    """The generated program: the FX graph of one segment of the first layer (traced symbolically),
    at the first edge pattern of the schedule."""
    import torch
    _, layer = next(iter(m.layers()))
    B, n = 1, min(m.seg or 16, 16)
    st = m.init_state(B)
    x = torch.zeros(B, n, m.plan.dim)
    edges = m.schedule.segments(0, n)[0][2]
    starts, ends = layer.edge_names(edges)
    ls = layer.local(st)
    keys = list(ls)

    def seg(x, *vals):
        return layer.segment(x, dict(zip(keys, vals)), starts, ends, {})

    gm = torch.fx.experimental.proxy_tensor.make_fx(seg)(x, *ls.values())
    return gm.code if what == "py" else str(gm.graph)
