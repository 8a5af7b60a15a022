"""In-context memory levels: parametric memories learned at test time (Titans, Hope).

A memory is a stack of per-head weight matrices W_l (B, H, out_l, in_l): `linear`
(y = W k), `mlp` (y = W_L act(... act(W_1 k))) or `residual_mlp` (y = k + W_2 act(W_1 k),
NL eq. 89). Its fast state per sequence is
    Wbar_l  the chunk-start weights: every read and every gradient of a chunk uses them
            (Titans eqs. 16-18, Hope eqs. 90-91);
    W_l     the running weights, updated token by token inside the chunk;
    S_l     the momentum (surprise) buffer, for rules with momentum.
At a chunk boundary Wbar <- W. Per token t of a chunk, with u_t = grad of the objective at Wbar:
    momentum/gd:  S_t = eta_t S_{t-1} - theta_t u_t ;  W_t = (1 - alpha_t) W_{t-1} + S_t    (Titans 13-14)
    dgd:          S_t = eta_t S_{t-1} - theta_t u_t ;  W_t = W_{t-1}((1 - alpha_t) I - theta_t k~ k~^T) + S_t
                  (Hope eq. 88; k~ is the layer's input; `layers = first` applies the k k^T term
                  only to the layer that consumes k, `all` to every layer with its own input;
                  `normalize` (default) takes the exact proximal step of NL eqs. 56-57 via
                  Sherman-Morrison: theta' = theta / (1 + theta ||k~||^2) on those layers)
(gd is momentum with eta = 0.) Two implementations of one semantics:
    ChunkMemory      closed-form per-token gradients (rank-1 per layer) as batched matmuls, the
                     scalar recurrences as a coefficient matrix of gate products (cumprods);
    ReferenceMemory  the equations literally: autograd for u_t, a loop over tokens, d x d matrices.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from nlc.kernels.products import pair_prod, prod_after, prod_before
from nlc.lower.ops import ACTS, act_grad


def layer_shapes(lv) -> list[tuple[int, int]]:
    return lv.layer_shapes()


def forward_layers(lv, Ws, k):
    """y = M(k) with per-(b,h) weights Ws[l] (B,H,o,i), k (B,H,n,i). Returns y and (z_l, a_l) per layer."""
    act = ACTS[lv.memory.act]
    a, acts = k, []
    for i, W in enumerate(Ws):
        z = a @ W.transpose(-1, -2)  # (B,H,n,i) x (B,H,i,o): matmuls, not einsum (fewer permutes)
        acts.append((z, a))
        a = act(z) if i < len(Ws) - 1 else z
    if lv.memory.kind == "residual_mlp":
        a = a + k
    return a, acts


def objective_grad(lv, y, v):
    """d objective / d y for l2 (1/2 ||y - v||^2), dot (-<y, v>), huber(delta), lp(p)."""
    e = y - v
    o = lv.objective
    if o == "l2":
        return e
    if o == "dot":
        return -v
    if o == "huber":
        d = lv.objective_args["delta"]
        return e.clamp(-d, d)
    if o == "lp":
        p = lv.objective_args["p"]
        return p * e.abs().pow(p - 1) * torch.sign(e)
    raise ValueError(o)


def objective_value(lv, y, v):
    e = y - v
    o = lv.objective
    if o == "l2":
        return 0.5 * (e * e).sum()
    if o == "dot":
        return -(y * v).sum()
    if o == "huber":
        d = lv.objective_args["delta"]
        a = e.abs()
        return torch.where(a <= d, 0.5 * e * e, d * (a - 0.5 * d)).sum()
    if o == "lp":
        return e.abs().pow(lv.objective_args["p"]).sum()
    raise ValueError(o)


def closed_form_grads(lv, Ws, k, v):
    """Per-token gradients of the objective at weights Ws, as rank-1 factors per layer:
    u_{t,l} = delta_{t,l} a_{t,l}^T. Returns [(delta (B,H,n,o), a (B,H,n,i))], surprise."""
    y, acts = forward_layers(lv, Ws, k)
    d = objective_grad(lv, y, v)
    out = [None] * len(Ws)
    for li in range(len(Ws) - 1, -1, -1):
        z, a = acts[li]
        out[li] = (d, a)
        if li:
            d = (d @ Ws[li]) * act_grad(lv.memory.act, acts[li - 1][0])
    return out, objective_value(lv, y, v).detach()


class MemoryLevel(nn.Module):
    """Parameters of one memory level (meta-learned initial weights, learned gates)."""

    def __init__(self, lv, unit_keys: bool = False):
        """`unit_keys`: the plan l2-normalises this level's keys per head (see `keys_unit_norm`)."""
        super().__init__()
        self.lv = lv
        shapes = layer_shapes(lv)
        self.init = nn.ParameterList()
        self.fixed: list[torch.Tensor] = []
        loaded = load_pretrained(lv, shapes) if lv.init == "pretrained" else None
        for li, (o, i) in enumerate(shapes):
            w = torch.randn(lv.heads, o, i) / math.sqrt(i)
            if li == 0 and len(shapes) > 1 and unit_keys and normalized_step(lv):
                # unit-norm keys have entries ~ 1/sqrt(dk), not ~1: scale the first layer so its
                # pre-activations are ~N(0, 1) (silu's non-linear range, |a|^2 ~ hidden), not ~N(0, 1/dk);
                # the Sherman-Morrison step theta' = theta / (1 + theta |a|^2) keeps the update stable
                w = w * math.sqrt(i)
            if lv.init == "meta":
                self.init.append(nn.Parameter(w))
            elif lv.init == "zeros":
                self.fixed.append(torch.zeros(lv.heads, o, i))
            elif lv.init == "const":
                self.fixed.append(torch.full((lv.heads, o, i), float(lv.init_args["value"])))
            else:  # pretrained (NL §7.3, ad-hoc level stacking): the file's weights, not trained
                self.fixed.append(loaded[li])
        self.learned = nn.ParameterDict({g: nn.Parameter(torch.full((lv.heads,), gate.value))
                                         for g, gate in lv.gates.items() if gate.kind == "learned"})
        self.momentum = lv.momentum

    def initial(self, B, device, dtype):
        ws = list(self.init) if self.lv.init == "meta" else [w.to(device, dtype) for w in self.fixed]
        return [w.unsqueeze(0).expand(B, *w.shape) for w in ws]

    def gate(self, name, streams, B, n, ref):
        g = self.lv.gates[name]
        if g.kind == "const":
            return torch.full((B, self.lv.heads, n), g.value, device=ref.device, dtype=ref.dtype)
        if g.kind == "learned":
            return self.learned[name].view(1, -1, 1).expand(B, -1, n)
        s = streams[g.stream]  # (B, n, 1 or H)
        return s.transpose(1, 2).expand(B, self.lv.heads, n)


def normalized_step(lv) -> bool:
    """Whether every layer's step is the Sherman-Morrison one (dgd, normalize, layers = all): then the
    update is stable whatever the scale of a layer's input."""
    return (lv.rule == "dgd" and lv.rule_args.get("normalize", True)
            and (lv.rule_args.get("layers", "first") == "all" or len(layer_shapes(lv)) == 1))


def keys_unit_norm(block, lv) -> bool:
    """Whether the plan makes the level's keys unit-norm per head (`keys l2norm(..., groups = heads)`)."""
    op = next((o for o in block.ops if o.name == lv.keys), None)
    return op is not None and op.op == "l2norm" and op.attrs.get("groups", 1) == lv.heads


def load_pretrained(lv, shapes):
    """`init pretrained("file.safetensors")`: tensors W0, W1, ... (one per layer, first layer
    first), each (heads, out, in) or (out, in) shared by the heads. The path is relative to the spec."""
    from pathlib import Path

    from nlc.errors import NlcError
    name = str(lv.init_args.get("value", ""))
    base = Path(lv.span.file).parent if lv.span and lv.span.file and not lv.span.file.startswith("<") else Path.cwd()
    path = Path(name) if Path(name).is_absolute() else base / name
    if not path.is_file():
        raise NlcError(f"level '{lv.name}': pretrained weights {path} not found", lv.span,
                       "init pretrained(\"file.safetensors\") takes a path relative to the spec")
    try:
        from safetensors.torch import load_file
        tensors = load_file(str(path))
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise NlcError(f"level '{lv.name}': cannot read {path}: {e}", lv.span) from None
    out = []
    for li, (o, i) in enumerate(shapes):
        t = tensors.get(f"W{li}")
        if t is None:
            raise NlcError(f"level '{lv.name}': {path.name} has no tensor 'W{li}'", lv.span,
                           f"expected {len(shapes)} tensors W0..W{len(shapes) - 1}, found {sorted(tensors)}")
        if t.shape == (o, i):
            t = t.unsqueeze(0).expand(lv.heads, o, i)
        if tuple(t.shape) != (lv.heads, o, i):
            raise NlcError(f"level '{lv.name}': W{li} in {path.name} has shape {tuple(t.shape)}, "
                           f"expected ({lv.heads}, {o}, {i}) or ({o}, {i})", lv.span)
        out.append(t.float().clone())
    return out


def split_heads(x, H):
    """(B, n, H*d) -> (B, H, n, d)"""
    return x.unflatten(-1, (H, -1)).transpose(1, 2)


def merge_heads(x):
    return x.transpose(1, 2).flatten(-2)


def read(lv, Wbar, q):
    """o = M_Wbar(q): a read at the chunk-start state. q (B, n, H*dk) -> (B, n, H*dv)."""
    y, _ = forward_layers(lv, Wbar, split_heads(q, lv.heads))
    return merge_heads(y)


def outer_sum(c, d, a):
    """sum_t c_t d_t a_t^T as one batched matmul: (B,H,n), (B,H,n,o), (B,H,n,i) -> (B,H,o,i)."""
    return (c[..., None] * d).transpose(-1, -2) @ a


def chunk_update(lv, Ws, Ss, u, theta, alpha, eta):
    """Apply n tokens of the rule to running weights Ws (and momenta Ss) in closed form.
    u: [(delta, a)] rank-1 gradient factors per layer; theta/alpha/eta: (B, H, n).
    Gate products are cumprods (no logs, no division): exact for any real gates, zeros and signs
    included, as the reference multiplies them token by token."""
    g = 1 - alpha                                         # retention
    g_all = g.prod(-1)[..., None, None]                   # G(1..n)
    g_after = prod_after(g)                              # G(t+1..n)
    if eta is None:  # S_t = -theta_t u_t: W_n = G(1..n) W_0 - sum_i G(i+1..n) theta_i u_i
        c = theta * g_after
        return [g_all * W - outer_sum(c, d, a) for W, (d, a) in zip(Ws, u)], Ss
    # sum_t G(t+1..n) E(i+1..t): how much of theta_i u_i reaches W_n through S_t (t >= i)
    c = theta * (pair_prod(eta) * g_after[..., None, :]).sum(-1)   # coefficient of u_i in W_n
    s0 = (g_after * torch.cumprod(eta, -1)).sum(-1)                  # coefficient of S_0 in W_n
    cs = theta * prod_after(eta)                                    # coefficient of u_i in S_n
    e_all = eta.prod(-1)[..., None, None]
    new_W, new_S = [], []
    for W, S, (d, a) in zip(Ws, Ss, u):
        new_W.append(g_all * W + s0[..., None, None] * S - outer_sum(c, d, a))
        new_S.append(e_all * S - outer_sum(cs, d, a))
    return new_W, new_S


def dgd_update(lv, Ws, Ss, u, theta, alpha, eta):
    """DGD without momentum in closed form: the layers with the k k^T term by the WY/UT
    triangular solve (`dgd_wy`), the others by the scalar scan. With momentum: `dgd_momentum`."""
    if Ss is not None:
        return dgd_momentum(lv, Ws, Ss, u, theta, alpha, eta)
    layers = lv.rule_args.get("layers", "first")
    out = []
    for li, (W, (d, a)) in enumerate(zip(Ws, u)):
        if li == 0 or layers == "all":
            out.append(dgd_wy(W, d, a, dgd_lr(lv, theta, a), alpha))
        else:
            out.append(chunk_update(lv, [W], None, [(d, a)], theta, alpha, None)[0][0])
    return out, None


def dgd_lr(lv, theta, k):
    """The DGD step size on a layer with input k: theta, or theta / (1 + theta ||k||^2) (Sherman-Morrison)."""
    if not lv.rule_args.get("normalize", True):
        return theta
    return theta / (1 + theta * (k * k).sum(-1))


def dgd_wy(W0, d, k, theta, alpha):
    """n tokens of W_t = a_t W_{t-1} - b_t (W_{t-1} k_t + d_t) k_t^T  (a = 1 - alpha, b = theta).

    With u_t = W_{t-1} k_t + d_t:  W_n = A_{1..n} W_0 - sum_t A_{t+1..n} b_t u_t k_t^T, and the u_t
    solve the unit lower-triangular system (I + L) U = R,
        L[t, s] = A_{s+1..t-1} b_s (k_s . k_t)  (s < t),   R_t = A_{1..t-1} W_0 k_t + d_t,
    the UT/WY form of a product of (a I - b k k^T) factors (as fla's delta rule): matmuls only.
    The gate products are cumprods, exact for any real a (zeros and signs included)."""
    n = theta.shape[-1]
    A = 1 - alpha
    # P[s, t'] = A_{s+1..t'}; L needs A_{s+1..t-1} = P[s, t-1]: transpose and shift down one row
    P = pair_prod(A).transpose(-1, -2)
    decay = torch.cat([torch.zeros_like(P[..., :1, :]), P[..., :-1, :]], -2)
    idx = torch.arange(n, device=theta.device)
    lower = (idx[:, None] > idx[None, :]).to(k.dtype)
    L = decay * lower * theta[..., None, :] * (k @ k.transpose(-1, -2))
    R = prod_before(A)[..., None] * (k @ W0.transpose(-1, -2)) + d
    eye = torch.eye(n, dtype=k.dtype, device=k.device)
    U = torch.linalg.solve_triangular(eye + L, R, upper=False, unitriangular=True)
    c = theta * prod_after(A)                      # A_{t+1..n} b_t
    return A.prod(-1)[..., None, None] * W0 - outer_sum(c, U, k)


def dgd_momentum(lv, Ws, Ss, u, theta, alpha, eta):
    """DGD with momentum: W <- W (a I - theta k k^T) + S, S <- eta S - theta d k^T (gradients at the
    chunk start). The dgd layers go through the WY form of `dgd_block` in blocks of DGD_BLOCK tokens
    (matmuls and one triangular solve per block, as the Triton kernel), the others by the scalar scan."""
    from nlc.kernels.linear_memory.naive import DGD_BLOCK, dgd_block

    layers = lv.rule_args.get("layers", "first")
    n = theta.shape[-1]
    new_W, new_S = [], []
    for li, (W, S, (d, a)) in enumerate(zip(Ws, Ss, u)):
        if li == 0 or layers == "all":
            th = dgd_lr(lv, theta, a)
            for s in range(0, n, DGD_BLOCK):
                b = slice(s, s + DGD_BLOCK)
                W, S = dgd_block(a[:, :, b], d[:, :, b], th[..., b], alpha[..., b], eta[..., b], W, S)
        else:
            (W,), (S,) = chunk_update(lv, [W], [S], [(d, a)], theta, alpha, eta)
        new_W.append(W)
        new_S.append(S)
    return new_W, new_S


# ---- the reference: the equations, literally -------------------------------------------
def reference_token(lv, Wbar, Ws, Ss, k, v, theta, alpha, eta):
    """One token of the rule. k (B,H,dk), v (B,H,dv); gates (B,H). u_t by autograd at Wbar."""
    outer = torch.is_grad_enabled()
    with torch.enable_grad():
        # differentiate w.r.t. a zero perturbation of Wbar: the target v (self-generated values
        # are functions of Wbar too) stays a constant of the inner objective, while the gradient
        # remains a differentiable function of Wbar, k and v for the outer loop
        deltas = [torch.zeros_like(w, requires_grad=True) for w in Wbar]
        y, acts = forward_layers(lv, [w + d for w, d in zip(Wbar, deltas)], k[:, :, None])
        loss = objective_value(lv, y, v[:, :, None])                       # eq. 12 / 85
        grads = torch.autograd.grad(loss, deltas, create_graph=outer)
    ret = (1 - alpha)[..., None, None]
    new_W, new_S = [], []
    for li, (W, g) in enumerate(zip(Ws, grads)):
        dgd_layer = lv.rule == "dgd" and (li == 0 or lv.rule_args.get("layers") == "all")
        kt = acts[li][1][:, :, 0]                                           # the layer's input k~
        lr = theta
        if dgd_layer and lv.rule_args.get("normalize", True):
            lr = theta / (1 + theta * (kt * kt).sum(-1))                    # eta' = eta / (1 + eta ||k||^2)
        th = lr[..., None, None]
        step = -th * g                                                      # -theta_t grad l(M_tbar; x_t)
        if Ss is not None:
            step = eta[..., None, None] * Ss[li] + step                     # S_t = eta S_{t-1} - theta u_t
            new_S.append(step)
        if dgd_layer:
            eye = torch.eye(kt.shape[-1], dtype=kt.dtype, device=kt.device).expand(*kt.shape[:2], -1, -1)
            P = ret * eye - th * kt[..., :, None] * kt[..., None, :]        # (alpha I - eta k k^T), eq. 88
            new_W.append(W @ P + step)
        else:
            new_W.append(ret * W + step)                                    # W_t = (1 - a_t) W_{t-1} + S_t
    return new_W, (new_S if Ss is not None else None), loss.detach()
