"""`nlc generate`'s flags end to end on a tiny trained run: several samples (sample i is the
single sample of seed SEED+i), top-p and repetition penalty, help text on every flag, and
clear errors for bad values."""
import re
from types import SimpleNamespace

import pytest

from nlc.cli import main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory as `nlc train` writes it (spec record + one checkpoint), without training
    (training even one step costs ~20 s on a busy 2-core machine)."""
    import torch

    from nlc.api import compile
    from nlc.cli_run import _write_spec_record
    from nlc.train.checkpoint import save_checkpoint
    out = tmp_path_factory.mktemp("gen") / "r"
    out.mkdir()
    torch.manual_seed(0)
    m = compile("specs/transformer.nl", dim=16, heads=2, layers=1)
    _write_spec_record(out, m, SimpleNamespace(model=None, tokenizer="bytes"))
    save_checkpoint(out, m, None, 1)  # no optimizer: building one imports torch._dynamo (~10 s)
    return out


def _gen(capsys, run_dir, *flags):
    capsys.readouterr()
    assert main(["generate", str(run_dir), "--prompt", "ab", "--max-new", "8", "--threads", "1", *flags]) == 0
    return capsys.readouterr().out


def test_samples_are_the_single_samples_of_consecutive_seeds(run_dir, capsys):
    many = _gen(capsys, run_dir, "--samples", "3", "--seed", "5", "--top-p", "0.9", "--repetition-penalty", "1.2")
    parts = re.split(r"--- sample \d of 3 \(seed \d+\)\n", many)
    assert parts[0] == "" and len(parts) == 4
    for i, part in enumerate(parts[1:]):
        one = _gen(capsys, run_dir, "--seed", str(5 + i), "--top-p", "0.9", "--repetition-penalty", "1.2")
        assert part.rstrip("\n") == one.rstrip("\n")


def test_every_flag_has_help(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    out = capsys.readouterr().out
    for flag in ("--prompt", "--max-new", "--temperature", "--top-k", "--top-p", "--repetition-penalty",
                 "--samples", "--seed", "--threads", "--freeze"):
        line = next(x for x in out.splitlines() if x.strip().startswith(flag))
        # the help text follows the flag on its line, or on the next one
        assert len(line.split(maxsplit=2)) == 3 or out.split(line)[1].splitlines()[1].startswith(" " * 10), flag


@pytest.mark.parametrize("flags,msg", [
    (["--top-p", "0"], "--top-p 0.0: must be in (0, 1]"),
    (["--top-p", "1.5"], "--top-p 1.5"),
    (["--repetition-penalty", "0"], "--repetition-penalty"),
    (["--samples", "0"], "--samples 0: must be >= 1"),
    (["--top-k", "0"], "--top-k 0"),
    (["--max-new", "-1"], "--max-new -1"),
])
def test_bad_sampling_values_are_clear_errors(run_dir, capsys, flags, msg):
    assert main(["generate", str(run_dir), *flags]) == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err


def test_tokens_are_streamed_as_they_come(run_dir, monkeypatch):
    """Each token reaches the terminal (written and flushed) before the next one is sampled."""
    import io
    import sys

    import nlc.train.evaluate as E
    events = []

    class Terminal(io.StringIO):
        def flush(self):
            events.append(("flush", self.getvalue()))

    real = E.generate

    def spy(*a, callback=None, **kw):
        def cb(t):
            callback(t)
            events.append(("token", t))
        return real(*a, callback=cb, **kw)
    monkeypatch.setattr(E, "generate", spy)
    monkeypatch.setattr(sys, "stdout", Terminal())
    assert main(["generate", str(run_dir), "--prompt", "ab", "--max-new", "6", "--temperature", "0"]) == 0
    tokens = [i for i, (kind, _) in enumerate(events) if kind == "token"]
    assert len(tokens) == 6
    for i in tokens:  # the event just before each token's record is the flush of its text
        assert events[i - 1][0] == "flush" and events[i - 1][1].startswith("ab")
    shown = [events[i - 1][1] for i in tokens]  # what the terminal held as each token arrived: it only grows
    assert all(b.startswith(a) for a, b in zip(shown, shown[1:]))
