"""scripts/inner_margin.py: a trained run's weights read at other values of its inner step size."""
import math

import pytest
import nlc
import nlc.train.checkpoint
from nlc.cli import main


@pytest.fixture
def run(tmp_path, text):
    data = tmp_path / "data.txt"
    data.write_bytes(text)
    assert main(["train", "titans:TitansLMM", "--set", "dim=16", "--set", "heads=2", "--set", "layers=1", "--set",
                 "chunk=4", "--data", str(data), "--steps", "4", "--batch", "2", "--seq-len", "16", "--warmup", "0",
                 "--seed", "3", "--no-progress", "--out", str(tmp_path / "run")]) == 0
    return tmp_path / "run", str(data)


def test_rows_at_the_trained_value_are_the_runs_model(run, script):
    im = script("inner_margin")
    path, data = run
    rows = im.margin(path, None, "lr_max", [None, 1.0, 0.0, 50.0], steps="3-4", data=data)
    head = next(rows)
    assert "ckpt-0000004 (step 4), TitansLMM, training batches of steps 3-4 (batch 2, length 16, seed 3)" in head
    (_, frozen, s_f), (_, at1, s1), (_, at0, s0), (_, at50, s50) = rows
    # the run's own model (spec, --set values, weights) on the same batches: the row at lr_max = 1, its default
    ref = nlc.load(path).eval()
    ck = nlc.train.checkpoint.load_checkpoint(path, None, strict_spec=False)
    batches, _ = im.batches_of(ck, "3-4", data)
    assert at1 == pytest.approx(im.score(ref, batches)[0], rel=1e-6)
    assert set(s1) == {"lmm.0.mem/surprise"} and s_f == {}  # a frozen level does not learn: no surprise
    assert len({frozen, at1, at0, at50}) == 4  # each value changes the model: the override reaches the rule
    assert math.isfinite(s0["lmm.0.mem/surprise"])


def test_main_prints_a_row_per_value(run, script, capsys):
    path, data = run
    assert script("inner_margin").main([str(path), "--values", "0.5,1", "--data", data]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "validation windows of 16 bytes" in out[0]
    assert out[1].startswith("frozen (--freeze inner): loss ")
    assert out[2].startswith("lr_max=0.5: loss ") and "surprise: lmm.0.mem " in out[2]
    assert out[3].startswith("lr_max=1: loss ")


def test_bad_input_is_a_message(run, script, capsys):
    path, data = run
    im = script("inner_margin")
    assert im.main([str(path), "--ckpt", "ckpt-0000099", "--data", data]) == 2
    assert "no run or checkpoint at" in capsys.readouterr().err
    assert im.main([str(path), "--param", "nope", "--data", data]) == 2
    assert "nope" in capsys.readouterr().err


def test_a_sweep_cell_is_read_from_its_cell_record(tmp_path, text, script):
    """A sweep cell's run/ has checkpoints but no spec record: the spec and --set values come from cell.json."""
    import json

    import torch

    from nlc.train.checkpoint import load_checkpoint
    from nlc.train.loop import train
    im = script("inner_margin")
    data = tmp_path / "data.txt"
    data.write_bytes(text)
    cell = tmp_path / "cell"
    cell.mkdir()
    spec_set = dict(dim=16, heads=2, layers=1, chunk=4)
    (cell / "cell.json").write_text(json.dumps(dict(spec="titans:TitansLMM", model=None, task="lm", seed=2, grid={},
                                                    spec_set=spec_set)))
    torch.manual_seed(0)
    m = nlc.compile("titans:TitansLMM", **spec_set)
    train(m, str(data), steps=2, batch=2, seq_len=16, warmup=0, seed=2, out_dir=cell / "run", progress=False, plot=False)
    head, (_, at1, _), (_, at3, _) = im.margin(cell, None, "lr_max", [1.0, 3.0], steps="1-2", data=str(data))
    assert "ckpt-0000002 (step 2), TitansLMM, training batches of steps 1-2 (batch 2, length 16, seed 2)" in head
    ck = load_checkpoint(cell / "run", None, strict_spec=False)
    batches, _ = im.batches_of(ck, "1-2", str(data))
    assert at1 == pytest.approx(im.score(m.eval(), batches)[0], rel=1e-6) and at3 != at1
