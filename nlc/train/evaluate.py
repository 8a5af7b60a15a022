"""Evaluation: validation bpb, MQAR, NIAH (table + heatmap), continual learning, and generation.

Every sequence starts from `model.init_state(B)`: in-context memory belongs to one
sequence. Evaluation runs under `torch.no_grad()` inside `fork_rng`, so evaluating never
changes the training run's random stream (resume stays bit-exact whatever eval_every is).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from nlc.train.checkpoint import unwrap
from nlc.train.data import eval_windows
from nlc.train.defaults import FALLBACK_LR, TASK
from nlc.train.metrics import LN2
from nlc.train.stepper import Stepper
from nlc.train.tasks import (CONTINUAL_TASKS, MQAR_KEYS, TaskBatch, accuracy, continual_task, forgetting, mqar,
                             niah)


def _device(model) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


class _evaluating:
    """model.eval() + no_grad + a private RNG stream; restores all three on exit."""

    def __init__(self, model):
        self.m = model

    def __enter__(self):
        self.was = self.m.training
        self.m.eval()
        self.rng = torch.random.fork_rng(devices=[])
        self.rng.__enter__()
        self.ng = torch.no_grad()
        self.ng.__enter__()
        return self.m

    def __exit__(self, *exc):
        self.ng.__exit__(*exc)
        self.rng.__exit__(*exc)
        self.m.train(self.was)
        return False


def _run(m, tokens: torch.Tensor, targets: torch.Tensor | None = None):
    tokens = tokens.to(_device(m))
    kw = {} if targets is None else {"targets": targets.to(tokens.device)}
    # an nlc model builds a fresh state inside forward (where FSDP has gathered its parameters)
    if getattr(m, "detach_state_output", None) is not None:
        return m(tokens, **kw)
    return m(tokens, state=m.init_state(tokens.size(0)), **kw)


# ---------------------------------------------------------------------------
# language modelling


def eval_loss(model, data, batch: int = 8, seq_len: int = 256, max_batches: int | None = 16,
              teach: bool = False) -> float:
    """Mean next-byte cross-entropy (nats) over evenly spread, non-overlapping windows of `data`.
    `teach`: pass the targets to the forward, so levels taught by the task loss (CMS stages) learn
    in context as in training (each chunk's update uses only the losses of tokens already scored)."""
    m = unwrap(model)
    x, y = eval_windows(data, seq_len, None if max_batches is None else batch * max_batches)
    if len(x) == 0:
        return float("nan")
    total, count = 0.0, 0
    with _evaluating(m):
        for i in range(0, len(x), batch):
            out = _run(m, x[i:i + batch], y[i:i + batch] if teach else None)
            yb = y[i:i + batch].to(out.logits.device)
            total += float(F.cross_entropy(out.logits.float().flatten(0, 1), yb.flatten(), reduction="sum"))
            count += yb.numel()
    return total / count


def eval_bpb(model, data, batch: int = 8, seq_len: int = 256, max_batches: int | None = 16) -> float:
    """Bits per byte = mean cross-entropy in nats / ln 2 (bytes are the tokens)."""
    return eval_loss(model, data, batch, seq_len, max_batches) / LN2


# ---------------------------------------------------------------------------
# in-context gain: what each level's in-context learning buys

INERT_BPB = 0.005  # |gain| below this (bits per byte) is reported as ~0: the level's learning does nothing


@dataclass
class GainResult:
    bpb: float                 # validation bpb with every level learning (targets given: CMS learns too)
    gain: dict                 # level (or "inner": all at once) -> bpb frozen - bpb learning
    seq_len: int = 0

    def inert(self) -> list[str]:
        return [k for k, g in self.gain.items() if abs(g) < INERT_BPB]

    def format(self) -> str:
        rows = [f"in-context gain at T={self.seq_len} (bpb with the level frozen minus bpb learning; "
                f"> 0: its in-context learning helps), all learning: {self.bpb:.4f} bpb",
                f"  {'level':<12} {'gain bpb':>9}"]
        for k, g in self.gain.items():
            flag = "  ~0: inert" if abs(g) < INERT_BPB else ("  hurts" if g < 0 else "")
            rows.append(f"  {k:<12} {g:>+9.4f}{flag}")
        return "\n".join(rows)


def in_context_gain(model, data, batch: int = 8, seq_len: int = 256, max_batches: int | None = 16,
                    levels=None) -> GainResult | None:
    """For each level that learns in context (and "inner", all of them at once): validation bpb with
    that level frozen (`nlc.freeze`) minus bpb with every level learning, on the same windows.
    None for a model without such levels (or one that cannot freeze)."""
    m = unwrap(model)
    if not hasattr(m, "schedule"):
        return None
    from nlc.api import freeze
    from nlc.passes.schedule import learning_levels
    from nlc.train.metrics import LN2
    names = list(levels) if levels is not None else learning_levels(m.plan)
    names = [n for n in names if n not in m.frozen]
    if not names:
        return None
    base = eval_loss(m, data, batch, seq_len, max_batches, teach=True) / LN2
    gain = {}
    for n in names + (["inner"] if len(names) > 1 and levels is None else []):
        gain[n] = eval_loss(freeze(m, n), data, batch, seq_len, max_batches, teach=True) / LN2 - base
    return GainResult(base, gain, seq_len)


# ---------------------------------------------------------------------------
# synthetic recall tasks


def task_accuracy(model, tb: TaskBatch) -> float:
    m = unwrap(model)
    with _evaluating(m):
        return accuracy(_run(m, tb.tokens).logits, tb)


def eval_mqar(model, num_pairs: int = 8, num_queries: int | None = None, batch: int = 32,
              n_batches: int = 4, seed: int = 0, seq_len: int | None = None, keys: int = MQAR_KEYS) -> float:
    """MQAR accuracy on the answer positions over seeded batches (sequence length 2 * (pairs + queries),
    or `seq_len` with the queries spread out; `keys` to draw from: `tasks.mqar`)."""
    accs = [task_accuracy(model, mqar(batch, num_pairs, num_queries, seed=seed * 1000 + i, seq_len=seq_len,
                                      key_vocab=keys))
            for i in range(n_batches)]
    return sum(accs) / len(accs)


def train_mqar(model, steps: int = 200, batch: int = 32, num_pairs: int = 8, num_queries: int | None = None,
               lr: float | None = None, warmup: int = TASK["warmup"], clip: float = TASK["clip"], seed: int = 0, log=None,
               seq_len: int | None = None, keys: int = MQAR_KEYS) -> list[float]:
    """Train `model` on MQAR (fresh seeded batches every step, disjoint from `eval_mqar`'s seeds); see
    `train_task`. `seq_len`: Zoology's layout (queries spread over a fixed length, `tasks.mqar`)."""
    return train_task(model, lambda step: mqar(batch, num_pairs, num_queries, seed=10**7 + seed * 10**5 + step,
                                               seq_len=seq_len, key_vocab=keys),
                      steps=steps, lr=lr, warmup=warmup, clip=clip, log=log, what="MQAR")


def train_task(model, make_batch, steps: int, lr: float | None = None, warmup: int = TASK["warmup"], clip: float = TASK["clip"],
               log=None, what: str = "task") -> list[float]:
    """Train `model` on a synthetic task: `make_batch(step)` -> TaskBatch, the loss on the scored (answer)
    positions only, with the model's own outer optimizer (`lr` overrides its peak lr), linear warmup then
    cosine to 0.1x, grad-norm clipping. Returns the per-step losses. In place. A non-finite loss raises
    FloatingPointError (a learning-rate sweep records it as a diverged run)."""
    import math

    from nlc.train.loop import lr_multiplier, make_optimizer
    m = unwrap(model)
    opt = make_optimizer(m, lr)
    params = [p for p in m.parameters() if p.requires_grad]
    losses = []
    m.train()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = g["initial_lr"] * lr_multiplier(step, warmup, steps)
        tb = make_batch(step)
        out = _run(m, tb.tokens)
        mask = tb.mask.to(out.logits.device)
        loss = F.cross_entropy(out.logits[mask].float(), tb.targets.to(mask.device)[mask])
        if not math.isfinite(float(loss.detach())):
            raise FloatingPointError(f"{what} training: loss {float(loss.detach())} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        losses.append(float(loss.detach()))
        if log is not None:
            log(step, losses[-1])
    return losses


@dataclass
class NiahResult:
    lengths: list[int]
    depths: list[float]
    acc: dict = field(default_factory=dict)  # (length, depth) -> digit accuracy
    png: Path | None = None

    def format(self) -> str:
        head = "depth \\ length " + "".join(f"{n:>8}" for n in self.lengths)
        rows = [f"{d:>14.2f} " + "".join(f"{self.acc[(n, d)]:>8.2f}" for n in self.lengths) for d in self.depths]
        mean = sum(self.acc.values()) / max(len(self.acc), 1)
        return "\n".join([f"NIAH passkey accuracy (mean {mean:.3f})", head, *rows])


def eval_niah(model, lengths=(256, 512, 1024), depths=(0.0, 0.25, 0.5, 0.75, 1.0), n_samples: int = 8,
              seed: int = 0, out_png=None, n_digits: int = 5) -> NiahResult:
    """Passkey accuracy (per digit) for each (length, depth); optional heatmap PNG."""
    res = NiahResult(list(lengths), list(depths))
    for n in res.lengths:
        for d in res.depths:
            res.acc[(n, d)] = task_accuracy(model, niah(n_samples, n, d, seed=seed, n_digits=n_digits))
    if out_png is not None:
        res.png = plot_niah(res, out_png)
    return res


def plot_niah(res: NiahResult, out_png) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = [[res.acc[(n, d)] for n in res.lengths] for d in res.depths]
    fig, ax = plt.subplots(figsize=(1.2 * len(res.lengths) + 2, 0.6 * len(res.depths) + 1.5))
    im = ax.imshow(grid, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
    ax.set_xticks(range(len(res.lengths)), [str(n) for n in res.lengths])
    ax.set_yticks(range(len(res.depths)), [f"{d:.2f}" for d in res.depths])
    ax.set_xlabel("context length (bytes)")
    ax.set_ylabel("needle depth")
    for i, row in enumerate(grid):
        for j, v in enumerate(row):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8)
    fig.colorbar(im, ax=ax, label="passkey accuracy")
    ax.set_title("needle in a haystack")
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return Path(out_png)


# ---------------------------------------------------------------------------
# continual learning


@dataclass
class ContinualResult:
    tasks: list[str]
    acc: list[list[float]]  # acc[i][j]: accuracy on task j after training on tasks 0..i
    forgetting: float

    def format(self) -> str:
        w = max(len(t) for t in self.tasks) + 2
        head = "after \\ on".ljust(w + 6) + "".join(t.rjust(w) for t in self.tasks)
        rows = [f"{t:<{w + 6}}" + "".join(f"{a:>{w}.2f}" for a in r) for t, r in zip(self.tasks, self.acc)]
        return "\n".join([head, *rows, f"forgetting (mean best - final): {self.forgetting:.3f}"])


def eval_continual(model, tasks=("copy", "reverse", "shift3", "sort"), steps_per_task: int = 100,
                   batch: int = 16, n: int = 8, seed: int = 0, eval_batch: int = 64,
                   inplace: bool = False) -> ContinualResult:
    """Train on each task in turn with the model's own optimizer; score every task after each one.

    Works on a deep copy unless `inplace`: measuring forgetting should not change the model.
    """
    unknown = [t for t in tasks if t not in CONTINUAL_TASKS]
    if unknown:
        raise ValueError(f"unknown continual tasks {unknown}; choose from {sorted(CONTINUAL_TASKS)}")
    m = unwrap(model) if inplace else copy.deepcopy(unwrap(model))
    make = getattr(m, "optimizer", None)  # NLModel.optimizer(): the spec's outer optimizer level
    opt = make() if callable(make) else torch.optim.AdamW(m.parameters(), lr=FALLBACK_LR)
    held_out = [continual_task(t, eval_batch, n, seed=10**6 + seed) for t in tasks]
    acc = []
    for i, name in enumerate(tasks):
        m.train()
        for s in range(steps_per_task):
            tb = continual_task(name, batch, n, seed=seed * 10**5 + i * 10**4 + s)
            out = _run(m, tb.tokens)
            mask = tb.mask.to(out.logits.device)
            # score only the answer bytes: the inputs are random and cannot be predicted
            loss = F.cross_entropy(out.logits[mask].float(), tb.targets.to(mask.device)[mask])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        acc.append([task_accuracy(m, tb) for tb in held_out])
    return ContinualResult(list(tasks), acc, forgetting(acc))


# ---------------------------------------------------------------------------
# generation


def filter_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None, repetition_penalty: float = 1.0, seen=None) -> torch.Tensor:
    """The logits (..., V) that sampling draws from, in the order transformers applies them:
    repetition penalty on the tokens in `seen` (a positive logit divided by the penalty, a negative
    one multiplied: CTRL's rule), then temperature, then top-k, then top-p (the smallest set of the
    most likely tokens whose probabilities add up to at least top_p; the most likely always stays).
    Removed tokens get -inf. A temperature <= 0 skips the temperature (greedy decoding takes the argmax)."""
    logits = logits.float()
    if repetition_penalty != 1.0 and seen is not None and len(seen):
        idx = torch.as_tensor(sorted(set(int(t) for t in seen)), dtype=torch.long, device=logits.device)
        idx = idx[idx < logits.size(-1)].expand(*logits.shape[:-1], -1)
        got = logits.gather(-1, idx)
        logits = logits.scatter(-1, idx, torch.where(got > 0, got / repetition_penalty, got * repetition_penalty))
    if temperature > 0:
        logits = logits / temperature
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        srt, order = torch.sort(logits, -1, descending=True)
        probs = torch.softmax(srt, -1)
        before = probs.cumsum(-1) - probs  # the mass of the tokens more likely than this one
        drop = before >= top_p
        drop[..., 0] = False
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


def _sample(logits: torch.Tensor, temperature: float, top_k: int | None, gen: torch.Generator,
            top_p: float | None = None, repetition_penalty: float = 1.0, seen=None) -> torch.Tensor:
    logits = filter_logits(logits, temperature, top_k, top_p, repetition_penalty, seen)
    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits, -1)
    return torch.multinomial(probs.cpu(), 1, generator=gen).squeeze(-1).to(logits.device)


def generate(model, prompt_bytes: bytes, max_new: int = 200, temperature: float = 1.0, top_k: int | None = None,
             seed: int = 0, callback=None, return_state: bool = False, top_p: float | None = None,
             repetition_penalty: float = 1.0, stop=None):
    """Feed the prompt, then sample one byte per call, carrying the fast state.

    The carried state is what lets in-context levels keep learning while generating: each
    new byte updates the memories exactly as it would inside one long sequence. Levels taught
    by the task loss (CMS) need each byte's successor as its target. Within a segment, reads do
    not depend on the writes of the bytes before them, so each byte is read by a frozen copy and
    the writes are taken in one call per segment (nlc.train.stepper): the cost per byte does not
    grow with position.
    `callback(byte)` is called per new byte (for streaming output). Returns the new bytes
    (and the final fast state with return_state=True). Sampling: `filter_logits` (temperature,
    top_k, top_p, and a repetition penalty over the prompt and every token generated so far);
    temperature <= 0 is greedy. `stop(new)`, called with the new tokens after each one, ends the
    generation early when it returns True (lm-evaluation-harness's stop strings).
    """
    m = unwrap(model)
    gen = torch.Generator().manual_seed(seed)
    as_ids = isinstance(prompt_bytes, (list, tuple))  # token ids (a tokenizer's), not bytes
    prompt = list(prompt_bytes) if as_ids else (bytes(prompt_bytes) or b"\n")  # an empty prompt needs a token
    dev = _device(m)
    out_bytes = [] if as_ids else bytearray()
    teach = bool(getattr(m, "cms_learns", False))
    with _evaluating(m):
        step = Stepper(m, list(prompt), teach, dev)
        for i in range(max_new):
            nxt = _sample(step.logits, temperature, top_k, gen, top_p, repetition_penalty,
                          seen=(list(prompt) + list(out_bytes)) if repetition_penalty != 1.0 else None)
            b = int(nxt.item())
            out_bytes.append(b)
            if callback is not None:
                callback(b)
            done = stop is not None and bool(stop(out_bytes))
            step.push(b, read=(i + 1 < max_new and not done) or return_state)
            if done:
                break
        state = step.final_state() if return_state else None
    result = list(out_bytes) if as_ids else bytes(out_bytes)
    return (result, state) if return_state else result
