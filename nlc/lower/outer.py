"""The outer optimizer of a compiled model, from the plan's optimizer level."""
from __future__ import annotations

import torch

# the built-in rules an optimizer level may name (`rule AdamW(lr = ...)`); others are `optimizer` definitions
TORCH_OPTIMIZERS = {"AdamW": torch.optim.AdamW, "Adam": torch.optim.Adam, "SGD": torch.optim.SGD}


def make_optimizer(opt, params):
    """`opt`: the plan's OptimizerPlan (None: AdamW at FALLBACK_LR). A rule written in .nl runs as NLOptimizer."""
    if opt is None:
        from nlc.train.defaults import FALLBACK_LR
        return torch.optim.AdamW(params, lr=FALLBACK_LR)
    if opt.spec is not None:  # the checked plan of an `optimizer` written in .nl
        from nlc.lower.optim import NLOptimizer
        return NLOptimizer(params, opt.spec)
    args = dict(opt.args)
    args.setdefault("lr", 1e-3)
    return TORCH_OPTIMIZERS[opt.rule](params, **args)
