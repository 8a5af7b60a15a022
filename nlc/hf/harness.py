"""nlc models in lm-evaluation-harness (the `lm-eval` extra): the model type `nlc`.

    python -m nlc.hf.harness --model nlc --model_args run=RUN_DIR --tasks lambada_openai,piqa

is lm-eval's own command line (`lm_eval ...`, every flag the same) with this module imported
first, which registers `nlc` (as fla's evals/harness.py registers `fla`): lm-eval 0.4 fills its
model registry only from its own table, so a model type from another package exists only once
that package's module is imported. From Python: `import nlc.hf.harness`, then
`lm_eval.simple_evaluate(model="nlc", model_args="run=RUN_DIR", ...)`.

model_args: run=RUN_DIR (a directory written by nlc train) or pretrained=DIR (a folder written
by nlc export --to hf); backend=torch|reference|compile|triton (run only); freeze=LEVELS (no
in-context learning in these levels, as --freeze); device=cpu|cuda; max_length=N (score only the
last N tokens of a longer input; default: all, the fast state has no window).

Every request starts from a fresh fast state and reads its input as `nlc generate` does: levels
taught by the task loss (CMS) learn from each token's known successor. Requests that share a
context read it once: the state after the context is reused for every continuation.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from nlc.errors import NlcError

MODEL_NAME = "nlc"


def _detached(state: dict) -> dict:
    return {k: v.detach() for k, v in state.items()}


@register_model(MODEL_NAME)
class NlcLM(LM):
    def __init__(self, run: str | None = None, pretrained: str | None = None, backend: str = "torch",
                 freeze: str | None = None, device: str | None = None, max_length: int | None = None,
                 batch_size=None, max_batch_size=None, **kwargs):
        super().__init__()
        if (run is None) == (pretrained is None):
            raise NlcError("the nlc model type needs one of run=RUN_DIR or pretrained=HF_FOLDER in --model_args",
                           hint="--model_args run=runs/hope")
        if run is not None:
            from nlc.api import load
            model = load(run, backend=backend)
            self.tok = model.tokenizer
        else:
            from nlc.hf import NlcForCausalLM
            hf = NlcForCausalLM.from_pretrained(pretrained)
            model, self.tok = hf.nlc, hf.nlc_tokenizer
        if freeze:
            from nlc.api import freeze as freeze_levels
            model = freeze_levels(model, freeze)
        # lm-eval passes device=cuda unless told otherwise; without CUDA, as its HF model, run on the CPU
        if not device or (str(device).startswith("cuda") and not torch.cuda.is_available()):
            device = "cpu"
        self.model = model.to(device).eval()
        self.max_length = int(max_length) if max_length else None
        self._device = torch.device(device)
        self.teach = bool(model.cms_learns)
        # an empty context reads one newline first, as nlc generate does with an empty prompt
        self.prefix = [int(t) for t in self.tok.encode(b"\n")]

    # ---- tokens
    def _enc(self, text: str) -> list[int]:
        return [int(t) for t in self.tok.encode(text.encode("utf-8"))]

    def _pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Context and continuation tokens, split as lm-eval's HF model splits them: trailing spaces of
        the context go to the continuation, and the continuation is what the whole adds to the context."""
        n = len(context) - len(context.rstrip())
        if n:
            context, continuation = context[:-n], context[-n:] + continuation
        whole, ctx = self._enc(context + continuation), self._enc(context)
        return (ctx or self.prefix), whole[len(ctx):]

    # ---- reading
    def _read(self, ids: list[int], state: dict | None, next_id: int | None):
        """Logits after each of `ids` and the state after them; with CMS teaching, the last token is
        committed only when its successor `next_id` is given (else its read is dropped from the state)."""
        m = self.model
        x = torch.tensor([ids], dtype=torch.long, device=self._device)
        state = m.init_state(1) if state is None else state
        if not self.teach:
            out = m(x, state=state)
            return out.logits[0], out.state
        tgt = torch.tensor([ids[1:] + [next_id if next_id is not None else 0]], dtype=torch.long, device=self._device)
        if next_id is None:  # the last token has no target: read it separately, keep the state before it
            logits = []
            if len(ids) > 1:
                out = m(x[:, :-1], state=state, targets=tgt[:, :-1])
                state = _detached(out.state)
                logits.append(out.logits[0])
            logits.append(m(x[:, -1:], state=state).logits[0])
            return torch.cat(logits), state
        out = m(x, state=state, targets=tgt)
        return out.logits[0], _detached(out.state)

    def _clip(self, ctx: list[int], cont: list[int]) -> list[int]:
        if self.max_length and len(ctx) + len(cont) > self.max_length + 1:
            return ctx[len(ctx) + len(cont) - self.max_length - 1:]
        return ctx

    @torch.no_grad()
    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        pairs = [self._pair(*r.args) for r in requests]
        results: list = [None] * len(pairs)
        by_ctx: dict[tuple, list[int]] = {}
        for i, (ctx, cont) in enumerate(pairs):
            by_ctx.setdefault(tuple(self._clip(ctx, cont)), []).append(i)
        for ctx, idx in by_ctx.items():
            ctx = list(ctx)
            # the context but its last token, read once; each continuation then reads that token onwards
            head_logits, head_state = (None, None)
            if len(ctx) > 1:
                head_logits, head_state = self._read(ctx[:-1], None, ctx[-1])
            for i in idx:
                cont = pairs[i][1]
                if not cont:
                    results[i] = (0.0, True)
                    continue
                state = None if head_state is None else dict(head_state)
                logits, _ = self._read([ctx[-1]] + cont[:-1], state, cont[-1])
                logp = F.log_softmax(logits.float(), -1)
                want = torch.tensor(cont, device=logp.device)
                results[i] = (float(logp.gather(-1, want[:, None]).sum()), bool((logp.argmax(-1) == want).all()))
        return results

    @torch.no_grad()
    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """The log-likelihood of each whole text (wikitext's perplexity): one pass, the fast state
        carried from the first token to the last (no windows to re-read), read in pieces of 2048
        tokens to bound memory."""
        out = []
        for r in requests:
            ids = self.prefix + self._enc(r.args[0])
            if self.max_length:
                ids = ids[-(self.max_length + 1):]
            total, state, piece = 0.0, None, 2048
            for s in range(0, len(ids) - 1, piece):  # every token but the last is read; each predicts the next
                nxt = ids[s + 1:s + 1 + piece]
                chunk = ids[s:s + len(nxt)]
                logits, state = self._read(chunk, state, nxt[-1])
                logp = F.log_softmax(logits.float(), -1)
                total += float(logp.gather(-1, torch.tensor(nxt, device=logp.device)[:, None]).sum())
            out.append(total)
        return out

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        from nlc.train.evaluate import generate

        out = []
        for r in requests:
            context, kw = r.args
            kw = dict(kw or {})
            until = kw.pop("until", None) or []
            until = [until] if isinstance(until, str) else list(until)
            max_new = int(kw.pop("max_gen_toks", 256))
            temperature = float(kw.pop("temperature", 0.0)) if kw.pop("do_sample", False) else 0.0
            ids = self._enc(context) or self.prefix

            def stop(new, until=until):
                text = self.tok.decode(new).decode("utf-8", errors="replace")
                return any(u in text for u in until)
            new = generate(self.model, ids, max_new=max_new, temperature=temperature, top_k=kw.get("top_k"),
                           top_p=kw.get("top_p"), seed=int(kw.get("seed", 0)), stop=stop if until else None)
            text = self.tok.decode(new).decode("utf-8", errors="replace")
            for u in until:
                text = text.split(u)[0]
            out.append(text)
        return out


def main() -> None:
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()


if __name__ == "__main__":
    main()
