"""Synthetic byte-level tasks for memory models: MQAR, the passkey (NIAH), a keyed needle in real text,
MAD, a continual stream.

Every generator is seeded and returns a `TaskBatch`: `tokens` (B, T) to feed the model,
`targets` (B, T) next-byte targets (targets[:, t] is the byte after tokens[:, t]), and
`mask` (B, T), True where the prediction is scored (the answer positions). Accuracy is
argmax(logits) == targets over the mask.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch

from nlc.train.defaults import MQAR_KEYS  # keys to draw from by default (Zoology's vocabulary is larger)


@dataclass
class TaskBatch:
    tokens: torch.Tensor   # (B, T) long
    targets: torch.Tensor  # (B, T) long
    mask: torch.Tensor     # (B, T) bool, scored positions
    meta: dict = field(default_factory=dict)


def _pack(rows: list[list[int]], scored: list[list[int]], **meta) -> TaskBatch:
    """Rows of equal length -> TaskBatch; `scored[b]` are indices into the row of answer bytes."""
    s = torch.tensor(rows, dtype=torch.long)
    tokens = s
    targets = torch.zeros_like(s)
    targets[:, :-1] = s[:, 1:]
    mask = torch.zeros_like(s, dtype=torch.bool)
    for b, idx in enumerate(scored):
        # the byte at index i is predicted at position i - 1
        mask[b, [i - 1 for i in idx]] = True
    return TaskBatch(tokens, targets, mask, meta)


def accuracy(logits: torch.Tensor, tb: TaskBatch) -> float:
    """Fraction of scored positions where the argmax prediction is the target."""
    pred = logits.argmax(-1)
    m = tb.mask.to(pred.device)
    return float((pred[m] == tb.targets.to(pred.device)[m]).float().mean()) if m.any() else float("nan")


# ---------------------------------------------------------------------------
# MQAR: k1 v1 k2 v2 ... kn vn  q1 a1 q2 a2 ... ; each q is an earlier key, a its value

MQAR_KEY_BASE = 64  # keys are tokens 64..127 by default, values 128..191 (`mqar`: the values follow the keys)
MQAR_VAL_BASE = MQAR_KEY_BASE + MQAR_KEYS
MQAR_VALUES = 64  # values to choose from: chance accuracy is 1 / MQAR_VALUES
NIAH_CHANCE = 0.1  # a passkey digit guessed at random


MQAR_PAD = 0  # the filler between spread-out queries (a byte no key or value uses)


def mqar_vocab(keys: int = MQAR_KEYS) -> int:
    """The tokens MQAR with `keys` keys uses (keys from MQAR_KEY_BASE, then the values after them): a model
    for it needs no more."""
    return MQAR_KEY_BASE + keys + MQAR_VALUES


MQAR_VOCAB = mqar_vocab()


def mqar(batch: int, num_pairs: int = 8, num_queries: int | None = None, seed: int = 0,
         key_vocab: int = MQAR_KEYS, value_vocab: int = MQAR_VALUES, seq_len: int | None = None) -> TaskBatch:
    """Multi-query associative recall (Zoology); scored at the answer (value) of each query.

    Without `seq_len` the queries follow the pairs back to back (2 * (pairs + queries) tokens).
    With it (Zoology's layout), the rows are `seq_len` long: the pairs first, then each query
    pair at a random position of the rest, the gaps filled with MQAR_PAD, so a longer sequence
    means a longer distance between a pair and its query, not more pairs. Keys are tokens
    MQAR_KEY_BASE .. + key_vocab - 1 and the values follow them (`mqar_vocab(key_vocab)` tokens in all);
    the default 64 keys give the layout of MQAR_VAL_BASE and MQAR_VOCAB."""
    num_queries = num_pairs if num_queries is None else num_queries
    if num_pairs > key_vocab:
        raise ValueError(f"num_pairs={num_pairs} exceeds key_vocab={key_vocab}")
    if seq_len is not None and seq_len < 2 * (num_pairs + num_queries):
        raise ValueError(f"seq_len={seq_len} is too short for {num_pairs} pairs and {num_queries} queries "
                         f"(at least {2 * (num_pairs + num_queries)} tokens)")
    val_base = MQAR_KEY_BASE + key_vocab  # MQAR_VAL_BASE at the default keys
    rng = random.Random(seed)
    rows, scored = [], []
    for _ in range(batch):
        keys = rng.sample(range(key_vocab), num_pairs)
        vals = [rng.randrange(value_vocab) for _ in keys]
        row = []
        for k, v in zip(keys, vals):
            row += [MQAR_KEY_BASE + k, val_base + v]
        qs = rng.sample(range(num_pairs), num_queries) if num_queries <= num_pairs else \
            [rng.randrange(num_pairs) for _ in range(num_queries)]
        # the number of filler tokens before each query: a random split of the free space
        free = 0 if seq_len is None else seq_len - len(row) - 2 * num_queries
        cuts = sorted(rng.randrange(free + 1) for _ in qs)
        gaps = [b - a for a, b in zip([0] + cuts, cuts)]
        ans = []
        for q, gap in zip(qs, gaps):
            row += [MQAR_PAD] * gap + [MQAR_KEY_BASE + keys[q], val_base + vals[q]]
            ans.append(len(row) - 1)
        row += [MQAR_PAD] * (free - sum(gaps))
        rows.append(row)
        scored.append(ans)
    return _pack(rows, scored, task="mqar", num_pairs=num_pairs, num_queries=num_queries)


# ---------------------------------------------------------------------------
# NIAH: a passkey hidden at a depth in a haystack; asked for at the end (Landmark-attention format)

FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
NEEDLE = "The pass key is {key}. Remember it. {key} is the pass key. "
QUERY = "What is the pass key? The pass key is "


def niah(batch: int, length: int, depth: float, seed: int = 0, n_digits: int = 5,
         filler: str = FILLER) -> TaskBatch:
    """Single needle: `length` bytes in all, needle at `depth` in [0, 1] of the haystack."""
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth must be in [0, 1], got {depth}")
    rng = random.Random(seed * 1_000_003 + length * 101 + int(depth * 1000))
    rows, scored = [], []
    for _ in range(batch):
        key = "".join(rng.choice("0123456789") for _ in range(n_digits))
        needle, tail = NEEDLE.format(key=key), QUERY + key
        n_hay = length - len(needle) - len(tail)
        if n_hay < 0:
            raise ValueError(f"length {length} is too short for the needle and query "
                             f"({len(needle) + len(tail)} bytes)")
        hay = (filler * (n_hay // len(filler) + 1))[:n_hay]
        # snap the needle to a sentence boundary at or before the requested depth
        at = int(depth * n_hay)
        cut = hay.rfind(". ", 0, at)
        at = cut + 2 if cut >= 0 and at < n_hay else at
        text = hay[:at] + needle + hay[at:] + tail
        rows.append(list(text.encode()))
        scored.append(list(range(length - n_digits, length)))
    return _pack(rows, scored, task="niah", length=length, depth=depth)


def niah_mixed(batch: int, length: int, seed: int = 0, n_digits: int = 5) -> TaskBatch:
    """Training batches for the needle task: each row its own passkey at its own random depth."""
    rng = random.Random(f"niah-train:{seed}:{length}")
    parts = [niah(1, length, rng.random(), seed=rng.randrange(2**31), n_digits=n_digits) for _ in range(batch)]
    return TaskBatch(torch.cat([p.tokens for p in parts]), torch.cat([p.targets for p in parts]),
                     torch.cat([p.mask for p in parts]), dict(task="niah", length=length))


# Single needle in real text (RULER's S-NIAH-2, scaled to bytes): a keyed number hidden in a window of
# text that does not repeat, asked for at the end by its key. Unlike the passkey's filler, the haystack
# cannot be skipped as a pattern, and it holds other numbers and other "is"-sentences.

NEEDLE_WORDS = ("apple", "river", "candle", "garden", "silver", "falcon", "harbor", "meadow", "pepper", "violet",
                "copper", "lantern", "marble", "orchid", "pillow", "rocket", "saddle", "timber", "velvet", "walnut",
                "anchor", "bridge", "cactus", "dragon", "ember", "forest", "glacier", "helmet", "island", "jacket",
                "kettle", "ladder")
NEEDLE_TEXT = "\nThe magic number for {word} is {num}.\n"
NEEDLE_QUERY = "\nThe magic number for {word} is "  # the needle's own words, as the passkey's query
NEEDLE_DIGITS = 7  # RULER's needles are 7-digit numbers


def needle(batch: int, length: int, depth: float, haystack, seed: int = 0,
           n_digits: int = NEEDLE_DIGITS) -> TaskBatch:
    """Single keyed needle in real text: `length` bytes, the needle at `depth` in [0, 1] of a window of
    `haystack` (a 1-D uint8 array of text, e.g. the default corpus's validation split), scored on the
    number's digits after the query. Each row a random key, number and window."""
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth must be in [0, 1], got {depth}")
    rng = random.Random(seed * 1_000_003 + length * 101 + int(depth * 1000))
    rows, scored = [], []
    for _ in range(batch):
        word = rng.choice(NEEDLE_WORDS)
        num = "".join(rng.choice("0123456789") for _ in range(n_digits))
        needle_b = NEEDLE_TEXT.format(word=word, num=num).encode()
        tail = (NEEDLE_QUERY.format(word=word) + num).encode()
        n_hay = length - len(needle_b) - len(tail)
        if n_hay < 0:
            raise ValueError(f"length {length} is too short for the needle and query "
                             f"({len(needle_b) + len(tail)} bytes)")
        if len(haystack) < n_hay:
            raise ValueError(f"the haystack has {len(haystack)} bytes; length {length} needs {n_hay}")
        start = rng.randrange(len(haystack) - n_hay + 1)
        hay = bytes(haystack[start:start + n_hay])
        # snap the needle to a line boundary at or before the requested depth
        at = int(depth * n_hay)
        cut = hay.rfind(b"\n", 0, at)
        at = cut + 1 if cut >= 0 and at < n_hay else at
        rows.append(list(hay[:at] + needle_b + hay[at:] + tail))
        scored.append(list(range(length - n_digits, length)))
    return _pack(rows, scored, task="needle", length=length, depth=depth)


def needle_mixed(batch: int, length: int, haystack, seed: int = 0) -> TaskBatch:
    """Training batches for the single needle: each row its own key, number, window and depth."""
    rng = random.Random(f"needle-train:{seed}:{length}")
    parts = [needle(1, length, rng.random(), haystack, seed=rng.randrange(2**31)) for _ in range(batch)]
    return TaskBatch(torch.cat([p.tokens for p in parts]), torch.cat([p.targets for p in parts]),
                     torch.cat([p.mask for p in parts]), dict(task="needle", length=length))


# ---------------------------------------------------------------------------
# MAD (Poli et al. 2024, "Mechanistic Design and Scaling of Hybrid Architectures"): a subset,
# byte-level. Keys are bytes 64..127, values 128..191 (as MQAR), noise 192..255, blanks 0.

MAD_NOISE_BASE, MAD_BLANK, MAD_COPY = 192, 0, 1  # noise tokens; the copy task's blank and "now copy"
MAD_TASKS = ("recall", "noisy_recall", "selective_copy", "memorize")


def mad(task: str, batch: int, seq_len: int, seed: int = 0, n_keys: int = 8, noise: float = 0.25,
        n_copy: int = 8) -> TaskBatch:
    """One MAD task. `recall`: a stream of key-value pairs over `n_keys` keys, each key keeping its
    value within the row; scored at every value whose key was seen before (in-context recall).
    `noisy_recall`: the same with noise bytes between the pairs (a fraction `noise` of the row), never
    scored. `selective_copy`: `n_copy` values scattered among blanks, then MAD_COPY, then those values
    in order (scored). `memorize`: pairs of a key and its value under one fixed mapping shared by every
    row and seed (learned in the weights, not in context); every value scored."""
    if task not in MAD_TASKS:
        raise ValueError(f"unknown MAD task {task!r}; choose from {', '.join(MAD_TASKS)}")
    rng = random.Random(f"mad:{task}:{seed}")
    fixed = random.Random("mad:memorize").choices(range(MQAR_VALUES), k=64)  # the mapping to memorise
    rows, scored = [], []
    for _ in range(batch):
        row, ans = [], []
        if task == "selective_copy":
            if seq_len < 2 * n_copy + 2:
                raise ValueError(f"seq_len={seq_len} is too short to copy {n_copy} tokens")
            region = seq_len - n_copy - 1
            where = sorted(rng.sample(range(region), n_copy))
            vals = [MQAR_VAL_BASE + rng.randrange(MQAR_VALUES) for _ in where]
            row = [MAD_BLANK] * region
            for i, v in zip(where, vals):
                row[i] = v
            row.append(MAD_COPY)
            ans = list(range(len(row), len(row) + n_copy))
            row += vals
        else:
            keys = rng.sample(range(64), n_keys)
            table = {k: (fixed[k] if task == "memorize" else rng.randrange(MQAR_VALUES)) for k in keys}
            seen = set()
            while len(row) + 2 <= seq_len:
                if task == "noisy_recall" and rng.random() < noise:
                    row.append(MAD_NOISE_BASE + rng.randrange(64))
                    continue
                k = rng.choice(keys)
                row += [MQAR_KEY_BASE + k, MQAR_VAL_BASE + table[k]]
                if k in seen or task == "memorize":
                    ans.append(len(row) - 1)
                seen.add(k)
            row += [MAD_BLANK] * (seq_len - len(row))
        rows.append(row)
        scored.append(ans)
    return _pack(rows, scored, task=task)


# ---------------------------------------------------------------------------
# continual stream: string transformations learned one after another
#   row = MARKER input '=' output ; the marker (one byte per task) says which task it is,
#   so a model that does not forget can solve all of them at once.

_ALPHA = "abcdefghijklmnopqrstuvwxyz"


def _permute(s: str) -> str:
    table = list(_ALPHA)
    random.Random(1234).shuffle(table)
    return "".join(table[ord(c) - 97] for c in s)


CONTINUAL_TASKS = {
    "copy": lambda s: s,
    "reverse": lambda s: s[::-1],
    "shift3": lambda s: "".join(_ALPHA[(ord(c) - 97 + 3) % 26] for c in s),
    "sort": lambda s: "".join(sorted(s)),
    "swap": lambda s: "".join(s[i + 1] + s[i] for i in range(0, len(s) - 1, 2)) + (s[-1] if len(s) % 2 else ""),
    "permute": _permute,
}


def continual_task(name: str, batch: int, n: int = 8, seed: int = 0) -> TaskBatch:
    """One task of the stream: `MARKER + x + '=' + f(x)`, x random lowercase of length n."""
    if name not in CONTINUAL_TASKS:
        raise ValueError(f"unknown continual task {name!r}; choose from {sorted(CONTINUAL_TASKS)}")
    fn, marker = CONTINUAL_TASKS[name], chr(ord("A") + list(CONTINUAL_TASKS).index(name))
    rng = random.Random(f"{name}:{seed}")  # str seeds hash with sha512: stable across processes
    rows, scored = [], []
    for _ in range(batch):
        x = "".join(rng.choice(_ALPHA) for _ in range(n))
        row = list((marker + x + "=" + fn(x)).encode())
        rows.append(row)
        scored.append(list(range(n + 2, 2 * n + 2)))
    return _pack(rows, scored, task=name)


def forgetting(acc: list[list[float]]) -> float:
    """acc[i][j] = accuracy on task j after training task i. Mean over earlier tasks of best - final."""
    n = len(acc)
    if n < 2:
        return 0.0
    drops = [max(acc[i][j] for i in range(j, n)) - acc[n - 1][j] for j in range(n - 1)]
    return sum(drops) / len(drops)
