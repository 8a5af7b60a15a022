"""Train a tiny nested-learning model from a .nl spec, top to bottom, then stream it.

    python examples/train_tiny.py          # examples/my_memory.nl, 40 steps, CPU: about 30 s on 2 cores
    python examples/train_tiny.py --spec specs/hope.nl                           # about 25 s
    python examples/train_tiny.py --spec specs/titans.nl --model TitansLMM              # about 10 s

What it does, nanoGPT-style, in one file:
  1. compiles the spec with `nlc.compile` (an nn.Module; `--set KEY=VALUE` overrides spec parameters),
  2. trains it for a few dozen steps on the embedded byte corpus (the Python stdlib's own source)
     with the outer optimizer the spec declares (`level outer : params(all) { rule AdamW(...) }`),
  3. streams one long sequence segment by segment, carrying `out.state` (the fast weights,
     momenta, CMS stages, conv and attention caches), and checks it equals one pass over the
     whole sequence: in-context levels keep learning across calls exactly as within one.

specs/hope.nl at its default lr_max (0.5) streams the 197-token check finite (re-run 2026-11-30
after issue 16's changes: val loss 2.95 after 40 steps, logged surprise ~1.2-1.5, not ~0.003).
"""
import argparse
import math
import time

import torch

import nlc
from nlc.train.data import default_corpus, get_batch

# ---------------------------------------------------------------------------- config
p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--spec", default="examples/my_memory.nl")
p.add_argument("--model", default=None, help="which model of a file with several (e.g. TitansMAC)")
p.add_argument("--steps", type=int, default=40)
p.add_argument("--batch", type=int, default=4)
p.add_argument("--seq-len", type=int, default=64)
p.add_argument("--lr", type=float, default=None, help="default: the spec's outer lr")
p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a spec parameter")
p.add_argument("--seed", type=int, default=0)
args = p.parse_args()


def parse_value(s):
    for cast in (int, float):
        try:
            return cast(s)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(s, s)


# tiny defaults (the spec's own parameters are the defaults; these shrink it for a CPU demo)
overrides = {"dim": 32, "layers": 1}
overrides.update({k: parse_value(v) for k, v in (kv.split("=", 1) for kv in args.set)})
torch.manual_seed(args.seed)
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))  # be polite on a shared box

# ---------------------------------------------------------------------------- model
model = nlc.compile(args.spec, model=args.model, **overrides)
n_params = sum(p.numel() for p in model.parameters())
print(f"{model.spec_name} from {args.spec} with {overrides}: {n_params / 1e3:.1f}k parameters")
print(model.emit("schedule"), end="")  # how each level is lowered, decided by the compiler

# ---------------------------------------------------------------------------- data
corpus = default_corpus(max_bytes=2**20)  # the embedded corpus, vocab = 256 bytes
print(corpus.describe())

# ---------------------------------------------------------------------------- optimizer
# the spec's outer level: its rule (AdamW written in .nl here), warmup and clip
opt = model.optimizer()
base_lr = args.lr or model.train_defaults.get("lr") or 3e-3
warmup = min(model.train_defaults.get("warmup", 10), args.steps // 4)
clip = model.train_defaults.get("clip", 1.0)

# ---------------------------------------------------------------------------- train
model.train()
t0 = time.time()
for step in range(args.steps):
    lr = base_lr * ((step + 1) / warmup if step < warmup else 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, args.steps - warmup))))
    for g in opt.param_groups:
        g["lr"] = lr
    x, y = get_batch(corpus.train, args.batch, args.seq_len, seed=args.seed, step=step)
    out = model(x, targets=y)  # fresh fast state per sequence; in-context levels learn as they read
    opt.zero_grad(set_to_none=True)
    out.loss.backward()  # the outer level: meta-learns the initial states and every projection
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    if step % 10 == 0 or step == args.steps - 1:
        surprise = {k: float(v) for k, v in out.stats.items() if k.endswith("surprise")}
        first = next(iter(surprise.items()), None)
        extra = f"  {first[0]} {first[1]:.3f}" if first else ""
        print(f"step {step:3d}  loss {out.loss.item():.3f}  ({out.loss.item() / math.log(2):.2f} bits/byte)  lr {lr:.2e}{extra}")
print(f"trained {args.steps} steps in {time.time() - t0:.1f}s")

# ---------------------------------------------------------------------------- validation
model.eval()
with torch.no_grad():
    xv, yv = get_batch(corpus.val, args.batch, args.seq_len, seed=args.seed + 1, step=0)
    print(f"val loss {model(xv, targets=yv).loss.item():.3f}")

# ---------------------------------------------------------------------------- streaming
# One long sequence, once in a single call and once in segments of odd lengths (ends off the
# chunk grid on purpose), carrying out.state between calls. float64 makes the check exact.
model = model.double()
L = 3 * args.seq_len + 5
xs, ys = get_batch(corpus.val, 1, L, seed=args.seed + 2, step=0)
whole = model(xs, targets=ys)  # with targets, CMS stages also learn from the task loss in context
state, logits, a = None, [], 0
for n in (7, 30, 1, 64, 100):
    b = min(L, a + n)
    if a >= b:
        break
    out = model(xs[:, a:b], state=state, targets=ys[:, a:b])
    state, logits, a = out.state, logits + [out.logits], b
if a < L:
    out = model(xs[:, a:], state=state, targets=ys[:, a:])
    state, logits = out.state, logits + [out.logits]
streamed = torch.cat(logits, 1)
bad = (~torch.isfinite(whole.logits)).any(-1)[0].nonzero()
if len(bad):  # an in-context level blew up: say where (the comparison below still holds, NaN for NaN)
    print(f"warning: the fast state diverges at token {bad[0].item()} of {L} (trained on {args.seq_len}-token "
          f"sequences); lower the inner lr (e.g. --set lr_max=0.1) or use shorter chunks")
diff = (streamed - whole.logits).nan_to_num(0.0, 0.0, 0.0).abs().max().item()
same_nan = torch.equal(torch.isfinite(streamed), torch.isfinite(whole.logits))
sdiff = max((state[k] - whole.state[k]).nan_to_num(0.0, 0.0, 0.0).abs().max().item() for k in whole.state)
print(f"streamed {L} tokens in {len(logits)} segments: max |logits diff| {diff:.2e}, max |state diff| {sdiff:.2e}")
assert same_nan and diff < 1e-9 and sdiff < 1e-9, "streaming should equal one pass"
print("streaming == one pass: OK")
