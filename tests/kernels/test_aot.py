"""Every Triton kernel compiles to an sm_90 cubin (the real compiler, not the interpreter), on this CPU."""
import os
import subprocess
import sys

import pytest

pytest.importorskip("triton")  # the AOT compiler is triton's own

def test_every_kernel_compiles_for_sm90():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    out = subprocess.run([sys.executable, "-m", "nlc.kernels.aot", "--arch", "90", "--d", "64"],
                         capture_output=True, text=True, env=env, timeout=600)
    rows = [line for line in out.stdout.splitlines() if not line.startswith("#")]
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    assert len(rows) == 10 and all(" ok " in r for r in rows), out.stdout
