"""scripts/inner_margin.py: a trained run's weights read at other values of its inner step size."""
import json

import pytest
import torch

import nlc
from nlc.cli import main
from nlc.train.checkpoint import load_checkpoint
from nlc.train.data import get_batch, load_data
from nlc.train.loop import train

TINY = dict(dim=16, heads=2, layers=1, chunk=4)


@pytest.fixture
def run(tmp_path, text):
    data = tmp_path / "data.txt"
    data.write_bytes(text)
    sets = [x for k, v in TINY.items() for x in ("--set", f"{k}={v}")]
    assert main(["train", "titans:TitansLMM", *sets, "--data", str(data), "--steps", "4", "--batch", "2",
                 "--seq-len", "16", "--warmup", "0", "--seed", "3", "--no-progress", "--out", str(tmp_path / "run")]) == 0
    return tmp_path / "run", str(data)


def test_rows_at_the_trained_value_are_the_runs_model(run, script):
    im = script("inner_margin")
    path, data = run
    rows = im.margin(path, None, "lr_max", [None, 1.0, 0.0, 50.0], steps="3-4", data=data)
    head = next(rows)
    assert "ckpt-0000004 (step 4), TitansLMM; 2 batches: the training batches of steps 3-4 (batch 2, length 16, seed 3)" in head
    (_, frozen, s_f, _), (_, at1, s1, b1), (_, at0, s0, _), (_, at50, _, _) = rows
    ck = load_checkpoint(path, None, strict_spec=False)
    batches, _ = im.batches_of(ck, "3-4", data)
    # the run's own model (spec, --set values, weights) on the same batches: the row at lr_max = 1, its default
    ref = nlc.load(path).eval()
    assert at1 == pytest.approx(im.score(ref, batches)[0], rel=1e-6) and b1 == 0
    # the frozen row: the same model with every in-context level frozen by nlc.freeze
    assert frozen == pytest.approx(im.score(nlc.freeze(nlc.load(path), "inner").eval(), batches)[0], rel=1e-6)
    assert set(s1) == set(s0) == {"lmm.0.mem/surprise"} and s_f == {}  # a frozen level does not learn: no surprise
    assert len({frozen, at1, at0, at50}) == 4  # each value changes the model: the override reaches the rule


def test_steps_count_from_one_as_the_log_does(run, script):
    """Step n of the log trained on batch n - 1: `--steps 1-2` are the first two batches the run saw."""
    im = script("inner_margin")
    path, data = run
    ck = load_checkpoint(path, None, strict_spec=False)
    (x1, _), (x2, _) = im.batches_of(ck, "1-2", data)[0]
    train_arr = load_data(data).train
    assert torch.equal(x1, get_batch(train_arr, 2, 16, 3, 0)[0]) and torch.equal(x2, get_batch(train_arr, 2, 16, 3, 1)[0])
    for bad in ("0-2", "3-1", "x"):
        with pytest.raises(im.MarginError, match="--steps"):
            im.parse_steps(bad)


def test_a_step_past_the_edge_counts_blown_batches(run, script):
    im = script("inner_margin")
    path, data = run
    _, (_, loss, stats, blown) = im.margin(path, None, "lr_max", [1e4], steps="1-2", data=data)
    assert blown == 2 and loss != loss and stats == {}  # every batch blew up: no finite mean


def test_main_prints_a_row_per_value(run, script, capsys):
    path, data = run
    assert script("inner_margin").main([str(path), "--values", "0.5,1", "--data", data]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "batches: " in out[0] and "validation windows of 16 bytes of --data" in out[0]
    assert out[1].startswith("lr_max=0.5: loss ") and "surprise: lmm.0.mem " in out[1]
    assert out[2].startswith("lr_max=1: loss ")
    assert out[3].startswith("frozen (--freeze inner): loss ")


def test_bad_input_is_a_message(run, script, capsys):
    path, data = run
    im = script("inner_margin")
    assert im.main([str(path), "--ckpt", "ckpt-0000099", "--data", data]) == 2
    assert "no run or checkpoint at" in capsys.readouterr().err
    assert im.main([str(path), "--param", "nope", "--data", data]) == 2
    assert "no parameter 'nope'" in capsys.readouterr().err


def _cell(root, text, task="lm", **spec_set):
    data = root / "data.txt"
    data.write_bytes(text)
    cell = root / "cell"
    cell.mkdir()
    (cell / "cell.json").write_text(json.dumps(dict(spec="titans:TitansLMM", model=None, task=task, seed=2, grid={},
                                                    spec_set=spec_set)))
    torch.manual_seed(0)
    m = nlc.compile("titans:TitansLMM", **spec_set)
    train(m, str(data), steps=2, batch=2, seq_len=16, warmup=0, seed=2, out_dir=cell / "run", progress=False, plot=False)
    return cell, str(data), m


def test_a_sweep_cell_is_read_from_its_cell_record(tmp_path, text, script):
    """A sweep cell's run/ has checkpoints but no spec record: the spec and --set values come from cell.json,
    and --values replaces the cell's own lr_max."""
    im = script("inner_margin")
    cell, data, m = _cell(tmp_path, text, **TINY, lr_max=0.7)
    head, (_, at07, _, _), (_, at1, _, _) = im.margin(cell, None, "lr_max", [0.7, 1.0], steps="1-2", data=data)
    assert "ckpt-0000002 (step 2), TitansLMM; 2 batches: the training batches of steps 1-2 (batch 2, length 16, seed 2)" in head
    batches, _ = im.batches_of(load_checkpoint(cell / "run", None, strict_spec=False), "1-2", data)
    assert at07 == pytest.approx(im.score(m.eval(), batches)[0], rel=1e-6) and at1 != at07


def test_a_cell_of_another_task_is_refused(tmp_path, text, script):
    im = script("inner_margin")
    cell, data, _ = _cell(tmp_path, text, task="mqar", **TINY)
    with pytest.raises(im.MarginError, match="task 'mqar'"):
        next(im.margin(cell, None, "lr_max", [1.0], data=data))
