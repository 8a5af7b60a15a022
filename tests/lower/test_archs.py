"""The peer architectures written as specs (specs/deltanet.nl, ttt.nl, miras.nl) against literal
per-token references written here, in plain float64 torch loops (not nlc's rule code), and the
delta rule (nlc/rules/delta) against fla's naive PyTorch references where fla is installed.

Each reference takes the streams the compiled layer computes (q, k, v, gates: nlc's projections
are not what is under test), runs the paper's recurrence token by token, reads as nlc reads (at the
chunk-start state), and must give the model's final fast state and logits."""
import importlib.util
import os

import pytest
import torch
import torch.nn.functional as F

import nlc
from nlc.rules import RULES

SMALL = dict(dim=16, heads=2, layers=1, vocab=64)
B, T, CHUNK = 2, 11, 4  # T % chunk != 0: the last chunk is partial


def streams(m, tokens):
    """The layer's streams before its read (keys, values, gates, queries), and the layer."""
    (block,) = m.plan.blocks
    layer = m.blocks[block.name][0]
    before, loop, after = layer._partition()
    st = layer.local(m.init_state(tokens.shape[0]))  # the layer's state, local keys
    v = {"x": m.embed(tokens)}
    for op in before:
        v[op.name] = layer._run_op(op, v, st)
    return layer, v, st, loop + after


def heads(x, H):
    """(B, T, H*d) -> (B, H, T, d)"""
    return x.unflatten(-1, (H, -1)).transpose(1, 2)


def gate(v, lv, name, H):
    """A level's gate per (B, H, T), from its stream (width 1 or H), else its constant."""
    g = lv.gates.get(name)
    if g is None or g.kind == "const":
        return torch.full((B, H, T), g.value if g else 0.0, dtype=torch.float64)
    return v[g.stream].transpose(1, 2).expand(B, H, T)


def finish(m, layer, v, st, rest, y):
    """The block output and logits with the read replaced by the reference's y (B, H, T, dv)."""
    (read,) = [op for op in rest if op.op == "read"]
    v[read.name] = y.transpose(1, 2).flatten(-2)
    for op in rest:
        if op is not read:
            v[op.name] = layer._run_op(op, v, st)
    return m.head(m.norm(v[layer.block.out]))


def check(m, tokens, ref_W, ref_Wbar, ref_logits):
    out = m(tokens)
    layer = m.blocks[m.plan.blocks[0].name][0]
    for i, (w, wb) in enumerate(zip(ref_W, ref_Wbar)):
        torch.testing.assert_close(out.state[layer.k("mem", "W", i)], w, rtol=1e-9, atol=1e-11)
        torch.testing.assert_close(out.state[layer.k("mem", "Wbar", i)], wb, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(out.logits, ref_logits, rtol=1e-9, atol=1e-11)


def compiled(spec, model, backend, **ov):
    torch.manual_seed(0)
    m = nlc.compile(spec, model=model, backend=backend, **SMALL, chunk=CHUNK, **ov).double()
    with torch.no_grad():  # learned initial states away from their init, so every term is exercised
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return m


# ---- DeltaNet and Gated DeltaNet: S_t = alpha_t S_{t-1} (I - beta_t k k^T) + beta_t v k^T
# the per-token reference backend (the rule's `token`) is slower: the default run checks the chunk program
BACKENDS = ["torch", pytest.param("reference", marks=pytest.mark.slow)]


def delta_streams(m, tokens):
    """A (Gated) DeltaNet layer's streams per head: q, k, v (B, H, T, d) and beta, decay (B, H, T)."""
    layer, v, st, rest = streams(m, tokens)
    lv = layer.block.levels[0]
    H = lv.heads
    q, k, val = heads(v["q"], H), heads(v["k"], H), heads(v["v"], H)
    return layer, v, st, rest, lv, H, q, k, val, gate(v, lv, "lr", H), gate(v, lv, "decay", H)


@pytest.mark.parametrize("model", ["DeltaNet", "GatedDeltaNet", "GatedDeltaNetLadder"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_deltanet_is_the_delta_rule(model, backend):
    """The state follows the sequential delta rule exactly at chunk 4 (not only at tokens(1)):
    beta k k^T at the running state; reads at the chunk-start state."""
    m = compiled("specs/deltanet.nl", model, backend)
    tokens = torch.randint(0, 64, (B, T), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        layer, v, st, rest, lv, H, q, k, val, beta, decay = delta_streams(m, tokens)
        S = torch.zeros(B, H, lv.dv, lv.dk, dtype=torch.float64)  # init zeros
        Sbar, y = S, torch.zeros(B, H, T, lv.dv, dtype=torch.float64)
        eye = torch.eye(lv.dk, dtype=torch.float64)
        for t in range(T):
            if t % CHUNK == 0:
                Sbar = S.clone()
            y[:, :, t] = (Sbar @ q[:, :, t, :, None])[..., 0]
            kt, vt = k[:, :, t, :, None], val[:, :, t, :, None]  # columns, every (batch, head) at once
            bt, at = beta[..., t, None, None], 1 - decay[..., t, None, None]
            S = at * S @ (eye - bt * kt @ kt.mT) + bt * vt @ kt.mT
        if T % CHUNK == 0:
            Sbar = S.clone()
        check(m, tokens, [S], [Sbar], finish(m, layer, v, st, rest, y))


# ---- TTT-Linear and TTT-MLP: mini-batch GD on ||f(k) - v||^2, gradients at the mini-batch start
def minibatch_gd(Ws, f, loss, k, val, lr, decay, q):
    """The per-token reference of a chunk-clock gd level: W_t = (1 - alpha_t) W_{t-1} - lr_t grad l(Wbar; k_t, v_t),
    Wbar the chunk-start weights; y_t = f(Wbar; q_t). Gradients by autograd of the plain `loss`."""
    Wbar = [w.clone() for w in Ws]
    y = torch.zeros(*q.shape[:-1], f(Ws, q[:, :, :1])[0].shape[-1], dtype=torch.float64)
    for t in range(q.shape[2]):
        if t % CHUNK == 0:
            Wbar = [w.clone() for w in Ws]
        y[:, :, t] = f(Wbar, q[:, :, t:t + 1])[..., 0, :]
        # the (batch, head) memories are independent: the gradient of the summed loss is each one's own
        leaf = [w.clone().requires_grad_() for w in Wbar]
        with torch.enable_grad():
            g = torch.autograd.grad(loss(f(leaf, k[:, :, t:t + 1]), val[:, :, t:t + 1]), leaf)
        Ws = [(1 - decay[..., t, None, None]) * w - lr[..., t, None, None] * gi for w, gi in zip(Ws, g)]
    if q.shape[2] % CHUNK == 0:
        Wbar = [w.clone() for w in Ws]
    return Ws, Wbar, y


def residual_mlp(act):
    return lambda W, x: x + act(x @ W[0].transpose(-1, -2)) @ W[1].transpose(-1, -2)


def half_sq(y, v):
    return 0.5 * ((y - v) ** 2).sum()


CASES = [  # spec, model, memory f(W, x) (W per layer, (out, in)), objective (summed over entries)
    ("specs/ttt.nl", "TTTLinear", lambda W, x: x @ W[0].transpose(-1, -2), half_sq),
    ("specs/ttt.nl", "TTTMLP", residual_mlp(F.gelu), half_sq),
    ("specs/miras.nl", "Yaad", residual_mlp(F.gelu), lambda y, v: F.huber_loss(y, v, reduction="sum", delta=0.25)),
    ("specs/miras.nl", "Moneta", residual_mlp(F.gelu), lambda y, v: ((y - v).abs() ** 3).sum()),
]


@pytest.mark.parametrize("spec,model,f,loss", CASES, ids=[c[1] for c in CASES])
@pytest.mark.parametrize("backend", BACKENDS)
def test_minibatch_gd_models(spec, model, f, loss, backend):
    m = compiled(spec, model, backend)
    tokens = torch.randint(0, 64, (B, T), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        layer, v, st, rest = streams(m, tokens)
        lv = layer.block.levels[0]
        H = lv.heads
        (read,) = [op for op in rest if op.op == "read"]
        q, k, val = heads(v[read.inputs[0]], H), heads(v[lv.keys], H), heads(v[lv.values], H)
        if model == "TTTLinear":  # the spec's target v - k is the TTT residual f(k) = k + W k: check it is
            torch.testing.assert_close(val, heads(v["v"], H) - k)
        W0 = [w.clone() for w in layer.mems["mem"].initial(B, k.device, torch.float64)]
        Ws, Wbar, y = minibatch_gd(W0, f, loss, k, val, gate(v, lv, "lr", H), gate(v, lv, "decay", H), q)
        check(m, tokens, Ws, Wbar, finish(m, layer, v, st, rest, y))


# ---- the delta rule's own forms
def rand(g, *shape):
    return torch.randn(*shape, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("n", [1, 6, 13])
def test_delta_chunk_equals_token_steps(n):
    """n steps of `token` = `chunk` (the UT/WY solve), gates in and outside [0, 1], one exactly 0."""
    g = torch.Generator().manual_seed(n)
    upd = RULES["delta"].update()
    W, d, a = rand(g, 2, 3, 4, 5), rand(g, 2, 3, n, 4), rand(g, 2, 3, n, 5) / 2
    theta, alpha = torch.rand(2, 3, n, generator=g, dtype=torch.float64), torch.rand(2, 3, n, generator=g, dtype=torch.float64)
    alpha[0, 0, 0], alpha[1, 2, -1] = 1.0, 1.3  # a = 0 and a < 0
    (Wc,), _ = upd.chunk(None, [W], None, [(d, a)], theta, alpha, None)
    Wt = W
    for t in range(n):
        Wt, _ = upd.token(None, 0, Wt, None, d[:, :, t, :, None] * a[:, :, t, None, :], a[:, :, t], theta[..., t], alpha[..., t], None)
    torch.testing.assert_close(Wc, Wt, rtol=1e-10, atol=1e-10)


def test_delta_without_gate_is_dgd_unnormalised():
    """decay = 0: delta and dgd(normalize = false) are one rule; with a gate they differ (the gate
    multiplies delta's k k^T term, not dgd's)."""
    g = torch.Generator().manual_seed(0)
    W, d, a = rand(g, 1, 2, 3, 4), rand(g, 1, 2, 7, 3), rand(g, 1, 2, 7, 4) / 2
    theta = torch.rand(1, 2, 7, generator=g, dtype=torch.float64)

    class LV:
        rule_args = {"layers": "first", "normalize": False}

    for alpha, same in ((torch.zeros_like(theta), True), (torch.full_like(theta, 0.2), False)):
        (wd,), _ = RULES["delta"].update().chunk(None, [W], None, [(d, a)], theta, alpha, None)
        (wg,), _ = RULES["dgd"].update().chunk(LV, [W], None, [(d, a)], theta, alpha, None)
        assert torch.allclose(wd, wg, rtol=1e-12, atol=1e-12) == same


# ---- an independent implementation: fla's naive PyTorch references (flash-linear-attention)
def fla_naive(module):
    """fla.ops.<module>.naive loaded from its file: importing the fla package needs triton."""
    pytest.importorskip("einops")
    spec = importlib.util.find_spec("fla")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("flash-linear-attention (fla-core) not installed")
    path = f"{spec.submodule_search_locations[0]}/ops/{module}/naive.py"
    if not os.path.isfile(path):
        pytest.skip(f"fla without ops/{module}/naive.py (fla-core not installed)")
    s = importlib.util.spec_from_file_location(f"_fla_naive_{module}", path)
    mod = importlib.util.module_from_spec(s)
    s.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("model", ["DeltaNet", "GatedDeltaNet", "GatedDeltaNetLadder"])
def test_deltanet_matches_fla(model):
    """The compiled model's streams through fla's naive recurrent (gated) delta rule: the final state
    equals nlc's, and nlc's reads equal fla's state at each chunk start times q (fla computes in fp32)."""
    naive = fla_naive("gated_delta_rule")
    m = compiled("specs/deltanet.nl", model, "torch")
    tokens = torch.randint(0, 64, (B, T), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        layer, v, st, rest, lv, H, q, k, val, beta, decay = delta_streams(m, tokens)
        bthd = lambda x: x.transpose(1, 2)  # noqa: E731 - fla takes [B, T, H, ...]

        def fla_state(n):  # fla's S after n tokens, [B, H, dk, dv] -> nlc's (dv, dk)
            if n == 0:
                return torch.zeros(B, H, lv.dv, lv.dk, dtype=torch.float64)
            _, S = naive.naive_recurrent_gated_delta_rule(
                bthd(q[:, :, :n]), bthd(k[:, :, :n]), bthd(val[:, :, :n]), bthd(beta[..., :n]),
                bthd(torch.log(1 - decay[..., :n])), scale=1.0, output_final_state=True)
            return S.double().transpose(-1, -2)

        out = m(tokens)
        torch.testing.assert_close(out.state[layer.k("mem", "W")], fla_state(T), rtol=1e-4, atol=1e-5)
        y = torch.stack([(fla_state(t - t % CHUNK) @ q[:, :, t, :, None])[..., 0] for t in range(T)], 2)
        torch.testing.assert_close(out.logits, finish(m, layer, v, st, rest, y), rtol=1e-4, atol=1e-5)


def test_delta_rule_matches_fla_delta_rule():
    """nlc's delta rule (learn dot: d_t = -v_t) equals fla's `delta_rule_recurrence` (DeltaNet) on
    random inputs: the state after every token, one chunk of 16."""
    naive = fla_naive("delta_rule")
    g = torch.Generator().manual_seed(0)
    Bh, H, n, dk, dv = 2, 3, 16, 8, 5
    q, k, v = rand(g, Bh, H, n, dk), F.normalize(rand(g, Bh, H, n, dk), dim=-1), rand(g, Bh, H, n, dv)
    beta = torch.rand(Bh, H, n, generator=g, dtype=torch.float64)
    o, S = naive.delta_rule_recurrence(q, k, v, beta)
    (W,), _ = RULES["delta"].update().chunk(None, [torch.zeros(Bh, H, dv, dk, dtype=torch.float64)], None,
                                             [(-v, k)], beta, torch.zeros_like(beta), None)
    torch.testing.assert_close(W, S.double().transpose(-1, -2), rtol=1e-5, atol=1e-5)
    # o_t = S_t q_t / sqrt(dk) (fla scales q), from nlc's state after t + 1 tokens
    steps = [RULES["delta"].update().chunk(None, [torch.zeros(Bh, H, dv, dk, dtype=torch.float64)], None,
                                           [(-v[:, :, :t + 1], k[:, :, :t + 1])], beta[..., :t + 1],
                                           torch.zeros_like(beta[..., :t + 1]), None)[0][0] for t in range(n)]
    o_nlc = torch.stack([(s @ q[:, :, t, :, None])[..., 0] for t, s in enumerate(steps)], 2) * dk ** -0.5
    torch.testing.assert_close(o_nlc, o.double(), rtol=1e-5, atol=1e-5)


def test_gated_deltanet_streams():
    """A sequence in pieces off the chunk grid equals one pass (the delta rule's chunk form composes
    from any running state, not only from a chunk start)."""
    m = compiled("specs/deltanet.nl", "GatedDeltaNet", "torch")
    x = torch.randint(0, 64, (B, T), generator=torch.Generator().manual_seed(4))
    whole = m(x)
    st, logits = None, []
    for a, b in [(0, 3), (3, 9), (9, T)]:
        out = m(x[:, a:b], state=st)
        st, logits = out.state, logits + [out.logits]
    torch.testing.assert_close(torch.cat(logits, 1), whole.logits, rtol=1e-10, atol=1e-10)
    for k in whole.state:
        torch.testing.assert_close(st[k], whole.state[k], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("H", [1, 2, 4])
def test_ladder_decay_is_fla_gate(H):
    """GatedDeltaNetLadder: 1 - decay = exp(-exp(w_h) softplus(w_a h)), each head at its own learned rate
    A_h = exp(w_h), started at 1e-3 .. 1 equally spaced in log (fla's A_log), read off the parameters."""
    from nlc.ir.kinds import OpKind
    from nlc.lower.ops import Scale
    torch.manual_seed(0)
    m = nlc.compile("specs/deltanet.nl", model="GatedDeltaNetLadder", **dict(SMALL, heads=H),
                    gate_lo=1e-3, gate_hi=1.0).double()
    tokens = torch.randint(0, 64, (B, T), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        layer, v, _, _ = streams(m, tokens)
        (w,) = [mod.log_scale for mod in layer.mods.values() if isinstance(mod, Scale)]
        start = torch.logspace(-3, 0, H, dtype=torch.float64) if H > 1 else torch.tensor([1e-3], dtype=torch.float64)
        torch.testing.assert_close(w.exp(), start)
        (a_op,) = [op for op in layer.block.ops if op.op == OpKind.SCALE]
        pre = v[a_op.inputs[0]]  # softplus(w_a h), one column per head
        assert pre.shape[-1] == H and (pre > 0).all()
        decay = v[layer.block.levels[0].gates["decay"].stream]
        torch.testing.assert_close(1 - decay, torch.exp(-w.exp() * pre))


def test_one_rung_ladder_at_init_is_gated_deltanet_at_that_scale():
    """With gate_lo = gate_hi = g GatedDeltaNetLadder starts as GatedDeltaNet(gate_scale = g): the same
    logits from the same seed (the ladder draws no random numbers, so every other weight is the same draw)."""
    x = torch.randint(0, 64, (B, T), generator=torch.Generator().manual_seed(2))
    outs = []
    for model, ov in [("GatedDeltaNet", dict(gate_scale=0.05)), ("GatedDeltaNetLadder", dict(gate_lo=0.05, gate_hi=0.05))]:
        torch.manual_seed(0)
        m = nlc.compile("specs/deltanet.nl", model=model, **dict(SMALL, layers=2), **ov).double()
        outs.append(m(x).logits)
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-12, atol=1e-12)
    assert outs[0].abs().sum() > 0


@pytest.mark.slow  # ~9 s of CPU for the six (measured at load 8): over the default run's budget
@pytest.mark.parametrize("spec,model", [("specs/deltanet.nl", "DeltaNet"), ("specs/deltanet.nl", "GatedDeltaNet"),
                                        ("specs/deltanet.nl", "GatedDeltaNetLadder"),
                                        ("specs/ttt.nl", "TTTLinear"), ("specs/ttt.nl", "TTTMLP"),
                                        ("specs/miras.nl", "Yaad"), ("specs/miras.nl", "Moneta")])
def test_trains_a_few_steps(spec, model):
    """Two outer steps at the spec's own in-context scales: finite loss and weights, and the loss goes
    down on a repeated batch (torch's AdamW: building the spec's .nl AdamW costs more than the steps;
    `nlc train SPEC --steps 3` runs that one)."""
    torch.manual_seed(0)
    m = nlc.compile(spec, model=model, dim=16, heads=2, layers=1, vocab=64)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    x = torch.randint(0, 64, (2, 17), generator=torch.Generator().manual_seed(5))
    losses = []
    for _ in range(2):
        loss = m(x[:, :-1], targets=x[:, 1:]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(p).all() for p in m.parameters()) and losses[1] < losses[0], losses
