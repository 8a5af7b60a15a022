"""DDP under `torchrun`: gloo on CPU, NCCL on GPU.

    torchrun --nproc-per-node 2 -m nlc train specs/hope.nl --batch 16

Every rank draws the same deterministic global batch (a pure function of seed and step)
and keeps its own slice, so N ranks with global batch B compute exactly the gradient of
one process with batch B (DDP averages the per-rank means). In-context levels keep
per-sequence state and need no sync; step-clock levels are parameters and DDP syncs
them. Only rank 0 logs, evaluates, saves and prints the report.

Every collective waits at most `timeout` seconds (`nlc train --dist-timeout`, default
DEFAULT_TIMEOUT_S = 300, not torch's 30 minutes) for a silent peer; a peer that froze or
died becomes one TrainError line on the ranks that notice it (`peer_error`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta

from pathlib import Path

import torch
import torch.distributed as dist

from nlc.train.errors import TrainError

# seconds a collective waits for a peer before the job fails (torch's default is 30 minutes); raise it
# when a rank may legitimately keep the others waiting longer (a large checkpoint written by rank 0)
DEFAULT_TIMEOUT_S = 300.0


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False  # we initialised the process group, so we tear it down
    timeout_s: float = DEFAULT_TIMEOUT_S
    closed: bool = False      # cleanup() has run

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def setup_distributed(device: str | torch.device | None = None, timeout: float | None = None) -> DistContext:
    """Read torchrun's env (RANK, WORLD_SIZE, LOCAL_RANK); init the process group if WORLD_SIZE > 1.

    `timeout`: seconds any collective may wait for a peer (default DEFAULT_TIMEOUT_S)."""
    timeout = DEFAULT_TIMEOUT_S if timeout is None else timeout
    if not timeout > 0:
        raise TrainError(f"--dist-timeout {timeout}: must be a positive number of seconds", hint="e.g. --dist-timeout 300")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = torch.device(device) if device is not None else default_device()
    if world <= 1:
        return DistContext(device=dev, timeout_s=timeout)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    owns = False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", timeout=timedelta(seconds=timeout))
        owns = True
    return DistContext(rank, world, local, dev, owns, timeout)


def peer_error(e: BaseException, ctx: DistContext, step: int, last_good) -> TrainError | None:
    """A one-line TrainError for a collective that failed because a peer froze or died (None when `e`
    is something else): a timeout, a closed connection, or any torch.distributed error."""
    if not ctx.enabled:
        return None
    msg = str(e)
    known = ("Timed out", "timed out", "Connection closed by peer", "Connection reset", "Broken pipe",
             "connection", "gloo", "NCCL", "ProcessGroup", "Socket")
    if not (isinstance(e, getattr(dist, "DistError", ())) or any(k in msg for k in known)):
        return None
    first = next((ln.strip() for ln in msg.splitlines() if ln.strip()), type(e).__name__)
    if len(first) > 160:
        first = first[:157] + "..."
    keep = f"last checkpoint {last_good}" if last_good else "no checkpoint was saved yet"
    return TrainError(f"rank {ctx.rank}: lost contact with another rank at step {step + 1} (it died, or froze "
                      f"for more than --dist-timeout {ctx.timeout_s:g} s: {first}); {keep}",
                      hint="see the other ranks' output; --resume continues the run; raise --dist-timeout "
                           "if a rank may legitimately wait longer (e.g. for a large checkpoint save)")


def wrap_model(model, ctx: DistContext):
    """DDP-wrap for multi-process runs (broadcasts rank 0's weights); unchanged otherwise."""
    if not ctx.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    # a level whose chunk is longer than the sequence cannot reach the loss yet (e.g. Hope's
    # memory at tokens(64) with seq_len 32), so some parameters may get no gradient in a step.
    # DDP finds them from the outputs; the returned fast state (which does depend on them, and
    # is not backpropagated across training batches) is detached so it does not hide them.
    if hasattr(model, "detach_state_output"):
        model.detach_state_output = True
    return DDP(model, device_ids=ids, find_unused_parameters=True)


def check_batch(batch: int, ctx: DistContext) -> None:
    if batch % ctx.world_size:
        raise TrainError(f"global batch {batch} does not split over {ctx.world_size} processes",
                         hint=f"use a batch that is a multiple of {ctx.world_size}")


def shard(x: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """This rank's contiguous slice of the global batch (dim 0)."""
    if not ctx.enabled:
        return x
    per = x.size(0) // ctx.world_size
    return x[ctx.rank * per:(ctx.rank + 1) * per]


def sum_scalars(values: list[float], ctx: DistContext) -> list[float]:
    """Sum floats over ranks (one small all-reduce); identity on one process."""
    if not ctx.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return t.tolist()


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def cleanup(ctx: DistContext, barrier: bool = True) -> None:
    """Destroy the process group we opened. `barrier=False` after an error (peers may be gone)."""
    if ctx.owns_group and dist.is_initialized() and not ctx.closed:
        # every rank arrives first: rank 0 may still be drawing the plot, and a rank that tore its
        # gloo connections down meanwhile was once seen aborting at exit ("terminate called without
        # an active exception", CI under load)
        if barrier:
            dist.barrier()
        ctx.closed = True
        dist.destroy_process_group()


# ---------------------------------------------------------------------------
# FSDP (FSDP2's fully_shard): parameters, gradients and optimizer state sharded over the ranks


def shard_model(model, ctx: DistContext):
    """Shard `model` in place. Parameters stay gathered between forward and backward (the
    in-context levels read them many times per step); they are sharded between steps."""
    from torch.distributed.fsdp import fully_shard

    model.detach_state_output = True  # as under DDP: the fast state is not backpropagated across batches
    fully_shard(model, reshard_after_forward=False)
    return model


class _FullModel:
    """What save_checkpoint reads from a model, with the full (gathered) state dict."""

    def __init__(self, model, sd):
        self._m, self._sd = model, sd

    def state_dict(self):
        return self._sd

    def __getattr__(self, name):
        return getattr(self._m, name)


class _FullOptimizer:
    def __init__(self, sd):
        self._sd = sd

    def state_dict(self):
        return self._sd


def full_state(model, optimizer):
    """Full model and optimizer state dicts (a collective: every rank must call it)."""
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                         get_optimizer_state_dict)

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return (_FullModel(model, get_model_state_dict(model, options=opts)),
            _FullOptimizer(get_optimizer_state_dict(model, optimizer, options=opts)))


def load_full_optimizer_state(model, optimizer, ckpt_path) -> None:
    """Restore an optimizer state saved by `full_state` into a sharded optimizer. The file is
    checked against its checksum and unpickled with `weights_only=True` (tensors and plain
    values only), like every checkpoint nlc reads."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    from nlc.train.checkpoint import STATE, CheckpointError, _read_verified, load_state, read_record

    ckpt = Path(ckpt_path)
    st = load_state(_read_verified(ckpt, STATE, read_record(ckpt)), ckpt / STATE, "cpu")
    if st.get("optimizer") is None:
        raise CheckpointError(f"checkpoint {ckpt} has no optimizer state to resume from")
    set_optimizer_state_dict(model, optimizer, optim_state_dict=st["optimizer"],
                             options=StateDictOptions(full_state_dict=True))
