"""`nlc bench layer|hope`: CPU benchmarks that PRINT figures (they assert nothing).

    nlc bench layer [--quick] [--steps N] [--threads N] [--T 2048] [--ref-T 128] [--only torch,compile,...]
    nlc bench hope  [--quick] [--steps N] [--threads N] [--only torch,compile,nested-learning] [--peer-timeout 180]

layer: the Titans LMM memory layer (specs/titans.nl TitansLMM, layers = 1, dim 256, 4 heads,
    MLP memory depth 2 x4, chunk 64; T 2048, B 2) on the nlc `torch`, `compile` and `reference`
    backends, and titans-pytorch's `NeuralMemory` at the same config (if installed).
hope:  a Hope training step (specs/hope.nl, dim 256, 2 layers, vocab 256, T 512, B 2):
    forward + backward + clip + AdamW step, on nlc `torch` / `compile`, and `nested-learning`
    0.2.0's `nl train` (block_variant=hope_selfmod, same sizes and chunk sizes) if installed.

Every configuration runs in a fresh subprocess (`python -m nlc.bench --worker JSON`), so one
config's allocator state, threads or compiled code never leak into another's figures.

What the columns measure
    tok/s       B*T / median wall time of --steps timed calls, after one untimed warm-up call.
                "fwd" is an inference forward (torch.no_grad); "fwd+bwd" is a forward with autograd
                plus backward of out.square().mean() to every parameter and the input.
    peak MiB    the process's resident-set high-water mark (VmHWM) during one call, minus its
                resident set just before the call (after one warm-up call of each kind); measured in a separate subprocess with glibc
                told to hand freed blocks >= 64 KiB back to the OS (MALLOC_MMAP_THRESHOLD_=65536),
                so the figure follows live tensor memory rather than malloc's cache. Includes
                activations saved for backward and gradients, not the (already resident) weights.
    first s     wall time of the first fwd+bwd call (for `compile`: includes torch.compile's work).
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
    opt = m.make_optimizer()
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


def _timed(fn, steps):
    ts = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return ts


def worker(cfg: dict) -> dict:
    import torch
    if cfg.get("threads"):
        torch.set_num_threads(cfg["threads"])
    torch.manual_seed(0)
    res = {"threads": torch.get_num_threads()}
    t0 = time.perf_counter()
    if cfg["bench"] == "hope":
        m, step = _hope_model(cfg)
        res["build_s"] = time.perf_counter() - t0
        res["params"] = sum(p.numel() for p in m.parameters())
        if cfg["mode"] == "memory":
            step()  # warm-up: lazy initialisation (and compilation) outside the measured call
            res["peak_step_mib"] = _peak_of(step)
            return res
        t1 = time.perf_counter()
        step()
        res["first_s"] = time.perf_counter() - t1
        res["step_s"] = _timed(step, cfg["steps"])
        return res
    model, f = _layer_model(cfg)
    res["build_s"] = time.perf_counter() - t0
    res["params"] = sum(p.numel() for p in model.parameters())
    x = torch.randn(cfg["B"], cfg["T"], cfg["dim"])
    xg = x.clone().requires_grad_(True)

    def fwd():
        with torch.no_grad():
            f(x)

    def fwdbwd():
        f(xg).square().mean().backward()
        model.zero_grad(set_to_none=True)
        xg.grad = None

    if cfg["mode"] == "memory":
        fwd()  # warm-up: lazy initialisation (and compilation) outside the measured calls
        fwdbwd()
        res["peak_fwd_mib"] = _peak_of(fwd)
        res["peak_fwdbwd_mib"] = _peak_of(fwdbwd)
        return res
    t1 = time.perf_counter()
    fwd()
    res["first_fwd_s"] = time.perf_counter() - t1
    res["fwd_s"] = _timed(fwd, cfg["steps"])
    t1 = time.perf_counter()
    fwdbwd()
    res["first_s"] = time.perf_counter() - t1
    res["fwdbwd_s"] = _timed(fwdbwd, cfg["steps"])
    return res


def run_worker(cfg: dict, timeout: float, memory_env: bool = False) -> dict:
    """Run `worker(cfg)` in a fresh interpreter; returns its result or {"error": why}."""
    env = dict(os.environ)
    if cfg.get("threads"):
        env["OMP_NUM_THREADS"] = str(cfg["threads"])
    if memory_env:
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
        env["MALLOC_TRIM_THRESHOLD_"] = "0"
    cmd = [sys.executable, "-m", "nlc.bench", "--worker", json.dumps(cfg)]
    try:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout,
                           cwd=str(Path(__file__).resolve().parent.parent))
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish in {timeout:.0f} s"}
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    tail = (p.stderr or p.stdout).strip().splitlines()
    return {"error": (tail[-1] if tail else f"exit {p.returncode}")[:300]}


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


# ---- nlc bench layer -----------------------------------------------------------------
def bench_layer(a) -> int:
    size = dict(LAYER_QUICK if a.quick else LAYER)
    if a.T:
        size["T"] = a.T
    if a.ref_T:
        size["ref_T"] = a.ref_T
    steps = a.steps or (1 if a.quick else 3)
    impls = a.only.split(",") if a.only else ["torch", "compile", "reference", "titans-pytorch"]
    threads = a.threads or _default_threads()
    print(header(f"nlc bench layer: Titans LMM memory layer, dim {size['dim']}, {size['heads']} heads, "
                 f"MLP memory depth 2 x4, chunk {size['chunk']}, B {size['B']}", threads), flush=True)
    rows, res = [], {}
    for impl in impls:
        T = size["ref_T"] if impl == "reference" else size["T"]
        cfg = dict(bench="layer", impl=impl, dim=size["dim"], heads=size["heads"], chunk=size["chunk"], T=T,
                   B=size["B"], steps=steps, threads=threads)
        if impl == "titans-pytorch" and not _have("titans_pytorch"):
            r = {"error": "titans-pytorch is not installed (pip install --no-deps titans-pytorch, then its "
                          "light deps; see docs/performance.md)"}
        else:
            ld = load()
            r = run_worker(dict(cfg, mode="time"), a.timeout)
            r["load"] = ld
            if "error" not in r and not a.no_memory:
                r.update({k: v for k, v in run_worker(dict(cfg, mode="memory"), a.timeout, memory_env=True).items()
                          if k.startswith("peak") or k == "error"})
        r["T"] = T
        res[impl] = r
        ntok = size["B"] * T
        if "error" in r and "fwdbwd_s" not in r:
            rows.append([impl, T, "-", "-", "-", "-", "-", "-", r.get("load", load()), "FAILED: " + r["error"]])
        else:
            rows.append([impl, T, _params(r.get("params")), _f(_tps(r["fwd_s"], ntok)), _f(_tps(r["fwdbwd_s"], ntok)),
                         _f(r.get("peak_fwd_mib")), _f(r.get("peak_fwdbwd_mib")), _f(r["first_s"], 2), r["load"],
                         _layer_note(impl, r)])
        print(f"  done {impl} (T {T}): {rows[-1][3]} / {rows[-1][4]} tok/s", flush=True)
    print()
    print(table(["impl", "T", "params", "fwd tok/s", "fwd+bwd tok/s", "peak MiB fwd", "peak MiB fwd+bwd", "first s",
                 "load", "note"], rows))
    print()
    _layer_ratios(res, size)
    return 0


def _layer_note(impl, r):
    notes = []
    if impl == "compile":
        notes.append(f"first fwd {r['first_fwd_s']:.1f}s, first fwd+bwd {r['first_s']:.1f}s incl. torch.compile")
    if impl == "reference":
        notes.append("per-token interpreter, shorter T")
    if impl == "titans-pytorch":
        notes.append("NeuralMemory incl. its norms, q/k/v, gates, combine")
    if "error" in r:
        notes.append("memory: " + r["error"])
    return "; ".join(notes)


def _layer_ratios(res, size):
    def tps(impl, key):
        r = res.get(impl, {})
        return _tps(r.get(key), size["B"] * r.get("T", 0)) if r.get(key) else None
    lines = []
    for impl in ("torch", "compile"):
        for key, what, target in (("fwdbwd_s", "fwd+bwd", 3.0), ("fwd_s", "fwd", None)):
            ours, peer = tps(impl, key), tps("titans-pytorch", key)
            if ours and peer:
                tgt = f" (target >= {target:.0f}x: {'met' if ours / peer >= target else 'MISSED'})" if target else ""
                lines.append(f"nlc {impl} vs titans-pytorch, {what}: {ours / peer:.2f}x{tgt}")
        for key, what in (("fwd_s", "fwd"), ("fwdbwd_s", "fwd+bwd")):
            ours, ref = tps(impl, key), tps("reference", key)
            if ours and ref:
                tgt = " (target >= 50x: " + ("met" if ours / ref >= 50 else "MISSED") + ")" if key == "fwd_s" else ""
                lines.append(f"nlc {impl} (T {res[impl]['T']}) vs reference (T {res['reference']['T']}), {what} "
                             f"tokens/s: {ours / ref:.1f}x{tgt}")
    if "titans-pytorch" in res and "error" in res["titans-pytorch"] and "fwd_s" not in res["titans-pytorch"]:
        lines.append(f"titans-pytorch: not measured: {res['titans-pytorch']['error']}")
    print("\n".join(lines) if lines else "no ratios (a side is missing)")


# ---- nlc bench hope ------------------------------------------------------------------
def bench_hope(a) -> int:
    size = dict(HOPE_QUICK if a.quick else HOPE)
    if a.T:
        size["T"] = a.T
    steps = a.steps or (1 if a.quick else 3)
    impls = a.only.split(",") if a.only else ["torch", "compile", "nested-learning"]
    threads = a.threads or _default_threads()
    print(header(f"nlc bench hope: Hope training step (fwd+bwd+clip+AdamW), dim {size['dim']}, "
                 f"{size['layers']} layers, vocab {size['vocab']}, T {size['T']}, B {size['B']}, "
                 f"chunks {size['chunk']}/{size['mem_chunk']}", threads), flush=True)
    rows, res = [], {}
    ntok = size["B"] * size["T"]
    for impl in impls:
        ld = load()
        if impl == "nested-learning":
            r = nested_learning(size, threads, a.peer_timeout, steps)
        else:
            cfg = dict(bench="hope", impl=impl, steps=steps, threads=threads, **size)
            r = run_worker(dict(cfg, mode="time"), a.timeout)
            if "error" not in r and not a.no_memory:
                r.update({k: v for k, v in run_worker(dict(cfg, mode="memory"), a.timeout, memory_env=True).items()
                          if k.startswith("peak")})
        r["load"] = ld
        res[impl] = r
        if "step_s" not in r:
            rows.append([impl, _params(r.get("params")), "-", "-", "-", "-", ld, "FAILED: " + r.get("error", "?")])
        else:
            rows.append([impl, _params(r.get("params")), _f(_tps(r["step_s"], ntok)),
                         _f(statistics.median(r["step_s"]), 3), _f(r.get("peak_step_mib")), _f(r.get("first_s"), 2),
                         ld, r.get("note", "")])
        print(f"  done {impl}: {rows[-1][2]} tok/s", flush=True)
    print()
    print(table(["impl", "params", "tok/s", "s/step", "peak MiB", "first s", "load", "note"], rows))
    print()
    if res.get("nested-learning", {}).get("cmd"):
        print("nested-learning command: " + res["nested-learning"]["cmd"] + "\n")
    peer = _tps(res.get("nested-learning", {}).get("step_s"), ntok)
    for impl in ("torch", "compile"):
        ours = _tps(res.get(impl, {}).get("step_s"), ntok)
        if ours and peer:
            print(f"nlc {impl} vs nested-learning (measured in this run): {ours / peer:.1f}x "
                  f"(target >= 20x: {'met' if ours / peer >= 20 else 'MISSED'})")
        if ours and not a.quick:
            print(f"nlc {impl} vs nested-learning's reported {NESTED_LEARNING_REPORTED:.0f} tok/s: "
                  f"{ours / NESTED_LEARNING_REPORTED:.1f}x")
    if "nested-learning" in res and not peer:
        print(f"nested-learning: not measured: {res['nested-learning'].get('error')}")
    return 0


NL_TRAIN_STEP = re.compile(r"\[train\] step=(\d+)")


def nested_learning(size, threads, cap, steps) -> dict:
    """Run nested-learning's own CLI, `nl train`, on its synthetic data at our sizes and read
    its per-step log lines as they arrive. Step time = the interval between consecutive
    `[train] step=` lines (so start-up and the first step are not counted)."""
    exe = shutil.which("nl")
    if not _have("nested_learning") or exe is None:
        return {"error": "nested-learning is not installed (pip install --no-deps nested-learning==0.2.0 "
                         "plus hydra-core, omegaconf, typer; see docs/performance.md)"}
    P = "hope"  # hope/pilot_selfmod nests its config under the `hope` group until it is unwrapped
    ov = {"model.dim": size["dim"], "model.num_layers": size["layers"], "model.heads": size["heads"],
          "model.vocab_size": size["vocab"], "model.block_variant": "hope_selfmod",
          "model.self_mod_chunk_size": size["chunk"], "model.self_mod_chunk_size_memory": size["mem_chunk"],
          # CMS at nlc's cadences (specs/hope.nl: chunk, mem_chunk, frozen ~ once per sequence)
          "model.cms_levels": "[" + ",".join(f"{{name:cms_{i},update_period:{p},optimizer_key:cms_opt}}"
                                             for i, p in enumerate((size["chunk"], size["mem_chunk"], size["T"]))) + "]",
          "data.source": "synthetic", "+data.vocab_size": size["vocab"], "data.seq_len": size["T"],
          "data.batch_size": size["B"], "+data.dataset_size": 64, "data.num_workers": 0,
          "train.steps": steps + 1, "train.log_interval": 1, "train.checkpoint.enable": "false",
          "train.mixed_precision.enabled": "false", "train.device": "cpu", "logging.enabled": "false",
          "optim.type": "adamw", "optim.lr": 3e-3, "optim.weight_decay": 0.01}
    args = [exe, "train", "--config-name", "hope/pilot_selfmod", "--device", "cpu"]
    for k, v in ov.items():
        k = k.replace("+", "+" + P + ".") if k.startswith("+") else f"{P}.{k}"
        args += ["-O", f"{k}={v}"]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        t_start = time.perf_counter()
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp, env=env)
        stamps, tail, params = [], [], None
        import threading
        killer = threading.Timer(cap, p.kill)
        killer.start()
        try:
            for line in p.stdout:
                tail = (tail + [line.rstrip()])[-5:]
                pm = re.search(r"'optim.param_policy_param_elems': (\d+)", line)
                if pm:
                    params = int(pm.group(1))
                if NL_TRAIN_STEP.search(line):
                    stamps.append(time.perf_counter())
        finally:
            killer.cancel()
            p.wait()
    elapsed = time.perf_counter() - t_start
    r = {"cmd": " ".join(["nl"] + args[1:]), "params": params,
         "first_s": (stamps[0] - t_start) if stamps else None}
    if len(stamps) >= 2:
        r["step_s"] = [b - a for a, b in zip(stamps, stamps[1:])]
        r["note"] = f"nl train, {len(stamps)} steps logged; first s = start-up + first step"
        if p.returncode not in (0, None) and len(stamps) < steps + 1:
            r["note"] += f"; stopped at the {cap:.0f}s cap"
    elif len(stamps) == 1:
        # one step within the cap: an upper bound on a step (start-up included)
        r["step_s"] = [stamps[0] - t_start]
        r["note"] = f"only 1 step in {cap:.0f}s: s/step includes start-up (a lower bound on tok/s)"
    else:
        why = f"no training step logged in {elapsed:.0f}s" if p.returncode in (0, -9, None) else "exit " + str(p.returncode)
        r["error"] = f"{why}; last output: {' | '.join(tail)[-300:]}"
    return r


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
    p.add_argument("--steps", type=int, help="timed calls per configuration (default 3; 1 with --quick)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--only", help="comma-separated implementations to run")
    p.add_argument("--T", type=int, help="sequence length (default: the benchmark's)")
    p.add_argument("--timeout", type=float, default=900, help="seconds per configuration subprocess")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    if what == "layer":
        p.add_argument("--ref-T", type=int, help="sequence length for the reference interpreter (default 128)")
    else:
        p.add_argument("--peer-timeout", type=float, default=180, help="cap on nested-learning's run, seconds")
    return p


def main(what: str, argv=None) -> int:
    if what not in ("layer", "hope"):
        print(f"unknown benchmark '{what}' (layer, hope; kernels: nlc bench kernels)", file=sys.stderr)
        return 2
    a = build_parser(what).parse_args(argv or [])
    if a.threads is not None and a.threads < 1:
        print("--threads must be at least 1", file=sys.stderr)
        return 2
    return bench_layer(a) if what == "layer" else bench_hope(a)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        print("RESULT " + json.dumps(worker(json.loads(sys.argv[2]))), flush=True)
    else:
        sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "layer", sys.argv[2:]))
