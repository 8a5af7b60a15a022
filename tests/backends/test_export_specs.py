"""The built-in specs export to MLIR and, with IREE, run and agree with PyTorch.

These start running by themselves once ``nlc.api`` (``nlc.compile``) exists.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch_mlir")
pytest.importorskip("nlc.api")
pytestmark = pytest.mark.mlir

from mlir_checks import check_spec_export  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
# small sizes so that each export (parameters are frozen into the module) stays quick
SMALL = {"dim": 32, "heads": 2, "layers": 1, "vocab": 64}
SPECS = {
    "titans": {**SMALL, "chunk": 4},
    "cms": {**SMALL, "fast": 2, "mid": 4, "slow": 8},
    "hope": {**SMALL, "chunk": 4, "mem_chunk": 8},
}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_spec_exports_to_linalg(name, tmp_path):
    spec = ROOT / "specs" / f"{name}.nl"
    if not spec.is_file():
        pytest.skip(f"{spec.relative_to(ROOT)} is not written yet")
    # seq_len 8 = the longest clock period above: every level reaches a chunk boundary
    check_spec_export(spec, SPECS[name], tmp_path, dialect="linalg", seq_len=8)


def test_titans_streams_through_iree():
    # segments of one period each through IREE, fast state (and position) carried over,
    # equal the whole sequence in PyTorch
    from mlir_checks import iree_available

    if not iree_available():
        pytest.skip("iree-base-compiler/runtime not installed")
    import torch
    from nlc.api import compile as nlc_compile

    from nlc.backends.torch_mlir import IreeModule

    model = nlc_compile(str(ROOT / "specs" / "titans.nl"), backend="torch", **SPECS["titans"]).eval()
    tokens = torch.randint(0, SMALL["vocab"], (1, 16), generator=torch.Generator().manual_seed(0))
    iree_model = IreeModule(model, "linalg")
    first = iree_model(tokens[:, :8])
    second = iree_model(tokens[:, 8:], first.state)
    with torch.no_grad():
        whole = model(tokens)
    torch.testing.assert_close(torch.cat([first.logits, second.logits], 1), whole.logits, rtol=0, atol=1e-4)
    for k, v in whole.state.items():
        torch.testing.assert_close(second.state[k], v, rtol=0, atol=1e-4)
