"""The training loop: cosine lr with warmup, clipping, progress, JSONL metrics, eval, checkpoints.

    from nlc.api import compile
    from nlc.train.data import default_corpus
    from nlc.train.loop import train
    report = train(compile("specs/hope.nl"), default_corpus(), steps=200, out_dir="runs/hope")
    print(report.format())

Step k (0-based) trains on `get_batch(data, batch, seq_len, seed, k)`; a checkpoint after
k steps stores weights, optimizer, RNG and k. So a run resumed from any checkpoint ends
with exactly the weights of the uninterrupted run (bit-identical on CPU).

Resuming takes the run's own arguments (steps, batch, seq_len, lr, warmup, clip,
weight_decay) from its checkpoint; any given explicitly win, take effect (the optimizer's
restored lr and weight decay are overwritten, warmup and the cosine schedule follow the
new values), and are printed in a `note: resuming ... with lr=... (run used ...)` line.
The run directory is locked for the whole run (`checkpoint.lock_run_dir`), and only
healthy checkpoints are written (`checkpoint.weights_problem`): when the weights blow up
the run stops with the last good checkpoint kept and a hint naming a recovery
(`--resume --lr <a tenth of the run's lr>`).
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
from nlc.train import checkpoint as C
from nlc.train.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint, set_rng_state, unwrap
from nlc.train.data import Corpus, as_array, check_length, get_batch, load_data
from nlc.train.defaults import DEFAULTS, FALLBACK_LR  # DEFAULTS: when neither the call nor the spec gives a value
from nlc.train.errors import DivergedError, TrainError
from nlc.train.evaluate import eval_loss
from nlc.train.metrics import LN2, METRICS, MetricsLog, to_float

# what a resumed run takes from its checkpoint's record unless given again
RESUMED = ("steps", "batch", "seq_len", "lr", "warmup", "clip", "weight_decay")


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
    rank: int = 0              # under torchrun: the CLI prints the report of rank 0 only

    def format(self) -> str:
        head = "interrupted" if self.interrupted else "trained"
        if self.resumed_from is not None and self.resumed_from >= self.steps:  # a finished run, resumed
            s = [f"{self.spec_name or 'model'} [{self.backend}]: already at step {self.resumed_from} of {self.steps}; "
                 "nothing trained (pass a larger --steps to continue it)"]
        else:
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


def _gain_row(raw, val_arr, batch, seq_len, fsdp, bytes_per_token) -> dict:
    """`gain/<level>`: the in-context gain of each level (bpb frozen - bpb learning, on 4 validation
    batches), logged beside val_bpb. Not under FSDP (a frozen copy would need its own sharding)."""
    if fsdp or not hasattr(raw, "schedule"):  # an NLModel (not a stand-in)
        return {}
    from nlc.train.evaluate import in_context_gain
    res = in_context_gain(raw, val_arr, batch=batch, seq_len=seq_len, max_batches=4)
    return {} if res is None else {f"gain/{k}": g / bytes_per_token for k, g in res.gain.items()}


def resolve_args(model, saved: dict | None = None, defaults: dict | None = None, **given) -> dict:
    """Call arguments (not None) > a resumed run's own (`saved`, for RESUMED keys) > the spec's
    `train_defaults` > `defaults` (the caller's, e.g. the CLI's CPU sizes) > DEFAULTS."""
    args = dict(DEFAULTS)
    args.update({k: v for k, v in (defaults or {}).items() if k in DEFAULTS and v is not None})
    args.update({k: v for k, v in (getattr(unwrap(model), "train_defaults", None) or {}).items() if k in DEFAULTS})
    args.update({k: v for k, v in (saved or {}).items() if k in RESUMED and v is not None})
    args.update({k: v for k, v in given.items() if v is not None})
    for k in ("steps", "batch", "seq_len"):
        if not isinstance(args[k], int) or args[k] <= 0:
            raise TrainError(f"{k} must be a positive integer, got {args[k]!r}",
                             hint=f"pass --{k.replace('_', '-')} N with N >= 1")
    if not isinstance(args["warmup"], int) or args["warmup"] < 0:
        raise TrainError(f"warmup must be a whole number of steps >= 0, got {args['warmup']!r}",
                         hint="pass --warmup N with N >= 0")
    for k in ("lr", "clip", "weight_decay"):
        v = args[k]
        if v is not None and (not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0
                              or (k == "lr" and v == 0)):
            raise TrainError(f"{k} must be a finite number {'> 0' if k == 'lr' else '>= 0'}, got {v!r}",
                             hint=f"pass --{k.replace('_', '-')} with a value such as "
                                  f"{ {'lr': FALLBACK_LR, 'clip': DEFAULTS['clip'], 'weight_decay': 0.01}[k]}")
    return args


def apply_hyperparams(opt, peak_lrs: list[float], weight_decay: float | None) -> None:
    """Set each group's peak lr (`initial_lr`, scaled by the schedule every step) and, if given, its
    weight decay. Called after building the optimizer and again after a resume has loaded the saved
    optimizer state, whose param groups would otherwise bring back the run's old values."""
    for g, lr in zip(opt.param_groups, peak_lrs):
        g["initial_lr"] = lr
    if weight_decay is not None:
        groups = [g for g in opt.param_groups if "weight_decay" in g]
        env = getattr(opt, "env", None)  # a spec-defined optimizer (NLOptimizer): its declared parameters
        has_env = isinstance(env, dict) and "weight_decay" in env
        if not groups and not has_env:
            raise TrainError(f"--weight-decay {weight_decay:g}: the spec's outer optimizer "
                             f"({type(opt).__name__}) has no weight decay",
                             hint="drop --weight-decay, or give the outer level a rule with decay (AdamW)")
        for g in groups:
            g["weight_decay"] = weight_decay
        if has_env:
            env["weight_decay"] = weight_decay


def current_weight_decay(opt) -> float | None:
    env = getattr(opt, "env", None)
    if isinstance(env, dict) and "weight_decay" in env:
        return env["weight_decay"]
    return opt.param_groups[0].get("weight_decay")


def lr_multiplier(step: int, warmup: int, steps: int, min_ratio: float = 0.1) -> float:
    """Linear warmup to 1, then cosine decay to `min_ratio` at the last step."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def make_optimizer(model, lr: float | None):
    """The spec's outer optimizer level (or AdamW at FALLBACK_LR); `lr` rescales all groups, keeping their ratios."""
    m = unwrap(model)
    make = getattr(m, "optimizer", None)  # NLModel.optimizer(): the spec's outer optimizer level
    opt = make() if callable(make) else torch.optim.AdamW(m.parameters(), lr=FALLBACK_LR)
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


def recovery_hint(peak_lr: float | None, last_good) -> str:
    """What to do after a blow-up: a lower lr from the last good checkpoint (a recovery that works:
    tests/train/test_loop.py and tests/test_cli_run.py follow it to a finished run)."""
    lower = f"--lr {peak_lr / 10:.3g}" if peak_lr else "a lower --lr"
    was = f" (this run's peak lr is {peak_lr:.3g})" if peak_lr else ""
    if last_good:
        first = f"continue from the last good checkpoint with a lower learning rate: --resume {lower}{was}"
    else:
        first = f"start again with a lower learning rate: {lower}{was}, without --resume (nothing was saved)"
    return first + "; a longer --warmup, --clip 1.0 or --weight-decay 0.1 may help too"


def diagnose(step: int, what: str, value: float, out, model, last_good, peak_lr: float | None = None) -> DivergedError:
    """A DivergedError naming the level whose fast state or stats went non-finite (or grew largest)."""
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
    hint = recovery_hint(peak_lr, last_good)
    if levels:  # the level's own gradient descent overshot: its step size first, the outer lr second
        hint = f"{inner_hint(levels[0], getattr(unwrap(model), 'config', {}))}; or {hint}"
    return DivergedError(f"{what} is {value} at step {step + 1}; {where}; {keep}", hint=hint)


def inner_hint(level: str, config: dict) -> str:
    """A level's in-context update blew up: its own gradient descent overshot, so its inner step (its
    rule's lr gate; the built-in Titans and Hope specs scale it by their parameter lr_max) is the first
    thing to change. That is a new spec, so a new run: --resume refuses a changed --set. A trained memory
    can sit within 2-3x of the step where it overshoots, at any lr_max (docs/results.md, "Titans MAG's
    blow-up"; scripts/inner_margin.py measures it), so a smaller step is no guarantee."""
    lr_max = config.get("lr_max")
    how = (f"--set lr_max={lr_max / 2:g} (this run's is {lr_max:g})" if isinstance(lr_max, (int, float)) and lr_max > 0
           else "a smaller lr gate in its rule")
    return (f"level {level!r} overshot in context: start a new run (a new --out; --resume refuses a changed "
            f"--set) with a smaller inner step, {how}")


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
          dist_ctx=None, fsdp=False, bytes_per_token: float = 1.0, weight_decay=None, defaults=None,
          dist_timeout: float | None = None, max_abs_weight: float = C.MAX_ABS_WEIGHT) -> Report:
    """Train `model` on byte data (a Corpus, a path, a uint8 array, bytes or a tensor); see the module docstring.

    None means "the resumed run's value, else the spec's train_defaults, else `defaults`, else
    DEFAULTS". eval_every / save_every <= 0 disable periodic eval / saves (a final checkpoint is
    always written). `dist_timeout`: seconds a collective may wait for a silent peer under torchrun
    (default `distributed.DEFAULT_TIMEOUT_S`). Raises TrainError, DataError or CheckpointError with a
    message and hint for the CLI.
    """
    t_start = time.time()
    out_dir = Path(out_dir)
    given = dict(steps=steps, batch=batch, seq_len=seq_len, lr=lr, warmup=warmup, clip=clip,
                 weight_decay=weight_decay, log_every=log_every, eval_every=eval_every, save_every=save_every)
    resolve_args(model, defaults=defaults, **given)  # bad arguments fail before anything is touched
    ctx = dist_ctx or D.setup_distributed(timeout=dist_timeout)
    lock = C.lock_run_dir(out_dir) if ctx.is_main else None  # rank 0 writes the run; nobody else may
    try:
        opts = dict(seed=seed, resume=resume, fsdp=fsdp, keep=keep, val_data=val_data, t_start=t_start,
                    bytes_per_token=bytes_per_token, defaults=defaults, max_abs_weight=max_abs_weight,
                    tensorboard=tensorboard, backend_label=backend_label, progress=progress,
                    eval_batches=eval_batches, plot=plot, dist_ctx=dist_ctx)
        return _train(model, data, ctx, out_dir, given, opts)
    finally:
        if lock is not None:
            lock.release()
        if dist_ctx is None and ctx.enabled and not ctx.closed:
            D.cleanup(ctx, barrier=False)  # an error ended the run: no barrier with peers that may be gone


def _train(model, data, ctx, out_dir, given, kw) -> Report:
    seed, resume, fsdp, keep = kw["seed"], kw["resume"], kw["fsdp"], kw["keep"]
    val_data, bytes_per_token, t_start = kw["val_data"], kw["bytes_per_token"], kw["t_start"]
    if ctx.is_main:
        C.clean_temps(out_dir)
    saved, saved_seed = None, None
    if resume:
        rec = C.read_record(C.resolve(out_dir))
        saved, saved_seed = rec.get("train_args") or {}, rec.get("seed")
    a = resolve_args(model, saved=saved, defaults=kw["defaults"], **given)
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

    raw = unwrap(model).to(ctx.device)
    if fsdp and not ctx.enabled:
        raise TrainError("FSDP shards a model over several processes", hint="run under torchrun --nproc-per-node N")
    if fsdp:
        # full weights go in before sharding; the optimizer is built over the sharded parameters
        ck = load_checkpoint(out_dir, raw, None, map_location=ctx.device) if resume else None
        D.shard_model(raw, ctx)
    opt = make_optimizer(raw, a["lr"])
    spec_wd = current_weight_decay(opt)
    peak_lrs = [g["initial_lr"] for g in opt.param_groups]
    apply_hyperparams(opt, peak_lrs, a["weight_decay"])
    start, resumed_from, last_good = 0, None, None
    if resume:
        if fsdp:
            D.load_full_optimizer_state(raw, opt, ck.path)
        else:
            ck = load_checkpoint(out_dir, raw, opt, map_location=ctx.device)
        start = resumed_from = ck.step
        old_lr = opt.param_groups[0].get("initial_lr")
        old_wd = saved.get("weight_decay")
        if old_wd is None:  # the run used the spec's (restored with the param groups, or declared in the spec)
            old_wd = opt.param_groups[0].get("weight_decay", spec_wd)
        apply_hyperparams(opt, peak_lrs, a["weight_decay"])  # the saved param groups brought back the old ones
        problem = C.weights_problem([(n, p_) for n, p_ in raw.named_parameters()], fast_state=ck.fast_state,
                                    max_abs=kw["max_abs_weight"])
        if problem:
            raise TrainError(f"checkpoint {ck.path} holds blown-up weights ({problem}); it is no place to resume from",
                             hint=f"resume from an earlier checkpoint of {out_dir} "
                                  f"({', '.join(p_.name for p_ in list_checkpoints(out_dir)) or 'none'}), "
                                  "or start a new run with a lower --lr")
        last_good = ck.path
        if ck.rng is not None:
            set_rng_state(ck.rng)
        was = {**saved, "seed": saved_seed if saved_seed is not None else seed, "lr": old_lr,
               "weight_decay": old_wd}
        now = {**a, "seed": seed, "lr": opt.param_groups[0]["initial_lr"],
               "weight_decay": current_weight_decay(opt)}
        changed = [f"{k}={now[k]:g} (run used {was[k]:g})" if isinstance(now[k], float) and isinstance(was[k], float)
                   else f"{k}={now[k]} (run used {was[k]})"
                   for k in ("steps", "batch", "seq_len", "seed", "lr", "warmup", "clip", "weight_decay")
                   if k in was and was[k] is not None and now.get(k) is not None and was[k] != now[k]]
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
    try:
        log = MetricsLog(out_dir, enabled=ctx.is_main, tensorboard=kw["tensorboard"], resume_step=resumed_from)
    except OSError as e:
        raise C.unwritable(out_dir, e) from None
    record = {"seed": seed, "backend": kw["backend_label"], "train_args": a, "world_size": ctx.world_size}

    from tqdm.auto import tqdm

    bar = tqdm(total=steps, initial=start, disable=not (kw["progress"] and ctx.is_main) or start >= steps,
               dynamic_ncols=True,
               unit="step", mininterval=0.5)
    tokens_per_step = batch * seq_len
    step, out, val_bpb, interrupted, ckpt_path = start, None, None, False, last_good
    win_loss, win_n, win_t, win_step = 0.0, 0, time.time(), start
    last_loss, t_loop, params = None, time.time(), [p for p in raw.parameters() if p.requires_grad]
    param_names = {n for n, p_ in raw.named_parameters()}

    saved_at = start if resume else None

    def probe(s) -> str | None:
        """The loss of the weights about to be saved, on the batch that would come next: finite weights
        can already be poisoned (seen: |w| < 1e3, and the next step's loss 3e2, its gradient inf,
        whatever the lr). RNG state is kept, so a resumed run stays bit-identical."""
        if not (ctx.is_main or fsdp):
            return None
        rng = torch.get_rng_state()
        try:
            x, y = get_batch(train_arr, batch, seq_len, seed, s)
            if fsdp:
                x, y = D.shard(x, ctx), D.shard(y, ctx)
            x, y = x.to(ctx.device), y.to(ctx.device)
            with torch.no_grad():
                raw.eval()
                o = raw(x, state=None if fsdp else raw.init_state(x.size(0)), targets=y)
                pl = o.loss if o.loss is not None else F.cross_entropy(o.logits.float().flatten(0, 1), y.flatten())
                vocab = o.logits.size(-1)
        finally:
            raw.train()
            torch.set_rng_state(rng)
        pl = float(pl)
        if fsdp:
            pl = D.sum_scalars([pl], ctx)[0] / ctx.world_size
        if not math.isfinite(pl) or pl > 2 * math.log(vocab):
            return (f"their loss on the next batch is {pl:.4g}, more than twice that of uniform guessing "
                    f"({math.log(vocab):.3g} nats over {vocab} tokens)")
        return None

    def save(s):
        nonlocal last_good, ckpt_path, saved_at
        saved_at = s
        m_, o_ = (raw, opt) if not fsdp else D.full_state(raw, opt)  # FSDP: gathered on every rank
        fast = None if fsdp else getattr(out, "state", None)
        # a checkpoint is kept only if healthy (checkpoint.weights_problem); every rank learns the verdict
        problem = None
        if ctx.is_main:
            named = [(n, v) for n, v in m_.state_dict().items() if n in param_names and isinstance(v, torch.Tensor)]
            problem = C.weights_problem(named, o_.state_dict(), fast, max_abs=kw["max_abs_weight"])
        if problem is None:
            problem = probe(s)
        if D.sum_scalars([1.0 if problem else 0.0], ctx)[0] > 0:
            keep_ = f"last good checkpoint {last_good} is kept" if last_good else "no checkpoint was saved yet"
            raise DivergedError(f"the weights blew up by step {s} ({problem or 'seen on rank 0'}); "
                                f"not saving them; {keep_}", hint=recovery_hint(peak_lrs[0], last_good))
        if ctx.is_main:
            metrics = {"train_loss": last_loss, "val_bpb": val_bpb, "tokens_seen": s * tokens_per_step}
            # (under FSDP the last fast state may view parameter storage FSDP has freed: not saved;
            # training starts every batch from a fresh state anyway)
            ckpt_path = last_good = save_checkpoint(out_dir, m_, o_, s, fast_state=fast,
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
                    raise diagnose(step, "loss", loss_val, out, raw, last_good, peak_lrs[0])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                gnorm = torch.nn.utils.clip_grad_norm_(params, a["clip"] if a["clip"] and a["clip"] > 0 else math.inf)
                if not torch.isfinite(gnorm):
                    raise diagnose(step, "gradient norm", float(gnorm), out, raw, last_good, peak_lrs[0])
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
                    vl = eval_loss(raw, val_arr, batch=batch, seq_len=seq_len, max_batches=kw["eval_batches"])
                    val_bpb = vl / LN2 / bytes_per_token
                    log.log({"step": step, "val_loss": vl, "val_bpb": val_bpb, **_gain_row(raw, val_arr, batch, seq_len,
                                                                                      fsdp, bytes_per_token)})
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
    except RuntimeError as e:
        err = D.peer_error(e, ctx, step, last_good)
        if err is None:
            raise
        raise err from None
    finally:
        bar.close()
        log.close()

    plot_path = None
    if kw["plot"] and ctx.is_main:
        try:
            from nlc.train.plot import plot_run

            plot_path = plot_run(out_dir, out_dir / "loss.png")
        except Exception as e:  # a plot must never lose a finished run
            print(f"note: could not draw the loss plot: {e}")
    if kw["dist_ctx"] is None:
        # we opened the process group, so we close it; first drop the DDP wrapper and the optimizer,
        # which hold references to it, so it is torn down here and not at interpreter exit (where a
        # rank was seen aborting: "terminate called without an active exception", under load)
        net = opt = None  # noqa: F841
        gc.collect()
        try:
            D.cleanup(ctx)
        except RuntimeError as e:
            err = D.peer_error(e, ctx, step, last_good)
            if err is None:
                raise
            raise err from None
    wall = time.time() - t_start
    done = step - start
    return Report(out_dir, getattr(raw, "spec_name", None), step, last_loss, val_bpb,
                  done * tokens_per_step / max(time.time() - t_loop, 1e-9), wall, ckpt_path, out_dir / METRICS,
                  plot_path, kw["backend_label"], bytes_per_token, interrupted, resumed_from, ctx.rank)
