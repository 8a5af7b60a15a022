"""Tasks a model is trained on and then scored on, one call each: the cells of `nlc sweep`.

`TASKS[name].run(model, opts, seed)` trains the freshly compiled `model` in place and returns
its metrics (a flat dict of floats). `opts` holds every key of `TASKS[name].options` (the
defaults below, replaced by `--grid`/`--opt` values); any other sweep key is a spec parameter.

- `mqar`: multi-query associative recall in Zoology's layout (pairs first, the queries spread
  over `seq_len` tokens, `tasks.mqar`), trained on the task; accuracy on held-out sequences at
  the training length (`acc`), at 2x and 4x the length with the same pairs (`acc@L`), and with
  twice the pairs at twice the length (`acc_2xpairs`). Chance is 1/64.
- `mqar_mix`: MQAR under Zoology's protocol: trained on a mix of (length, pairs) configurations
  (`train_mix`), scored on each of `eval_mix` (`acc@LENxPAIRS`, some with more pairs or longer rows
  than trained); `acc` is their mean. Chance is 1/64. For both MQAR tasks `keys` (default 64) is how many
  keys the rows draw from: no row has more pairs than that, and the model's vocab follows it.
- `niah`: passkey retrieval, trained at `train_len` with the needle at a random depth; per-digit
  accuracy at each of `eval_lens` (`acc@L`), over `eval_depths`. Chance is 0.1.
- `needle`: the same protocol with a single keyed needle in real text (RULER's S-NIAH-2 at byte
  level, `tasks.needle`): "The magic number for WORD is NNNNNNN." in a window of the default corpus
  (training split to train, validation split to score), asked for at the end by WORD. Chance is 0.1.
- `lm`: next-byte prediction on the default corpus (Python's stdlib source) with `nlc train`'s
  loop; validation bits per byte at the training length (`bpb`) and at 4x it (`bpb_4x`), the
  trainer's wall time (`train_s`) and tokens per second (`tok_s`); for a model whose CMS stages
  learn from the task loss, also with the targets given so that they learn in context (`bpb_teach`,
  `bpb_4x_teach`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from nlc.train.defaults import MQAR_KEYS, TASK

# no torch at import: `nlc --help` and `nlc check` build the sweep's parser from TASKS

# the training options every task reads
TRAIN_OPTIONS = {k: TASK[k] for k in ("lr", "steps", "batch", "warmup")}  # nlc/train/defaults.py


@dataclass(frozen=True)
class Task:
    name: str
    run: Callable[[object, dict, int], dict]
    options: dict                      # option -> default (None: the spec's own, for lr)
    metric: str                        # the headline metric: tables, best-of and plots use it
    higher_is_better: bool = True
    chance_of: Callable[[], float] | None = None        # chance level of the headline metric
    overrides_of: Callable[[dict], dict] | None = None  # spec parameters the task's options imply (unless set)
    about: str = ""

    @property
    def chance(self) -> float | None:
        return self.chance_of() if self.chance_of else None

    def overrides(self, opts: dict | None = None) -> dict:
        """The spec parameters a cell with task options `opts` (default: the task's defaults) implies."""
        return self.overrides_of({**self.options, **(opts or {})}) if self.overrides_of else {}


def _parse_lens(v) -> list[int]:
    """`eval_lens` as given on the command line: 256 or "256/512/1024" ("," separates grid values)."""
    if isinstance(v, int):
        return [v]
    try:
        return [int(x) for x in str(v).split("/") if x]
    except ValueError:
        raise ValueError(f"eval_lens={v!r}: expected lengths separated by '/', e.g. 256/512/1024") from None


# ---------------------------------------------------------------------------
# MQAR

def _mqar_chance() -> float:
    from nlc.train.tasks import MQAR_VALUES
    return 1 / MQAR_VALUES


def _mqar_overrides(o: dict) -> dict:
    from nlc.train.tasks import mqar_vocab
    return {"vocab": mqar_vocab(int(o["keys"]))}  # the embedding and output layer cover the task's tokens, no more


def _byte_vocab(o: dict) -> dict:
    return {"vocab": 256}  # MAD's noise bytes reach 255


def _niah_chance() -> float:
    from nlc.train.tasks import NIAH_CHANCE
    return NIAH_CHANCE


def run_mqar(model, o: dict, seed: int) -> dict:
    from nlc.train.evaluate import eval_mqar, train_mqar
    pairs, T, keys = int(o["pairs"]), int(o["seq_len"]), int(o["keys"])
    losses = train_mqar(model, steps=int(o["steps"]), batch=int(o["batch"]), num_pairs=pairs, lr=o["lr"],
                        warmup=int(o["warmup"]), seed=seed, seq_len=T, keys=keys)
    ev = dict(batch=32, n_batches=int(o["eval_batches"]), seed=10**4 + seed, keys=keys)  # disjoint from training's seeds
    out = {"loss": sum(losses[-10:]) / len(losses[-10:]), "acc": eval_mqar(model, pairs, seq_len=T, **ev)}
    out[f"acc@{T}"] = out["acc"]  # the trained length, as the first point of the by-length plot
    for k in (2, 4):
        out[f"acc@{k * T}"] = eval_mqar(model, pairs, seq_len=k * T, **ev)
    if 2 * pairs <= keys:  # more pairs than keys cannot be drawn
        out["acc_2xpairs"] = eval_mqar(model, 2 * pairs, seq_len=2 * T, **ev)
    return out


# ---------------------------------------------------------------------------
# needle in a haystack: the passkey in repeated filler (`niah`), a keyed number in real text (`needle`)

def niah_accuracy(model, length: int, depths, n_samples: int, seed: int, rows: int = 2, make=None) -> float:
    """Per-digit accuracy at `length` on `make(n, length, depth, seed=)` batches (default: the passkey),
    the samples run `rows` at a time (attention at 4k bytes holds a T x T score matrix per head: small
    batches keep it in memory)."""
    from nlc.train.evaluate import _evaluating, _run
    from nlc.train.tasks import niah
    make = make or niah
    hits = total = 0
    for d in depths:
        tb = make(n_samples, length, d, seed=seed)
        with _evaluating(model):
            for i in range(0, n_samples, rows):
                pred = _run(model, tb.tokens[i:i + rows]).logits.argmax(-1).cpu()
                m = tb.mask[i:i + rows]
                hits += int((pred[m] == tb.targets[i:i + rows][m]).sum())
                total += int(m.sum())
    return hits / total


def _run_haystack(model, o: dict, seed: int, train_batch, make, what: str) -> dict:
    """Train on `train_batch(batch, T, seed=)` at `train_len`, score `make` at each of `eval_lens`."""
    from nlc.train.evaluate import train_task
    T = int(o["train_len"])
    losses = train_task(model, lambda step: train_batch(int(o["batch"]), T, seed=seed * 10**6 + step),
                        steps=int(o["steps"]), lr=o["lr"], warmup=int(o["warmup"]), what=what)
    depths = [float(x) for x in str(o["eval_depths"]).split("/")]
    out = {"loss": sum(losses[-10:]) / len(losses[-10:])}

    def acc(L):
        return niah_accuracy(model, L, depths, int(o["eval_samples"]), seed=10**4 + seed, make=make)
    for L in _parse_lens(o["eval_lens"]):
        out[f"acc@{L}"] = acc(L)
    out["acc"] = out.get(f"acc@{T}", acc(T))
    return out


def run_niah(model, o: dict, seed: int) -> dict:
    from nlc.train.tasks import niah, niah_mixed
    return _run_haystack(model, o, seed, niah_mixed, niah, "NIAH")


def run_needle(model, o: dict, seed: int) -> dict:
    # haystacks: windows of the default corpus, its training split for training and its validation split
    # for scoring, so no scored haystack was seen in training
    from nlc.train.data import default_corpus
    from nlc.train.tasks import needle, needle_mixed
    corpus = default_corpus(verbose=False)
    return _run_haystack(model, o, seed, lambda b, T, seed: needle_mixed(b, T, corpus.train, seed=seed),
                         lambda n, L, d, seed: needle(n, L, d, corpus.val, seed=seed), "needle")


# ---------------------------------------------------------------------------
# MQAR under Zoology's mix

def parse_mix(v, keys: int = MQAR_KEYS) -> list[tuple[int, int, int]]:
    """`train_mix` / `eval_mix` as given on the command line: MQAR configurations `LENxPAIRS` (or
    `LENxPAIRS*WEIGHT`, the number of training steps it gets per cycle) separated by '/', e.g.
    "64x4*5/128x8/256x16" -> [(64, 4, 5), (128, 8, 1), (256, 16, 1)]; at most `keys` pairs each."""
    out = []
    for part in str(v).split("/"):
        try:
            lp, _, w = part.partition("*")
            L, P = (int(x) for x in lp.split("x"))
            out.append((L, P, int(w) if w else 1))
        except ValueError:
            raise ValueError(f"mix {v!r}: expected LENxPAIRS[*WEIGHT] separated by '/', e.g. 64x4*5/256x16") from None
        if out[-1][2] < 1 or L < 4 * P:
            raise ValueError(f"mix {v!r}: {part!r} needs a weight >= 1 and LEN >= 4 x PAIRS (the pairs and their queries)")
        if P > keys:  # tasks.mqar draws each row's keys without repeats
            raise ValueError(f"mix {v!r}: {part!r}: MQAR draws keys from {keys} tokens: at most {keys} pairs per "
                             f"configuration (the task option `keys` widens it)")
    if not out:
        raise ValueError(f"mix {v!r} is empty")
    return out


def mix_schedule(mix: list[tuple[int, int, int]]) -> list[tuple[int, int]]:
    """One cycle of training steps: each (len, pairs) `weight` times, interleaved (64x4*2/256x16 ->
    64x4, 256x16, 64x4), so that every configuration is seen throughout training, not in blocks."""
    left = {(L, P): w for L, P, w in mix}
    cycle = []
    while any(left.values()):
        for c in left:
            if left[c]:
                cycle.append(c)
                left[c] -= 1
    return cycle


def run_mqar_mix(model, o: dict, seed: int) -> dict:
    """Zoology's protocol: trained on a mix of lengths and pair counts (a cycle of configurations, one
    per step, fresh sequences each), scored on every configuration of `eval_mix` (`acc@LENxPAIRS`);
    `acc` is their mean, as Zoology reports."""
    from nlc.train.evaluate import eval_mqar, train_task
    from nlc.train.tasks import mqar
    keys = int(o["keys"])
    cycle = mix_schedule(parse_mix(o["train_mix"], keys))
    evals = [(L, P) for L, P, _ in parse_mix(o["eval_mix"], keys)]

    def batch(step):
        L, P = cycle[step % len(cycle)]
        return mqar(int(o["batch"]), P, seed=10**7 + seed * 10**5 + step, seq_len=L, key_vocab=keys)
    losses = train_task(model, batch, steps=int(o["steps"]), lr=o["lr"], warmup=int(o["warmup"]), what="MQAR mix")
    ev = dict(batch=32, n_batches=int(o["eval_batches"]), seed=10**4 + seed, keys=keys)  # disjoint from training's seeds
    out = {"loss": sum(losses[-10:]) / len(losses[-10:])}
    for L, P in evals:
        out[f"acc@{L}x{P}"] = eval_mqar(model, P, seq_len=L, **ev)
    out["acc"] = sum(out[f"acc@{L}x{P}"] for L, P in evals) / len(evals)
    return out


# Zoology's MQAR mix (its train and test configurations with at most 64 pairs, the default `keys`; Zoology's
# test set goes on to 512x128 and 1024x256, which `--set keys=256 --set eval_mix=...` scores)
MQAR_TRAIN_MIX = "64x4*5/128x8/256x16/256x32/256x64"
MQAR_EVAL_MIX = "64x4/64x8/64x16/128x32/256x64/512x64"


# ---------------------------------------------------------------------------
# MAD subset: trained at seq_len, scored on held-out rows at seq_len (`acc`) and 2x it (`acc@2T`)

def _mad_runner(name: str):
    def run(model, o: dict, seed: int) -> dict:
        from nlc.train.evaluate import task_accuracy, train_task
        from nlc.train.tasks import mad
        T = int(o["seq_len"])
        kw = dict(n_keys=int(o["n_keys"]), n_copy=int(o["n_copy"]), noise=float(o["noise"]))
        losses = train_task(model, lambda step: mad(name, int(o["batch"]), T, seed=seed * 10**6 + step, **kw),
                            steps=int(o["steps"]), lr=o["lr"], warmup=int(o["warmup"]), what=name)
        out = {"loss": sum(losses[-10:]) / len(losses[-10:])}
        for L in (T, 2 * T):
            accs = [task_accuracy(model, mad(name, 32, L, seed=-(10**4 + seed * 100 + i), **kw))
                    for i in range(int(o["eval_batches"]))]
            out[f"acc@{L}"] = sum(accs) / len(accs)
        out["acc"] = out[f"acc@{T}"]
        return out
    return run


MAD_OPTIONS = dict(TRAIN_OPTIONS, seq_len=64, n_keys=8, n_copy=8, noise=0.25, eval_batches=2)
MAD_ABOUT = {"recall": "MAD in-context recall", "noisy_recall": "MAD noisy in-context recall",
             "selective_copy": "MAD selective copying", "memorize": "MAD memorisation (a fixed key-value map)"}


# ---------------------------------------------------------------------------
# language modelling

def run_lm(model, o: dict, seed: int) -> dict:
    from nlc.train.data import default_corpus
    from nlc.train.evaluate import eval_bpb
    from nlc.train.loop import train
    T = int(o["seq_len"])
    from nlc.train.errors import DivergedError
    corpus = default_corpus(verbose=False)
    try:
        rep = train(model, corpus, steps=int(o["steps"]), batch=int(o["batch"]), seq_len=T, lr=o["lr"],
                    warmup=int(o["warmup"]), seed=seed, out_dir=o["_run_dir"], eval_every=0, save_every=0,
                    progress=False, plot=False)
    except DivergedError as e:  # the sweep records a NaN as a diverged run, as for the other tasks
        raise FloatingPointError(f"LM training: {e.message}") from e
    if rep.train_loss is None or not math.isfinite(rep.train_loss):
        raise FloatingPointError(f"LM training: loss {rep.train_loss}")
    nb = int(o["eval_batches"])
    # train_s / tok_s: nlc train's own report (the loop with its end-of-run validation and checkpoint; not the
    # compile, not the scoring below); the wall time of every 10th step is in _run_dir/metrics.jsonl ("time")
    out = {"loss": rep.train_loss, "bpb": eval_bpb(model, corpus.val, seq_len=T, max_batches=nb),
           "bpb_4x": eval_bpb(model, corpus.val, seq_len=4 * T, max_batches=nb),
           "train_s": float(rep.wall_s), "tok_s": float(rep.tokens_per_s)}
    if getattr(model, "cms_learns", False):
        # CMS stages learn in context only from the targets (docs/specs.md): bpb above scores them frozen at
        # their trained initial weights; these score them learning as in training (each chunk's update uses
        # only bytes already scored)
        from nlc.train.evaluate import eval_loss
        for key, L in (("bpb_teach", T), ("bpb_4x_teach", 4 * T)):
            out[key] = eval_loss(model, corpus.val, seq_len=L, max_batches=nb, teach=True) / math.log(2)
    return out


NIAH_OPTIONS = dict(TRAIN_OPTIONS, batch=8, train_len=256, eval_lens="256/512/1024/2048/4096",
                    eval_depths="0.1/0.5/0.9", eval_samples=4)

TASKS = {t.name: t for t in (
    Task("mqar", run_mqar, dict(TRAIN_OPTIONS, pairs=4, seq_len=64, keys=MQAR_KEYS, eval_batches=4), "acc",
         chance_of=_mqar_chance, overrides_of=_mqar_overrides,
         about="multi-query associative recall (Zoology layout), trained on the task"),
    Task("mqar_mix", run_mqar_mix, dict(TRAIN_OPTIONS, train_mix=MQAR_TRAIN_MIX, eval_mix=MQAR_EVAL_MIX,
                                        keys=MQAR_KEYS, eval_batches=4), "acc",
         chance_of=_mqar_chance, overrides_of=_mqar_overrides,
         about="MQAR trained on Zoology's mix of lengths and pair counts, scored on each of eval_mix"),
    Task("niah", run_niah, NIAH_OPTIONS, "acc",
         chance_of=_niah_chance, about="passkey retrieval, trained at train_len, scored at eval_lens"),
    Task("needle", run_needle, NIAH_OPTIONS, "acc", chance_of=_niah_chance, overrides_of=_byte_vocab,
         about="a keyed 7-digit number in real text (RULER's S-NIAH-2), trained at train_len, scored at eval_lens"),
    *(Task(f"mad_{n}", _mad_runner(n), MAD_OPTIONS, "acc", chance_of=_mqar_chance, overrides_of=_byte_vocab,
           about=a) for n, a in MAD_ABOUT.items()),
    Task("lm", run_lm, dict(TRAIN_OPTIONS, batch=8, seq_len=128, eval_batches=8), "bpb", higher_is_better=False,
         about="next-byte prediction on the default corpus, validation bits per byte"),
)}


def param_count(model) -> int:
    return sum(p.numel() for p in model.parameters())
