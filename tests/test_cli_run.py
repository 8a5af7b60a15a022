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
    rc = main(["compile", "titans", "--emit", "plan", "--dump", str(tmp_path), "--set", "dim=16", "--set", "layers=1"])
    assert rc == 0 and "segment length" in capsys.readouterr().out
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["00_load.txt", "01_bind-params.txt", "02_resolve.txt", "03_graph.txt", "04_check-graph.txt",
                     "05_plan.txt", "06_py.txt", "07_fx.txt"]
    assert all(p.stat().st_size > 0 for p in tmp_path.iterdir())
