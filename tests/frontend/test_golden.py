"""Golden IR: for every built-in spec and model, the resolved plan (`nlc compile SPEC --model M
--emit resolve`) followed by its level table, in `tests/golden/<spec>.<model>.txt`.

Regenerate with `NLC_ACCEPT=1 pytest tests/frontend/test_golden.py`; never edit by hand.
Optimizer-only specs (specs/optim/*.nl) are pinned by their `nlc check` tables.
"""
from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from nlc.cli import level_table
from nlc.passes import run
from nlc.passes.emit import emit
from nlc.passes.load import load
from nlc.passes.optimizer import check_file_optimizers, optimizer_table

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
ACCEPT = os.environ.get("NLC_ACCEPT") == "1"


def _cases():
    out = []
    for spec in sorted((ROOT / "specs").rglob("*.nl")):
        rel = spec.relative_to(ROOT)
        unit = load(spec)
        stem = str(spec.relative_to(ROOT / "specs").with_suffix("")).replace("/", ".")
        for m in unit.own_models:
            out.append(pytest.param(str(rel), m, f"{stem}.{m}.txt", id=f"{stem}.{m}"))
        if not unit.own_models:
            out.append(pytest.param(str(rel), None, f"{stem}.txt", id=stem))
    return out


def _render(spec: str, model: str | None) -> str:
    if model is None:
        unit = run(spec, until="load").unit
        return "\n\n".join(optimizer_table(s) for s in check_file_optimizers(unit, {})) + "\n"
    c = run(spec, model=model)
    return emit(c, "resolve") + "\n" + level_table(c) + "\n"


def _compare(path: Path, text: str):
    if ACCEPT:
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no {path.name}: run NLC_ACCEPT=1 pytest {__file__}"
    want = path.read_text(encoding="utf-8")
    if text != want:
        diff = "".join(difflib.unified_diff(want.splitlines(True), text.splitlines(True), str(path), "now"))
        pytest.fail(f"{path.name} changed (NLC_ACCEPT=1 to accept):\n{diff}")


@pytest.mark.parametrize("spec,model,golden", _cases())
def test_golden(spec, model, golden, monkeypatch):
    monkeypatch.chdir(ROOT)
    _compare(GOLDEN / golden, _render(spec, model))


def test_golden_matches_cli(capsys, monkeypatch):
    from nlc.cli import main
    monkeypatch.chdir(ROOT)
    assert main(["compile", "specs/hope.nl", "--model", "Hope", "--emit", "resolve"]) == 0
    out = capsys.readouterr().out
    assert (GOLDEN / "hope.Hope.txt").read_text(encoding="utf-8").startswith(out)


def test_no_stale_goldens():
    names = {p.values[2] for p in _cases()}
    stale = sorted(p.name for p in GOLDEN.glob("*.txt") if p.name not in names)
    assert not stale, f"golden files without a spec: {stale}"
