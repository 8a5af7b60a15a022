import errno
import json
import random

import numpy as np
import pytest
import torch

from nlc.train import checkpoint as C
from nlc.train.errors import CheckpointError


def _setup(fake, **kw):
    torch.manual_seed(0)
    m = fake(**kw)
    opt = m.optimizer()
    x = torch.randint(0, 256, (2, 8))
    m(x, targets=x).loss.backward()
    opt.step()
    return m, opt


def test_roundtrip(tmp_path, fake):
    m, opt = _setup(fake)
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    path = C.save_checkpoint(tmp_path, m, opt, 3, fast_state=m.init_state(2), record={"seed": 7})
    want = (random.random(), np.random.rand(), torch.rand(1))
    assert path.name == "ckpt-0000003" and (tmp_path / "latest").read_text().strip() == path.name
    rec = json.loads((path / "record.json").read_text())
    assert rec["step"] == 3 and rec["spec_hash"] == m.spec_hash and rec["seed"] == 7 and rec["config"]["dim"] == 16

    m2, opt2 = fake(seed=1), None
    opt2 = m2.optimizer()
    ck = C.load_checkpoint(tmp_path, m2, opt2)
    assert ck.step == 3 and set(ck.fast_state) == {"ctx/sum", "ctx/count", "mem/h"}
    for (k, a), b in zip(m.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(a, b), k
    assert torch.equal(opt.state_dict()["state"][0]["exp_avg"], opt2.state_dict()["state"][0]["exp_avg"])
    C.set_rng_state(ck.rng)
    assert (random.random(), np.random.rand()) == want[:2] and torch.equal(torch.rand(1), want[2])


def test_failure_mid_save_keeps_previous(tmp_path, fake, monkeypatch):
    m, opt = _setup(fake)
    C.save_checkpoint(tmp_path, m, opt, 1)
    before = {p.name: p.read_bytes() for p in (tmp_path / "ckpt-0000001").iterdir()}
    calls = {"n": 0}
    real = C._write_bytes

    def full_disk(path, data):
        calls["n"] += 1
        if calls["n"] == 2:  # the first file went in, the second hits a full disk
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    monkeypatch.setattr(C, "_write_bytes", full_disk)
    with pytest.raises(CheckpointError, match="No space left.*ckpt-0000001 is intact") as e:
        C.save_checkpoint(tmp_path, m, opt, 2)
    assert "free disk space" in e.value.hint
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["ckpt-0000001", "latest"]  # no temp folder, no half checkpoint
    assert {p.name: p.read_bytes() for p in (tmp_path / "ckpt-0000001").iterdir()} == before
    assert C.load_checkpoint(tmp_path, fake(seed=3)).step == 1


def test_failure_during_rename(tmp_path, fake, monkeypatch):
    m, opt = _setup(fake)
    C.save_checkpoint(tmp_path, m, opt, 1)
    real = C.os.replace

    def boom(src, dst):
        if "ckpt-0000002" in str(dst):
            raise OSError(errno.EIO, "I/O error")
        real(src, dst)

    monkeypatch.setattr(C.os, "replace", boom)
    with pytest.raises(CheckpointError, match="I/O error"):
        C.save_checkpoint(tmp_path, m, opt, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-0000001", "latest"]


def test_keep_last_k_and_stale_temp(tmp_path, fake):
    m, opt = _setup(fake)
    (tmp_path / ".tmp-ckpt-leftover").mkdir(parents=True)
    for s in range(1, 6):
        C.save_checkpoint(tmp_path, m, opt, s, keep=3)
    assert [p.name for p in C.list_checkpoints(tmp_path)] == ["ckpt-0000003", "ckpt-0000004", "ckpt-0000005"]
    assert not list(tmp_path.glob(".tmp-*"))
    C.save_checkpoint(tmp_path, m, opt, 5, keep=3)  # re-saving a step replaces it
    assert C.load_checkpoint(tmp_path).step == 5


def test_corrupt_and_missing_files(tmp_path, fake):
    m, opt = _setup(fake)
    p = C.save_checkpoint(tmp_path, m, opt, 4)
    w = p / "model.safetensors"
    good = w.read_bytes()
    w.write_bytes(good[:-10] + b"0123456789")
    with pytest.raises(CheckpointError, match="corrupt: model.safetensors does not match"):
        C.load_checkpoint(tmp_path, fake())
    w.write_bytes(good)
    (p / "state.pt").unlink()
    with pytest.raises(CheckpointError, match="incomplete: state.pt is missing"):
        C.load_checkpoint(tmp_path, fake())
    (p / "record.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt: cannot read record.json"):
        C.load_checkpoint(p)


def test_latest_missing_target_and_no_checkpoint(tmp_path, fake):
    with pytest.raises(CheckpointError, match="no run or checkpoint"):
        C.load_checkpoint(tmp_path / "nothing")
    with pytest.raises(CheckpointError, match="no checkpoint in"):
        C.load_checkpoint(tmp_path)
    m, opt = _setup(fake)
    C.save_checkpoint(tmp_path, m, opt, 1)
    (tmp_path / "latest").write_text("ckpt-0000099\n")
    with pytest.raises(CheckpointError, match="points to ckpt-0000099, which is missing"):
        C.load_checkpoint(tmp_path)


def test_spec_hash_mismatch_refused(tmp_path, fake):
    m, opt = _setup(fake)
    C.save_checkpoint(tmp_path, m, opt, 2)
    other = fake(dim=24)
    with pytest.raises(CheckpointError) as e:
        C.load_checkpoint(tmp_path, other)
    msg = str(e.value)
    assert m.spec_hash[:12] in msg and other.spec_hash[:12] in msg and "'fake'" in msg
