"""Sampling filters of `nlc generate` (nlc.train.evaluate.filter_logits) against plain Python
written from their definitions, and the new `nlc generate` flags end to end."""
import math
import random

import pytest
import torch

from nlc.train.evaluate import filter_logits, generate


def plain_filter(logits, temperature, top_k, top_p, penalty, seen):
    """One row, lists and loops: the definitions of the four filters, applied in transformers' order."""
    x = [float(v) for v in logits]
    for t in set(seen):
        x[t] = x[t] / penalty if x[t] > 0 else x[t] * penalty
    if temperature > 0:
        x = [v / temperature for v in x]
    if top_k:
        kth = sorted(x, reverse=True)[min(top_k, len(x)) - 1]
        x = [v if v >= kth else -math.inf for v in x]
    if top_p is not None and top_p < 1:
        m = max(x)
        e = [math.exp(v - m) for v in x]
        z = sum(e)
        order = sorted(range(len(x)), key=lambda i: -x[i])
        mass, keep = 0.0, set()
        for i in order:  # the most likely tokens until their mass reaches top_p
            keep.add(i)
            mass += e[i] / z
            if mass >= top_p:
                break
        x = [v if i in keep else -math.inf for i, v in enumerate(x)]
    return x


@pytest.mark.parametrize("case", range(40))
def test_filter_logits_matches_the_plain_definition(case):
    rnd = random.Random(case)
    V = rnd.choice([5, 17, 256])
    logits = torch.randn(V, generator=torch.Generator().manual_seed(case)) * rnd.choice([0.5, 2.0, 8.0])
    temperature = rnd.choice([0.0, 0.7, 1.0, 1.5])
    top_k = rnd.choice([None, 1, 3, V + 2])
    top_p = rnd.choice([None, 0.05, 0.5, 0.9, 1.0])
    penalty = rnd.choice([1.0, 1.3, 2.0, 0.8])
    seen = [rnd.randrange(V) for _ in range(rnd.randrange(6))]
    got = filter_logits(logits.clone(), temperature, top_k, top_p, penalty, seen).tolist()
    want = plain_filter(logits.tolist(), temperature, top_k, top_p, penalty, seen)
    assert [math.isinf(v) for v in got] == [math.isinf(v) for v in want]
    assert got == pytest.approx(want, rel=1e-5, abs=1e-5)


def test_filter_logits_batched_rows_filter_independently():
    logits = torch.randn(3, 11, generator=torch.Generator().manual_seed(1))
    both = filter_logits(logits, 1.0, None, 0.6, 1.5, [2, 4])
    for i in range(3):
        assert torch.equal(both[i], filter_logits(logits[i], 1.0, None, 0.6, 1.5, [2, 4]))


def test_top_p_keeps_the_nucleus_only():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    kept = torch.isfinite(filter_logits(logits, 1.0, None, 0.75, 1.0, None)).tolist()
    assert kept == [True, True, False, False]  # 0.5 + 0.3 >= 0.75
    assert torch.isfinite(filter_logits(logits, 1.0, None, 0.01, 1.0, None)).sum() == 1  # the top one stays


def test_repetition_penalty_changes_greedy_generation(fake):
    m = fake(vocab=256)
    plain = generate(m, b"ab", max_new=30, temperature=0)
    assert generate(m, b"ab", max_new=30, temperature=0, repetition_penalty=1.0) == plain
    penalised = generate(m, b"ab", max_new=30, temperature=0, repetition_penalty=50.0)
    assert penalised != plain and len(set(penalised)) > len(set(plain))
