"""Token-by-token stepping for generation at a cost per token that does not grow with position.

A level's reads see only its chunk-start weights (`Wbar`), and CMS stages change their weights
only at their chunk boundaries; both fall on segment ends (the program's segment length `seg` is
the gcd of every token-clock chunk). So inside a segment, the next token's logits need no write
of the tokens before it: a copy of the model with every in-context level frozen (`nlc.freeze(m,
"inner")`, same weights, same state layout) reads them, carrying only the stream state (conv and
attention caches, positions). The writes of the tokens read so far are *pending*; they are taken
in one multi-token call (with their successors as targets when CMS levels learn from the task
loss) when the next token starts a new segment. A sequence streamed in pieces equals it at once,
so the state is the one token-by-token writes give, at one batched write call per segment instead
of two full forward calls per token.
"""
from __future__ import annotations

import torch

# pending tokens are also committed when this many accumulate (models with no token-clock level
# have no segment end): it bounds the work and memory one commit call takes
MAX_PENDING = 64


def _detached(state: dict) -> dict:
    return {k: v.detach() for k, v in state.items()}


class Stepper:
    """Feed a prompt, then one token per `push`; `logits` are the next token's (1, vocab) logits.

    `teach`: the model's CMS levels learn from the task loss, so a write needs the token's successor.
    Models that are not an nlc program (no `schedule`) are stepped one full call per token."""

    def __init__(self, model, prompt: list[int], teach: bool, device):
        self.m, self.teach, self.device = model, teach, device
        if hasattr(model, "schedule"):
            from nlc.api import freeze
            self.reader, self.seg = freeze(model, "inner").eval(), model.seg  # seg None: one segment
        else:
            self.reader, self.seg = model, 1
        self.state = model.init_state(1)  # committed: every write up to `pos` taken
        self.pos = 0
        self.pending: list[int] = []  # tokens read past `pos`, writes not yet taken
        self.read_state = None  # the reader's state after the pending tokens (caches, positions)
        if len(prompt) > 1:
            self._commit(prompt[:-1], prompt[1:])
        self._read(prompt[-1])

    def _ids(self, toks):
        return torch.tensor([list(toks)], dtype=torch.long, device=self.device)

    def _commit(self, toks, succ=None):
        targets = self._ids(succ) if self.teach else None
        # the teaching pass runs under enable_grad: drop its graph, or every later token would carry
        # (and pay for) the autograd history of all tokens before it
        self.state = _detached(self.m(self._ids(toks), state=self.state, targets=targets).state)
        self.pos += len(toks)
        self.pending, self.read_state = [], None

    def _read(self, tok):
        out = self.reader(self._ids([tok]), state=self.read_state if self.pending else self.state)
        self.logits = out.logits[:, -1]
        if self.reader is self.m and not self.teach:
            # a full call that needs no successor has taken the token's writes: nothing pends
            self.state, self.pos = _detached(out.state), self.pos + 1
        else:
            self.read_state = out.state
            self.pending.append(tok)

    def push(self, tok: int, read: bool = True):
        """`tok` follows the tokens read so far; read it (its logits become `logits`) unless `read` is False."""
        at = self.pos + len(self.pending)  # tok's position
        at_end = self.seg is not None and at % self.seg == 0
        if self.pending and (at_end or len(self.pending) >= MAX_PENDING):
            self._commit(self.pending, self.pending[1:] + [tok])
        if read:
            self._read(tok)

    def final_state(self) -> dict:
        """The state after every token read whose writes can be taken: with `teach`, all but the last
        (its successor is unknown); otherwise all of them."""
        if self.teach and len(self.pending) > 1:
            self._commit(self.pending[:-1], self.pending[1:])
        elif not self.teach and self.pending:
            self._commit(self.pending)
        return self.state
