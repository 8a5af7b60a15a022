"""The `nlc` command line. One `fill_<cmd>` per subcommand; user errors exit 2, no traceback
(`--debug` re-raises). torch is imported only by the subcommands that run models."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from nlc.errors import NlcError, render
from nlc.ir.schedule import BACKENDS

EXIT_USER = 2


class UserError(NlcError):
    """A command-line mistake (bad flag value, missing output path, ...)."""


def _overrides(pairs) -> dict:
    from nlc.passes.consts import parse_override
    out = {}
    for p in pairs or []:
        if "=" not in p:
            raise UserError(f"--set {p}: expected KEY=VALUE", hint="e.g. --set dim=128")
        k, v = p.split("=", 1)
        out[k.strip()] = parse_override(v)
    return out


def _common(p):
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a spec parameter (repeatable)")
    p.add_argument("--model", help="which model of the file (default: the first one)")


# ---- check ---------------------------------------------------------------------
def fill_check(sub):
    p = sub.add_parser("check", help="check specs; print each model's level table")
    p.add_argument("files", nargs="+", help=".nl spec files or built-in specs by name (hope, titans:TitansMAG, optim/adamw)")
    p.add_argument("--quiet", action="store_true", help="print only errors")
    _common(p)
    p.set_defaults(func=cmd_check)


def _fmt_params(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else (f"{n / 1e3:.1f}k" if n >= 1e3 else str(n))


def level_table(c) -> str:
    from nlc.graph.level_graph import level_rows
    rows = level_rows(c.layout)
    head = ("level", "tier", "clock", "params", "objective", "rule", "memory")
    data = [(r["name"], str(r["tier"]), r["clock"], _fmt_params(r["params"]), r["objective"], r["rule"], r["memory"])
            for r in rows]
    widths = [max([len(h)] + [len(d[i]) for d in data]) for i, h in enumerate(head)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    from nlc.passes.size import parameter_count
    total = parameter_count(c.plan)  # every parameter the built module holds
    in_levels = sum(lv.params * b.repeat for b, lv in c.plan.all_levels())
    out = [f"model {c.plan.name} ({c.plan.file}): {len(rows)} levels, {len(c.layout.tiers)} frequency tiers, "
           f"{total:,} parameters ({_fmt_params(in_levels)} in levels: learned initial states and gates)",
           line(head), line(["-" * w for w in widths])]
    out += [line(d) for d in data]
    return "\n".join(out)


def cmd_check(a) -> int:
    from nlc.builtin import resolve_spec
    from nlc.passes import run
    errors = []
    for f in a.files:
        try:
            ov = _overrides(a.set)
            f, model = resolve_spec(f, a.model)  # `titans:TitansMAG` checks that model only
            unit = run(f, ov, model, until="load").unit
            if not model and not unit.own_models and unit.own_optimizers:
                # a file of optimizer definitions (specs/optim/*.nl): check each one
                from nlc.passes.optimizer import check_file_optimizers, optimizer_table
                for spec in check_file_optimizers(unit, ov):
                    if not a.quiet:
                        print(optimizer_table(spec) + "\n")
                continue
            # without --model, every model the file defines is checked
            for name in [model] if model else (unit.own_models or [None]):
                c = run(f, ov, name, unit=unit)
                if not a.quiet:
                    print(level_table(c) + "\n")
        except NlcError as e:
            if a.debug:
                raise
            errors.append(e)
    if errors:
        for e in errors:
            print(render(e), file=sys.stderr)
        n = sum(len(getattr(e, "errors", [e])) for e in errors)
        print(f"{n} error{'s' if n > 1 else ''}", file=sys.stderr)
        return EXIT_USER
    return 0


# ---- fmt -----------------------------------------------------------------------
def fill_fmt(sub):
    p = sub.add_parser("fmt", help="format specs canonically (in place, or --check)")
    p.add_argument("files", nargs="+", help=".nl files, or folders (every .nl file below them)")
    p.add_argument("--check", action="store_true", help="exit 1 if a file is not formatted; change nothing")
    p.add_argument("--stdout", action="store_true", help="print instead of rewriting")
    p.set_defaults(func=cmd_fmt)


def cmd_fmt(a) -> int:
    from nlc.frontend.parse import parse_text, read_source
    from nlc.ir.printer import program
    changed = 0
    files = []
    for f in a.files:
        files += sorted(map(str, Path(f).rglob("*.nl"))) if Path(f).is_dir() else [f]
    for f in files:
        text = read_source(f)
        out = program(parse_text(text, f), text)
        if a.stdout:
            sys.stdout.write(out)
        elif out != text:
            changed += 1
            if a.check:
                print(f"would reformat {f}")
            else:
                Path(f).write_text(out, encoding="utf-8")
                print(f"reformatted {f}")
    return 1 if (a.check and changed) else 0


# ---- graph ---------------------------------------------------------------------
def fill_graph(sub):
    p = sub.add_parser("graph", help="draw the level graph (.svg .png .pdf .dot .mmd)")
    p.add_argument("file", help="a .nl spec file or a built-in spec by name (hope, titans:TitansMAG)")
    p.add_argument("-o", "--out", required=True, help="output path; the suffix picks the format")
    _common(p)
    p.set_defaults(func=cmd_graph)


def cmd_graph(a) -> int:
    from nlc.passes import run
    from nlc import viz
    c = run(a.file, _overrides(a.set), a.model)
    try:
        path = viz.render(c.graph, a.out)
    except ValueError as e:
        raise UserError(str(e)) from None
    print(f"wrote {path}")
    return 0


# ---- view ----------------------------------------------------------------------
def fill_view(sub):
    p = sub.add_parser("view", help="explore the level graph in a browser: one self-contained HTML page")
    p.add_argument("file", nargs="?", help="a .nl spec file or a built-in spec by name (hope, titans:TitansMAC, "
                   "optim/m3); optional with --run (the run's own spec)")
    p.add_argument("--run", metavar="RUN_DIR", help="a run directory of `nlc train`: per-level statistics, the "
                   "loss and bpb curves, the run's spec and overrides")
    out = p.add_mutually_exclusive_group()
    out.add_argument("-o", "--out", help="write the page here (default: VIEW_NAME.html in the current folder)")
    out.add_argument("--serve", action="store_true", help="serve the page on http://127.0.0.1:PORT/ instead")
    p.add_argument("--port", type=int, default=8000, help="with --serve (default: 8000; 0 picks a free port)")
    _common(p)
    p.set_defaults(func=cmd_view)


def cmd_view(a) -> int:
    from nlc.view import data, page
    if a.file is None and a.run is None:
        raise UserError("nlc view needs a spec, or --run RUN_DIR", hint="e.g. nlc view hope -o hope.html")
    if a.run is not None and not Path(a.run).is_dir():
        raise UserError(f"--run {a.run}: no such run directory", hint="pass the --out folder of nlc train")
    d = data.build(a.file, _overrides(a.set), a.model, a.run)
    if a.serve:
        from nlc.view.serve import serve
        serve(page.render(d), a.port)
        return 0
    name = (d["graphs"][0]["title"] if d["graphs"] else "view").split(":")[0].strip().lower() or "view"
    path = page.write(d, a.out or f"{name}.html")
    print(f"wrote {path}")
    return 0


# ---- compile -------------------------------------------------------------------
EMITS = ("load", "bind-params", "resolve", "graph", "check-graph", "schedule", "py", "fx")


def fill_compile(sub):
    p = sub.add_parser("compile", help="run the compiler and print a stage")
    p.add_argument("file", help="a .nl spec file or a built-in spec by name (hope, titans:TitansMAG)")
    p.add_argument("--emit", default="resolve", choices=EMITS + ("plan",),
                   help="stage to print (default: resolve; `plan` is the old name of `schedule`)")
    p.add_argument("--backend", default="torch", choices=BACKENDS)
    p.add_argument("--dump", metavar="DIR", help="write every stage's artifact into DIR: the compiler's stages "
                   "(00_load.txt ... 05_schedule.txt), then the lowered program (py, fx)")
    _common(p)
    p.set_defaults(func=cmd_compile)


def cmd_compile(a) -> int:
    from nlc.api import build_model, make_target
    from nlc.passes import STAGES, run
    from nlc.passes.emit import emit
    ov = _overrides(a.set)
    stage = "schedule" if a.emit == "plan" else a.emit
    target = make_target(a.backend)
    if stage in STAGES and not a.dump:
        sys.stdout.write(emit(run(a.file, ov, a.model, until=stage, target=target), stage))
        return 0
    c = run(a.file, ov, a.model, dump=a.dump, target=target)  # the compiler's stages: 00_load.txt ... 05_schedule.txt
    if stage in STAGES:
        sys.stdout.write(emit(c, stage))
    if a.dump or stage not in STAGES:
        m = build_model(c, a.file)
        lowered = EMITS[len(STAGES):]
        if a.dump:  # then the lowered program: the traced segment program
            for i, what in enumerate(lowered):
                (Path(a.dump) / f"{len(STAGES) + i:02d}_{what}.txt").write_text(m.emit(what))
        if stage not in STAGES:
            sys.stdout.write(m.emit(stage))
    return 0


# ---- entry point ---------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="nlc", description="nlc: a compiler for Nested Learning (.nl specs)")
    ap.add_argument("--debug", action="store_true", help="show tracebacks for user errors")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    for fill in (fill_check, fill_fmt, fill_graph, fill_view, fill_compile):
        fill(sub)
    from nlc import cli_run
    cli_run.fill_all(sub)
    return ap


def main(argv=None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    t0 = time.time()
    try:
        return a.func(a) or 0
    except NlcError as e:
        if a.debug:
            raise
        print(render(e), file=sys.stderr)
        return EXIT_USER
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `nlc check ... | head`
        sys.stderr.close()
        return 0
    finally:
        if a.debug:
            print(f"[nlc] {a.cmd} took {time.time() - t0:.3f}s", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
