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
