"""Optional inputs: Hugging Face `datasets` as training text, and tiktoken tokenizers.

    nlc train SPEC --data hf:NAME[:CONFIG][@SPLIT]    a hub dataset (where `datasets` is installed)
    nlc train SPEC --data hf:/path/saved_dataset        a dataset saved with save_to_disk
    nlc train SPEC --tokenizer tiktoken:gpt2            a tiktoken encoding by name (downloads its BPE)
    nlc train SPEC --tokenizer tiktoken:/path/f.tiktoken a local BPE ranks file (works offline)

Bytes stay the default (vocab 256). With a tokenizer the model's vocab is the tokenizer's,
and bits per byte are bits per token times tokens per byte, so runs stay comparable.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nlc.train.data import Corpus
from nlc.train.errors import DataError

# the GPT-2 split pattern (tiktoken's r50k_base), for local BPE files
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


# ---- Hugging Face datasets ---------------------------------------------------------
def load_hf(spec: str, max_bytes: int | None = None) -> Corpus:
    """`hf:NAME[:CONFIG][@SPLIT]` or `hf:PATH` -> a byte Corpus of its text column (records
    split train/val deterministically by a hash of their index, ~5% val)."""
    try:
        import datasets
    except ImportError:
        raise DataError(f"--data {spec} needs the Hugging Face datasets package",
                        hint="pip install datasets (or pass a text file or folder)") from None
    ref = spec[len("hf:"):]
    if not ref:
        raise DataError("--data hf: needs a dataset name or a saved dataset path", hint="e.g. --data hf:wikitext:wikitext-2-raw-v1@train")
    try:
        if Path(ref).exists():
            ds = datasets.load_from_disk(ref)
        else:
            name, _, split = ref.partition("@")
            name, _, config = name.partition(":")
            ds = datasets.load_dataset(name, config or None, split=split or "train")
    except Exception as e:  # noqa: BLE001 - network, unknown name, bad split: all the user's to fix
        raise DataError(f"cannot load {spec}: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
                        hint="check the name/config/split; hub datasets need network access") from None
    if hasattr(ds, "keys") and not hasattr(ds, "column_names"):  # a DatasetDict: take its train split
        ds = ds["train"] if "train" in ds else ds[next(iter(ds.keys()))]
    cols = list(getattr(ds, "column_names", []))
    col = "text" if "text" in cols else next((c for c in cols if isinstance(ds[0][c], str)), None)
    if col is None:
        raise DataError(f"{spec} has no text column (columns: {', '.join(cols) or 'none'})")
    train, val, total = [], [], 0
    for i, rec in enumerate(ds):
        b = (rec[col] or "").encode("utf-8")
        if not b:
            continue
        (val if hashlib.sha1(str(i).encode()).digest()[0] < 13 else train).append(b)
        total += len(b)
        if max_bytes and total >= max_bytes:
            break
    if not train:
        raise DataError(f"{spec}: no text in column '{col}'")
    arr = lambda parts: np.frombuffer(b"\n".join(parts), dtype=np.uint8).copy()  # noqa: E731
    return Corpus(arr(train), arr(val) if val else arr(train[-1:]), spec, len(train), len(val))


# ---- tokenizers ----------------------------------------------------------------------
@dataclass
class Tokenizer:
    name: str
    n_vocab: int
    enc: object = None  # a tiktoken.Encoding; None means bytes
    file: str | None = None  # the local BPE file it was read from (a run directory keeps a copy)

    def encode(self, data: bytes) -> np.ndarray:
        if self.enc is None:
            return np.frombuffer(data, dtype=np.uint8).astype(np.int64)
        text = data.decode("utf-8", errors="replace")
        return np.asarray(self.enc.encode_ordinary(text), dtype=np.int32)

    def decode(self, ids) -> bytes:
        ids = [int(i) for i in ids]
        return bytes(ids) if self.enc is None else self.enc.decode_bytes(ids)


BYTES = Tokenizer("bytes", 256)


def _tiktoken(spec: str):
    try:
        import tiktoken
        from tiktoken.load import load_tiktoken_bpe
    except ImportError:
        raise DataError(f"--tokenizer {spec} needs tiktoken", hint="pip install tiktoken") from None
    return tiktoken, load_tiktoken_bpe


def _load_error(spec: str, e: Exception) -> DataError:
    return DataError(f"cannot load tokenizer {spec}: {str(e).splitlines()[0][:200] if str(e) else type(e).__name__}",
                     hint="tiktoken encodings download their BPE file; offline, pass a local .tiktoken file")


def _from_file(spec: str, path: Path) -> Tokenizer:
    tiktoken, load_tiktoken_bpe = _tiktoken(spec)
    try:
        ranks = load_tiktoken_bpe(str(path.resolve()))
        enc = tiktoken.Encoding(name=path.stem, pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={})
    except Exception as e:  # noqa: BLE001 - a bad file
        raise _load_error(spec, e) from None
    return Tokenizer(spec, enc.n_vocab, enc, str(path))


def _from_name(spec: str, name: str) -> Tokenizer:
    tiktoken, _ = _tiktoken(spec)
    try:
        enc = tiktoken.get_encoding(name)
    except Exception as e:  # noqa: BLE001 - a download failure or an unknown name
        raise _load_error(spec, e) from None
    return Tokenizer(spec, enc.n_vocab, enc)


def _split(spec: str) -> str:
    kind, _, ref = spec.partition(":")
    if kind != "tiktoken" or not ref:
        raise DataError(f"unknown tokenizer '{spec}'", hint="bytes (default), tiktoken:NAME or tiktoken:/path/file.tiktoken")
    return ref


def get_tokenizer(spec: str | None) -> Tokenizer:
    """`bytes`, `tiktoken:NAME` or `tiktoken:FILE` (a local BPE ranks file), as --tokenizer takes it."""
    if not spec or spec == "bytes":
        return BYTES
    ref = _split(spec)
    return _from_file(spec, Path(ref)) if Path(ref).is_file() else _from_name(spec, ref)


def is_encoding_name(ref: str) -> bool:
    """A tiktoken encoding name (gpt2, cl100k_base, o200k_base), not a path."""
    return bool(ref) and ref[0].isalnum() and all(c.isalnum() or c in "_.-" for c in ref) and ".." not in ref


def run_tokenizer(run) -> Tokenizer:
    """The tokenizer of a run directory (an `nlc.rundir.Run`): bytes, a tiktoken encoding by
    name, or the BPE file copied into the run at training time. Never a path the record names."""
    from nlc.rundir import RunDirError, inside_run

    rec, spec = run.record, run.record.tokenizer
    where = run.path / "spec.json"
    if rec.tokenizer_file is not None:
        if spec == "bytes":
            raise RunDirError(f"{where}: tokenizer_file is set, but the tokenizer is bytes")
        p = inside_run(run.path, rec.tokenizer_file, "tokenizer_file")
        if not p.is_file():
            raise RunDirError(f"{where}: tokenizer_file '{rec.tokenizer_file}' is missing from the run directory",
                              hint="copy the tokenizer's .tiktoken file there")
        return _from_file(spec, p)
    if spec == "bytes":
        return BYTES
    ref = _split(spec)
    if not is_encoding_name(ref):
        raise RunDirError(f"{where}: tokenizer '{spec}' names a file outside the run directory; "
                          "a run reads its tokenizer only from inside itself",
                          hint=f"copy the .tiktoken file into {run.path / 'tokenizer'}/ and add "
                               f"\"tokenizer_file\": \"tokenizer/NAME.tiktoken\" to spec.json "
                               "(nlc train does both for new runs)")
    return _from_name(spec, ref)


def tokenize(corpus: Corpus, tok: Tokenizer) -> tuple[Corpus, float]:
    """The corpus as token ids, and bytes per token (for bits per byte)."""
    if tok.enc is None:
        return corpus, 1.0
    tr, va = tok.encode(corpus.train.tobytes()), tok.encode(corpus.val.tobytes())
    bpt = (len(corpus.train) + len(corpus.val)) / max(1, len(tr) + len(va))
    return Corpus(tr, va, f"{corpus.source} [{tok.name}]", corpus.n_train_files, corpus.n_val_files, corpus.n_skipped), bpt
