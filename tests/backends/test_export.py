"""MLIR export of the forward step (stand-in model), lit-style checks, IREE vs PyTorch."""

from __future__ import annotations

import json
import string
import sys
import types

import pytest

pytest.importorskip("torch_mlir")
pytestmark = pytest.mark.mlir

import torch  # noqa: E402
from mlir_checks import MATMUL, entry_signature, filecheck, iree_available, token_type  # noqa: E402
from standin import make_standin  # noqa: E402

from nlc.backends.torch_mlir import (  # noqa: E402
    ExportError,
    IreeModule,
    export_module,
    export_spec,
    run_iree,
    step_function,
)

B, T, H, DH, V = 2, 8, 2, 16, 64  # batch, seq_len (2 chunks of 4), heads, head dim, vocab
needs_iree = pytest.mark.skipif(not iree_available(), reason="iree-base-compiler/runtime not installed")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(42)
    return make_standin(vocab=V, d_model=H * DH, heads=H, chunk=4)


@pytest.fixture(scope="module")
def exported(model):
    cache = {}

    def get(dialect):
        if dialect not in cache:
            cache[dialect] = export_module(model, B, T, dialect)
        return cache[dialect]

    return get


def state_type(dialect):
    if dialect == "torch":
        return f"!torch.vtensor<[{B},{H},{DH},{DH}],f32>"
    return f"tensor<{B}x{H}x{DH}x{DH}xf32>"


def logits_type(dialect):
    return f"!torch.vtensor<[{B},{T},{V}],f32>" if dialect == "torch" else f"tensor<{B}x{T}x{V}xf32>"


# ---- lit-style checks per dialect

CHECKS = {
    "torch": r"""
        CHECK-LABEL: func.func @forward(%arg0: $tok, %arg1: $st, %arg2: $st) -> ($lg, $st, $st)
        CHECK:       torch.aten.embedding
        CHECK:       torch.aten.sigmoid
        CHECK-COUNT-6: torch.aten.bmm
        CHECK-NOT:   torch.aten.item
        CHECK:       return
    """,
    "linalg": r"""
        CHECK-LABEL: func.func @forward(%arg0: $tok, %arg1: $st, %arg2: $st) -> ($lg, $st, $st)
        CHECK-NOT:   {{torch\.aten|!torch\.vtensor}}
        CHECK-COUNT-6: linalg.batch_matmul
        CHECK:       return
    """,
    "stablehlo": r"""
        CHECK-LABEL: func.func @forward(%arg0: $tok, %arg1: $st, %arg2: $st) -> ($lg, $st, $st)
        CHECK:       stablehlo.gather
        CHECK:       stablehlo.logistic
        CHECK:       stablehlo.dot_general
        CHECK-NOT:   {{torch\.aten|!torch\.vtensor}}
        CHECK:       return
    """,
}


@pytest.mark.parametrize("dialect", ["torch", "linalg", "stablehlo"])
def test_export_each_dialect(exported, dialect):
    text = exported(dialect)
    types_ = {"tok": token_type(dialect, B, T), "st": state_type(dialect), "lg": logits_type(dialect)}
    checks = string.Template(CHECKS[dialect]).substitute(types_)
    filecheck(text, checks)
    filecheck(text, f"CHECK: {MATMUL[dialect]}")
    args, results = entry_signature(text)
    assert len(args) == 3 and len(results) == 3


def test_chunk_loop_unrolls_with_seq_len(model, exported):
    # 3 batched matmuls per chunk: the read o = W q, W k and the update (W k - v) k^T
    longer = export_module(model, B, 2 * T, "torch")
    assert exported("torch").count("torch.aten.bmm") == 6
    assert longer.count("torch.aten.bmm") == 12


def test_without_state_and_func_name(model):
    text = export_module(model, 1, T, "linalg", with_state=False, func_name="step")
    filecheck(text, f"CHECK-LABEL: func.func @step(%arg0: tensor<1x{T}xi64>) -> tensor<1x{T}x{V}xf32>")


def test_export_keeps_training_mode(model):
    model.train()
    try:
        export_module(model, 1, 4, "torch")
        assert model.training
    finally:
        model.eval()


def test_state_keys_are_sorted(model):
    _, keys, inputs = step_function(model, B, T)
    assert keys == sorted(model.init_state(1)) == ["mem.S", "mem.W"]
    assert [tuple(t.shape) for t in inputs] == [(B, T)] + [(B, H, DH, DH)] * 2


# ---- errors name what is wrong, in one line


class _Zeta(torch.nn.Module):
    def init_state(self, batch):
        return {"s": torch.ones(batch, 4)}

    def forward(self, tokens, state=None, targets=None):
        s = state["s"]
        return {"logits": tokens.float()[..., None], "state": {"s": torch.special.zeta(s + 1, s)}}


class _Branchy(_Zeta):
    def forward(self, tokens, state=None, targets=None):
        s = state["s"]
        if s.sum() > 0:  # data-dependent: not exportable
            s = s * 2
        return {"logits": tokens.float()[..., None], "state": {"s": s}}


def test_unsupported_op_is_named():
    with pytest.raises(ExportError, match=r"op torch\.aten\.special_zeta is not supported") as e:
        export_module(_Zeta(), 1, 4, "linalg")
    assert "\n" not in str(e.value)


def test_data_dependent_control_flow_is_explained():
    with pytest.raises(ExportError, match="data-dependent control flow") as e:
        export_module(_Branchy(), 1, 4, "torch")
    assert "\n" not in str(e.value) and "test_export.py" in str(e.value)


def test_unknown_dialect(model):
    with pytest.raises(ExportError, match="unknown dialect 'mhlo'"):
        export_module(model, 1, 4, "mhlo")


# ---- export_spec: files, results, loading through nlc.api


def test_export_spec_writes_file(model, tmp_path):
    r = export_spec("standin.nl", module=model, dialect="stablehlo", out_path=tmp_path / "m.mlir", seq_len=T, batch=B)
    assert r.path.read_text().startswith("module") and r.bytes == r.path.stat().st_size
    assert r.dialect == "stablehlo" and r.max_abs_diff is None and r.state_keys == ["mem.S", "mem.W"]
    assert r.seconds > 0


def _fake_api(monkeypatch, model, calls):
    api = types.ModuleType("nlc.api")
    api.compile = lambda spec, backend="torch", **kw: calls.append(("compile", spec, backend, kw)) or model
    api.load = lambda run, **kw: calls.append(("load", run, kw)) or types.SimpleNamespace(model=model)
    monkeypatch.setitem(sys.modules, "nlc.api", api)


def test_export_spec_compiles_spec_and_loads_run(model, tmp_path, monkeypatch):
    calls = []
    _fake_api(monkeypatch, model, calls)
    spec = tmp_path / "tiny.nl"
    spec.write_text("model Tiny() {}\n")
    monkeypatch.chdir(tmp_path)
    r = export_spec(spec, dialect="torch", seq_len=4, overrides={"dim": 32})
    assert r.path.name == "tiny.mlir" and calls[-1] == ("compile", str(spec), "torch", {"dim": 32})
    run = tmp_path / "run1"
    run.mkdir()
    (run / "spec.json").write_text(json.dumps({"spec": "tiny.nl"}))
    r = export_spec(run, dialect="torch", seq_len=4, out_path=tmp_path / "out" / "run.mlir")
    assert r.path.is_file() and calls[-1] == ("load", str(run), {})


def test_export_spec_errors(tmp_path, monkeypatch):
    with pytest.raises(ExportError, match="no such spec file or run directory"):
        export_spec(tmp_path / "missing.nl")
    with pytest.raises(ExportError, match="not a training run: it has no spec.json"):
        export_spec(tmp_path)
    monkeypatch.setitem(sys.modules, "nlc.api", types.ModuleType("nlc.api"))
    (tmp_path / "spec.json").write_text("{}")
    with pytest.raises(ExportError, match=r"needs nlc\.api\.load"):
        export_spec(tmp_path)
    with pytest.raises(ExportError, match="unknown export target 'onnx'"):
        export_spec(tmp_path, to="onnx")


# ---- IREE runs the exported step and agrees with PyTorch


@needs_iree
@pytest.mark.parametrize("dialect", ["linalg", "torch", "stablehlo"])
def test_iree_matches_pytorch(model, exported, dialect):
    step, keys, inputs = step_function(model, B, T, seed=3)
    with torch.no_grad():
        inputs = [inputs[0], *step(*inputs)[1:]]  # start from a non-trivial state
        expected = step(*inputs)
    got = run_iree(exported(dialect), inputs, dialect)
    assert len(got) == 1 + len(keys)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=0, atol=1e-4)


@needs_iree
def test_export_spec_run_iree_and_vmfb(model, tmp_path):
    # T=10 is not a multiple of the chunk (4): the last chunk is partial
    r = export_spec("standin.nl", module=model, to="vmfb", out_path=tmp_path / "m.vmfb", seq_len=10, run_iree=True)
    assert r.path.stat().st_size == r.bytes > 0
    assert set(r.diffs) == {"logits", "mem.S", "mem.W"} and r.max_abs_diff < 1e-4


@needs_iree
def test_iree_module_carries_state_across_segments(model):
    # two segments through IREE, fast state carried over == the whole sequence in PyTorch
    tokens = torch.randint(0, V, (B, 2 * T), generator=torch.Generator().manual_seed(1))
    iree_model = IreeModule(model, "linalg")
    first = iree_model(tokens[:, :T])
    second = iree_model(tokens[:, T:], first.state)
    with torch.no_grad():
        whole = model(tokens)
    torch.testing.assert_close(torch.cat([first.logits, second.logits], 1), whole.logits, rtol=0, atol=1e-4)
    for k, v in whole.state.items():
        torch.testing.assert_close(second.state[k], v, rtol=0, atol=1e-4)


def test_export_spec_warns_when_seq_len_breaks_the_schedule(tmp_path):
    model = make_standin(vocab=V, d_model=H * DH, heads=H, chunk=4)
    model.clock_period = 8
    r = export_spec("standin.nl", module=model, dialect="torch", out_path=tmp_path / "m.mlir", seq_len=4)
    assert r.period == 8 and len(r.warnings) == 1 and "--seq-len 8" in r.warnings[0]
