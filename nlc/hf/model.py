"""NlcForCausalLM: a transformers PreTrainedModel + GenerationMixin around a compiled nlc model.

The "cache" of an nlc model is its fast state (the dict `m(tokens, state=...)` returns: every
memory's weights, momenta, CMS stages, attention windows): `NlcCache` carries it between the
calls `generate()` makes, so the in-context levels keep learning while generating, exactly as
`nlc generate` (nlc.train.evaluate.generate) does, including its two reads per token for
models whose CMS levels learn from the task loss (`cms_learns`):

- the tokens fed are read with each token's successor as its target (the CMS levels learn);
- the last token fed has no successor yet: it is read without a target, its state change is
  dropped, and it is kept in the cache (`pending`) until the next call brings its successor,
  which commits it. A level's writes come after its reads, so the logits of both reads are equal.

Padding has no meaning for a fast state that starts at a sequence's first token, so an
attention_mask with zeros is refused (one prompt per call, or prompts of one length).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from nlc.errors import NlcError
from nlc.hf.bundle import build
from nlc.hf.config import NlcConfig


# the name transformers gives the cache, in the model's arguments and outputs: `cache` from 5.2x on,
# `past_key_values` before
CACHE_KW = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


class NlcCache:
    """The fast state after the tokens read so far (`state`), and for models whose CMS levels
    learn from the task loss the last token read but not yet committed (`pending`, (B, 1))."""

    is_compileable = False

    def __init__(self, state: dict, pending: torch.Tensor | None = None):
        self.state, self.pending = state, pending

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """How many tokens this cache has read (transformers asks, to feed only the new ones)."""
        if not self.state:  # made by prepare_inputs_for_generation before the first forward
            return 0
        pos = self.state["pos"]
        done = int(pos[0]) if pos.numel() else 0
        return done + (0 if self.pending is None else self.pending.size(1))

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Beam search: every entry of the state has the batch first."""
        self.state = {k: v.index_select(0, beam_idx.to(v.device)) for k, v in self.state.items()}
        if self.pending is not None:
            self.pending = self.pending.index_select(0, beam_idx.to(self.pending.device))

    def __len__(self) -> int:  # transformers tests `len(cache)`-style emptiness in places
        return self.get_seq_length()


def _detached(state: dict) -> dict:
    return {k: v.detach() for k, v in state.items()}


class NlcPreTrainedModel(PreTrainedModel):
    config_class = NlcConfig
    base_model_prefix = "nlc"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = False
    _is_stateful = True  # a recurrent state, not a key/value cache: no assisted decoding

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        """No DynamicCache: the cache is an NlcCache, made by prepare_inputs_for_generation (as mamba's)."""
        return False

    def _init_weights(self, module):
        """Nothing: an nlc model initialises its own weights as its spec says (nlc.lower)."""


class NlcForCausalLM(NlcPreTrainedModel, GenerationMixin):
    def __init__(self, config: NlcConfig):
        super().__init__(config)
        model, tokenizer = build(config.nlc_record, config.nlc_files)
        self.nlc = model                  # the compiled nlc model (nlc.lower.program.NLModel)
        self.nlc_tokenizer = tokenizer    # nlc's tokenizer of the run (bytes, or a tiktoken encoding)
        self.post_init()

    # transformers' accessors
    def get_input_embeddings(self):
        return self.nlc.embed

    def set_input_embeddings(self, value):
        self.nlc.embed = value

    def get_output_embeddings(self):
        return self.nlc.head

    def set_output_embeddings(self, value):
        self.nlc.head = value

    def forward(self, input_ids: torch.LongTensor | None = None, attention_mask: torch.Tensor | None = None,
                cache: NlcCache | None = None, inputs_embeds: torch.Tensor | None = None,
                labels: torch.LongTensor | None = None, use_cache: bool | None = None,
                return_dict: bool | None = None, logits_to_keep: int = 0, past_key_values: NlcCache | None = None,
                **kwargs) -> CausalLMOutputWithPast:
        """Logits of every position (the last `logits_to_keep` if > 0), the loss against `labels`
        (shifted here, -100 ignored), and the updated NlcCache (`cache`, or `past_key_values`
        in older transformers)."""
        past_key_values = cache if cache is not None else past_key_values
        if input_ids is None:
            raise NlcError("an nlc model reads token ids (input_ids); inputs_embeds is not supported",
                           hint="pass input_ids")
        if attention_mask is not None and not bool(attention_mask.bool().all()):
            raise NlcError("an nlc model cannot read padded batches (attention_mask with zeros): its fast state "
                           "starts at each sequence's first token", hint="one prompt per call, or prompts of one length")
        cache = past_key_values if isinstance(past_key_values, NlcCache) and past_key_values.get_seq_length() else None
        m = self.nlc
        B = input_ids.size(0)
        state = cache.state if cache is not None else m.init_state(B)
        pending = cache.pending if cache is not None else None
        if m.cms_learns:
            if pending is not None:  # the pending token's successor is here: commit it
                state = _detached(m(pending, state=state, targets=input_ids[:, :1]).state)
            parts = []
            if input_ids.size(1) > 1:
                out = m(input_ids[:, :-1], state=state, targets=input_ids[:, 1:])
                state = out.state if torch.is_grad_enabled() else _detached(out.state)
                parts.append(out.logits)
            parts.append(m(input_ids[:, -1:], state=state).logits)  # read; its state change waits for a target
            logits, new_state, new_pending = torch.cat(parts, 1), state, input_ids[:, -1:]
        else:
            out = m(input_ids, state=state)
            logits, new_state, new_pending = out.logits, out.state, None
        loss = None
        if labels is not None:  # transformers' convention: labels are the inputs, shifted here
            loss = F.cross_entropy(logits[:, :-1].float().flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)
        if logits_to_keep:
            logits = logits[:, -logits_to_keep:]
        if use_cache is False:
            new_cache = None
        elif isinstance(past_key_values, NlcCache):  # updated in place: generate() may keep the object
            past_key_values.state, past_key_values.pending = new_state, new_pending
            new_cache = past_key_values
        else:
            new_cache = NlcCache(new_state, new_pending)
        return CausalLMOutputWithPast(loss=loss, logits=logits, **{CACHE_KW: new_cache})

    def prepare_inputs_for_generation(self, input_ids, cache=None, attention_mask=None, use_cache=True,
                                      past_key_values=None, **kwargs):
        """Only the tokens the cache has not read yet (the whole prompt on the first call)."""
        past_key_values = cache if cache is not None else past_key_values
        if not isinstance(past_key_values, NlcCache):
            past_key_values = NlcCache({}, None) if use_cache is not False else None
        seen = past_key_values.get_seq_length() if past_key_values is not None and past_key_values.state else 0
        return {"input_ids": input_ids[:, seen:], CACHE_KW: past_key_values,
                "attention_mask": attention_mask, "use_cache": use_cache}

    def _reorder_cache(self, past_key_values, beam_idx):
        past_key_values.reorder_cache(beam_idx)
        return past_key_values
