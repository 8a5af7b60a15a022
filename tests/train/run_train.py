"""Train the fake model from the command line: the subprocess half of the resume, SIGINT and DDP tests.

    python tests/train/run_train.py --out /tmp/r --steps 30 --save-every 5 [--resume] [--delay 0.05]
    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/train/run_train.py --out /tmp/d ...
"""
import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from fake_model import FakeModel  # noqa: E402

from nlc.train.loop import train  # noqa: E402


def corpus() -> bytes:
    # a fixed, hermetic text of 133 KB: nlc/train/*.py as of e55354b, frozen in a file. (Read from the
    # live source before, so any edit of nlc/train changed every training test's data: an lr-3 resume
    # that trained fine on one version blew up on the next.)
    return (Path(__file__).resolve().parent / "corpus.txt").read_bytes()


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=32)
    p.add_argument("--save-every", type=int, default=5)
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--log-every", type=int, default=1)
    p.add_argument("--delay", type=float, default=0.0, help="seconds of sleep per training step")
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--weights-out", default=None, help="write the final weights (rank 0) to this .safetensors")
    p.add_argument("--fsdp", action="store_true", help="shard with FSDP instead of DDP")
    p.add_argument("--spec", default=None, help="train a real nlc model from this spec (tiny sizes) instead")
    p.add_argument("--dist-timeout", type=float, default=None)
    p.add_argument("--freeze-rank", type=int, default=None, help="this rank stops itself (SIGSTOP) at --fault-step")
    p.add_argument("--die-rank", type=int, default=None, help="this rank exits at once (os._exit) at --fault-step")
    p.add_argument("--fault-step", type=int, default=3)
    a = p.parse_args(argv)
    torch.set_num_threads(1)  # same arithmetic in every process that is compared
    data = corpus()
    cut = len(data) * 9 // 10
    if a.spec:
        import time

        import nlc
        torch.manual_seed(0)
        model = nlc.compile(a.spec, dim=16, heads=2, layers=1, chunk=4, mem_chunk=8)
        if a.delay:
            fwd = model.forward
            model.forward = lambda *x, **k: (time.sleep(a.delay), fwd(*x, **k))[1]
    else:
        model = FakeModel(delay=a.delay, dropout=a.dropout)
    rank = int(os.environ.get("RANK", "0"))
    if rank in (a.freeze_rank, a.die_rank):  # a peer that froze or died: the others must notice it
        import signal

        fwd, calls = model.forward, [0]

        def faulty(*x, **k):
            calls[0] += 1
            if calls[0] == a.fault_step:
                if rank == a.die_rank:
                    os._exit(3)
                os.kill(os.getpid(), signal.SIGSTOP)
            return fwd(*x, **k)
        model.forward = faulty
    from nlc.errors import NlcError, render
    try:
        report = train(model, data[:cut], val_data=data[cut:], steps=a.steps, batch=a.batch, seq_len=a.seq_len,
                       out_dir=a.out, resume=a.resume, save_every=a.save_every, eval_every=a.eval_every,
                       log_every=a.log_every, progress=False, plot=False, seed=1, fsdp=a.fsdp,
                       dist_timeout=a.dist_timeout)
    except NlcError as e:  # as the CLI does: a message, exit 2
        if __name__ != "__main__":
            raise
        print(render(e), file=sys.stderr, flush=True)
        sys.exit(2)
    if int(os.environ.get("RANK", "0")) == 0:
        print(report.format(), flush=True)
        if a.weights_out:
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, a.weights_out)
    return model, report


if __name__ == "__main__":
    main()
