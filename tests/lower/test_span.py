"""Whole-layer spans (issue 11): a layer-major block whose memories do not feed back within the layer
runs each memory as one chunked call per layer over the call; it equals the per-segment path."""
from dataclasses import replace

import pytest
import torch

import nlc
from nlc.lower.program import NLModel

SPEC = """
model S(dim = 16, heads = 2, vocab = 64, chunk = 4) {{
  block b repeat 2 {{
    h = rmsnorm(x)
    k = l2norm(linear(h), groups = heads)
    q = l2norm(linear(h), groups = heads)
    level m : {memory} per head {{ keys k  values linear(h)  learn l2  rule {rule}  clock tokens(chunk) }}
    {extra}
    out x + linear(m(q))
  }}
}}"""

MOM = "momentum(lr = 0.3, momentum = sigmoid(linear(h, out = heads)), decay = 0.05 * sigmoid(linear(h, out = heads)))"
CASES = {
    "linear-momentum": ("linear()", MOM, ""),
    "linear-dgd": ("linear()", "dgd(lr = 0.2 * sigmoid(linear(h, out = heads)), decay = 0.05)", ""),
    "mlp-gd": ("mlp(depth = 2, expansion = 2, act = silu)", "gd(lr = learned(0.3), decay = 0.1)", ""),
    # the curvature-following step (normalize = true): no fused kernel, the torch span still applies
    "mlp-momentum-normalize": ("mlp(depth = 2, expansion = 2, act = silu)", MOM[:-1] + ", normalize = true)", ""),
    # a second memory with a longer chunk: the span's prefix ends on a boundary of both
    "two-levels": ("linear()", MOM, "level m2 : linear() per head { keys k values linear(h) learn l2 "
                   "rule gd(lr = 0.1) clock tokens(8) }\n    z = m2(k)"),
}


def per_segment(m):
    """The same model with every span switched off: today's per-segment path, same weights."""
    spans = tuple(replace(b, span=False, why="test: per segment") for b in m.schedule.spans)
    twin = NLModel(m.plan, replace(m.schedule, spans=spans), m.source).to(next(m.parameters()).dtype)
    twin.load_state_dict(m.state_dict())
    return twin


def _model(case, backend="torch", dtype=torch.float64, **kw):
    memory, rule, extra = CASES[case]
    text = SPEC.format(memory=memory, rule=rule, extra=extra)
    if case == "two-levels":  # m2 is read too (every memory must be read), its read feeds the output
        text = text.replace("out x + linear(m(q))", "out x + linear(z) + linear(m(q))")
    torch.manual_seed(0)
    return nlc.compile_text(text, backend=backend, **kw).to(dtype)


def _compare(a, b, calls, rtol=1e-9, atol=1e-10, same_stats=True):
    """Run both models over the same calls (lengths), streaming the state; compare outputs, every state
    slot, the stats (unless `same_stats` is False: the reference sums its surprise per token) and the gradients
    w.r.t. parameters and the input embeddings."""
    torch.manual_seed(1)
    B, T = 2, sum(calls)
    x = torch.randn(B, T, a.plan.dim, dtype=next(a.parameters()).dtype)
    outs = []
    for m in (a, b):
        xe = x.clone().requires_grad_()
        st, logits, stats = None, [], []
        s = 0
        for n in calls:
            o = m(embeddings=xe[:, s:s + n], state=st)
            st, s = o.state, s + n
            logits.append(o.logits)
            stats.append(o.stats)
        lg = torch.cat(logits, 1)
        loss = lg.square().mean() + sum(v.square().sum() for k, v in st.items() if v.is_floating_point())
        grads = torch.autograd.grad(loss, [xe, *m.parameters()], allow_unused=True)
        outs.append((lg, st, stats, grads))
    (l1, s1, t1, g1), (l2, s2, t2, g2) = outs
    torch.testing.assert_close(l1, l2, rtol=rtol, atol=atol)
    assert set(s1) == set(s2)
    for k in s1:
        torch.testing.assert_close(s1[k], s2[k], rtol=rtol, atol=atol, msg=k)
    for c1, c2 in zip(t1, t2) if same_stats else ():
        assert set(c1) == set(c2)
        for k in c1:
            torch.testing.assert_close(torch.as_tensor(c1[k]), torch.as_tensor(c2[k]), rtol=rtol, atol=atol, msg=k)
    for x1, x2 in zip(g1, g2):
        assert (x1 is None) == (x2 is None)
        if x1 is not None:
            torch.testing.assert_close(x1, x2, rtol=rtol, atol=atol)


CALLS = {"T-multiple": (16,), "T-tail": (19,), "stream-mid-chunk": (6, 13), "stream-aligned": (8, 11)}
# every call pattern on one case, one pattern on the others in the default run; the rest are slow
FAST = {("linear-momentum", c) for c in CALLS} | {("two-levels", "stream-mid-chunk"), ("linear-dgd", "T-tail"),
                                                  ("mlp-gd", "stream-mid-chunk"),
                                                  ("mlp-momentum-normalize", "stream-mid-chunk")}


@pytest.mark.parametrize("case,calls", [pytest.param(case, CALLS[c], id=f"{case}-{c}",
                                                     marks=() if (case, c) in FAST else pytest.mark.slow)
                                        for case in CASES for c in CALLS])
def test_span_equals_per_segment_torch(case, calls):
    m = _model(case)
    assert m.schedule.span("b").span, m.schedule.span("b").why
    _compare(m, per_segment(m), calls)


def test_curvature_step_span_equals_reference():
    """normalize = true through the torch span, streamed from mid-chunk, against the per-token reference
    (torch.func.jvp for the curvature): outputs, state, stats aside, gradients."""
    m = _model("mlp-momentum-normalize")
    assert m.schedule.span("b").span, m.schedule.span("b").why
    memory, rule, extra = CASES["mlp-momentum-normalize"]
    ref = nlc.compile_text(SPEC.format(memory=memory, rule=rule, extra=extra), backend="reference").double()
    ref.load_state_dict(m.state_dict())
    _compare(m, ref, (6, 13), same_stats=False)


def test_one_op_call_per_layer(monkeypatch):
    """A layer-major Titans model calls the span once per layer per call (and never the per-segment
    write); a call that starts mid-chunk takes the per-segment path."""
    from nlc.lower import program, span
    m = nlc.compile("titans", model="TitansLMM", dim=16, heads=2, layers=3, chunk=4)
    assert m.schedule.span("lmm").span
    calls = {"span": 0, "write": 0}
    real_span, real_write = span.span_level, program.Layer._write

    def spy_span(*a, **k):
        calls["span"] += 1
        return real_span(*a, **k)

    def spy_write(*a, **k):
        calls["write"] += 1
        return real_write(*a, **k)
    monkeypatch.setattr(program, "span_level", spy_span)
    monkeypatch.setattr(program.Layer, "_write", spy_write)
    x = torch.randint(0, 256, (2, 32))
    out = m(x)
    assert calls == {"span": 3, "write": 0}
    m(x[:, :3], state=m(x[:, :5]).state)  # 5 tokens: a 4-token span + 1 per segment; then from mid-chunk
    assert calls == {"span": 6, "write": 3 + 3}
    assert out.logits.shape == (2, 32, 256)


@pytest.mark.parametrize("spec,model,why", [("hope", None, "segment-major order"),
                                            ("titans", "TitansMAC", "reads attention level"),
                                            ("titans", "TitansMAL", "runs between the reads and the writes"),
                                            ("titans_anchored", None, "no kernel op covers")])
def test_blocks_that_do_not_qualify_run_per_segment(spec, model, why, monkeypatch):
    from nlc.lower import program
    m = nlc.compile(spec, **({"model": model} if model else {}), dim=16, heads=2)
    assert all(not b.span for b in m.schedule.spans) and any(why in b.why for b in m.schedule.spans)
    called = []
    monkeypatch.setattr(program, "span_level", lambda *a, **k: called.append(a))
    m(torch.randint(0, 256, (1, 32)))
    assert not called


def test_emit_schedule_prints_the_span(capsys):
    from nlc.cli import main
    assert main(["compile", "titans:TitansLMM", "--emit", "schedule"]) == 0
    assert "block lmm: whole-layer span" in capsys.readouterr().out
    assert main(["compile", "hope", "--emit", "schedule"]) == 0
    assert "block hope: per segment (segment-major order)" in capsys.readouterr().out


TRITON_CALLS = {"T-multiple": (8,), "T-tail": (11,), "stream-mid-chunk": (3, 9)}
TRITON_FAST: set = set()  # the interpreter takes 25-40 s per case at load 5: all slow (-m slow)


@pytest.mark.parametrize("case,calls", [pytest.param(case, TRITON_CALLS[c], id=f"{case}-{c}",
                                                     marks=() if (case, c) in TRITON_FAST else pytest.mark.slow)
                                        for case in CASES for c in TRITON_CALLS])
def test_span_equals_per_segment_triton(case, calls):
    """The fused ops in the Triton interpreter (tests/conftest.py sets it up without a GPU)."""
    pytest.importorskip("triton")
    m = _model(case, backend="triton", dtype=torch.float32)
    assert any(ls.impl.kernel for ls in m.schedule.levels) and m.schedule.span("b").span
    _compare(m, per_segment(m), calls, rtol=1e-4, atol=1e-5)


def test_one_fused_op_call_per_layer(monkeypatch):
    """TitansLMM on triton: one nlc::mlp_memory call per layer per call (the stats' chunk-start states
    come from a forward launch without autograd, not from the op)."""
    pytest.importorskip("triton")
    from nlc import kernels
    m = nlc.compile("titans", model="TitansLMM", backend="triton", dim=16, heads=2, layers=2, chunk=4)
    assert m.schedule.span("lmm").span
    calls, real = [], kernels.mlp_memory
    monkeypatch.setattr(kernels, "mlp_memory", lambda *a, **k: calls.append(a[0].shape) or real(*a, **k))
    m(torch.randint(0, 256, (1, 8)))
    assert calls == [(1, 2, 8, 8)] * 2


def test_verify_catches_a_span_it_cannot_run():
    from nlc.ir.schedule import Order
    from nlc.passes.verify import CompilerBug, verify_schedule
    m = nlc.compile("titans", model="TitansLMM", dim=16, heads=2)
    verify_schedule(m.plan, m.schedule)
    with pytest.raises(CompilerBug, match="only in layer-major order"):
        verify_schedule(m.plan, replace(m.schedule, order=Order.SEGMENT_MAJOR))


@pytest.mark.parametrize("case", ["linear-momentum", "mlp-gd"])
def test_span_stats_when_the_kernel_does_not_fit(case, monkeypatch):
    """Where a kernel does not fit on the GPU (OutOfResources) the op runs its torch path and the span's
    chunk-start states for the stats come from the torch chunk form, chunk by chunk: same results."""
    pytest.importorskip("triton")
    import warnings

    from triton.runtime.errors import OutOfResources

    from nlc.kernels import _op_utils
    from nlc.kernels.linear_memory import fused, fused_bwd
    from nlc.kernels.mlp_memory import fused as mfused
    from nlc.kernels.mlp_memory import fused_bwd as mfused_bwd

    def too_big(*a, **kw):
        raise OutOfResources(300000, 232448, "shared memory")
    for mod, name in ((fused, "linear_memory_fwd"), (fused_bwd, "linear_memory_bwd"), (mfused, "mlp_memory_fwd"),
                      (mfused_bwd, "mlp_memory_bwd")):
        monkeypatch.setattr(mod, name, too_big)
    monkeypatch.setattr(_op_utils, "_warned", set())
    m = _model(case, backend="triton", dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _compare(m, per_segment(m), (11,), rtol=1e-4, atol=1e-5)
