"""A run directory as `nlc train` writes it, and read back without trusting it.

    RUN/spec.json        the record: spec name and hash, model, --set values, tokenizer, frozen levels (schema below)
    RUN/spec/NAME.nl     the spec, and under RUN/spec/ every file it imports (relative layout kept)
    RUN/spec.nl          a copy of the main spec file, for people (and older nlc versions)
    RUN/tokenizer/FILE   a local tokenizer file (`--tokenizer tiktoken:FILE`), copied in
    RUN/latest, RUN/ckpt-*/   checkpoints (nlc.train.checkpoint)

A run directory may come from someone else, so loading one reads nothing outside it:
`spec.json` is checked against a schema, imports resolve only inside RUN/spec/ (an import
that leaves it is an error), `latest` must name a `ckpt-*` folder of the run itself, and a
tokenizer is a tiktoken encoding by name or the file inside the run. Run directories of
older nlc versions (RUN/spec.nl, no RUN/spec/) load when self-contained: their imports
resolve inside RUN itself, then in nlc's own built-in specs (so `import "optim/adamw.nl"` of
a built-in spec's run is found), never anywhere else.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

from nlc.errors import NlcError

RECORD, SPEC_DIR, SPEC_COPY, TOKENIZER_DIR = "spec.json", "spec", "spec.nl", "tokenizer"
_IDENT = r"^[A-Za-z_][A-Za-z0-9_]*$"
_TMP = ".tmp-spec-"
MAX_RECORD_BYTES = 1 << 20


class RunDirError(NlcError):
    """A run directory that cannot be loaded (or written) as it is."""


# ---------------------------------------------------------------------------
# spec.json


def _scalar(v: Any) -> Any:
    # bool is an int in Python; JSON true/false, integers, numbers and strings are all --set values
    if isinstance(v, (bool, int, float, str)):
        return v
    raise ValueError("a --set value must be a number, a string, true or false")


def _schema():
    from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints

    Ident = Annotated[str, StringConstraints(pattern=_IDENT)]
    Scalar = Annotated[Any, AfterValidator(_scalar)]

    class RunRecord(BaseModel):
        """RUN/spec.json. Every field typed; an unknown field is an error."""

        model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
        spec_name: Ident
        spec_hash: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{1,64}$")]
        model: Ident | None = None
        overrides: dict[Ident, Scalar] = {}
        spec_path: str | None = None      # where the spec was at training time: shown, never read
        spec_file: str | None = None      # the main spec inside the run (spec/NAME.nl); absent in old runs
        tokenizer: Annotated[str, StringConstraints(pattern=r"^(bytes|tiktoken:.+)$")] = "bytes"
        tokenizer_file: str | None = None  # a tokenizer file inside the run (tokenizer/FILE)
        frozen: list[Ident] = []          # levels trained with their in-context learning off (`--freeze`)

    return RunRecord


_RECORD_CLS = None


def record_class():
    global _RECORD_CLS
    if _RECORD_CLS is None:
        _RECORD_CLS = _schema()
    return _RECORD_CLS


def _field(loc) -> str:
    parts = [str(x) for x in loc if x != "[key]"]
    return ".".join(parts) if parts else "(top level)"


def _message(err: dict) -> str:
    t, loc = err["type"], err["loc"]
    if t == "extra_forbidden":
        return f"unknown field '{_field(loc)}'"
    if t == "missing":
        return f"field '{_field(loc)}' is missing"
    if loc and loc[-1] == "[key]":
        return f"field '{_field(loc[:-1])}': key '{loc[-2]}' is not a name (letters, digits, _)"
    msg = err["msg"].removeprefix("Value error, ")
    if t == "string_pattern_mismatch":
        msg = "has an invalid value" if loc and loc[0] not in ("spec_name", "model") else "is not a name (letters, digits, _)"
        return f"field '{_field(loc)}' {msg}"
    return f"field '{_field(loc)}': {msg[:1].lower() + msg[1:]}"  # pydantic's words, never the value itself


def parse_record(data: bytes, path: Path):
    """The validated record of `path` (its bytes `data`), or RunDirError naming the file and field."""
    from pydantic import ValidationError

    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise RunDirError(f"{path} is not valid JSON: {str(e)[:200]}",
                          hint="restore it from the run's origin, or retrain") from None
    if not isinstance(obj, dict):
        raise RunDirError(f"{path} must hold a JSON object, not {type(obj).__name__ if obj is not None else 'null'}",
                          hint="it is written by nlc train; restore it, or retrain")
    try:
        return record_class().model_validate(obj, strict=True)
    except ValidationError as e:
        errs = e.errors(include_url=False, include_input=False)
        msgs = list(dict.fromkeys(_message(x) for x in errs))
        more = f" (and {len(msgs) - 1} more)" if len(msgs) > 1 else ""
        raise RunDirError(f"{path}: {msgs[0]}{more}", hint="; ".join(msgs[1:4]) or
                          "spec.json is written by nlc train: restore it, or retrain") from None


def _inside(p: Path, root: Path) -> bool:
    return p == root or root in p.parents


def inside_run(run: Path, rel: str, what: str) -> Path:
    """RUN/rel, checked to stay inside `run` (resolved: `run` is already resolved), symlinks followed."""
    pure = PurePosixPath(rel)
    if not rel or pure.is_absolute() or ".." in pure.parts or "\\" in rel:
        raise RunDirError(f"{run / RECORD}: {what} '{rel}' is outside the run directory",
                          hint="a run directory names only files inside it, by a relative path")
    p = run / rel
    if not _inside(p.resolve(), run):
        raise RunDirError(f"{run / rel} ({what}) is a link to outside the run directory",
                          hint="replace the link by a copy of the file")
    return p


def _read_small(p: Path, what: str) -> bytes:
    if not p.is_file():
        raise RunDirError(f"{p} is not a regular file ({what})")
    try:
        with open(p, "rb") as f:
            data = f.read(MAX_RECORD_BYTES + 1)
    except OSError as e:
        raise RunDirError(f"cannot read {p}: {e.strerror or e}") from None
    if len(data) > MAX_RECORD_BYTES:
        raise RunDirError(f"{p} is larger than {MAX_RECORD_BYTES >> 20} MB: not an nlc {what}")
    return data


def read_record(run_dir) -> Any:
    """RUN/spec.json, validated (a RunRecord)."""
    run = Path(run_dir).resolve()
    p = inside_run(run, RECORD, "the record")
    return parse_record(_read_small(p, "run record (spec.json)"), p)


@dataclass
class Run:
    """A run directory opened for loading: its record, and where its spec is."""

    path: Path          # resolved
    record: Any         # RunRecord
    spec_root: Path     # imports resolve only inside this folder
    main: Path          # the main spec file
    old_layout: bool    # spec.nl without spec/ (an older nlc)


def open_run(run_dir) -> Run:
    """Check a run directory and find its spec; reads nothing outside it."""
    given = Path(run_dir)
    if not given.is_dir():
        raise RunDirError(f"no such run directory: {given}", hint="nlc train SPEC --out DIR writes one")
    run = given.resolve()
    if not (run / RECORD).is_file():
        raise RunDirError(f"{given} is not an nlc run ({RECORD} missing)", hint="pass the --out folder of nlc train")
    rec = read_record(run)
    if rec.spec_file is not None:
        main = inside_run(run, rec.spec_file, "spec_file")
        if not (PurePosixPath(rec.spec_file).parts[:1] == (SPEC_DIR,)):
            raise RunDirError(f"{run / RECORD}: spec_file '{rec.spec_file}' is not under {SPEC_DIR}/",
                              hint=f"nlc train stores the spec as {SPEC_DIR}/NAME.nl")
        root, old = run / SPEC_DIR, False
    else:
        main, root, old = inside_run(run, SPEC_COPY, "the spec"), run, True
    if not main.is_file():
        raise RunDirError(f"{given} is not an nlc run: {main.relative_to(run)} is missing",
                          hint="pass the --out folder of nlc train")
    return Run(run, rec, root.resolve(), main, old)


# ---------------------------------------------------------------------------
# writing the spec tree at training time


def _norm(p: PurePosixPath) -> PurePosixPath | None:
    """Lexically normalised relative path, or None when it leaves its root."""
    out: list[str] = []
    for part in p.parts:
        if part in ("", "."):
            continue
        if part == "..":
            if not out:
                return None
            out.pop()
        else:
            out.append(part)
    return PurePosixPath(*out) if out else None


def _import_graph(model):
    """(main real path, main text, edges, texts): every import edge of the compiled spec as
    (importer real path, import string, target real path, resolved next to the importer?)."""
    from nlc.ir import nodes as ir
    from nlc.passes.load import _parse_import, _resolve_path, display_path

    unit = model.compilation.unit
    main_file = unit.program.file
    main = Path(main_file).resolve() if Path(main_file).is_file() else Path.cwd() / "spec.nl"
    texts = {main: model.spec_text}
    edges, todo, seen = [], [(main, unit.program)], {main}
    while todo:
        path, prog = todo.pop()
        for it in prog.items:
            if not isinstance(it, ir.Import):
                continue
            target = _resolve_path(it, prog.file)
            if target is None:  # the compile succeeded, so this cannot happen but by a race
                raise RunDirError(f"cannot store the spec: import \"{it.path}\" of {prog.file} is gone")
            local = (Path(prog.file).parent / it.path).is_file()
            edges.append((path, it.path, target, local))
            if target not in seen:
                seen.add(target)
                text, sub = _parse_import(target, display_path(target))
                texts[target] = text
                todo.append((target, sub))
    return main, edges, texts


def _layout(main: Path, edges, depth: int) -> dict[PurePosixPath, Path] | None:
    """Where each file goes under spec/ ({place: original}), with the main file `depth` folders
    down (under its own parent folders' names), or None when that layout would not give every
    import its file back: the loader looks next to the importer first, then at the spec root."""
    parents = main.parent.parts
    if depth > len(parents) - 1:
        return None
    start = PurePosixPath(*parents[len(parents) - depth:], main.name)
    owner = {start: main}
    places = {main: [start]}
    queue = [main]
    while queue:
        src = queue.pop()
        for s, imp, dst, local in edges:
            if s != src:
                continue
            for at in list(places[src]):
                where = _norm(at.parent / imp) if local else _norm(PurePosixPath(imp))
                if where is None or owner.setdefault(where, dst) != dst:
                    return None
                if dst not in places:
                    places[dst] = [where]
                    queue.append(dst)
                elif where not in places[dst]:
                    places[dst].append(where)
                    queue.append(dst)
    for s, imp, dst, _ in edges:
        for at in places[s]:
            near = _norm(at.parent / imp)
            got = owner[near] if near in owner else owner.get(_norm(PurePosixPath(imp)))
            if got != dst:
                return None
    return owner


def _store_paths(model):
    main, edges, texts = _import_graph(model)
    for src, imp, _, _ in edges:
        if PurePosixPath(imp).is_absolute() or Path(imp).is_absolute():
            raise RunDirError(f"{src}: import \"{imp}\" is an absolute path, which a run directory cannot hold",
                              hint="import it by a path relative to the importing file, so the run directory "
                                   "can keep a copy of it")
    for depth in range(len(main.parts)):
        owner = _layout(main, edges, depth)
        if owner is not None:
            main_at = next(w for w, p in owner.items() if p == main)
            return main_at.as_posix(), {w.as_posix(): texts[p] for w, p in owner.items()}
    raise RunDirError(f"cannot store {main} and its imports inside a run directory",
                      hint="keep imported files beside the spec or below its folder")


def write_spec(out: Path, model) -> str:
    """Store the spec and every file it imports under OUT/spec/ (replaced whole); returns the
    main file's path inside OUT (spec/NAME.nl)."""
    from nlc.train.checkpoint import _fsync_dir, _write_bytes

    main_rel, files = _store_paths(model)
    for p in out.glob(_TMP + "*"):  # left by a run killed while writing
        shutil.rmtree(p, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(dir=out, prefix=_TMP))
    try:
        for rel, text in files.items():
            f = tmp / rel
            f.parent.mkdir(parents=True, exist_ok=True)
            _write_bytes(f, text.encode("utf-8"))
        final = out / SPEC_DIR
        if final.exists() or final.is_symlink():
            old = Path(tempfile.mkdtemp(dir=out, prefix=_TMP + "old-"))
            os.replace(final, old / SPEC_DIR)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return f"{SPEC_DIR}/{main_rel}"


def store_tokenizer(out: Path, file: str) -> str:
    """Copy a local tokenizer file into OUT/tokenizer/; returns its path inside OUT."""
    from nlc.train.checkpoint import _write_bytes

    src = Path(file)
    dst_dir = out / TOKENIZER_DIR
    dst_dir.mkdir(exist_ok=True)
    dst = dst_dir / src.name
    if src.resolve() != dst.resolve():
        _write_bytes(dst, src.read_bytes())
    return f"{TOKENIZER_DIR}/{src.name}"


def write_record(out: Path, rec: dict) -> None:
    from nlc.train.checkpoint import _write_bytes

    record_class().model_validate(rec, strict=True)  # never write what could not be read back
    _write_bytes(out / RECORD, json.dumps(rec, indent=2).encode())
