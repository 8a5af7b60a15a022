"""The equal-wall-time view of an `nlc sweep --task lm` folder (docs/results.md, "Language modelling at
~1M parameters"), read from what the cells already logged: no extra runs.

Every cell's training log (`cells/*/run/metrics.jsonl`) has, each 10 steps, the mean training loss
of those 10 batches ("bpb": batches drawn at random from the 11 MB training split, each seen once,
so it estimates held-out bpb) and the seconds since training started ("time"). For each model this
prints the loop's tokens/s and that bpb (the mean of the last 3 windows, 30 steps) at common wall-clock budgets: the mean training time of each model (the shortest
first). A model whose run had already ended by then shows its last window, marked "(ended)": it
had no more steps to spend, so the figure is what its run reached, not what the budget would
have bought it under a longer schedule. Mean ± sample std over seeds; one row per model.

    python scripts/lm_wall.py SWEEP_DIR [--plot PNG] [--s-per-step MODEL=S ...]
"""
import argparse
import json
import statistics
from pathlib import Path


def read_cells(sweep: Path, s_per_step: dict | None = None) -> dict:
    """model label -> list of (params, train_s, [(time, bpb, tokens), ...]) over its finished seeds.
    `s_per_step` {label: seconds}: time = step x that (a speed measured interleaved, e.g. by
    scripts/lm_speed.py) instead of the logged time, which moves with the box's load cell by cell."""
    s_per_step = s_per_step or {}
    from nlc.sweep_report import _label
    out: dict = {}
    for res_path in sorted(sweep.glob("cells/*/result.json")):
        res = json.loads(res_path.read_text())
        if res.get("status") != "ok":
            continue
        log = res_path.parent / "run" / "metrics.jsonl"
        c = res["cell"]
        tok_per_step = int(c["options"]["batch"]) * int(c["options"]["seq_len"])
        rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        label = _label(c)
        sps = s_per_step.get(label.split(":")[-1])
        curve = [(r["step"] * sps if sps else r["time"], r["bpb"], r["step"] * tok_per_step)
                 for r in rows if "time" in r and "bpb" in r]
        train_s = curve[-1][0] if sps else res["metrics"]["train_s"]
        out.setdefault(label, []).append((res["params"], train_s, curve))
    return out


def at_time(curve, t: float, windows: int = 3) -> tuple[float, bool]:
    """The mean of the `windows` logged windows ending at the first one logged at or after t seconds
    (3 windows: the last 30 steps; one window of 10 batches moves by ~0.1 bpb with their content),
    and whether the run had ended before t (then its last windows)."""
    i = next((i for i, (time_, _, _) in enumerate(curve) if time_ >= t), None)
    ended = i is None
    i = len(curve) - 1 if ended else i
    last = [bpb for _, bpb, _ in curve[max(0, i - windows + 1):i + 1]]
    return sum(last) / len(last), ended


def mean_std(xs, digits: int = 3) -> str:
    return f"{statistics.mean(xs):.{digits}f}" + (f" ± {statistics.stdev(xs):.{digits}f}" if len(xs) > 1 else "")


def table(cells: dict) -> str:
    budgets = sorted((statistics.mean(r[1] for r in runs), m) for m, runs in cells.items())
    head = ["model", "params", "seeds", "train s", "loop tok/s"] + [f"bpb at {t:.0f} s ({m.split(':')[-1]} ends)" for t, m in budgets]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t_own, m in budgets:
        runs = cells[m]
        # tokens per second of the loop alone: tokens and time at the last logged step
        tok_s = statistics.mean(r[2][-1][2] / r[2][-1][0] for r in runs)
        row = [m, f"{runs[0][0]:,}", str(len(runs)), mean_std([r[1] for r in runs], 0), f"{tok_s:,.0f}"]
        for t, _ in budgets:
            vals = [at_time(r[2], t) for r in runs]
            ended = all(e for _, e in vals)
            row.append(mean_std([v for v, _ in vals]) + (" (ended)" if ended and t > t_own + 1e-9 else ""))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def plot(cells: dict, path: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for m, runs in cells.items():
        for i, (_, _, curve) in enumerate(runs):
            ax.plot([c[0] for c in curve], [c[1] for c in curve], color=f"C{list(cells).index(m)}", alpha=0.7,
                    label=m if i == 0 else None)
    ax.set_xscale("log")
    ax.set_xlabel("training time, s (logged, or steps x --s-per-step)")
    ax.set_ylabel("training bpb (10-step window, unseen batches)")
    ax.set_ylim(top=6)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep", type=Path)
    ap.add_argument("--plot", type=Path, help="also draw training bpb against wall time, one line per seed")
    ap.add_argument("--s-per-step", action="append", default=[], metavar="MODEL=S",
                    help="time a model's steps at S seconds each (its interleaved speed) instead of its logged times")
    a = ap.parse_args()
    try:
        sps = {k: float(v) for k, v in (x.split("=", 1) for x in a.s_per_step)}
    except ValueError:
        raise SystemExit(f"--s-per-step {a.s_per_step}: expected MODEL=SECONDS, e.g. hope=1.663") from None
    cells = read_cells(a.sweep, sps)
    if not cells:
        raise SystemExit(f"{a.sweep}: no finished lm cells (cells/*/result.json with status ok)")
    print(table(cells))
    if a.plot:
        plot(cells, a.plot)
        print(f"\nplot: {a.plot}")


if __name__ == "__main__":
    main()
