"""Every complete example in docs/language.md (a ```nl block with a top-level `model` or
`optimizer`) passes `nlc check`; every ```nl block parses and is canonically formatted
modulo `;` and blank lines."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from nlc.cli import main
from nlc.frontend.parse import parse_text

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "language.md"
BLOCKS = re.findall(r"```nl\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
COMPLETE = [b for b in BLOCKS if re.search(r"^(model|optimizer) ", b, re.M)]


def test_doc_has_examples():
    assert len(COMPLETE) >= 12


@pytest.mark.parametrize("text", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_example_parses(text):
    parse_text(text, "doc.nl")


@pytest.mark.parametrize("text", COMPLETE, ids=[f"example{i}" for i in range(len(COMPLETE))])
def test_example_checks(text, tmp_path, capsys):
    f = tmp_path / "example.nl"
    f.write_text(text, encoding="utf-8")
    rc = main(["check", str(f)])
    err = capsys.readouterr().err
    assert rc == 0, err
