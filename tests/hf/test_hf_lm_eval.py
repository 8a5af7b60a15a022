"""The lm-evaluation-harness model type `nlc`, offline, on the toy tasks of tests/hf/tasks/ (task
YAMLs over a JSONL file). Its scores are checked against a plain reading of each request from a
fresh state. Skipped without the `lm-eval` extra."""
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lm_eval")
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from lm_eval.api.instance import Instance  # noqa: E402

import nlc  # noqa: E402
from nlc.hf.harness import NlcLM  # noqa: E402

TASKS = Path(__file__).parent / "tasks"
ROOT = Path(__file__).resolve().parents[2]


def _req(kind, *args):
    return Instance(request_type=kind, doc={}, arguments=args, idx=0)


def plain_logprob(m, ids: list[int], start: int) -> float:
    """Sum of log p(ids[t] | ids[:t]) for t >= start, from one forward over the whole sequence (with each
    token's successor as its target, as nlc generate reads a prompt, when CMS levels learn from it)."""
    x = torch.tensor([ids[:-1]])
    y = torch.tensor([ids[1:]])
    with torch.no_grad():
        logits = m(x, targets=y if m.cms_learns else None).logits[0]
    logp = F.log_softmax(logits.float(), -1).gather(-1, y[0][:, None])[:, 0]
    return float(logp[start - 1:].sum())


@pytest.fixture(scope="module")
def lm(runs):
    return NlcLM(run=str(runs["hope"]), device="cuda")  # lm-eval's default device; no CUDA here: the CPU


def test_loglikelihood_equals_a_plain_reading(lm, runs):
    m = nlc.load(runs["hope"]).eval()
    reqs = [("def f(x):\n    return", " x"), ("def f(x):\n    return", " ]]"), ("import os\n", "import sys"),
            ("", "abc")]
    got = lm.loglikelihood([_req("loglikelihood", *r) for r in reqs])
    for (ctx, cont), (ll, greedy) in zip(reqs, got):
        # as lm-eval's HF model: the context's trailing whitespace is scored with the continuation
        c = list((ctx.rstrip() or "\n").encode())
        want = plain_logprob(m, c + list((ctx[len(ctx.rstrip()):] + cont).encode()), len(c))
        assert ll == pytest.approx(want, rel=1e-4, abs=1e-4), (ctx, cont)
        assert isinstance(greedy, bool)


def test_an_exported_folder_scores_as_its_run(lm, runs, tmp_path):
    from nlc.cli import main
    assert main(["export", str(runs["hope"]), "--to", "hf", str(tmp_path / "hf")]) == 0
    reqs = [_req("loglikelihood", "def f(x):", " return x"), _req("loglikelihood", "import", " os")]
    assert NlcLM(pretrained=str(tmp_path / "hf")).loglikelihood(reqs) == lm.loglikelihood(reqs)


def test_rolling_and_generate_until(lm, runs):
    m = nlc.load(runs["hope"]).eval()
    text = "for i in range(10):\n    print(i)\n"
    (ll,) = lm.loglikelihood_rolling([_req("loglikelihood_rolling", text)])
    assert ll == pytest.approx(plain_logprob(m, [10] + list(text.encode()), 1), rel=1e-4, abs=1e-4)
    from nlc.train.evaluate import generate
    full = generate(m, b"def ", max_new=10, temperature=0).decode("utf-8", errors="replace")
    stop = full[3] if len(full) > 3 else "\n"
    (out,) = lm.generate_until([_req("generate_until", "def ", {"until": [stop], "max_gen_toks": 10})])
    assert out == full.split(stop)[0]


def test_simple_evaluate_on_local_tasks(runs, monkeypatch, tmp_path):
    """lm-eval's own evaluator, with the model type by name and the toy tasks by --include_path."""
    import lm_eval
    from lm_eval.tasks import TaskManager
    monkeypatch.chdir(TASKS)  # the task YAMLs name toy.jsonl relative to the working directory
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    res = lm_eval.simple_evaluate(model="nlc", model_args=f"run={runs['titans']}", limit=1,
                                  tasks=["nlc_toy_choice", "nlc_toy_rolling", "nlc_toy_generate"],
                                  task_manager=TaskManager(include_path=str(TASKS), include_defaults=False))
    r = res["results"]
    assert 0 <= r["nlc_toy_choice"]["acc,none"] <= 1
    assert math.isfinite(r["nlc_toy_rolling"]["bits_per_byte,none"]) and r["nlc_toy_rolling"]["bits_per_byte,none"] > 0
    assert r["nlc_toy_generate"]["exact_match,none"] in (0.0, 1.0)


@pytest.mark.slow
def test_the_command_line_runs_offline(runs, tmp_path):
    """`python -m nlc.hf.harness` is lm-eval's command line with the model type `nlc` registered (~1 min)."""
    env = dict(os.environ, HF_DATASETS_CACHE=str(tmp_path / "datasets"), PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-m", "nlc.hf.harness", "--model", "nlc", "--model_args",
                        f"run={runs['titans']}", "--tasks", "nlc_toy_choice", "--include_path", ".", "--limit", "2"],
                       cwd=TASKS, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "nlc_toy_choice" in p.stdout and "acc" in p.stdout


def test_freeze_switches_off_in_context_learning(lm, runs):
    reqs = [_req("loglikelihood", "abcabcabcabcabcabcabc", "abcabc")]
    frozen = NlcLM(run=str(runs["hope"]), freeze="inner")
    assert frozen.loglikelihood(reqs) != lm.loglikelihood(reqs)
