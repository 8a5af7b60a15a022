"""Training defaults come from one place (nlc/train/defaults.py): every fallback and help text reads it."""
import pytest

from nlc.train import defaults as D


def test_fallback_optimizers_use_the_one_lr():
    torch = pytest.importorskip("torch")
    from nlc.lower.outer import make_optimizer as outer
    from nlc.train.loop import make_optimizer
    lin = torch.nn.Linear(2, 2)
    assert outer(None, list(lin.parameters())).param_groups[0]["lr"] == D.FALLBACK_LR
    assert make_optimizer(lin, None).param_groups[0]["lr"] == D.FALLBACK_LR


def test_resolve_args_falls_back_to_defaults_then_the_callers():
    pytest.importorskip("torch")
    from nlc.train.loop import resolve_args
    a = resolve_args(object())
    assert {k: a[k] for k in D.DEFAULTS} == D.DEFAULTS
    b = resolve_args(object(), defaults=D.CLI)
    assert {k: b[k] for k in D.CLI} == D.CLI


def test_cli_help_states_the_defaults(capsys):
    from nlc.cli import main
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert f"else {D.CLI['steps']})" in out and f"else {D.DEFAULTS['warmup']})" in out


def test_spec_options_are_the_checkers_and_the_models():
    import nlc
    from nlc.passes.model import OUTER_OPTIONS
    assert set(OUTER_OPTIONS) == set(D.SPEC_OPTIONS)
    m = nlc.compile_text("model M(dim = 16, vocab = 32, steps = 7) {\n  block b {\n    out x + linear(x)\n  }\n"
                         "  level outer : params(all) { rule AdamW(lr = 0.002); clip = 0.5; warmup = 3 }\n}\n")
    assert m.train_defaults == {"lr": 0.002, "clip": 0.5, "warmup": 3, "steps": 7}
