"""The Python API: `nlc.compile(spec, backend, **overrides) -> nn.Module`, `nlc.load(run)`.

Backends share one state_dict layout, so weights move between them:
    reference  per-token interpreter of the equations (the ground truth)
    torch      the chunk-parallel program, eager
    compile    the same, each block's segment program under torch.compile(fullgraph=True)
    triton     the chunk-parallel program with fused Triton update kernels where they apply
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from nlc.errors import NlcError

BACKENDS = ("reference", "torch", "compile", "triton")


def compile(spec, backend: str = "torch", model: str | None = None, checkpointing: bool = False,  # noqa: A001
            **overrides):
    """Compile a .nl spec (a path, or spec text) into an nn.Module. Raises NlcError on mistakes.
    `checkpointing=True` recomputes each segment in backward (activation memory O(T d))."""
    from nlc.passes import run
    if backend not in BACKENDS:
        raise NlcError(f"unknown backend '{backend}'", hint=f"backends: {', '.join(BACKENDS)}")
    is_text = isinstance(spec, str) and ("{" in spec and not Path(spec).suffix == ".nl")
    c = run(spec, overrides, model, text=spec if is_text else None)
    import torch  # noqa: F401 - torch only from here on
    from nlc.lower.program import NLModel
    m = NLModel(c.plan, mode="reference" if backend == "reference" else "chunk", checkpointing=checkpointing)
    if backend == "compile":
        m.compile_segments()
    if backend == "triton":
        from nlc.lower.triton_plan import apply_triton
        apply_triton(m)
    text = c.unit.text
    m.backend = backend
    m.spec_name = c.plan.name
    m.spec_text = text
    m.spec_path = None if is_text else str(spec)
    m.config = dict(c.plan.params)
    m.overrides = dict(overrides)
    m.spec_hash = hashlib.sha256((text + json.dumps(m.config, sort_keys=True, default=str) + c.plan.name).encode()).hexdigest()[:16]
    m.compilation = c
    opt = c.plan.optimizer
    m.train_defaults = {k: v for k, v in ((opt.options if opt else {}) | {"lr": (opt.args.get("lr") if opt else None)}).items()
                        if k in ("steps", "batch", "seq_len", "lr", "warmup", "clip") and v is not None}
    for k in ("steps", "batch", "seq_len"):
        if k in m.config:
            m.train_defaults[k] = m.config[k]
    m.make_optimizer = lambda: make_optimizer(m)
    m.emit = lambda what: emit(m, what)
    return m


def make_optimizer(m):
    """The outer optimizer from the spec's `params(...)` level (AdamW if the spec has none)."""
    import torch
    from nlc.lower.optim import NLOptimizer
    opt = m.compilation.plan.optimizer
    params = [p for p in m.parameters() if p.requires_grad]
    if opt is None:
        return torch.optim.AdamW(params, lr=3e-4)
    args = dict(opt.args)
    if opt.definition is not None:
        return NLOptimizer(params, opt.definition, args)
    cls = {"AdamW": torch.optim.AdamW, "Adam": torch.optim.Adam, "SGD": torch.optim.SGD}[opt.rule]
    args.setdefault("lr", 1e-3)
    return cls(params, **args)


def emit(m, what: str) -> str:
    if what == "plan":
        return plan_of(m)
    if what in ("py", "fx"):
        return program_text(m, what)
    raise NlcError(f"nothing to emit for '{what}'")


def plan_of(m) -> str:
    out = [f"backend {m.backend}: segment length {m.seg if m.seg < (1 << 30) else 'whole sequence'}"]
    fused = getattr(m, "fused_levels", {})
    for key, layer in m.layers():
        for name in list(layer.mems) + list(layer.attns) + list(layer.cms):
            how = fused.get(f"{key}.{name}", "chunk-parallel torch" if m.mode == "chunk" else "per-token reference")
            out.append(f"  {key}.{name}: {how}")
    return "\n".join(out) + "\n"


def program_text(m, what) -> str:
    """The generated program: the FX graph of one block's segment program (traced symbolically)."""
    import torch
    key, layer = next(iter(m.layers()))
    B, n = 1, min(m.seg, 16)
    st = m.init_state(B)
    x = torch.zeros(B, n, m.plan.dim)
    ends = frozenset()

    def seg(x, *vals):
        s = dict(zip(keys, vals))
        return layer.segment(x, s, key, ends, m.mode, None, {})

    keys = [k for k in st if k.startswith(key + ".")]
    gm = torch.fx.experimental.proxy_tensor.make_fx(seg)(x, *[st[k] for k in keys])
    return gm.code if what == "py" else str(gm.graph)


def load(run_dir, backend: str = "torch"):
    """Rebuild a trained model from a run directory written by `nlc train` (its spec copy,
    model name and --set values), with the weights of its latest checkpoint."""
    run = Path(run_dir)
    rec_path, spec_path = run / "spec.json", run / "spec.nl"
    if not run.is_dir():
        raise NlcError(f"no such run directory: {run}", hint="nlc train SPEC --out DIR writes one")
    if not rec_path.is_file() or not spec_path.is_file():
        raise NlcError(f"{run} is not an nlc run (spec.json / spec.nl missing)", hint="pass the --out folder of nlc train")
    try:
        rec = json.loads(rec_path.read_text())
    except (OSError, ValueError) as e:
        raise NlcError(f"{rec_path} is unreadable or corrupt: {e}") from None
    text = spec_path.read_text(encoding="utf-8")
    # imports resolve next to the original spec when it still exists, else in specs/
    origin = rec.get("spec_path")
    src = origin if origin and Path(origin).is_file() and Path(origin).read_text(encoding="utf-8") == text else None
    m = compile(src or text, backend=backend, model=rec.get("model"), **rec.get("overrides", {}))
    from nlc.train.checkpoint import load_checkpoint
    from nlc.train.sources import get_tokenizer
    load_checkpoint(run, m)
    m.tokenizer = get_tokenizer(rec.get("tokenizer", "bytes"))
    return m
