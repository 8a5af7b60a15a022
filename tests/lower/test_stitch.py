"""A taught forward cut per segment and stitched (nlc/lower/stitch.py) against the uncut reference
(`nlc.compile(..., cut_teaching=False)`, one graph over the call), in float64: loss, logits, final state,
and the gradients of every parameter, of the input embeddings and of the initial state, with
gradients entering through the loss, the logits and the returned state."""
import pytest
import torch

import nlc
from nlc.errors import NlcError

SMALL = dict(dim=16, heads=2)
HOPE = dict(chunk=4, mem_chunk=8, decay_max=0.1)  # the decay on: Hope's default is 0
NESTED = open("specs/cms.nl").read().replace("variant = sequential", "variant = nested")


def model(spec, **ov):
    torch.manual_seed(0)
    if spec == "nested-cms":
        return nlc.compile_text(NESTED, **SMALL, **ov).double()
    return nlc.compile(spec, **SMALL, **ov).double()


def twins(spec, **ov):
    """The same model compiled twice, with the same weights: CMS teaching cut and stitched, and uncut."""
    cut, uncut = model(spec, **ov), model(spec, cut_teaching=False, **ov)
    uncut.load_state_dict(cut.state_dict())
    assert cut.schedule.target.cut_teaching and not uncut.schedule.target.cut_teaching
    assert "CMS teaching uncut" in uncut.emit("schedule") and "uncut" not in cut.emit("schedule")
    return cut, uncut


def run(m, calls, B=1, embeddings=False, state_grad=False):
    """Streams `calls` (segment lengths) through `m`; returns (per-call outputs, gradients) of a
    scalar that reads every output (loss, logits and final state, with fixed random weights)."""
    g = torch.Generator().manual_seed(1)
    T = sum(calls)
    x = torch.randint(0, 256, (B, T), generator=g)
    emb = m.embed(x).detach().requires_grad_() if embeddings else None
    st = m.init_state(B)
    init = {}
    if state_grad:  # the initial state as leaves: its gradient comes back through the stitch
        init = {k: v.detach().clone().requires_grad_() for k, v in st.items() if v.is_floating_point()}
        st.update(init)
    outs, total, s = [], 0.0, 0
    for n in calls:
        o = m(x[:, s:s + n], state=st, targets=x[:, s:s + n],
              embeddings=emb[:, s:s + n] if emb is not None else None)
        total = total + o.loss + (o.logits * torch.randn(o.logits.shape, generator=g, dtype=o.logits.dtype)).sum()
        outs.append(o)
        st, s = o.state, s + n
    for k in sorted(st):  # gradients entering through the returned state
        if st[k].requires_grad:
            total = total + (st[k] * torch.randn(st[k].shape, generator=g, dtype=st[k].dtype)).sum()
    wrt = list(m.parameters()) + ([emb] if emb is not None else []) + [init[k] for k in sorted(init)]
    grads = torch.autograd.grad(total, wrt, allow_unused=True)
    return outs, grads


CASES = [  # (spec, overrides, calls, options)
    ("specs/hope.nl", dict(HOPE, layers=2), [11], {}),                       # T off the chunk grid
    ("specs/hope.nl", dict(HOPE, layers=1), [16], dict(embeddings=True)),    # `embeddings=` input
    ("specs/hope.nl", dict(HOPE, layers=2), [5, 9], dict(state_grad=True)),  # streamed, carried state
    ("specs/hope.nl", dict(HOPE, layers=1, checkpointing=True), [6], {}),
    ("nested-cms", dict(fast=2, mid=4, slow=8, layers=2), [11], {}),          # eq. 72 resets, attention caches
]


@pytest.mark.parametrize("spec,ov,calls,opt", CASES)
def test_cut_equals_uncut(spec, ov, calls, opt):
    m, m_ref = twins(spec, **ov)
    ref, g_ref = run(m_ref, calls, **opt)
    cut, g_cut = run(m, calls, **opt)
    for a, b in zip(ref, cut):
        torch.testing.assert_close(b.loss, a.loss, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(b.logits, a.logits, rtol=1e-12, atol=1e-12)
        assert b.state.keys() == a.state.keys()
        for k in a.state:
            torch.testing.assert_close(b.state[k], a.state[k], rtol=1e-12, atol=1e-12, msg=k)
    names = [n for n, _ in m.named_parameters()] + ["embeddings"] * opt.get("embeddings", False)
    names += ["state"] * (len(g_ref) - len(names))
    assert sum(g is not None for g in g_ref) > len(list(m.parameters())) // 2
    for name, a, b in zip(names, g_ref, g_cut):
        if a is None:
            assert b is None or not b.any(), name
        else:
            torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-11, msg=name)


def _count_walks(monkeypatch):
    """Wrap torch.autograd.grad: record how many graph nodes each call can reach from its outputs."""
    sizes, real = [], torch.autograd.grad

    def grad(outputs, inputs, *a, **kw):
        seen, stack = set(), [o.grad_fn for o in ([outputs] if torch.is_tensor(outputs) else outputs) if o.grad_fn]
        while stack:
            f = stack.pop()
            if f is not None and f not in seen:
                seen.add(f)
                stack.extend(n for n, _ in f.next_functions)
        sizes.append(len(seen))
        return real(outputs, inputs, *a, **kw)
    monkeypatch.setattr(torch.autograd, "grad", grad)
    return sizes


def test_every_pass_is_bounded_by_a_segment(monkeypatch):
    """The cause of the quadratic step: each teaching pass could reach the whole graph so far. Cut,
    the largest graph any autograd call sees does not grow with T (the uncut one does)."""
    models = dict(zip((True, False), twins("specs/hope.nl", layers=1, **HOPE)))
    sizes = _count_walks(monkeypatch)
    most = {}
    for cut, m in models.items():
        for T in (16, 32):
            sizes.clear()
            x = torch.randint(0, 256, (1, T))
            m(x, targets=x).loss.backward()
            most[(cut, T)] = max(sizes)
    assert most[(True, 32)] <= 1.05 * most[(True, 16)], most  # a few nodes: the last piece's flush
    assert most[(False, 32)] > 2 * most[(False, 16)], most


def test_limits_and_grad_modes():
    m = model("specs/hope.nl", layers=1, **HOPE)
    x = torch.randint(0, 256, (1, 9))
    o = m(x, targets=x)
    with pytest.raises(NlcError, match="double backward"):
        torch.autograd.grad(o.loss, list(m.parameters()), create_graph=True, allow_unused=True)
    o = m(x, targets=x)
    a = torch.autograd.grad(o.loss, list(m.parameters()), retain_graph=True, allow_unused=True)
    b = torch.autograd.grad(o.loss, list(m.parameters()), allow_unused=True)  # retained: a second pass works
    for u, v in zip(a, b):
        assert (u is None and v is None) or torch.equal(u, v)
    with pytest.raises(RuntimeError, match="second time"):  # freed after a pass without retain_graph, as uncut
        torch.autograd.grad(o.loss, list(m.parameters()), allow_unused=True)
    with torch.no_grad():  # no grad mode: the outputs carry no graph, the values are the same
        n = m(x, targets=x)
    assert not n.loss.requires_grad and not any(t.requires_grad for t in n.state.values())
    torch.testing.assert_close(n.logits, o.logits.detach(), rtol=1e-12, atol=1e-12)


def test_a_chunk_across_calls_needs_the_state_as_returned():
    """A CMS chunk that spans two calls: the teaching walk follows the chunk-start weights into the
    earlier call through the state it returned; a state changed in between cannot be followed."""
    m = model("specs/hope.nl", layers=2, **HOPE)
    x = torch.randint(0, 256, (1, 9))
    st = m(x[:, :5], targets=x[:, :5]).state  # the mem_chunk (8) stage's chunk is open at token 5
    st = {k: (v * 1.0 if k.endswith("memory.Wbar0") else v) for k, v in st.items()}  # changed, still in the graph
    with pytest.raises(NlcError, match="spans calls"):
        m(x[:, 5:], state=st, targets=x[:, 5:])
