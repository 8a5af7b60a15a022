"""The record base of both IRs: frozen, keyword-only dataclasses with a pydantic-like surface.

IR nodes were pydantic models; importing pydantic and building the schemas of ~30 node
classes cost ~0.3 s, the whole budget of `nlc check`. The IR is only ever built by the
parser and the passes (never from untrusted dicts), so validation bought nothing there.
The surface kept: keyword construction, immutability, `model_copy(update=...)`,
`model_dump()`, `model_fields`, and equality that ignores spans (`parse(fmt(x)) == x`).

Measured again on 2026-11-30 (issue 11), pydantic 2.14.4 with `defer_build=True`: `Record` as a
frozen `BaseModel` (same surface) against these dataclasses, `python -m nlc check specs/*.nl` in
a fresh process, 5 interleaved pairs at load 3.2 on 2 cores: median 3.41 s vs 1.96 s (+1.45 s;
importing pydantic alone took 0.47 s, and `check` builds every node class's schema on first
use, so deferring does not avoid it). Pydantic stays at the trust boundary instead: run
directories and `spec.json` (nlc/rundir.py), where data comes from disk.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any, ClassVar

from nlc.errors import Span


def _dump(v, nospan: bool):
    if isinstance(v, Record):
        return v.model_dump(context={"nospan": True} if nospan else None)
    if isinstance(v, (list, tuple)):
        return [_dump(x, nospan) for x in v]
    if isinstance(v, dict):
        return {k: _dump(x, nospan) for k, x in v.items()}
    if isinstance(v, Span):
        return str(v)
    return v


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class Record:
    span: Span | None = dataclasses.field(default=None, repr=False)

    # whether model_dump includes the span (as "file:line:col"); the resolved IR leaves it out
    dump_span: ClassVar[bool] = True
    model_fields: ClassVar[dict[str, dataclasses.Field]] = {}

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        # a mutable class default ([] or {}) becomes a per-instance copy, as in pydantic
        for name in cls.__dict__.get("__annotations__", {}):
            v = cls.__dict__.get(name)
            if isinstance(v, (list, dict)):
                setattr(cls, name, dataclasses.field(default_factory=lambda v=v: copy.copy(v)))
        dataclasses.dataclass(frozen=True, kw_only=True, eq=False)(cls)
        cls.model_fields = {f.name: f for f in dataclasses.fields(cls)}

    def model_dump(self, context: dict | None = None, **_) -> dict[str, Any]:
        nospan = bool(context and context.get("nospan"))
        out = {}
        for name in self.model_fields:
            if name == "span" and (nospan or not self.dump_span):
                if self.dump_span:
                    out[name] = None
                continue
            out[name] = _dump(getattr(self, name), nospan)
        return out

    def model_copy(self, update: dict[str, Any] | None = None, deep: bool = False):
        new = dataclasses.replace(self, **(update or {}))
        return copy.deepcopy(new) if deep else new

    def key(self):
        """A structural key without spans (what equality compares)."""
        return self.model_dump(context={"nospan": True})

    def __eq__(self, other):
        return type(self) is type(other) and self.key() == other.key()

    def __hash__(self):
        return hash(repr(self.key()))


Record.model_fields = {f.name: f for f in dataclasses.fields(Record)}
