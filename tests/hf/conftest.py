"""Tiny run directories for the ecosystem tests, written as `nlc train` writes them but without
training (random weights serve every equivalence these tests check), and offline mode for
Hugging Face libraries: nothing here may reach a network."""
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]
TINY = dict(dim=16, heads=2, layers=1)
# TitansLMM: memories learn from their own inner loss (one read per token);
# Hope: CMS levels learn from the task loss too (two reads per token while generating)
SPECS = {"titans": (ROOT / "specs" / "titans.nl", "TitansLMM"), "hope": (ROOT / "specs" / "hope.nl", None)}

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def make_run(out: Path, which: str = "titans", seed: int = 0) -> Path:
    import torch

    from nlc.api import compile
    from nlc.cli_run import _write_spec_record
    from nlc.train.checkpoint import save_checkpoint

    spec, model = SPECS[which]
    torch.manual_seed(seed)
    m = compile(str(spec), model=model, **TINY)
    out.mkdir(parents=True, exist_ok=True)
    _write_spec_record(out, m, SimpleNamespace(model=model, tokenizer="bytes"))
    save_checkpoint(out, m, None, 1)  # no optimizer: building one imports torch._dynamo (~10 s)
    return out


@pytest.fixture(autouse=True)
def one_thread():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("runs")
    return {k: make_run(base / k, k) for k in SPECS}
