"""The toy MQAR of tests/train/test_gain.py for the peer architectures (specs/deltanet.nl, ttt.nl,
miras.nl) next to TitansLMM: dim 32, 1 layer, 1 head, chunk 8, 300 steps of 32 fresh sequences,
AdamW peak lr 1e-2; accuracy on 4 x 32 held-out sequences (the same for every seed) with the
memories learning and frozen (`nlc.freeze(m, "inner")`). Seed s seeds the initialisation and the
training batches (seed 0 is test_gain's run). One markdown row per model (docs/results.md, issue 13).

    python scripts/mqar_archs.py [--seeds N] [--set KEY=VALUE ...] [MODEL ...]   # default: 1 seed, all seven models
"""
import argparse
import statistics
import time

import torch

import nlc
from nlc.train.evaluate import eval_mqar, train_mqar

MODELS = {"TitansLMM": "specs/titans.nl", "DeltaNet": "specs/deltanet.nl", "GatedDeltaNet": "specs/deltanet.nl",
          "TTTLinear": "specs/ttt.nl", "TTTMLP": "specs/ttt.nl", "Yaad": "specs/miras.nl", "Moneta": "specs/miras.nl"}


def run(name, seed, overrides):
    torch.manual_seed(seed)
    m = nlc.compile(MODELS[name], model=name, **{"dim": 32, "layers": 1, "heads": 1, "chunk": 8, **overrides})
    train_mqar(m, steps=300, batch=32, num_pairs=4, lr=1e-2, seed=seed)
    return sum(p.numel() for p in m.parameters()), eval_mqar(m, num_pairs=4), eval_mqar(nlc.freeze(m, "inner"), num_pairs=4)


def cell(xs):
    return f"{xs[0]:.3f}" if len(xs) == 1 else f"{statistics.mean(xs):.3f} ± {statistics.stdev(xs):.3f} ({', '.join(f'{x:.2f}' for x in xs)})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a spec parameter (float)")
    ap.add_argument("models", nargs="*", default=list(MODELS))
    a = ap.parse_args()
    overrides = {k: float(v) for k, v in (kv.split("=", 1) for kv in a.set)}
    torch.set_num_threads(1)
    print("| model | parameters | memories learning | memories frozen | wall s per seed |")
    print("|---|---|---|---|---|")
    for name in a.models:
        t0 = time.time()
        runs = [run(name, s, overrides) for s in range(a.seeds)]
        accs, frozen = [r[1] for r in runs], [r[2] for r in runs]
        print(f"| {name} | {runs[0][0]:,} | {cell(accs)} | {cell(frozen)} | {(time.time() - t0) / a.seeds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
