"""The README's examples run as written (a stale snippet is the first thing a new user hits)."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_python_snippet_runs(monkeypatch, tmp_path):
    block = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    monkeypatch.chdir(tmp_path)  # the snippet names specs by name, so it works from any folder
    scope: dict = {}
    exec(compile(block, "README.md", "exec"), scope)
    assert scope["out"].loss.isfinite()
    assert scope["nxt"].logits.shape[:2] == (2, 16)


def test_ci_reads_the_quick_start():
    """.ci/run installs and trains with the README's own lines; they must be there to read."""
    import subprocess
    import sys
    got = {w: subprocess.run([sys.executable, str(ROOT / ".ci/readme_commands.py"), w], capture_output=True,
                             text=True, check=True).stdout.split("\n")[0] for w in ("install", "main", "test")}
    assert got["install"].startswith("pip install torch==")
    assert got["main"].startswith("nlc train ")
    assert got["test"] == "python -m pytest -q"


def test_spec_example_trains(tmp_path):
    """The README's spec trains: no NaN across its documented lr_max range, and the loss goes down."""
    import torch

    import nlc
    from nlc.train.data import get_batch
    spec = tmp_path / "readme.nl"
    spec.write_text(re.search(r"```nl\n(.*?)```", README, re.S).group(1))
    data = (ROOT / "nlc" / "passes" / "model.py").read_bytes()[:20000]
    for lr_max in (0, 1, 2):
        torch.manual_seed(0)
        m = nlc.compile(str(spec), dim=32, layers=1, lr_max=lr_max)
        opt = m.optimizer()
        losses = []
        for step in range(30):
            x, y = get_batch(data, 4, 64, 0, step)
            loss = m(x, targets=y).loss
            assert torch.isfinite(loss), (lr_max, len(losses))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss))
        assert sum(losses[-5:]) / 5 < losses[0] - 0.5, (lr_max, losses[0], losses[-5:])
