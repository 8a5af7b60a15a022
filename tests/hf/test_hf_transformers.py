"""nlc models in transformers: export, save/load round trips, logits and greedy generation equal
to nlc's own, all offline from the folder alone. Skipped without the `hf` extra."""
import shutil

import pytest

pytest.importorskip("transformers")
import torch  # noqa: E402

import nlc  # noqa: E402
import nlc.hf  # noqa: E402,F401 - registers the model type `nlc`
from nlc.cli import main  # noqa: E402
from nlc.errors import NlcError  # noqa: E402
from nlc.train.evaluate import generate  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM  # noqa: E402

PROMPT = b"def main(x):\n    return x"


def _ids(b: bytes):
    return torch.tensor([list(b)])


def _nlc_logits(m, x):
    """nlc's own forward as `nlc generate` reads a prompt: with each token's successor as its target
    when CMS levels learn from the task loss (the last target is arbitrary: a level writes after it reads)."""
    with torch.no_grad():
        return m(x, targets=torch.roll(x, -1, 1) if m.cms_learns else None).logits


@pytest.fixture(scope="module")
def exported(runs, tmp_path_factory):
    out = {}
    for k, run in runs.items():
        dest = tmp_path_factory.mktemp("hf") / k
        assert main(["export", str(run), "--to", "hf", str(dest)]) == 0
        out[k] = dest
    return out


@pytest.mark.parametrize("which", ["titans", "hope"])
def test_logits_equal_nlc_after_a_round_trip(runs, exported, tmp_path, which):
    ref = nlc.load(runs[which]).eval()
    hf = AutoModelForCausalLM.from_pretrained(exported[which]).eval()
    x = _ids(PROMPT)
    want = _nlc_logits(ref, x)
    with torch.no_grad():
        got = hf(x).logits
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    hf.save_pretrained(tmp_path / "again")  # and once more through save_pretrained / from_pretrained
    with torch.no_grad():
        again = AutoModelForCausalLM.from_pretrained(tmp_path / "again").eval()(x).logits
    assert torch.equal(again, got)


@pytest.mark.parametrize("which", ["titans", "hope"])
def test_greedy_generate_equals_nlc_generate(runs, exported, which):
    ref = nlc.load(runs[which]).eval()
    want = generate(ref, PROMPT, max_new=12, temperature=0)
    hf = AutoModelForCausalLM.from_pretrained(exported[which]).eval()
    got = hf.generate(_ids(PROMPT), max_new_tokens=12, do_sample=False)
    assert bytes(got[0, len(PROMPT):].tolist()) == want
    # the state carried in the cache is what makes it so: memories frozen, the output differs
    frozen = generate(nlc.freeze(ref, "inner"), PROMPT, max_new=12, temperature=0)
    assert frozen != want


def test_the_folder_alone_loads_and_generates_offline(runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(runs["hope"], run)
    dest = tmp_path / "hf"
    assert main(["export", str(run), "--to", "hf", str(dest)]) == 0
    shutil.rmtree(run)  # nothing outside the folder is needed
    assert {"config.json", "model.safetensors"} <= {p.name for p in dest.iterdir()}
    cfg = AutoConfig.from_pretrained(dest)
    assert cfg.model_type == "nlc" and any(k.startswith("spec/") for k in cfg.nlc_files)
    hf = AutoModelForCausalLM.from_pretrained(dest)
    out = hf.generate(_ids(b"ab"), max_new_tokens=5, do_sample=True, top_p=0.9, temperature=0.8)
    assert out.shape == (1, 7)
    assert hf.nlc_tokenizer.decode([97, 98]) == b"ab"


def test_labels_give_nlc_loss(runs, exported):
    ref = nlc.load(runs["titans"]).eval()
    hf = AutoModelForCausalLM.from_pretrained(exported["titans"]).eval()
    x = _ids(PROMPT)
    with torch.no_grad():
        want = ref(x[:, :-1], targets=x[:, 1:]).loss
        got = hf(x, labels=x).loss
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_padding_and_a_tampered_spec_are_clear_errors(exported):
    hf = AutoModelForCausalLM.from_pretrained(exported["titans"])
    with pytest.raises(NlcError, match="padded"):
        hf(torch.tensor([[1, 2, 3]]), attention_mask=torch.tensor([[0, 1, 1]]))
    cfg = AutoConfig.from_pretrained(exported["titans"])
    main_file = cfg.nlc_record["spec_file"]
    bad = cfg.to_dict()
    bad["nlc_files"] = dict(bad["nlc_files"], **{main_file: bad["nlc_files"][main_file] + "\n# edited\n"})
    with pytest.raises(NlcError, match="spec_hash"):
        AutoModelForCausalLM.from_config(type(cfg).from_dict(bad))
    bad["nlc_files"] = {"../outside.nl": "model X() {}"}
    with pytest.raises(NlcError, match="outside"):
        AutoModelForCausalLM.from_config(type(cfg).from_dict(bad))


def test_export_errors_are_clear(runs, capsys, tmp_path):
    assert main(["export", str(runs["titans"]), "--to", "hf"]) == 2
    assert "needs one output folder" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nope"), "--to", "hf", str(tmp_path / "d")]) == 2
    assert "no such run directory" in capsys.readouterr().err
    assert main(["export", str(runs["titans"]), "--to", "onnx"]) == 2
    assert "--to onnx: unknown format" in capsys.readouterr().err
    assert main(["export", str(runs["titans"]), "--to", "mlir", "x.mlir"]) == 2
    assert "unexpected 'x.mlir'" in capsys.readouterr().err
    assert main(["export", str(runs["titans"]), "--to", "hf", "a", "-o", "b"]) == 2
    assert "two output folders" in capsys.readouterr().err


def test_a_batch_of_prompts_generates_as_each_alone(runs, exported):
    ref = nlc.load(runs["titans"]).eval()
    hf = AutoModelForCausalLM.from_pretrained(exported["titans"]).eval()
    prompts = [b"def f(x):", b"class A:("]
    got = hf.generate(torch.tensor([list(p) for p in prompts]), max_new_tokens=12, do_sample=False)
    for row, p in zip(got, prompts):
        assert bytes(row[len(p):].tolist()) == generate(ref, p, max_new=12, temperature=0)


def test_a_tokenizer_file_travels_in_the_config(tmp_path):
    """A run trained with --tokenizer tiktoken:FILE: the BPE file goes into the config too."""
    pytest.importorskip("tiktoken")
    import base64

    from hf_runs import make_run
    toks = [bytes([i]) for i in range(256)] + [b"de", b"def", b" x"]
    bpe = tmp_path / "bpe" / "tiny.tiktoken"
    bpe.parent.mkdir()
    bpe.write_text("".join(f"{base64.b64encode(t).decode()} {r}\n" for r, t in enumerate(toks)))
    run = make_run(tmp_path / "run", tokenizer=f"tiktoken:{bpe}", vocab=259)
    assert main(["export", str(run), "--to", "hf", str(tmp_path / "hf")]) == 0
    shutil.rmtree(bpe.parent)
    shutil.rmtree(run)
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    tok = hf.nlc_tokenizer
    assert tok.n_vocab == 259 and list(tok.encode(b"def x")) == [257, 258]
    assert hf.config.nlc_record["tokenizer_file"] == "tokenizer/tiny.tiktoken"
