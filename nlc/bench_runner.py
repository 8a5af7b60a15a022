"""Interleaved timing for `nlc bench`: one warm worker process per implementation, timed in turns.

Why warm workers and not a fresh process per repetition: building a configuration costs far more
than one timed call (torch.compile's first call took 13-100 s, titans-pytorch's import seconds),
so fresh processes would make each round minutes long and the implementations would again be
timed minutes apart, under different load. A warm worker is built once, in its own process (no
allocator state, thread pool or compiled code is shared), then idles on its stdin while the
others run; a round times one call of each implementation back to back, so the two calls of a
pair are seconds apart and see the same load. The order alternates (A B, then B A) so a load
that rises or falls through a round favours neither side. A ratio is taken per round, between
adjacent calls, and reported as the median over rounds with its min-max range.

Protocol: the worker prints `READY <json>` once built and warmed up, then answers each stdin
line `<kind>` with `RESULT <seconds>` (one timed call); `quit` ends it.
"""
from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def load1() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class Worker:
    """A warm `python -m nlc.bench --serve CFG` process."""

    def __init__(self, cfg: dict, timeout: float):
        env = dict(os.environ)
        if cfg.get("threads"):
            env["OMP_NUM_THREADS"] = str(cfg["threads"])
        self.timeout = timeout
        # stderr to a file, not a pipe: torch.compile's warnings would fill an unread pipe and block the worker
        self.err = tempfile.TemporaryFile(mode="w+")
        self.p = subprocess.Popen([sys.executable, "-m", "nlc.bench", "--serve", json.dumps(cfg)], env=env,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err, text=True,
                                  cwd=str(Path(__file__).resolve().parent.parent))
        self.info = self._answer("READY ")

    def _answer(self, prefix):
        lines = []
        timer = threading.Timer(self.timeout, self.p.kill)
        timer.start()
        try:
            for line in self.p.stdout:
                if line.startswith(prefix):
                    return json.loads(line[len(prefix):])
                lines.append(line)
        finally:
            timer.cancel()
        self.p.wait()
        self.err.seek(0)
        err = (self.err.read() or "".join(lines)).strip().splitlines()
        why = err[-1] if err else f"exit {self.p.poll()}"
        raise RuntimeError(why[:300] if self.p.returncode != -9 else f"did not answer in {self.timeout:.0f} s")

    def time(self, kind: str) -> float:
        self.p.stdin.write(kind + "\n")
        self.p.stdin.flush()
        return self._answer("RESULT ")

    def close(self):
        if self.p.poll() is None:
            try:
                self.p.stdin.write("quit\n")
                self.p.stdin.flush()
                self.p.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.p.kill()


class PausedProcess:
    """A peer that runs its own training loop (nested-learning's `nl train`) and logs one line per
    step: it is stopped (SIGSTOP) as soon as a step line appears and continued (SIGCONT) for one
    step when its turn comes, so its steps interleave with ours like a warm worker's calls."""

    def __init__(self, args, env, cwd, is_step, timeout: float):
        self.is_step, self.timeout = is_step, timeout
        self.p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd, env=env)
        self.tail, self.stamps = [], []
        self.cond = threading.Condition()
        self.steps = 0
        threading.Thread(target=self._read, daemon=True).start()
        t0 = time.perf_counter()
        self._wait_step(0)  # start-up and the first step, untimed
        self.first_s = time.perf_counter() - t0

    def _read(self):
        for line in self.p.stdout:
            stop = self.is_step(line)
            if stop:
                os.kill(self.p.pid, signal.SIGSTOP)
            with self.cond:
                self.tail = (self.tail + [line.rstrip()])[-5:]
                if stop:
                    self.stamps.append(time.perf_counter())
                self.steps += bool(stop)
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def _wait_step(self, seen):
        with self.cond:
            ok = self.cond.wait_for(lambda: self.steps > seen or self.p.poll() is not None, timeout=self.timeout)
        if not ok or self.steps <= seen:
            self.close()
            raise RuntimeError(f"no step logged in {self.timeout:.0f} s; last output: {' | '.join(self.tail)[-300:]}")

    def time(self, kind: str) -> float:
        seen = self.steps
        t0 = time.perf_counter()
        os.kill(self.p.pid, signal.SIGCONT)
        self._wait_step(seen)
        end = self.stamps[seen]
        # a step line can come before the stop signal lands (the peer ran on): then that step ran
        # uninterrupted from the previous line
        return end - t0 if end > t0 else end - self.stamps[seen - 1]

    def close(self):
        if self.p.poll() is None:
            os.kill(self.p.pid, signal.SIGCONT)
            self.p.kill()
            self.p.wait()


def interleave(entries: dict, rounds: int, on_round=None) -> list[dict]:
    """entries: name -> (worker, kinds). `rounds` rounds; in each, every worker times one call of
    each of its kinds, the workers in alternating order. Returns one record per round:
    {"load": 1-min load at its start, (name, kind): seconds}."""
    names = list(entries)
    out = []
    for r in range(rounds):
        rec = {"load": load1()}
        for name in (names if r % 2 == 0 else names[::-1]):
            w, kinds = entries[name]
            for kind in kinds:
                rec[(name, kind)] = w.time(kind)
        out.append(rec)
        if on_round:
            on_round(r, rec)
    return out


def spread(xs) -> str:
    """median [min-max] (n) of a list of numbers."""
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-"
    return f"{statistics.median(xs):.2f}x [{min(xs):.2f}-{max(xs):.2f}] (n {len(xs)})"
