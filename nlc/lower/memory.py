"""In-context memory levels: parametric memories learned at test time (Titans, Hope).

A memory is a stack of per-head weight matrices W_l (B, H, out_l, in_l): `linear`
(y = W k), `mlp` (y = W_L act(... act(W_1 k))) or `residual_mlp` (y = k + W_2 act(W_1 k),
NL eq. 89). Its fast state per sequence is
    Wbar_l  the chunk-start weights: every read and every gradient of a chunk uses them
            (Titans eqs. 16-18, Hope eqs. 90-91);
    W_l     the running weights, updated token by token inside the chunk;
    S_l     the momentum (surprise) buffer, for rules with momentum.
At a chunk boundary Wbar <- W. Per token t of a chunk, u_t = the gradient of the objective at
Wbar, and the level's update rule (nlc/rules/<rule>/: gd, momentum, dgd, anchored) takes the step.
Two implementations of one semantics, both here and in the rule's folder:
    chunk         closed-form per-token gradients (rank-1 per layer, `chunk_grads`) as batched
                  matmuls, then the rule's `chunk` (gate products, WY forms);
    reference     the equations literally: autograd for u_t (`reference_token`), the rule's `token`
                  step, a loop over tokens.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from nlc.ir.kinds import GATE_KINDS, MEMORY_KINDS, GateKind, Init, Objective, OpKind
from nlc.lower.ops import ACTS, act_grad
from nlc.rules import RULES


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
    if MEMORY_KINDS[lv.memory.kind].residual:
        a = a + k
    return a, acts


def objective_grad(lv, y, v):
    """d objective / d y for l2 (1/2 ||y - v||^2), dot (-<y, v>), huber(delta), lp(p)."""
    e = y - v
    o = lv.objective
    if o == Objective.L2:
        return e
    if o == Objective.DOT:
        return -v
    if o == Objective.HUBER:
        d = lv.objective_args["delta"]
        return e.clamp(-d, d)
    if o == Objective.LP:
        p = lv.objective_args["p"]
        return p * e.abs().pow(p - 1) * torch.sign(e)
    raise ValueError(o)


def objective_value(lv, y, v, groups: int | None = None):
    """The objective summed over everything; with `groups`, summed per group of the head axis (dim 1):
    a (groups,) tensor (a batched level's members, nlc/lower/group.py)."""
    t, scale = _objective_terms(lv, y, v)
    t = t.sum() if groups is None else t.unflatten(1, (groups, -1)).transpose(0, 1).flatten(1).sum(-1)
    return t if scale == 1 else scale * t


def _objective_terms(lv, y, v):
    """(elementwise terms, a factor applied after the sum)."""
    e = y - v
    o = lv.objective
    if o == Objective.L2:
        return e * e, 0.5
    if o == Objective.DOT:
        return y * v, -1
    if o == Objective.HUBER:
        d = lv.objective_args["delta"]
        a = e.abs()
        return torch.where(a <= d, 0.5 * e * e, d * (a - 0.5 * d)), 1
    if o == Objective.LP:
        return e.abs().pow(lv.objective_args["p"]), 1
    raise ValueError(o)


def _grads(lv, Ws, v, y, acts):
    """Per-token gradients of the objective at weights Ws, as rank-1 factors per layer, from the
    forward's y and per-layer (z, a): u_{t,l} = delta_{t,l} a_{t,l}^T as [(delta (B,H,n,o), a (B,H,n,i))]."""
    d = objective_grad(lv, y, v)
    out = [None] * len(Ws)
    for li in range(len(Ws) - 1, -1, -1):
        z, a = acts[li]
        out[li] = (d, a)
        if li:
            d = (d @ Ws[li]) * act_grad(lv.memory.act, acts[li - 1][0])
    return out


def chunk_grads(lv, Ws, k, v, theta, groups: int | None = None):
    """The chunk's per-token gradients at weights Ws as rank-1 factors (`_grads`), its surprise (per group
    of heads with `groups`: see objective_value), and the lr gate the step takes: theta itself, or for a
    curvature-following level (`normalize = true`, gd / momentum) theta / (1 + C theta c) with c from
    `gn_curvature`. Returns u, surprise, theta."""
    y, acts = forward_layers(lv, Ws, k)
    u = _grads(lv, Ws, v, y, acts)
    if RULES[lv.rule].curvature_step(lv):
        theta = normalized_lr(lv, theta, gn_curvature(lv, Ws, acts, u))
    return u, objective_value(lv, y, v, groups).detach(), theta


def gn_curvature(lv, Ws, acts, u):
    """c_t = |J_t g_t|^2 / |g_t|^2 (B,H,n): the Gauss-Newton curvature of token t's l2 loss along its own
    gradient g_t, J_t the Jacobian of M(k_t) in the weights at Ws. J_t g_t is one forward tangent pass
    on the rank-1 factors (g_l a_l = delta_l |a_l|^2): zdot_1 = delta_1 |a_1|^2, zdot_l = delta_l |a_l|^2 +
    W_l (act'(z_{l-1}) * zdot_{l-1}); the residual's k has no tangent. A linear memory's c_t is |k_t|^2.
    The reference (`reference_token`) takes J_t g_t from torch.func.jvp instead."""
    zdot, g2 = None, 0.0
    for li, (d, a) in enumerate(u):
        aa = (a * a).sum(-1, keepdim=True)
        g2 = g2 + (d * d).sum(-1) * aa[..., 0]
        t = d * aa
        if zdot is not None:
            t = t + (act_grad(lv.memory.act, acts[li - 1][0]) * zdot) @ Ws[li].transpose(-1, -2)
        zdot = t
    return (zdot * zdot).sum(-1) / g2.clamp_min(torch.finfo(g2.dtype).tiny)


def normalized_lr(lv, theta, c):
    """theta / (1 + C theta c), C the level's chunk: for theta >= 0, C theta' c < 1, so in the Gauss-Newton
    model no token's step within its chunk overshoots its own loss (that needs theta c > 2), and the
    chunk's sum_t theta'_t c_t < 1 (momentum carries steps past the chunk: not capped here). With C = 1 and
    a linear memory (c = |k|^2) it is dgd's Sherman-Morrison step theta / (1 + theta |k|^2)."""
    C = lv.clock.period or 1
    return theta / (1 + C * theta * c)


class MemoryLevel(nn.Module):
    """Parameters of one memory level (meta-learned initial weights, learned gates)."""

    def __init__(self, lv, unit_keys: bool = False):
        """`unit_keys`: the plan l2-normalises this level's keys per head (see `keys_unit_norm`)."""
        super().__init__()
        self.lv = lv
        shapes = layer_shapes(lv)
        self.init = nn.ParameterList()
        self.fixed: list[torch.Tensor] = []
        loaded = load_pretrained(lv, shapes) if lv.init == Init.PRETRAINED else None
        for li, (o, i) in enumerate(shapes):
            w = torch.randn(lv.heads, o, i) / math.sqrt(i)
            if li == 0 and len(shapes) > 1 and unit_keys and normalized_step(lv):
                # unit-norm keys have entries ~ 1/sqrt(dk), not ~1: scale the first layer so its
                # pre-activations are ~N(0, 1) (silu's non-linear range, |a|^2 ~ hidden), not ~N(0, 1/dk);
                # the Sherman-Morrison step theta' = theta / (1 + theta |a|^2) keeps the update stable
                w = w * math.sqrt(i)
            if lv.init == Init.META:
                self.init.append(nn.Parameter(w))
            elif lv.init == Init.ZEROS:
                self.fixed.append(torch.zeros(lv.heads, o, i))
            elif lv.init == Init.CONST:
                self.fixed.append(torch.full((lv.heads, o, i), float(lv.init_args["value"])))
            else:  # pretrained (NL §7.3, ad-hoc level stacking): the file's weights, not trained
                self.fixed.append(loaded[li])
        self.learned = nn.ParameterDict({g: nn.Parameter(torch.full((lv.heads,), gate.value))
                                         for g, gate in lv.gates.items() if GATE_KINDS[gate.kind].learned})
        self.rule = RULES[lv.rule]
        upd = self.rule.update()  # resolved here, not in a traced program (dynamo does not trace importlib)
        self.token_step, self.chunk_step = upd.token, upd.chunk
        self.momentum = lv.momentum

    def initial(self, B, device, dtype):
        ws = list(self.init) if self.lv.init == Init.META else [w.to(device, dtype) for w in self.fixed]
        return [w.unsqueeze(0).expand(B, *w.shape) for w in ws]

    def gate(self, name, streams, B, n, ref):
        g = self.lv.gates[name]
        if g.kind == GateKind.CONST:
            return torch.full((B, self.lv.heads, n), g.value, device=ref.device, dtype=ref.dtype)
        if g.kind == GateKind.LEARNED:
            return self.learned[name].view(1, -1, 1).expand(B, -1, n)
        s = streams[g.stream]  # (B, n, 1 or H)
        return s.transpose(1, 2).expand(B, self.lv.heads, n)


def normalized_step(lv) -> bool:
    """Whether every layer's step is the Sherman-Morrison one (dgd, normalize, layers = all): then the
    update is stable whatever the scale of a layer's input."""
    return (lv.rule is not None and RULES[lv.rule].key_projection and lv.rule_args.get("normalize", True)
            and (lv.rule_args.get("layers", "first") == "all" or len(layer_shapes(lv)) == 1))


def keys_unit_norm(block, lv) -> bool:
    """Whether the plan makes the level's keys unit-norm per head (`keys l2norm(..., groups = heads)`)."""
    op = next((o for o in block.ops if o.name == lv.keys), None)
    return op is not None and op.op == OpKind.L2NORM and op.attrs.get("groups", 1) == lv.heads


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


# ---- the reference: the equations, literally -------------------------------------------
def reference_token(lv, Wbar, Ws, Ss, k, v, theta, alpha, eta, W0s=None, token=None):
    """One token of the level's rule. k (B,H,dk), v (B,H,dv); gates (B,H). u_t by autograd at Wbar, then
    the rule's literal step per layer (`nlc/rules/<rule>/update.py: token`)."""
    outer = torch.is_grad_enabled()
    with torch.enable_grad():
        # differentiate w.r.t. a zero perturbation of Wbar: the target v (self-generated values
        # are functions of Wbar too) stays a constant of the inner objective, while the gradient
        # remains a differentiable function of Wbar, k and v for the outer loop
        deltas = [torch.zeros_like(w, requires_grad=True) for w in Wbar]
        y, acts = forward_layers(lv, [w + d for w, d in zip(Wbar, deltas)], k[:, :, None])
        loss = objective_value(lv, y, v[:, :, None])                       # eq. 12 / 85
        grads = torch.autograd.grad(loss, deltas, create_graph=outer)
        if RULES[lv.rule].curvature_step(lv):  # c_t = |J g|^2 / |g|^2, J g by forward-mode autograd
            _, jg = torch.func.jvp(lambda *w: forward_layers(lv, list(w), k[:, :, None])[0],
                                   tuple(w.contiguous() for w in Wbar), grads)  # an expanded M_0 cannot be dual
            g2 = sum((g * g).sum((-1, -2)) for g in grads)
            theta = normalized_lr(lv, theta, (jg * jg).sum((-1, -2)) / g2.clamp_min(torch.finfo(g2.dtype).tiny))
    token = token or RULES[lv.rule].update().token
    new_W, new_S = [], []
    for li, (W, g) in enumerate(zip(Ws, grads)):
        x = acts[li][1][:, :, 0]                                            # the layer's input k~
        w, s = token(lv, li, W, Ss[li] if Ss is not None else None, g, x, theta, alpha, eta,
                     W0s[li] if W0s is not None else None)
        new_W.append(w)
        if s is not None:
            new_S.append(s)
    return new_W, (new_S if Ss is not None else None), loss.detach()


def chunk_write(lv, Ws, Ss, u, theta, alpha, eta, W0s=None, chunk=None):
    """n tokens of the level's rule in closed form (`nlc/rules/<rule>/update.py: chunk`); `chunk`: that
    function, resolved before tracing (MemoryLevel.chunk_step)."""
    return (chunk or RULES[lv.rule].update().chunk)(lv, Ws, Ss, u, theta, alpha, eta, W0s)
