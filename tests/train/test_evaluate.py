import math

import pytest
import torch

from nlc.train import evaluate as E
from nlc.train.plot import plot_run


def test_eval_bpb_untrained_is_about_8_bits(fake, text):
    m = fake()
    bpb = E.eval_bpb(m, text, batch=4, seq_len=32, max_batches=2)
    assert 7.0 < bpb < 9.0  # uniform over 256 bytes is exactly 8 bits
    assert E.eval_bpb(m, text, batch=4, seq_len=32, max_batches=2) == bpb  # deterministic (dropout off)
    assert m.training  # mode restored


def test_eval_does_not_touch_rng(fake, text):
    m = fake()  # (its constructor seeds torch itself)
    torch.manual_seed(0)
    want = torch.rand(3)
    torch.manual_seed(0)
    E.eval_bpb(m, text, batch=2, seq_len=16, max_batches=1)
    E.generate(m, b"ab", max_new=3)
    assert torch.equal(torch.rand(3), want)


def test_eval_mqar_and_niah_heatmap(fake, tmp_path):
    acc = E.eval_mqar(fake(), num_pairs=4, batch=8, n_batches=2)
    assert isinstance(acc, float) and 0.0 <= acc <= 1.0
    res = E.eval_niah(fake(), lengths=[150, 200], depths=[0.0, 0.5, 1.0], n_samples=2, out_png=tmp_path / "niah.png")
    assert set(res.acc) == {(n, d) for n in (150, 200) for d in (0.0, 0.5, 1.0)}
    assert res.png.exists() and res.png.stat().st_size > 5000
    table = res.format()
    assert "150" in table and "0.50" in table


def test_eval_continual_matrix_and_forgetting(fake):
    m = fake(dropout=0.0)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    r = E.eval_continual(m, tasks=("copy", "reverse", "shift3"), steps_per_task=10, batch=8, n=6, eval_batch=16)
    assert len(r.acc) == 3 and all(len(row) == 3 and all(0 <= a <= 1 for a in row) for row in r.acc)
    assert -1.0 <= r.forgetting <= 1.0 and "forgetting" in r.format()
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())  # worked on a copy
    with pytest.raises(ValueError, match="unknown continual tasks"):
        E.eval_continual(m, tasks=("nope",))


def test_generate_carries_state_like_one_long_sequence(fake):
    """Greedy generation with the carried fast state equals recomputing the whole sequence each step."""
    m = fake()
    new = E.generate(m, b"def main(", max_new=12, temperature=0)
    assert len(new) == 12
    seq = list(b"def main(")
    m.eval()
    with torch.no_grad():
        for _ in range(12):
            logits = m(torch.tensor([seq])).logits
            seq.append(int(logits[0, -1].argmax()))
    assert bytes(seq[9:]) == new


def test_generate_sampling_seeded(fake):
    m = fake()
    a = E.generate(m, b"x", max_new=20, temperature=1.0, top_k=5, seed=3)
    b = E.generate(m, b"x", max_new=20, temperature=1.0, top_k=5, seed=3)
    seen = []
    c = E.generate(m, b"", max_new=5, seed=4, callback=seen.append)
    assert a == b and len(a) == 20 and bytes(seen) == c


def test_plot_run_from_metrics(tmp_path):
    import json

    rows = [{"step": s, "loss": 5 - s / 10, "bpb": (5 - s / 10) / math.log(2), "lr": 1e-3,
             "lvl/update_norm": 1 + s, "lvl/surprise": 2.0} for s in range(1, 11)]
    rows += [{"step": 10, "val_loss": 4.2, "val_bpb": 6.0}, {"step": 11, "loss": None}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 12, "lo')
    out = plot_run(tmp_path, tmp_path / "p.png")
    assert out.exists() and out.read_bytes()[:4] == b"\x89PNG"
    from nlc.errors import NlcError
    with pytest.raises(NlcError, match="no metrics in"):  # a clear error for the CLI, not a traceback
        plot_run(tmp_path / "empty")


def test_tensorboard_optional(tmp_path, fake, text):
    from nlc.train.metrics import make_tensorboard

    tb = make_tensorboard(tmp_path)
    try:
        import torch.utils.tensorboard  # noqa: F401
        assert tb is not None
        tb.close()
    except ImportError:
        assert tb is None
