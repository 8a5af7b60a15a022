"""scripts/lm_wall.py: the equal-wall-time view of an LM sweep, read from the cells' training logs."""
import json
from pathlib import Path

import pytest

def _cell(root: Path, name: str, spec: str, seed: int, curve, status="ok"):
    d = root / "cells" / f"{name}-s{seed}"
    (d / "run").mkdir(parents=True)
    cell = dict(spec=spec, model=None, task="lm", seed=seed, grid={}, options=dict(batch=2, seq_len=4))
    res = dict(cell=cell, status=status, params=100, metrics=dict(train_s=curve[-1][0]))
    (d / "result.json").write_text(json.dumps(res))
    (d / "run" / "metrics.jsonl").write_text("".join(json.dumps(dict(step=s, time=t, bpb=b)) + "\n"
                                                     for s, (t, b) in enumerate(curve, 1)))


def test_bpb_at_each_models_finish_time(tmp_path, script):
    w = script("lm_wall")
    _cell(tmp_path, "fast", "fast", 0, [(1.0, 5.0), (2.0, 4.0)])
    _cell(tmp_path, "fast", "fast", 1, [(1.0, 5.0), (2.0, 3.0)])
    _cell(tmp_path, "slow", "slow", 0, [(1.0, 7.0), (2.0, 6.0), (3.0, 5.5), (10.0, 2.0)])
    _cell(tmp_path, "bad", "bad", 0, [(1.0, 9.0)], status="diverged")  # not a finished run: left out
    cells = w.read_cells(tmp_path)
    assert set(cells) == {"fast", "slow"} and len(cells["fast"]) == 2
    assert cells["slow"][0][2][-1] == (10.0, 2.0, 4 * 8)  # (time, bpb, tokens at step 4 of 2 x 4)
    assert w.at_time(cells["slow"][0][2], 2.0, windows=1) == (6.0, False)
    assert w.at_time(cells["slow"][0][2], 2.5) == (pytest.approx(18.5 / 3), False)  # the windows logged at 1, 2 and 3 s
    assert w.at_time(cells["fast"][0][2], 10.0, windows=1) == (4.0, True)
    lines = w.table(cells).splitlines()
    assert "bpb at 2 s (fast ends)" in lines[0] and "bpb at 10 s (slow ends)" in lines[0]
    fast = next(x for x in lines if x.startswith("| fast"))
    slow = next(x for x in lines if x.startswith("| slow"))
    assert "| 4.250 ± 0.354 | 4.250 ± 0.354 (ended) |" in fast  # at its own end, then ended: (5+4)/2, (5+3)/2
    assert slow.endswith("| 1 | 10 | 3 | 6.500 | 4.500 |")  # 1 seed, 10 s, 32 tokens in 10 s; (7+6)/2, (6+5.5+2)/3
    timed = w.read_cells(tmp_path, {"slow": 0.5})  # steps timed at 0.5 s each: 4 steps end at 2 s
    assert timed["slow"][0][1] == 2.0 and [c[0] for c in timed["slow"][0][2]] == [0.5, 1.0, 1.5, 2.0]
