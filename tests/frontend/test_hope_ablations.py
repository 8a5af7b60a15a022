"""specs/hope_ablations.nl: each Hope ablation is specs/hope.nl's Hope with only its ablated lines
changed, so an edit of Hope that the ablations miss fails here (docs/results.md, "Why Hope does not
learn MQAR at d_model 64")."""
from __future__ import annotations

import difflib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _model(path: Path, name: str) -> list[str]:
    """The model's lines, comments and indentation dropped, its name replaced by M."""
    text = path.read_text(encoding="utf-8")
    start = text.index(f"model {name}(")
    end = text.find("\n}\n", start)
    lines = [re.sub(r"#.*", "", ln).strip() for ln in text[start:end + 2].splitlines()]
    return [ln.replace(f"model {name}(", "model M(") for ln in lines if ln]


CMS = ("c = cms(rmsnorm(x1), variant = sequential) -> mlp(expansion = 2, act = gelu) @ tokens(chunk) "
       "-> mlp(expansion = 2, act = gelu) @ tokens(mem_chunk) -> mlp(expansion = 2, act = gelu) @ frozen")
# ablation -> (Hope's lines it drops, the lines it has instead), comments aside
CHANGES = {
    "HopeStatic": (
        ["k = l2norm(conv(mk(h)), groups = heads)", "v = mv(h)",
         "eta = lr_max * sigmoid(head_mean(meta(h), groups = heads))",
         "alpha = decay_max * sigmoid(head_mean(malpha(h), groups = heads))",
         "level mk, mv, meta, malpha : Fast per head {", "keys k", "values l2norm(self(v), groups = heads)",
         "learn l2", "rule dgd(lr = eta, decay = alpha, layers = all)", "clock tokens(chunk)", "}"],
        ["k = l2norm(conv(linear(h)), groups = heads)", "v = linear(h)",
         "eta = lr_max * sigmoid(linear(h, out = heads))", "alpha = decay_max * sigmoid(linear(h, out = heads))"]),
    "HopePlainValues": (["values l2norm(self(v), groups = heads)"], ["values l2norm(v, groups = heads)"]),
    "HopeNoCMS": ([CMS, "out x1 + c"], ["out x1"]),
}


def _diff(full: list[str], abl: list[str]) -> tuple[list[str], list[str]]:
    # SequenceMatcher, not ndiff: ndiff pairs near-identical lines with '?' hints, which is only noise here
    sm = difflib.SequenceMatcher(a=full, b=abl, autojunk=False)
    removed, added = [], []
    for op, i1, i2, j1, j2 in sm.get_opcodes():
        if op != "equal":
            removed += full[i1:i2]
            added += abl[j1:j2]
    return removed, added


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_ablation_is_hope_with_one_change(name):
    full = _model(ROOT / "specs" / "hope.nl", "Hope")
    abl = _model(ROOT / "specs" / "hope_ablations.nl", name)
    assert _diff(full, abl) == CHANGES[name]


def test_every_model_is_covered():
    from nlc.passes.load import load
    assert sorted(load(ROOT / "specs" / "hope_ablations.nl").own_models) == sorted(CHANGES)
