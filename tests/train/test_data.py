import numpy as np
import pytest
import torch

from nlc.train import data as D
from nlc.train.errors import DataError


def test_missing_path(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        D.load_data(tmp_path / "nope.txt")


def test_empty_file(tmp_path):
    (tmp_path / "e.txt").write_bytes(b"")
    with pytest.raises(DataError, match="is empty") as e:
        D.load_data(tmp_path / "e.txt")
    assert e.value.hint


def test_binary_file(tmp_path):
    (tmp_path / "b.bin").write_bytes(b"abc\0def" * 10)
    with pytest.raises(DataError, match="binary"):
        D.load_data(tmp_path / "b.bin")


def test_undecodable_file(tmp_path):
    (tmp_path / "l.txt").write_bytes("caf\xe9 ".encode("latin-1") * 10)
    with pytest.raises(DataError, match="not UTF-8"):
        D.load_data(tmp_path / "l.txt")


def test_unreadable_file(tmp_path, monkeypatch):
    # chmod 000 does not stop root, so simulate the OS refusing the read
    f = tmp_path / "secret.txt"
    f.write_text("hello")

    def deny(path):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(D, "_read", deny)
    with pytest.raises(DataError, match="permission denied"):
        D.load_data(f)


def test_folder_without_text(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"\0\1\2")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.bin").write_bytes(b"\0" * 9)
    with pytest.raises(DataError, match="no usable text files"):
        D.load_data(tmp_path)
    with pytest.raises(DataError, match="no usable text files"):
        D.load_data(tmp_path / "sub")


def test_folder_skips_binaries_and_splits(tmp_path):
    for i in range(60):
        (tmp_path / f"f{i}.txt").write_text(f"document {i} " * 20)
    (tmp_path / "img.png").write_bytes(b"\x89PNG\0\0")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("ref: main")
    c = D.load_data(tmp_path)
    assert c.n_skipped == 1 and c.n_train_files + c.n_val_files == 60
    assert len(c.val) > 0 and len(c.train) > len(c.val)
    assert b"ref: main" not in c.train.tobytes() + c.val.tobytes()
    assert "1 non-text files skipped" in c.describe()


def test_single_file_tail_split(tmp_path):
    (tmp_path / "t.txt").write_text("x" * 1000)
    c = D.load_data(tmp_path / "t.txt")
    assert len(c.train) == 950 and len(c.val) == 50


def test_too_short_for_one_batch(fake, tmp_path):
    with pytest.raises(DataError, match="seq_len \\+ 1 = 65"):
        D.check_length(b"abc", 64)
    from nlc.train.loop import train

    with pytest.raises(DataError, match="needs seq_len"):
        train(fake(), b"short text", steps=2, seq_len=64, progress=False, out_dir=tmp_path)
    (tmp_path / "tiny.txt").write_text("a few bytes")
    with pytest.raises(DataError, match="11 bytes"):
        train(fake(), str(tmp_path / "tiny.txt"), steps=2, seq_len=64, progress=False, out_dir=tmp_path / "r")


def test_stdlib_split_deterministic_and_disjoint():
    import sysconfig

    root = sysconfig.get_paths()["stdlib"]
    a = D._build_stdlib(root, 2 * 2**20)
    b = D._build_stdlib(root, 2 * 2**20)
    assert np.array_equal(a.train, b.train) and np.array_equal(a.val, b.val)
    assert len(a.val) > 0 and a.n_val_files > 0
    assert 0.01 < a.n_val_files / (a.n_train_files + a.n_val_files) < 0.12
    rels = D._stdlib_files(root)
    assert not any("site-packages" in r for r in rels)
    assert [D._is_val(r) for r in rels] == [D._is_val(r) for r in rels]


def test_default_corpus_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NLC_CACHE_DIR", str(tmp_path))
    c1 = D.default_corpus(max_bytes=2**20)
    assert list(tmp_path.glob("stdlib-py*.npz"))
    c2 = D.default_corpus(max_bytes=2**20)
    assert np.array_equal(c1.train, c2.train) and np.array_equal(c1.val, c2.val)
    assert len(c1.train) >= 2**20 * 0.8 and "MB train" in c1.describe()


def test_batches_deterministic(text):
    x1, y1 = D.get_batch(text, 4, 16, seed=3, step=7)
    x2, y2 = D.get_batch(text, 4, 16, seed=3, step=7)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert torch.equal(x1[:, 1:], y1[:, :-1]) and x1.dtype == torch.long
    x3, _ = D.get_batch(text, 4, 16, seed=3, step=8)
    assert not torch.equal(x1, x3)
    it = D.batches(text, 4, 16, seed=3, start_step=7)
    assert torch.equal(next(it)[0], x1) and torch.equal(next(it)[0], x3)


def test_eval_windows_cover_in_order(text):
    x, y = D.eval_windows(text, 32)
    assert x.shape[0] == (len(text) - 1) // 32 and bytes(x[0].tolist()) == text[:32]
    xs, _ = D.eval_windows(text, 32, max_windows=5)
    assert xs.shape == (5, 32)
