"""`nlc sweep`: a grid of training runs, each cell in its own process and folder, resumable.

    nlc sweep transformer titans:TitansLMM hope --task mqar --grid lr=1e-3,3e-3,1e-2,3e-2 --seeds 2 --jobs 2

The cells are every spec x model x grid point x seed. A grid key is a training option of the task
when `ontask.TASKS[task].options` names it (lr, steps, pairs, ...), else a spec parameter (`--set`).
Each cell runs `python -m nlc.sweep CELL_DIR` (its own process: a crash, a NaN or a memory blow-up
costs one cell) and writes CELL_DIR/result.json last, atomically; a sweep started again with the
same --out skips every cell whose result.json records the same cell, so an interrupted sweep resumes
where it stopped. Then OUT/results.jsonl and .csv (one row per run), OUT/results.md (every run, the
seed means, the best grid point per model) and the plots (`sweep_report`).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nlc.errors import NlcError
from nlc.ir.schedule import BACKENDS

RESULT = "result.json"   # written last by a cell: its presence with a matching cell record means "done"
CELL = "cell.json"
RESERVED = {"seed": "--seeds", "model": "--model", "task": "--task", "spec": "the spec arguments"}


class SweepError(NlcError):
    """A mistake in the sweep's command line (grid, models, seeds)."""


@dataclass
class Cell:
    spec: str                  # as given: a path, a built-in name, or NAME:MODEL
    model: str | None
    task: str
    seed: int
    grid: dict                 # this cell's grid point: key -> value
    spec_set: dict = field(default_factory=dict)  # spec parameters (fixed --set and grid keys of the spec)
    options: dict = field(default_factory=dict)   # the task's options, defaults filled in
    backend: str = "torch"
    threads: int = 1

    def label(self) -> str:
        """The model as a table names it: spec (and model)."""
        name = Path(self.spec.split(":")[0]).stem
        model = self.model or (self.spec.split(":")[1] if ":" in self.spec else None)
        return f"{name}:{model}" if model else name

    def identity(self) -> str:
        """What the cell computes (not how many threads it used): the resume check compares this."""
        d = asdict(self)
        d.pop("threads")
        return json.dumps(d, sort_keys=True, default=str)

    def dirname(self) -> str:
        bits = [self.label()] + [f"{k}={v}" for k, v in self.grid.items()] + [f"s{self.seed}"]
        slug = re.sub(r"[^A-Za-z0-9_.=+-]+", "_", "-".join(bits))[:80]
        return f"{slug}-{hashlib.sha1(self.identity().encode()).hexdigest()[:8]}"


# ---------------------------------------------------------------------------
# the command line's grid -> cells

def parse_grid(items) -> dict:
    """`--grid KEY=V1,V2` (repeatable) -> {KEY: [V1, V2]} with typed values; mistakes are SweepErrors."""
    from nlc.passes.consts import parse_override
    grid = {}
    for item in items or []:
        key, eq, vals = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise SweepError(f"--grid {item}: expected KEY=V1,V2,...", hint="e.g. --grid chunk=8,16,64")
        if key in RESERVED:
            raise SweepError(f"--grid {item}: '{key}' is not a grid key (use {RESERVED[key]})")
        if key in grid:
            raise SweepError(f"--grid {key} given twice", hint=f"one --grid {key}=V1,V2,... with every value")
        values = [v.strip() for v in vals.split(",")]
        if not values or any(v == "" for v in values):
            raise SweepError(f"--grid {item}: an empty value", hint="values are separated by single commas")
        typed = [parse_override(v) for v in values]
        if len(set(map(str, typed))) != len(typed):
            raise SweepError(f"--grid {item}: a value is repeated")
        grid[key] = typed
    return grid


def parse_models(text: str | None) -> list[str | None]:
    if text is None:
        return [None]
    names = [m.strip() for m in text.split(",")]
    if any(not m for m in names):
        raise SweepError(f"--model {text}: an empty model name", hint="e.g. --model TitansLMM,TitansMAG")
    return names


def make_cells(specs, models, task: str, grid: dict, fixed: dict, seeds: int, backend="torch",
               threads: int = 1, first_seed: int = 0) -> list[Cell]:
    """Every spec x model x grid point x seed (first_seed .. first_seed + seeds - 1), checked: unknown
    task, model or spec parameter, bad option values and empty grids are SweepErrors (or the
    compiler's own positioned errors). A cell's identity holds its seed, not how many were asked
    for, so seed 2 alone is the same cell (and the same folder) as seed 2 of --seeds 3."""
    from nlc.train.ontask import TASKS
    if task not in TASKS:
        raise SweepError(f"--task {task}: unknown task", hint=f"choose from {', '.join(TASKS)}")
    if seeds < 1:
        raise SweepError(f"--seeds {seeds}: at least 1")
    if first_seed < 0:
        raise SweepError(f"--first-seed {first_seed}: at least 0")
    if not specs:
        raise SweepError("nlc sweep needs at least one spec", hint="e.g. nlc sweep hope titans:TitansLMM --task mqar")
    both = set(grid) & set(fixed)
    if both:
        raise SweepError(f"{', '.join(sorted(both))}: given both as --grid and --set/--opt", hint="give each key once")
    t = TASKS[task]
    keys = list(grid)
    cells = []
    scoped = {k: v for k, v in fixed.items() if "." in k}  # NAME.KEY: only for the spec or model NAME
    used = set()
    for spec, model in itertools.product(specs, models):
        names = {n.lower() for n in _names(spec, model)}
        mine = {k.split(".", 1)[1]: v for k, v in scoped.items() if k.split(".", 1)[0].lower() in names}
        used |= {k for k in scoped if k.split(".", 1)[0].lower() in names}
        for point in itertools.product(*grid.values()):
            values = dict(zip(keys, point))
            merged = {**{k: v for k, v in fixed.items() if k not in scoped}, **mine, **values}
            opts = {k: merged.get(k, d) for k, d in t.options.items()}
            spec_set = {**t.overrides(opts), **{k: v for k, v in merged.items() if k not in t.options}}
            for s in range(first_seed, first_seed + seeds):
                cells.append(Cell(spec, model, task, s, values, spec_set, opts, backend, threads))
    unused = sorted(set(scoped) - used)
    if unused:
        raise SweepError(f"--set {unused[0]}: no spec or model of this sweep is called "
                         f"'{unused[0].split('.', 1)[0]}'", hint="NAME.KEY=VALUE sets KEY for the spec or model NAME only")
    _check(cells)
    return cells


def _names(spec: str, model: str | None) -> list[str]:
    """What NAME.KEY may call a cell: its spec's name and its model's."""
    name, _, suffix = spec.partition(":")
    return [Path(name).stem] + [m for m in (model, suffix) if m]


def _check(cells: list[Cell]):
    """Compile each distinct spec/model/parameters once through the front end (no torch): an unknown
    model or parameter fails here, before any process starts, with the compiler's message."""
    from nlc.builtin import resolve_spec
    from nlc.passes import run
    seen = set()
    for c in cells:
        key = (c.spec, c.model, json.dumps(c.spec_set, sort_keys=True))
        if key in seen:
            continue
        seen.add(key)
        path, model = resolve_spec(c.spec, c.model)
        try:
            run(path, dict(c.spec_set), model)
        except NlcError as e:
            sets = " ".join(f"{k}={v}" for k, v in c.spec_set.items())
            e.message = f"sweep cell {c.label()} [{sets}]: {e.message}"
            e.args = (e.message,)
            raise
        _check_options(c)


def _check_options(c: Cell):
    from nlc.train.ontask import _parse_lens, parse_mix
    o = c.options
    for k in ("steps", "batch", "pairs", "seq_len", "keys", "train_len", "eval_samples", "eval_batches"):
        if k in o and (not isinstance(o[k], int) or o[k] < 1):
            raise SweepError(f"{k}={o[k]}: must be a whole number >= 1")
    if "warmup" in o and (not isinstance(o["warmup"], int) or o["warmup"] < 0):
        raise SweepError(f"warmup={o['warmup']}: must be a whole number >= 0")
    if o.get("lr") is not None and (isinstance(o["lr"], bool) or not isinstance(o["lr"], (int, float)) or o["lr"] <= 0):
        raise SweepError(f"lr={o['lr']}: must be a number > 0")
    if c.task == "mqar":
        if o["pairs"] > o["keys"]:
            raise SweepError(f"pairs={o['pairs']}: MQAR draws keys from {o['keys']} tokens: at most {o['keys']} pairs",
                             hint=f"--set keys={o['pairs']} (or more) widens the keys")
        if o["seq_len"] < 4 * o["pairs"]:
            raise SweepError(f"seq_len={o['seq_len']}: too short for {o['pairs']} pairs and their queries",
                             hint=f"at least 4 x pairs = {4 * o['pairs']}")
    if c.task == "mqar_mix":
        try:
            parse_mix(o["train_mix"], o["keys"]), parse_mix(o["eval_mix"], o["keys"])
        except ValueError as e:
            raise SweepError(str(e), hint="e.g. --set train_mix=64x4*5/128x8/256x16 --set eval_mix=64x4/256x64") from None
    if c.task in ("niah", "needle"):
        try:
            lens = _parse_lens(o["eval_lens"])
            depths = [float(x) for x in str(o["eval_depths"]).split("/")]
        except ValueError as e:
            raise SweepError(str(e), hint="e.g. --opt eval_lens=256/512 --opt eval_depths=0.1/0.5/0.9") from None
        if min(lens + [o["train_len"]]) < 128 or not all(0 <= d <= 1 for d in depths):
            raise SweepError(f"{c.task}: lengths must be >= 128 (the needle and the question take ~90 bytes), "
                             "depths in [0, 1]")


# ---------------------------------------------------------------------------
# running the cells

def done(cell_dir: Path, cell: Cell) -> dict | None:
    """The cell's finished result (a completed record of this very cell), else None."""
    try:
        res = json.loads((cell_dir / RESULT).read_text())
    except (OSError, ValueError):
        return None
    return res if res.get("cell") == json.loads(cell.identity()) and res.get("status") in ("ok", "diverged") else None


def _write_atomic(path: Path, text: str):
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def run_sweep(cells: list[Cell], out: Path, jobs: int = 1, timeout: float | None = None, log=print) -> list[dict]:
    """Run the cells not yet done, `jobs` processes at a time (0: one after another in this process);
    return every cell's result."""
    if jobs < 0:
        raise SweepError(f"--jobs {jobs}: at least 0")
    out = Path(out)
    (out / "cells").mkdir(parents=True, exist_ok=True)
    todo, skipped = [], 0
    for c in cells:
        d = out / "cells" / c.dirname()
        if done(d, c) is not None:
            skipped += 1
        else:
            todo.append((c, d))
    log(f"sweep: {len(cells)} cells, {skipped} already done, {len(todo)} to run, "
        f"{f'{jobs} at a time' if jobs else 'in this process'} -> {out}")
    if jobs == 0:
        for c, d in todo:
            _prepare(c, d)
            run_cell(d, c.threads)
            log(f"  {_read_result(d).get('status', 'failed'):>8}  {c.dirname()}  {_brief(_read_result(d))}")
        return [_read_result(out / "cells" / c.dirname()) for c in cells]
    running: list[tuple[subprocess.Popen, Cell, Path, float]] = []
    try:
        while todo or running:
            while todo and len(running) < jobs:
                c, d = todo.pop(0)
                running.append((_start(c, d), c, d, time.time()))
            time.sleep(0.2)
            for item in list(running):
                p, c, d, t0 = item
                if p.poll() is None and not (timeout and time.time() - t0 > timeout):
                    continue
                if p.poll() is None:  # over its time limit
                    p.kill()
                    p.wait()
                    _write_atomic(d / RESULT, json.dumps(dict(cell=json.loads(c.identity()), status="timeout",
                                                              error=f"over --timeout {timeout} s")))
                running.remove(item)
                res = _read_result(d)
                log(f"  {res.get('status', 'failed'):>8}  {c.dirname()}  {_brief(res)}")
    except KeyboardInterrupt:
        for p, *_ in running:  # this sweep's own children only
            p.terminate()
        for p, *_ in running:
            p.wait()
        raise
    return [_read_result(out / "cells" / c.dirname()) for c in cells]


def _prepare(c: Cell, d: Path):
    d.mkdir(parents=True, exist_ok=True)
    (d / RESULT).unlink(missing_ok=True)  # a stale or foreign result: this run replaces it
    _write_atomic(d / CELL, c.identity())


def _start(c: Cell, d: Path) -> subprocess.Popen:
    _prepare(c, d)
    env = dict(os.environ, OMP_NUM_THREADS=str(c.threads), OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
    log = open(d / "log.txt", "w")
    try:
        return subprocess.Popen([sys.executable, "-m", "nlc.sweep", str(d)], stdout=log, stderr=subprocess.STDOUT,
                                env=env)
    finally:
        log.close()  # the child holds its own descriptor


def _read_result(d: Path) -> dict:
    try:
        return json.loads((d / RESULT).read_text())
    except (OSError, ValueError):
        tail = (d / "log.txt").read_text(errors="replace")[-2000:] if (d / "log.txt").exists() else ""
        return dict(cell=json.loads((d / CELL).read_text()) if (d / CELL).exists() else None, status="failed",
                    error=tail.strip().splitlines()[-1] if tail.strip() else "no result")


def _brief(res: dict) -> str:
    m = res.get("metrics") or {}
    if res.get("status") != "ok":
        return res.get("error", "")[:120]
    return " ".join(f"{k}={v:.4g}" for k, v in m.items() if isinstance(v, float))[:160] + f"  ({res.get('wall_s', 0):.0f} s)"


def run_cell(cell_dir: Path, threads: int | None = None) -> int:
    """One cell, in its own process: compile, train on the task, score, write result.json last."""
    import math

    import torch

    from nlc.api import compile as nlc_compile
    from nlc.builtin import resolve_spec
    from nlc.train.ontask import TASKS, param_count
    cell_dir = Path(cell_dir)
    c = Cell(**json.loads((cell_dir / CELL).read_text()), threads=threads or int(os.environ.get("OMP_NUM_THREADS", "1")))
    torch.set_num_threads(c.threads)
    torch.manual_seed(c.seed)
    path, model = resolve_spec(c.spec, c.model)
    load0 = os.getloadavg()[0]
    t0 = time.time()
    m = nlc_compile(path, backend=c.backend, model=model, **c.spec_set)
    rec = dict(cell=json.loads(c.identity()), params=param_count(m), host_load_start=round(load0, 2))
    try:
        metrics = TASKS[c.task].run(m, dict(c.options, _run_dir=str(cell_dir / "run")), c.seed)
        rec.update(status="ok", metrics=metrics)
        bad = [k for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            rec.update(status="diverged", error=f"non-finite {', '.join(bad)}")
    except FloatingPointError as e:  # a learning rate past the stable window: a result, not a failure
        rec.update(status="diverged", error=str(e), metrics={})
    rec.update(wall_s=round(time.time() - t0, 2), host_load_end=round(os.getloadavg()[0], 2))
    _write_atomic(cell_dir / RESULT, json.dumps(rec, indent=1))
    print(json.dumps(rec))
    return 0


# ---------------------------------------------------------------------------
# the subcommand

def fill_sweep(sub):
    from nlc.train.ontask import TASKS
    p = sub.add_parser("sweep", help="a grid of training runs on a task (models x --grid values x seeds), "
                       "N processes at a time, resumable; writes rows, tables and plots")
    p.add_argument("specs", nargs="+", help="spec files or built-in specs by name (hope, titans:TitansLMM, transformer)")
    p.add_argument("--model", help="models of the spec files, comma-separated (each with every spec)")
    p.add_argument("--task", default="mqar", choices=list(TASKS),
                   help="; ".join(f"{t.name}: {t.about}" for t in TASKS.values()))
    p.add_argument("--grid", action="append", metavar="KEY=V1,V2,...",
                   help="sweep a key over values (repeatable: the cells are the product). A task option "
                        "(" + ", ".join(sorted({k for t in TASKS.values() for k in t.options})) + ") or a spec parameter")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="a fixed task option or spec parameter; NAME.KEY=VALUE: for the spec or model NAME only "
                        "(e.g. hope.mem_chunk=8)")
    p.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 per grid point (default 1)")
    p.add_argument("--first-seed", type=int, default=0, metavar="S",
                   help="start the seeds at S: seeds S..S+N-1 (default 0), e.g. to add seeds 1 and 2 to a "
                        "sweep whose seed 0 ran elsewhere")
    p.add_argument("--jobs", type=int, default=1, help="cells run at once, each its own process (default 1; "
                   "0: one after another inside this process, for debugging: a crash there ends the sweep)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per cell (default 1)")
    p.add_argument("--out", help="sweep folder (default: sweeps/<task>); run again with the same --out to resume")
    p.add_argument("--backend", default="torch", choices=BACKENDS)
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="stop a cell that runs longer (recorded as timeout)")
    p.add_argument("--plot-x", metavar="KEY", help="the swept key on the plots' x axis (default: each numeric one)")
    p.add_argument("--dry-run", action="store_true", help="list the cells and what is done; run nothing")
    p.add_argument("--report-only", action="store_true",
                   help="write the rows, tables and plots from the cells done so far; run nothing")
    p.set_defaults(func=cmd_sweep)


def cmd_sweep(a) -> int:
    from nlc.cli import _overrides
    from nlc.sweep_report import write_report
    from nlc.train.ontask import TASKS
    grid = parse_grid(a.grid)
    fixed = _overrides(a.set)
    if a.plot_x and a.plot_x not in grid:
        raise SweepError(f"--plot-x {a.plot_x}: not a --grid key", hint=f"swept keys: {', '.join(grid) or 'none'}")
    if a.threads < 1:
        raise SweepError(f"--threads {a.threads}: at least 1")
    cells = make_cells(a.specs, parse_models(a.model), a.task, grid, fixed, a.seeds, a.backend, a.threads,
                       a.first_seed)
    out = Path(a.out or f"sweeps/{a.task}")
    if a.dry_run:
        for c in cells:
            state = "done" if done(out / "cells" / c.dirname(), c) else "todo"
            print(f"{state}  {c.dirname()}  set={c.spec_set} options={c.options}")
        return 0
    if a.report_only:
        out.mkdir(parents=True, exist_ok=True)
        results = [done(out / "cells" / c.dirname(), c) or dict(cell=json.loads(c.identity()), status="not run")
                   for c in cells]
    else:
        results = run_sweep(cells, out, jobs=a.jobs, timeout=a.timeout)
    for path in write_report(results, out, TASKS[a.task], list(grid), a.plot_x):
        print(f"wrote {path}")
    bad = sum(r.get("status") not in ("ok", "diverged", "not run") for r in results)
    if bad:
        print(f"{bad} cell(s) failed: see their log.txt under {out / 'cells'}; run again to retry them", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(run_cell(Path(sys.argv[1])))
