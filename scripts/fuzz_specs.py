#!/usr/bin/env python
"""A spec fuzzer: mutate the built-in specs and run each mutant through `nlc check`.

    python scripts/fuzz_specs.py --n 10000 --seed 0

Every mutant starts from one of specs/*.nl and specs/optim/*.nl and gets 1-3 mutations:
token deletions, duplications and swaps; numbers replaced by extreme values (0, -1, 1e400,
1e300, huge integers, ...); identifier swaps (with other names of the spec and keywords);
deep nesting inserted (nested calls, unary minuses, parentheses, long sums); byte-level damage
(flips, insertions of NUL/0xff/CR/form feed/BOM, cuts); BOM and newline changes (CRLF, CR,
mixed); and, for some, `--set` overrides with extreme values. Each runs in this process
through `nlc check` (nlc.cli.main: the front end and every pass through `check-graph`; with
`--build`, also `nlc.compile` of the models that pass and are small).

An outcome is `ok` (exit 0), `error` (exit 2 with an `error:` diagnostic), `crash` (any other
exception, a traceback in the output, or exit 2 without a diagnostic) or `hang` (over
`--timeout` seconds). Memory is bounded by `--max-mem-mb` (RLIMIT_AS: a MemoryError is a crash).
It prints the figures (mutants/s, outcomes, slowest mutant, peak RSS) and exits 1 if any
mutant crashed or hung; `--save DIR` keeps those mutants (with their `--set` arguments).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import re
import resource
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

EXTREME_NUMBERS = ["0", "-1", "1e400", "1e300", "-1e300", "1e308", "1e-400", "0.0", "-0", "0.5", "1.5", "2",
                   "nan", "inf", "1e19", "2147483648", "9223372036854775807", "9223372036854775808",
                   "1099511627776", "1048576", "99999999999999999999", "9" * 400, "1" + "0" * 5000, "1e", "1.e5",
                   ".5", "3e-3"]
KEYWORDS = ["model", "block", "level", "memory", "optimizer", "import", "as", "clock", "keys", "values", "queries",
            "context", "learn", "rule", "init", "out", "step", "tokens", "steps", "frozen", "per", "head", "params",
            "cms", "repeat", "self", "true", "false", "slot", "linear", "mlp", "attention", "residual_mlp", "dim",
            "heads", "vocab", "x", "grad", "param", "all", "learned", "gd", "dgd", "momentum", "ema", "AdamW",
            "backprop", "meta", "zeros", "const", "pretrained", "sqrt", "unbias", "newton_schulz", "gate"]
PUNCT = ["{", "}", "(", ")", ",", "=", ":", ";", "->", "@", "+", "-", "*", "/", '"', "#", ".", "per head"]
DEEP = [50, 150, 199, 200, 201, 260, 1000, 5000]
_TOKEN = re.compile(r'\s+|#[^\n]*|"[^"\n]*"|[A-Za-z_]\w*|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|->|.', re.S)


def corpus() -> list[tuple[str, bytes]]:
    files = sorted((ROOT / "specs").glob("*.nl")) + sorted((ROOT / "specs" / "optim").glob("*.nl"))
    return [(str(f.relative_to(ROOT)), f.read_bytes()) for f in files]


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _real(toks: list[str]) -> list[int]:
    return [i for i, t in enumerate(toks) if t.strip() and not t.startswith("#")]


# ---- mutations: (rng, text) -> text ------------------------------------------------
def m_delete(rng, text):
    toks = _tokens(text)
    idx = _real(toks)
    if idx:
        i = rng.choice(idx)
        del toks[i: i + rng.choice([1, 1, 1, 2, 3, 5])]
    return "".join(toks)


def m_duplicate(rng, text):
    toks = _tokens(text)
    idx = _real(toks)
    if idx:
        i = rng.choice(idx)
        toks.insert(i, toks[i] + " ")
    return "".join(toks)


def m_swap(rng, text):
    toks = _tokens(text)
    idx = _real(toks)
    if len(idx) > 1:
        i = rng.choice(idx)
        j = idx[min(len(idx) - 1, idx.index(i) + 1)] if rng.random() < 0.5 else rng.choice(idx)
        toks[i], toks[j] = toks[j], toks[i]
    return "".join(toks)


def m_number(rng, text):
    toks = _tokens(text)
    idx = [i for i, t in enumerate(toks) if t[:1].isdigit() or (t[:1] == "." and t[1:2].isdigit())]
    if idx:
        for i in rng.sample(idx, min(len(idx), rng.choice([1, 1, 2, 4]))):
            toks[i] = rng.choice(EXTREME_NUMBERS)
    return "".join(toks)


def m_value(rng, text):
    """A number becomes a value of another type: a string, a bool, a name, a call."""
    toks = _tokens(text)
    idx = [i for i, t in enumerate(toks) if t[:1].isdigit()]
    if idx:
        toks[rng.choice(idx)] = rng.choice(['"x"', '""', "true", "false", "x", "dim", "heads", "grad", "learned(1)",
                                            'learned("x")', "silu(x)", "-x", "(1, 2)", "1 / 0", "0 / 0", "2 * 1e200 * 1e200"])
    return "".join(toks)


def m_ident(rng, text):
    toks = _tokens(text)
    idx = [i for i, t in enumerate(toks) if t[:1].isalpha() or t[:1] == "_"]
    if idx:
        # mostly another name of the same spec (the text still parses), sometimes a keyword
        pool = [toks[i] for i in idx if toks[i] not in KEYWORDS] or KEYWORDS
        toks[rng.choice(idx)] = rng.choice(pool if rng.random() < 0.8 else KEYWORDS)
    return "".join(toks)


def m_insert(rng, text):
    toks = _tokens(text)
    idx = _real(toks)
    if idx:
        toks.insert(rng.choice(idx), rng.choice(PUNCT + KEYWORDS + EXTREME_NUMBERS[:6]) + " ")
    return "".join(toks)


def m_deep(rng, text):
    toks = _tokens(text)
    idx = [i for i, t in enumerate(toks) if t[:1].isalnum() or t[:1] == "_"]
    if not idx:
        return text
    i, k = rng.choice(idx), rng.choice(DEEP)
    t = toks[i]
    kind = rng.choice(["call", "neg", "paren", "sum", "product", "kwcall"])
    toks[i] = {"call": "silu(" * k + t + ")" * k, "neg": "-" * k + t, "paren": "(" * k + t + ")" * k,
               "sum": " + ".join([t] * k), "product": " * ".join([t] * k),
               "kwcall": "linear(" * k + t + ", out = dim)" * k}[kind]
    return "".join(toks)


def m_bytes(rng, data: bytes) -> bytes:
    b = bytearray(data)
    if not b:
        return bytes(b)
    op = rng.choice(["flip", "insert", "cut", "truncate"])
    i = rng.randrange(len(b))
    if op == "flip":
        b[i] = rng.randrange(256)
    elif op == "insert":
        junk = rng.choice([b"\0", b"\xff", b"\xfe", b"\r", b"\x0c", b"\x0b", b"\x1c", b"\xef\xbb\xbf", b"\xe2\x80\xa8",
                           b"\xc2\x85", b"\xc3", b"\t", b"\\", bytes([rng.randrange(256)])])
        b[i:i] = junk
    elif op == "cut":
        del b[i: i + rng.randrange(1, 64)]
    else:
        del b[i:]
    return bytes(b)


def m_newlines(rng, data: bytes) -> bytes:
    op = rng.choice(["bom", "crlf", "cr", "mixed", "bom+crlf", "bom+cr"])
    if "bom" in op:
        data = b"\xef\xbb\xbf" + data
    if op.endswith("crlf"):
        data = data.replace(b"\n", b"\r\n")
    elif op.endswith("cr"):
        data = data.replace(b"\n", b"\r")
    elif op == "mixed":
        data = b"".join(p + rng.choice([b"\n", b"\r\n", b"\r"]) for p in data.split(b"\n"))
    return data


# weighted toward mutations that keep the text parsing, so the passes behind the parser get fuzzed too
TEXT_MUTATIONS = [m_delete, m_duplicate, m_swap, m_insert, m_deep] + [m_number] * 4 + [m_value] * 2 + [m_ident] * 4
BYTE_MUTATIONS = [m_bytes, m_newlines]


def overrides(rng, text: str) -> list[str]:
    """`--set` arguments: a parameter of the spec (or a misspelt one) with an extreme value."""
    names = re.findall(r"(\w+)\s*=", text[:4000]) or ["dim"]
    out = []
    for _ in range(rng.choice([1, 1, 2])):
        k = rng.choice(names + ["dim", "vocab", "heads", "layers", "dimm"])
        v = rng.choice(EXTREME_NUMBERS + ["true", "abc", "", "1048576", "1099511627776"])
        out += ["--set", f"{k}={v}"]
    return out


def mutate(rng, seed_bytes: bytes) -> tuple[bytes, list[str]]:
    text = seed_bytes.decode("utf-8")
    for _ in range(rng.choice([0, 1, 1, 1, 2, 3])):  # 0: the spec as it is (then mostly --set or byte changes)
        text = rng.choice(TEXT_MUTATIONS)(rng, text)
    data = text.encode("utf-8")
    if rng.random() < 0.25:
        data = rng.choice(BYTE_MUTATIONS)(rng, data)
    args = overrides(rng, text) if rng.random() < 0.25 else []
    return data, args


# ---- running one mutant ------------------------------------------------------------
class Hang(BaseException):
    pass


def _alarm(signum, frame):
    raise Hang()


def run_one(path: str, args: list[str], timeout: float, build: bool) -> tuple[str, str]:
    """(outcome, detail) of `nlc check --quiet ARGS PATH` (and nlc.compile when `build`)."""
    from nlc.cli import main
    out, err = io.StringIO(), io.StringIO()
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(["check", "--quiet", *args, path])
            if rc == 0 and build:
                _build(path, args)
    except Hang:
        return "hang", f"over {timeout} s"
    except BaseException as e:  # noqa: BLE001 - anything but a clean exit is what we look for
        if isinstance(e, KeyboardInterrupt):
            raise
        tb = traceback.extract_tb(e.__traceback__)
        where = next((f"{Path(f.filename).name}:{f.lineno}" for f in reversed(tb) if "/nlc/" in f.filename), "?")
        return "crash", f"{type(e).__name__} at {where}: {str(e)[:200]}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    text = err.getvalue()
    if "Traceback" in text:
        return "crash", "a traceback in the output"
    if rc == 0:
        return "ok", ""
    if rc == 2 and "error:" in text:
        return "error", text.split("\n", 1)[0][:200]
    return "crash", f"exit {rc}: {text[:200]}"


def _build(path: str, args: list[str]) -> None:
    """Build the torch module of a small model that passed the check (NlcError is fine)."""
    import nlc
    from nlc.errors import NlcError
    from nlc.passes import run
    from nlc.passes.consts import parse_override
    from nlc.passes.size import estimate, total_bytes
    ov = {a.split("=", 1)[0]: parse_override(a.split("=", 1)[1]) for a in args[1::2] if "=" in a}
    try:
        unit = run(path, ov, until="load").unit
        for name in unit.own_models:
            c = run(path, ov, name, unit=unit)
            if total_bytes(estimate(c.plan)) < (64 << 20):
                nlc.compile(path, model=name, **ov)
    except NlcError:
        pass


def peak_rss_mb() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1 << 20) if sys.platform == "darwin" else r / 1024


def fuzz(n: int, seed: int, timeout: float = 10.0, build: bool = False, save: str | None = None,
         log=print) -> dict:
    rng = random.Random(seed)
    seeds = corpus()
    if build:  # import torch and the lowering once, outside the per-mutant time bound
        import nlc.api  # noqa: F401
        import nlc.lower.program  # noqa: F401
    counts = {"ok": 0, "error": 0, "crash": 0, "hang": 0}
    failures: list[dict] = []
    slowest = (0.0, "")
    t0 = time.perf_counter()
    old = signal.signal(signal.SIGALRM, _alarm)
    with tempfile.TemporaryDirectory(prefix="nlc-fuzz-") as tmp:
        path = os.path.join(tmp, "mutant.nl")
        try:
            for i in range(n):
                origin, data = rng.choice(seeds)
                mutant, args = mutate(rng, data)
                with open(path, "wb") as f:
                    f.write(mutant)
                t = time.perf_counter()
                outcome, detail = run_one(path, args, timeout, build)
                dt = time.perf_counter() - t
                if dt > slowest[0]:
                    slowest = (dt, f"#{i} from {origin}")
                counts[outcome] += 1
                if outcome in ("crash", "hang"):
                    failures.append({"index": i, "origin": origin, "args": args, "outcome": outcome, "detail": detail})
                    log(f"#{i} ({origin} {' '.join(args)}): {outcome}: {detail}")
                    if save:
                        Path(save).mkdir(parents=True, exist_ok=True)
                        Path(save, f"mutant-{seed}-{i}.nl").write_bytes(mutant)
                        Path(save, f"mutant-{seed}-{i}.args").write_text(" ".join(args) + "\n")
        finally:
            signal.signal(signal.SIGALRM, old)
    secs = time.perf_counter() - t0
    return {"mutants": n, "seed": seed, "seconds": round(secs, 1), "per_second": round(n / secs, 1) if secs else None,
            "outcomes": counts, "slowest_s": round(slowest[0], 2), "slowest": slowest[1],
            "peak_rss_mb": round(peak_rss_mb(), 1), "failures": failures}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="number of mutants (default 1000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds one mutant may take (default 10)")
    ap.add_argument("--max-mem-mb", type=int, default=2048, help="address-space limit of this process (default 2048)")
    ap.add_argument("--build", action="store_true", help="also build the torch module of small models that pass")
    ap.add_argument("--save", metavar="DIR", help="write crashing or hanging mutants here")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    a = ap.parse_args(argv)
    if a.max_mem_mb > 0 and not a.build:  # torch reserves more address space than it uses: no limit with --build
        lim = a.max_mem_mb << 20
        resource.setrlimit(resource.RLIMIT_AS, (lim, resource.getrlimit(resource.RLIMIT_AS)[1]))
    r = fuzz(a.n, a.seed, a.timeout, a.build, a.save, log=lambda s: print(s, file=sys.stderr))
    if a.json:
        print(json.dumps(r))
    else:
        o = r["outcomes"]
        print(f"{r['mutants']} mutants (seed {r['seed']}) in {r['seconds']} s: {r['per_second']} mutants/s; "
              f"ok {o['ok']}, error {o['error']}, crash {o['crash']}, hang {o['hang']}; "
              f"slowest {r['slowest_s']} s ({r['slowest']}); peak RSS {r['peak_rss_mb']} MB")
    return 1 if r["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
