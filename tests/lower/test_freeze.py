"""`freeze`: in-context learning switched off per level, decided by the schedule (Impl.FROZEN)."""
import pytest
import torch

import nlc
from nlc.errors import NlcError
from nlc.ir.schedule import Impl
from nlc.passes.schedule import learning_levels

SMALL = dict(dim=32, layers=1)


def _x(T=48, B=2):
    return torch.randint(0, 256, (B, T), generator=torch.Generator().manual_seed(0))


def _mem_state(st, name):
    return {k: v for k, v in st.items() if f".{name}.W" in k}


def test_freeze_is_scheduled_and_keeps_the_initial_state():
    torch.manual_seed(0)
    m = nlc.compile("specs/titans.nl", model="TitansLMM", freeze="mem", **SMALL)
    assert [ls.impl for ls in m.schedule.levels] == [Impl.FROZEN]
    assert m.frozen == {"mem"}
    st0 = m.init_state(2)
    out = m(_x(), state=dict(st0))
    for k, v in _mem_state(out.state, "mem").items():
        assert torch.equal(v, st0[k]), k
    learning = nlc.compile("specs/titans.nl", model="TitansLMM", **SMALL)
    learning.load_state_dict(m.state_dict())
    out2 = learning(_x(), state=learning.init_state(2))
    assert any(not torch.equal(v, st0[k]) for k, v in _mem_state(out2.state, "mem").items())
    # the first chunk reads the initial state in both; later chunks differ
    assert torch.allclose(out.logits[:, :16], out2.logits[:, :16])
    assert not torch.allclose(out.logits[:, 16:], out2.logits[:, 16:])


def test_freeze_some_levels_of_hope_and_inner():
    torch.manual_seed(0)
    m = nlc.compile("specs/hope.nl", freeze=["mk", "c_cms0"], **SMALL)
    assert m.frozen == {"mk", "c_cms0"}
    x = _x(64)
    st0 = m.init_state(2)
    out = m(x, state=dict(st0), targets=torch.roll(x, -1, 1))
    for k, v in _mem_state(out.state, "mk").items():
        assert torch.equal(v, st0[k]), k
    assert torch.equal(out.state["hope.0.c_cms0.w_out"], st0["hope.0.c_cms0.w_out"])
    assert not torch.equal(out.state["hope.0.c_cms1.w_out"], st0["hope.0.c_cms1.w_out"])
    assert any(not torch.equal(v, st0[k]) for k, v in _mem_state(out.state, "memory").items())
    inner = nlc.compile("specs/hope.nl", freeze="inner", **SMALL)
    assert inner.frozen == set(learning_levels(inner.plan)) == {"mk", "mv", "meta", "malpha", "memory", "c_cms0", "c_cms1"}
    assert not inner.cms_learns


def test_freeze_equals_compiling_frozen():
    torch.manual_seed(0)
    m = nlc.compile("specs/hope.nl", **SMALL)
    f = nlc.freeze(m, "memory,mv")
    g = nlc.compile("specs/hope.nl", freeze="memory,mv", **SMALL)
    g.load_state_dict(m.state_dict())
    x = _x(80)  # past the first mem_chunk (64): before it, reads see the initial state either way
    assert torch.equal(f(x).logits, g(x).logits)
    assert not torch.equal(f(x).logits, m(x).logits)
    assert m.frozen == frozenset() and f.spec_name == m.spec_name


def test_frozen_reference_equals_chunk_fp64():
    torch.manual_seed(0)
    ch = nlc.compile("specs/hope.nl", freeze="mk,memory", **SMALL).double()
    ref = nlc.compile("specs/hope.nl", backend="reference", freeze="mk,memory", **SMALL).double()
    ref.load_state_dict(ch.state_dict())
    x = _x(32)
    y = torch.roll(x, -1, 1)
    a, b = ch(x, targets=y), ref(x, targets=y)
    assert torch.allclose(a.logits, b.logits, atol=1e-9, rtol=1e-9)


def test_freeze_names_are_checked():
    with pytest.raises(NlcError, match="no level 'nope'"):
        nlc.compile("specs/titans.nl", model="TitansLMM", freeze="nope", **SMALL)
    with pytest.raises(NlcError, match="does not learn in context"):
        nlc.compile("specs/titans.nl", model="TitansMAG", freeze="swa", **SMALL)
    with pytest.raises(NlcError, match="does not learn in context"):
        nlc.compile("specs/hope.nl", freeze="c_cms2", **SMALL)


@pytest.mark.parametrize("spec,model,freeze", [("specs/hope.nl", None, "inner"), ("specs/hope.nl", None, "mk,memory"),
                                               ("specs/titans.nl", "TitansMAG", "mem")])
def test_dead_ops_of_frozen_levels_are_not_run(spec, model, freeze):
    """A frozen level's keys, values and gates feed only its writes: the schedule drops those ops,
    and the program without them equals the program that runs every op (outputs and state)."""
    from dataclasses import replace
    torch.manual_seed(0)
    m = nlc.compile(spec, model=model, freeze=freeze, **SMALL).double()
    assert sum(len(d) for d in m.schedule.dead(m.plan).values()) > 0
    full = nlc.freeze(m, freeze)
    every = replace(full.schedule, live={b.name: frozenset(op.name for op in b.ops) for b in m.plan.blocks})
    from nlc.lower.program import NLModel
    allops = NLModel(m.plan, every, m.source).double()
    allops.load_state_dict(m.state_dict())
    x = _x(40)
    a, b = m(x, targets=torch.roll(x, -1, 1)), allops(x, targets=torch.roll(x, -1, 1))
    assert torch.equal(a.logits, b.logits)
    dead = {f".{n}.conv" for d in m.schedule.dead(m.plan).values() for n in d}  # a dead conv's cache is never read
    assert set(a.state) == set(b.state)
    for k in b.state:
        if not any(k.endswith(d) for d in dead):
            assert torch.equal(a.state[k], b.state[k]), k
