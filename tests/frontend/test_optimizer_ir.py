"""The checked optimizer plan holds resolved expressions (nlc.ir.optimizer), not surface nodes, and
prints them exactly as the surface printer prints what they came from (messages quote the source)."""
import glob

from nlc.frontend.parse import parse_file, parse_text
from nlc.ir import nodes as ir
from nlc.ir import optimizer as rx
from nlc.ir.printer import expr
from nlc.passes.optimizer import check_optimizer, resolve

TRICKY = """
optimizer T(lr = 1e-3, a = 0.5, b = 2, c = 3) {
  level m : slot {
    keys -(grad - param) / (a * -b) - (grad - (param - grad))
    rule ema(beta = a / (b / c) - a * -(-0.5))
  }
  step lr * -m / (sqrt(abs(m) + 1e-8) * (a - (b - c))) + unbias(m, a * 0.5) * sign(-m)
}
"""


def _optimizers():
    yield from (i for i in parse_text(TRICKY).items if isinstance(i, ir.Optimizer))
    for path in sorted(glob.glob("specs/optim/*.nl")):
        yield from (i for i in parse_file(path).items if isinstance(i, ir.Optimizer))


def _surface_exprs(opt):
    for s in opt.body:
        if isinstance(s, ir.Step):
            yield s.value
        if isinstance(s, ir.LevelDef):
            for p in s.props:
                if isinstance(p, ir.StreamProp):
                    yield p.value
                if isinstance(p, ir.RuleProp):
                    yield from p.rule.args
                    yield from (k.value for k in p.rule.kwargs)


def test_resolved_expressions_print_as_written():
    n = 0
    for opt in _optimizers():
        for e in _surface_exprs(opt):
            r = resolve(e)
            assert rx.show(r) == expr(e)
            assert r.span == e.span
            n += 1
    assert n > 20


def test_checked_spec_holds_no_surface_nodes():
    def walk(x):
        if isinstance(x, (list, tuple)):
            for y in x:
                yield from walk(y)
        elif isinstance(x, dict):
            for y in x.values():
                yield from walk(y)
        elif hasattr(x, "model_fields"):
            yield x
            for f in x.model_fields:
                yield from walk(getattr(x, f))
    for opt in _optimizers():
        spec = check_optimizer(opt)
        nodes = list(walk(spec))
        assert not [x for x in nodes if isinstance(x, ir.Node)], opt.name
        assert any(isinstance(x, rx.Apply) for x in nodes) or opt.name != "T"
        assert rx.names(spec.step) >= {lv.name for lv in spec.levels}
