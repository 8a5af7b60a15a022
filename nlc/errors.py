"""Spans, typed user errors and the diagnostics accumulator.

Every user mistake becomes an `NlcError` with a `Span`; the CLI renders it like a
compiler (`file:line:col: error: message`, the source line, a caret, a hint) and exits 2.
Passes collect errors in a `Diagnostics` so one run reports all of them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, order=True)
class Span:
    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class NlcError(Exception):
    """A mistake in user input. `span` may be None for whole-file problems."""

    kind = "error"

    def __init__(self, message: str, span: Span | None = None, hint: str | None = None, file: str | None = None):
        super().__init__(message)
        self.message = message
        self.span = span
        self.hint = hint
        self.file = file or (span.file if span else None)

    def sort_key(self):
        s = self.span
        return (self.file or "", s.line if s else 0, s.col if s else 0, self.message)

    def render(self, sources: dict[str, str] | None = None) -> str:
        return render(self, sources)


class ParseError(NlcError):
    pass


class NameError_(NlcError):
    """Unknown or duplicate name (named with a trailing _ to not shadow the builtin)."""


class DimensionError(NlcError):
    pass


class ClockError(NlcError):
    pass


class CycleError(NlcError):
    pass


class ImportError_(NlcError):
    pass


class GraphError(NlcError):
    pass


class MultipleErrors(NlcError):
    """Several errors from one run; `errors` is sorted by position."""

    def __init__(self, errors: list[NlcError]):
        errors = sorted(errors, key=NlcError.sort_key)
        super().__init__(f"{len(errors)} errors", errors[0].span if errors else None)
        self.errors = errors


def flatten(err: NlcError) -> list[NlcError]:
    return list(err.errors) if isinstance(err, MultipleErrors) else [err]


@dataclass
class Diagnostics:
    """Collects errors across a pass so a run reports all of them."""

    errors: list[NlcError] = field(default_factory=list)

    def add(self, err: NlcError) -> None:
        self.errors.extend(flatten(err))

    def error(self, cls, message: str, span: Span | None, hint: str | None = None) -> None:
        self.errors.append(cls(message, span, hint))

    def check(self) -> None:
        """Raise everything collected so far (deduplicated, sorted)."""
        if not self.errors:
            return
        seen, uniq = set(), []
        for e in sorted(self.errors, key=NlcError.sort_key):
            key = (e.sort_key(), type(e).__name__)
            if key not in seen:
                seen.add(key)
                uniq.append(e)
        raise uniq[0] if len(uniq) == 1 else MultipleErrors(uniq)


def _source_line(file: str, line: int, sources: dict[str, str] | None) -> str | None:
    text = (sources or {}).get(file)
    if text is None:
        try:
            p = Path(file)
            if not p.is_file() or p.stat().st_size > _MAX_RENDER_READ:  # never block on a FIFO or read a huge file
                return None
            text = p.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError, ValueError):
            return None
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    # lines as the parser counts them: split at \n only (str.splitlines also splits at \f, \x1c, \u2028, ...)
    lines = text.split("\n")
    return lines[line - 1] if 0 < line <= len(lines) else None


_MAX_RENDER_READ = 64 << 20
_SHOW = 120  # a longer source line is shown as a window around the error


def _excerpt(src: str, col: int, width: int) -> tuple[str, int, int]:
    """(shown text, caret column, caret width) for a source line, cut to a window around `col`."""
    if len(src) <= _SHOW:
        return src, col, max(1, min(width, len(src) - col + 2))
    start = max(0, col - 1 - _SHOW // 3)
    end = start + _SHOW
    shown = ("..." if start else "") + src[start:end] + ("..." if end < len(src) else "")
    c = col - start + (3 if start else 0)
    return shown, c, max(1, min(width, end - (col - 1)))


def render(err: NlcError, sources: dict[str, str] | None = None) -> str:
    """`file:line:col: error: message`, the source line, a caret under the span, a hint."""
    out = []
    for e in flatten(err):
        s = e.span
        where = f"{s}: " if s else (f"{e.file}: " if e.file else "")
        out.append(f"{where}{e.kind}: {e.message}")
        if s:
            src = _source_line(s.file, s.line, sources)
            if src is not None:
                width = (s.end_col - s.col) if s.end_line == s.line and s.end_col > s.col else 1
                shown, col, w = _excerpt(src, s.col, width)
                out.append(f"    {shown}")
                out.append("    " + " " * (col - 1) + "^" * w)
        if e.hint:
            out.append(f"  hint: {e.hint}")
    return "\n".join(out)
