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
    "cms": {**SMALL, "fast": 4, "mid": 8, "slow": 16},
    "hope": {**SMALL, "chunk": 4, "mem_chunk": 8},
}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_spec_exports_to_linalg(name, tmp_path):
    spec = ROOT / "specs" / f"{name}.nl"
    if not spec.is_file():
        pytest.skip(f"{spec.relative_to(ROOT)} is not written yet")
    check_spec_export(spec, SPECS[name], tmp_path, dialect="linalg", seq_len=16)
