"""Training under faults (issue 10, section 3), in process: resume flags, healthy checkpoints,
the NaN recovery, an unwritable run directory, the run-directory lock, atomic pruning."""
import errno
import json
import math
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch

from nlc.train import checkpoint as C
from nlc.train.errors import CheckpointError, DivergedError, TrainError
from nlc.train.loop import train
from nlc.train.metrics import read_metrics

KW = dict(batch=4, seq_len=32, progress=False, log_every=1, seed=1, plot=False)


def _saved_groups(ckpt):
    return torch.load(ckpt / "state.pt", weights_only=True)["optimizer"]["param_groups"]


# ---------------------------------------------------------------------------
# flags given with --resume take effect, with a note


def test_resume_lr_flag_takes_effect(tmp_path, fake, text, capsys):
    train(fake(dropout=0.0), text, steps=6, warmup=0, save_every=3, out_dir=tmp_path, **KW)
    capsys.readouterr()
    r = train(fake(dropout=0.0), text, steps=10, lr=1e-4, out_dir=tmp_path, resume=True, **KW)
    assert r.resumed_from == 6
    assert "lr=0.0001 (run used 0.003)" in capsys.readouterr().out
    rows = {x["step"]: x for x in read_metrics(tmp_path) if "lr" in x}
    assert rows[1]["lr"] == pytest.approx(3e-3)  # before: the run's own schedule (peak 3e-3)
    for s in range(7, 11):  # after: peak 1e-4, cosine-decayed over the 10 steps
        assert 1e-5 <= rows[s]["lr"] <= 1e-4, (s, rows[s]["lr"])
    assert _saved_groups(r.checkpoint)[0]["initial_lr"] == pytest.approx(1e-4)
    assert json.loads((r.checkpoint / "record.json").read_text())["train_args"]["lr"] == 1e-4


def test_resume_warmup_clip_weight_decay_batch_take_effect(tmp_path, fake, text, capsys):
    train(fake(), text, steps=4, warmup=0, clip=1.0, save_every=2, out_dir=tmp_path, **KW)
    capsys.readouterr()
    kw = {**KW, "batch": 2}
    r = train(fake(), text, steps=8, warmup=20, clip=0.25, weight_decay=0.5, out_dir=tmp_path, resume=True, **kw)
    note = capsys.readouterr().out
    for part in ("warmup=20 (run used 0)", "clip=0.25 (run used 1)", "weight_decay=0.5 (run used 0.01)",
                 "batch=2 (run used 4)"):
        assert part in note, note
    rows = {x["step"]: x for x in read_metrics(tmp_path) if "lr" in x}
    assert rows[5]["lr"] == pytest.approx(3e-3 * 5 / 20)  # in the new warmup: step 4 of 20
    assert all(rows[s]["grad_norm"] >= 0 for s in range(5, 9))
    assert _saved_groups(r.checkpoint)[0]["weight_decay"] == 0.5
    assert json.loads((r.checkpoint / "record.json").read_text())["train_args"]["clip"] == 0.25


def test_resume_without_flags_keeps_the_runs_own_args(tmp_path, fake, text, capsys):
    """--resume alone continues the run as it was started (steps, warmup, clip, lr), bit-exactly."""
    args = dict(steps=8, warmup=2, clip=0.5, lr=2e-3, save_every=4)
    ref = fake()
    train(ref, text, out_dir=tmp_path / "ref", **args, **KW)
    b = fake()
    train(b, text, out_dir=tmp_path / "b", **args, **KW)
    shutil.rmtree(tmp_path / "b" / "ckpt-0000008")
    (tmp_path / "b" / "latest").write_text("ckpt-0000004\n")
    capsys.readouterr()
    c = fake(seed=5)
    r = train(c, text, out_dir=tmp_path / "b", resume=True, **KW)  # no steps/warmup/clip/lr given
    assert r.steps == 8 and "note: resuming" not in capsys.readouterr().out
    for (k, x), y in zip(ref.state_dict().items(), c.state_dict().values()):
        assert torch.equal(x, y), k


def test_weight_decay_refused_for_an_optimizer_without_it(tmp_path, fake, text):
    class Plain(torch.optim.Optimizer):
        def __init__(self, params):
            super().__init__(params, {"lr": 1e-2})

        def step(self, closure=None):
            pass

    class NoWd(fake):
        def optimizer(self):
            return Plain(self.parameters())

    with pytest.raises(TrainError, match="has no weight decay"):
        train(NoWd(), text, steps=2, weight_decay=0.1, out_dir=tmp_path / "x", **KW)


def test_weight_decay_reaches_a_spec_defined_optimizer():
    """The built-in specs' AdamW is an NLOptimizer: its weight_decay is a declared parameter, not a group key."""
    import nlc
    from nlc.train.loop import apply_hyperparams, current_weight_decay

    m = nlc.compile("specs/transformer.nl", dim=16, heads=2, layers=1)
    opt = m.optimizer()
    assert current_weight_decay(opt) == 0.01
    apply_hyperparams(opt, [g["lr"] for g in opt.param_groups], 0.5)
    assert current_weight_decay(opt) == 0.5
    p = next(m.parameters())
    before = p.detach().clone()
    for q in m.parameters():
        q.grad = torch.zeros_like(q)
    opt.step()  # zero gradient: the step is lr * weight_decay * param
    assert torch.allclose(p.detach(), before * (1 - opt.param_groups[0]["lr"] * 0.5), atol=1e-7)


@pytest.mark.parametrize("kw,msg", [(dict(warmup=-1), "warmup"), (dict(clip=-1.0), "clip"),
                                    (dict(lr=0.0), "lr"), (dict(weight_decay=float("nan")), "weight_decay")])
def test_bad_hyperparameters(tmp_path, fake, text, kw, msg):
    with pytest.raises(TrainError, match=msg):
        train(fake(), text, steps=2, out_dir=tmp_path, **kw, **KW)
    assert not tmp_path.joinpath("ckpt-0000002").exists()


# ---------------------------------------------------------------------------
# only healthy checkpoints are kept as "last good"


def test_weights_problem_criterion():
    ok = [("a", torch.ones(3)), ("b", torch.full((2,), -999.0))]
    assert C.weights_problem(ok) is None
    assert "non-finite" in C.weights_problem([("a", torch.tensor([1.0, float("nan")]))])
    assert "|w| = 5e+04 > 1000" in C.weights_problem([("a", torch.ones(2)), ("w", torch.tensor([5e4]))])
    assert "fast state mem/h" in C.weights_problem(ok, fast_state={"mem/h": torch.tensor([float("inf")])})
    opt = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.tensor([float("nan")])}}}
    assert "optimizer state exp_avg" in C.weights_problem(ok, opt)


def _blow_up_after(model, calls):
    """Scale the head by 1e5 after `calls` training forwards: |w| ~ 5e4, the loss still finite."""
    n = [0]

    def hook(mod, args):
        if mod.training:
            n[0] += 1
            if n[0] == calls + 1:
                with torch.no_grad():
                    mod.head.weight.mul_(1e5)
    model.register_forward_pre_hook(hook)
    return model


def test_blown_up_weights_are_never_saved(tmp_path, fake, text):
    m = _blow_up_after(fake(), 4)
    with pytest.raises(TrainError) as e:
        train(m, text, steps=12, save_every=3, clip=0.0, out_dir=tmp_path, **KW)
    msg = str(e.value)
    assert "blew up" in msg and "head.weight" in msg and "ckpt-0000003 is kept" in msg, msg
    assert "--resume --lr" in e.value.hint
    assert [p.name for p in C.list_checkpoints(tmp_path)] == ["ckpt-0000003"]
    ck = C.load_checkpoint(tmp_path, fake())
    assert ck.step == 3


def test_resume_from_a_blown_up_checkpoint_is_refused(tmp_path, fake, text):
    m = fake()
    opt = m.optimizer()
    with torch.no_grad():
        m.head.weight.fill_(5e4)  # what an older nlc kept as "last good"
    C.save_checkpoint(tmp_path, m, opt, 3, record={"seed": 1, "train_args": {"steps": 6}})
    with pytest.raises(TrainError, match="holds blown-up weights.*head.weight"):
        train(fake(), text, steps=6, out_dir=tmp_path, resume=True, **KW)


def test_blow_up_hint_names_a_recovery_that_works(tmp_path, fake, text):
    """A run whose lr is far too high stops with a hint; following it finishes the run."""
    class SGDFake(fake):
        def optimizer(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    kw = dict(save_every=1, **KW)
    with pytest.raises(DivergedError) as e:  # a TrainError that `nlc sweep` records as diverged
        train(SGDFake(dropout=0.0), text, steps=20, lr=30.0, warmup=5, clip=0.0, out_dir=tmp_path, **kw)
    assert "blew up" in str(e.value) and "is kept" in str(e.value)
    hint = e.value.hint
    m = re.search(r"--resume --lr (\S+)", hint)
    assert m, hint
    assert "--warmup" in hint and "--clip" in hint and "--weight-decay" in hint
    assert float(m.group(1)) == pytest.approx(3.0)
    kept = SGDFake(dropout=0.0)
    last = C.load_checkpoint(tmp_path, kept)
    assert C.weights_problem(list(kept.named_parameters())) is None  # "last good" is healthy
    # follow the hint: the resumed run takes the lower lr and reaches the end, healthy
    final = SGDFake(dropout=0.0)
    r = train(final, text, lr=float(m.group(1)), out_dir=tmp_path, resume=True, **kw)
    assert r.resumed_from == last.step and r.steps == 20 and math.isfinite(r.train_loss)
    assert C.weights_problem(list(final.named_parameters())) is None


def test_nan_hint_names_the_lr_to_resume_with(tmp_path, fake, text):
    with pytest.raises(DivergedError) as e:
        train(fake(poison_after=7), text, steps=20, save_every=3, out_dir=tmp_path, **KW)
    assert "--resume --lr 0.0003 (this run's peak lr is 0.003)" in e.value.hint
    with pytest.raises(TrainError) as e:
        train(fake(poison_after=1), text, steps=20, save_every=3, out_dir=tmp_path / "b", **KW)
    assert "start again with a lower learning rate: --lr 0.0003" in e.value.hint and "without --resume" in e.value.hint


# ---------------------------------------------------------------------------
# the run directory: writable, locked


@pytest.mark.parametrize("case", ["file", "under-file", "proc"])
def test_unwritable_out_is_a_clear_error(tmp_path, fake, text, case):
    (tmp_path / "f").write_text("x")
    out = {"file": tmp_path / "f", "under-file": tmp_path / "f" / "run", "proc": "/proc/nlc-test-run/r"}[case]
    with pytest.raises(CheckpointError, match="cannot write the run directory"):
        train(fake(), text, steps=2, out_dir=out, **KW)


def test_full_disk_at_start_up(tmp_path, fake, text, monkeypatch):
    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(C, "_write_fd", full)
    with pytest.raises(CheckpointError, match="No space left") as e:
        train(fake(), text, steps=2, out_dir=tmp_path / "r", **KW)
    assert "free disk space" in e.value.hint


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out(tmp_path, fake, text):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(CheckpointError, match="cannot write the run directory"):
            train(fake(), text, steps=2, out_dir=ro / "run", **KW)
    finally:
        ro.chmod(0o755)


HOLD = ("import sys, time; from nlc.train.checkpoint import lock_run_dir; lock_run_dir(sys.argv[1]); "
        "print('held', flush=True); time.sleep(120)")


def hold_lock(path):
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_second_run_on_a_locked_out_is_refused(tmp_path, fake, text):
    holder = hold_lock(tmp_path / "r")
    try:
        with pytest.raises(CheckpointError) as e:
            train(fake(), text, steps=2, out_dir=tmp_path / "r", **KW)
        msg = str(e.value)
        assert f"pid {holder.pid}" in msg and "in use by another run" in msg and "started 20" in msg, msg
        assert "on host" in msg and "another --out" in e.value.hint
        assert not (tmp_path / "r" / "metrics.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()
    # the kernel dropped the lock with the process: the folder is free again
    r = train(fake(), text, steps=2, out_dir=tmp_path / "r", **KW)
    assert r.steps == 2


def test_lock_is_reentrant_and_released(tmp_path):
    a = C.lock_run_dir(tmp_path / "r")
    b = C.lock_run_dir(tmp_path / "r")  # the same process (the CLI, then train()) may take it twice
    b.release()
    assert os.path.realpath(tmp_path / "r") in C._held
    a.release()
    assert os.path.realpath(tmp_path / "r") not in C._held
    info = json.loads((tmp_path / "r" / ".lock").read_text())
    assert info["pid"] == os.getpid() and info["host"]


# ---------------------------------------------------------------------------
# pruning is atomic; stale temp files are cleaned


def _model_opt(fake):
    m = fake()
    return m, m.optimizer()


def test_kill_during_prune_leaves_no_half_checkpoint(tmp_path, fake, monkeypatch):
    m, opt = _model_opt(fake)
    for s in (1, 2, 3):
        C.save_checkpoint(tmp_path, m, opt, s, keep=3)
    real = shutil.rmtree

    def killed_mid_delete(path, ignore_errors=False):
        first = sorted(os.listdir(path))[0]
        os.unlink(os.path.join(path, first))  # one file gone, then the process dies
        raise SystemExit("SIGKILL")

    monkeypatch.setattr(C.shutil, "rmtree", killed_mid_delete)
    with pytest.raises(SystemExit):
        C.save_checkpoint(tmp_path, m, opt, 4, keep=3)
    monkeypatch.setattr(C.shutil, "rmtree", real)
    names = [p.name for p in C.list_checkpoints(tmp_path)]
    assert names == ["ckpt-0000002", "ckpt-0000003", "ckpt-0000004"], names
    for p in C.list_checkpoints(tmp_path):
        assert C.load_checkpoint(p).step == int(p.name[5:])
    C.save_checkpoint(tmp_path, m, opt, 5, keep=3)  # the next save clears what the kill left
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


def test_incomplete_checkpoint_folders_are_not_listed(tmp_path, fake):
    m, opt = _model_opt(fake)
    C.save_checkpoint(tmp_path, m, opt, 1)
    half = tmp_path / "ckpt-0000009"  # left half-deleted by an older nlc
    half.mkdir()
    (half / "record.json").write_text("{}")
    assert [p.name for p in C.list_checkpoints(tmp_path)] == ["ckpt-0000001"]


def test_stale_latest_temp_files_are_cleaned(tmp_path, fake):
    m, opt = _model_opt(fake)
    C.save_checkpoint(tmp_path, m, opt, 1)
    for name in (".latest-abc123", ".latest-zz"):
        (tmp_path / name).write_text("ckpt-0000001\n")
    C.save_checkpoint(tmp_path, m, opt, 2)
    assert not list(tmp_path.glob(".latest-*"))
    assert (tmp_path / "latest").read_text().strip() == "ckpt-0000002"


def test_training_start_cleans_temps(tmp_path, fake, text):
    tmp_path.joinpath(".latest-old").write_text("x")
    tmp_path.joinpath(".tmp-ckpt-del-ckpt-0000001").mkdir()
    train(fake(), text, steps=1, save_every=0, out_dir=tmp_path, **KW)
    assert not list(tmp_path.glob(".latest-*")) and not list(tmp_path.glob(".tmp-*"))


def test_a_memory_that_blows_up_is_named_with_its_step_size(tmp_path, text):
    """An in-context level whose own gradient descent overshoots (a far too large lr_max): the error names
    the level, and the hint its inner step size before the outer learning rate."""
    import nlc
    torch.manual_seed(0)
    m = nlc.compile("titans:TitansLMM", dim=16, heads=2, layers=1, chunk=4, lr_max=1e3)
    with pytest.raises(DivergedError) as e:
        train(m, text, steps=3, warmup=0, out_dir=tmp_path, **KW)
    assert "level 'lmm.0.mem' blew up" in e.value.message, e.value.message
    assert e.value.hint.startswith("level 'lmm.0.mem' overshot in context: start a new run (a new --out; --resume "
                                   "refuses a changed --set) with a smaller inner step, --set lr_max=500 (this "
                                   "run's is 1000); or start again with a lower learning rate")


def test_a_memory_that_blows_up_after_a_checkpoint_offers_both_recoveries(tmp_path, text):
    """With a good checkpoint kept: a new run with the smaller inner step, or --resume with a lower outer lr
    (the --resume the hint names keeps the spec, so it is not refused)."""
    import nlc
    torch.manual_seed(0)
    m = nlc.compile("titans:TitansLMM", dim=16, heads=2, layers=1, chunk=4, lr_max=1.0)
    blow = {"n": 0}

    def hook(mod, args):  # at the third training forward, M_0 x 100: its inner loss 1e4 x as curved, lr_max 1 overshoots
        if mod.training:
            blow["n"] += 1
            if blow["n"] == 3:
                with torch.no_grad():
                    for name, p in mod.named_parameters():
                        if ".mems.mem.init." in name:
                            p.mul_(100.0)
    m.register_forward_pre_hook(hook)
    with pytest.raises(DivergedError) as e:
        train(m, text, steps=6, warmup=0, save_every=1, clip=0.0, out_dir=tmp_path, **KW)
    assert "level 'lmm.0.mem' blew up" in e.value.message and "ckpt-0000002 is kept" in e.value.message, e.value.message
    hint = e.value.hint
    assert "start a new run (a new --out; --resume refuses a changed --set) with a smaller inner step, --set lr_max=0.5" in hint
    assert "; or continue from the last good checkpoint with a lower learning rate: --resume --lr" in hint
