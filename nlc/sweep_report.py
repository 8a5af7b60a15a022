"""What `nlc sweep` writes from its cells' results: rows (JSONL, CSV), a markdown table, plots.

- results.jsonl / results.csv: one row per run (cell and seed): the model, the grid point, the
  seed, status, parameters, wall seconds, the host's load average, every metric.
- results.md: every run; the mean ± sample std over seeds of each grid point; the best grid point
  of each model by the task's headline metric (a learning-rate sweep reports its best lr).
- sweep-<task>-<metric>-vs-<key>.png: the headline metric against each swept numeric key, one
  line per model (and per value of the other swept keys), seed std as error bars; log x when the
  values span 10x or more. sweep-<task>-by-length.png: `acc@L` metrics (held-out lengths) of each
  model's best grid point against L. sweep-<task>-by-config.png: `acc@LENxPAIRS` metrics (mqar_mix)
  of each model's best grid point, one point per configuration ordered by pairs (Zoology's figure).
  Without a numeric key, a bar per model.
"""
from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path


def rows_of(results: list[dict]) -> list[dict]:
    rows = []
    for r in results:
        c = r.get("cell") or {}
        row = dict(model=_label(c), task=c.get("task"), seed=c.get("seed"), **(c.get("grid") or {}),
                   status=r.get("status", "failed"), params=r.get("params"), wall_s=r.get("wall_s"),
                   load=r.get("host_load_start"))
        row.update(r.get("metrics") or {})
        if r.get("status") != "ok":
            row["error"] = r.get("error", "")
        rows.append(row)
    return rows


def _label(c: dict) -> str:
    spec = str(c.get("spec", "?"))
    name = Path(spec.split(":")[0]).stem
    model = c.get("model") or (spec.split(":")[1] if ":" in spec else None)
    return f"{name}:{model}" if model else name


def _sig4(v: float) -> str:
    """4 significant digits; from 1 up, trailing zeros kept ("2.000", not "2": a bpb of 2.0004 beside 1.986
    must not read as a rounder number than it is); below 1, as `.4g` ("0.291", "0.001")."""
    if math.isfinite(v) and 1 <= abs(v) < 1e4:
        return f"{v:.{3 - int(math.floor(math.log10(abs(v))))}f}"
    return f"{v:.4g}"


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else (_sig4(v) if abs(v) < 1e4 else f"{v:,.0f}")
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 1e4:
        return f"{v:,}"
    return "" if v is None else str(v)


def _table(head: list[str], body: list[list]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(_fmt(v) for v in r) + " |" for r in body]
    return "\n".join(out)


def groups(rows: list[dict], grid_keys: list[str]) -> dict:
    """(model, grid values) -> the rows of its seeds, in first-seen order."""
    out: dict = {}
    for r in rows:
        out.setdefault((r["model"], *(r.get(k) for k in grid_keys)), []).append(r)
    return out


def summarise(g: list[dict], metrics: list[str]) -> dict:
    """Mean and sample std (0 for one seed) of each metric over a group's finished seeds."""
    ok = [r for r in g if r["status"] == "ok"]
    s = {"n": len(ok), "of": len(g), "wall_s": statistics.fmean(r["wall_s"] for r in ok) if ok else None}
    for m in metrics:
        vals = [r[m] for r in ok if isinstance(r.get(m), (int, float))]
        s[m] = (statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0) if vals else None
    return s


def best_groups(rows, grid_keys, metric, higher) -> dict:
    """model -> (grid key tuple, summary) of its best grid point by the mean of `metric`."""
    metrics = metric_names(rows)
    best = {}
    for key, g in groups(rows, grid_keys).items():
        s = summarise(g, metrics)
        if s.get(metric) is None:
            continue
        v = s[metric][0] if higher else -s[metric][0]
        if key[0] not in best or v > best[key[0]][2]:
            best[key[0]] = (key, s, v)
    return {m: (k, s) for m, (k, s, _) in best.items()}


def metric_names(rows) -> list[str]:
    skip = {"model", "task", "seed", "status", "params", "wall_s", "load", "error"}
    names = []
    for r in rows:
        for k, v in r.items():
            if k not in skip and k not in names and isinstance(v, float):
                names.append(k)
    return names


def write_report(results: list[dict], out: Path, task, grid_keys: list[str], plot_x: str | None = None) -> list[Path]:
    """Write every file of the module docstring into `out`; return their paths."""
    out = Path(out)
    rows = rows_of(results)
    metrics = [m for m in metric_names(rows) if m not in grid_keys]
    written = [out / "results.jsonl", out / "results.csv", out / "results.md"]
    written[0].write_text("".join(json.dumps(r) + "\n" for r in rows))
    cols = list(dict.fromkeys(k for r in rows for k in r))
    with open(written[1], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    written[2].write_text(markdown(rows, task, grid_keys, metrics))
    written += plots(rows, out, task, grid_keys, metrics, plot_x)
    return written


def markdown(rows, task, grid_keys, metrics) -> str:
    sign = "higher" if task.higher_is_better else "lower"
    chance = f", chance {task.chance:.3g}" if task.chance is not None else ""
    parts = [f"## sweep: task {task.name} (headline metric {task.metric}, {sign} is better{chance})", "",
             "### every run", ""]
    head = ["model", *grid_keys, "seed", "status", "params", *metrics, "wall s", "load"]
    parts.append(_table(head, [[r["model"], *(r.get(k) for k in grid_keys), r["seed"], r["status"], r["params"],
                                *(r.get(m) for m in metrics), r["wall_s"], r["load"]] for r in rows]))
    parts += ["", "wall s: the cell's own time (compile, train, score); load: the host's 1-minute load average "
                  "when the cell started (wall times compare only at similar load)."]
    parts += ["", "### mean ± std over seeds", ""]
    body = []
    for key, g in groups(rows, grid_keys).items():
        s = summarise(g, metrics)
        body.append([*key, f"{s['n']}/{s['of']}", *(_pm(s[m]) for m in metrics), s["wall_s"]])
    parts.append(_table(["model", *grid_keys, "seeds ok", *metrics, "wall s"], body))
    if grid_keys:
        parts += ["", f"### best grid point per model (by mean {task.metric})", ""]
        body = [[m, *k[1:], f"{s['n']}/{s['of']}", *(_pm(s[x]) for x in metrics)]
                for m, (k, s) in best_groups(rows, grid_keys, task.metric, task.higher_is_better).items()]
        parts.append(_table(["model", *grid_keys, "seeds ok", *metrics], body))
    return "\n".join(parts) + "\n"


def _pm(v) -> str:
    if v is None:
        return "—"
    mean, std = v
    return f"{_sig4(mean)} ± {std:.2g}" if std else _sig4(mean)


# ---------------------------------------------------------------------------
# plots

def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _numeric(values) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def plots(rows, out: Path, task, grid_keys, metrics, plot_x=None) -> list[Path]:
    if not rows or task.metric not in metrics:
        return []
    paths = []
    values = {k: list(dict.fromkeys(r.get(k) for r in rows)) for k in grid_keys}
    xs = [plot_x] if plot_x else [k for k in grid_keys if len(values[k]) > 1 and _numeric(values[k])]
    for x in xs:
        paths.append(_plot_against(rows, out, task, grid_keys, metrics, x, values))
    if not xs:
        paths.append(_plot_bars(rows, out, task, grid_keys, metrics))
    lens = sorted(int(m.split("@")[1]) for m in metrics if m.startswith("acc@") and m.split("@")[1].isdigit())
    if len(lens) > 1:
        paths.append(_plot_lengths(rows, out, task, grid_keys, lens))
    configs = [m for m in metrics if _config(m)]
    if len(configs) > 1:
        paths.append(_plot_configs(rows, out, task, grid_keys, sorted(configs, key=_config)))
    return paths


def _config(metric: str) -> tuple[int, int] | None:
    """`acc@256x16` (mqar_mix: length 256, 16 pairs) -> (16, 256), ordered by pairs then length."""
    if not metric.startswith("acc@"):
        return None
    L, x, P = metric[4:].partition("x")
    return (int(P), int(L)) if x and L.isdigit() and P.isdigit() else None


def _errorbar(ax, x, stats, label):
    pts = [(a, s) for a, s in zip(x, stats) if s is not None]
    if pts:
        ax.errorbar([a for a, _ in pts], [s[0] for _, s in pts], yerr=[s[1] for _, s in pts], marker="o",
                    capsize=3, label=label)


def _finish(ax, fig, task, path: Path, title: str) -> Path:
    if task.chance is not None:
        ax.axhline(task.chance, color="grey", ls=":", lw=1, label="chance")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def _plot_against(rows, out, task, grid_keys, metrics, x, values) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    others = [k for k in grid_keys if k != x]
    lines: dict = {}
    for key, g in groups(rows, grid_keys).items():
        point = dict(zip(grid_keys, key[1:]))
        line = (key[0], *(point[k] for k in others))
        lines.setdefault(line, {})[point[x]] = summarise(g, [task.metric])[task.metric]
    xv = sorted(values[x])
    for line, pts in lines.items():
        label = line[0] + "".join(f" {k}={v}" for k, v in zip(others, line[1:]))
        _errorbar(ax, xv, [pts.get(v) for v in xv], label)
    if min(xv) > 0 and max(xv) / min(xv) >= 10:
        ax.set_xscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(task.metric)
    path = out / f"sweep-{task.name}-{task.metric}-vs-{x}.png"
    return _finish(ax, fig, task, path, f"{task.name}: {task.metric} against {x} (mean ± std over seeds)")


def _plot_bars(rows, out, task, grid_keys, metrics) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (key, g) in enumerate(groups(rows, grid_keys).items()):
        s = summarise(g, [task.metric])[task.metric]
        if s is not None:
            ax.bar(i, s[0], yerr=s[1], capsize=3, label=" ".join(map(str, key)))
    ax.set_ylabel(task.metric)
    ax.set_xticks([])
    return _finish(ax, fig, task, out / f"sweep-{task.name}-{task.metric}.png", f"{task.name}: {task.metric}")


def _plot_lengths(rows, out, task, grid_keys, lens) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    best = best_groups(rows, grid_keys, task.metric, task.higher_is_better)
    for model, (key, _) in best.items():
        g = groups(rows, grid_keys)[key]
        s = summarise(g, [f"acc@{n}" for n in lens])
        point = "".join(f" {k}={v}" for k, v in zip(grid_keys, key[1:]))
        _errorbar(ax, lens, [s[f"acc@{n}"] for n in lens], model + point)
    ax.set_xscale("log", base=2)
    ax.set_xticks(lens, [str(n) for n in lens])
    ax.set_xlabel("sequence length at evaluation")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    return _finish(ax, fig, task, out / f"sweep-{task.name}-by-length.png",
                   f"{task.name}: accuracy against length (each model's best grid point)")


def _plot_configs(rows, out, task, grid_keys, configs) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    best = best_groups(rows, grid_keys, task.metric, task.higher_is_better)
    for model, (key, _) in best.items():
        s = summarise(groups(rows, grid_keys)[key], configs)
        point = "".join(f" {k}={v}" for k, v in zip(grid_keys, key[1:]))
        _errorbar(ax, list(range(len(configs))), [s[c] for c in configs], model + point)
    ax.set_xticks(range(len(configs)), [c[4:].replace("x", "\n") for c in configs], fontsize=8)
    ax.set_xlabel("evaluation configuration: sequence length / key-value pairs")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    return _finish(ax, fig, task, out / f"sweep-{task.name}-by-config.png",
                   f"{task.name}: accuracy per (length, pairs) (each model's best grid point)")
