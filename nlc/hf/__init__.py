"""nlc models in Hugging Face transformers (the `hf` extra: pip install "nlc[hf]").

Importing this module registers the model type `nlc` with AutoConfig and AutoModelForCausalLM,
as fla registers its models, so a folder written by `nlc export RUN --to hf DIR` (or by
`save_pretrained`) loads with

    import nlc.hf
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(DIR)

The spec travels inside the folder's config.json (nlc.hf.bundle), the weights in
model.safetensors. See docs/ecosystem.md.
"""
from __future__ import annotations

from nlc.errors import NlcError


class MissingExtra(NlcError, ImportError):
    """An optional extra that is not installed (an ImportError too, for code that probes for it)."""


try:
    from transformers import AutoConfig, AutoModelForCausalLM
except ImportError as e:  # the extra is optional: say how to get it
    raise MissingExtra(f"nlc.hf needs transformers ({e})", hint='pip install "nlc[hf]"') from None

from nlc.hf.config import MODEL_TYPE, NlcConfig  # noqa: E402
from nlc.hf.model import NlcCache, NlcForCausalLM  # noqa: E402

AutoConfig.register(MODEL_TYPE, NlcConfig, exist_ok=True)
AutoModelForCausalLM.register(NlcConfig, NlcForCausalLM, exist_ok=True)


def from_run(run_dir) -> NlcForCausalLM:
    """The transformers model of a trained run directory, with its latest weights."""
    from nlc.hf.bundle import bundle_of_run

    record, files, model = bundle_of_run(run_dir)
    config = NlcConfig(nlc_record=record, nlc_files=files, vocab_size=model.plan.vocab, hidden_size=model.plan.dim)
    hf = NlcForCausalLM(config)
    hf.nlc.load_state_dict(model.state_dict())
    return hf.eval()


def export_run(run_dir, dest) -> str:
    """Write run_dir's model as a transformers folder `dest` (config.json with the spec,
    model.safetensors); returns the folder."""
    hf = from_run(run_dir)
    hf.save_pretrained(str(dest), safe_serialization=True)
    return str(dest)


__all__ = ["NlcConfig", "NlcForCausalLM", "NlcCache", "from_run", "export_run", "MissingExtra"]
