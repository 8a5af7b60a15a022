"""The lowering executes what the compiler decided: it reads the resolved plan and the schedule
(nlc.ir.resolved, nlc.ir.schedule) and imports neither the surface IR, the front end, nor the
passes. A static check of every import in nlc/lower (lazy imports inside functions included)."""
import ast
from pathlib import Path

LOWER = Path(__file__).resolve().parents[2] / "nlc" / "lower"
FORBIDDEN = ("nlc.passes", "nlc.frontend", "nlc.ir.nodes", "nlc.graph", "nlc.api")


def _imports(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{a.name}" for a in node.names)


def test_lower_imports_only_the_plan_and_the_schedule():
    bad = sorted({f"{p.name}: {m}" for p in LOWER.glob("*.py") for m in _imports(p)
                  if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)})
    assert not bad, bad


def test_no_attribute_is_set_on_a_model_from_outside():
    """`nlc.api` builds the model with its constructor; it sets nothing on it afterwards."""
    src = (LOWER.parent / "api.py").read_text()
    tree = ast.parse(src)
    sets = [ast.unparse(t) for n in ast.walk(tree) if isinstance(n, (ast.Assign, ast.AugAssign))
            for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
            if isinstance(t, ast.Attribute)]
    assert not sets, sets
