"""Smoke test of `nlc bench layer|hope`: tiny sizes (--quick), a table is printed. No timed assertions."""
from nlc import bench


def test_layer_quick_prints_a_table(capsys):
    assert bench.main("layer", ["--quick", "--threads", "1", "--only", "torch,reference"]) == 0
    out = capsys.readouterr().out
    assert "nlc bench layer" in out and "machine:" in out
    assert "fwd+bwd tok/s" in out and "peak MiB fwd" in out
    rows = [line.split() for line in out.splitlines() if line.startswith(("torch ", "reference "))]
    assert [r[0] for r in rows] == ["torch", "reference"]
    assert not any("FAILED" in line for line in out.splitlines() if line.startswith(("torch ", "reference ")))
    assert "vs reference" in out


def test_hope_quick_prints_a_table(capsys):
    assert bench.main("hope", ["--quick", "--threads", "1", "--only", "torch", "--no-memory"]) == 0
    out = capsys.readouterr().out
    assert "nlc bench hope" in out and "tok/s" in out
    row = next(line for line in out.splitlines() if line.startswith("torch "))
    assert "FAILED" not in row


def test_unknown_benchmark_is_a_user_error():
    assert bench.main("nope", []) == 2
