"""The front half of the compiler as one flat, named list of stages.

    load         parse the spec and its imports                   -> Unit
    bind-params  pick the model, apply overrides, fold constants  -> dict
    resolve      names, stream ops, levels, dimensions, clocks    -> ModelPlan
    graph        the level graph (`c.layout`; `c.graph` is it as a networkx MultiDiGraph)
    check-graph  unread levels, optimizer clocks                  -> (same graph)
    schedule     segment grid, order, each level's implementation,
                 fast-state layout, nested resets (for a Target)  -> Schedule

Invariants after each stage are in passes/README.md. Every stage's artifact is printable
(`nlc compile --emit STAGE`), and `NLC_DUMP=dir` writes all of them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nlc.graph.level_graph import build_layout, check_graph
from nlc.passes.consts import bind_params, select_model
from nlc.passes.load import load
from nlc.passes.model import resolve_model


@dataclass
class Compilation:
    source: str                      # a path, or spec text when `text` is set
    overrides: dict[str, Any] = field(default_factory=dict)
    model_name: str | None = None
    text: str | None = None
    unit: Any = None
    model: Any = None
    params: dict | None = None
    plan: Any = None
    layout: Any = None               # the level graph as plain data (no networkx import)
    target: Any = None               # nlc.ir.schedule.Target (default: the torch backend)
    freeze: Any = None               # levels frozen in context (names, "a,b" or "inner")
    schedule: Any = None
    _graph: Any = field(default=None, repr=False)

    @property
    def graph(self):
        """The level graph as a networkx MultiDiGraph, built on first use."""
        if self._graph is None and self.layout is not None:
            self._graph = self.layout.to_networkx()
        return self._graph


def _load(c: Compilation):
    if c.unit is not None:  # loaded already (run(..., unit=...))
        return
    c.unit = load(c.source, text=c.text, file=None if c.text is None else "<spec>")


def _bind(c: Compilation):
    c.model = select_model(c.unit, c.model_name)
    c.params = bind_params(c.model, c.overrides)


def _resolve(c: Compilation):
    from nlc.passes.verify import verify_plan
    c.plan = resolve_model(c.unit, c.model, c.params)
    verify_plan(c.plan)  # the context flows are typed references from here on


def _graph(c: Compilation):
    c.layout = build_layout(c.plan)


def _check_graph(c: Compilation):
    check_graph(c.plan, c.layout)


def _schedule(c: Compilation):
    from dataclasses import replace

    from nlc.ir.schedule import Target
    from nlc.passes.schedule import build_schedule, frozen_levels
    from nlc.passes.verify import verify_schedule
    target = replace(c.target or Target(), frozen=frozen_levels(c.plan, c.freeze))
    c.schedule = build_schedule(c.plan, target)
    verify_schedule(c.plan, c.schedule)  # the invariants of passes/README.md, after the stage


PIPELINE = [
    ("load", _load),
    ("bind-params", _bind),
    ("resolve", _resolve),
    ("graph", _graph),
    ("check-graph", _check_graph),
    ("schedule", _schedule),
]
STAGES = [name for name, _ in PIPELINE]


def run(source, overrides=None, model: str | None = None, *, text: str | None = None, until: str | None = None,
        dump: str | None = None, unit=None, target=None, freeze=None) -> Compilation:
    """Run the pipeline up to and including stage `until`; raise NlcError on user mistakes.

    `unit` is the result of an earlier `load` of the same source, to check several models of one file.
    `target` (nlc.ir.schedule.Target) and `freeze` are what the `schedule` stage decides for.
    """
    if text is None:  # a path, or a built-in spec by name (`hope`, `titans:TitansMAG`)
        from nlc.builtin import resolve_spec
        source, model = resolve_spec(str(source), model)
    c = Compilation(source=str(source), overrides=dict(overrides or {}), model_name=model, text=text, unit=unit,
                    target=target, freeze=freeze)
    dump = dump or os.environ.get("NLC_DUMP")
    for i, (name, stage) in enumerate(PIPELINE):
        stage(c)
        if dump:
            from nlc.passes.emit import emit
            Path(dump).mkdir(parents=True, exist_ok=True)
            (Path(dump) / f"{i:02d}_{name}.txt").write_text(emit(c, name))
        if name == until:
            break
    return c
