"""`nlc train --log tensorboard`: every number of every JSONL line, read back from the event file
with TensorBoard's own reader, under the same name and step. Skipped without tensorboard."""
import math

import pytest

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from nlc.cli import main  # noqa: E402
from nlc.train.metrics import TENSORBOARD_DIR, read_metrics  # noqa: E402


def test_tensorboard_holds_every_jsonl_scalar(tmp_path, text):
    data = tmp_path / "data.txt"
    data.write_bytes(text[:20000])
    out = tmp_path / "run"
    assert main(["train", "titans:TitansLMM", "--data", str(data), "--steps", "2", "--batch", "2", "--seq-len", "32",
                 "--eval-every", "2", "--out", str(out), "--no-progress", "--threads", "1", "--log", "tensorboard",
                 "--set", "dim=16", "--set", "layers=1", "--set", "heads=2"]) == 0
    want = {}
    for row in read_metrics(out):
        for k, v in row.items():
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                want[(k, row["step"])] = float(v)
    tags = {k for k, _ in want}
    # what the issue names: loss, bpb, lr, tokens/s, each level's statistics, the in-context gain per level
    assert {"loss", "bpb", "lr", "tok_s", "val_bpb"} <= tags
    assert any(t.startswith("gain/") for t in tags) and any(t.endswith("/update_norm") for t in tags)
    ev = EventAccumulator(str(out / TENSORBOARD_DIR), size_guidance={"scalars": 0})
    ev.Reload()
    got = {(tag, e.step): e.value for tag in ev.Tags()["scalars"] for e in ev.Scalars(tag)}
    assert set(got) == set(want)
    for key, v in want.items():
        assert math.isclose(got[key], v, rel_tol=1e-6, abs_tol=1e-6), key  # float32 in the event file


def test_log_flag_is_checked(capsys):
    with pytest.raises(SystemExit):
        main(["train", "hope", "--log", "wandb"])
    assert "invalid choice: 'wandb'" in capsys.readouterr().err


def test_missing_tensorboard_is_a_clear_error_before_training(monkeypatch, capsys, tmp_path):
    import sys
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    assert main(["train", "hope", "--log", "tensorboard", "--steps", "1", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "tensorboard is not installed" in err and 'nlc[tensorboard]' in err
    assert not (tmp_path / "r").exists()
