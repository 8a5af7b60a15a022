"""The op set is written once (nlc/ir/kinds.py: OPS); the torch bindings cannot drift from it."""
import inspect
import re

import pytest

from nlc.ir.kinds import ACTS, BUILTINS, MEMORY_KINDS, OPS, OpKind
from nlc.lower import ops
from nlc.lower.program import Layer


def test_every_op_the_program_does_not_run_has_a_torch_function():
    assert set(ops.APPLY) == {k for k, info in OPS.items() if not info.program}


def test_ops_with_parameters_have_a_module_and_only_they():
    assert set(ops.MODULES) == {k for k, info in OPS.items() if info.params}


def test_the_program_runs_exactly_the_program_ops():
    # Layer._run_op handles these itself (they read levels or carry fast state), then hands the rest to APPLY
    src = inspect.getsource(Layer._run_op)
    handled = {OpKind[m] for m in re.findall(r"OpKind\.([A-Z_0-9]+)", src)}
    assert handled == {k for k, info in OPS.items() if info.program}


def test_activations_are_bound_once():
    assert set(ops.ACTS) == set(ACTS)
    assert all(OPS[a].builtin for a in ACTS)


def test_registry_is_the_front_end_vocabulary():
    # every builtin callable in a spec is an op kind, and no builtin shadows a memory kind but `linear`
    # (a memory `linear()` in a level's type, an op `linear(x)` in a stream: the grammar tells them apart)
    assert set(BUILTINS) <= set(OpKind)
    assert set(BUILTINS) & set(MEMORY_KINDS) == {OpKind.LINEAR}


@pytest.mark.parametrize("kind", sorted(k for k, info in OPS.items() if not info.program))
def test_each_op_runs(kind):
    torch = pytest.importorskip("torch")
    from nlc.ir.resolved import Op
    info = OPS[kind]
    attrs = {"groups": 2} if kind in (OpKind.L2NORM, OpKind.HEAD_MEAN) else {}
    x = torch.randn(2, 3, 4)
    op = Op(name="y", op=kind, inputs=["a", "b"][:info.arity], attrs=attrs, width=2 if kind == OpKind.HEAD_MEAN else 4)
    mod = ops.make_module(op, {"a": 4, "b": 4})
    y = ops.apply_op(op, mod, [x, x + 1][:info.arity])
    assert y.shape == (2, 3, op.width)
