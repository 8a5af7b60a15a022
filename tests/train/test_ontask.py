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


def test_mqar_with_more_keys_puts_the_values_after_them():
    """`key_vocab` > 64 (Zoology's 512x128 and 1024x256 need more than 64 keys): keys fill
    MQAR_KEY_BASE .. + key_vocab, the values follow, and every token is below mqar_vocab(key_vocab)."""
    tb = T.mqar(4, num_pairs=128, seq_len=512, seed=5, key_vocab=256)
    keys, vals = tb.tokens[:, 0:256:2], tb.tokens[:, 1:256:2]
    assert keys.min() >= T.MQAR_KEY_BASE and keys.max() < T.MQAR_KEY_BASE + 256 <= vals.min()
    assert tb.tokens.max() < T.mqar_vocab(256) == T.MQAR_KEY_BASE + 256 + T.MQAR_VALUES
    assert keys.max() >= T.MQAR_VAL_BASE  # keys past the 64 of the default layout are drawn
    table = [dict(zip(k.tolist(), v.tolist())) for k, v in zip(keys, vals)]
    for b, row in enumerate(tb.tokens.tolist()):  # every scored answer is its key's value
        for t in tb.mask[b].nonzero().flatten().tolist():
            assert tb.targets[b, t] == table[b][row[t]]
    assert T.mqar_vocab() == T.MQAR_VOCAB and torch.equal(T.mqar(3, 8, seed=2, seq_len=64).tokens,
                                                          T.mqar(3, 8, seed=2, seq_len=64, key_vocab=64).tokens)
    with pytest.raises(ValueError, match="exceeds key_vocab"):
        T.mqar(1, 65, seq_len=512)


def test_the_keys_option_sizes_the_models_vocab():
    for name in ("mqar", "mqar_mix"):
        t = TASKS[name]
        assert t.overrides() == {"vocab": T.MQAR_VOCAB}
        assert t.overrides({"keys": 256}) == {"vocab": T.mqar_vocab(256)}


def test_niah_training_batches_mix_keys_and_depths():
    tb = T.niah_mixed(6, 192, seed=0)
    assert tb.tokens.shape == (6, 192) and int(tb.mask.sum()) == 6 * 5
    texts = [bytes(r).decode() for r in tb.tokens.tolist()]
    keys = {t[-5:] for t in texts}
    where = {t.index("The pass key") for t in texts}
    assert len(keys) > 1 and len(where) > 1
    assert all(t.count(t[-5:]) == 3 for t in texts)  # the key twice in the needle, once as the answer


def test_mad_tasks_are_solvable_and_seeded():
    onehot = lambda pred: torch.nn.functional.one_hot(pred, 256).float()  # noqa: E731
    for name in ("recall", "noisy_recall"):
        tb = T.mad(name, 4, 96, seed=2)
        assert tb.tokens.shape == (4, 96) and tb.mask.sum() > 0
        assert T.accuracy(onehot(recall_oracle(tb.tokens)), tb) == 1.0  # every scored value was seen before
    assert (T.mad("noisy_recall", 4, 96).tokens >= T.MAD_NOISE_BASE).any()
    assert not (T.mad("recall", 4, 96).tokens >= T.MAD_NOISE_BASE).any()
    tb = T.mad("selective_copy", 3, 40, n_copy=6)
    for row, m in zip(tb.tokens.tolist(), tb.mask):
        start = row.index(T.MAD_COPY)
        assert [v for v in row[:start] if v != T.MAD_BLANK] == row[start + 1:start + 7]
        assert int(m.sum()) == 6
    # memorize: one mapping for every row and seed
    pairs = {}
    for seed in (0, 1):
        row = T.mad("memorize", 1, 64, seed=seed).tokens[0].tolist()
        for k, v in zip(row[0::2], row[1::2]):
            assert pairs.setdefault(k, v) == v
    assert torch.equal(T.mad("recall", 2, 32, seed=5).tokens, T.mad("recall", 2, 32, seed=5).tokens)
    with pytest.raises(ValueError, match="unknown MAD task"):
        T.mad("nosuch", 1, 32)


@pytest.mark.parametrize("task, opts", [
    ("mqar", dict(steps=2, batch=4, pairs=2, seq_len=16, eval_batches=1, warmup=1)),
    ("niah", dict(steps=2, batch=2, train_len=128, eval_lens="128/256", eval_depths="0.5", eval_samples=2,
                  warmup=1)),
    ("needle", dict(steps=2, batch=2, train_len=128, eval_lens="128/256", eval_depths="0.5", eval_samples=2,
                    warmup=1)),
    ("mqar_mix", dict(steps=3, batch=2, train_mix="16x2*2/32x4", eval_mix="16x2/32x4/64x8", eval_batches=1,
                      warmup=1)),
    ("mad_selective_copy", dict(steps=2, batch=4, seq_len=32, n_copy=4, eval_batches=1, warmup=1)),
    ("lm", dict(steps=2, batch=2, seq_len=32, eval_batches=1, warmup=1)),
])
def test_task_runs_at_toy_size(task, opts, tmp_path):
    t = TASKS[task]
    torch.manual_seed(0)
    m = nlc.compile("specs/titans.nl", model="TitansLMM", **TINY, **t.overrides())
    res = t.run(m, dict(t.options, **opts, _run_dir=str(tmp_path / "run")), 0)
    assert t.metric in res and all(math.isfinite(v) for v in res.values())
    if task == "lm":
        assert 0 < res["bpb"] < 9 and "bpb_4x" in res  # a byte model near uniform (8 bits) after 2 steps
        assert res["train_s"] > 0 and res["tok_s"] > 0  # the equal-wall-time view of the LM sweep reads these
        assert "bpb_teach" not in res  # TitansLMM has no CMS stage taught by the task loss
        return
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


def test_lm_scores_a_cms_model_with_its_stages_learning_too(tmp_path):
    """CMS stages learn in context only from the targets: the lm task scores them both ways."""
    m = nlc.compile("specs/cms.nl", dim=16, heads=2, layers=1, fast=8, mid=16, slow=32)
    opts = dict(TASKS["lm"].options, steps=2, batch=2, seq_len=32, eval_batches=1, warmup=1, _run_dir=str(tmp_path / "r"))
    res = TASKS["lm"].run(m, opts, 0)
    assert {"bpb_teach", "bpb_4x_teach"} <= set(res) and all(0 < res[k] < 9 for k in ("bpb_teach", "bpb_4x_teach"))
    assert res["bpb_teach"] != res["bpb"]  # the stages' in-context updates change the score


def test_mqar_mix_parses_and_interleaves_the_configurations():
    from nlc.train.ontask import MQAR_EVAL_MIX, MQAR_TRAIN_MIX, mix_schedule, parse_mix
    assert parse_mix("64x4*5/128x8") == [(64, 4, 5), (128, 8, 1)]
    assert mix_schedule(parse_mix("64x4*3/256x16")) == [(64, 4), (256, 16), (64, 4), (64, 4)]
    cycle = mix_schedule(parse_mix(MQAR_TRAIN_MIX))
    assert len(cycle) == 9 and cycle.count((64, 4)) == 5 and cycle[:2] == [(64, 4), (128, 8)]
    assert all(P <= 64 and L >= 4 * P for L, P, _ in parse_mix(MQAR_EVAL_MIX))  # drawable: 64 keys
    for bad in ("64-4", "64x4*0", "16x8", "", "64x4/x", "512x128"):
        with pytest.raises(ValueError, match="mix"):
            parse_mix(bad)
    assert parse_mix("512x128/1024x256", keys=256) == [(512, 128, 1), (1024, 256, 1)]  # Zoology's last two


def test_mqar_mix_trains_each_configuration_in_turn(monkeypatch):
    """The training batches follow the cycle; every eval configuration is scored and `acc` is their mean."""
    from nlc.train import evaluate
    from nlc.train.ontask import TASKS
    seen = []
    monkeypatch.setattr(evaluate, "train_task",
                        lambda m, make, steps, **kw: [seen.append(tuple(make(s).tokens.shape)) or 1.0 for s in range(steps)])
    monkeypatch.setattr(evaluate, "eval_mqar", lambda m, P, seq_len, **kw: P / 100)
    t = TASKS["mqar_mix"]
    res = t.run(None, dict(t.options, steps=4, batch=3, train_mix="16x2*2/32x4", eval_mix="16x2/64x8"), 0)
    assert seen == [(3, 16), (3, 32), (3, 16), (3, 16)]
    assert res["acc@16x2"] == 0.02 and res["acc@64x8"] == 0.08 and res["acc"] == pytest.approx(0.05)
    seen.clear()  # with more keys the training rows draw from them
    t.run(None, dict(t.options, steps=2, batch=3, train_mix="384x96", eval_mix="512x128", keys=128), 0)
    assert seen == [(3, 384), (3, 384)]


def test_mqar_mix_with_more_keys_at_toy_size():
    """keys=32 on a mix with 24 pairs: the model the sweep builds (vocab from the task) trains and scores."""
    t = TASKS["mqar_mix"]
    o = dict(t.options, steps=2, batch=2, train_mix="16x2/96x24", eval_mix="16x2/128x32", eval_batches=1, warmup=1,
             keys=32)
    m = nlc.compile("specs/transformer.nl", **TINY, **t.overrides(o))
    res = t.run(m, o, 0)
    assert set(res) >= {"acc@16x2", "acc@128x32", "acc"} and all(math.isfinite(v) for v in res.values())


def test_a_diverged_lm_run_is_recorded_as_diverged_not_failed(monkeypatch, tmp_path):
    """nlc train's NaN stop (DivergedError) becomes the FloatingPointError the sweep records as `diverged`,
    as for the other tasks, so the sweep does not count it a failure or re-run it on resume."""
    from nlc.train import loop
    from nlc.train.errors import DivergedError

    def blows_up(*a, **k):
        raise DivergedError("loss is nan at step 51; level 'mag.1.mem' blew up")
    monkeypatch.setattr(loop, "train", blows_up)
    with pytest.raises(FloatingPointError, match="loss is nan at step 51"):
        TASKS["lm"].run(None, dict(TASKS["lm"].options, _run_dir=str(tmp_path)), 0)
