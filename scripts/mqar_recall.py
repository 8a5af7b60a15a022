"""Toy MQAR trained on the task: accuracy with the memories learning, with all of them frozen, and
(--levels) with each in-context level frozen alone. The figures of docs/results.md, "MQAR trained on
the task" (issue 16):

    python scripts/mqar_recall.py specs/titans.nl --model TitansLMM --steps 1000 --set lr_max=2 --seeds 0,1,2
    python scripts/mqar_recall.py specs/hope.nl --steps 1000 --set mem_chunk=8 --seeds 0,1,2 --levels

4 key-value pairs then the 4 queries (16 bytes; 64 keys, 64 values: chance 1/64), dim 32, 1 layer,
1 head, chunk 8, 32 fresh sequences a step, AdamW peak lr 1e-2 (warmup 20, cosine); accuracy on
4 x 32 held-out sequences (nlc.train.evaluate.train_mqar / eval_mqar). One torch thread.
"""
import argparse
import statistics
import time

import torch

import nlc
from nlc.passes.consts import parse_override
from nlc.passes.schedule import learning_levels
from nlc.train.evaluate import eval_mqar, train_mqar


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("spec")
    p.add_argument("--model")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--seeds", default="0", help="comma-separated")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a spec parameter")
    p.add_argument("--levels", action="store_true", help="also freeze each in-context level alone")
    a = p.parse_args()
    torch.set_num_threads(1)
    ov = dict(dim=32, layers=1, heads=1, chunk=8) | {k: parse_override(v) for k, v in (s.split("=", 1) for s in a.set)}
    acc, frozen = [], []
    for seed in map(int, a.seeds.split(",")):
        torch.manual_seed(seed)
        m = nlc.compile(a.spec, model=a.model, **ov)
        t = time.time()
        train_mqar(m, steps=a.steps, batch=32, num_pairs=4, lr=1e-2, seed=seed)
        acc.append(eval_mqar(m, num_pairs=4))
        frozen.append(eval_mqar(nlc.freeze(m, "inner"), num_pairs=4))
        print(f"seed {seed}: learning {acc[-1]:.3f}  frozen (inner) {frozen[-1]:.3f}  ({time.time() - t:.0f} s)", flush=True)
        if a.levels:
            for n in learning_levels(m.plan):
                print(f"  frozen {n:<8} {eval_mqar(nlc.freeze(m, n), num_pairs=4):.3f}", flush=True)
    sd = (lambda xs: statistics.stdev(xs) if len(xs) > 1 else 0.0)
    print(f"mean over {len(acc)} seed(s): learning {statistics.mean(acc):.3f} ± {sd(acc):.3f}, "
          f"frozen {statistics.mean(frozen):.3f} ± {sd(frozen):.3f} (chance {1 / 64:.3f})")


if __name__ == "__main__":
    main()
