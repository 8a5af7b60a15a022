"""Pass `load`: parse a spec and everything it imports; build the global scope.

Imports resolve relative to the importing file, then to the built-in `specs/` folder
(so `import "optim/adamw.nl"` works from anywhere). Missing and circular imports are errors.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from nlc.builtin import specs_dir
from nlc.errors import Diagnostics, ImportError_, NameError_, NlcError
from nlc.frontend.parse import normalize_source, parse_text, read_source
from nlc.ir import nodes as ir


@dataclass
class Unit:
    """A parsed spec with its imports: the global names it can see."""

    program: ir.Program
    text: str
    models: dict[str, ir.Model] = field(default_factory=dict)
    optimizers: dict[str, ir.Optimizer] = field(default_factory=dict)
    memories: dict[str, ir.MemoryDef] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # file -> text, for error rendering
    own_models: list[str] = field(default_factory=list)    # models defined in the file itself
    own_optimizers: list[str] = field(default_factory=list)  # optimizer definitions in the file itself
    root: Path | None = None  # a run directory's spec folder: imports resolve only inside it


def display_path(p: Path) -> str:
    """How an imported file is named in diagnostics: relative to the working directory when inside it."""
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(p)


def _resolve_path(imp: ir.Import, importer: str) -> Path | None:
    for base in (Path(importer).parent, specs_dir()):
        p = (base / imp.path)
        if p.is_file():
            return p.resolve()
    return None


def _resolve_in_root(imp: ir.Import, importer: str, root: Path, diags: Diagnostics) -> Path | None:
    """An import inside `root` (next to the importer, then at `root`, then nlc's own built-in
    specs), or None with an error: absolute paths, '..' out of `root` and links to outside it
    are refused, unread."""
    raw = imp.path
    if Path(raw).is_absolute() or raw.startswith(("/", "\\")):
        diags.error(ImportError_, f"import \"{raw}\" is an absolute path, outside the run directory", imp.span,
                    "a run directory holds its spec and every file it imports; imports are read only inside it")
        return None
    escaped = False
    for base in (Path(os.path.abspath(importer)).parent, root):
        cand = Path(os.path.normpath(base / raw))
        if not (cand == root or root in cand.parents):
            escaped = True
            continue
        if cand.is_file():
            real = cand.resolve()
            if not (real == root or root in real.parents):
                diags.error(ImportError_, f"import \"{raw}\" is a link to outside the run directory", imp.span,
                            "replace the link inside the run directory by a copy of the file")
                return None
            return real
    if not escaped:
        # nlc's own built-in specs (package data, never a user's file): how runs of older nlc
        # versions, which stored only spec.nl, still find `import "optim/adamw.nl"`
        from nlc.builtin import builtin_file
        p = builtin_file(raw)
        if p is not None:
            return p
    where = display_path(root)
    if escaped:
        diags.error(ImportError_, f"import \"{raw}\" leads outside the run directory ({where})", imp.span,
                    "a run directory holds its spec and every file it imports; imports are read only inside it")
    else:
        diags.error(ImportError_, f"cannot find import \"{raw}\" in the run directory ({where})", imp.span,
                    f"a run directory holds every file its spec imports: copy the file to {display_path(root / raw)} "
                    "(runs written by this nlc keep them under RUN/spec/)")
    return None


def load(path_or_text: str | Path, *, text: str | None = None, file: str | None = None,
         root: Path | None = None) -> Unit:
    """Load a spec from a path (or from `text`, named `file`). With `root` (a run directory's
    spec folder), imports resolve only inside it, then in nlc's own built-in specs; nothing else."""
    diags = Diagnostics()
    if text is None:
        file = str(path_or_text)
        text = read_source(file)
    else:
        file = file or "<string>"
        text = normalize_source(text)  # as read_source does: no BOM, \n newlines (sources render by line)
    program = parse_text(text, file)
    unit = Unit(program=program, text=text, sources={file: text}, root=None if root is None else Path(root).resolve())
    _collect(unit, program, diags, stack=[str(Path(file).resolve()) if Path(file).exists() else file], own=True)
    diags.check()
    return unit


def _collect(unit: Unit, program: ir.Program, diags: Diagnostics, stack: list[str], own: bool) -> None:
    for it in program.items:
        if isinstance(it, ir.Import):
            _import(unit, it, program.file, diags, stack)
    for it in program.items:
        if isinstance(it, ir.Import):
            continue
        table = {ir.Model: unit.models, ir.Optimizer: unit.optimizers, ir.MemoryDef: unit.memories}[type(it)]
        prev = table.get(it.name)
        if prev is not None and own and prev.span and prev.span.file == program.file:
            diags.error(NameError_, f"'{it.name}' is defined twice", it.span,
                        f"the first definition is at {prev.span}")
            continue
        # a definition in the importing file shadows an imported one
        table[it.name] = it
        if own and isinstance(it, ir.Model):
            unit.own_models.append(it.name)
        if own and isinstance(it, ir.Optimizer):
            unit.own_optimizers.append(it.name)


# NOTE: one `nlc check a.nl b.nl ...` parses optim/adamw.nl once, not once per importer;
# programs are immutable, and the key changes when the file does
_PARSED: dict[tuple, tuple[str, ir.Program]] = {}


def _parse_import(p: Path, name: str) -> tuple[str, ir.Program]:
    st = p.stat()
    key = (str(p), name, st.st_mtime_ns, st.st_size)
    if key not in _PARSED:
        text = read_source(p)
        _PARSED[key] = (text, parse_text(text, name))
    return _PARSED[key]


def _import(unit: Unit, imp: ir.Import, importer: str, diags: Diagnostics, stack: list[str]) -> None:
    if unit.root is not None:
        p = _resolve_in_root(imp, importer, unit.root, diags)
        if p is None:
            return
    else:
        p = _resolve_path(imp, importer)
    if p is None:
        diags.error(ImportError_, f"cannot find import \"{imp.path}\"", imp.span,
                    f"looked next to {Path(importer).name} and in the built-in specs/ folder")
        return
    if str(p) in stack:
        chain = " -> ".join(Path(s).name for s in stack[stack.index(str(p)):] + [str(p)])
        diags.error(ImportError_, f"circular import: {chain}", imp.span, "break the cycle by moving shared definitions to a third file")
        return
    name = display_path(p)
    try:
        text, prog = _parse_import(p, name)
    except NlcError as e:
        diags.add(e)
        return
    unit.sources[name] = text
    _collect(unit, prog, diags, stack + [str(p)], own=False)
