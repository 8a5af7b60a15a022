"""Optional inputs: Hugging Face datasets (a stand-in module here) and tiktoken tokenizers (a local BPE file)."""
import base64
import json
import sys
import types

import pytest

from nlc.train.errors import DataError
from nlc.train.sources import get_tokenizer, load_hf, tokenize


class FakeDataset(list):
    column_names = ["label", "text"]


def fake_datasets(calls):
    mod = types.ModuleType("datasets")

    def load_dataset(name, config=None, split="train"):
        calls.append((name, config, split))
        if name == "missing":
            raise FileNotFoundError("Couldn't find dataset 'missing' on the Hub")
        return FakeDataset({"label": i, "text": f"record {i}: def f(x): return x\n"} for i in range(200))

    mod.load_dataset = load_dataset
    mod.load_from_disk = lambda path: FakeDataset({"label": 0, "text": "saved text"} for _ in range(50))
    return mod


def test_hf_dataset_name_config_split(monkeypatch):
    calls = []
    monkeypatch.setitem(sys.modules, "datasets", fake_datasets(calls))
    c = load_hf("hf:demo:small@validation")
    assert calls == [("demo", "small", "validation")]
    assert len(c.train) > 0 and len(c.val) > 0 and b"record" in c.train.tobytes()


def test_hf_saved_dataset(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "datasets", fake_datasets([]))
    assert b"saved text" in load_hf(f"hf:{tmp_path}").train.tobytes()


def test_hf_errors(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", fake_datasets([]))
    with pytest.raises(DataError, match="cannot load hf:missing"):
        load_hf("hf:missing")
    monkeypatch.setitem(sys.modules, "datasets", None)  # not installed
    with pytest.raises(DataError, match="needs the Hugging Face datasets package"):
        load_hf("hf:demo")


@pytest.fixture
def bpe_file(tmp_path):
    """A tiny BPE: the 256 bytes plus three merges."""
    pytest.importorskip("tiktoken")
    toks = [bytes([i]) for i in range(256)] + [b"de", b"def", b" x"]
    path = tmp_path / "tiny.tiktoken"
    path.write_text("".join(f"{base64.b64encode(t).decode()} {r}\n" for r, t in enumerate(toks)))
    return path


def test_local_tiktoken_file(bpe_file):
    tok = get_tokenizer(f"tiktoken:{bpe_file}")
    assert tok.n_vocab == 259
    ids = tok.encode(b"def f(x): return x")
    assert 257 in ids.tolist()                 # "def" merged into one token
    assert tok.decode(ids) == b"def f(x): return x"


def test_tokenizer_errors():
    with pytest.raises(DataError, match="unknown tokenizer"):
        get_tokenizer("sentencepiece:foo")


def test_train_eval_generate_with_a_tokenizer(bpe_file, tmp_path, capsys):
    from nlc.cli import main
    data = tmp_path / "code.txt"
    data.write_text("def f(x):\n    return x\n" * 400)
    out = tmp_path / "run"
    tiny = ["--set", "dim=16", "--set", "heads=2", "--set", "layers=1"]
    assert main(["train", "specs/transformer.nl", "--data", str(data), "--tokenizer", f"tiktoken:{bpe_file}",
                 "--steps", "2", "--batch", "2", "--seq-len", "16", "--out", str(out), "--no-progress",
                 "--eval-every", "0", *tiny]) == 0
    assert "bpb" in capsys.readouterr().out
    rec = json.loads((out / "spec.json").read_text())
    assert rec["tokenizer"].startswith("tiktoken:") and rec["overrides"]["vocab"] == 259
    assert main(["eval", str(out), "--data", str(data), "--seq-len", "16"]) == 0
    assert "validation bpb" in capsys.readouterr().out
    assert main(["generate", str(out), "--prompt", "def ", "--max-new", "4"]) == 0
    assert capsys.readouterr().out.startswith("def ")


def test_tokenize_reports_bytes_per_token(bpe_file):
    from nlc.train.data import Corpus
    import numpy as np
    raw = np.frombuffer(b"def def def def", dtype=np.uint8)
    c, bpt = tokenize(Corpus(raw.copy(), raw.copy(), "t"), get_tokenizer(f"tiktoken:{bpe_file}"))
    assert bpt > 1.0 and len(c.train) < len(raw)
