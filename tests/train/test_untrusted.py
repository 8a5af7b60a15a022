"""Untrusted files (issue 10, section 4): a run directory or a checkpoint from elsewhere.

No unsafe unpickling anywhere; a run directory is self-contained and loading it reads nothing
outside it (imports, `latest`, the tokenizer); spec.json is checked against a schema.
"""
import base64
import hashlib
import io
import json
import os
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from nlc.errors import NlcError, render

ROOT = Path(__file__).resolve().parents[2]
TRANSFORMER = ROOT / "specs" / "transformer.nl"
TINY = dict(dim=16, heads=2, layers=1)


def make_run(out: Path, spec=TRANSFORMER, tokenizer="bytes", **ov):
    """A run directory as `nlc train` writes it (spec record + one checkpoint), without training."""
    from nlc.api import compile
    from nlc.cli_run import _write_spec_record
    from nlc.train.checkpoint import save_checkpoint

    m = compile(str(spec), **{**TINY, **ov})
    out.mkdir(parents=True, exist_ok=True)
    _write_spec_record(out, m, SimpleNamespace(model=None, tokenizer=tokenizer))
    save_checkpoint(out, m, m.optimizer(), 1)
    return m


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("base") / "run"
    make_run(out)
    return out


@pytest.fixture
def run(base_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(base_run, out, symlinks=True)
    return out


def load(run_dir):
    from nlc.api import load as nlc_load
    return nlc_load(str(run_dir))


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def edit_record(run_dir, **changes):
    p = run_dir / "spec.json"
    rec = json.loads(p.read_text())
    for k, v in changes.items():
        if v is ...:
            rec.pop(k, None)
        else:
            rec[k] = v
    p.write_text(json.dumps(rec))


# ---- no unsafe deserialisation ---------------------------------------------------------

UNSAFE = [
    (r"weights_only\s*=\s*False", "torch.load(weights_only=False) runs code from the file"),
    (r"\b(c?[Pp]ickle|dill|cloudpickle|joblib|marshal|shelve)\.(load|loads|Unpickler|open)\b", "unpickling"),
    (r"allow_pickle\s*=\s*True", "numpy.load(allow_pickle=True) unpickles"),
    (r"\byaml\.(load|unsafe_load|full_load)\(", "yaml.load builds arbitrary objects"),
]


def _python_files():
    for top in ("nlc", "backends"):
        yield from sorted((ROOT / top).rglob("*.py"))


def _calls(text, name):
    """The argument text of every `name(` call (parentheses matched)."""
    for m in re.finditer(re.escape(name) + r"\(", text):
        depth, i = 1, m.end()
        while depth and i < len(text):
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        yield text[m.end():i - 1]


def test_no_unsafe_load_in_the_package():
    found = []
    for f in _python_files():
        text = f.read_text(encoding="utf-8")
        rel = f.relative_to(ROOT)
        for pat, why in UNSAFE:
            for m in re.finditer(pat, text):
                found.append(f"{rel}:{text[:m.start()].count(chr(10)) + 1}: {why}")
        for args in _calls(text, "torch.load"):
            if not re.search(r"weights_only\s*=\s*True", args):
                found.append(f"{rel}: torch.load({args.strip()[:60]}) without weights_only=True")
    assert not found, "\n".join(found)


class _Payload:
    """Unpickling this (unsafely) creates a folder: proof that code from the file ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def _plant_state(ckpt: Path, obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    (ckpt / "state.pt").write_bytes(buf.getvalue())
    rec = json.loads((ckpt / "record.json").read_text())  # a crafted file comes with a matching checksum
    rec["files"]["state.pt"] = hashlib.sha256(buf.getvalue()).hexdigest()
    (ckpt / "record.json").write_text(json.dumps(rec))


def test_crafted_state_pt_runs_no_code_and_gives_nlc_own_error(run, tmp_path):
    from nlc.train.checkpoint import CheckpointError, load_checkpoint, resolve

    marker = tmp_path / "pwned"
    ckpt = resolve(run)
    _plant_state(ckpt, {"optimizer": _Payload(marker), "fast_state": {}, "rng": None})
    from nlc.api import compile
    model = compile(str(TRANSFORMER), **TINY)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(run, model, model.optimizer())
    text = render(e.value) + str(e.value)
    assert "weights_only" not in text and "not safe to load" in text and "posix.mkdir" in text, text
    assert not marker.exists()


def test_fsdp_resume_does_not_unpickle_code(run, tmp_path):
    """`load_full_optimizer_state` (FSDP --resume) once read state.pt with weights_only=False."""
    from nlc.api import compile
    from nlc.train.checkpoint import CheckpointError, resolve
    from nlc.train.distributed import load_full_optimizer_state

    marker = tmp_path / "pwned"
    ckpt = resolve(run)
    _plant_state(ckpt, {"optimizer": _Payload(marker), "fast_state": {}, "rng": None})
    model = compile(str(TRANSFORMER), **TINY)
    with pytest.raises(Exception) as e:
        load_full_optimizer_state(model, model.optimizer(), ckpt)
    assert not marker.exists(), "unpickling the crafted state.pt ran code"
    assert isinstance(e.value, CheckpointError) and "weights_only" not in render(e.value) + str(e.value)


def test_garbled_state_pt_is_a_clear_error(run):
    from nlc.train.checkpoint import CheckpointError, resolve

    ckpt = resolve(run)
    blob = b"\x80\x02garbage" * 10
    (ckpt / "state.pt").write_bytes(blob)
    rec = json.loads((ckpt / "record.json").read_text())
    rec["files"]["state.pt"] = hashlib.sha256(blob).hexdigest()
    (ckpt / "record.json").write_text(json.dumps(rec))
    with pytest.raises(CheckpointError, match="state.pt is corrupt") as e:
        load(run)
    assert "weights_only" not in render(e.value)


# ---- a run directory is self-contained ----------------------------------------------------


def test_a_new_run_stores_its_spec_and_imports(run):
    rec = json.loads((run / "spec.json").read_text())
    assert rec["spec_file"] == "spec/transformer.nl"
    assert (run / "spec" / "transformer.nl").read_text() == TRANSFORMER.read_text()
    assert (run / "spec" / "optim" / "adamw.nl").read_text() == (ROOT / "specs" / "optim" / "adamw.nl").read_text()


def test_a_run_loads_after_its_spec_files_are_gone(tmp_path):
    """Imports next to the spec, above it ('../'), and built-in ones all travel with the run."""
    proj = tmp_path / "proj"
    (proj / "models").mkdir(parents=True)
    (proj / "lib" / "parts").mkdir(parents=True)
    body = TRANSFORMER.read_text().replace('import "optim/adamw.nl"', 'import "../lib/common.nl"')
    (proj / "models" / "m.nl").write_text(body)
    (proj / "lib" / "common.nl").write_text('import "optim/adamw.nl"\nimport "parts/deep.nl"\n')
    (proj / "lib" / "parts" / "deep.nl").write_text("memory Deep = mlp(depth = 2, expansion = 2, act = silu)\n")
    out = tmp_path / "run"
    m = make_run(out, proj / "models" / "m.nl")
    shutil.rmtree(proj)
    stored = sorted(p.relative_to(out / "spec").as_posix() for p in (out / "spec").rglob("*.nl"))
    assert stored == ["lib/common.nl", "lib/parts/deep.nl", "models/m.nl", "optim/adamw.nl"]
    assert same_weights(load(out), m)


def test_an_absolute_import_is_refused_at_training_time(tmp_path):
    from nlc.rundir import RunDirError

    lib = tmp_path / "abs" / "opt.nl"
    lib.parent.mkdir()
    lib.write_text((ROOT / "specs" / "optim" / "adamw.nl").read_text())
    spec = tmp_path / "m.nl"
    spec.write_text(TRANSFORMER.read_text().replace('"optim/adamw.nl"', json.dumps(str(lib))))
    with pytest.raises(RunDirError, match="absolute path"):
        make_run(tmp_path / "run", spec)


def _secret(tmp_path):
    s = tmp_path / "secret.nl"
    s.write_text("SECRET-LINE-42 {\n")
    return s


def _prepend_import(run, path):
    """The same hostile import in the stored spec and in the spec.nl copy (older nlc read that)."""
    for f in (run / "spec" / "transformer.nl", run / "spec.nl"):
        if f.exists():
            f.write_text(f'import "{path}"\n' + f.read_text())


@pytest.mark.parametrize("how", ["absolute", "dotdot"])
def test_imports_cannot_leave_the_run_directory(run, tmp_path, how):
    secret = _secret(tmp_path)
    _prepend_import(run, secret if how == "absolute" else "../../secret.nl")
    with pytest.raises(NlcError) as e:
        load(run)
    text = render(e.value)
    assert "SECRET-LINE" not in text and "outside the run directory" in text, text


def test_an_import_linked_out_of_the_run_is_refused(run, tmp_path):
    secret = _secret(tmp_path)
    (run / "spec").mkdir(exist_ok=True)
    (run / "spec" / "evil.nl").symlink_to(secret)
    (run / "evil.nl").symlink_to(secret)
    _prepend_import(run, "evil.nl")
    with pytest.raises(NlcError) as e:
        load(run)
    text = render(e.value)
    assert "SECRET-LINE" not in text and "outside the run directory" in text, text


def test_the_spec_file_cannot_be_a_link_out(run, tmp_path):
    secret = _secret(tmp_path)
    for f in (run / "spec" / "transformer.nl", run / "spec.nl"):
        f.unlink(missing_ok=True)
        f.parent.mkdir(exist_ok=True)
        f.symlink_to(secret)
    with pytest.raises(NlcError) as e:
        load(run)
    assert "SECRET-LINE" not in render(e.value)


@pytest.mark.parametrize("where", ["relative", "absolute"])
def test_latest_must_name_a_checkpoint_of_the_run(run, tmp_path, where):
    from nlc.train.checkpoint import CheckpointError, list_checkpoints

    other = tmp_path / "other"
    other.mkdir()
    own = list_checkpoints(run)[-1]
    shutil.move(str(own), other / own.name)
    (run / "latest").write_text((f"../other/{own.name}" if where == "relative" else str(other / own.name)) + "\n")
    with pytest.raises(CheckpointError, match="does not name a checkpoint folder of this run"):
        load(run)


def test_a_checkpoint_linked_out_of_the_run_is_refused(run, tmp_path):
    from nlc.train.checkpoint import CheckpointError, list_checkpoints

    own = list_checkpoints(run)[-1]
    shutil.move(str(own), tmp_path / own.name)
    (run / own.name).symlink_to(tmp_path / own.name)
    with pytest.raises(CheckpointError, match="outside"):
        load(run)
    (run / own.name).unlink()
    (run / own.name).mkdir()
    for f in (tmp_path / own.name).iterdir():
        (run / own.name / f.name).symlink_to(f)
    with pytest.raises(CheckpointError, match="outside"):
        load(run)


def test_an_old_run_loads_when_self_contained_else_says_how(run):
    """Runs of older nlc versions: spec.nl and no spec/ folder; imports resolve inside the run,
    then in nlc's own built-in specs (so old runs of the built-in specs load), never elsewhere."""
    before = load(run)
    shutil.rmtree(run / "spec")
    edit_record(run, spec_file=...)
    assert same_weights(load(run), before)  # optim/adamw.nl: nlc's own
    (run / "spec.nl").write_text('import "mine/opt.nl"\n' + (run / "spec.nl").read_text())
    with pytest.raises(NlcError) as e:
        load(run)
    text = render(e.value)
    assert 'cannot find import "mine/opt.nl" in the run directory' in text and "copy the file to" in text, text
    (run / "mine").mkdir()
    (run / "mine" / "opt.nl").write_text("memory Unused = linear()\n")
    with pytest.raises(NlcError, match="does not match the stored spec"):  # found now; the edited spec != the record
        load(run)


def test_the_spec_path_of_the_record_is_never_read(run, tmp_path):
    """Older nlc compiled the file named by spec_path when its text matched (imports next to it)."""
    proj = tmp_path / "proj"
    proj.mkdir()
    shutil.copy(run / "spec.nl", proj / "m.nl")
    (proj / "optim").mkdir()
    (proj / "optim" / "adamw.nl").write_text("SECRET-LINE-42 {\n")
    edit_record(run, spec_path=str(proj / "m.nl"))
    shutil.rmtree(run / "spec" / "optim")
    load(run)  # optim/adamw.nl from nlc's built-in specs: the (unparsable) file next to spec_path is never read


# ---- the tokenizer -------------------------------------------------------------------------


@pytest.fixture
def bpe_file(tmp_path):
    pytest.importorskip("tiktoken")
    toks = [bytes([i]) for i in range(256)] + [b"de", b"def", b" x"]
    path = tmp_path / "bpe" / "tiny.tiktoken"
    path.parent.mkdir()
    path.write_text("".join(f"{base64.b64encode(t).decode()} {r}\n" for r, t in enumerate(toks)))
    return path


def test_a_tokenizer_file_is_copied_into_the_run(tmp_path, bpe_file):
    out = tmp_path / "run"
    make_run(out, tokenizer=f"tiktoken:{bpe_file}", vocab=259)
    shutil.rmtree(bpe_file.parent)
    assert (out / "tokenizer" / "tiny.tiktoken").is_file()
    m = load(out)
    assert m.tokenizer.n_vocab == 259 and m.tokenizer.decode(m.tokenizer.encode(b"def x")) == b"def x"


def test_a_tokenizer_path_in_the_record_is_not_read(tmp_path, bpe_file):
    out = tmp_path / "run"
    make_run(out, tokenizer=f"tiktoken:{bpe_file}", vocab=259)
    for tok, extra in ((f"tiktoken:{bpe_file}", dict(tokenizer_file=...)),       # an older record: a local path
                       ("tiktoken:../bpe/tiny.tiktoken", dict(tokenizer_file=...)),
                       (f"tiktoken:{bpe_file}", dict(tokenizer_file="../bpe/tiny.tiktoken"))):
        edit_record(out, tokenizer=tok, **extra)
        with pytest.raises(NlcError, match="outside the run directory"):
            load(out)


def test_tokenizer_names_are_names():
    from nlc.train.sources import is_encoding_name

    assert all(is_encoding_name(n) for n in ("gpt2", "cl100k_base", "o200k_base", "r50k_base"))
    assert not any(is_encoding_name(n) for n in ("", "/etc/passwd", "../x", "a/b", ".hidden", "x..y"))


# ---- spec.json is checked against a schema ------------------------------------------------

BAD_RECORDS = [
    ("[1, 2]", "must hold a JSON object, not list"),
    ('"text"', "must hold a JSON object, not str"),
    ("{not json", "not valid JSON"),
    ("[" * 100_000, "not valid JSON"),
    (dict(overrides=[1]), "field 'overrides'"),
    (dict(overrides={"dim": [1]}), "field 'overrides.dim'"),
    (dict(overrides={"a-b": 1}), "key 'a-b' is not a name"),
    (dict(evil=1), "unknown field 'evil'"),
    (dict(model=3), "field 'model'"),
    (dict(model="a b"), "field 'model' is not a name"),
    (dict(spec_hash=...), "field 'spec_hash' is missing"),
    (dict(spec_hash=12), "field 'spec_hash'"),
    (dict(tokenizer=5), "field 'tokenizer'"),
    (dict(tokenizer="sentencepiece:x"), "field 'tokenizer' has an invalid value"),
    (dict(spec_file="../x.nl"), "outside the run directory"),
    (dict(spec_file="/etc/passwd"), "outside the run directory"),
    (dict(spec_file="spec.nl"), "is not under spec/"),
]


@pytest.mark.parametrize("bad,want", BAD_RECORDS, ids=[str(i) for i in range(len(BAD_RECORDS))])
def test_a_bad_spec_json_is_a_clear_error(run, bad, want):
    if isinstance(bad, str):
        (run / "spec.json").write_text(bad)
    else:
        edit_record(run, **bad)
    with pytest.raises(NlcError) as e:
        load(run)
    assert "spec.json" in str(e.value) and want in str(e.value), str(e.value)


def test_overrides_named_like_compile_arguments_are_spec_parameters(run):
    """Once `compile() got multiple values for keyword argument 'backend'`."""
    edit_record(run, overrides={"backend": "x", "checkpointing": True})
    with pytest.raises(NlcError, match=r"spec.json: field 'overrides.backend': model Transformer has no parameter"):
        load(run)
    edit_record(run, overrides={"checkpointing": True})
    with pytest.raises(NlcError, match=r"spec.json: field 'overrides.checkpointing'"):
        load(run)


def test_cli_exits_2_on_a_bad_run(run, capsys):
    from nlc.cli import main

    (run / "spec.json").write_text("[1]")
    assert main(["eval", str(run)]) == 2
    err = capsys.readouterr().err
    assert "spec.json must hold a JSON object" in err and "Traceback" not in err
