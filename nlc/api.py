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
            freeze=None, **overrides):
    """Compile a .nl spec (a path, or spec text) into an nn.Module. Raises NlcError on mistakes.
    `checkpointing=True` recomputes each segment in backward (activation memory O(T d)).
    `freeze`: level names (list or "mem,mk") or "inner" (every in-context level) whose in-context
    learning is switched off in the plan: they keep their initial state (same parameters)."""
    from nlc.passes import run
    _check_backend(backend)
    is_text = isinstance(spec, str) and ("{" in spec and not Path(spec).suffix == ".nl")
    c = run(spec, overrides, model, text=spec if is_text else None)
    return _build(c, backend, checkpointing, overrides, None if is_text else str(spec), freeze)


def _check_backend(backend):
    if backend not in BACKENDS:
        raise NlcError(f"unknown backend '{backend}'", hint=f"backends: {', '.join(BACKENDS)}")


def _build(c, backend: str, checkpointing: bool, overrides: dict, spec_path: str | None, freeze=None):
    """The nn.Module of a compilation (`c`, from nlc.passes.run)."""
    from nlc.passes.size import check_fits_memory
    check_fits_memory(c.plan)  # a clear error, before allocating, when the parameters cannot fit
    import torch  # noqa: F401 - torch only from here on
    from nlc.lower.program import NLModel, freeze_plan
    m = NLModel(freeze_plan(c.plan, freeze), mode="reference" if backend == "reference" else "chunk", checkpointing=checkpointing)
    if backend == "compile":
        m.compile_segments()
    if backend == "triton":
        from nlc.lower.triton_plan import apply_triton
        apply_triton(m)
    text = c.unit.text
    m.backend = backend
    m.spec_name = c.plan.name
    m.spec_text = text
    m.spec_path = spec_path
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
    if opt.spec is not None:
        return NLOptimizer(params, opt.spec)  # checked with the spec's arguments (opt.args)
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
        return layer.segment(x, s, key, ends, m.mode, {})

    keys = [k for k in st if k.startswith(key + ".")]
    gm = torch.fx.experimental.proxy_tensor.make_fx(seg)(x, *[st[k] for k in keys])
    return gm.code if what == "py" else str(gm.graph)


def load(run_dir, backend: str = "torch"):
    """Rebuild a trained model from a run directory written by `nlc train` (its stored spec,
    model name and --set values), with the weights of its latest checkpoint.

    A run directory may come from elsewhere: its spec.json is checked against a schema, and
    nothing outside the directory is read (see nlc.rundir)."""
    from nlc.passes import run as run_passes
    from nlc.passes.load import load as load_unit
    from nlc.rundir import RunDirError, open_run

    _check_backend(backend)
    r = open_run(run_dir)
    rec = r.record
    unit = load_unit(str(r.main), root=r.spec_root)
    from nlc.passes.consts import select_model
    chosen = select_model(unit, rec.model)
    params = [p.name for p in chosen.params]
    for k in rec.overrides:  # before compiling: an error that names the record, not `--set`
        if k not in params:
            raise RunDirError(f"{r.path / 'spec.json'}: field 'overrides.{k}': model {chosen.name} has no parameter '{k}'",
                              hint=f"parameters: {', '.join(params) or 'none'}")
    c = run_passes(str(r.main), dict(rec.overrides), rec.model, unit=unit)
    m = _build(c, backend, False, dict(rec.overrides), rec.spec_path)
    if m.spec_hash != rec.spec_hash:
        raise RunDirError(f"{r.path / 'spec.json'}: spec_hash {rec.spec_hash} does not match the stored spec "
                          f"({m.spec_hash}): the spec or the record was changed after training",
                          hint="restore the run directory from its origin, or retrain")
    from nlc.train.checkpoint import load_checkpoint
    from nlc.train.sources import run_tokenizer
    load_checkpoint(r.path, m)
    m.tokenizer = run_tokenizer(r)
    return m
