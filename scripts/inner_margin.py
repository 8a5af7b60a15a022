"""How far a trained model's in-context memories are from their stability edge.

Reads a run directory written by `nlc train` (or an `nlc sweep` cell's folder), recompiles its spec with one spec
parameter (default `lr_max`, the inner step size of the Titans and Hope specs) set to each of --values,
loads the checkpoint's trained weights unchanged, and scores the training batches of --steps (the batches
the run saw at those steps: same seed, batch and length) or validation windows. Per value it prints the
mean loss and each level's surprise (its inner objective at the chunk-start states), after a first row with
every in-context level frozen at its trained initial state (`--freeze inner`; `lr_max = 0` is not that: the
forget gate still shrinks the memory). A level whose
surprise goes non-finite or jumps by orders of magnitude at k times the trained value is within k of
the step size where its inner gradient descent overshoots (theta * curvature > 2).

    python scripts/inner_margin.py RUN --ckpt ckpt-0001200 --values 0,0.25,0.5,1,2 --steps 1171-1178
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

from nlc.api import compile as nlc_compile
from nlc.builtin import resolve_spec
from nlc.errors import NlcError
from nlc.rundir import open_run
from nlc.sweep import CELL
from nlc.train.checkpoint import load_checkpoint
from nlc.train.data import default_corpus, eval_windows, get_batch, load_data


def parse_steps(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def score(m, batches) -> tuple[float, dict]:
    loss, stats = 0.0, {}
    for x, y in batches:
        with torch.no_grad():
            out = m(x, targets=y)
        loss += float(out.loss) / len(batches)
        for k, v in (out.stats or {}).items():
            if k.endswith("/surprise"):
                stats[k] = stats.get(k, 0.0) + float(v) / len(batches)
    return loss, stats


def batches_of(ck, steps: str | None, data: str | None):
    """The training batches of `steps` ("A-B": the run's own batches at those steps), else 8 batches of
    validation windows of the run's length; with a description."""
    args = ck.record.get("train_args", {})
    batch, T, seed = int(args.get("batch", 8)), int(args.get("seq_len", 128)), int(ck.record.get("seed", 0))
    corpus = load_data(data) if data else default_corpus(verbose=False)
    if steps:
        return ([get_batch(corpus.train, batch, T, seed, s) for s in parse_steps(steps)],
                f"training batches of steps {steps} (batch {batch}, length {T}, seed {seed})")
    x, y = eval_windows(corpus.val, T, 8 * batch)
    return list(zip(x.split(batch), y.split(batch))), f"{len(x)} validation windows of {T} bytes"


def source(run_dir) -> tuple[str, str | None, dict, Path]:
    """(spec, model, --set values, checkpoint folder) of an `nlc train` run directory, or of an `nlc sweep`
    cell folder (its cell.json; the run is its run/, which holds checkpoints but no spec record)."""
    cell = Path(run_dir) / CELL
    if cell.is_file():
        c = json.loads(cell.read_text())
        spec, model = resolve_spec(c["spec"], c.get("model"))
        return spec, model, dict(c.get("spec_set") or {}), Path(run_dir) / "run"
    r = open_run(run_dir)
    return str(r.main), r.record.model, dict(r.record.overrides), r.path


def margin(run_dir, ckpt: str | None, param: str, values, steps: str | None = None, data: str | None = None):
    """Yields the header, then (value, mean loss, {level/surprise: mean}) per value: the checkpoint's
    weights, compiled with `param` = value."""
    spec, model, overrides, run = source(run_dir)
    ck = load_checkpoint(run / ckpt if ckpt else run, None, strict_spec=False)
    batches, where = batches_of(ck, steps, data)
    yield f"# {run_dir} {ck.path.name} (step {ck.step}), {model or spec}, {where}"
    for v in values:  # None: as trained, every in-context level frozen at its initial state (--freeze inner)
        m = nlc_compile(spec, model=model, freeze=["inner"] if v is None else None,
                        **{**overrides, **({} if v is None else {param: v})})
        load_checkpoint(ck.path, m, strict_spec=False)
        m.eval()
        yield (v, *score(m, batches))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="run directory (nlc train --out), or an nlc sweep cell's folder")
    p.add_argument("--ckpt", help="checkpoint folder name inside RUN (default: the latest)")
    p.add_argument("--param", default="lr_max", help="the spec parameter to scale (default lr_max)")
    p.add_argument("--values", default="0,0.25,0.5,1,2", help="comma-separated values of --param")
    p.add_argument("--steps", help="score the training batches of these steps, e.g. 1171-1178 (default: 8 "
                                   "batches of validation windows of the run's length)")
    p.add_argument("--data", help="the run's training data, as given to nlc train --data (default: the stdlib corpus)")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    try:
        values = [None] + [float(s) for s in a.values.split(",")]
    except ValueError:
        p.error(f"--values {a.values}: comma-separated numbers")
    try:
        show(margin(a.run, a.ckpt, a.param, values, a.steps, a.data), a.param)
    except NlcError as e:  # a missing run or checkpoint, an unknown parameter: the message, not a traceback
        print(f"error: {e}" + (f"\n  hint: {e.hint}" if getattr(e, "hint", None) else ""), file=sys.stderr)
        return 2
    return 0


def show(rows, param: str):
    print(next(rows))
    for v, loss, stats in rows:
        if v is None:
            print(f"frozen (--freeze inner): loss {loss:.4f}")
            continue
        cols = "  ".join(f"{k.removesuffix('/surprise')} {s:.4g}" if math.isfinite(s) else f"{k} non-finite"
                         for k, s in sorted(stats.items()))
        print(f"{param}={v:g}: loss {loss:.4f}  surprise: {cols}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
