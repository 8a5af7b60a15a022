"""The toy MQAR of tests/train/test_gain.py for the peer architectures (specs/deltanet.nl, ttt.nl,
miras.nl) next to TitansLMM: dim 32, 1 layer, 1 head, chunk 8, 300 steps of 32 fresh sequences,
AdamW peak lr 1e-2, seed 0; accuracy on 4 x 32 held-out sequences with the memories learning and
frozen (`nlc.freeze(m, "inner")`). One markdown row per model (docs/results.md, issue 13).

    python scripts/mqar_archs.py [MODEL ...]      # default: all seven
"""
import sys
import time

import torch

import nlc
from nlc.train.evaluate import eval_mqar, train_mqar

MODELS = {"TitansLMM": "specs/titans.nl", "DeltaNet": "specs/deltanet.nl", "GatedDeltaNet": "specs/deltanet.nl",
          "TTTLinear": "specs/ttt.nl", "TTTMLP": "specs/ttt.nl", "Yaad": "specs/miras.nl", "Moneta": "specs/miras.nl"}


def main(names):
    torch.set_num_threads(1)
    print("| model | parameters | memories learning | memories frozen | wall s (train + eval) |")
    print("|---|---|---|---|---|")
    for name in names:
        torch.manual_seed(0)
        m = nlc.compile(MODELS[name], model=name, dim=32, layers=1, heads=1, chunk=8)
        t0 = time.time()
        train_mqar(m, steps=300, batch=32, num_pairs=4, lr=1e-2)
        acc, frozen = eval_mqar(m, num_pairs=4), eval_mqar(nlc.freeze(m, "inner"), num_pairs=4)
        n = sum(p.numel() for p in m.parameters())
        print(f"| {name} | {n:,} | {acc:.3f} | {frozen:.3f} | {time.time() - t0:.0f} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or list(MODELS))
