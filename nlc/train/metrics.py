"""The run's metrics log: one JSON object per line in `metrics.jsonl` (+ TensorBoard if asked).

Train lines carry `step, loss, bpb, lr, tok_s, grad_norm` and every entry of the model's
`out.stats` (per-level `"<level>/update_norm"`, `"<level>/surprise"`, ...); validation
lines carry `step, val_loss, val_bpb` and `gain/<level>`. `plot.py` reads the file back.

The JSONL file is the source of truth and always written; `nlc train --log SINK` adds a sink
(LOG_SINKS) that receives every number of every line as a scalar under the same name, at the
line's step (a NaN/inf, written as null in the JSONL, is left out there too).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

LN2 = math.log(2)
METRICS = "metrics.jsonl"
# what `nlc train --log` accepts, besides the JSONL log that is always written
LOG_SINKS = ("tensorboard",)
TENSORBOARD_DIR = "tb"


def to_float(v) -> float:
    return float(v.detach().float().mean()) if hasattr(v, "detach") else float(v)


def read_metrics(run_dir) -> list[dict]:
    path = Path(run_dir) / METRICS if Path(run_dir).is_dir() else Path(run_dir)
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:  # a line cut short by a kill
            pass
    return out


class MetricsLog:
    def __init__(self, run_dir, enabled: bool = True, tensorboard: bool = False, resume_step: int | None = None):
        self.path = Path(run_dir) / METRICS
        self.enabled, self.f, self.tb = enabled, None, None
        if not enabled:
            return
        if resume_step is not None:
            self._truncate(resume_step)
        elif self.path.exists():
            self.path.unlink()
        self.f = open(self.path, "a")
        if tensorboard:
            self.tb = make_tensorboard(run_dir)

    def _truncate(self, step: int) -> None:
        """Drop lines logged after the checkpoint we resume from (a killed run got further)."""
        keep = [r for r in read_metrics(self.path) if r.get("step", 0) <= step]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))
        os.replace(tmp, self.path)

    def log(self, row: dict) -> None:
        if not self.enabled:
            return
        row = {k: (to_float(v) if not isinstance(v, (int, str)) else v) for k, v in row.items()}
        # NaN/inf are not JSON: write them as null so the file stays parseable
        row = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
        self.f.write(json.dumps(row) + "\n")
        self.f.flush()
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, row["step"])

    def close(self) -> None:
        if self.f is not None:
            self.f.close()
            self.f = None
        if self.tb is not None:
            self.tb.close()
            self.tb = None


def tensorboard_missing() -> str | None:
    """Why TensorBoard logging cannot work here (None when it can)."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except Exception as e:  # noqa: BLE001 - ImportError, or tensorboard broken in another way
        return f"tensorboard is not installed ({str(e).splitlines()[0][:120] if str(e) else type(e).__name__})"
    return None


def make_tensorboard(run_dir):
    """A SummaryWriter in run_dir/tb, or None (with a note) when tensorboard is not installed."""
    why = tensorboard_missing()
    if why is not None:
        print(f'note: TensorBoard logging asked for but {why}: pip install "nlc[tensorboard]"')
        return None
    from torch.utils.tensorboard import SummaryWriter
    return SummaryWriter(str(Path(run_dir) / TENSORBOARD_DIR))
