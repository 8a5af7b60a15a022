"""Tasks trained on the task (nlc.train.ontask): Zoology-layout MQAR, passkey training batches, and
each task's run at a toy size returning its metrics."""
import dataclasses
import math

import pytest
import torch

import nlc
from nlc.train import tasks as T
from nlc.train.ontask import TASKS

TINY = dict(dim=16, heads=2, layers=1)


def recall_oracle(tokens):
    """Answers every query from the pairs before it: what a perfect memory does."""
    pred = torch.zeros_like(tokens)
    for b, row in enumerate(tokens.tolist()):
        table = {}
        for t in range(len(row) - 1):
            k = row[t]
            if T.MQAR_KEY_BASE <= k < T.MQAR_VAL_BASE:
                if k in table:
                    pred[b, t] = table[k]
                else:
                    table[k] = row[t + 1]
    return pred


def test_mqar_zoology_layout():
    tb = T.mqar(6, num_pairs=4, seq_len=48, seed=3)
    assert tb.tokens.shape == (6, 48) and int(tb.mask.sum()) == 6 * 4
    assert tb.tokens.max() < T.MQAR_VOCAB
    pred = recall_oracle(tb.tokens)
    assert T.accuracy(torch.nn.functional.one_hot(pred, 256).float(), tb) == 1.0
    assert (tb.tokens == T.MQAR_PAD).sum() == 6 * (48 - 16)  # the free space is filler
    assert not torch.equal(T.mqar(6, 4, seq_len=48, seed=3).mask, T.mqar(6, 4, seq_len=48, seed=4).mask)
    assert torch.equal(T.mqar(2, 4, seed=1).tokens, T.mqar(2, 4, seed=1, seq_len=None).tokens)  # packed as before
    with pytest.raises(ValueError, match="too short"):
        T.mqar(1, 8, seq_len=20)


def test_niah_training_batches_mix_keys_and_depths():
    tb = T.niah_mixed(6, 192, seed=0)
    assert tb.tokens.shape == (6, 192) and int(tb.mask.sum()) == 6 * 5
    texts = [bytes(r).decode() for r in tb.tokens.tolist()]
    keys = {t[-5:] for t in texts}
    where = {t.index("The pass key") for t in texts}
    assert len(keys) > 1 and len(where) > 1
    assert all(t.count(t[-5:]) == 3 for t in texts)  # the key twice in the needle, once as the answer


@pytest.mark.parametrize("task, opts", [
    ("mqar", dict(steps=2, batch=4, pairs=2, seq_len=16, eval_batches=1, warmup=1)),
    ("niah", dict(steps=2, batch=2, train_len=128, eval_lens="128/256", eval_depths="0.5", eval_samples=2,
                  warmup=1)),
])
def test_task_runs_at_toy_size(task, opts):
    t = TASKS[task]
    torch.manual_seed(0)
    m = nlc.compile("specs/titans.nl", model="TitansLMM", **TINY, **t.overrides)
    res = t.run(m, dict(t.options, **opts), 0)
    assert t.metric in res and all(math.isfinite(v) for v in res.values())
    lens = [k for k in res if k.startswith("acc@")]
    assert len(lens) >= 2 and all(0 <= res[k] <= 1 for k in lens)


def test_a_diverging_run_raises_for_the_sweep_to_record():
    from nlc.train.evaluate import train_task
    m = nlc.compile("specs/transformer.nl", **TINY)
    bad = T.mqar(2, 2)

    class Nan(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, tokens, state=None):
            out = self.inner(tokens, state=state)
            return dataclasses.replace(out, logits=out.logits * float("nan"))

        def init_state(self, b):
            return self.inner.init_state(b)
    with pytest.raises(FloatingPointError, match="toy"):
        train_task(Nan(m), lambda s: bad, steps=1, what="toy")
