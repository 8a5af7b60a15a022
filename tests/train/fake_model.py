"""A tiny stand-in with the interface of `nlc.compile(...)`'s model, so training is tested now.

Two "levels" keep fast state carried across segments: `ctx` (a running mean of the
embeddings, an in-context memory) and `mem` (a GRU's hidden state). Dropout makes RNG
restore matter for the resume test; `poison_after` makes the `mem` state blow up to test
NaN handling; `delay` slows steps so a subprocess can be killed mid-run.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class Output:
    logits: torch.Tensor
    state: dict
    loss: torch.Tensor | None = None
    stats: dict = field(default_factory=dict)


class FakeModel(nn.Module):
    def __init__(self, dim=16, hidden=32, vocab=256, dropout=0.1, lr=3e-3, seed=0,
                 delay=0.0, poison_after=None):
        super().__init__()
        torch.manual_seed(seed)
        self.config = dict(dim=dim, hidden=hidden, vocab=vocab, dropout=dropout, lr=lr,
                           seq_len=32, batch=4, steps=40)
        self.spec_name = "fake"
        self.spec_text = "model Fake(" + ", ".join(f"{k} = {v}" for k, v in self.config.items()) + ") {}"
        self.spec_hash = hashlib.sha256(json.dumps(self.config, sort_keys=True).encode()).hexdigest()
        self.train_defaults = {"steps": 40, "batch": 4, "seq_len": 32, "lr": lr, "warmup": 4}
        self.emb = nn.Embedding(vocab, dim)
        self.drop = nn.Dropout(dropout)
        self.gru = nn.GRU(dim, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)
        self.delay, self.poison_after, self.calls = delay, poison_after, 0

    def init_state(self, batch_size: int) -> dict:
        dim, hid = self.config["dim"], self.config["hidden"]
        z = lambda *s: torch.zeros(*s, device=self.emb.weight.device)  # noqa: E731
        return {"ctx/sum": z(batch_size, dim), "ctx/count": z(batch_size, 1), "mem/h": z(batch_size, hid)}

    def optimizer(self):
        return torch.optim.AdamW(self.parameters(), lr=self.config["lr"], weight_decay=0.01)

    def forward(self, tokens, state=None, targets=None):
        B, T = tokens.shape
        state = self.init_state(B) if state is None else state
        e = self.emb(tokens)
        csum = state["ctx/sum"][:, None] + e.cumsum(1)
        cnt = state["ctx/count"][:, None] + torch.arange(1, T + 1, device=e.device)[None, :, None]
        h, hn = self.gru(self.drop(e + csum / cnt), state["mem/h"][None].contiguous())
        logits = self.head(h)
        new = {"ctx/sum": csum[:, -1], "ctx/count": cnt[:, -1], "mem/h": hn[0]}
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
        if self.training:
            self.calls += 1
            if self.delay:
                time.sleep(self.delay)
            if self.poison_after is not None and self.calls > self.poison_after:
                new["mem/h"] = new["mem/h"] * float("inf")
                loss = loss * float("nan") if loss is not None else None
        stats = {
            "ctx/update_norm": (e.detach().norm(dim=-1) / cnt[..., 0]).mean(),
            "mem/update_norm": (new["mem/h"] - state["mem/h"]).detach().norm(dim=-1).mean(),
        }
        if loss is not None:
            stats["mem/surprise"] = loss.detach()
        return Output(logits, new, loss, stats)


def make(**kw) -> FakeModel:
    return FakeModel(**kw)
