"""A stand-in for the modules that ``nlc.compile(spec, backend="torch")`` emits.

Same interface as the real thing:

* ``model(tokens (B,T) long, state: dict[str, Tensor] | None = None, targets=None)``
  returns an object with ``.logits`` (B,T,V), ``.state`` (the in-context fast state
  after the segment) and ``.loss`` (None without targets);
* ``model.init_state(batch) -> dict[str, Tensor]`` with keys that are stable.

And the same kind of computation: an embedding, a per-head linear memory that is
updated chunk-wise in context (for each chunk: ``o = W q``, then
``W <- (1-a) W + S`` with momentum ``S <- eta S - theta (W k - v) k^T`` summed over
the chunk; sigmoid gates), a 2-layer MLP memory read (a persistent, slow level), a head.
The chunk loop is a Python loop over a fixed sequence length, exactly as the
emitted code unrolls it under ``torch.export``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class StandinOutput:
    logits: torch.Tensor
    state: dict[str, torch.Tensor] = field(default_factory=dict)
    loss: torch.Tensor | None = None


class StandinModel(nn.Module):
    def __init__(
        self,
        vocab: int = 64,
        d_model: int = 32,
        heads: int = 2,
        chunk: int = 4,
        mlp_mult: int = 2,
        lr: float = 0.1,
        seed: int = 0,
    ):
        super().__init__()
        assert d_model % heads == 0
        g = torch.Generator().manual_seed(seed)
        self.vocab, self.d_model, self.heads, self.chunk = vocab, d_model, heads, chunk
        self.dh = d_model // heads
        self.lr = lr
        self.embed = nn.Embedding(vocab, d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.gates = nn.Linear(d_model, 3 * heads)  # alpha (forget), theta (lr), eta (momentum)
        self.out = nn.Linear(d_model, d_model, bias=False)
        self.mlp1 = nn.Linear(d_model, mlp_mult * d_model)
        self.mlp2 = nn.Linear(mlp_mult * d_model, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab, bias=False)
        self.w0 = nn.Parameter(torch.zeros(heads, self.dh, self.dh))  # learned initial memory
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)

    # state keys: deliberately not in sorted insertion order
    def init_state(self, batch: int) -> dict[str, torch.Tensor]:
        w = self.w0.unsqueeze(0).expand(batch, -1, -1, -1).clone()
        return {"mem.W": w, "mem.S": torch.zeros_like(w)}

    def _split(self, t: torch.Tensor) -> torch.Tensor:  # (B,T,D) -> (B,H,T,dh)
        b, n, _ = t.shape
        return t.view(b, n, self.heads, self.dh).transpose(1, 2)

    def forward(self, tokens, state=None, targets=None) -> StandinOutput:
        b, n = tokens.shape
        if state is None:
            state = self.init_state(b)
        W, S = state["mem.W"], state["mem.S"]
        x = self.embed(tokens)
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q = F.normalize(self._split(q), dim=-1)
        k = F.normalize(self._split(k), dim=-1)
        v = self._split(v)
        gates = torch.sigmoid(self.gates(x)).view(b, n, 3, self.heads).permute(2, 0, 3, 1)
        alpha, theta, eta = gates[0], gates[1] * self.lr, gates[2]  # (B,H,T)
        outs = []
        for s in range(0, n, self.chunk):  # static: fixed sequence length
            e = min(s + self.chunk, n)
            qc, kc, vc = q[:, :, s:e], k[:, :, s:e], v[:, :, s:e]
            outs.append(torch.matmul(qc, W.transpose(-1, -2)))  # o = W q
            err = torch.matmul(kc, W.transpose(-1, -2)) - vc  # W k - v
            grad = torch.matmul((err * theta[:, :, s:e, None]).transpose(-1, -2), kc)
            a = alpha[:, :, s:e].mean(-1)[..., None, None]
            m = eta[:, :, s:e].mean(-1)[..., None, None]
            S = m * S - grad
            W = (1 - a) * W + S
        o = torch.cat(outs, dim=2).transpose(1, 2).reshape(b, n, self.d_model)
        h = x + self.out(o)
        h = h + self.mlp2(F.silu(self.mlp1(h)))  # 2-layer MLP memory read
        logits = self.head(self.norm(h))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, self.vocab), targets.reshape(-1))
        return StandinOutput(logits=logits, state={"mem.W": W, "mem.S": S}, loss=loss)


def make_standin(**kw) -> StandinModel:
    return StandinModel(**kw).eval()
