"""User-facing errors of training: bad data, bad checkpoints, a run that diverged.

Each carries a `hint` (what to do about it). They subclass `nlc.errors.NlcError`, so
the CLI renders them like every other user error and exits 2 without a traceback.
"""
from __future__ import annotations

try:
    from nlc.errors import NlcError as _Base
except ImportError:  # nlc.errors is optional at this layer; keep training importable alone

    class _Base(Exception):
        kind = "error"

        def __init__(self, message, span=None, hint=None, file=None):
            super().__init__(message)
            self.message, self.span, self.hint, self.file = message, span, hint, file


class TrainingError(_Base):
    """Base of the errors below; `str(err)` includes the hint."""

    def __init__(self, message: str, hint: str | None = None, *, file: str | None = None):
        super().__init__(message, None, hint, file)

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class DataError(TrainingError):
    """Training/eval data that cannot be used: missing, empty, binary, unreadable, too short."""


class CheckpointError(TrainingError):
    """A checkpoint that could not be written, is missing or corrupt, or belongs to another spec."""


class TrainError(TrainingError):
    """A run that cannot go on: bad arguments, or a loss/state that became NaN or inf."""


class DivergedError(TrainError):
    """A loss, fast state or weights that became NaN or inf (or blew past the weight limit): the run
    diverged, which `nlc sweep` records as a result (a learning rate past the stable window), not a failure."""
