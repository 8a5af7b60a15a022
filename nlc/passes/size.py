"""Pass `check-size`: estimate the parameter memory of a resolved model before anything is allocated.

`estimate(plan)` counts the fp32 elements nlc.lower allocates when it builds the module
(embedding, head, every op's weights, every level's initial state and learned gates, the
attention projections, CMS chains), each by where it comes from, so an absurd size is a
clear error naming its biggest part and the bytes, never an allocator traceback.

Two limits (docs/language.md, "Limits"):
  - `check_size` (run by `resolve`, so by `nlc check`): the parameters fit in
    `NLC_MAX_BYTES` when set, else in DEFAULT_MAX_BYTES (256 GiB). Deterministic: it does
    not depend on the machine.
  - `check_fits_memory` (called by `nlc.compile` before it allocates): the parameters fit in
    `NLC_MAX_BYTES` when set, else in the memory available on this machine now.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from decimal import Decimal

from nlc.errors import NlcError, Span
from nlc.ir.kinds import GATE_KINDS, Init, MemoryKind, OpKind, Role

BYTES_PER_PARAM = 4  # fp32, how nlc.lower builds every weight
DEFAULT_MAX_BYTES = 256 << 30


class SizeError(NlcError):
    pass


@dataclass
class Part:
    what: str          # e.g. "level 'hope.memory' (2 layers)"
    elements: int
    span: Span | None
    trained: bool = True  # False: a fixed tensor the module holds (a zeros, const or pretrained M_0)


def fmt_bytes(n: int) -> str:
    """1.5 GiB, 4.0 TiB, ... and 5.12E+301 bytes past the units (n may be any Python int)."""
    if n < 1024:
        return f"{n} bytes"
    for i, unit in enumerate(("KiB", "MiB", "GiB", "TiB", "PiB", "EiB"), start=1):
        if n < 1024 ** (i + 1) or unit == "EiB" and n < 1024 ** 7:
            return f"{n / 1024 ** i:.1f} {unit}"
    return f"{Decimal(n):.2E} bytes"


def _level_elements(lv, dim: int) -> int:
    if lv.role == Role.ATTENTION:
        return 4 * dim * dim + 2 * lv.memory.persistent * dim
    if lv.role == Role.CMS:
        return 2 * lv.dk * lv.hidden
    dk, dv, h, kind = lv.dk, lv.dv, lv.hidden, lv.memory.kind
    if kind == MemoryKind.LINEAR:
        per_head = dk * dv
    elif kind == MemoryKind.RESIDUAL_MLP:
        per_head = 2 * dk * h
    elif lv.memory.depth > 1:
        per_head = dk * h + h * dv + (lv.memory.depth - 2) * h * h
    else:
        per_head = dk * dv
    return per_head * lv.heads


def _level_parts(lv, dim: int) -> tuple[int, int]:
    """(trained, fixed) elements of a level: a meta-learned M_0 and learned gates are parameters; a
    zeros, const or pretrained M_0 is a tensor of the same shape the module holds but never trains."""
    state = _level_elements(lv, dim)
    gates = sum(lv.heads for g in lv.gates.values() if GATE_KINDS[g.kind].learned)
    if lv.role in (Role.ATTENTION, Role.CMS) or lv.init == Init.META:
        return state + gates, 0
    return gates, state


def _op_elements(op, widths: dict[str, int]) -> int:
    w = op.width
    if op.op == OpKind.LINEAR:
        return widths.get(op.inputs[0], 0) * w
    if op.op in (OpKind.RMSNORM, OpKind.SCALE):
        return w
    if op.op in (OpKind.LAYERNORM, OpKind.GATE):
        return 2 * w
    if op.op == OpKind.CONV:
        return w * op.attrs.get("window", 4)
    # the cms op owns no weights: its stages are levels, counted with the levels
    return 0


def estimate(plan, model_span: Span | None = None, vocab_span: Span | None = None) -> list[Part]:
    """The parameter elements of `plan` by part, biggest first."""
    dim, vocab = plan.dim, plan.vocab
    parts = [Part("the embedding (vocab x dim)", vocab * dim, vocab_span or model_span),
             Part("the output head (dim x vocab)", dim * vocab, vocab_span or model_span),
             Part("the final norm", dim, model_span)]
    for b in plan.blocks:
        reps = f" ({b.repeat} layers)" if b.repeat > 1 else ""
        widths = {"x": dim}
        for op in b.ops:
            widths[op.name] = op.width
            n = _op_elements(op, widths)
            if n:
                parts.append(Part(f"{op.op} '{b.name}.{op.name}'{reps}", n * b.repeat, op.span))
        for lv in b.levels:
            trained, fixed = _level_parts(lv, dim)
            if trained or not fixed:
                parts.append(Part(f"level '{b.name}.{lv.name}'{reps}", trained * b.repeat, lv.span))
            if fixed:
                parts.append(Part(f"level '{b.name}.{lv.name}' initial state (fixed){reps}", fixed * b.repeat,
                                  lv.span, trained=False))
    return sorted(parts, key=lambda p: -p.elements)


def parameter_count(plan) -> int:
    """The parameters the built module holds (what `nlc check` prints): the trained parts of `estimate`."""
    return sum(p.elements for p in estimate(plan) if p.trained)


def total_bytes(parts: list[Part]) -> int:
    return sum(p.elements for p in parts) * BYTES_PER_PARAM


def env_limit() -> int | None:
    """NLC_MAX_BYTES as a number of bytes (suffixes K, M, G, T: powers of 1024), or None when unset."""
    raw = os.environ.get("NLC_MAX_BYTES", "").strip()
    if not raw:
        return None
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    num, m = raw.upper().removesuffix("B").removesuffix("I"), 1
    if num and num[-1] in mult:
        num, m = num[:-1], mult[num[-1]]
    try:
        v = int(float(num) * m)
        if v <= 0:
            raise ValueError
    except (ValueError, OverflowError):
        raise SizeError(f"NLC_MAX_BYTES={raw!r} is not a positive size", None,
                        "e.g. NLC_MAX_BYTES=512G (bytes; K, M, G, T are powers of 1024)") from None
    return v


def _raise(plan, parts: list[Part], limit: int, where: str, hint: str) -> None:
    total = total_bytes(parts)
    top = parts[0]
    rest = "; ".join(f"{p.what} {fmt_bytes(p.elements * BYTES_PER_PARAM)}" for p in parts[1:3] if p.elements)
    raise SizeError(f"model {plan.name} needs about {fmt_bytes(total)} of parameters (fp32), more than {where} "
                    f"({fmt_bytes(limit)}); the largest part is {top.what}: {fmt_bytes(top.elements * BYTES_PER_PARAM)}"
                    + (f" (then {rest})" if rest else ""), top.span, hint)


_HINT = "reduce dim, vocab, heads, expansion or layers"


def check_size(plan, model_span: Span | None = None, vocab_span: Span | None = None) -> list[Part]:
    """The static limit (NLC_MAX_BYTES, else 256 GiB), checked on every `nlc check`."""
    parts = estimate(plan, model_span, vocab_span)
    env = env_limit()
    limit = env if env is not None else DEFAULT_MAX_BYTES
    if total_bytes(parts) > limit:
        _raise(plan, parts, limit, "NLC_MAX_BYTES" if env is not None else "the limit",
               _HINT + ("" if env is not None else "; a bigger limit: NLC_MAX_BYTES=1T (docs/language.md, Limits)"))
    return parts


def available_memory() -> int | None:
    """Bytes of memory this process can still use: MemAvailable (Linux), else free physical pages."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits_memory(plan) -> None:
    """Before `nlc.compile` allocates: the parameters fit in NLC_MAX_BYTES if set, else in the
    memory available now (a clear error instead of an allocator traceback or the OOM killer)."""
    env = env_limit()
    parts = estimate(plan, plan.span)
    if env is not None:
        if total_bytes(parts) > env:
            _raise(plan, parts, env, "NLC_MAX_BYTES", _HINT)
        return
    avail = available_memory()
    if avail is not None and total_bytes(parts) > avail:
        _raise(plan, parts, avail, "the memory available on this machine", _HINT + "; NLC_MAX_BYTES=SIZE sets "
               "the limit instead of the available memory (docs/language.md, Limits)")
