"""Fused in-context update kernels (Triton) with plain PyTorch references beside them.

Ops (registered as torch.library custom ops in the `nlc` namespace, so torch.compile traces through them
with no graph break):

- `linear_memory`: matrix memory W with momentum S and chunk-start reads (Titans eqs. 13-14; with
  `dgd=True` the Hope DGD form, eqs. 88/93).
- `mlp_memory`: 2-layer MLP memory M(x) = W2 act(W1 x), per-token gradients at the chunk-start weights.

The Triton kernels run on CUDA, or on CPU tensors in the Triton interpreter when TRITON_INTERPRET=1 is set
before the first kernel is used; `available()` says whether either holds. `backend="torch"` runs the chunked
torch reference instead (differentiable, any device). See docs/kernels.md.
"""
import torch

from ._utils import available
from .linear_memory.naive import chunk_linear_memory, naive_linear_memory
from .linear_memory.op import linear_memory_op
from .mlp_memory.naive import ACTS, chunk_mlp_memory, naive_mlp_memory
from .mlp_memory.op import mlp_memory_op

__all__ = [
    "available", "linear_memory", "mlp_memory",
    "naive_linear_memory", "chunk_linear_memory", "naive_mlp_memory", "chunk_mlp_memory",
]

_FLOATS = (torch.float32, torch.bfloat16, torch.float16)


def _check(cond: bool, msg: str):
    if not cond:
        raise ValueError(msg)


def _check_tensors(op: str, named: dict):
    devs = {t.device for t in named.values()}
    _check(len(devs) == 1, f"{op}: all tensors must be on one device, got {sorted(map(str, devs))}")
    for name, t in named.items():
        _check(t.dtype in _FLOATS, f"{op}: {name} must be float32, bfloat16 or float16, got {t.dtype}")


def _check_shape(op: str, name: str, t, shape):
    _check(tuple(t.shape) == tuple(shape), f"{op}: {name} must have shape {tuple(shape)}, got {tuple(t.shape)}")


def _check_chunk(op: str, chunk):
    _check(isinstance(chunk, int) and not isinstance(chunk, bool) and chunk >= 1,
           f"{op}: chunk must be an int >= 1, got {chunk!r}")


def _backend(op: str, backend: str) -> str:
    _check(backend in ("auto", "triton", "torch"), f"{op}: backend must be 'auto', 'triton' or 'torch', got {backend!r}")
    if backend == "auto":
        return "triton" if available() else "torch"
    if backend == "triton" and not available():
        raise RuntimeError(f"{op}: Triton cannot run here (no CUDA device and TRITON_INTERPRET!=1); "
                           "set TRITON_INTERPRET=1 before importing triton, or pass backend='torch'")
    return backend


def _check_gates_qkv(op, q, k, v, lr, decay, mom):
    _check(q.dim() == 4, f"{op}: q must be (B, H, T, Dk), got shape {tuple(q.shape)}")
    B, H, T, Dk = q.shape
    _check(T >= 1, f"{op}: need at least one token, got T={T}")
    _check_shape(op, "k", k, (B, H, T, Dk))
    _check(v.dim() == 4 and tuple(v.shape[:3]) == (B, H, T),
           f"{op}: v must be (B, H, T, Dv) = ({B}, {H}, {T}, Dv), got {tuple(v.shape)}")
    for name, g in (("lr", lr), ("decay", decay), ("mom", mom)):
        _check_shape(op, name, g, (B, H, T))
    return B, H, T, Dk, v.shape[-1]


def linear_memory(q, k, v, lr, decay, mom, W0=None, S0=None, *, chunk: int, dgd: bool = False, backend: str = "auto"):
    """Linear matrix memory with momentum, chunk-start reads and surprises.

    Shapes: q, k (B,H,T,Dk); v (B,H,T,Dv); lr, decay, mom (B,H,T); W0, S0 (B,H,Dv,Dk) (zeros if None).
    For each chunk of `chunk` tokens with start state (W̄, S̄):
        o_t = W̄ q_t,   e_t = W̄ k_t - v_t,   u_t = e_t k_tᵀ
        S_t = mom_t S_{t-1} - lr_t u_t
        W_t = (1 - decay_t) W_{t-1} + S_t                              (dgd=False, Titans eqs. 13-14)
        W_t = W_{t-1} ((1 - decay_t) I - lr_t k_t k_tᵀ) + S_t           (dgd=True, Hope eqs. 88/93)
    Returns (o (B,H,T,Dv), W_T, S_T).
    """
    op = "linear_memory"
    B, H, T, Dk, Dv = _check_gates_qkv(op, q, k, v, lr, decay, mom)
    W0 = q.new_zeros(B, H, Dv, Dk, dtype=torch.float32) if W0 is None else W0
    S0 = torch.zeros_like(W0) if S0 is None else S0
    _check_shape(op, "W0", W0, (B, H, Dv, Dk))
    _check_shape(op, "S0", S0, (B, H, Dv, Dk))
    _check_tensors(op, dict(q=q, k=k, v=v, lr=lr, decay=decay, mom=mom, W0=W0, S0=S0))
    _check_chunk(op, chunk)
    fn = linear_memory_op if _backend(op, backend) == "triton" else chunk_linear_memory
    return fn(q, k, v, lr, decay, mom, W0, S0, chunk, bool(dgd))


def mlp_memory(q, k, v, lr, decay, mom, W1_0, W2_0, S1_0=None, S2_0=None, *, chunk: int, act: str = "silu",
               backend: str = "auto"):
    """2-layer MLP memory M(x) = W2 act(W1 x) with momentum, chunk-start reads and gradients.

    Shapes: q, k (B,H,T,Dk); v (B,H,T,Dv); gates (B,H,T); W1, S1 (B,H,Dh,Dk); W2, S2 (B,H,Dv,Dh).
    Per chunk with start weights (W̄1, W̄2): o_t = M̄(q_t); z = W̄1 k_t, a = act(z), e = W̄2 a - v_t,
    gW2 = e aᵀ, δ = (W̄2ᵀ e) ⊙ act'(z), gW1 = δ k_tᵀ; per parameter S_t = mom_t S_{t-1} - lr_t g_t,
    W_t = (1 - decay_t) W_{t-1} + S_t. act in {'silu', 'gelu' (tanh approximation), 'relu'}.
    Returns (o, W1_T, W2_T, S1_T, S2_T).
    """
    op = "mlp_memory"
    B, H, T, Dk, Dv = _check_gates_qkv(op, q, k, v, lr, decay, mom)
    _check(W1_0.dim() == 4, f"{op}: W1_0 must be (B, H, Dh, Dk), got shape {tuple(W1_0.shape)}")
    Dh = W1_0.shape[2]
    _check_shape(op, "W1_0", W1_0, (B, H, Dh, Dk))
    _check_shape(op, "W2_0", W2_0, (B, H, Dv, Dh))
    S1_0 = torch.zeros_like(W1_0) if S1_0 is None else S1_0
    S2_0 = torch.zeros_like(W2_0) if S2_0 is None else S2_0
    _check_shape(op, "S1_0", S1_0, (B, H, Dh, Dk))
    _check_shape(op, "S2_0", S2_0, (B, H, Dv, Dh))
    _check_tensors(op, dict(q=q, k=k, v=v, lr=lr, decay=decay, mom=mom, W1_0=W1_0, W2_0=W2_0, S1_0=S1_0, S2_0=S2_0))
    _check_chunk(op, chunk)
    _check(act in ACTS, f"{op}: act must be one of {ACTS}, got {act!r}")
    fn = mlp_memory_op if _backend(op, backend) == "triton" else chunk_mlp_memory
    return fn(q, k, v, lr, decay, mom, W1_0, W2_0, S1_0, S2_0, chunk, act)
