"""The Python API: `nlc.compile(spec) -> NLModel`, `nlc.compile_text(text)`, `nlc.freeze(model, levels)`,
`nlc.load(run)`.

Backends share one state_dict layout, so weights move between them:
    reference  per-token interpreter of the equations (the ground truth)
    torch      the chunk-parallel program, eager
    compile    the same, each layer's segment program under torch.compile(fullgraph=True)
    triton     the chunk-parallel program with fused Triton update kernels where they apply

The returned model is an `nlc.lower.program.NLModel`: `.plan` (the resolved plan), `.schedule`
(what the `schedule` stage decided), `.optimizer()`, `.emit(stage)`, `.source` (the spec it came from).
"""
from __future__ import annotations

from dataclasses import replace

from nlc.errors import NlcError
from nlc.ir.schedule import BACKENDS, Backend


def compile(spec, backend: str = "torch", model: str | None = None, checkpointing: bool = False,  # noqa: A001
            freeze=None, cut_teaching: bool = True, group_levels: bool = True, **overrides):
    """Compile a .nl spec (a path, or a built-in spec by name: `hope`, `titans:TitansMAG`) into an
    NLModel. Spec text goes to `compile_text`. Raises NlcError on mistakes.
    `checkpointing=True` recomputes each segment in backward (activation memory O(T d)).
    `freeze`: level names (list or "mem,mk") or "inner" (every in-context level) whose in-context
    learning the schedule switches off: they keep their initial state (same parameters).
    `cut_teaching=False`: CMS teaching as one graph over each call, the uncut reference that
    nlc/lower/stitch.py's cut and stitched pass is tested against (O(T^2) in backward).
    `group_levels=False`: identical memories of a block run one by one, not as one batched level
    (the schedule's `groups`; the same results, for A/B comparisons)."""
    from nlc.passes import run
    if isinstance(spec, str) and "\n" in spec:
        raise NlcError("nlc.compile takes a path or a built-in spec name; this looks like spec text",
                       hint="use nlc.compile_text(text, ...) for spec text")
    target = make_target(backend, checkpointing, cut_teaching, group_levels)
    c = run(spec, overrides, model, target=target, freeze=freeze)
    return build_model(c, str(spec))


def compile_text(text: str, backend: str = "torch", model: str | None = None, checkpointing: bool = False,
                 freeze=None, cut_teaching: bool = True, group_levels: bool = True, **overrides):
    """Compile spec text (imports are resolved against the current folder). As `compile`."""
    from nlc.passes import run
    c = run("<spec>", overrides, model, text=text, target=make_target(backend, checkpointing, cut_teaching, group_levels),
            freeze=freeze)
    return build_model(c, None)


def freeze(m, levels):
    """A copy of compiled model `m` with `levels` (names, "a,b", or "inner") frozen in context, sharing
    nothing: the same plan rescheduled, with `m`'s weights (same state_dict layout). What the in-context
    gain compares against (nlc.train.evaluate.in_context_gain). Levels `m` already has frozen stay
    frozen (a run trained with `--freeze` never learned them in context: unfreezing is not a copy)."""
    from nlc.lower.program import NLModel
    from nlc.passes.schedule import build_schedule, frozen_levels
    target = replace(m.schedule.target, frozen=m.schedule.target.frozen | frozen_levels(m.plan, levels))
    f = NLModel(m.plan, build_schedule(m.plan, target), m.source, m.tokenizer)
    f.load_state_dict(m.state_dict())
    p = next(iter(m.parameters()), None)
    if p is not None:
        f.to(p.device)
    f.train(m.training)
    return f


def make_target(backend: str, checkpointing: bool = False, cut_teaching: bool = True, group_levels: bool = True):
    """The schedule stage's Target for a backend name (an NlcError for an unknown one); whether fused
    kernels can run here is asked once, now."""
    from nlc.ir.schedule import Target
    if backend not in BACKENDS:
        raise NlcError(f"unknown backend '{backend}'", hint=f"backends: {', '.join(BACKENDS)}")
    runnable = False
    if backend == Backend.TRITON:
        from nlc import kernels
        runnable = kernels.available()
    return Target(Backend(backend), checkpointing, runnable, cut_teaching=cut_teaching, group_levels=group_levels)


def build_model(c, spec_path: str | None, tokenizer=None):
    """The NLModel of a compilation (`c`, from nlc.passes.run, scheduled): the lowering's entry point
    (`nlc compile --emit py|fx` and `--dump` use it too)."""
    import sys

    from nlc.ir.source import SpecSource
    from nlc.passes.schedule import fused_kernel
    from nlc.passes.size import check_fits_memory
    check_fits_memory(c.plan)  # a clear error, before allocating, when the parameters cannot fit
    from nlc.lower.program import NLModel
    s = c.schedule
    if s.target.backend == Backend.TRITON and not s.target.kernels_runnable:
        n = sum(1 for _, lv in c.plan.all_levels() if fused_kernel(lv) is not None)
        if n:
            print("nlc: triton backend: no CUDA device and TRITON_INTERPRET is not set; "
                  f"{n} fusable level(s) run on the torch path", file=sys.stderr)
    src = SpecSource(text=c.unit.text, path=spec_path, overrides=dict(c.overrides), compilation=c)
    return NLModel(c.plan, s, src, tokenizer)


def load(run_dir, backend: str = "torch"):
    """Rebuild a trained model from a run directory written by `nlc train` (its stored spec,
    model name and --set values), with the weights of its latest checkpoint.

    A run directory may come from elsewhere: its spec.json is checked against a schema, and
    nothing outside the directory is read (see nlc.rundir)."""
    from nlc.passes import run as run_passes
    from nlc.passes.load import load as load_unit
    from nlc.rundir import RunDirError, open_run

    target = make_target(backend, False)
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
    c = run_passes(str(r.main), dict(rec.overrides), rec.model, unit=unit, target=target,
                   freeze=list(rec.frozen) or None)  # as trained: `--freeze` is part of the run
    from nlc.train.sources import run_tokenizer
    m = build_model(c, rec.spec_path, run_tokenizer(r))
    if m.spec_hash != rec.spec_hash:
        raise RunDirError(f"{r.path / 'spec.json'}: spec_hash {rec.spec_hash} does not match the stored spec "
                          f"({m.spec_hash}): the spec or the record was changed after training",
                          hint="restore the run directory from its origin, or retrain")
    from nlc.train.checkpoint import load_checkpoint
    load_checkpoint(r.path, m)
    return m
