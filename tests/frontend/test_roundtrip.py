"""The printer and the parser are inverses: parse(fmt(x)) == x for every built-in spec and for
random IR (hypothesis), fmt is idempotent, and random damage to a spec's text only ever
produces an NlcError or success, never another exception."""
from __future__ import annotations

import re
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nlc.cli import main
from nlc.errors import NlcError
from nlc.frontend.parse import parse_text
from nlc.ir import nodes as ir
from nlc.ir.printer import program
from nlc.passes import run
from nlc.passes.optimizer import check_file_optimizers

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted((ROOT / "specs").rglob("*.nl"))
IDS = [str(p.relative_to(ROOT / "specs")) for p in SPECS]


# ---- built-in specs --------------------------------------------------------------
@pytest.mark.parametrize("path", SPECS, ids=IDS)
def test_parse_fmt_parse(path: Path):
    text = path.read_text(encoding="utf-8")
    x = parse_text(text, str(path))
    out = program(x, text)
    assert parse_text(out, str(path)) == x
    # idempotent, with and without the comments of the source
    assert program(parse_text(out, "f"), out) == out
    bare = program(x)
    assert program(parse_text(bare, "f")) == bare


@pytest.mark.parametrize("path", SPECS, ids=IDS)
def test_specs_are_formatted(path: Path):
    text = path.read_text(encoding="utf-8")
    assert program(parse_text(text, str(path)), text) == text


def test_fmt_check_cli(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    assert main(["fmt", "--check", "specs"]) == 0
    assert main(["fmt", "--check", *map(str, SPECS)]) == 0


def test_fmt_check_reports_unformatted(tmp_path, capsys):
    f = tmp_path / "m.nl"
    f.write_text("model M(dim=64,vocab=256){block b{out x}}\n")
    assert main(["fmt", "--check", str(tmp_path)]) == 1
    assert f"would reformat {f}" in capsys.readouterr().out
    assert main(["fmt", str(f)]) == 0
    assert main(["fmt", "--check", str(f)]) == 0


# ---- random IR ---------------------------------------------------------------------
KEYWORDS = {"import", "as", "model", "optimizer", "memory", "block", "repeat", "out", "step", "level", "per", "head",
            "params", "clock", "keys", "values", "queries", "context", "learn", "rule", "init", "tokens", "steps",
            "frozen", "cms", "true", "false"}
names = st.text(string.ascii_lowercase + "_", min_size=1, max_size=6).filter(lambda s: s not in KEYWORDS) | \
    st.sampled_from(["x", "h", "dim", "heads", "lr", "beta", "grad", "param", "linear", "rmsnorm", "m1", "Fast"])
numbers = st.one_of(st.integers(0, 10**6).map(str), st.sampled_from(["0.5", "1e-3", "3e-4", "2.5", "1.0", ".25"]))
num = numbers.map(lambda t: ir.Num(value=float(t), text=t))
leaf = st.one_of(num, names.map(lambda n: ir.Name(id=n)), st.booleans().map(lambda b: ir.Bool(value=b)),
                 st.text(string.ascii_letters + "/._ ", max_size=8).map(lambda s: ir.Str(value=s)))


def _call(children):
    return st.builds(lambda f, a, k: ir.Call(func=f, args=a, kwargs=k), names, st.lists(children, max_size=3),
                     st.lists(st.builds(lambda n, v: ir.KwArg(name=n, value=v), names, children), max_size=2))


expr = st.recursive(leaf, lambda ch: st.one_of(
    _call(ch),
    st.builds(lambda op, a, b: ir.BinOp(op=op, left=a, right=b), st.sampled_from("+-*/"), ch, ch),
    ch.map(lambda e: ir.Neg(operand=e)),
), max_leaves=8)
calls = _call(expr)
clock = st.one_of(st.just(ir.Clock(unit="frozen")),
                  st.builds(lambda u, e: ir.Clock(unit=u, every=e), st.sampled_from(["tokens", "steps"]), expr))
cms = st.builds(lambda inp, k, stages: ir.Cms(options=ir.Call(func="cms", args=[inp], kwargs=k), stages=stages),
                expr, st.lists(st.builds(lambda n, v: ir.KwArg(name=n, value=v), names, expr), max_size=2),
                st.lists(st.builds(lambda m, c: ir.CmsStage(memory=m, clock=c), calls, clock), min_size=1, max_size=3))
prop = st.one_of(
    clock.map(lambda c: ir.ClockProp(clock=c)),
    st.builds(lambda r, v: ir.StreamProp(role=r, value=v), st.sampled_from(["keys", "values", "queries", "context"]), expr),
    calls.map(lambda c: ir.LearnProp(objective=c)),
    calls.map(lambda c: ir.RuleProp(rule=c)),
    calls.map(lambda c: ir.InitProp(init=c)),
    st.builds(lambda n, v: ir.OptionProp(name=n, value=v), names, expr),
)
mtype = st.one_of(calls.map(lambda c: ir.MemoryType(form="call", call=c)),
                  names.map(lambda n: ir.MemoryType(form="ref", ref=n)),
                  st.lists(names, min_size=1, max_size=2).map(lambda t: ir.MemoryType(form="params", targets=t)))


@st.composite
def level(draw):
    per = draw(st.booleans())
    return ir.LevelDef(names=draw(st.lists(names, min_size=1, max_size=3)), type=draw(mtype), per_head=per,
                       heads=draw(st.none() | expr) if per else None, props=draw(st.lists(prop, max_size=5)))


memdef = st.builds(lambda n, c: ir.MemoryDef(name=n, memory=c), names, calls)
assign = st.builds(lambda n, v: ir.Assign(name=n, value=v), names, expr | cms)
block = st.builds(lambda n, r, b: ir.Block(name=n, repeat=r, body=b), names, st.none() | expr,
                  st.lists(st.one_of(assign, level(), memdef, expr.map(lambda e: ir.Out(value=e))), max_size=5))
params = st.lists(st.builds(lambda n, v: ir.Param(name=n, default=v), names, expr), max_size=4)
model = st.builds(lambda n, p, b: ir.Model(name=n, params=p, body=b), names, params,
                  st.lists(st.one_of(memdef, block, level()), max_size=3))
optimizer = st.builds(lambda n, p, b: ir.Optimizer(name=n, params=p, body=b), names, params,
                      st.lists(st.one_of(level(), assign, expr.map(lambda e: ir.Step(value=e))), max_size=4))
imports = st.builds(lambda p, a: ir.Import(path=p, alias=a), st.text(string.ascii_letters + "/._", max_size=12),
                    st.none() | names)
programs = st.lists(st.one_of(imports, memdef, model, optimizer), max_size=4).map(
    lambda items: ir.Program(file="<gen>", items=items))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs)
def test_print_parse_roundtrip(p):
    text = program(p)
    back = parse_text(text, "<gen>") if text.strip() else ir.Program(file="<gen>", items=[])
    assert back == p
    assert program(back) == text


@settings(max_examples=100, deadline=None)
@given(expr)
def test_expression_roundtrip(e):
    from nlc.ir.printer import expr as pexpr
    text = f"model M(p = {pexpr(e)}) {{}}\n"
    assert parse_text(text).items[0].params[0].default == e


# ---- random damage -----------------------------------------------------------------
TEXTS = {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for p in SPECS}
TOKENS = ["{", "}", "(", ")", "=", ",", ":", "->", "@", "level", "block", "out", "x", "dim", "0", "-1", "2.5",
          "1e9", "tokens(0)", "frozen", "self(v)", "per head", "cms(", "\"", "#", "\n", ";", "params(all)", "keys",
          "import \"hope.nl\"", "model M() {}", "* 0", "/ 0", "\x00", "\u00e9"]


# semantic damage: a name or number replaced by something plausible but wrong
VOCAB = ["x", "h", "k", "v", "q", "dim", "heads", "0", "-1", "2.5", "1e9", "\"s\"", "true", "self(v)", "mem", "memory",
         "attn", "linear(h)", "linear(h, out = 1)", "learned(0.1)", "frozen", "mlp()", "slot", "grad", "param", "m", "4",
         "gate(h, h)", "cms(h) -> mlp() @ tokens(2)", "l2norm(h, groups = 3)", "head_mean(h, groups = 4)", "Fast", "all",
         "first", "nested", "(", "AdamW", "params(all)", "tokens(1)", "steps(2)", "conv(h, window = 0)"]
WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9.]+(?:e-?[0-9]+)?")


@st.composite
def damaged(draw):
    path = draw(st.sampled_from(sorted(TEXTS)))
    text = TEXTS[path]
    for _ in range(draw(st.integers(1, 3))):
        lines = text.split("\n")
        op = draw(st.sampled_from(["delete", "insert", "replace", "token", "swap", "dup", "truncate", "delline",
                                   "word", "word", "word"]))
        i = draw(st.integers(0, max(len(text) - 1, 0)))
        if op == "delete":
            text = text[:i] + text[i + draw(st.integers(1, 8)):]
        elif op == "insert":
            text = text[:i] + draw(st.sampled_from(string.printable)) + text[i:]
        elif op == "replace":
            text = text[:i] + draw(st.sampled_from(string.printable)) + text[i + 1:]
        elif op == "token":
            text = text[:i] + " " + draw(st.sampled_from(TOKENS)) + " " + text[i:]
        elif op in ("swap", "dup", "delline") and len(lines) > 1:
            a = draw(st.integers(0, len(lines) - 1))
            b = draw(st.integers(0, len(lines) - 1))
            if op == "swap":
                lines[a], lines[b] = lines[b], lines[a]
            elif op == "dup":
                lines.insert(b, lines[a])
            else:
                del lines[a]
            text = "\n".join(lines)
        elif op == "word":
            words = list(WORD.finditer(text))
            if words:
                m = words[draw(st.integers(0, len(words) - 1))]
                text = text[:m.start()] + draw(st.sampled_from(VOCAB)) + text[m.end():]
        elif op == "truncate":
            text = text[:i]
    return path, text


def _compile(path: str, text: str):
    unit = run(path, text=text, until="load").unit
    if not unit.own_models and unit.own_optimizers:
        return check_file_optimizers(unit, {})
    for m in unit.own_models or [None]:
        c = run(path, model=m, unit=unit)
        c.graph  # the networkx graph too


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=damaged())
def test_damage_gives_nlc_error_or_success(case, monkeypatch_root):
    path, text = case
    try:
        _compile(path, text)
    except NlcError as e:
        assert e.render({})  # every error renders


@pytest.fixture(scope="module")
def monkeypatch_root():
    mp = pytest.MonkeyPatch()
    mp.chdir(ROOT)
    yield
    mp.undo()


@pytest.mark.parametrize("path", sorted(TEXTS))
def test_every_truncation_of_hope(path, monkeypatch_root):
    # every prefix length (stepped) of each spec: the EOF paths of the parser
    text = TEXTS[path]
    for n in range(0, len(text), max(1, len(text) // 60)):
        try:
            _compile(path, text[:n])
        except NlcError:
            pass
