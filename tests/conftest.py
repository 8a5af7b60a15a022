"""Suite-wide setup. The Triton interpreter runs the kernels on CPU, and TRITON_INTERPRET is read when
triton is imported and when a kernel is defined: transformers (tests/hf) imports triton at import, so
the variable is set here, before any test module is imported, not only in tests/kernels/conftest.py.
(No torch import here: some tests check what `nlc check` imports.)"""
import os

if not os.environ.get("TRITON_INTERPRET") and not os.path.exists("/dev/nvidia0"):
    os.environ["TRITON_INTERPRET"] = "1"
