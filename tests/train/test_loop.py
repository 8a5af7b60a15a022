import json
import math

import pytest
import torch

from nlc.train import checkpoint as C
from nlc.train.errors import TrainError
from nlc.train.loop import level_of, lr_multiplier, resolve_args, train
from nlc.train.metrics import read_metrics

KW = dict(batch=4, seq_len=32, progress=False, log_every=1, seed=1)


def test_loss_goes_down_and_report(tmp_path, fake, text):
    cut = len(text) * 9 // 10
    r = train(fake(dropout=0.0), text[:cut], val_data=text[cut:], steps=60, eval_every=30, save_every=30,
              out_dir=tmp_path, **KW)
    rows = [x for x in read_metrics(tmp_path) if "loss" in x]
    assert len(rows) == 60
    first, last = sum(x["loss"] for x in rows[:5]) / 5, sum(x["loss"] for x in rows[-5:]) / 5
    assert last < first - 1.0
    assert {"bpb", "lr", "tok_s", "grad_norm", "mem/update_norm", "mem/surprise"} <= set(rows[-1])
    vals = [x["val_bpb"] for x in read_metrics(tmp_path) if "val_bpb" in x]
    assert len(vals) == 2 and vals[1] < vals[0] < 8.5
    assert r.steps == 60 and r.val_bpb == vals[-1] and r.checkpoint.name == "ckpt-0000060"
    assert r.plot.exists() and r.plot.stat().st_size > 10_000 and r.metrics_log.exists()
    s = r.format()
    assert "60 steps" in s and "val bpb" in s and "ckpt-0000060" in s


@pytest.mark.parametrize("steps", [0, -3])
def test_bad_steps(tmp_path, fake, text, steps):
    with pytest.raises(TrainError, match="steps must be a positive integer"):
        train(fake(), text, steps=steps, out_dir=tmp_path, **KW)


def test_refuses_to_overwrite_a_run(tmp_path, fake, text):
    train(fake(), text, steps=2, out_dir=tmp_path, **KW)
    with pytest.raises(TrainError, match="already holds a run"):
        train(fake(), text, steps=2, out_dir=tmp_path, **KW)


def test_resume_in_process_is_bit_exact(tmp_path, fake, text):
    a = fake()
    train(a, text, steps=10, save_every=4, eval_every=3, out_dir=tmp_path / "a", **KW)
    b = fake()
    train(b, text, steps=6, save_every=4, eval_every=3, out_dir=tmp_path / "b", **KW)
    # drop the final checkpoint, so that we resume from step 4 like a run killed at step 6
    import shutil

    shutil.rmtree(tmp_path / "b" / "ckpt-0000006")
    (tmp_path / "b" / "latest").write_text("ckpt-0000004\n")
    c = fake(seed=9)
    r = train(c, text, steps=10, save_every=4, eval_every=3, out_dir=tmp_path / "b", resume=True, **KW)
    assert r.resumed_from == 4 and r.steps == 10
    for (k, x), y in zip(a.state_dict().items(), c.state_dict().values()):
        assert torch.equal(x, y), k
    steps = [x["step"] for x in read_metrics(tmp_path / "b") if "loss" in x]
    assert steps == list(range(1, 11))  # lines past the checkpoint were dropped, then rewritten


def test_nan_names_level_and_keeps_last_good(tmp_path, fake, text):
    m = fake(poison_after=7)
    with pytest.raises(TrainError) as e:
        train(m, text, steps=20, save_every=3, out_dir=tmp_path, **KW)
    msg = str(e.value)
    assert "loss is nan at step 8" in msg and "level 'mem'" in msg and "mem/h" in msg
    assert "ckpt-0000006 is kept" in msg and "--lr" in e.value.hint
    assert [p.name for p in C.list_checkpoints(tmp_path)] == ["ckpt-0000003", "ckpt-0000006"]
    ck = C.load_checkpoint(tmp_path, fake())
    assert ck.step == 6 and all(torch.isfinite(v).all() for v in ck.fast_state.values())
    rows = read_metrics(tmp_path)
    assert all(r["loss"] is not None and math.isfinite(r["loss"]) for r in rows if "loss" in r)


def test_defaults_and_lr_schedule(fake):
    m = fake()
    a = resolve_args(m, steps=None, batch=2)
    assert a["steps"] == 40 and a["batch"] == 2 and a["seq_len"] == 32 and a["warmup"] == 4
    assert lr_multiplier(0, 10, 100) == pytest.approx(0.1)
    assert lr_multiplier(9, 10, 100) == pytest.approx(1.0)
    assert lr_multiplier(99, 10, 100) == pytest.approx(0.1, abs=1e-3)
    assert 0.1 < lr_multiplier(55, 10, 100) < 1.0


def test_lr_override_scales_groups(tmp_path, fake, text):
    m = fake()
    train(m, text, steps=3, warmup=0, lr=1e-2, out_dir=tmp_path, **KW)
    rec = json.loads((tmp_path / "ckpt-0000003" / "record.json").read_text())
    assert rec["train_args"]["lr"] == 1e-2
    rows = [x for x in read_metrics(tmp_path) if "lr" in x]
    assert rows[0]["lr"] == pytest.approx(1e-2)


def test_level_of_state_and_stat_keys():
    levels = {"lmm.0.mem", "hope.0.mk"}
    assert level_of("lmm.0.mem/surprise", levels) == "lmm.0.mem"
    assert level_of("lmm.0.mem.W0", levels) == "lmm.0.mem"
    assert level_of("hope.0.mk.Wbar1", levels) == "hope.0.mk"
    assert level_of("other.S", levels) == "other"
