"""How far a trained model's in-context memories are from their stability edge.

Reads a run directory written by `nlc train` (or an `nlc sweep` cell of task `lm`), recompiles its spec
with one spec parameter (default `lr_max`, the inner step size of the Titans and Hope specs) set to each
of --values, loads the checkpoint's trained weights unchanged, and scores batches: the training batches
of --steps (the batches the run trained on at those steps, counted from 1 as its log counts them: same
seed, batch and length), or validation windows. Per value it prints the mean loss and each level's
surprise (its inner objective at the chunk-start states) over the batches that stayed finite, and how
many blew up (a non-finite loss). A last row freezes every in-context level at its trained initial state
(`--freeze inner`; `lr_max = 0` is not that: the forget gate still shrinks the memory).

Gradient descent on a quadratic overshoots when step x curvature > 2: a level whose surprise jumps by
orders of magnitude, or whose batches blow up, at k times the trained value is within k of that edge.

    python scripts/inner_margin.py RUN --ckpt ckpt-0001500 --values 0,0.5,1,1.5,2 --steps 1501-1540
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
from nlc.errors import NlcError, render
from nlc.rundir import open_run
from nlc.sweep import CELL
from nlc.train.checkpoint import load_checkpoint
from nlc.train.data import default_corpus, eval_windows, get_batch, load_data


class MarginError(NlcError):
    """A run this script cannot score as it was trained."""


def parse_steps(text: str) -> list[int]:
    """"A-B" (or "A"): training steps A..B, counted from 1 as the trainer's log counts them."""
    lo, _, hi = text.partition("-")
    try:
        steps = list(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise MarginError(f"--steps {text}: a step or a range A-B") from None
    if not steps or steps[0] < 1:
        raise MarginError(f"--steps {text}: steps count from 1, and A <= B")
    return steps


def score(m, batches) -> tuple[float, dict, int]:
    """(mean loss, {level/surprise: mean}, batches that blew up): the means over the batches whose loss
    stayed finite (nan when none did)."""
    losses, stats, blown = [], {}, 0
    for x, y in batches:
        with torch.no_grad():
            out = m(x, targets=y)
        if not math.isfinite(float(out.loss)):
            blown += 1
            continue
        losses.append(float(out.loss))
        for k, v in (out.stats or {}).items():
            if k.endswith("/surprise"):
                stats.setdefault(k, []).append(float(v))
    mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
    return mean(losses), {k: mean(v) for k, v in stats.items()}, blown


def batches_of(ck, steps: str | None, data: str | None):
    """The training batches of `steps` ("A-B", from 1: step n trains on batch n - 1), else 8 batches of
    validation windows of the run's length; with a description."""
    args = ck.record.get("train_args")
    if not args or "seed" not in ck.record:
        raise MarginError(f"{ck.path}: its record has no train_args or seed (not written by nlc's trainer)")
    batch, T, seed = int(args["batch"]), int(args["seq_len"]), int(ck.record["seed"])
    corpus = load_data(data) if data else default_corpus(verbose=False)
    what = f"--data {data}" if data else "the stdlib corpus (the default; --data for a run trained on other data)"
    if steps:
        return ([get_batch(corpus.train, batch, T, seed, s - 1) for s in parse_steps(steps)],
                f"the training batches of steps {steps} (batch {batch}, length {T}, seed {seed}) of {what}")
    x, y = eval_windows(corpus.val, T, 8 * batch)
    return list(zip(x.split(batch), y.split(batch))), f"{len(x)} validation windows of {T} bytes of {what}"


def source(run_dir) -> tuple[str, str | None, dict, list[str], Path]:
    """(spec, model, --set values, frozen levels, checkpoint folder) of an `nlc train` run directory, or of
    an `nlc sweep` cell of task lm (its cell.json; the cell's run/ holds checkpoints but no spec record)."""
    cell = Path(run_dir) / CELL
    if cell.is_file():
        c = json.loads(cell.read_text())
        if c.get("task") != "lm":
            raise MarginError(f"{run_dir}: a sweep cell of task {c.get('task')!r}: only lm cells train on "
                              "corpus batches this script can replay")
        spec, model = resolve_spec(c["spec"], c.get("model"))
        return spec, model, dict(c.get("spec_set") or {}), [], Path(run_dir) / "run"
    r = open_run(run_dir)
    return str(r.main), r.record.model, dict(r.record.overrides), list(r.record.frozen), r.path


def margin(run_dir, ckpt: str | None, param: str, values, steps: str | None = None, data: str | None = None):
    """Yields the header, then (value, mean loss, {level/surprise: mean}, blown) per value: the checkpoint's
    weights compiled with `param` = value (None: as trained, with every in-context level frozen)."""
    spec, model, overrides, frozen, run = source(run_dir)
    ck = load_checkpoint(run / ckpt if ckpt else run, None, strict_spec=False)
    batches, where = batches_of(ck, steps, data)
    yield f"# {run_dir} {ck.path.name} (step {ck.step}), {model or spec}; {len(batches)} batches: {where}"
    for v in values:
        m = nlc_compile(spec, model=model, freeze=["inner"] if v is None else (frozen or None),
                        **{**overrides, **({} if v is None else {param: v})})
        load_checkpoint(ck.path, m, strict_spec=False)
        m.eval()
        yield (v, *score(m, batches))


def show(rows, param: str):
    print(next(rows))
    for v, loss, stats, blown in rows:
        n = f"  blew up on {blown} batch(es)" if blown else ""
        if v is None:
            print(f"frozen (--freeze inner): loss {loss:.4f}{n}")
            continue
        cols = "  ".join(f"{k.removesuffix('/surprise')} {s:.4g}" for k, s in sorted(stats.items()))
        print(f"{param}={v:g}: loss {loss:.4f}  surprise: {cols}{n}", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="run directory (nlc train --out), or an nlc sweep cell's folder (task lm)")
    p.add_argument("--ckpt", help="checkpoint folder name inside RUN (default: the latest)")
    p.add_argument("--param", default="lr_max", help="the spec parameter to scale (default lr_max)")
    p.add_argument("--values", default="0,0.25,0.5,1,2", help="comma-separated values of --param")
    p.add_argument("--steps", help="score the training batches of these steps, e.g. 1501-1540, counted from 1 as "
                                   "the run's log counts them (default: 8 batches of validation windows)")
    p.add_argument("--data", help="the run's training data, as given to nlc train --data (default: the stdlib corpus)")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    try:
        values = [float(s) for s in a.values.split(",")]
    except ValueError:
        p.error(f"--values {a.values}: comma-separated numbers")
    try:
        # the values first: an unknown --param fails before the frozen row's work
        show(margin(a.run, a.ckpt, a.param, values + [None], a.steps, a.data), a.param)
    except NlcError as e:  # a missing run or checkpoint, an unknown parameter: the message, not a traceback
        print(render(e), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
