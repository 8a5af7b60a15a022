"""In-context update rules: one folder per rule, one registry.

A rule folder `nlc/rules/<name>/` holds
    README.md     the rule's equations and where they come from;
    __init__.py   its registration (`register(Rule(...))`): gates with defaults, options, the fused
                  kernels that implement it, whether it carries a momentum buffer. Plain data: the
                  checker (`nlc check`, no torch) reads it;
    update.py     (torch) `token(...)`: the literal per-token step, the one reference that the reference
                  interpreter and the kernel tests use; `chunk(...)`: its chunk-parallel closed form.
The checker (nlc/passes/levels.py), the schedule's kernel choice (nlc/passes/schedule.py) and the
lowering (nlc/lower/memory.py) all read the same `RULES` entry. Adding a rule is a new folder plus
its import below (see `anchored`).
"""
from __future__ import annotations

import enum
import importlib
from dataclasses import dataclass, field

from nlc.ir.kinds import GateKind


class Momentum(enum.StrEnum):
    """Whether a rule carries a momentum (surprise) buffer S in the fast state."""
    NEVER = "never"
    ALWAYS = "always"
    GATE = "gate"    # when its `momentum` gate is not the constant 0


# the option of a `curvature` rule that turns its curvature-following step on (gd, momentum); dgd's option of the
# same name is its Sherman-Morrison step, the linear-memory case of the same idea
CURVATURE_OPTION = "normalize"


@dataclass(frozen=True)
class Rule:
    name: str
    gates: dict                       # gate -> default value (lr, decay, momentum, ...)
    doc: str                          # one line: the rule's update
    options: dict = field(default_factory=dict)   # option -> allowed values, the first is the default
    kernels: tuple = ()               # fused ops of nlc.kernels that implement it: linear_memory, mlp_memory
    momentum: Momentum = Momentum.NEVER
    uses_init: bool = False           # the update reads the memory's initial state M_0
    key_projection: bool = False      # the update multiplies W by (a I - theta k k^T) (DGD): the linear kernel's
                                      # k k^T term, the Sherman-Morrison step, its FLOPs (nlc.roofline)
    module: str = ""                  # the module with token() and chunk(); default nlc.rules.<name>.update
    curvature: bool = False           # its option `normalize = true` makes theta follow the Gauss-Newton curvature
                                      # of each token's loss (nlc/rules/momentum/README.md); no fused kernel does

    def has_momentum(self, lv) -> bool:
        if self.momentum != Momentum.GATE:
            return self.momentum == Momentum.ALWAYS
        g = lv.gates.get("momentum")
        return not (g is None or (g.kind == GateKind.CONST and g.value == 0.0))

    def curvature_on(self, rule_args: dict) -> bool:
        """Whether these rule arguments turn the curvature-following step on (CURVATURE_OPTION = true)."""
        return self.curvature and bool(rule_args.get(CURVATURE_OPTION, False))

    def curvature_step(self, lv) -> bool:
        """Whether the level's lr gate follows the curvature: theta'_t = theta_t / (1 + C theta_t c_t)."""
        return self.curvature_on(lv.rule_args)

    def update(self):
        """The rule's torch functions (imported on first use: the checker needs no torch)."""
        return importlib.import_module(self.module or f"nlc.rules.{self.name}.update")


RULES: dict[str, Rule] = {}


def register(rule: Rule) -> Rule:
    RULES[rule.name] = rule
    return rule


# each folder registers its rule; this order is the order `nlc` lists them in
from nlc.rules import gd  # noqa: E402,F401,I001
from nlc.rules import momentum  # noqa: E402,F401
from nlc.rules import dgd  # noqa: E402,F401
from nlc.rules import anchored  # noqa: E402,F401
from nlc.rules import delta  # noqa: E402,F401
