"""Tiny run directories for the ecosystem tests, written as `nlc train` writes them but without
training (random weights serve every equivalence these tests check). A module of its own, not
conftest.py: tests import it by a name no other test folder uses."""
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[2]
TINY = dict(dim=16, heads=2, layers=1)
# TitansLMM: memories learn from their own inner loss (one read per token);
# Hope: CMS levels learn from the task loss too (two reads per token while generating)
SPECS = {"titans": (ROOT / "specs" / "titans.nl", "TitansLMM"), "hope": (ROOT / "specs" / "hope.nl", None)}


def make_run(out: Path, which: str = "titans", seed: int = 0, tokenizer: str = "bytes", **overrides) -> Path:
    import torch

    from nlc.api import compile
    from nlc.cli_run import _write_spec_record
    from nlc.train.checkpoint import save_checkpoint

    spec, model = SPECS[which]
    torch.manual_seed(seed)
    m = compile(str(spec), model=model, **{**TINY, **overrides})
    out.mkdir(parents=True, exist_ok=True)
    _write_spec_record(out, m, SimpleNamespace(model=model, tokenizer=tokenizer))
    save_checkpoint(out, m, None, 1)  # no optimizer: building one imports torch._dynamo (~10 s)
    return out
