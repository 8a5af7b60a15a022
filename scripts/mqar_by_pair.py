"""MQAR with more pairs than trained: accuracy by the position of the queried pair in the row.

docs/results.md found Gated DeltaNet, trained on 8 pairs, at ~0.5 on 16 pairs where DeltaNet keeps
0.99, and read it (unchecked) as its forget gate keeping about the 8 most recent writes. If so, the
queries of the last pairs written are answered and those of the first are not; if the state were
simply full, the misses would spread over all pairs. This trains the sweep's cell (the same
`nlc sweep --task mqar` training: `train_mqar` at `pairs`, `seq_len`, the seed's model init and
batches) and scores 16 pairs at 128 tokens by the written order of the queried pair:

    python scripts/mqar_by_pair.py deltanet:GatedDeltaNet --lr 3e-2 --set chunk=16
    python scripts/mqar_by_pair.py deltanet:DeltaNet --lr 3e-2 --set chunk=16

d_model 64, 2 layers, 1 head, 8 pairs over 64 tokens, 800 steps x 32 (the d64 MQAR sweep's cell);
scored on 4 x 32 held-out rows of `--eval-pairs` pairs at `--eval-len` tokens. One torch thread.
"""
import argparse
import time

import torch

import nlc
from nlc.passes.consts import parse_override
from nlc.train.evaluate import _evaluating, _run, train_mqar, unwrap
from nlc.train.ontask import TASKS
from nlc.train.tasks import MQAR_KEY_BASE, mqar


def accuracy_by_pair(model, pairs: int, seq_len: int, batches: int, seed: int) -> list[float]:
    """Accuracy of the queries of the i-th pair written (i = 0 the first), over `batches` rows of 32."""
    hit, n = [0] * pairs, [0] * pairs
    m = unwrap(model)
    for i in range(batches):
        tb = mqar(32, pairs, seed=seed * 1000 + i, seq_len=seq_len)  # eval_mqar's seeds
        with _evaluating(m):
            pred = _run(m, tb.tokens).logits.argmax(-1)
        for b, row in enumerate(tb.tokens.tolist()):
            order = {k: j for j, k in enumerate(row[0:2 * pairs:2])}  # the pairs come first, in written order
            for t in tb.mask[b].nonzero().flatten().tolist():
                j = order[row[t]]  # the query key sits at t, its value is the target
                assert row[t] >= MQAR_KEY_BASE
                hit[j] += int(pred[b, t] == tb.targets[b, t])
                n[j] += 1
    return [h / c if c else float("nan") for h, c in zip(hit, n)]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("spec", help="spec[:model], e.g. deltanet:GatedDeltaNet")
    p.add_argument("--lr", type=float, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--pairs", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--eval-pairs", type=int, default=16)
    p.add_argument("--eval-len", type=int, default=128)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a spec parameter")
    a = p.parse_args()
    torch.set_num_threads(1)
    ov = dict(dim=64, layers=2, heads=1) | TASKS["mqar"].overrides()
    ov |= {k: parse_override(v) for k, v in (s.split("=", 1) for s in a.set)}
    torch.manual_seed(a.seed)  # as nlc sweep's cell does before compiling
    m = nlc.compile(a.spec, **ov)
    t = time.time()
    train_mqar(m, steps=a.steps, batch=32, num_pairs=a.pairs, lr=a.lr, seed=a.seed, seq_len=a.seq_len)
    train_s = time.time() - t
    accs = accuracy_by_pair(m, a.eval_pairs, a.eval_len, 4, seed=10**4 + a.seed)
    half = a.eval_pairs // 2
    print(f"{a.spec} lr {a.lr} seed {a.seed}: trained on {a.pairs} pairs / {a.seq_len} tokens in {train_s:.0f} s; "
          f"scored on {a.eval_pairs} pairs / {a.eval_len} tokens")
    print("accuracy by the queried pair's written position (1 = written first):")
    print("  " + " ".join(f"{i + 1}:{x:.2f}" for i, x in enumerate(accs)))
    print(f"  first {half}: {sum(accs[:half]) / half:.3f}   last {a.eval_pairs - half}: "
          f"{sum(accs[half:]) / (a.eval_pairs - half):.3f}   all: {sum(accs) / len(accs):.3f}")


if __name__ == "__main__":
    main()
