"""Subcommands that run models: train, eval, generate, plot, export, bench. They import torch
(lazily, inside each command) so `nlc check` and `nlc graph` stay fast."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nlc.errors import NlcError
from nlc.ir.schedule import BACKENDS
from nlc.train import defaults as D


class RunError(NlcError):
    pass


def _ov(a):
    from nlc.cli import _overrides
    return _overrides(getattr(a, "set", None))


def _add_freeze(p):
    p.add_argument("--freeze", metavar="LEVELS",
                   help="switch off in-context learning of these levels (comma-separated names, or 'inner' for "
                        "every memory and CMS stage): they keep their initial state. On a run trained with --freeze, "
                        "those levels stay frozen (the run records them)")


def _freeze(model, a):
    """The loaded model with `--freeze` applied (rescheduled: nlc.freeze)."""
    from nlc.api import freeze
    return freeze(model, a.freeze) if getattr(a, "freeze", None) else model


def fill_all(sub):
    for fill in (fill_train, fill_eval, fill_generate, fill_plot, fill_export, fill_bench):
        fill(sub)
    from nlc.sweep import fill_sweep
    fill_sweep(sub)


# ---- train ---------------------------------------------------------------------
def fill_train(sub):
    p = sub.add_parser("train", help="train a model from a spec (default: the embedded stdlib corpus)")
    p.add_argument("spec", help=".nl spec file or built-in spec by name (hope, titans:TitansMAG)")
    p.add_argument("--data", help="a text file, a folder of text files, or hf:NAME[:CONFIG][@SPLIT] / hf:PATH "
                   "(Hugging Face datasets, where installed); default: Python's stdlib source")
    p.add_argument("--tokenizer", default="bytes",
                   help="bytes (default, vocab 256), tiktoken:NAME or tiktoken:/path/file.tiktoken (sets vocab)")
    p.add_argument("--steps", type=int, help=f"optimizer steps (default: the spec's, else {D.CLI['steps']})")
    p.add_argument("--batch", type=int, help="sequences per step (global batch under torchrun)")
    p.add_argument("--seq-len", type=int, help="tokens (bytes) per sequence")
    p.add_argument("--lr", type=float, help="peak learning rate (default: the spec's optimizer lr; with --resume: "
                   "the run's, and a value given here replaces it)")
    p.add_argument("--warmup", type=int, metavar="STEPS",
                   help=f"steps of linear lr warmup before the cosine decay (default: the spec's, else {D.DEFAULTS['warmup']})")
    p.add_argument("--clip", type=float, metavar="NORM",
                   help=f"clip the global gradient norm to NORM (default: the spec's, else {D.DEFAULTS['clip']}; 0 turns "
                        "clipping off)")
    p.add_argument("--weight-decay", type=float, metavar="WD",
                   help="weight decay of the outer optimizer (default: the spec's; AdamW-style rules only)")
    p.add_argument("--out", default=None, help="run directory (default: runs/<spec name>)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the run directory's latest checkpoint, with the run's own --steps, --batch, "
                        "--seq-len, --lr, --warmup, --clip, --weight-decay unless given again (then the new "
                        "values take effect, and a note lists them)")
    p.add_argument("--backend", default="torch", choices=BACKENDS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, help="steps between validation runs (<=0: only at the end)")
    p.add_argument("--save-every", type=int, help="steps between checkpoints")
    p.add_argument("--log", action="append", choices=_log_sinks(), metavar="SINK",
                   help="also send every metric of RUN/metrics.jsonl to SINK: tensorboard (RUN/tb/; "
                        "pip install \"nlc[tensorboard]\"). The JSONL log is always written")
    p.add_argument("--tensorboard", action="store_true", help="the same as --log tensorboard")
    p.add_argument("--threads", type=int,
                   help="torch intra-op threads (default: the cores not busy with other processes, from the "
                        "load average; idle threads sleep rather than spin)")
    p.add_argument("--dist-timeout", type=float, metavar="SECONDS",
                   help="under torchrun: how long a rank waits for a silent peer before the job fails with an "
                        "error (default 300; torch's own is 30 minutes)")
    p.add_argument("--fsdp", action="store_true",
                   help="under torchrun: shard parameters, gradients and optimizer state (FSDP) instead of DDP")
    p.add_argument("--checkpointing", action="store_true",
                   help="recompute each segment in backward: activation memory O(T d) for long sequences")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a spec parameter")
    p.add_argument("--model", help="which model of the spec file")
    _add_freeze(p)
    p.set_defaults(func=cmd_train)


def _log_sinks():
    from nlc.train.metrics import LOG_SINKS  # no torch: the parser stays fast
    return LOG_SINKS


TRAIN_DEFAULTS = D.CLI  # CPU-sized defaults for `nlc train SPEC` with no flags (nlc/train/defaults.py)


def cmd_train(a) -> int:
    _threads(a)  # first: the OpenMP wait policy is read when torch loads
    import torch
    from nlc.api import compile as nlc_compile
    from nlc.train.data import default_corpus, load_data
    from nlc.train.loop import train
    from nlc.train.sources import get_tokenizer, load_hf, tokenize
    ov = _ov(a)
    if a.steps is not None and a.steps <= 0:
        raise RunError(f"--steps {a.steps}: the number of steps must be at least 1")
    tensorboard = a.tensorboard or "tensorboard" in (a.log or ())
    if tensorboard:
        from nlc.train.metrics import tensorboard_missing
        if (why := tensorboard_missing()) is not None:  # before training, not a note after it started
            raise RunError(f"--log tensorboard: {why}", hint='pip install "nlc[tensorboard]"')
    tok = get_tokenizer(a.tokenizer)
    if tok.enc is not None:  # the model's vocabulary is the tokenizer's
        if "vocab" in ov and ov["vocab"] < tok.n_vocab:
            raise RunError(f"--set vocab={ov['vocab']} is smaller than {a.tokenizer}'s {tok.n_vocab} tokens")
        ov.setdefault("vocab", tok.n_vocab)
    for flag, v, ok in (("--warmup", a.warmup, a.warmup is None or a.warmup >= 0),
                        ("--lr", a.lr, a.lr is None or a.lr > 0),
                        ("--clip", a.clip, a.clip is None or a.clip >= 0),
                        ("--weight-decay", a.weight_decay, a.weight_decay is None or a.weight_decay >= 0),
                        ("--dist-timeout", a.dist_timeout, a.dist_timeout is None or a.dist_timeout > 0)):
        if not ok or (v is not None and v != v):
            raise RunError(f"{flag} {v}: must be {'> 0' if flag in ('--lr', '--dist-timeout') else '>= 0'}")
    torch.manual_seed(a.seed)
    model = nlc_compile(a.spec, backend=a.backend, model=a.model, checkpointing=a.checkpointing, freeze=a.freeze, **ov)
    out = Path(a.out or f"runs/{model.spec_name.lower()}")
    spec_file = out / "spec.json"
    if a.resume and spec_file.exists():
        from nlc.rundir import read_record
        rec = read_record(out)  # validated: a corrupt or foreign spec.json is a clear error
        if rec.spec_hash != model.spec_hash:
            raise RunError(f"cannot resume {out}: it was trained from spec {rec.spec_name} "
                           f"(hash {rec.spec_hash}), not {model.spec_name} (hash {model.spec_hash})",
                           hint="use the same spec and --set values, or a new --out")
        if sorted(rec.frozen) != sorted(model.frozen):
            raise RunError(f"cannot resume {out}: it was trained with --freeze {','.join(sorted(rec.frozen)) or '(none)'}, "
                           f"not {','.join(sorted(model.frozen)) or '(none)'}",
                           hint="resume with the run's own --freeze, or a new --out")
    if a.data and a.data.startswith("hf:"):
        data = load_hf(a.data)
    else:
        data = load_data(a.data) if a.data else default_corpus(verbose=_rank() == 0)
    data, bytes_per_token = tokenize(data, tok)
    from nlc.train.checkpoint import lock_run_dir, unwritable
    # one run per --out: lock it before anything is written there (rank 0 writes the run under torchrun);
    # creating the folder and writing the lock file also prove it writable (else a clear error)
    lock = lock_run_dir(out) if _rank() == 0 else None
    try:
        if lock is not None:
            try:
                _write_spec_record(out, model, a)
            except OSError as e:
                raise unwritable(out, e) from None
        report = train(model, data, steps=a.steps, batch=a.batch, seq_len=a.seq_len, lr=a.lr, warmup=a.warmup,
                       clip=a.clip, weight_decay=a.weight_decay, seed=a.seed, out_dir=str(out), resume=a.resume,
                       eval_every=a.eval_every, save_every=a.save_every, backend_label=a.backend,
                       progress=not a.no_progress, tensorboard=tensorboard, fsdp=a.fsdp,
                       bytes_per_token=bytes_per_token, defaults=TRAIN_DEFAULTS, dist_timeout=a.dist_timeout)
    finally:
        if lock is not None:
            lock.release()
    if report.rank == 0:  # under torchrun every rank returns; one report is printed
        print(report.format())
    return 0


def _rank() -> int:
    """This process's rank under torchrun (0 otherwise)."""
    import os
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def _write_spec_record(out: Path, model, a):
    """The run's self-contained spec: OUT/spec/ (the spec and every file it imports), a local
    tokenizer file copied into OUT/tokenizer/, OUT/spec.nl (a copy for people), and last
    OUT/spec.json, which names them (see nlc.rundir)."""
    from nlc.rundir import store_tokenizer, write_record, write_spec
    from nlc.train.checkpoint import _write_bytes
    tokenizer = getattr(a, "tokenizer", None) or "bytes"
    rec = dict(spec_name=model.spec_name, spec_hash=model.spec_hash, model=a.model or model.spec_name,
               overrides=model.overrides, spec_path=model.spec_path, spec_file=write_spec(out, model),
               tokenizer=tokenizer, frozen=sorted(model.frozen))
    ref = tokenizer.partition(":")[2]
    if tokenizer.startswith("tiktoken:") and Path(ref).is_file():  # as get_tokenizer reads it
        rec["tokenizer_file"] = store_tokenizer(out, ref)
    _write_bytes(out / "spec.nl", model.spec_text.encode())
    write_record(out, rec)


# ---- eval ----------------------------------------------------------------------
def fill_eval(sub):
    p = sub.add_parser("eval", help="evaluate a trained run: bpb, mqar, niah, continual")
    p.add_argument("run", help="run directory written by nlc train")
    p.add_argument("--task", default="bpb", choices=("bpb", "mqar", "niah", "continual"))
    p.add_argument("--data", help="text data for bpb (default: the stdlib corpus's validation split)")
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--lengths", default="128,256,512", help="NIAH context lengths, comma separated")
    p.add_argument("-o", "--out", help="NIAH heatmap PNG path")
    p.add_argument("--backend", default="torch", choices=BACKENDS)
    p.add_argument("--threads", type=int, help="torch intra-op threads")
    _add_freeze(p)
    p.set_defaults(func=cmd_eval)


def _threads(a):
    """--threads N, else `default_threads()`. Call it before torch is imported: when other processes
    keep cores busy it also sets OMP_WAIT_POLICY=PASSIVE (unless set), so OpenMP threads waiting for
    work sleep instead of spinning against them. On an idle machine the default (spinning) policy is
    kept: PASSIVE cost ~25% of Hope's training throughput there (docs/performance.md, "Threads on a
    shared machine")."""
    import os
    cores = _cores()
    if busy_cores() > 0:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch
    n = getattr(a, "threads", None) or default_threads(min(torch.get_num_threads(), cores))
    if n != torch.get_num_threads():
        torch.set_num_threads(n)


def _cores() -> int:
    import os
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def busy_cores() -> int:
    """Cores other processes keep busy: the smaller of the 1-minute load average and the processes
    runnable right now (besides this one). Both must say the machine is busy, so neither a burst nor
    the average's lag after others have stopped counts. 0 where the load cannot be read."""
    import os
    try:
        busy = round(os.getloadavg()[0])
    except (AttributeError, OSError):
        return 0
    try:  # /proc/loadavg's 4th field: runnable/total scheduling entities, this process included
        with open("/proc/loadavg") as f:
            busy = min(busy, max(0, int(f.read().split()[3].split("/")[0]) - 1))
    except (OSError, ValueError, IndexError):
        pass
    return busy


def default_threads(most: int) -> int:
    """The cores not busy with other processes (`busy_cores`): at most `most` (torch's choice), at least 1."""
    return max(1, min(most, _cores() - busy_cores()))


_UNTRAINED_TASK = ("note: this scores the run on the task as it is; a model trained only on text is expected "
                   "near chance (docs/results.md trains models on the task itself)")


def cmd_eval(a) -> int:
    from nlc.api import load
    _threads(a)
    from nlc.train import evaluate as E
    model = _freeze(load(a.run, backend=a.backend), a)
    model.eval()
    if a.task == "bpb":
        from nlc.train.data import default_corpus, load_data
        from nlc.train.sources import tokenize
        corpus, bpt = tokenize(load_data(a.data) if a.data else default_corpus(), model.tokenizer)
        print(f"validation bpb: {E.eval_bpb(model, corpus.val, seq_len=a.seq_len) / bpt:.4f}")
        # one extra pass per in-context level: on 4 x 8 of the windows (paired, so the differences are
        # far less noisy than the bpb itself), to keep `nlc eval` of Hope (7 levels) within minutes
        gain = E.in_context_gain(model, corpus.val, seq_len=a.seq_len, max_batches=4)
        if gain is not None:
            if bpt != 1.0:
                gain = E.GainResult(gain.bpb / bpt, {k: g / bpt for k, g in gain.gain.items()}, gain.seq_len)
            print(gain.format())
    elif a.task == "mqar":
        from nlc.train.tasks import MQAR_VALUES
        print(f"MQAR accuracy: {E.eval_mqar(model):.4f} (chance {1 / MQAR_VALUES:.4f})")
        print(_UNTRAINED_TASK)
    elif a.task == "niah":
        try:
            lengths = tuple(int(x) for x in a.lengths.split(","))
        except ValueError:
            raise RunError(f"--lengths {a.lengths}: expected comma-separated integers", hint="e.g. --lengths 256,512") from None
        try:
            res = E.eval_niah(model, lengths=lengths)
        except ValueError as e:  # a haystack too short for the needle and the query
            raise RunError(f"--lengths {a.lengths}: {e}", hint="use lengths of at least 128") from None
        from nlc.train.tasks import NIAH_CHANCE
        print(res.format() if hasattr(res, "format") else res)
        print(f"chance: {NIAH_CHANCE:.2f} per digit. {_UNTRAINED_TASK}")
        png = E.plot_niah(res, a.out or str(Path(a.run) / "niah.png"))
        print(f"heatmap {png}")
    else:
        res = E.eval_continual(model)
        print(res.format() if hasattr(res, "format") else res)
    return 0


# ---- generate ------------------------------------------------------------------
def fill_generate(sub):
    p = sub.add_parser("generate", help="sample text; in-context levels keep learning as they read",
                       description="Sample text from a trained run, printed as it comes. The fast state is carried "
                                   "from token to token, so in-context levels keep learning while generating "
                                   "(--freeze switches that off to compare).")
    p.add_argument("run", help="run directory written by nlc train")
    p.add_argument("--prompt", default="def ", help="text the model reads first (default: 'def ')")
    p.add_argument("--max-new", type=int, default=200, help="tokens to generate per sample (default 200)")
    p.add_argument("--temperature", type=float, default=0.8,
                   help="divides the logits before sampling; 0 = greedy, the most likely token (default 0.8)")
    p.add_argument("--top-k", type=int, default=None, help="sample only among the K most likely tokens")
    p.add_argument("--top-p", type=float, default=None, metavar="P",
                   help="nucleus sampling: only among the most likely tokens whose probabilities add up to P "
                        "(0 < P <= 1)")
    p.add_argument("--repetition-penalty", type=float, default=1.0, metavar="R",
                   help="make tokens already in the prompt or the output less likely: a positive logit is "
                        "divided by R, a negative one multiplied (CTRL's rule, as transformers; default 1 = off)")
    p.add_argument("--samples", type=int, default=1, metavar="N",
                   help="N samples, each from a fresh state; sample i uses seed SEED+i (default 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the sampling (default 0)")
    p.add_argument("--threads", type=int, help="torch intra-op threads")
    _add_freeze(p)
    p.set_defaults(func=cmd_generate)


def _check_sampling(a):
    for flag, v, ok, want in (("--max-new", a.max_new, a.max_new >= 0, ">= 0"),
                              ("--samples", a.samples, a.samples >= 1, ">= 1"),
                              ("--top-k", a.top_k, a.top_k is None or a.top_k >= 1, ">= 1"),
                              ("--top-p", a.top_p, a.top_p is None or 0 < a.top_p <= 1, "in (0, 1]"),
                              ("--repetition-penalty", a.repetition_penalty, a.repetition_penalty > 0, "> 0"),
                              ("--temperature", a.temperature, a.temperature == a.temperature, "a number")):
        if not ok:
            raise RunError(f"{flag} {v}: must be {want}", hint=f"nlc generate --help describes {flag}")


def cmd_generate(a) -> int:
    _check_sampling(a)
    from nlc.api import load
    _threads(a)
    from nlc.train.evaluate import generate
    model = _freeze(load(a.run), a)
    model.eval()
    import codecs
    tok = model.tokenizer
    prompt = a.prompt.encode() if tok.enc is None else [int(i) for i in tok.encode(a.prompt.encode())]
    for i in range(a.samples):
        if a.samples > 1:
            sys.stdout.write(("\n" if i else "") + f"--- sample {i + 1} of {a.samples} (seed {a.seed + i})\n")
        sys.stdout.write(a.prompt)
        sys.stdout.flush()
        dec = codecs.getincrementaldecoder("utf-8")(errors="replace")  # multi-byte characters arrive byte by byte
        as_bytes = (lambda t: bytes([t])) if tok.enc is None else (lambda t: tok.decode([t]))

        def emit(t, dec=dec, as_bytes=as_bytes):  # streamed: each token is written the moment it is sampled
            sys.stdout.write(dec.decode(as_bytes(t)))
            sys.stdout.flush()
        generate(model, prompt, max_new=a.max_new, temperature=a.temperature, top_k=a.top_k, seed=a.seed + i,
                 top_p=a.top_p, repetition_penalty=a.repetition_penalty, callback=emit)
        sys.stdout.write(dec.decode(b"", final=True) + "\n")
    return 0


# ---- plot ----------------------------------------------------------------------
def fill_plot(sub):
    p = sub.add_parser("plot", help="loss curves and per-level statistics of a run")
    p.add_argument("run")
    p.add_argument("-o", "--out", help="PNG path (default: RUN/loss.png)")
    p.set_defaults(func=cmd_plot)


def cmd_plot(a) -> int:
    from nlc.train.plot import plot_run
    print(f"wrote {plot_run(a.run, a.out)}")
    return 0


# ---- export --------------------------------------------------------------------
# --to: the MLIR formats export the forward step (nlc.backends.torch_mlir); hf writes a transformers folder
EXPORT_FORMATS = ("mlir", "vmfb", "hf")


def fill_export(sub):
    p = sub.add_parser("export", help="export a run as a transformers folder (--to hf), or the forward step to MLIR",
                       description="nlc export RUN --to hf DIR: a folder AutoModelForCausalLM.from_pretrained loads "
                                   "(after `import nlc.hf`), the spec inside it. --to mlir|vmfb: the forward step "
                                   "through torch-mlir, optionally run in IREE.")
    p.add_argument("spec", help="a .nl spec or a run directory (--to hf: a run directory)")
    # `--to hf DIR` takes the folder with the format: argparse would not give a second positional
    # after an option (`nlc export RUN --to hf DIR`) to the positional
    p.add_argument("--to", nargs="+", default=["mlir"], metavar=("FORMAT", "DIR"),
                   help=f"what to write: {', '.join(EXPORT_FORMATS)} (default mlir); --to hf DIR names the folder")
    p.add_argument("--dialect", default="linalg", choices=("torch", "linalg", "stablehlo"))
    p.add_argument("-o", "--out", help="output path (default: <spec>.mlir; --to hf: the folder, if not given after hf)")
    p.add_argument("--seq-len", type=int, default=64, help="the fixed sequence length of the exported step")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--run-iree", action="store_true", help="run the module in IREE and compare with PyTorch")
    p.add_argument("--set", action="append", metavar="KEY=VALUE")
    p.set_defaults(func=cmd_export)


def cmd_export(a) -> int:
    fmt, *rest = a.to
    if fmt not in EXPORT_FORMATS:
        raise RunError(f"--to {fmt}: unknown format", hint=f"formats: {', '.join(EXPORT_FORMATS)}")
    if len(rest) > (fmt == "hf"):
        raise RunError(f"--to {' '.join(a.to)}: unexpected '{rest[-1]}'",
                       hint="nlc export RUN --to hf DIR; for mlir and vmfb the output path is -o/--out")
    if fmt == "hf":
        return _export_hf(a, rest[0] if rest else None)
    from nlc.backends.torch_mlir import export_spec
    res = export_spec(a.spec, to=fmt, dialect=a.dialect, out_path=a.out, seq_len=a.seq_len, batch=a.batch,
                      overrides=_ov(a), run_iree=a.run_iree)
    print(res.format() if hasattr(res, "format") else res)
    return 0


def _export_hf(a, dest) -> int:
    if dest is not None and a.out is not None and dest != a.out:
        raise RunError(f"two output folders: {dest} and -o {a.out}", hint="nlc export RUN --to hf DIR")
    dest = dest or a.out
    if dest is None:
        raise RunError("nlc export RUN --to hf needs one output folder", hint="nlc export RUN --to hf DIR")
    if a.set:
        raise RunError("--set does not apply to --to hf: a run is exported with its own spec and values")
    from nlc.hf import export_run
    print(f"wrote {export_run(a.spec, dest)}")
    return 0


# ---- bench ---------------------------------------------------------------------
def fill_bench(sub):
    p = sub.add_parser("bench", help="benchmarks that print figures: layer, hope, scaling, kernels")
    p.add_argument("what", choices=("layer", "hope", "scaling", "kernels"))
    p.add_argument("rest", nargs=argparse.REMAINDER, help="arguments passed to the benchmark (e.g. --quick)")
    p.set_defaults(func=cmd_bench)


def cmd_bench(a) -> int:
    if a.what == "kernels":
        from nlc.kernels.bench import main
        return main(a.rest) or 0
    from nlc import bench
    return bench.main(a.what, a.rest) or 0
