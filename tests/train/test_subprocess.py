"""Real processes: SIGKILL then --resume (bit-identical weights), Ctrl-C, and DDP over 2 CPU ranks."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from nlc.train.checkpoint import list_checkpoints, load_checkpoint

HERE = Path(__file__).resolve().parent
SCRIPT = str(HERE / "run_train.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def run_here(*args):
    """The same script's main() in this process (saves a process start; same 1-thread arithmetic)."""
    from run_train import main

    return main([str(a) for a in args])


def run(*args, timeout=120):
    p = subprocess.run([sys.executable, SCRIPT, *map(str, args)], env=ENV, capture_output=True, text=True,
                       timeout=timeout)
    assert p.returncode == 0, p.stdout + p.stderr
    return p


def start(*args):
    return subprocess.Popen([sys.executable, SCRIPT, *map(str, args)], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(cond, proc, timeout=60.0):
    t = time.time()
    while not cond():
        assert proc.poll() is None, "the run ended before the test could interrupt it: " + proc.stderr.read()
        assert time.time() - t < timeout, "timed out"
        time.sleep(0.005)


def assert_same_weights(a, b):
    wa, wb = load_file(a), load_file(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


REAL = ["--spec", str(HERE.parents[1] / "specs" / "hope.nl")]


# the real-model variants take 30-90 s each on 2 cores: -m slow (the fake model keeps the mechanism in the default run)
SLOW_REAL = pytest.param(REAL, marks=pytest.mark.slow, id="hope")


@pytest.mark.parametrize("model", [pytest.param([], id="fake"), SLOW_REAL])
def test_kill_and_resume_is_bit_identical(tmp_path, model):
    steps = ["--steps", 30, "--save-every", 5, *model]
    # the reference run in a process like the resumed one (same BLAS threading, same arithmetic)
    (run_here if not model else run)("--out", tmp_path / "ref", *steps, "--weights-out", tmp_path / "ref.safetensors")

    out = tmp_path / "killed"
    p = start("--out", out, *steps, "--delay", 0.04)
    wait_for(lambda: (out / "latest").exists(), p)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    assert p.returncode == -signal.SIGKILL
    done = list_checkpoints(out)
    assert done and int(done[-1].name[5:]) < 30, "killed too late to test resuming"

    r = run("--out", out, *steps, "--resume", "--weights-out", tmp_path / "resumed.safetensors")
    assert "resumed from step" in r.stdout
    assert_same_weights(tmp_path / "ref.safetensors", tmp_path / "resumed.safetensors")
    assert not list(out.glob(".tmp-*"))


def test_ctrl_c_saves_and_exits_cleanly(tmp_path):
    out = tmp_path / "run"
    p = start("--out", out, "--steps", 500, "--save-every", 1000, "--delay", 0.02)
    metrics = out / "metrics.jsonl"
    wait_for(lambda: metrics.exists() and metrics.stat().st_size > 0, p)
    p.send_signal(signal.SIGINT)
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 0, stderr
    assert "interrupted" in stdout and "--resume" in stdout + stderr
    ck = load_checkpoint(out)
    assert 0 < ck.step < 500
    # and the run continues from there
    _, report = run_here("--out", out, "--steps", ck.step + 2, "--resume")
    assert report.resumed_from == ck.step and report.steps == ck.step + 2


# seq-len 6 < Hope's mem_chunk 8: some parameters cannot reach the loss (DDP must cope)
@pytest.mark.parametrize("model", [pytest.param([], id="fake"), SLOW_REAL,
                                   pytest.param(REAL + ["--seq-len", 6], id="hope-unused-params")])
def test_ddp_two_cpu_ranks_match_one_process(tmp_path, model):
    common = ["--steps", 6, "--batch", 4, "--dropout", 0, "--save-every", 3, *model]
    run_here("--out", tmp_path / "one", *common, "--weights-out", tmp_path / "one.safetensors")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", SCRIPT,
           "--out", str(tmp_path / "ddp"), *map(str, common), "--weights-out", str(tmp_path / "ddp.safetensors")]
    p = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    a, b = load_file(tmp_path / "one.safetensors"), load_file(tmp_path / "ddp.safetensors")
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=0), (k, (a[k] - b[k]).abs().max())
    # rank 0 alone wrote the run: one metrics log, checkpoints at 3 and 6
    assert [c.name for c in list_checkpoints(tmp_path / "ddp")] == ["ckpt-0000003", "ckpt-0000006"]


@pytest.mark.parametrize("model", [pytest.param([], id="fake"), SLOW_REAL])
def test_fsdp_two_cpu_ranks_match_one_process(tmp_path, model):
    """FSDP (fully_shard) over 2 gloo ranks ends with the weights of one process (full checkpoint)."""
    common = ["--steps", 6, "--batch", 4, "--dropout", 0, "--save-every", 3, *model]
    run_here("--out", tmp_path / "one", *common, "--weights-out", tmp_path / "one.safetensors")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", SCRIPT,
           "--out", str(tmp_path / "fsdp"), *map(str, common), "--fsdp"]
    p = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stdout + p.stderr
    a = load_file(tmp_path / "one.safetensors")
    b = load_file(tmp_path / "fsdp" / "ckpt-0000006" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=0), (k, (a[k] - b[k]).abs().max())


def test_fsdp_resume_matches_uninterrupted(tmp_path):
    import shutil
    common = ["--steps", 6, "--batch", 4, "--dropout", 0, "--save-every", 3, *REAL, "--fsdp"]
    base = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", SCRIPT]
    out = tmp_path / "fsdp"
    p = subprocess.run(base + ["--out", str(out), *map(str, common)], env=ENV, capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stdout + p.stderr
    full = load_file(out / "ckpt-0000006" / "model.safetensors")
    # roll the run back to step 3 (as if killed there) and resume it
    shutil.rmtree(out / "ckpt-0000006")
    (out / "latest").write_text("ckpt-0000003")
    p = subprocess.run(base + ["--out", str(out), *map(str, common), "--resume"], env=ENV, capture_output=True,
                       text=True, timeout=180)
    assert p.returncode == 0, p.stdout + p.stderr
    resumed = load_file(out / "ckpt-0000006" / "model.safetensors")
    for k in full:
        assert torch.equal(full[k], resumed[k]), k


@pytest.mark.slow
def test_twenty_sigkills_then_resume_is_bit_identical(tmp_path):
    """SIGKILL at 20 moments (during steps, saves and prunes: a checkpoint every step, keep 3), resuming
    each time: the final weights are bitwise those of the uninterrupted run, and no half checkpoint or
    temp file is left."""
    steps = ["--steps", 60, "--save-every", 1, "--eval-every", 1000]
    run_here("--out", tmp_path / "ref", *steps, "--weights-out", tmp_path / "ref.safetensors")
    out = tmp_path / "killed"
    import random

    rnd = random.Random(0)
    kills = 0
    while kills < 20:
        p = start("--out", out, *steps, "--delay", 0.02, *(["--resume"] if list_checkpoints(out) else []))
        before = len(list_checkpoints(out)) and int(list_checkpoints(out)[-1].name[5:])
        wait_for(lambda: list_checkpoints(out) and int(list_checkpoints(out)[-1].name[5:]) > before, p, timeout=120)
        time.sleep(rnd.uniform(0.0, 0.06))
        if p.poll() is not None:
            break  # finished before we could kill it
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
        kills += 1
        for c in list_checkpoints(out):  # every listed checkpoint is whole
            assert load_checkpoint(c).step == int(c.name[5:])
    assert kills >= 15, kills
    r = run("--out", out, *steps, "--resume", "--weights-out", tmp_path / "resumed.safetensors")
    assert "60 steps" in r.stdout
    assert_same_weights(tmp_path / "ref.safetensors", tmp_path / "resumed.safetensors")
    assert not list(out.glob(".tmp-*")) and not list(out.glob(".latest-*"))


def test_two_runs_on_one_out_the_second_is_refused(tmp_path):
    """The second run on a busy --out fails at once naming the first; the first is untouched."""
    out = tmp_path / "r"
    first = start("--out", out, "--steps", 40, "--save-every", 10, "--delay", 0.03)
    metrics = out / "metrics.jsonl"
    wait_for(lambda: metrics.exists() and metrics.stat().st_size > 0, first)
    from nlc.train.errors import CheckpointError

    with pytest.raises(CheckpointError, match=f"in use by another run \\(pid {first.pid} on host"):
        run_here("--out", out, "--steps", 40)
    with pytest.raises(CheckpointError, match=f"pid {first.pid}"):
        run_here("--out", out, "--steps", 40, "--resume")
    stdout, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr
    from nlc.train.metrics import read_metrics

    assert [r["step"] for r in read_metrics(out) if "loss" in r] == list(range(1, 41))


def _launch(tmp_path, world, *args):
    """`world` ranks started by hand (no torchrun agent, which would kill the others for us)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(world):
        env = {**ENV, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
               "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world)}
        procs.append(subprocess.Popen([sys.executable, SCRIPT, "--out", str(tmp_path / "ddp"), *map(str, args)],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


@pytest.mark.parametrize("fault", ["--freeze-rank", "--die-rank"], ids=["frozen", "dead"])
def test_ddp_a_frozen_or_dead_peer_is_a_one_line_error(tmp_path, fault):
    procs = _launch(tmp_path, 2, "--steps", 50, "--batch", 4, "--save-every", 2, "--dist-timeout", 5,
                    fault, 1, "--fault-step", 4)
    try:
        t = time.time()
        _, err = procs[0].communicate(timeout=90)  # torch's default: 30 minutes
        assert time.time() - t < 80
        assert procs[0].returncode == 2, err
        lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert len(lines) == 1 and "rank 0: lost contact with another rank at step" in lines[0], err
        assert "--dist-timeout 5 s" in lines[0] and "Traceback" not in err, err
        assert "raise --dist-timeout" in err
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.communicate()


def test_ddp_cli_prints_one_report(tmp_path):
    spec = str(HERE.parents[1] / "specs" / "transformer.nl")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "nlc",
           "train", spec, "--steps", 2, "--batch", 4, "--seq-len", 32, "--no-progress", "--eval-every", 0,
           "--threads", 1, "--data", str(HERE.parents[1] / "nlc" / "train" / "loop.py"), "--out", tmp_path / "r",
           "--dist-timeout", 60, "--set", "dim=16", "--set", "heads=2", "--set", "layers=1"]
    p = subprocess.run(list(map(str, cmd)), env=ENV, capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.count("trained Transformer") == 1, p.stdout
