"""nlc: a compiler for Nested Learning.

    import nlc
    model = nlc.compile("specs/hope.nl", dim=64, layers=2)   # an NLModel (an nn.Module)
    out = model(tokens)                                       # logits, fast state, loss, stats
    model.schedule, model.plan, model.optimizer(), model.emit("schedule")

The front end (`nlc.check`) does not import torch.
"""
from nlc.errors import NlcError

__version__ = "0.1.0"
__all__ = ["NlcError", "check", "compile", "compile_text", "freeze", "load"]


def check(path, model=None, **overrides):
    """Run the front end; return the Compilation (plan, level graph, schedule). Raises NlcError."""
    from nlc.passes import run
    return run(path, overrides, model)


def compile(spec, backend="torch", model=None, checkpointing=False, freeze=None, **overrides):  # noqa: A001 - the public name
    """A spec file or built-in spec name -> NLModel (nlc.api.compile)."""
    from nlc.api import compile as _compile
    return _compile(spec, backend=backend, model=model, checkpointing=checkpointing, freeze=freeze, **overrides)


def compile_text(text, backend="torch", model=None, checkpointing=False, freeze=None, **overrides):
    """Spec text -> NLModel (nlc.api.compile_text)."""
    from nlc.api import compile_text as _compile_text
    return _compile_text(text, backend=backend, model=model, checkpointing=checkpointing, freeze=freeze, **overrides)


def freeze(model, levels):
    """A copy of `model` with `levels` frozen in context (nlc.api.freeze)."""
    from nlc.api import freeze as _freeze
    return _freeze(model, levels)


def load(run_dir, backend="torch"):
    from nlc.api import load as _load
    return _load(run_dir, backend=backend)
