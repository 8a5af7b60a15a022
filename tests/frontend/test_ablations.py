"""The ablation specs are their full model with only the ablated lines changed, so an edit of the full model
that the ablations miss fails here:
- specs/titans_ablations.nl: Titans Table 5, each specs/titans.nl's TitansLMM with one change (docs/results.md,
  "Titans ablations (Table 5) at small scale");
- specs/hope_ablations.nl: each specs/hope.nl's Hope with one part taken out (docs/results.md, "Why Hope learned
  no recall at d_model 64")."""
from __future__ import annotations

import difflib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"


def _model(path: Path, name: str) -> list[str]:
    """The model's lines, comments and indentation dropped, its name replaced by M."""
    text = path.read_text(encoding="utf-8")
    start = text.index(f"model {name}(")
    end = text.find("\n}\n", start)
    lines = [re.sub(r"#.*", "", ln).strip() for ln in text[start:end + 2].splitlines()]
    return [ln.replace(f"model {name}(", "model M(") for ln in lines if ln]


def _diff(full: list[str], abl: list[str]) -> tuple[list[str], list[str]]:
    """(lines of `full` that `abl` drops, lines `abl` has instead), in order."""
    sm = difflib.SequenceMatcher(a=full, b=abl, autojunk=False)
    removed, added = [], []
    for op, i1, i2, j1, j2 in sm.get_opcodes():
        if op != "equal":
            removed += full[i1:i2]
            added += abl[j1:j2]
    return removed, added


# Titans Table 5: ablation -> (TitansLMM's lines it drops, the lines it has instead), comments aside
TITANS = {
    "TitansLinear": (["level mem : Deep per head {"], ["level mem : linear() per head {"]),
    "TitansNoMomentum": (
        ["eta = sigmoid(linear(h, out = heads))",
         "rule momentum(lr = lr_max / chunk * (1 - eta) * sigmoid(linear(h, out = heads)), momentum = eta, "
         "decay = decay_max * sigmoid(linear(h, out = heads)), normalize = normalize)"],
        ["rule momentum(lr = lr_max / chunk * sigmoid(linear(h, out = heads)), momentum = 0, "
         "decay = decay_max * sigmoid(linear(h, out = heads)), normalize = normalize)"]),
    "TitansNoDecay": (
        ["model M(dim = 64, heads = 4, layers = 2, vocab = 256, chunk = 16, lr_max = 1, decay_max = 0.01, normalize = false) {",
         "rule momentum(lr = lr_max / chunk * (1 - eta) * sigmoid(linear(h, out = heads)), momentum = eta, "
         "decay = decay_max * sigmoid(linear(h, out = heads)), normalize = normalize)"],
        ["model M(dim = 64, heads = 4, layers = 2, vocab = 256, chunk = 16, lr_max = 1, normalize = false) {",
         "rule momentum(lr = lr_max / chunk * (1 - eta) * sigmoid(linear(h, out = heads)), momentum = eta, normalize = normalize)"]),
    "TitansNoConv": (
        [f"{x} = l2norm(silu(conv(linear(h))), groups = heads)" for x in "qkv"],
        [f"{x} = l2norm(silu(linear(h)), groups = heads)" for x in "qkv"]),
}

CMS = ("c = cms(rmsnorm(x1), variant = sequential) -> mlp(expansion = 2, act = gelu) @ tokens(chunk) "
       "-> mlp(expansion = 2, act = gelu) @ tokens(mem_chunk) -> mlp(expansion = 2, act = gelu) @ frozen")
# Hope: ablation -> (Hope's lines it drops, the lines it has instead), comments aside
HOPE = {
    "HopeStatic": (
        ["k = l2norm(conv(mk(h)), groups = heads)", "v = mv(h)",
         "eta = lr_max * sigmoid(head_mean(meta(h), groups = heads))",
         "alpha = decay_max * sigmoid(head_mean(malpha(h), groups = heads))",
         "level mk, mv, meta, malpha : Fast per head {", "keys k", "values l2norm(self(v), groups = heads)",
         "learn l2", "rule dgd(lr = eta, decay = alpha, layers = all)", "clock tokens(chunk)", "}"],
        ["k = l2norm(conv(linear(h)), groups = heads)", "v = linear(h)",
         "eta = lr_max * sigmoid(linear(h, out = heads))", "alpha = decay_max * sigmoid(linear(h, out = heads))"]),
    "HopeStaticKeys": (["k = l2norm(conv(mk(h)), groups = heads)", "level mk, mv, meta, malpha : Fast per head {"],
                       ["k = l2norm(conv(linear(h)), groups = heads)", "level mv, meta, malpha : Fast per head {"]),
    "HopePlainValues": (["values l2norm(self(v), groups = heads)"], ["values l2norm(v, groups = heads)"]),
    "HopeNoCMS": ([CMS, "out x1 + c"], ["out x1"]),
}

# ablation file -> (the full model's file, its name, the ablations)
FILES = {"titans_ablations.nl": ("titans.nl", "TitansLMM", TITANS), "hope_ablations.nl": ("hope.nl", "Hope", HOPE)}
CASES = [(f, name) for f, (_, _, changes) in FILES.items() for name in sorted(changes)]


@pytest.mark.parametrize("file,name", CASES, ids=[n for _, n in CASES])
def test_ablation_is_the_full_model_with_its_change(file, name):
    full_file, full_name, changes = FILES[file]
    full = _model(SPECS / full_file, full_name)
    assert _diff(full, _model(SPECS / file, name)) == changes[name]


@pytest.mark.parametrize("file", sorted(FILES))
def test_every_model_is_covered(file):
    from nlc.passes.load import load
    assert sorted(load(SPECS / file).own_models) == sorted(FILES[file][2])
