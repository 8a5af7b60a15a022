"""The error corpus: every `tests/errors/*.nl` is a bad spec; `nlc check` must exit 2 with
exactly the diagnostics of its sibling `.expected` (all errors of the file, sorted), and no
traceback. A first line `# args: ...` adds command-line arguments.

Regenerate the `.expected` files with `NLC_ACCEPT=1 pytest tests/frontend/test_errors.py`;
never edit them by hand.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from nlc.cli import main

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "errors"
CASES = sorted(CORPUS.glob("*.nl"))
ACCEPT = os.environ.get("NLC_ACCEPT") == "1"


def _args(path: Path) -> list[str]:
    first = path.read_text(encoding="utf-8").split("\n", 1)[0]
    return shlex.split(first[len("# args:"):]) if first.startswith("# args:") else []


def _check(capsys, *argv) -> tuple[int, str]:
    rc = main(["check", *argv])
    cap = capsys.readouterr()
    return rc, cap.err


@pytest.fixture(autouse=True)
def _in_root(monkeypatch):
    # diagnostics name files as given on the command line: run from the repo root
    monkeypatch.chdir(ROOT)


def test_corpus_is_big_enough():
    assert len(CASES) >= 40


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_error_corpus(path: Path, capsys):
    rel = str(path.relative_to(ROOT))
    rc, err = _check(capsys, *_args(path), rel)
    assert rc == 2, err
    assert "Traceback" not in err
    assert " error: " in err or err.startswith("error: ")
    expected = path.with_suffix(".expected")
    if ACCEPT:
        expected.write_text(err, encoding="utf-8")
    assert expected.exists(), f"no {expected.name}: run NLC_ACCEPT=1 pytest {__file__}"
    assert err == expected.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_errors_are_sorted(path: Path, capsys):
    rc, err = _check(capsys, *_args(path), str(path.relative_to(ROOT)))
    locs = []
    for line in err.splitlines():
        head = line.split(": error: ")[0]
        parts = head.rsplit(":", 2)
        if ": error: " in line and len(parts) == 3 and parts[1].isdigit():
            locs.append((parts[0], int(parts[1]), int(parts[2])))
    assert locs == sorted(locs)


def test_multiple_errors_all_reported(capsys):
    rc, err = _check(capsys, "tests/errors/multiple_errors.nl")
    assert rc == 2
    assert err.count(": error: ") == 4
    assert err.rstrip().endswith("4 errors")


def test_several_files_report_every_error(capsys):
    files = ["tests/errors/dim_add.nl", "specs/hope.nl", "tests/errors/clock_zero.nl"]
    rc, err = _check(capsys, "--quiet", *files)
    assert rc == 2
    assert "dim_add.nl:" in err and "clock_zero.nl:" in err and "hope.nl" not in err


@pytest.mark.parametrize("name", ["syntax_missing_brace", "flow_cycle", "import_circular_a", "empty", "set_unknown_param"])
def test_subprocess(name):
    path = CORPUS / f"{name}.nl"
    rel = str(path.relative_to(ROOT))
    r = subprocess.run([sys.executable, "-m", "nlc", "check", *_args(path), rel], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr == path.with_suffix(".expected").read_text(encoding="utf-8")


# ---- files that cannot live in the corpus ---------------------------------------
def test_binary_file(tmp_path, capsys):
    f = tmp_path / "blob.nl"
    f.write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00model")
    rc, err = _check(capsys, str(f))
    assert rc == 2 and "Traceback" not in err
    assert err.startswith(f"{f}: error: {f} is a binary file, not a .nl spec")


def test_non_utf8_file(tmp_path, capsys):
    f = tmp_path / "latin1.nl"
    f.write_bytes("# caf\u00e9\nmodel M(dim = 64, vocab = 256) { block b { out x } }\n".encode("latin-1"))
    rc, err = _check(capsys, str(f))
    assert rc == 2 and "Traceback" not in err
    assert f"{f}:1:1: error: {f} is not valid UTF-8 (byte 0xe9 at offset 5)" in err
    assert "hint: save the file as UTF-8" in err


def test_directory(tmp_path, capsys):
    rc, err = _check(capsys, str(tmp_path))
    assert rc == 2 and "Traceback" not in err
    assert f"error: {tmp_path} is a directory, not a .nl file" in err


def test_missing_file(capsys):
    rc, err = _check(capsys, "tests/errors/does_not_exist.nl")
    assert rc == 2 and "Traceback" not in err
    assert err.startswith("tests/errors/does_not_exist.nl: error: no such file: tests/errors/does_not_exist.nl")


def test_unreadable_import(tmp_path, capsys):
    (tmp_path / "bad.nl").write_bytes(b"\xff\xfe")
    f = tmp_path / "main.nl"
    f.write_text('import "bad.nl"\nmodel M(dim = 64, vocab = 256) { block b { out x } }\n')
    rc, err = _check(capsys, str(f))
    assert rc == 2 and "Traceback" not in err and "not valid UTF-8" in err


def test_set_unknown_on_builtin_spec(capsys):
    rc, err = _check(capsys, "--set", "dimm=128", "specs/hope.nl")
    assert rc == 2
    assert "--set dimm: model Hope has no parameter 'dimm'" in err
    assert "did you mean 'dim'?" in err


def test_set_unknown_on_optimizer_file(capsys):
    rc, err = _check(capsys, "--set", "betta=0.5", "specs/optim/momentum.nl")
    assert rc == 2
    assert "--set betta: optimizer Momentum has no parameter 'betta'" in err and "did you mean 'beta'?" in err


def test_debug_shows_traceback():
    r = subprocess.run([sys.executable, "-m", "nlc", "--debug", "check", "tests/errors/dim_add.nl"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and r.returncode != 2
    assert "Traceback" in r.stderr and "DimensionError" in r.stderr
