"""`nlc sweep`: grid parsing and its errors, a 2 x 2 grid of tiny models run in subprocesses, resuming
(finished cells skipped, unfinished and stale ones re-run), the rows, table and plots it writes."""
import csv
import json
import signal
import subprocess
import sys
import time

import pytest

from nlc.cli import main
from nlc.sweep import SweepError, make_cells, parse_grid, parse_models

# tiny models and a tiny MQAR: each cell is a few seconds, most of it starting python and torch
TINY = ["--set", "dim=16", "--set", "layers=1", "--set", "heads=2", "--set", "steps=3", "--set", "batch=4",
        "--set", "pairs=2", "--set", "seq_len=16", "--set", "eval_batches=1", "--set", "warmup=1"]


def test_parse_grid_types_and_errors():
    assert parse_grid(["chunk=8,16", "lr=1e-3,3e-3"]) == {"chunk": [8, 16], "lr": [1e-3, 3e-3]}
    for bad, words in ((["chunk"], "KEY=V1"), (["chunk=8,,16"], "empty value"), (["chunk=8", "chunk=16"], "twice"),
                       (["seed=1,2"], "--seeds"), (["chunk=8,8"], "repeated"), (["=8"], "KEY=V1")):
        with pytest.raises(SweepError, match=words):
            parse_grid(bad)
    with pytest.raises(SweepError, match="empty model"):
        parse_models("TitansLMM,")


def test_cells_route_keys_to_the_task_or_the_spec():
    cells = make_cells(["titans:TitansLMM"], [None], "mqar", {"lr": [1e-3, 1e-2], "chunk": [8, 16]},
                       {"steps": 5}, seeds=2)
    assert len(cells) == 2 * 2 * 2 and len({c.dirname() for c in cells}) == 8
    c = cells[0]
    assert c.options["lr"] == 1e-3 and c.options["steps"] == 5 and "lr" not in c.spec_set
    assert c.spec_set["chunk"] == 8 and c.spec_set["vocab"] == 192  # MQAR sizes the vocabulary to its tokens
    # NAME.KEY: a spec parameter for one spec or model only (the Transformer has no chunk)
    cells = make_cells(["transformer", "titans:TitansLMM"], [None], "mqar", {}, {"TitansLMM.chunk": 8}, seeds=1)
    assert [c.spec_set.get("chunk") for c in cells] == [None, 8]
    with pytest.raises(SweepError, match="called 'hop'"):
        make_cells(["transformer"], [None], "mqar", {}, {"hop.mem_chunk": 8}, seeds=1)


def test_first_seed_names_the_same_cells_as_a_longer_run():
    # seeds 1 and 2 run on their own are seeds 1 and 2 of --seeds 3: same identity, same folder, so
    # a sweep whose seed 0 ran elsewhere (or was lost) adds the others without re-running it
    three = make_cells(["titans:TitansLMM"], [None], "mqar", {"lr": [1e-3]}, {"steps": 5}, seeds=3)
    later = make_cells(["titans:TitansLMM"], [None], "mqar", {"lr": [1e-3]}, {"steps": 5}, seeds=2, first_seed=1)
    assert [c.seed for c in later] == [1, 2]
    assert [c.identity() for c in later] == [c.identity() for c in three[1:]]
    assert [c.dirname() for c in later] == [c.dirname() for c in three[1:]]
    with pytest.raises(SweepError, match="--first-seed -1"):
        make_cells(["titans:TitansLMM"], [None], "mqar", {}, {}, seeds=1, first_seed=-1)


@pytest.mark.parametrize("args, words", [
    (["--grid", "nosuch=1,2"], "nosuch"),                        # the compiler's unknown-parameter error
    (["--model", "NoSuchModel"], "NoSuchModel"),
    (["--seeds", "0"], "--seeds 0"),
    (["--grid", "lr=1e-3", "--set", "lr=1e-2"], "both"),
    (["--set", "pairs=40", "--set", "seq_len=64"], "too short"),
    (["--set", "pairs=80", "--set", "seq_len=512"], "--set keys=80"),
    (["--set", "keys=0"], "keys=0"),
    (["--grid", "steps=0,1"], "steps=0"),
    (["--plot-x", "chunk"], "not a --grid key"),
])
def test_bad_sweep_input_is_a_clear_error(args, words, tmp_path, capsys):
    assert main(["sweep", "specs/titans.nl", "--task", "mqar", "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
    assert not (tmp_path / "cells").exists()  # nothing started


@pytest.mark.parametrize("mix, words", [("train_mix=64-4", "LENxPAIRS"), ("eval_mix=512x128", "at most 64 pairs"),
                                        ("train_mix=16x8", "LEN >= 4 x PAIRS")])
def test_bad_mqar_mix_is_a_clear_error_before_any_cell(mix, words, tmp_path, capsys):
    assert main(["sweep", "transformer", "--task", "mqar_mix", "--set", mix, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
    assert not (tmp_path / "cells").exists()


def test_more_keys_let_the_mix_score_zoologys_largest_configurations(tmp_path, capsys):
    args = ["sweep", "transformer", "--task", "mqar_mix", "--set", "eval_mix=512x128/1024x256", "--out", str(tmp_path)]
    assert main([*args, "--set", "keys=256", "--dry-run"]) == 0
    assert "'vocab': 384" in capsys.readouterr().out  # 64 + 256 keys + 64 values
    assert main(args) == 2 and "at most 64 pairs" in capsys.readouterr().err


def test_sweep_runs_resumes_and_reports(tmp_path, capsys):
    # --jobs 0 runs the cells inside this process: the same cell code without 6 x starting torch
    # (the subprocess path, with a real interruption, is the slow test below)
    out = tmp_path / "sw"
    argv = ["sweep", "transformer", "titans:TitansLMM", "--task", "mqar", "--grid", "lr=1e-3,1e-2",
            "--out", str(out), "--jobs", "0", *TINY]
    assert main(argv) == 0
    rows = [json.loads(ln) for ln in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}
    assert {(r["model"], r["lr"]) for r in rows} == {(m, lr) for m in ("transformer", "titans:TitansLMM")
                                                     for lr in (1e-3, 1e-2)}
    assert all(0 <= r["acc"] <= 1 and "acc@32" in r and "acc@64" in r and r["params"] > 0 for r in rows)
    assert len(list(csv.DictReader(open(out / "results.csv")))) == 4
    md = (out / "results.md").read_text()
    assert "best grid point per model" in md and md.count("| titans:TitansLMM |") == 2 + 2 + 1
    assert (out / "sweep-mqar-acc-vs-lr.png").stat().st_size > 1000
    assert (out / "sweep-mqar-by-length.png").stat().st_size > 1000

    # an interrupted sweep: one cell killed before it wrote its result (its folder and log are there),
    # one whose result belongs to another cell (a stale folder): both run again, the other two do not
    cells = sorted((out / "cells").iterdir())
    (cells[0] / "result.json").unlink()
    stale = json.loads((cells[1] / "result.json").read_text())
    stale["cell"]["options"]["steps"] = 999
    (cells[1] / "result.json").write_text(json.dumps(stale))
    kept = {c: (c / "result.json").stat().st_mtime_ns for c in cells[2:]}
    capsys.readouterr()
    assert main(argv) == 0
    log = capsys.readouterr().out
    assert "4 cells, 2 already done, 2 to run" in log
    assert all((c / "result.json").stat().st_mtime_ns == t for c, t in kept.items())
    assert all(json.loads((c / "result.json").read_text())["status"] == "ok" for c in cells)
    assert main([*argv, "--dry-run"]) == 0
    assert capsys.readouterr().out.count("done  ") == 4
    # --report-only: the tables from what is done, nothing run (here: a fresh folder, nothing done)
    fresh = tmp_path / "fresh"
    assert main([*argv[:-len(TINY) - 4], "--out", str(fresh), *TINY, "--report-only"]) == 0
    assert (fresh / "results.md").read_text().count("| not run |") == 4 and not (fresh / "cells").exists()


@pytest.mark.slow  # six processes each importing torch: ~80 s at load 5 on 2 cores
def test_sweep_in_processes_interrupted_then_resumed(tmp_path):
    out = tmp_path / "sw"
    argv = [sys.executable, "-m", "nlc", "sweep", "transformer", "titans:TitansLMM", "--task", "mqar",
            "--grid", "lr=1e-3,1e-2", "--out", str(out), "--jobs", "2", *TINY]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while not list(out.glob("cells/*/result.json")) and time.time() < deadline and p.poll() is None:
        time.sleep(0.2)
    p.send_signal(signal.SIGINT)  # Ctrl-C: the sweep stops its running cells and exits
    log = p.communicate(timeout=120)[0]
    finished = len(list(out.glob("cells/*/result.json")))
    assert p.returncode == 130 and 1 <= finished < 4, (p.returncode, log)
    assert not (out / "results.jsonl").exists()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"4 cells, {finished} already done, {4 - finished} to run" in r.stdout
    rows = [json.loads(ln) for ln in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}


def test_mqar_mix_report_draws_accuracy_per_configuration(tmp_path):
    """mqar_mix's `acc@LENxPAIRS` metrics get the by-configuration plot (Zoology's figure), not the by-length one."""
    from nlc.sweep_report import _config, plots
    from nlc.train.ontask import TASKS
    assert _config("acc@256x16") == (16, 256) and _config("acc@256") is None and _config("acc_2xpairs") is None
    rows = [dict(model=m, seed=s, lr=1e-3, status="ok", wall_s=1.0, acc=0.5, **{"acc@64x4": 0.9 - s / 10,
            "acc@256x64": 0.2, "acc@128x32": 0.4}) for m in ("a", "b") for s in (0, 1)]
    metrics = ["acc", "acc@64x4", "acc@256x64", "acc@128x32"]
    paths = plots(rows, tmp_path, TASKS["mqar_mix"], ["lr"], metrics)
    assert [p.name for p in paths] == ["sweep-mqar_mix-acc.png", "sweep-mqar_mix-by-config.png"]
    assert all(p.stat().st_size > 1000 for p in paths)


def test_report_numbers_keep_their_trailing_zeros():
    # a bpb of 2.0004 printed "2" beside 1.986 in a results table: it read as rounder than it was
    from nlc.sweep_report import _fmt, _pm
    assert [_fmt(v) for v in (2.0004, 1.986, 1409.3, 900.7, 0.291, 0.001, 12345.0)] == \
        ["2.000", "1.986", "1409", "900.7", "0.291", "0.001", "12,345"]
    assert _fmt(float("nan")) == "nan" and _fmt(3) == "3" and _fmt(None) == ""
    assert _pm((2.0, 0.013)) == "2.000 ± 0.013" and _pm((2.0, 0.0)) == "2.000" and _pm(None) == "—"
