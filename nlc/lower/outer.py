"""The outer optimizer of a compiled model, from the plan's optimizer level."""
from __future__ import annotations

import torch

# the built-in rules an optimizer level may name (`rule AdamW(lr = ...)`); others are `optimizer` definitions
TORCH_OPTIMIZERS = {"AdamW": torch.optim.AdamW, "Adam": torch.optim.Adam, "SGD": torch.optim.SGD}


def make_optimizer(opt, params):
    """`opt`: the plan's OptimizerPlan (None: AdamW at 3e-4). A rule written in .nl runs as NLOptimizer."""
    if opt is None:
        return torch.optim.AdamW(params, lr=3e-4)
    args = dict(opt.args)
    if opt.definition is not None:
        from nlc.lower.optim import NLOptimizer
        return NLOptimizer(params, opt.definition, args)
    args.setdefault("lr", 1e-3)
    return TORCH_OPTIMIZERS[opt.rule](params, **args)
