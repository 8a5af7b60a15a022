"""`nlc bench kernels`: says it needs a GPU on CPU; --smoke runs every row once in the interpreter."""
import pytest
import torch

from nlc.kernels import bench


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU message")
def test_bench_kernels_needs_a_gpu(capsys):
    assert bench.main([]) == 0
    assert "needs a CUDA GPU" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="the smoke run is for CPU machines (interpreter)")
def test_bench_kernels_smoke(capsys):
    assert bench.main(["--smoke"]) == 0
    out = capsys.readouterr().out
    assert "not a measurement" in out
    names = [line[:28].strip() for line in out.splitlines()[2:]]
    assert {"linear fused", "linear dgd fused", "linear torch.compile", "linear dgd torch.compile", "mlp fused",
            "mlp torch.compile"} <= set(names)
