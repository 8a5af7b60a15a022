"""A model's spec as plain data: the run record (RUN/spec.json) and the text of every file a
run directory keeps for it (RUN/spec/..., RUN/tokenizer/FILE). This is what travels inside a
transformers config, so a saved folder needs no file outside it. Needs no transformers.

Building a model back from a bundle goes through the same checks as `nlc.load` of a run
directory that came from elsewhere: the files are laid out as a run directory in a temporary
folder, the record is validated against its schema, imports resolve only inside that folder
(nlc.rundir, nlc.passes.load with `root`), and the spec hash must match the record's.
"""
from __future__ import annotations

import tempfile
from pathlib import Path, PurePosixPath

from nlc.rundir import RECORD, SPEC_DIR, TOKENIZER_DIR, RunDirError

# the folders of a run directory a bundle may carry files of
_BUNDLE_DIRS = (SPEC_DIR, TOKENIZER_DIR)


def bundle_of_model(model, record: dict) -> tuple[dict, dict]:
    """(record, files) of a compiled or loaded model: its spec tree as `nlc train` stores it
    (nlc.rundir.write_spec), and `record` (a run's spec.json) with spec_file pointing into it."""
    from nlc.rundir import write_spec

    with tempfile.TemporaryDirectory(prefix="nlc-bundle-") as tmp:
        rec = dict(record, spec_file=write_spec(Path(tmp), model))
        files = {p.relative_to(tmp).as_posix(): p.read_text(encoding="utf-8")
                 for p in sorted(Path(tmp, SPEC_DIR).rglob("*")) if p.is_file()}
    return rec, files


def bundle_of_run(run_dir) -> tuple[dict, dict, object]:
    """(record, files, model) of a trained run directory: the model loaded by `nlc.load`
    (latest checkpoint), its spec tree, and its tokenizer file when it has one."""
    from nlc.api import load
    from nlc.rundir import inside_run, open_run

    model = load(run_dir)
    r = open_run(run_dir)
    rec, files = bundle_of_model(model, r.record.model_dump(exclude_none=True))
    if r.record.tokenizer_file is not None:
        src = inside_run(r.path, r.record.tokenizer_file, "tokenizer_file")
        name = f"{TOKENIZER_DIR}/{PurePosixPath(r.record.tokenizer_file).name}"
        files[name] = src.read_bytes().decode("utf-8")  # tiktoken rank files are base64 text
        rec["tokenizer_file"] = name
    return rec, files, model


def _place(root: Path, rel: str) -> Path:
    pure = PurePosixPath(rel)
    if (not rel or pure.is_absolute() or ".." in pure.parts or "\\" in rel
            or pure.parts[0] not in _BUNDLE_DIRS or len(pure.parts) < 2):
        raise RunDirError(f"the model's config names a spec file '{rel}' outside its {'/ or '.join(_BUNDLE_DIRS)}/ "
                          "folders", hint="export the model again with nlc export RUN --to hf DIR")
    return root / pure


def build(record: dict, files: dict):
    """(model, tokenizer) from a bundle: an nlc model with freshly initialised weights, the
    spec checked exactly as `nlc.load` checks a run directory's (see the module's docstring)."""
    from nlc.api import compile as nlc_compile
    from nlc.passes.load import load as load_unit
    from nlc.rundir import open_run, write_record
    from nlc.train.sources import run_tokenizer

    if not isinstance(record, dict) or not isinstance(files, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise RunDirError("the model's config has no valid nlc spec (nlc_record, nlc_files)",
                          hint="export the model with nlc export RUN --to hf DIR")
    with tempfile.TemporaryDirectory(prefix="nlc-bundle-") as tmp:
        root = Path(tmp)
        for rel, text in files.items():
            p = _place(root, rel)
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text, encoding="utf-8")
        write_record(root, record)  # validated: an unknown or mistyped field is a clear error
        r = open_run(root)
        rec = r.record
        # imports resolve only inside the folder (or nlc's built-in specs); then the same files compile
        unit = load_unit(str(r.main), root=r.spec_root)
        model = nlc_compile(str(r.main), model=rec.model, **dict(rec.overrides))
        if sorted(model.compilation.unit.sources.values()) != sorted(unit.sources.values()):
            raise RunDirError("the model's spec imports a file that resolves differently outside its own folder",
                              hint="export the model again with nlc export RUN --to hf DIR")
        if model.spec_hash != rec.spec_hash:
            raise RunDirError(f"{RECORD} in the model's config: spec_hash {rec.spec_hash} does not match its spec "
                              f"({model.spec_hash}): the spec or the record was changed after export",
                              hint="export the model again with nlc export RUN --to hf DIR")
        tokenizer = run_tokenizer(r)
    return model, tokenizer
