"""The training loop: cosine lr with warmup, clipping, progress, JSONL metrics, eval, checkpoints.

    from nlc.api import compile
    from nlc.train.data import default_corpus
    from nlc.train.loop import train
    report = train(compile("specs/hope.nl"), default_corpus(), steps=200, out_dir="runs/hope")
    print(report.format())

Step k (0-based) trains on `get_batch(data, batch, seq_len, seed, k)`; a checkpoint after
k steps stores weights, optimizer, RNG and k. So a run resumed from any checkpoint ends
with exactly the weights of the uninterrupted run (bit-identical on CPU).
"""
from __future__ import annotations

import gc
import math
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from nlc.train import distributed as D
from nlc.train.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint, set_rng_state, unwrap
from nlc.train.data import Corpus, as_array, check_length, get_batch, load_data
from nlc.train.errors import TrainError
from nlc.train.evaluate import eval_loss
from nlc.train.metrics import LN2, METRICS, MetricsLog, to_float

# used when neither the call nor the spec's train_defaults give a value
DEFAULTS = dict(steps=1000, batch=8, seq_len=256, lr=None, warmup=100, clip=1.0,
                log_every=10, eval_every=200, save_every=500)


@dataclass
class Report:
    run_dir: Path
    spec_name: str | None
    steps: int                 # steps completed (== the requested steps unless interrupted)
    train_loss: float | None   # loss of the last step, nats
    val_bpb: float | None
    tokens_per_s: float
    wall_s: float
    checkpoint: Path | None
    metrics_log: Path
    plot: Path | None
    backend: str = "torch"
    bytes_per_token: float = 1.0  # > 1 with a tokenizer: bits per byte = bits per token / this
    interrupted: bool = False
    resumed_from: int | None = None

    def format(self) -> str:
        head = "interrupted" if self.interrupted else "trained"
        s = [f"{head} {self.spec_name or 'model'} [{self.backend}]: {self.steps} steps in {self.wall_s:.1f} s, "
             f"{self.tokens_per_s:,.0f} tok/s" + (f" (resumed from step {self.resumed_from})" if self.resumed_from else "")]
        if self.train_loss is not None:
            s.append(f"  train loss {self.train_loss:.4f} ({self.train_loss / LN2 / self.bytes_per_token:.3f} bpb)"
                     + (f", val bpb {self.val_bpb:.3f}" if self.val_bpb is not None else ""))
        s.append(f"  checkpoint {self.checkpoint}")
        s.append(f"  metrics    {self.metrics_log}")
        if self.plot:
            s.append(f"  plot       {self.plot}")
        if self.interrupted:
            s.append(f"  continue with --resume (out dir {self.run_dir})")
        return "\n".join(s)


def resolve_args(model, **given) -> dict:
    """Call arguments (not None) > the spec's `train_defaults` > DEFAULTS."""
    args = dict(DEFAULTS)
    args.update({k: v for k, v in (getattr(unwrap(model), "train_defaults", None) or {}).items() if k in DEFAULTS})
    args.update({k: v for k, v in given.items() if v is not None})
    for k in ("steps", "batch", "seq_len"):
        if not isinstance(args[k], int) or args[k] <= 0:
            raise TrainError(f"{k} must be a positive integer, got {args[k]!r}",
                             hint=f"pass --{k.replace('_', '-')} N with N >= 1")
    return args


def lr_multiplier(step: int, warmup: int, steps: int, min_ratio: float = 0.1) -> float:
    """Linear warmup to 1, then cosine decay to `min_ratio` at the last step."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def make_optimizer(model, lr: float | None):
    """The spec's outer optimizer level (or AdamW 3e-4); `lr` rescales all groups, keeping their ratios."""
    m = unwrap(model)
    make = getattr(m, "make_optimizer", None)
    opt = make() if make is not None else torch.optim.AdamW(m.parameters(), lr=3e-4)
    base = opt.param_groups[0]["lr"]
    for g in opt.param_groups:
        g["initial_lr"] = g["lr"] * (lr / base if lr is not None and base else 1.0)
    return opt


def level_of(key: str, levels: set[str]) -> str:
    """The level a state/stat key belongs to: `"<level>/stat"`, or `"<level>.<tensor>"` for state."""
    if "/" in key:
        return key.split("/")[0]
    owners = [lv for lv in levels if key.startswith(lv + ".")]
    return max(owners, key=len) if owners else key.rsplit(".", 1)[0]


def diagnose(step: int, what: str, value: float, out, model, last_good) -> TrainError:
    """A TrainError naming the level whose fast state or stats went non-finite (or grew largest)."""
    bad = lambda v: isinstance(v, torch.Tensor) and not torch.isfinite(v.detach()).all()  # noqa: E731
    stats, state = getattr(out, "stats", None) or {}, getattr(out, "state", None) or {}
    known = {k.split("/")[0] for k in stats if "/" in k}
    keys = [k for k, v in state.items() if bad(v)] + [k for k, v in stats.items() if bad(v)]
    levels = list(dict.fromkeys(level_of(k, known) for k in keys))
    if levels:
        where = f"level {levels[0]!r} blew up: non-finite {', '.join(keys[:4])}"
    else:
        params = [n for n, p in unwrap(model).named_parameters() if not torch.isfinite(p.detach()).all()]
        norms = {k: to_float(v) for k, v in stats.items() if k.endswith("update_norm")}
        if params:
            where = f"parameters {', '.join(params[:4])} are non-finite"
        elif norms:
            k = max(norms, key=norms.get)
            where = f"every level state is finite; the largest update norm is level {k.split('/')[0]!r} ({norms[k]:.3g})"
        else:
            where = "no level state is non-finite"
    keep = f"last good checkpoint {last_good} is kept" if last_good else "no checkpoint was saved yet"
    return TrainError(f"{what} is {value} at step {step + 1}; {where}; {keep}",
                      hint="lower --lr (or that level's inner lr), raise --warmup, or set --clip; "
                           "then --resume from the last good checkpoint")


class _StopFlag:
    """First SIGINT/SIGTERM: finish the step, save, stop. A second SIGINT aborts at once."""

    def __init__(self):
        self.set, self.old = False, {}

    def _handle(self, signum, frame):
        if self.set and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.set = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self.old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        for s, h in self.old.items():
            signal.signal(s, h)
        return False


def train(model, data, *, steps=None, batch=None, seq_len=None, lr=None, warmup=None, clip=None, seed=0,
          out_dir="runs/run", resume=False, log_every=None, eval_every=None, save_every=None, val_data=None,
          backend_label="torch", keep=3, eval_batches=16, progress=True, tensorboard=False, plot=True,
          dist_ctx=None, fsdp=False, bytes_per_token: float = 1.0) -> Report:
    """Train `model` on byte data (a Corpus, a path, a uint8 array, bytes or a tensor); see the module docstring.

    None means "the spec's train_defaults, else DEFAULTS". eval_every / save_every <= 0
    disable periodic eval / saves (a final checkpoint is always written). Raises TrainError,
    DataError or CheckpointError with a message and hint for the CLI.
    """
    t_start = time.time()
    ctx = dist_ctx or D.setup_distributed()
    a = resolve_args(model, steps=steps, batch=batch, seq_len=seq_len, lr=lr, warmup=warmup, clip=clip,
                     log_every=log_every, eval_every=eval_every, save_every=save_every)
    steps, batch, seq_len = a["steps"], a["batch"], a["seq_len"]
    D.check_batch(batch, ctx)
    if isinstance(data, (str, Path)):  # a path: the same reading and checks as --data
        data = load_data(data)
    if val_data is None and isinstance(data, Corpus):
        val_data = data.val
    train_arr = as_array(data)
    check_length(train_arr, seq_len)
    val_arr = as_array(val_data) if val_data is not None else None
    if val_arr is not None and len(val_arr) < seq_len + 1:
        if ctx.is_main:
            print(f"note: validation data ({len(val_arr)} bytes) is shorter than one sequence; skipping validation")
        val_arr = None

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = unwrap(model).to(ctx.device)
    if fsdp and not ctx.enabled:
        raise TrainError("FSDP shards a model over several processes", hint="run under torchrun --nproc-per-node N")
    if fsdp:
        # full weights go in before sharding; the optimizer is built over the sharded parameters
        ck = load_checkpoint(out_dir, raw, None, map_location=ctx.device) if resume else None
        D.shard_model(raw, ctx)
    opt = make_optimizer(raw, a["lr"])
    start, resumed_from, last_good = 0, None, None
    if resume:
        if fsdp:
            D.load_full_optimizer_state(raw, opt, ck.path)
        else:
            ck = load_checkpoint(out_dir, raw, opt, map_location=ctx.device)
        start = resumed_from = ck.step
        last_good = ck.path
        if ck.rng is not None:
            set_rng_state(ck.rng)
        was = {**ck.record.get("train_args", {}), "seed": ck.record.get("seed", seed)}
        changed = [f"{k}={v} (run used {was[k]})" for k, v in {**a, "seed": seed}.items()
                   if k in ("batch", "seq_len", "seed", "steps", "warmup") and k in was and was[k] != v]
        if changed and ctx.is_main:  # allowed, but the run no longer matches an uninterrupted one
            print(f"note: resuming {ck.path.name} with {', '.join(changed)}")
    else:
        if list_checkpoints(out_dir):
            raise TrainError(f"{out_dir} already holds a run ({list_checkpoints(out_dir)[-1].name})",
                             hint="pass --resume to continue it, or choose another --out folder")
        torch.manual_seed(seed)
    if start >= steps and ctx.is_main:
        print(f"note: checkpoint is at step {start}, nothing to do for steps={steps}")
    net = raw if fsdp else D.wrap_model(raw, ctx)
    log = MetricsLog(out_dir, enabled=ctx.is_main, tensorboard=tensorboard, resume_step=resumed_from)
    record = {"seed": seed, "backend": backend_label, "train_args": a, "world_size": ctx.world_size}

    from tqdm.auto import tqdm

    bar = tqdm(total=steps, initial=start, disable=not (progress and ctx.is_main), dynamic_ncols=True,
               unit="step", mininterval=0.5)
    tokens_per_step = batch * seq_len
    step, out, val_bpb, interrupted, ckpt_path = start, None, None, False, last_good
    win_loss, win_n, win_t, win_step = 0.0, 0, time.time(), start
    last_loss, t_loop, params = None, time.time(), [p for p in raw.parameters() if p.requires_grad]

    saved_at = start if resume else None

    def save(s):
        nonlocal last_good, ckpt_path, saved_at
        saved_at = s
        m_, o_ = (raw, opt) if not fsdp else D.full_state(raw, opt)  # FSDP: gathered on every rank
        if ctx.is_main:
            metrics = {"train_loss": last_loss, "val_bpb": val_bpb, "tokens_seen": s * tokens_per_step}
            # (under FSDP the last fast state may view parameter storage FSDP has freed: not saved;
            # training starts every batch from a fresh state anyway)
            ckpt_path = last_good = save_checkpoint(out_dir, m_, o_, s,
                                                    fast_state=None if fsdp else getattr(out, "state", None),
                                                    record={**record, "metrics": metrics}, keep=keep)

    try:
        with _StopFlag() as stop:
            while step < steps:
                mult = lr_multiplier(step, a["warmup"], steps)
                for g in opt.param_groups:
                    g["lr"] = g["initial_lr"] * mult
                x, y = get_batch(train_arr, batch, seq_len, seed, step)
                x, y = D.shard(x, ctx).to(ctx.device), D.shard(y, ctx).to(ctx.device)
                net.train()
                # fresh fast state per batch: in-context memory belongs to one sequence
                # (under FSDP the model builds it inside forward, where its parameters are gathered)
                out = net(x, state=None if fsdp else raw.init_state(x.size(0)), targets=y)
                loss = out.loss if out.loss is not None else \
                    F.cross_entropy(out.logits.float().flatten(0, 1), y.flatten())
                # one all-reduce: the global loss (so every rank agrees on NaN) and the stop flag
                loss_sum, stops = D.sum_scalars([float(loss.detach()), float(stop.set)], ctx)
                loss_val = loss_sum / ctx.world_size
                if not math.isfinite(loss_val):
                    raise diagnose(step, "loss", loss_val, out, raw, last_good)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                gnorm = torch.nn.utils.clip_grad_norm_(params, a["clip"] if a["clip"] and a["clip"] > 0 else math.inf)
                if not torch.isfinite(gnorm):
                    raise diagnose(step, "gradient norm", float(gnorm), out, raw, last_good)
                opt.step()
                step += 1
                last_loss = loss_val
                win_loss, win_n = win_loss + loss_val, win_n + 1
                bar.update(1)

                if step % a["log_every"] == 0 or step == steps:
                    dt = max(time.time() - win_t, 1e-9)
                    tok_s = (step - win_step) * tokens_per_step / dt
                    row = {"step": step, "loss": win_loss / win_n, "bpb": win_loss / win_n / LN2 / bytes_per_token,
                           "lr": opt.param_groups[0]["lr"], "tok_s": tok_s, "grad_norm": float(gnorm),
                           "time": time.time() - t_start, **(out.stats or {})}
                    log.log(row)
                    bar.set_postfix(loss=f"{row['loss']:.3f}", bpb=f"{row['bpb']:.3f}", tok_s=f"{tok_s:,.0f}")
                    win_loss, win_n, win_t, win_step = 0.0, 0, time.time(), step
                # under FSDP every rank evaluates (the forward gathers parameters collectively)
                if val_arr is not None and (ctx.is_main or fsdp) and (
                        (a["eval_every"] > 0 and step % a["eval_every"] == 0) or step == steps):
                    vl = eval_loss(raw, val_arr, batch=batch, seq_len=seq_len, max_batches=eval_batches)
                    val_bpb = vl / LN2 / bytes_per_token
                    log.log({"step": step, "val_loss": vl, "val_bpb": val_bpb})
                if (a["save_every"] > 0 and step % a["save_every"] == 0) or step == steps:
                    save(step)
                if stops > 0:
                    interrupted = True
                    if saved_at != step:
                        save(step)
                    if ctx.is_main:
                        bar.write(f"interrupted: saved a checkpoint at step {step}; continue with --resume")
                    break
        D.barrier(ctx)  # rank 0 may still be saving; nobody leaves before it is done
    except KeyboardInterrupt:
        if ctx.is_main:
            bar.write(f"aborted at step {step} by a second Ctrl-C; last checkpoint: {last_good or 'none'}")
        raise
    finally:
        bar.close()
        log.close()

    plot_path = None
    if plot and ctx.is_main:
        try:
            from nlc.train.plot import plot_run

            plot_path = plot_run(out_dir, out_dir / "loss.png")
        except Exception as e:  # a plot must never lose a finished run
            print(f"note: could not draw the loss plot: {e}")
    if dist_ctx is None:
        # we opened the process group, so we close it; first drop the DDP wrapper and the optimizer,
        # which hold references to it, so it is torn down here and not at interpreter exit (where a
        # rank was seen aborting: "terminate called without an active exception", under load)
        net = opt = None  # noqa: F841
        gc.collect()
        D.cleanup(ctx)
    wall = time.time() - t_start
    done = step - start
    return Report(out_dir, getattr(raw, "spec_name", None), step, last_loss, val_bpb,
                  done * tokens_per_step / max(time.time() - t_loop, 1e-9), wall, ckpt_path, out_dir / METRICS,
                  plot_path, backend_label, bytes_per_token, interrupted, resumed_from)
