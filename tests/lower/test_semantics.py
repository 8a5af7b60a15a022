"""Frequency semantics, streaming, per-sequence state, torch.compile, and learning."""
import pytest
import torch

import nlc
from nlc.ir.kinds import Role

SMALL = dict(dim=16, heads=2, layers=1)


def hope(**ov):
    torch.manual_seed(0)
    return nlc.compile("specs/hope.nl", **{**SMALL, "chunk": 4, "mem_chunk": 8, "decay_max": 0.1, **ov}).double()  # decay on


@pytest.mark.parametrize("spec,model,ov", [("specs/hope.nl", None, dict(chunk=4, mem_chunk=8, decay_max=0.1)),
                                            ("specs/titans.nl", "TitansMAC", dict(chunk=4, persistent=2)),
                                            ("specs/cms.nl", None, dict(fast=2, mid=4, slow=8)),
                                            # two layers: the first layer's CMS output reaches the second
                                            # layer's memories, so a CMS chunk split across calls must still
                                            # take the gradient through the part in the earlier call
                                            ("specs/hope.nl", None, dict(chunk=4, mem_chunk=8, layers=2, decay_max=0.1)),
                                            ("nested-cms", None, dict(fast=2, mid=4, slow=8, layers=2))])
def test_streaming_equals_one_pass(spec, model, ov):
    torch.manual_seed(0)
    if spec == "nested-cms":
        text = open("specs/cms.nl").read().replace("variant = sequential", "variant = nested")
        m = nlc.compile_text(text, model=model, **{**SMALL, **ov}).double()
    else:
        m = nlc.compile(spec, model=model, **{**SMALL, **ov}).double()
    x = torch.randint(0, 256, (2, 21))
    whole = m(x, targets=x)
    st, logits = None, []
    for a, b in [(0, 5), (5, 6), (6, 16), (16, 21)]:  # segment ends off the chunk grid on purpose
        out = m(x[:, a:b], state=st, targets=x[:, a:b])
        st, logits = out.state, logits + [out.logits]
    torch.testing.assert_close(torch.cat(logits, 1), whole.logits, rtol=1e-10, atol=1e-10)
    for k in whole.state:
        torch.testing.assert_close(st[k], whole.state[k], rtol=1e-10, atol=1e-10)


def test_token_clock_changes_state_only_at_chunk_boundaries():
    m = hope()
    x = torch.randint(0, 256, (1, 17))
    st = m.init_state(1)
    prev = {k: v.clone() for k, v in st.items()}
    for t in range(17):
        st = m(x[:, t:t + 1], state=st).state
        for name, chunk in (("mk", 4), ("memory", 8)):
            key = f"hope.0.{name}.Wbar0"
            changed = not torch.equal(prev[key], st[key])
            assert changed == ((t + 1) % chunk == 0), (name, t)
        # the frozen CMS stage never changes in context
        assert torch.equal(st["hope.0.c_cms2.w_in"], prev["hope.0.c_cms2.w_in"])
        prev = {k: v.clone() for k, v in st.items()}


def test_cms_stage_updates_only_at_its_boundary():
    torch.manual_seed(0)
    m = nlc.compile("specs/cms.nl", **SMALL, fast=2, mid=4, slow=8).double()
    x = torch.randint(0, 256, (1, 9))
    st = m.init_state(1)
    for t in range(8):
        new = m(x[:, t:t + 1], state=st, targets=x[:, t + 1:t + 2]).state
        for name, chunk in (("c_cms0", 2), ("c_cms1", 4), ("c_cms2", 8)):
            key = f"layer.0.{name}.w_out"
            assert (not torch.equal(new[key], st[key])) == ((t + 1) % chunk == 0), (name, t)
        st = new


def test_short_sequence_still_updates():
    """T shorter than one chunk must still take the in-chunk writes (titans-pytorch #59)."""
    m = hope()
    x = torch.randint(0, 256, (1, 3))
    st = m(x).state
    assert not torch.equal(st["hope.0.mk.W0"], st["hope.0.mk.Wbar0"])


def test_each_sequence_has_its_own_memory():
    """Batch > 1: changing sequence 1 does not change sequence 0 (titans-pytorch #6)."""
    m = hope()
    x = torch.randint(0, 256, (2, 20))
    y = x.clone()
    y[1] = torch.randint(0, 256, (20,))
    a, b = m(x), m(y)
    torch.testing.assert_close(a.logits[0], b.logits[0])
    assert not torch.allclose(a.logits[1], b.logits[1])


def test_meta_learned_init_gets_gradient():
    m = hope()
    x = torch.randint(0, 256, (2, 12))
    m(x, targets=x).loss.backward()
    g = m.blocks["hope"][0].mems["memory"].init[0].grad
    assert g is not None and g.abs().sum() > 0


def test_training_reduces_loss():
    torch.manual_seed(0)
    m = nlc.compile("specs/hope.nl", dim=32, heads=2, layers=1, chunk=8, mem_chunk=16)
    opt = m.optimizer()
    x = torch.randint(0, 256, (4, 33))
    losses = []
    for _ in range(15):
        out = m(x[:, :-1], targets=x[:, 1:])
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    assert losses[-1] < losses[0] - 1.0, losses


@pytest.mark.parametrize("spec,model,ov,T", [
    ("specs/titans.nl", "TitansLMM", dict(chunk=2, layers=2), 6),
    pytest.param("specs/hope.nl", None, dict(chunk=4, mem_chunk=8, layers=2), 16, marks=pytest.mark.slow),
    pytest.param("specs/titans.nl", "TitansMAC", dict(chunk=4, persistent=2), 8, marks=pytest.mark.slow),
    pytest.param("specs/cms.nl", None, dict(fast=2, mid=4, slow=8), 8, marks=pytest.mark.slow)])
def test_torch_compile_fullgraph_matches_eager(spec, model, ov, T):
    """The compiled program equals the eager one (outputs, state, gradients), and it is one graph per
    block: not one per layer, per pattern of chunk ends, or for the first segment's fresh state."""
    import torch._dynamo
    from torch._dynamo.utils import counters
    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    kw = SMALL | ov
    eager = nlc.compile(spec, model=model, **kw)
    comp = nlc.compile(spec, backend="compile", model=model, **kw)
    comp.load_state_dict(eager.state_dict())
    x = torch.randint(0, 256, (2, T))
    o1, o2 = eager(x, targets=x), comp(x, targets=x)
    torch.testing.assert_close(o2.logits, o1.logits, rtol=1e-4, atol=1e-5)
    assert o2.state.keys() == o1.state.keys()
    for k in o1.state:
        torch.testing.assert_close(o2.state[k], o1.state[k], rtol=1e-4, atol=1e-5, msg=k)
    g1 = torch.autograd.grad(o1.loss, list(eager.parameters()), allow_unused=True)
    g2 = torch.autograd.grad(o2.loss, list(comp.parameters()), allow_unused=True)
    for a, b in zip(g1, g2):
        if a is not None:
            torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-5)
    assert sum(counters["graph_break"].values()) == 0, dict(counters["graph_break"])
    # one graph per block; an attention cache adds at most two while it fills (absent on the first
    # segment, then growing: dynamo makes that one dynamic-shape graph) - docs/architecture.md
    attention = any(lv.role == Role.ATTENTION for _, lv in comp.plan.all_levels())
    graphs = counters["stats"]["unique_graphs"]
    assert graphs <= len(comp.plan.blocks) * (3 if attention else 1), dict(counters["stats"])
    if not attention:
        assert graphs == len(comp.plan.blocks), dict(counters["stats"])


def test_nested_cms_resets_faster_stages_at_slow_boundary():
    text = open("specs/cms.nl").read().replace("variant = sequential", "variant = nested")
    torch.manual_seed(0)
    m = nlc.compile_text(text, **SMALL, fast=2, mid=4, slow=8).double()
    x = torch.randint(0, 256, (1, 9))
    st = m.init_state(1)
    layer = m.blocks["layer"][0]
    init = layer.cms["c_cms0"].w_out
    for t in range(8):
        st = m(x[:, t:t + 1], state=st, targets=x[:, t + 1:t + 2]).state
        fast_is_init = torch.equal(st["layer.0.c_cms0.w_out"][0], init)
        # the fast stage learns at every 2nd token, and is reset whenever the mid stage (4) completes
        # init right after a reset (end of tokens 4, 8) and until its next boundary (token 2 of the chunk)
        assert fast_is_init == ((t + 1) % 4 == 0 or t % 4 == 0), t


@pytest.mark.parametrize("spec,model,ov", [("specs/hope.nl", None, dict(chunk=4, mem_chunk=8, decay_max=0.1)),
                                            ("specs/titans.nl", "TitansMAC", dict(chunk=4, persistent=2)),
                                            ("specs/cms.nl", None, dict(fast=2, mid=4, slow=8))])
def test_activation_checkpointing_changes_nothing(spec, model, ov):
    torch.manual_seed(0)
    plain = nlc.compile(spec, model=model, **SMALL, **ov).double()
    ck = nlc.compile(spec, model=model, checkpointing=True, **SMALL, **ov).double()
    ck.load_state_dict(plain.state_dict())
    x = torch.randint(0, 256, (2, 13))
    o1, o2 = plain(x, targets=x), ck(x, targets=x)
    torch.testing.assert_close(o2.logits, o1.logits)
    for k in o1.state:
        torch.testing.assert_close(o2.state[k], o1.state[k])
    g1 = torch.autograd.grad(o1.loss, list(plain.parameters()))
    g2 = torch.autograd.grad(o2.loss, list(ck.parameters()))
    for a, b in zip(g1, g2):
        torch.testing.assert_close(b, a)


def test_generation_keeps_cms_learning():
    """nlc generate: task-loss (CMS) levels learn from the prompt and from each sampled byte."""
    from nlc.train.evaluate import generate
    torch.manual_seed(0)
    m = nlc.compile("specs/cms.nl", **SMALL, fast=2, mid=4, slow=8)
    text, st = generate(m, b"def f(x): return x", max_new=5, return_state=True)
    assert len(text) == 5
    init = m.blocks["layer"][0].cms["c_cms0"].w_out
    assert not torch.equal(st["layer.0.c_cms0.w_out"][0], init)
    # the same bytes fed as one teacher-forced sequence give the same fast state
    seq = torch.tensor([list(b"def f(x): return x" + text)])
    ref = m(seq[:, :-1], targets=seq[:, 1:]).state
    torch.testing.assert_close(st["layer.0.c_cms0.w_out"], ref["layer.0.c_cms0.w_out"], rtol=1e-4, atol=1e-6)


def test_pretrained_initial_state(tmp_path):
    """`init pretrained(...)` loads a level's weights from safetensors (NL §7.3 level stacking)."""
    from safetensors.torch import save_file
    from nlc.errors import NlcError
    w = torch.randn(2, 4, 4)
    save_file({"W0": w}, str(tmp_path / "mem.safetensors"))
    spec = tmp_path / "p.nl"
    spec.write_text("""
model P(dim = 8, heads = 2, vocab = 256) {
  block b {
    k = l2norm(linear(x), groups = heads)
    level m : linear() per head {
      keys k
      values linear(x)
      init pretrained("mem.safetensors")
    }
    out x + m(k)
  }
}""")
    m = nlc.compile(str(spec))
    st = m.init_state(1)
    torch.testing.assert_close(st["b.0.m.Wbar0"][0], w)
    assert not any(n.endswith("m.init.0") for n, _ in m.named_parameters())  # not meta-learned
    spec.write_text(spec.read_text().replace("mem.safetensors", "missing.safetensors"))
    with pytest.raises(NlcError, match="not found"):
        nlc.compile(str(spec))


def test_attention_rope_option():
    """Attention carries rotary positions by default; `rope = false` is NoPE. Both stream exactly."""
    text = open("specs/transformer.nl").read()
    torch.manual_seed(0)
    rope = nlc.compile_text(text, **SMALL).double()
    nope = nlc.compile_text(text.replace("attention()", "attention(rope = false)"), **SMALL).double()
    nope.load_state_dict(rope.state_dict())
    x = torch.randint(0, 256, (2, 12))
    a, b = rope(x), nope(x)
    assert not torch.allclose(a.logits, b.logits)
    torch.testing.assert_close(a.logits[:, 0], b.logits[:, 0])  # position 0: rotation by angle 0
    st, parts = None, []
    for s, e in [(0, 5), (5, 12)]:
        o = rope(x[:, s:e], state=st)
        st, parts = o.state, parts + [o.logits]
    torch.testing.assert_close(torch.cat(parts, 1), a.logits)


def test_generation_state_does_not_grow():
    """The state carried between generated bytes holds no autograd graph and keeps its sizes,
    so each byte costs the same whatever its position (it used to carry every earlier byte's graph)."""
    from nlc.train.evaluate import generate
    torch.manual_seed(0)
    m = nlc.compile("hope", **SMALL)
    assert m.cms_learns  # the teaching pass (enable_grad) is the path that leaked the graph
    _, st5 = generate(m, b"def f(x):", max_new=3, return_state=True)
    _, st9 = generate(m, b"def f(x):", max_new=9, return_state=True)
    assert st5.keys() == st9.keys()
    for k in st9:
        assert st9[k].grad_fn is None and not st9[k].requires_grad, k
        assert st9[k].shape == st5[k].shape, k
