"""`nlc bench layer|hope|scaling`: CPU benchmarks that PRINT figures (they assert nothing).

    nlc bench layer [--quick] [--reps N] [--threads N] [--T 2048] [--ref-T 128] [--only torch,compile,...]
    nlc bench hope  [--quick] [--reps N] [--threads N] [--only torch,compile,nested-learning] [--peer-timeout 600]
    nlc bench scaling [--what layer,hope] [--T ...] [--dim ...] [--plot PNG]   (nlc.bench_scaling)

layer: the Titans LMM memory layer (specs/titans.nl TitansLMM, layers = 1, dim 256, 4 heads,
    MLP memory depth 2 x4, chunk 64; T 2048, B 2) on the nlc `torch`, `compile` and `reference`
    backends, and titans-pytorch's `NeuralMemory` at the same config (if installed).
hope:  a Hope training step (specs/hope.nl, dim 256, 2 layers, vocab 256, T 512, B 2):
    forward + backward + clip + AdamW step, on nlc `torch` / `compile`, and `nested-learning`
    0.2.0's `nl train` (block_variant=hope_selfmod, same sizes and chunk sizes) if installed.

Every implementation runs in its own warm worker process, built once, and the workers are
timed in interleaved rounds (nlc.bench_runner says why): a ratio is the median over rounds of
the ratio of adjacent calls, printed with its min-max range and the load. A worker measuring
the fp32 matmul peak (a 1024 x 1024 torch.mm, same threads) takes its turn in every round too.

What the columns measure
    tok/s       B*T / median over rounds of one call's wall time (after untimed warm-up calls).
                "fwd" is an inference forward (torch.no_grad); "fwd+bwd" is a forward with autograd
                plus backward of out.square().mean() to every parameter and the input.
    peak MiB    the process's resident-set high-water mark (VmHWM) during one call, minus its
                resident set just before the call (after one warm-up call of each kind); measured in a separate subprocess with glibc
                told to hand freed blocks >= 64 KiB back to the OS (MALLOC_MMAP_THRESHOLD_=65536),
                so the figure follows live tensor memory rather than malloc's cache. Includes
                activations saved for backward and gradients, not the (already resident) weights.
    first s     wall time of the first fwd+bwd call (for `compile`: includes torch.compile's work).
    GFLOP/s     FLOPs of one call counted by torch.utils.flop_counter (matmuls; `compile` uses the
                `torch` backend's count: same math) / its median time; "% peak" of the matmul peak.
    bound       "memory" when the call's arithmetic intensity (FLOPs / bytes its ops read and write)
                is below the machine balance (peak FLOP/s / copy bandwidth), else "compute" (nlc.roofline).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from nlc.bench_runner import spread

LAYER = dict(dim=256, heads=4, chunk=64, T=2048, B=2, ref_T=128)
LAYER_QUICK = dict(dim=32, heads=2, chunk=8, T=32, B=1, ref_T=8)
HOPE = dict(dim=256, layers=2, vocab=256, T=512, B=2, chunk=16, mem_chunk=64, heads=4)
HOPE_QUICK = dict(dim=32, layers=1, vocab=256, T=32, B=1, chunk=4, mem_chunk=8, heads=2)
NESTED_LEARNING_REPORTED = 11.0  # tokens/s, design brief: nested-learning 0.2.0 hope_selfmod on 2 cores


# ---- machine -----------------------------------------------------------------------
def machine() -> dict:
    import torch
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "python": sys.version.split()[0]}


def load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


# ---- memory (Linux /proc) ------------------------------------------------------------
def _status_kib(field: str) -> int | None:
    try:
        m = re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text())
        return int(m.group(1)) if m else None
    except OSError:
        return None


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset the RSS high-water mark
        return True
    except OSError:
        return False


def _peak_of(fn) -> float | None:
    """MiB the resident set rises above its level before `fn` while `fn` runs."""
    import gc
    gc.collect()
    if not _reset_hwm():
        return None
    before = _status_kib("VmRSS")
    fn()
    hwm = _status_kib("VmHWM")
    return None if before is None or hwm is None else max(0.0, (hwm - before) / 1024)


# ---- workers (run in a fresh subprocess) ---------------------------------------------
def _layer_model(cfg):
    """The layer under test, as a callable x (B,T,dim) -> y (B,T,dim)."""
    import torch
    impl = cfg["impl"]
    if impl == "titans-pytorch":
        from titans_pytorch import NeuralMemory
        mem = NeuralMemory(dim=cfg["dim"], chunk_size=cfg["chunk"], heads=cfg["heads"],
                           dim_head=cfg["dim"] // cfg["heads"])  # default model: MemoryMLP depth 2, expansion 4
        return mem, lambda x: mem(x)[0]
    import nlc
    m = nlc.compile("titans", backend=impl, model="TitansLMM", layers=1, dim=cfg["dim"],
                    heads=cfg["heads"], chunk=cfg["chunk"])
    # the layer alone: no embedding (inputs are given as embeddings), no final norm, no head
    m.norm, m.head = torch.nn.Identity(), torch.nn.Identity()
    return m, lambda x: m(embeddings=x).logits


def _hope_model(cfg):
    import torch
    import nlc
    m = nlc.compile("hope", backend=cfg["impl"], dim=cfg["dim"], layers=cfg["layers"],
                    vocab=cfg["vocab"], heads=cfg["heads"], chunk=cfg["chunk"], mem_chunk=cfg["mem_chunk"])
    opt = m.optimizer()
    params = [p for p in m.parameters() if p.requires_grad]
    gen = torch.Generator().manual_seed(0)
    toks = torch.randint(0, cfg["vocab"], (cfg["B"], cfg["T"] + 1), generator=gen)
    x, y = toks[:, :-1], toks[:, 1:]

    def step():
        out = m(x, state=m.init_state(x.size(0)), targets=y)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
    return m, step


def worker(cfg: dict) -> dict:
    """Peak memory of one call of each kind (run in a fresh subprocess, `run_worker(memory_env=True)`)."""
    import torch
    if cfg.get("threads"):
        torch.set_num_threads(cfg["threads"])
    torch.manual_seed(0)
    _, calls = _calls(cfg)
    for fn in calls.values():
        fn()  # warm-up: lazy initialisation (and compilation) outside the measured calls
    return {f"peak_{kind}_mib": _peak_of(fn) for kind, fn in calls.items()}


def _calls(cfg):
    """Build one configuration: (model or None, {kind: call})."""
    import torch
    if cfg["bench"] == "peak":
        n = cfg.get("n", 1024)
        a, b = torch.randn(n, n), torch.randn(n, n)
        return None, {"peak": lambda: torch.mm(a, b)}
    if cfg["bench"] == "hope":
        m, step = _hope_model(cfg)
        return m, {"step": step}
    model, f = _layer_model(cfg)
    x = torch.randn(cfg["B"], cfg["T"], cfg["dim"])
    xg = x.clone().requires_grad_(True)

    def fwd():
        with torch.no_grad():
            f(x)

    def fwdbwd():
        f(xg).square().mean().backward()
        model.zero_grad(set_to_none=True)
        xg.grad = None
    return model, {"fwd": fwd, "fwdbwd": fwdbwd}


def serve(cfg: dict):
    """A warm worker (nlc.bench_runner): build, warm up, count FLOPs and bytes, then time one call
    per stdin line."""
    import torch

    from nlc import roofline
    if cfg.get("threads"):
        torch.set_num_threads(cfg["threads"])
    torch.manual_seed(0)
    info = {"threads": torch.get_num_threads()}
    t0 = time.perf_counter()
    model, calls = _calls(cfg)
    info["build_s"] = time.perf_counter() - t0
    if model is not None:
        info["params"] = sum(p.numel() for p in model.parameters())
        if hasattr(model, "plan"):
            info["mem_flops_tok"] = roofline.model_memory_flops(model)
    else:
        info["bandwidth_gbs"] = roofline.bandwidth()
    for kind, fn in calls.items():  # warm-up: lazy initialisation and compilation happen here
        t1 = time.perf_counter()
        fn()
        info[f"first_{kind}_s"] = time.perf_counter() - t1
    if cfg.get("count"):
        for kind, fn in calls.items():
            try:
                info[f"flops_{kind}"], info[f"bytes_{kind}"] = roofline.count(fn)
            except Exception as e:  # noqa: BLE001 - a peer's code may not run under a dispatch mode
                info["count_error"] = f"{kind}: {type(e).__name__}: {e}"[:200]
    print("READY " + json.dumps(info), flush=True)
    for line in sys.stdin:
        kind = line.strip()
        if kind not in calls:
            break
        t1 = time.perf_counter()
        calls[kind]()
        print(f"RESULT {time.perf_counter() - t1}", flush=True)


def run_worker(cfg: dict, timeout: float, memory_env: bool = False) -> dict:
    """Run `worker(cfg)` in a fresh interpreter; returns its result or {"error": why}."""
    env = dict(os.environ)
    if cfg.get("threads"):
        env["OMP_NUM_THREADS"] = str(cfg["threads"])
    if memory_env:
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
        env["MALLOC_TRIM_THRESHOLD_"] = "0"
    return run_result([sys.executable, "-m", "nlc.bench", "--worker", json.dumps(cfg)], env, timeout)


def _peak_memory(starts: dict, info: dict, timeout: float) -> dict:
    """Peak memory of every implementation that ran, each in a fresh process with malloc set to
    return memory (the timed workers' allocator state would hide the peak)."""
    return {impl: run_worker(dict(cfg, count=False), timeout, memory_env=True) for impl, cfg in starts.items()
            if isinstance(cfg, dict) and "error" not in info.get(impl, {})}


def run_result(cmd: list, env: dict, timeout: float, width: int = 300) -> dict:
    """Run `cmd` from the repository root; its JSON `RESULT ...` line, or {"error": why} (the last
    line it printed, at most `width` characters). Shared by the benchmarks' fresh-process runs."""
    try:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout,
                           cwd=str(Path(__file__).resolve().parent.parent))
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish in {timeout:.0f} s"}
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    tail = (p.stderr or p.stdout).strip().splitlines()
    return {"error": (tail[-1] if tail else f"exit {p.returncode}")[:width]}


# ---- printing ------------------------------------------------------------------------
def table(head, rows) -> str:
    rows = [[str(c) for c in r] for r in rows]
    w = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(head)]
    line = lambda cells: "  ".join(c.rjust(n) if i else c.ljust(n) for i, (c, n) in enumerate(zip(cells, w)))  # noqa: E731
    return "\n".join([line(head), line(["-" * n for n in w])] + [line(r) for r in rows])


def _f(x, nd=1):
    if x is None:
        return "-"
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.{nd}f}"


def _tps(times, ntok):
    return ntok / statistics.median(times) if times else None


def _params(n):
    return "-" if not n else (f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k")


def header(title, threads) -> str:
    m = machine()
    warn = ""
    try:
        if threads > 1 and float(load().split()[0]) >= 1.0:
            warn = (f"\nwarning: load average {load().split()[0]} with {threads} threads: multi-threaded torch on a "
                    "busy machine can run 100x slower (threads wait on descheduled peers); try --threads 1")
    except ValueError:
        pass
    return (f"{title}\nmachine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, python {m['python']}, "
            f"threads {threads}, load average at start {load()}, {time.strftime('%Y-%m-%d %H:%M')}{warn}")


# ---- interleaved measurement ------------------------------------------------------------
def _measure(a, starts: dict, kinds: list[str]) -> tuple[dict, list]:
    """Start the matmul-peak worker and one warm worker per implementation (starts: impl -> a
    worker config, a callable returning a started worker, or an error string), then run `a.reps`
    interleaved rounds. Returns (info per implementation, round records)."""
    from nlc.bench_runner import Worker, interleave
    entries, info, live = {}, {}, []
    try:
        for impl, start in [("peak", dict(bench="peak", threads=a.threads))] + list(starts.items()):
            if isinstance(start, str):
                info[impl] = {"error": start}
                continue
            try:
                w = start() if callable(start) else Worker(start, a.timeout)
            except RuntimeError as e:
                info[impl] = {"error": str(e)}
                print(f"  {impl}: FAILED: {e}", flush=True)
                continue
            live.append(w)
            info[impl] = dict(w.info) if hasattr(w, "info") else {"first_step_s": w.first_s}  # a paused peer
            entries[impl] = (w, ["peak"] if impl == "peak" else [k for k in kinds if f"first_{k}_s" in info[impl]]
                             or ["step"])
            if impl != "peak":
                firsts = ", ".join(f"first {k[6:-2]} {v:.2f}s" for k, v in info[impl].items()
                                   if k.startswith("first_") and v is not None)
                print(f"  ready {impl}: {firsts}", flush=True)

        def progress(r, rec):
            times = ", ".join(f"{n} {k} {t:.3f}s" for (n, k), t in ((key, v) for key, v in rec.items() if key != "load")
                              if t is not None)
            print(f"  round {r + 1}/{a.reps} (load {rec['load']}): {times}", flush=True)
        records = interleave(entries, a.reps, progress)
    finally:
        for w in live:
            w.close()
    return info, records


def _times(records, impl, kind):
    return [r[(impl, kind)] for r in records if r.get((impl, kind)) is not None]


def _ratios(records, ours, peer, kind, ntok_ours, ntok_peer):
    """Per round: (ntok_ours / t_ours) / (ntok_peer / t_peer), from the two adjacent calls."""
    return [(ntok_ours / r[(ours, kind)]) / (ntok_peer / r[(peer, kind)]) for r in records
            if r.get((ours, kind)) and r.get((peer, kind))]


def _roofline(info, records, impl, kind, counted_by=None):
    """(GFLOP/s, fraction of the matmul peak, bound note) of one row, or Nones."""
    src = info.get(counted_by or impl, {})
    flops, nbytes = src.get(f"flops_{kind}"), src.get(f"bytes_{kind}")
    t, pk = _times(records, impl, kind), _peak(info, records)
    if not flops or not t or not pk:
        return None, None, ""
    sec = statistics.median(t)
    gf = flops / sec / 1e9
    bw = info.get("peak", {}).get("bandwidth_gbs")
    bound = ""
    if nbytes and bw:
        rate = nbytes / sec / 1e9
        moved = f"{nbytes / 1e6:,.0f} MB moved (ops' operands, an upper bound), {rate:.1f} GB/s = {rate / bw:.0%} of copy"
        if flops / nbytes >= pk / bw:
            bound = "compute"
        elif rate <= bw:  # intensity below the machine balance: traffic, not FLOPs, limits it
            bound = "memory: " + moved
        else:  # more than DRAM can deliver: most operands stay in cache; small ops' overhead limits it
            bound = "neither (operands cached): " + moved
    return gf, gf / pk, bound


def _peak(info, records):
    n = 1024
    t = _times(records, "peak", "peak")
    return 2 * n ** 3 / statistics.median(t) / 1e9 if t else None


def _load_range(records):
    ls = [r["load"] for r in records if r.get("load") is not None]
    return f"{min(ls):.2f}-{max(ls):.2f}" if ls else "n/a"


def _machine_line(info, records):
    pk, bw = _peak(info, records), info.get("peak", {}).get("bandwidth_gbs")
    t = _times(records, "peak", "peak")
    rng = f" [{2 * 1024 ** 3 / max(t) / 1e9:.1f}-{2 * 1024 ** 3 / min(t) / 1e9:.1f}]" if t else ""
    return (f"roofline: fp32 matmul peak {_f(pk)} GFLOP/s{rng} (1024^3 torch.mm, median over rounds), copy bandwidth "
            f"{_f(bw)} GB/s, machine balance {_f(pk / bw if pk and bw else None)} FLOP/byte; "
            f"load (1 min) over the rounds {_load_range(records)}")


# ---- nlc bench layer -----------------------------------------------------------------
def bench_layer(a) -> int:
    size = dict(LAYER_QUICK if a.quick else LAYER)
    if a.T:
        size["T"] = a.T
    if a.ref_T:
        size["ref_T"] = a.ref_T
    a.reps = a.reps or (2 if a.quick else 5)
    impls = a.only.split(",") if a.only else ["torch", "compile", "reference", "titans-pytorch"]
    a.threads = a.threads or _default_threads()
    print(header(f"nlc bench layer: Titans LMM memory layer, dim {size['dim']}, {size['heads']} heads, "
                 f"MLP memory depth 2 x4, chunk {size['chunk']}, B {size['B']}, {a.reps} interleaved rounds",
                 a.threads), flush=True)
    Ts = {impl: size["ref_T"] if impl == "reference" else size["T"] for impl in impls}
    starts = {}
    for impl in impls:
        if impl == "titans-pytorch" and not _have("titans_pytorch"):
            starts[impl] = ("titans-pytorch is not installed (pip install --no-deps titans-pytorch, then its "
                            "light deps; see docs/performance.md)")
        else:
            starts[impl] = dict(bench="layer", impl=impl, dim=size["dim"], heads=size["heads"], chunk=size["chunk"],
                                T=Ts[impl], B=size["B"], threads=a.threads, count=impl != "compile")
    info, records = _measure(a, starts, ["fwd", "fwdbwd"])
    mem = {} if a.no_memory else _peak_memory(starts, info, a.timeout)
    rows = []
    for impl in impls:
        r, ntok = info.get(impl, {}), size["B"] * Ts[impl]
        if "error" in r:
            rows.append([impl, Ts[impl]] + ["-"] * 9 + ["FAILED: " + r["error"]])
            continue
        gf, frac, bound = _roofline(info, records, impl, "fwdbwd", counted_by="torch" if impl == "compile" else None)
        m = mem.get(impl, {})
        rows.append([impl, Ts[impl], _params(r.get("params")), _f(_tps(_times(records, impl, "fwd"), ntok)),
                     _f(_tps(_times(records, impl, "fwdbwd"), ntok)), _f(m.get("peak_fwd_mib")),
                     _f(m.get("peak_fwdbwd_mib")), _f(r.get("first_fwdbwd_s"), 2), _f(gf),
                     f"{frac:.1%}" if frac is not None else "-", bound or "-", _layer_note(impl, r, m)])
    print()
    print(table(["impl", "T", "params", "fwd tok/s", "fwd+bwd tok/s", "peak MiB fwd", "peak MiB fwd+bwd", "first s",
                 "GFLOP/s fwd+bwd", "% peak", "bound", "note"], rows))
    print()
    print(_machine_line(info, records))
    t = info.get("torch", {})
    if t.get("mem_flops_tok"):
        print(f"FLOPs per token: memory level (analytic, fwd: reads + gradients + update; docs/performance.md) "
              f"{t['mem_flops_tok']:,}; counted (torch backend) fwd {t['flops_fwd'] / (size['B'] * Ts['torch']):,.0f}, "
              f"fwd+bwd {t['flops_fwdbwd'] / (size['B'] * Ts['torch']):,.0f}")
    print()
    _layer_ratios(info, records, size, Ts)
    return 0


def _layer_note(impl, r, m):
    notes = []
    if impl == "compile":
        notes.append(f"first fwd {r['first_fwd_s']:.1f}s incl. torch.compile; FLOPs counted on `torch`")
    if impl == "reference":
        notes.append("per-token interpreter, shorter T")
    if impl == "titans-pytorch":
        notes.append("NeuralMemory incl. its norms, q/k/v, gates, combine")
    if "count_error" in r:
        notes.append("not counted: " + r["count_error"])
    if "error" in m:
        notes.append("memory: " + m["error"])
    return "; ".join(notes)


def _layer_ratios(info, records, size, Ts):
    lines = []
    ntok = {impl: size["B"] * T for impl, T in Ts.items()}
    for impl in ("torch", "compile"):
        if impl not in ntok:
            continue
        for peer, key, what, target in (("titans-pytorch", "fwdbwd", "fwd+bwd", 3.0), ("titans-pytorch", "fwd", "fwd", None),
                                        ("reference", "fwd", "fwd tokens/s", 50.0), ("reference", "fwdbwd", "fwd+bwd tokens/s", None)):
            rs = _ratios(records, impl, peer, key, ntok[impl], ntok.get(peer, 0)) if peer in ntok else []
            if not rs:
                continue
            tgt = f" (target >= {target:.0f}x: {'met' if statistics.median(rs) >= target else 'MISSED'})" if target else ""
            Tn = f" (T {Ts[impl]} vs T {Ts[peer]})" if Ts[peer] != Ts[impl] else ""
            lines.append(f"nlc {impl} vs {peer}{Tn}, {what}: {spread(rs)}{tgt}")
        gf, frac, _ = _roofline(info, records, impl, "fwdbwd", counted_by="torch" if impl == "compile" else None)
        if frac is not None:
            lines.append(f"nlc {impl} fwd+bwd: {frac:.1%} of the matmul peak (target >= 50%: "
                         f"{'met' if frac >= 0.5 else 'MISSED'})")
    for peer in ("titans-pytorch", "reference"):
        if "error" in info.get(peer, {}):
            lines.append(f"{peer}: not measured: {info[peer]['error']}")
    print("ratios: median over rounds of adjacent calls [min-max] (n rounds); load (1 min) "
          f"{_load_range(records)}")
    print("\n".join(lines) if lines else "no ratios (a side is missing)")


# ---- nlc bench hope ------------------------------------------------------------------
def bench_hope(a) -> int:
    size = dict(HOPE_QUICK if a.quick else HOPE)
    if a.T:
        size["T"] = a.T
    a.reps = a.reps or (2 if a.quick else 3)
    impls = a.only.split(",") if a.only else ["torch", "compile", "nested-learning"]
    a.threads = a.threads or _default_threads()
    print(header(f"nlc bench hope: Hope training step (fwd+bwd+clip+AdamW), dim {size['dim']}, "
                 f"{size['layers']} layers, vocab {size['vocab']}, T {size['T']}, B {size['B']}, "
                 f"chunks {size['chunk']}/{size['mem_chunk']}, {a.reps} interleaved rounds", a.threads), flush=True)
    ntok = size["B"] * size["T"]
    starts = {}
    for impl in impls:
        if impl == "nested-learning":
            starts[impl] = nested_learning(size, a.threads, a.peer_timeout, a.reps)
        else:
            starts[impl] = dict(bench="hope", impl=impl, threads=a.threads, count=impl != "compile", **size)
    info, records = _measure(a, starts, ["step"])
    mem = {} if a.no_memory else _peak_memory(starts, info, a.timeout)
    rows = []
    for impl in impls:
        r = info.get(impl, {})
        if "error" in r:
            rows.append([impl, "-", "-", "-", "-", "-", "-", "-", "-", "FAILED: " + r["error"]])
            continue
        t = _times(records, impl, "step")
        gf, frac, bound = _roofline(info, records, impl, "step", counted_by="torch" if impl == "compile" else None)
        first = r.get("first_step_s")
        rows.append([impl, _params(r.get("params")), _f(_tps(t, ntok)), _f(statistics.median(t), 3) if t else "-",
                     _f(mem.get(impl, {}).get("peak_step_mib")), _f(first, 2), _f(gf),
                     f"{frac:.1%}" if frac is not None else "-", bound or "-",
                     "nl train, paused between its steps (SIGSTOP); first s = start-up + first step"
                     if impl == "nested-learning" else ""])
    print()
    print(table(["impl", "params", "tok/s", "s/step", "peak MiB", "first s", "GFLOP/s", "% peak", "bound", "note"], rows))
    print()
    print(_machine_line(info, records))
    t = info.get("torch", {})
    if t.get("mem_flops_tok") and t.get("flops_step"):
        print(f"FLOPs per token: memory levels (analytic, fwd: reads + gradients + updates) {t['mem_flops_tok']:,}; "
              f"counted (torch backend) step {t['flops_step'] / ntok:,.0f}")
    print()
    print(f"ratios: median over rounds of adjacent steps [min-max] (n rounds); load (1 min) {_load_range(records)}")
    for impl in ("torch", "compile"):
        rs = _ratios(records, impl, "nested-learning", "step", ntok, ntok)
        if rs:
            print(f"nlc {impl} vs nested-learning: {spread(rs)} (target >= 20x: "
                  f"{'met' if statistics.median(rs) >= 20 else 'MISSED'})")
        ours = _tps(_times(records, impl, "step"), ntok)
        if ours and not a.quick:
            print(f"nlc {impl} vs nested-learning's reported {NESTED_LEARNING_REPORTED:.0f} tok/s: "
                  f"{ours / NESTED_LEARNING_REPORTED:.1f}x")
    if "error" in info.get("nested-learning", {}):
        print(f"nested-learning: not measured: {info['nested-learning']['error']}")
    return 0


NL_TRAIN_STEP = re.compile(r"\[train\] step=(\d+)")


def nested_learning(size, threads, cap, reps):
    """nested-learning's own CLI, `nl train`, on its synthetic data at our sizes, as a paused peer
    (nlc.bench_runner.PausedProcess): a callable that starts it, or why it cannot run."""
    exe = shutil.which("nl")
    if not _have("nested_learning") or exe is None:
        return ("nested-learning is not installed (pip install --no-deps nested-learning==0.2.0 "
                "plus hydra-core, omegaconf, typer; see docs/performance.md)")
    P = "hope"  # hope/pilot_selfmod nests its config under the `hope` group until it is unwrapped
    ov = {"model.dim": size["dim"], "model.num_layers": size["layers"], "model.heads": size["heads"],
          "model.vocab_size": size["vocab"], "model.block_variant": "hope_selfmod",
          "model.self_mod_chunk_size": size["chunk"], "model.self_mod_chunk_size_memory": size["mem_chunk"],
          # CMS at nlc's cadences (specs/hope.nl: chunk, mem_chunk, frozen ~ once per sequence)
          "model.cms_levels": "[" + ",".join(f"{{name:cms_{i},update_period:{p},optimizer_key:cms_opt}}"
                                             for i, p in enumerate((size["chunk"], size["mem_chunk"], size["T"]))) + "]",
          "data.source": "synthetic", "+data.vocab_size": size["vocab"], "data.seq_len": size["T"],
          "data.batch_size": size["B"], "+data.dataset_size": 64, "data.num_workers": 0,
          "train.steps": reps + 3, "train.log_interval": 1, "train.checkpoint.enable": "false",
          "train.mixed_precision.enabled": "false", "train.device": "cpu", "logging.enabled": "false",
          "optim.type": "adamw", "optim.lr": 3e-3, "optim.weight_decay": 0.01}
    args = [exe, "train", "--config-name", "hope/pilot_selfmod", "--device", "cpu"]
    for k, v in ov.items():
        k = k.replace("+", "+" + P + ".") if k.startswith("+") else f"{P}.{k}"
        args += ["-O", f"{k}={v}"]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))

    def start():
        import tempfile

        from nlc.bench_runner import PausedProcess
        w = PausedProcess(args, env, tempfile.mkdtemp(prefix="nlc-bench-nl-"), NL_TRAIN_STEP.search, cap)
        print("  nested-learning command: " + " ".join(["nl"] + args[1:]), flush=True)
        return w
    return start


# ---- entry -----------------------------------------------------------------------------
def _have(mod) -> bool:
    import importlib.util
    return importlib.util.find_spec(mod) is not None


def _default_threads() -> int:
    import torch
    return torch.get_num_threads()


def build_parser(what) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"nlc bench {what}", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test, not a measurement)")
    p.add_argument("--reps", "--steps", dest="reps", type=int,
                   help="interleaved rounds: timed calls per implementation (default 5 layer, 3 hope; 2 with --quick)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--only", help="comma-separated implementations to run")
    p.add_argument("--T", type=int, help="sequence length (default: the benchmark's)")
    p.add_argument("--timeout", type=float, default=900, help="seconds per configuration subprocess")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    if what == "layer":
        p.add_argument("--ref-T", type=int, help="sequence length for the reference interpreter (default 128)")
    else:
        p.add_argument("--peer-timeout", type=float, default=600,
                       help="cap on nested-learning's start-up + first step, and on each later step, seconds")
    return p


def main(what: str, argv=None) -> int:
    if what == "scaling":
        from nlc.bench_scaling import main as scaling
        return scaling(argv or [])
    if what not in ("layer", "hope"):
        print(f"unknown benchmark '{what}' (layer, hope, scaling; kernels: nlc bench kernels)", file=sys.stderr)
        return 2
    a = build_parser(what).parse_args(argv or [])
    if a.threads is not None and a.threads < 1:
        print("--threads must be at least 1", file=sys.stderr)
        return 2
    return bench_layer(a) if what == "layer" else bench_hope(a)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        print("RESULT " + json.dumps(worker(json.loads(sys.argv[2]))), flush=True)
    elif len(sys.argv) > 2 and sys.argv[1] == "--serve":
        serve(json.loads(sys.argv[2]))
    else:
        sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "layer", sys.argv[2:]))
