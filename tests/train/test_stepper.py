"""Generation steps at a cost per token that does not grow with position (nlc.train.stepper).

The stepper reads each token with a frozen copy and takes the writes once per segment; these
tests hold it to the plain two-calls-per-token loop (same logits, same final state), and check
that the work per token and the carried state are the same at every position.
"""
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import nlc
from nlc.train.evaluate import generate
from nlc.train.stepper import Stepper

SMALL = dict(dim=16, heads=2, layers=1, chunk=4, mem_chunk=8)
PROMPT = list(b"def f(x):")


def _hope():
    torch.manual_seed(0)
    return nlc.compile("hope", **SMALL).eval()


def _two_calls_per_token(m, prompt, new):
    """The loop generate used before the stepper: read each token with a full call (state
    discarded), then call again with its successor as target to take its writes."""
    ids = torch.tensor([prompt])
    st = m(ids[:, :-1], state=m.init_state(1), targets=ids[:, 1:]).state
    st = {k: v.detach() for k, v in st.items()}
    last, logits = prompt[-1], []
    for t in new:
        logits.append(m(torch.tensor([[last]]), state=st).logits[:, -1])
        st = {k: v.detach() for k, v in m(torch.tensor([[last]]), state=st, targets=torch.tensor([[t]])).state.items()}
        last = t
    return logits, st


def test_stepper_equals_two_calls_per_token():
    m = _hope()
    assert m.cms_learns  # the teaching path: writes need each token's successor
    new = [int(b) for b in torch.randint(0, 256, (13,), generator=torch.Generator().manual_seed(1))]
    with torch.no_grad():
        want_logits, want_state = _two_calls_per_token(m, PROMPT, new)
        step = Stepper(m, PROMPT, teach=True, device=torch.device("cpu"))
        got = []
        for t in new:
            got.append(step.logits)
            step.push(t)
        state = step.final_state()
    for i, (a, b) in enumerate(zip(got, want_logits)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=f"logits of new token {i}")
    assert state.keys() == want_state.keys()
    for k in want_state:
        torch.testing.assert_close(state[k], want_state[k], rtol=1e-4, atol=1e-5, msg=k)


class _CountOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.n += 1
        return func(*args, **(kwargs or {}))


def test_work_per_token_does_not_grow_with_position():
    """New tokens 8..15 take exactly the torch ops of new tokens 16..23: each window is one
    period of the chunk pattern (chunks 4 and 8), so any work that grew with position shows."""
    m = _hope()
    seen = []
    with _CountOps() as c:
        generate(m, bytes(PROMPT[:7]), max_new=25, temperature=0, callback=lambda _: seen.append(c.n))
    a, b, c = seen[8], seen[16], seen[24]
    assert b - a == c - b, (a, b, c)


def test_carried_state_is_the_same_at_every_position():
    """The state carried between tokens keeps its tensors and sizes and holds no autograd graph."""
    m = _hope()
    _, st_a = generate(m, bytes(PROMPT), max_new=5, return_state=True)
    _, st_b = generate(m, bytes(PROMPT), max_new=40, return_state=True)
    assert st_a.keys() == st_b.keys()
    for k in st_b:
        assert st_b[k].grad_fn is None and not st_b[k].requires_grad, k
        assert st_b[k].shape == st_a[k].shape, k
    assert int(st_b["pos"][0]) - int(st_a["pos"][0]) == 35
