"""nlc: a compiler for Nested Learning.

    import nlc
    model = nlc.compile("specs/hope.nl", dim=64, layers=2)   # an nn.Module
    out = model(tokens)                                       # logits, fast state, loss, stats

The front end (`nlc.check`) does not import torch.
"""
from nlc.errors import NlcError

__version__ = "0.1.0"
__all__ = ["NlcError", "check", "compile", "load"]


def check(path, model=None, **overrides):
    """Run the front end; return the Compilation (plan + level graph). Raises NlcError."""
    from nlc.passes import run
    return run(path, overrides, model)


def compile(spec, backend="torch", model=None, checkpointing=False, freeze=None, **overrides):  # noqa: A001 - the public name
    from nlc.api import compile as _compile
    return _compile(spec, backend=backend, model=model, checkpointing=checkpointing, freeze=freeze, **overrides)


def load(run_dir, backend="torch"):
    from nlc.api import load as _load
    return _load(run_dir, backend=backend)
