"""Smoke test of `nlc bench layer|hope`: tiny sizes (--quick), a table is printed. No timed assertions;
the interleaving and ratio arithmetic (nlc.bench_runner) are checked on their own."""
import sys
import time

import pytest

from nlc import bench, bench_runner


def test_layer_quick_prints_a_table(capsys):
    assert bench.main("layer", ["--quick", "--threads", "1", "--only", "torch,reference", "--no-memory"]) == 0
    out = capsys.readouterr().out
    assert "nlc bench layer" in out and "machine:" in out and "interleaved rounds" in out
    assert "fwd+bwd tok/s" in out and "peak MiB fwd" in out and "GFLOP/s fwd+bwd" in out and "% peak" in out
    rows = [line.split() for line in out.splitlines() if line.startswith(("torch ", "reference "))]
    assert [r[0] for r in rows] == ["torch", "reference"]
    assert not any("FAILED" in line for line in out.splitlines() if line.startswith(("torch ", "reference ")))
    assert "vs reference" in out and "(n 2)" in out and "roofline: fp32 matmul peak" in out
    assert "FLOPs per token: memory level (analytic" in out


def test_hope_quick_prints_a_table(capsys):
    assert bench.main("hope", ["--quick", "--threads", "1", "--only", "torch", "--no-memory"]) == 0
    out = capsys.readouterr().out
    assert "nlc bench hope" in out and "tok/s" in out
    row = next(line for line in out.splitlines() if line.startswith("torch "))
    assert "FAILED" not in row and "counted (torch backend) step" in out
    assert row.split()[5] != "-"  # first s: the warm-up step


def test_unknown_benchmark_is_a_user_error():
    assert bench.main("nope", []) == 2


class _Clock:
    """A fake worker whose calls take the times it is given, one per call."""

    def __init__(self, times):
        self.times = list(times)

    def time(self, kind):
        return self.times.pop(0)


def test_interleave_alternates_order_and_ratios_pair_adjacent_calls():
    seen = []
    a, b = _Clock([1.0, 2.0, 4.0]), _Clock([2.0, 2.0, 2.0])
    for w, name in ((a, "a"), (b, "b")):
        w.time = (lambda f, n: (lambda kind: seen.append(n) or f(kind)))(w.time, name)
    recs = bench_runner.interleave({"a": (a, ["k"]), "b": (b, ["k"])}, 3)
    assert seen == ["a", "b", "b", "a", "a", "b"]  # A B, B A, A B: drift favours neither side
    # throughput ratio of a over b per round, from the two calls of that round
    assert bench._ratios(recs, "a", "b", "k", 10, 10) == [2.0, 1.0, 0.5]
    assert bench_runner.spread([2.0, 1.0, 0.5]) == "1.00x [0.50-2.00] (n 3)"


def test_paused_process_is_timed_one_step_per_turn(tmp_path):
    script = tmp_path / "steps.py"
    script.write_text("import time\nfor i in range(6):\n    time.sleep(1.0)\n    print('step', i, flush=True)\n")
    p = bench_runner.PausedProcess([sys.executable, str(script)], None, str(tmp_path),
                                   lambda line: line.startswith("step"), timeout=30)
    try:
        time.sleep(3.5)  # unpaused it would log 3 steps; paused after each: at most 2 (a stop landing late)
        seen = p.steps
        assert seen <= 2
        t = p.time("step")
        # no lower bound on t: on a loaded machine a line printed just before the stop landed can be
        # read after SIGCONT (then the step ran uninterrupted, which time() accounts for)
        assert p.steps == seen + 1 and t < 10
    finally:
        p.close()


def test_scaling_slope_is_the_log_log_growth():
    from nlc.bench_scaling import slope
    assert abs(slope([512, 1024, 2048], [1.0, 2.0, 4.0]) - 1.0) < 1e-12  # linear
    assert abs(slope([512, 1024, 2048], [1.0, 4.0, 16.0]) - 2.0) < 1e-12  # quadratic
    assert slope([512], [1.0]) is None


def test_scaling_unknown_model_is_a_user_error(capsys):
    assert bench.main("scaling", ["--what", "nope"]) == 2
    assert "unknown --what nope" in capsys.readouterr().err


@pytest.mark.slow
def test_scaling_tiny_prints_a_table_and_a_plot(tmp_path, capsys):
    png = tmp_path / "s.png"
    assert bench.main("scaling", ["--what", "layer", "--T", "64,128", "--dim", "32", "--dim-T", "64", "--reps", "1",
                                  "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "layer vs T: log-log slope of time" in out and "FAILED" not in out
    assert png.read_bytes()[:4] == b"\x89PNG"
