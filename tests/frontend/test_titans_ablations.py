"""specs/titans_ablations.nl: each Titans Table 5 ablation is specs/titans.nl's TitansLMM with only
its ablated lines changed, so an edit of TitansLMM that the ablations miss fails here (docs/results.md,
"Titans ablations (Table 5) at small scale")."""
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


# ablation -> (TitansLMM's lines it drops, the lines it has instead), comments aside
CHANGES = {
    "TitansLinear": (["level mem : Deep per head {"], ["level mem : linear() per head {"]),
    "TitansNoMomentum": (
        ["eta = sigmoid(linear(h, out = heads))",
         "rule momentum(lr = lr_max / chunk * (1 - eta) * sigmoid(linear(h, out = heads)), momentum = eta, "
         "decay = decay_max * sigmoid(linear(h, out = heads)))"],
        ["rule momentum(lr = lr_max / chunk * sigmoid(linear(h, out = heads)), momentum = 0, "
         "decay = decay_max * sigmoid(linear(h, out = heads)))"]),
    "TitansNoDecay": (
        ["model M(dim = 64, heads = 4, layers = 2, vocab = 256, chunk = 16, lr_max = 1, decay_max = 0.01) {",
         "rule momentum(lr = lr_max / chunk * (1 - eta) * sigmoid(linear(h, out = heads)), momentum = eta, "
         "decay = decay_max * sigmoid(linear(h, out = heads)))"],
        ["model M(dim = 64, heads = 4, layers = 2, vocab = 256, chunk = 16, lr_max = 1) {",
         "rule momentum(lr = lr_max / chunk * (1 - eta) * sigmoid(linear(h, out = heads)), momentum = eta)"]),
    "TitansNoConv": (
        [f"{x} = l2norm(silu(conv(linear(h))), groups = heads)" for x in "qkv"],
        [f"{x} = l2norm(silu(linear(h)), groups = heads)" for x in "qkv"]),
}


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_ablation_is_titans_lmm_with_one_change(name):
    full = _model(ROOT / "specs" / "titans.nl", "TitansLMM")
    abl = _model(ROOT / "specs" / "titans_ablations.nl", name)
    removed = [ln[1:].strip() for ln in difflib.ndiff(full, abl) if ln.startswith("- ")]
    added = [ln[1:].strip() for ln in difflib.ndiff(full, abl) if ln.startswith("+ ")]
    assert (removed, added) == CHANGES[name]


def test_every_model_is_covered():
    from nlc.passes.load import load
    assert sorted(load(ROOT / "specs" / "titans_ablations.nl").own_models) == sorted(CHANGES)
