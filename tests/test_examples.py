"""The shipped examples run as written: a stale sed pattern in swap_rule.sh now fails it."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_swap_rule_script(tmp_path):
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
               TMPDIR=str(tmp_path))
    r = subprocess.run(["bash", str(ROOT / "examples" / "swap_rule.sh")], capture_output=True, text=True,
                       env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "matched nothing" not in r.stderr
    # each edit shows up in the diff it prints, and the bad clock is a compiler error
    for want in ("rule dgd(lr = sigmoid(linear(h, out = heads))", "l2         dgd", "huber      dgd",
                 "momentum = 0.9, layers = all", "variant = independent", "q = l2norm(conv(mq(h))",
                 "task-loss  M3", "a clock counts whole tokens"):
        assert want in r.stdout + r.stderr, want
