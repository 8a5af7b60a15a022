"""Byte-level data (vocab 256): the default corpus, user text, deterministic batches.

The default corpus is the Python standard library's own `.py` source on this machine
(found through `sysconfig`): real text, ~12 MB, present everywhere, no download. Files
are split into train/validation by a hash of their relative path, so the split is the
same on every machine with the same Python version.

Batches are a pure function of (seed, step): a resumed run, or each DDP rank, draws
exactly the batch an uninterrupted single-process run would have drawn at that step.
"""
from __future__ import annotations

import hashlib
import os
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nlc.train.errors import DataError

VAL_EVERY = 20  # ~5% of files go to validation
DEFAULT_MAX_BYTES = 16 * 2**20
# test suites are large, repetitive and full of odd encodings; site-packages is not stdlib
_SKIP_DIRS = {"site-packages", "dist-packages", "__pycache__", "test", "tests", "idle_test"}
_SEP = b"\n\n"


@dataclass
class Corpus:
    """Train/val byte arrays (uint8) and where they came from."""

    train: np.ndarray
    val: np.ndarray
    source: str
    n_train_files: int = 1
    n_val_files: int = 0
    n_skipped: int = 0

    def describe(self) -> str:
        mb = lambda a: f"{len(a) / 2**20:.1f} MB"  # noqa: E731
        s = (f"{self.source}: {mb(self.train)} train ({self.n_train_files} files), "
             f"{mb(self.val)} val ({self.n_val_files} files)")
        return s + (f", {self.n_skipped} non-text files skipped" if self.n_skipped else "")


def _path_hash(rel: str) -> int:
    return int(hashlib.sha1(rel.encode()).hexdigest()[:12], 16)


def _is_val(rel: str) -> bool:
    return _path_hash(rel) % VAL_EVERY == 0


def _cache_dir() -> Path:
    d = os.environ.get("NLC_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "nlc")
    try:
        os.makedirs(d, exist_ok=True)
        return Path(d)
    except OSError:  # read-only home: fall back to tmp, still keyed by version
        return Path(tempfile.gettempdir())


# ---------------------------------------------------------------------------
# the default corpus


def _stdlib_files(root: str) -> list[str]:
    """Relative paths of the stdlib's `.py` files, test suites and site-packages skipped."""
    out = []
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if x not in _SKIP_DIRS and not x.startswith("."))
        out += [os.path.relpath(os.path.join(d, f), root) for f in sorted(files) if f.endswith(".py")]
    return out


def _build_stdlib(root: str, max_bytes: int) -> Corpus:
    # hash order spreads a capped selection over the whole stdlib instead of a-z
    rels = sorted(_stdlib_files(root), key=_path_hash)
    train, val, total, skipped = [], [], 0, 0
    for rel in rels:
        if total >= max_bytes:
            break
        try:
            b = Path(root, rel).read_bytes()
            b.decode("utf-8")
        except (OSError, UnicodeDecodeError):
            skipped += 1
            continue
        if not b or b"\0" in b:
            continue
        (val if _is_val(rel) else train).append(b)
        total += len(b)
    arr = lambda parts: np.frombuffer(_SEP.join(parts), dtype=np.uint8).copy()  # noqa: E731
    return Corpus(arr(train), arr(val), f"stdlib corpus ({root})", len(train), len(val), skipped)


def default_corpus(max_bytes: int = DEFAULT_MAX_BYTES, verbose: bool = False) -> Corpus:
    """The stdlib corpus, cached in ~/.cache/nlc (or $NLC_CACHE_DIR) per Python version."""
    root = sysconfig.get_paths()["stdlib"]
    v = ".".join(map(str, sys.version_info[:3]))
    key = hashlib.sha1(f"{root}|{max_bytes}|{VAL_EVERY}".encode()).hexdigest()[:10]
    path = _cache_dir() / f"stdlib-py{v}-{key}.npz"
    if path.exists():
        try:
            z = np.load(path)
            meta = [int(x) for x in z["meta"]]
            c = Corpus(z["train"], z["val"], f"stdlib corpus ({root})", *meta)
            if verbose:
                print(f"loaded {c.describe()} from cache {path}")
            return c
        except Exception:  # a corrupt cache is rebuilt, never fatal
            pass
    c = _build_stdlib(root, max_bytes)
    if len(c.train) == 0 or len(c.val) == 0:
        raise DataError(f"found no usable Python source under {root}",
                        hint="pass your own text with --data PATH")
    try:  # atomic: a concurrent reader never sees half a cache file
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, train=c.train, val=c.val, meta=np.array([c.n_train_files, c.n_val_files, c.n_skipped]))
        os.replace(tmp, path)
    except OSError:
        pass  # caching is an optimisation only
    if verbose:
        print(f"loaded {c.describe()}")
    return c


# ---------------------------------------------------------------------------
# user data


def _read(path: Path) -> bytes:
    return path.read_bytes()


def _read_text(path: Path) -> bytes:
    """Bytes of one text file, or DataError saying why it is not usable."""
    try:
        b = _read(path)
    except PermissionError:
        raise DataError(f"cannot read {path}: permission denied",
                        hint="check the file's permissions (chmod +r)", file=str(path)) from None
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}", file=str(path)) from None
    if not b:
        raise DataError(f"{path} is empty", hint="training needs text; pass a non-empty file", file=str(path))
    if b"\0" in b[:1 << 20]:
        raise DataError(f"{path} looks binary (it contains NUL bytes)",
                        hint="--data takes UTF-8 text files or a folder of them", file=str(path))
    try:
        b.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text (undecodable byte at offset {e.start})",
                        hint="convert it, e.g. iconv -t utf-8, or pass a text file", file=str(path)) from None
    return b


def load_data(path: str | os.PathLike, max_bytes: int | None = None) -> Corpus:
    """A text file or a folder of text files (recursive; binary/unreadable files skipped).

    A folder is split train/val by file like the default corpus; a single file (or a
    folder whose hash split leaves one side empty) keeps its last 5% of bytes for val.
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"data path {p} does not exist", hint="pass a text file or a folder of text files",
                        file=str(p))
    if p.is_file():
        b = _read_text(p)[:max_bytes]
        return _split_tail(b, f"{p}", 1, 0)
    train, val, skipped, reasons = [], [], 0, []
    files = sorted(f for f in p.rglob("*") if f.is_file() and not any(s.startswith(".") for s in f.relative_to(p).parts))
    total = 0
    for f in files:
        try:
            b = _read_text(f)
        except DataError as e:
            skipped += 1
            reasons.append(e.message)
            continue
        rel = f.relative_to(p).as_posix()
        (val if _is_val(rel) else train).append(b)
        total += len(b)
        if max_bytes and total >= max_bytes:
            break
    if not train and not val:
        why = f" ({skipped} skipped, e.g. {reasons[0]})" if reasons else ""
        raise DataError(f"folder {p} has no usable text files{why}",
                        hint="--data takes UTF-8 text files or a folder of them", file=str(p))
    if not train or not val:  # too few files for a file split: split bytes instead
        return _split_tail(_SEP.join(train + val), f"{p}", len(train) + len(val), skipped)
    arr = lambda parts: np.frombuffer(_SEP.join(parts), dtype=np.uint8).copy()  # noqa: E731
    return Corpus(arr(train), arr(val), str(p), len(train), len(val), skipped)


def _split_tail(b: bytes, source: str, n_files: int, skipped: int) -> Corpus:
    a = np.frombuffer(b, dtype=np.uint8).copy()
    cut = len(a) - max(len(a) // VAL_EVERY, 0)
    return Corpus(a[:cut], a[cut:], source, n_files, 0, skipped)


# ---------------------------------------------------------------------------
# batches


def as_array(data) -> np.ndarray:
    """uint8 numpy view of bytes / a numpy array / a torch tensor / a Corpus (its train split)."""
    if isinstance(data, Corpus):
        data = data.train
    if isinstance(data, (bytes, bytearray)):
        return np.frombuffer(bytes(data), dtype=np.uint8)
    if hasattr(data, "numpy"):  # torch tensor
        data = data.cpu().numpy()
    return np.asarray(data)


def check_length(data, seq_len: int, what: str = "training data") -> None:
    n = len(as_array(data))
    if n < seq_len + 1:
        raise DataError(f"{what} has {n} bytes; one sequence needs seq_len + 1 = {seq_len + 1}",
                        hint="give more text or lower --seq-len")


def get_batch(data, batch: int, seq_len: int, seed: int, step: int, device="cpu"):
    """(x, y) LongTensors (batch, seq_len): random windows; y is x shifted by one byte."""
    import torch

    a = as_array(data)
    # a counter-based stream: the batch depends only on (seed, step), never on history
    rng = np.random.default_rng([seed, step])
    ix = rng.integers(0, len(a) - seq_len, size=batch)
    buf = torch.from_numpy(np.stack([a[i:i + seq_len + 1] for i in ix]).astype(np.int64))
    x, y = buf[:, :-1], buf[:, 1:]
    if str(device) != "cpu":
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    return x, y


def batches(data, batch: int, seq_len: int, seed: int = 0, start_step: int = 0, device="cpu"):
    """Endless batches from `start_step` on; batch k is `get_batch(..., step=k)`."""
    check_length(data, seq_len)
    step = start_step
    while True:
        yield get_batch(data, batch, seq_len, seed, step, device)
        step += 1


def eval_windows(data, seq_len: int, max_windows: int | None = None):
    """Non-overlapping (x, y) windows of `data`, evenly spread when capped: deterministic validation."""
    import torch

    a = as_array(data)
    n = (len(a) - 1) // seq_len
    idx = np.arange(n)
    if max_windows is not None and n > max_windows:
        idx = np.linspace(0, n - 1, max_windows).astype(np.int64)
    buf = np.stack([a[i * seq_len: i * seq_len + seq_len + 1] for i in idx]) if len(idx) else np.zeros((0, seq_len + 1))
    t = torch.from_numpy(buf.astype(np.int64))
    return t[:, :-1], t[:, 1:]
