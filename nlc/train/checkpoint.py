"""Atomic checkpoints: `run_dir/ckpt-<step>/{model.safetensors, record.json, state.pt}` + `latest`.

A checkpoint is written into a hidden temp folder beside the others, every file and the
folder are fsynced, and only then is it renamed into place (`os.replace` is atomic on
POSIX); the `latest` pointer is replaced the same way. So a crash, a SIGKILL or a full
disk at any moment leaves either the old checkpoint or the new one, never half of one.
`record.json` holds the sha256 of the other two files, so corruption is caught at load.

One run writes a run directory at a time: `lock_run_dir` takes an exclusive `flock` on
`run_dir/.lock` (released by the kernel when the process ends, however it ends) and
writes the holder (pid, host, start time, command) into it, so a second run is refused
with a message naming the holder. Old checkpoints are pruned by renaming them out of the
way first (`.tmp-ckpt-del-*`) and deleting them after, and `list_checkpoints` lists only
complete folders, so a kill mid-prune never leaves a half checkpoint that looks whole.

A checkpoint is *healthy* (`weights_problem` returns None) when every parameter, every
optimizer-state tensor and every fast-state tensor is finite and no parameter has an entry
with |w| > `MAX_ABS_WEIGHT` (1e3; trained nlc models stay below ~10, and runs that diverged
were seen at 5e4 before their loss went NaN); training adds that the saved weights' own
loss on the next training batch is finite and at most twice that of uniform guessing
(2 ln V nats for V tokens: a run was seen with |w| < 1e3 and a next loss of 3e2, whose
gradient overflowed whatever the lr it was resumed with). Training never writes an
unhealthy checkpoint, so the one `latest` points to is a safe place to resume from.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import random
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nlc.train.errors import CheckpointError

FORMAT = 1
WEIGHTS, RECORD, STATE, LATEST = "model.safetensors", "record.json", "state.pt", "latest"
_TMP_PREFIX = ".tmp-ckpt-"
_LATEST_TMP_PREFIX = ".latest-"
LOCK = ".lock"
MAX_ABS_WEIGHT = 1e3


@dataclass
class Checkpoint:
    path: Path
    step: int
    record: dict
    fast_state: dict = field(default_factory=dict)
    rng: dict | None = None


def ckpt_name(step: int) -> str:
    return f"ckpt-{step:07d}"


def unwrap(model):
    """The user's module under DDP / torch.compile wrappers."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model


# ---------------------------------------------------------------------------
# RNG state (stored as tensors and plain Python values so `weights_only=True` loads it)


def rng_state() -> dict:
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": random.getstate(),
    }


def set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    if s.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])
    n = s["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    v, internal, gauss = s["python"]
    random.setstate((v, tuple(internal), gauss))


# ---------------------------------------------------------------------------
# the run directory: writable, and locked by one run at a time


def unwritable(run_dir: Path, e: OSError) -> CheckpointError:
    """The CheckpointError for an OSError met while creating or writing the run directory."""
    import errno

    why = e.strerror or str(e)
    if e.errno == errno.ENOSPC:
        hint = "free disk space, or point --out at another disk"
    elif isinstance(e, (FileExistsError, NotADirectoryError)) or e.errno in (errno.EEXIST, errno.ENOTDIR):
        why, hint = "a file is in the way of the folder", "choose another --out folder (or remove that file)"
    else:
        hint = "choose a writable --out folder"
    where = f" ({e.filename})" if getattr(e, "filename", None) and str(e.filename) != str(run_dir) else ""
    return CheckpointError(f"cannot write the run directory {run_dir}: {why}{where}", hint=hint)


def prepare_run_dir(run_dir) -> Path:
    """Create `run_dir` (and its parents); CheckpointError, not an OSError, when that cannot be done."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise CheckpointError(f"cannot write the run directory {run_dir}: it is a file, not a folder",
                              hint="choose another --out folder")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise unwritable(run_dir, e) from None
    return run_dir


_held: dict[str, list] = {}  # realpath -> [fd, count]: this process's locks (re-entrant)


class RunLock:
    """A held run-directory lock; `release()` (or leaving the `with`) lets it go."""

    def __init__(self, key: str | None):
        self.key = key

    def release(self) -> None:
        if self.key is None or self.key not in _held:
            return
        entry = _held[self.key]
        entry[1] -= 1
        if entry[1] == 0:
            del _held[self.key]
            os.close(entry[0])  # closing the descriptor releases the flock
        self.key = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
        return False


def _read_holder(path: Path) -> str:
    """The holder line of a lock file; it is written just after the lock is taken, so wait a little."""
    for _ in range(20):
        try:
            info = json.loads(path.read_text() or "null")
        except (OSError, ValueError):
            info = None
        if isinstance(info, dict):
            return (f"pid {info.get('pid')} on host {info.get('host')}, started {info.get('started')}"
                    + (f": {info['command']}" if info.get("command") else ""))
        time.sleep(0.05)
    return "holder unknown"


def _write_fd(fd: int, data: bytes) -> None:
    """Write all of `data` at offset 0 and fsync (a full disk shows here, at start-up)."""
    view = memoryview(data)
    while view:
        view = view[os.pwrite(fd, view, len(data) - len(view)):]
    os.fsync(fd)


def lock_run_dir(run_dir) -> RunLock:
    """Create `run_dir` if needed and lock it for this process (re-entrant within a process).

    Raises CheckpointError when the folder cannot be created or written (read-only, a file in the
    way, a full disk: writing the lock file is the probe), or when another process holds the lock
    (the message names it: pid, host, start time and command).
    """
    run_dir = prepare_run_dir(run_dir)
    try:
        import fcntl
    except ImportError:  # no flock (Windows): no lock, but still check that the folder is writable
        fcntl = None
    key = os.path.realpath(run_dir)
    if key in _held:
        _held[key][1] += 1
        return RunLock(key)
    path = run_dir / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise unwritable(run_dir, e) from None
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise CheckpointError(f"{run_dir} is in use by another run ({_read_holder(path)})",
                                      hint="wait for that run to end, or choose another --out folder") from None
            except OSError as e:
                raise CheckpointError(f"cannot lock the run directory {run_dir}: {e.strerror or e}",
                                      hint="put --out on a local disk") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:])[:300] if sys.argv else ""}
        try:
            os.ftruncate(fd, 0)
            _write_fd(fd, json.dumps(info).encode() + b"\n")
        except OSError as e:
            raise unwritable(run_dir, e) from None
    except BaseException:
        os.close(fd)
        raise
    _held[key] = [fd, 1]
    return RunLock(key)


# ---------------------------------------------------------------------------
# health: what may be kept as a "last good" checkpoint


def weights_problem(params, optimizer_state: dict | None = None, fast_state: dict | None = None,
                    max_abs: float = MAX_ABS_WEIGHT) -> str | None:
    """None when healthy (see the module docstring), else what is wrong, for a message.

    `params`: (name, tensor) pairs of the parameters; `optimizer_state`: an optimizer's state_dict.
    """
    worst, worst_name = 0.0, None
    for name, p in params:
        t = p.detach()
        if t.numel() == 0:
            continue
        if not torch.isfinite(t).all():
            return f"parameter {name} is non-finite"
        m = float(t.abs().max())
        if m > worst:
            worst, worst_name = m, name
    if worst > max_abs:
        return f"parameter {worst_name} has |w| = {worst:.3g} > {max_abs:g}"
    for k, v in (fast_state or {}).items():
        if isinstance(v, torch.Tensor) and not torch.isfinite(v.detach()).all():
            return f"fast state {k} is non-finite"
    for i, st in ((optimizer_state or {}).get("state") or {}).items():
        for k, v in (st.items() if isinstance(st, dict) else ()):
            if isinstance(v, torch.Tensor) and v.is_floating_point() and not torch.isfinite(v).all():
                return f"optimizer state {k} of parameter {i} is non-finite"
    return None


# ---------------------------------------------------------------------------
# saving


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _weights_bytes(model) -> bytes:
    from safetensors.torch import save

    # clone: safetensors refuses tensors that share storage (tied embeddings)
    sd = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in unwrap(model).state_dict().items()
          if isinstance(v, torch.Tensor)}
    return save(sd, metadata={"format": "pt"})


def _state_bytes(optimizer, fast_state, rng) -> bytes:
    # own copies: a state tensor may be a view into a larger buffer (FSDP's gathered parameters)
    fast = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in (fast_state or {}).items()}
    buf = io.BytesIO()
    torch.save({"optimizer": optimizer.state_dict() if optimizer is not None else None,
                "fast_state": fast, "rng": rng}, buf)
    return buf.getvalue()


def is_complete(ckpt: Path) -> bool:
    """All three files are there (a folder killed half-way through a delete by older versions is not)."""
    return all((ckpt / f).is_file() for f in (WEIGHTS, STATE, RECORD))


def list_checkpoints(run_dir) -> list[Path]:
    """Complete checkpoint folders of a run, oldest first (incomplete `ckpt-*` folders are ignored)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    out = [p for p in run_dir.iterdir()
           if p.name.startswith("ckpt-") and p.name[5:].isdigit() and p.is_dir() and is_complete(p)]
    return sorted(out, key=lambda p: int(p.name[5:]))


def clean_temps(run_dir) -> None:
    """Remove what a run killed mid-save or mid-prune left: temp and half-deleted checkpoint folders
    (`.tmp-ckpt-*`) and temp `latest` pointers (`.latest-*`). Safe because the run directory has one
    writer: the holder of its lock (`lock_run_dir`)."""
    run_dir = Path(run_dir)
    for p in run_dir.glob(_TMP_PREFIX + "*"):
        shutil.rmtree(p, ignore_errors=True)
    for p in run_dir.glob(_LATEST_TMP_PREFIX + "*"):
        try:
            p.unlink()
        except OSError:
            pass


def _point_latest(run_dir: Path, name: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=run_dir, prefix=_LATEST_TMP_PREFIX)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(name + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, run_dir / LATEST)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(run_dir)


def save_checkpoint(run_dir, model, optimizer, step: int, *, fast_state: dict | None = None,
                    record: dict | None = None, keep: int = 3) -> Path:
    """Atomically write checkpoint `step` (weights, optimizer, fast state, RNG) and point `latest` at it.

    `record` adds JSON fields (seed, metrics, train args). Keeps the newest `keep` checkpoints.
    Any failure removes the temp folder, leaves the previous checkpoint as it was, and
    raises CheckpointError.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    clean_temps(run_dir)
    final = run_dir / ckpt_name(step)
    tmp = Path(tempfile.mkdtemp(dir=run_dir, prefix=_TMP_PREFIX))
    try:
        m = unwrap(model)
        weights = _weights_bytes(m)
        state = _state_bytes(optimizer, fast_state, rng_state())
        rec = {
            "format": FORMAT, "step": step, "data_position": step,
            "spec_hash": getattr(m, "spec_hash", None), "spec_name": getattr(m, "spec_name", None),
            "config": getattr(m, "config", None), "time": time.time(), "torch": torch.__version__,
            **(record or {}),
            "files": {WEIGHTS: _sha256(weights), STATE: _sha256(state)},
        }
        _write_bytes(tmp / WEIGHTS, weights)
        _write_bytes(tmp / STATE, state)
        _write_bytes(tmp / RECORD, json.dumps(rec, indent=2, default=str).encode())
        _fsync_dir(tmp)
        if final.exists():  # re-saving a step (e.g. Ctrl-C right after a periodic save)
            old = run_dir / f"{_TMP_PREFIX}old-{final.name}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(run_dir)
        _point_latest(run_dir, final.name)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if not isinstance(e, Exception):
            raise
        prev = _read_latest(run_dir)
        kept = f"the previous checkpoint {prev} is intact" if prev else "no earlier checkpoint exists"
        hint = "free disk space, or point --out at another disk" if getattr(e, "errno", None) == 28 else None
        raise CheckpointError(f"could not save checkpoint at step {step} to {final}: {e}; {kept}",
                              hint=hint) from e
    _prune(run_dir, keep, protect=final.name)
    return final


def _prune(run_dir: Path, keep: int, protect: str) -> None:
    """Delete all but the newest `keep` checkpoints. Each is first renamed out of the way (atomic), then
    deleted, so a kill mid-delete leaves a hidden `.tmp-ckpt-del-*` folder (removed by the next
    `clean_temps`), never a half-deleted `ckpt-*` that looks like a checkpoint."""
    if keep <= 0:
        return
    for p in list_checkpoints(run_dir)[:-keep]:
        if p.name != protect:
            gone = run_dir / f"{_TMP_PREFIX}del-{p.name}"
            try:
                os.replace(p, gone)
            except OSError:
                continue  # still a complete checkpoint; the next prune tries again
            shutil.rmtree(gone, ignore_errors=True)


# ---------------------------------------------------------------------------
# loading


def _read_latest(run_dir: Path) -> str | None:
    """What `latest` names (stripped), None without one; reads at most 4 KB of a regular file."""
    p = Path(run_dir) / LATEST
    try:
        if not p.is_file():  # never open a FIFO or a device
            return None
        with open(p, "rb") as f:
            return f.read(4096).decode("utf-8", "replace").strip() or None
    except OSError:
        return None


def _own(p: Path, run_dir: Path, what: str) -> Path:
    """`p` (an entry of `run_dir`), refused when it is a link that leads out of `run_dir`."""
    if p.resolve().parent != run_dir.resolve():
        raise CheckpointError(f"{p} ({what}) is a link to outside {run_dir}; nlc reads a run only inside it",
                              hint="replace the link by a copy")
    return p


def resolve(path) -> Path:
    """A checkpoint folder from a run dir (via `latest`, else the newest) or a checkpoint folder itself."""
    p = Path(path)
    if (p / RECORD).exists():
        return p
    if not p.exists():
        raise CheckpointError(f"no run or checkpoint at {p}", hint="check the path, or start without --resume")
    name = _read_latest(p)
    if name is not None:
        _own(p / LATEST, p, "the latest pointer")
        names = ", ".join(c.name for c in list_checkpoints(p)) or "none (there is no checkpoint)"
        # only a checkpoint folder of this run: no paths ('../other/ckpt-1', '/abs/ckpt-1')
        if not (name.startswith("ckpt-") and name[5:].isdigit() and name[5:].isascii()):
            raise CheckpointError(f"{p / LATEST} does not name a checkpoint folder of this run ({name[:60]!r})",
                                  hint=f"it holds the name of one ckpt-* folder inside {p}; here: {names}")
        if not (p / name).is_dir():
            raise CheckpointError(f"{p / LATEST} points to {name}, which is missing",
                                  hint=f"point it at one of: {names}")
        return _own(p / name, p, "the latest checkpoint")
    ckpts = list_checkpoints(p)
    if not ckpts:
        raise CheckpointError(f"no checkpoint in {p}", hint="train first, or start without --resume")
    return _own(ckpts[-1], p, "the newest checkpoint")


def read_record(ckpt: Path) -> dict:
    try:
        return json.loads((ckpt / RECORD).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {ckpt} is incomplete: {RECORD} is missing") from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint {ckpt} is corrupt: cannot read {RECORD} ({e})") from None


def _read_verified(ckpt: Path, name: str, rec: dict) -> bytes:
    try:
        data = (ckpt / name).read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {ckpt} is incomplete: {name} is missing") from None
    except OSError as e:
        raise CheckpointError(f"cannot read {ckpt / name}: {e}") from None
    want = rec.get("files", {}).get(name)
    if want is not None and _sha256(data) != want:
        raise CheckpointError(f"checkpoint {ckpt} is corrupt: {name} does not match its checksum",
                              hint="resume from an earlier checkpoint: pass its folder, or edit `latest`")
    return data


def check_spec(rec: dict, model, ckpt: Path) -> None:
    """Refuse weights trained from another spec (or other --set overrides)."""
    m = unwrap(model)
    mine, theirs = getattr(m, "spec_hash", None), rec.get("spec_hash")
    if mine and theirs and mine != theirs:
        raise CheckpointError(
            f"checkpoint {ckpt} was trained from spec {rec.get('spec_name')!r} (hash {theirs[:12]}), "
            f"but this model is spec {getattr(m, 'spec_name', None)!r} (hash {mine[:12]})",
            hint="use the same .nl file and --set overrides as the run, or a new --out folder")


def load_state(blob: bytes, where: Path, map_location="cpu") -> dict:
    """The dict in a `state.pt` (optimizer, fast state, RNG), unpickled with `weights_only=True`:
    tensors and plain values only, so a crafted file cannot run code."""
    import pickle

    try:
        st = torch.load(io.BytesIO(blob), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:  # not torch's words: they advise the unsafe load, never right for a file from elsewhere
        lines = [x.strip() for x in str(e).splitlines()[1:] if x.strip()]
        what = next((x for x in lines if "GLOBAL" in x), None)
        if what is not None:
            name = what.split("GLOBAL", 1)[1].split()[0] if what.split("GLOBAL", 1)[1].split() else "?"
            raise CheckpointError(f"{where} holds objects other than tensors and plain values (it asks for "
                                  f"{name[:80]}); nlc does not load it",
                                  hint="nlc writes only tensors and plain values there: this file was made or changed "
                                       "elsewhere and is not safe to load; resume from another checkpoint, or "
                                       "retrain") from None
        why = next((x for x in lines if "weights_only" not in x and not x.startswith("Check the documentation")),
                   "not a checkpoint state file")
        raise CheckpointError(f"{where} is corrupt: {why[:200]}") from None
    except Exception as e:  # noqa: BLE001 - a truncated or garbled file of any kind
        why = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise CheckpointError(f"{where} is corrupt: {why if 'weights_only' not in why else type(e).__name__}") from None
    if not isinstance(st, dict):
        raise CheckpointError(f"{where} is corrupt: it holds a {type(st).__name__}, not nlc's state dict")
    return st


def load_checkpoint(path, model=None, optimizer=None, *, map_location="cpu", strict_spec: bool = True) -> Checkpoint:
    """Verify and load a checkpoint into `model` / `optimizer` (either may be None).

    `path` is a run dir (follows `latest`) or one `ckpt-*` folder. RNG state is returned,
    not applied: call `set_rng_state(ckpt.rng)` to continue a run bit-exactly.
    """
    from safetensors.torch import load

    ckpt = resolve(path)
    for name in (RECORD, WEIGHTS, STATE):  # a checkpoint's files are its own, not links to elsewhere
        if (ckpt / name).is_symlink():
            _own(ckpt / name, ckpt, "a checkpoint file")
    rec = read_record(ckpt)
    if rec.get("format") != FORMAT or "step" not in rec:
        raise CheckpointError(f"{ckpt / RECORD} is not an nlc checkpoint record (format {rec.get('format')})")
    if model is not None and strict_spec:
        check_spec(rec, model, ckpt)
    weights = _read_verified(ckpt, WEIGHTS, rec)
    blob = _read_verified(ckpt, STATE, rec)
    try:
        sd = load(weights)
    except Exception as e:  # noqa: BLE001 - safetensors errors of any kind mean a corrupt file
        raise CheckpointError(f"checkpoint {ckpt} is corrupt: {WEIGHTS}: {str(e)[:200] or type(e).__name__}") from None
    st = load_state(blob, ckpt / STATE, map_location)
    if model is not None:
        try:
            unwrap(model).load_state_dict(sd, strict=True)
        except RuntimeError as e:
            raise CheckpointError(f"weights in {ckpt} do not fit this model: {str(e).splitlines()[0]}",
                                  hint="was the spec changed since this run?") from None
    if optimizer is not None:
        if st.get("optimizer") is None:
            raise CheckpointError(f"checkpoint {ckpt} has no optimizer state to resume from")
        optimizer.load_state_dict(st["optimizer"])
    return Checkpoint(ckpt, int(rec["step"]), rec, st.get("fast_state") or {}, st.get("rng"))
