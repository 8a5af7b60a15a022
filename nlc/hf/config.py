"""NlcConfig: a transformers config that carries an nlc model's whole spec (see nlc.hf.bundle)."""
from __future__ import annotations

from transformers import PretrainedConfig

MODEL_TYPE = "nlc"


class NlcConfig(PretrainedConfig):
    """`nlc_record`: the run's record (spec name and hash, model name, --set overrides, tokenizer);
    `nlc_files`: {path: text} of the spec and every file it imports (spec/...), and a tokenizer
    file (tokenizer/...) when the run has one. `vocab_size` and `hidden_size` are copies for
    tools that read them; the model is built from the spec alone."""

    model_type = MODEL_TYPE

    def __init__(self, nlc_record: dict | None = None, nlc_files: dict | None = None, vocab_size: int = 256,
                 hidden_size: int = 0, **kwargs):
        self.nlc_record = dict(nlc_record or {})
        self.nlc_files = dict(nlc_files or {})
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        kwargs.setdefault("tie_word_embeddings", False)  # nlc's head is its own matrix
        super().__init__(**kwargs)

    @property
    def spec_name(self) -> str | None:
        return self.nlc_record.get("spec_name")

    @property
    def overrides(self) -> dict:
        return dict(self.nlc_record.get("overrides", {}))
