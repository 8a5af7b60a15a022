"""Attention levels: non-parametric memories (NL eq. 62: softmax attention is the
Nadaraya-Watson solution of a weighted l2 regression; a window restricts it to the last
c tokens). Learnable persistent tokens are prepended (Titans §3.3); `context` tokens
(MAC's memory read-outs h_t) join the keys at their own positions, causally.
The key/value cache is the level's fast state, so segments stream exactly.
Queries and keys carry rotary position embeddings (RoPE, on by default; `rope = false`
gives NoPE) at their absolute positions: the level counts the tokens it has seen in its
state, and cached keys are stored rotated.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from nlc.lower.memory import merge_heads, split_heads


class AttentionLevel(nn.Module):
    def __init__(self, lv, dim: int):
        super().__init__()
        self.lv, self.H, self.window = lv, lv.heads, lv.memory.window
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim, bias=False) for _ in range(4))
        npers = lv.memory.persistent
        self.pk = nn.Parameter(torch.randn(lv.heads, npers, dim // lv.heads) / math.sqrt(dim)) if npers else None
        self.pv = nn.Parameter(torch.randn(lv.heads, npers, dim // lv.heads) / math.sqrt(dim)) if npers else None

    def cache_len(self, total: int) -> int:
        return total if not self.window else min(total, self.window)

    def rotate(self, x, pos):
        """RoPE on (B, H, n, d) at absolute positions pos (B, n) (pairs of channels rotate)."""
        d = x.shape[-1] // 2 * 2
        if not self.lv.memory.rope or d == 0:
            return x
        inv = 10000.0 ** (-torch.arange(0, d, 2, device=x.device, dtype=x.dtype) / d)
        ang = pos.to(x.dtype)[:, None, :, None] * inv                          # (B, 1, n, d/2)
        cos, sin = torch.cos(ang), torch.sin(ang)
        x1, x2 = x[..., 0:d:2], x[..., 1:d:2]
        rot = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1).flatten(-2)
        return torch.cat([rot, x[..., d:]], -1)

    def forward(self, h, ctx, st, key):
        """h (B, n, dim): this segment; ctx (B, n, dim) or None. Positions are relative to the segment start."""
        B, n, _ = h.shape
        q, k, v = (split_heads(f(h), self.H) for f in (self.q, self.k, self.v))
        p0 = st.get(key + ".pos")
        if p0 is None:
            p0 = torch.zeros(B, dtype=torch.long, device=h.device)
        pos = p0[:, None] + torch.arange(n, device=h.device)                    # absolute positions
        st[key + ".pos"] = p0 + n
        q, k = self.rotate(q, pos), self.rotate(k, pos)
        ks, vs = [k], [v]
        if ctx is not None:
            ks.append(self.rotate(split_heads(self.k(ctx), self.H), pos))
            vs.append(split_heads(self.v(ctx), self.H))
        ck, cv = st.get(key + ".k"), st.get(key + ".v")
        if ck is not None:
            ks, vs = [ck] + ks, [cv] + vs
        K, V = torch.cat(ks, 2), torch.cat(vs, 2)
        ncache = ck.shape[2] // (2 if ctx is not None else 1) if ck is not None else 0
        # absolute positions of the keys: cached tokens (and cached context), then this segment's
        kpos_tok = torch.arange(-ncache, n, device=h.device)
        if ctx is not None:
            cpos = torch.arange(-ncache, 0, device=h.device)
            spos = torch.arange(0, n, device=h.device)
            kpos = torch.cat([cpos, cpos, spos, spos]) if ck is not None else torch.cat([spos, spos])
            # order above must match K: [cache tokens, cache ctx] + [seg tokens, seg ctx]
        else:
            kpos = kpos_tok
        qpos = torch.arange(0, n, device=h.device)
        mask = kpos[None, :] <= qpos[:, None]
        if self.window:
            mask &= (qpos[:, None] - kpos[None, :]) < self.window
        Kc, Vc = K, V
        if self.pk is not None:
            K = torch.cat([self.pk.unsqueeze(0).expand(B, -1, -1, -1), K], 2)
            V = torch.cat([self.pv.unsqueeze(0).expand(B, -1, -1, -1), V], 2)
            mask = torch.cat([torch.ones(n, self.pk.shape[1], dtype=torch.bool, device=h.device), mask], 1)
        o = F.scaled_dot_product_attention(q, K, V, attn_mask=mask)
        # keep what later tokens can still see
        keep = self.cache_len(ncache + n)
        if ctx is not None:
            tk = torch.cat(([ck[:, :, :ncache]] if ck is not None else []) + [k], 2)[:, :, -keep:]
            tv = torch.cat(([cv[:, :, :ncache]] if ck is not None else []) + [v], 2)[:, :, -keep:]
            xk = torch.cat(([ck[:, :, ncache:]] if ck is not None else []) + [ks[-1]], 2)[:, :, -keep:]
            xv = torch.cat(([cv[:, :, ncache:]] if ck is not None else []) + [vs[-1]], 2)[:, :, -keep:]
            st[key + ".k"], st[key + ".v"] = torch.cat([tk, xk], 2), torch.cat([tv, xv], 2)
        else:
            st[key + ".k"], st[key + ".v"] = Kc[:, :, Kc.shape[2] - keep:], Vc[:, :, Vc.shape[2] - keep:]
        return self.o(merge_heads(o))
