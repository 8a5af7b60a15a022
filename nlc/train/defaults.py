"""Training defaults, written once (no torch: the checker and the CLI's parser read them).

Precedence for a training run (nlc.train.loop.resolve_args): a value given (flag or argument) > a
resumed run's own > the spec's (`NLModel.train_defaults`: the outer optimizer level's lr and
SPEC_OPTIONS, and `steps`, `batch`, `seq_len` model parameters) > the caller's defaults (CLI: the
CPU sizes below) > DEFAULTS.
"""
from __future__ import annotations

# options an outer optimizer level may set (`level outer : params(all) { clip = 1.0; warmup = 100 }`),
# read by `nlc train` as defaults for its flags: name -> (type, smallest value)
SPEC_OPTIONS = {"clip": (float, 0), "warmup": (int, 0), "steps": (int, 1), "batch": (int, 1), "seq_len": (int, 1)}
# what a spec can give a run: those options and the optimizer level's lr; model parameters of these names
SPEC_KEYS = tuple(SPEC_OPTIONS) + ("lr",)
SPEC_PARAMS = ("steps", "batch", "seq_len")

# nlc.train.loop.train(): used when neither the call nor the spec gives a value
DEFAULTS = dict(steps=1000, batch=8, seq_len=256, lr=None, warmup=100, clip=1.0, weight_decay=None,
                log_every=10, eval_every=200, save_every=500)
# `nlc train SPEC` with no flags: CPU sizes, a few minutes on 2 cores (over DEFAULTS)
CLI = dict(steps=300, batch=8, seq_len=128)
# short synthetic-task training (nlc.train.evaluate.train_task, the sweep's and on-task evaluation's tasks)
TASK = dict(lr=None, steps=300, batch=32, warmup=20, clip=1.0)

# the outer optimizer of a model whose spec has no optimizer level: AdamW at this lr
FALLBACK_LR = 3e-4
# MQAR's keys to draw from (nlc.train.tasks.mqar; the sweep's `keys` option), here for the CLI's parser
MQAR_KEYS = 64
