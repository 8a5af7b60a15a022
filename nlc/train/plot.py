"""Loss / bpb curves and per-level statistics of a run, from its `metrics.jsonl` (matplotlib Agg)."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from nlc.errors import NlcError
from nlc.train.metrics import read_metrics

_BASE = {"step", "loss", "bpb", "lr", "tok_s", "grad_norm", "time", "val_loss", "val_bpb"}


def _series(rows: list[dict], key: str):
    pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
    return [p[0] for p in pts], [p[1] for p in pts]


def plot_run(run_dir, out_png=None) -> Path:
    """Three panels: train loss, train/val bpb, and every per-level stat (`<level>/<name>`), log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    rows = read_metrics(run_dir)
    if not rows:
        raise NlcError(f"no metrics in {run_dir} (expected {run_dir / 'metrics.jsonl'})",
                       hint="pass the --out folder of an `nlc train` run that has logged a step")
    out_png = Path(out_png) if out_png is not None else run_dir / "loss.png"
    stats = sorted({k for r in rows for k in r if k not in _BASE and "/" in k})
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))

    ax = axes[0]
    ax.plot(*_series(rows, "loss"), label="train")
    ax.plot(*_series(rows, "val_loss"), "o-", label="val")
    ax.set(title="loss (nats/byte)", xlabel="step")
    ax.legend()

    ax = axes[1]
    ax.plot(*_series(rows, "bpb"), label="train")
    ax.plot(*_series(rows, "val_bpb"), "o-", label="val")
    ax.set(title="bits per byte", xlabel="step")
    ax.legend()

    ax = axes[2]
    # group by statistic, one line per level: update norms and surprise differ by orders of magnitude
    by_level = defaultdict(list)
    for k in stats:
        by_level[k.split("/")[0]].append(k)
    for k in stats:
        xs, ys = _series(rows, k)
        if ys:
            ax.plot(xs, ys, label=k)
    if stats and all(v > 0 for k in stats for v in _series(rows, k)[1]):
        ax.set_yscale("log")
    ax.set(title=f"per-level statistics ({len(by_level)} levels)" if stats else "per-level statistics (none logged)",
           xlabel="step")
    if stats:
        ax.legend(fontsize=7)

    fig.suptitle(run_dir.name)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png
