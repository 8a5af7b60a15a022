"""The model-running commands end user mistakes with exit 2 and a message, never a traceback."""
import pytest

from nlc.cli import main

TINY = ["--set", "dim=16", "--set", "heads=2", "--set", "layers=1"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "r"
    assert main(["train", "specs/transformer.nl", "--steps", "2", "--batch", "2", "--seq-len", "32", "--out", str(out),
                 "--no-progress", "--eval-every", "0", "--threads", "1", *TINY]) == 0
    return out


@pytest.mark.parametrize("argv,msg", [
    (["train", "specs/hope.nl", "--steps", "0"], "at least 1"),
    (["train", "specs/hope.nl", "--data", "/nonexistent/corpus"], "does not exist"),
    (["train", "specs/nope.nl"], "no such file"),
    (["eval", "/nonexistent/run"], "no such run directory"),
    (["generate", "specs"], "not an nlc run"),
    (["export", "/nonexistent.nl"], "no such spec"),
])
def test_user_errors_exit_2(argv, msg, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err


def test_eval_niah_bad_lengths(run_dir, capsys):
    assert main(["eval", str(run_dir), "--task", "niah", "--lengths", "64"]) == 2
    assert "too short" in capsys.readouterr().err
    assert main(["eval", str(run_dir), "--task", "niah", "--lengths", "x"]) == 2


def test_resume_with_another_spec_is_refused(run_dir, capsys):
    assert main(["train", "specs/titans.nl", "--out", str(run_dir), "--resume", "--steps", "3", *TINY]) == 2
    assert "cannot resume" in capsys.readouterr().err


def test_eval_and_generate_a_run(run_dir, capsys):
    assert main(["eval", str(run_dir), "--task", "bpb", "--seq-len", "32"]) == 0
    assert "validation bpb" in capsys.readouterr().out
    assert main(["generate", str(run_dir), "--max-new", "5", "--prompt", "def "]) == 0
    assert capsys.readouterr().out.startswith("def ")


@pytest.mark.parametrize("spec", ["titans:TitansLMM", "hope", "cms", "transformer"])
@pytest.mark.parametrize("what", ["py", "fx"])
def test_emit_program(spec, what, capsys):
    """`nlc compile --emit py|fx` prints the traced segment program (it crashed on every memory spec)."""
    rc = main(["compile", spec, "--emit", what, "--set", "dim=16", "--set", "layers=1"])
    out = capsys.readouterr().out
    assert rc == 0 and len(out) > 200
    assert ("def forward" in out) if what == "py" else ("placeholder" in out)


def test_plot_missing_run_is_a_clear_error(tmp_path, capsys):
    rc = main(["plot", str(tmp_path / "nope")])
    err = capsys.readouterr().err
    assert rc == 2 and "no metrics in" in err and "Traceback" not in err


def test_dump_writes_every_stage(tmp_path, capsys):
    rc = main(["compile", "titans", "--emit", "schedule", "--dump", str(tmp_path), "--set", "dim=16", "--set", "layers=1"])
    assert rc == 0 and "segments: 16 tokens" in capsys.readouterr().out
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["00_load.txt", "01_bind-params.txt", "02_resolve.txt", "03_graph.txt", "04_check-graph.txt",
                     "05_schedule.txt", "06_py.txt", "07_fx.txt"]
    assert all(p.stat().st_size > 0 for p in tmp_path.iterdir())


# ---- training under faults (issue 10, section 3) --------------------------------
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

SMALL = ["--steps", "2", "--batch", "2", "--seq-len", "32", "--no-progress", "--eval-every", "0", "--threads", "1",
         "--data", "nlc/train/loop.py", *TINY]


def test_train_help_names_the_recovery_flags(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for flag in ("--warmup", "--clip", "--weight-decay", "--dist-timeout", "--resume", "--lr"):
        assert flag in out, flag


@pytest.mark.parametrize("case", ["file", "under-file", "proc"])
def test_unwritable_out_exits_2(tmp_path, capsys, case):
    (tmp_path / "f").write_text("x")
    out = {"file": tmp_path / "f", "under-file": tmp_path / "f" / "run", "proc": "/proc/nlc-test/run"}[case]
    assert main(["train", "specs/transformer.nl", "--out", str(out), *SMALL]) == 2
    err = capsys.readouterr().err
    assert "cannot write the run directory" in err and "Traceback" not in err, err


def test_full_disk_at_start_up_exits_2(tmp_path, capsys, monkeypatch):
    import errno

    from nlc.train import checkpoint as C

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(C, "_write_fd", full)
    assert main(["train", "specs/transformer.nl", "--out", str(tmp_path / "r"), *SMALL]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "free disk space" in err


def test_second_run_on_the_same_out_exits_2_naming_the_holder(tmp_path, capsys):
    code = ("import sys, time; from nlc.train.checkpoint import lock_run_dir; lock_run_dir(sys.argv[1]); "
            "print('held', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "r")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["train", "specs/transformer.nl", "--out", str(tmp_path / "r"), *SMALL]) == 2
        err = capsys.readouterr().err
        assert f"in use by another run (pid {holder.pid} on host" in err, err
        assert not (tmp_path / "r" / "spec.json").exists()  # nothing of the holder's run was touched
    finally:
        holder.kill()
        holder.wait()


def test_resume_flags_take_effect_with_a_note(tmp_path, capsys):
    out = str(tmp_path / "r")
    assert main(["train", "specs/transformer.nl", "--out", out, *SMALL]) == 0
    capsys.readouterr()
    assert main(["train", "specs/transformer.nl", "--out", out, "--resume", *SMALL[:-len(TINY)], *TINY,
                 "--steps", "4", "--lr", "1e-4", "--warmup", "3", "--clip", "0.5", "--weight-decay", "0.2"]) == 0
    text = capsys.readouterr().out
    note = next(line for line in text.splitlines() if line.startswith("note: resuming"))
    for part in ("steps=4 (run used 2)", "lr=0.0001 (run used", "warmup=3 (run used", "clip=0.5 (run used 1)",
                 "weight_decay=0.2 (run used"):
        assert part in note, note
    import json

    rec = json.loads((tmp_path / "r" / "ckpt-0000004" / "record.json").read_text())["train_args"]
    assert (rec["lr"], rec["warmup"], rec["clip"], rec["weight_decay"]) == (1e-4, 3, 0.5, 0.2)
    import torch
    groups = torch.load(tmp_path / "r" / "ckpt-0000004" / "state.pt", weights_only=True)["optimizer"]["param_groups"]
    assert groups[0]["initial_lr"] == pytest.approx(1e-4)


def test_blow_up_then_the_hints_recovery_finishes(tmp_path, capsys):
    """End to end: too high an lr stops the run with a hint; the hint's flags finish it."""
    out = str(tmp_path / "r")
    argv = ["train", "specs/transformer.nl", "--out", out, "--steps", "12", "--batch", "2", "--seq-len", "32",
            "--no-progress", "--eval-every", "0", "--threads", "1", "--data", "tests/train/corpus.txt", *TINY,
            "--save-every", "1", "--clip", "0", "--warmup", "4", "--weight-decay", "0", "--lr", "3"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    # the data is the tests' frozen corpus: a source file of nlc (as before) moved the blow-up, and the recovery's
    # success, whenever that file was edited
    blew, kept = re.search(r"blew up by step (\d+)", err), re.search(r"ckpt-(\d+) is kept", err)
    assert blew and kept and 0 < int(kept.group(1)) < int(blew.group(1)), err
    m = re.search(r"--resume --lr (\S+)", err)
    assert m, err
    assert main(argv[:-2] + ["--resume", "--lr", m.group(1)]) == 0
    text = capsys.readouterr().out
    assert m.group(1) == "0.3" and "lr=0.3 (run used 3)" in text and "trained" in text and "12 steps" in text, text


def test_eval_tasks_state_chance(run_dir, capsys):
    """Task accuracies come with their chance level and a word that the run was not trained on the task."""
    assert main(["eval", str(run_dir), "--task", "mqar"]) == 0
    out = capsys.readouterr().out
    assert "(chance 0.0156)" in out and "trained only on text" in out
    assert main(["eval", str(run_dir), "--task", "niah", "--lengths", "128", "-o", str(run_dir / "n.png")]) == 0
    out = capsys.readouterr().out
    assert "chance: 0.10 per digit" in out


def test_resume_a_finished_run(run_dir, tmp_path, capsys):
    """Resuming a run that reached its --steps: one line saying so, no progress bar, no '0 tok/s'."""
    import shutil
    out = tmp_path / "r"
    shutil.copytree(run_dir, out)
    capsys.readouterr()
    assert main(["train", "specs/transformer.nl", "--steps", "2", "--batch", "2", "--seq-len", "32", "--out", str(out),
                 "--resume", "--eval-every", "0", "--threads", "1", *TINY]) == 0
    cap = capsys.readouterr()
    assert "already at step 2 of 2; nothing trained" in cap.out
    assert "tok/s" not in cap.out and "step/s" not in cap.err + cap.out
