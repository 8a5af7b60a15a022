"""Test helpers for the MLIR backend: a tiny FileCheck and ``check_spec_export``.

``filecheck(text, checks)`` reads lit-style directives, one a line:

    CHECK-LABEL: func.func @forward(      # next match at or after the last one
    CHECK:       torch.aten.{{bmm|matmul}}  # {{...}} is a regex, the rest is literal
    CHECK-SAME:  tensor<1x8xi64>          # on the line of the previous match
    CHECK-NOT:   torch.aten.item          # absent between the neighbouring matches
    CHECK-COUNT-6: linalg.batch_matmul    # exactly 6 more of them, in order

A failing check raises AssertionError with the directive and the text where it looked.
"""

from __future__ import annotations

import re
from pathlib import Path

_DIRECTIVE = re.compile(r"^\s*(?://|#)?\s*(CHECK(?:-LABEL|-SAME|-NOT|-COUNT-\d+)?):\s?(.*)$")


def to_regex(pattern: str) -> re.Pattern:
    parts = re.split(r"\{\{(.*?)\}\}", pattern.strip())
    body = "".join(p if i % 2 else re.escape(p) for i, p in enumerate(parts))
    return re.compile(body)


def _fail(kind, pattern, text, pos, why):
    snippet = text[pos : pos + 400]
    raise AssertionError(f"{kind}: {pattern!r} {why}; looked from offset {pos} at:\n{snippet}")


def filecheck(text: str, checks: str) -> None:
    pos, line_end, nots = 0, len(text), []
    for raw in checks.strip().splitlines():
        m = _DIRECTIVE.match(raw)
        if not m:
            continue
        kind, pattern = m.group(1), m.group(2)
        rx = to_regex(pattern)
        if kind == "CHECK-NOT":
            nots.append((pattern, rx))
            continue
        count = int(kind.rsplit("-", 1)[1]) if kind.startswith("CHECK-COUNT") else 1
        for _ in range(count):
            end = line_end if kind == "CHECK-SAME" else len(text)
            hit = rx.search(text, pos, end)
            if hit is None:
                _fail(kind, pattern, text, pos, "not found")
            for npattern, nrx in nots:
                if nrx.search(text, pos, hit.start()):
                    _fail("CHECK-NOT", npattern, text, pos, "found")
            nots, pos = [], hit.end()
            nl = text.find("\n", pos)
            line_end = nl if nl >= 0 else len(text)
    for npattern, nrx in nots:
        if nrx.search(text, pos):
            _fail("CHECK-NOT", npattern, text, pos, "found")


def entry_signature(text: str, func_name: str = "forward") -> tuple[list[str], list[str]]:
    """``(argument types, result types)`` of ``func.func @func_name``."""
    m = re.search(rf"func\.func @{func_name}\((.*?)\) -> (.*?) \{{\n", text)
    assert m, f"no func.func @{func_name} in the module"
    args = re.findall(r"%arg\d+: ((?:!torch\.vtensor<\[[^\]]*\],\w+>)|(?:tensor<[^>]*>))", m.group(1))
    results = re.findall(r"(!torch\.vtensor<\[[^\]]*\],\w+>|tensor<[^>]*>)", m.group(2))
    return args, results


MATMUL = {
    "torch": r"torch.aten.{{(matmul|bmm|mm)}}",
    "linalg": r"linalg.{{(batch_matmul|matmul|generic)}}",
    "stablehlo": r"stablehlo.dot_general",
}


def token_type(dialect: str, batch: int, seq_len: int) -> str:
    if dialect == "torch":
        return f"!torch.vtensor<[{batch},{seq_len}],si64>"
    return f"tensor<{batch}x{seq_len}xi64>"


def iree_available() -> bool:
    try:
        import iree.compiler  # noqa: F401
        import iree.runtime  # noqa: F401
    except ImportError:
        return False
    return True


def check_spec_export(spec_path, overrides=None, out_dir=None, dialect="linalg", seq_len=16, batch=1, tol=1e-4):
    """Export a spec, check the entry function and matmuls; in IREE, match PyTorch within ``tol``."""
    from nlc.backends.torch_mlir import export_spec

    spec_path = Path(spec_path)
    out_dir = Path(out_dir or ".")
    run = iree_available()
    r = export_spec(
        spec_path, dialect=dialect, out_path=out_dir / f"{spec_path.stem}.{dialect}.mlir",
        seq_len=seq_len, batch=batch, overrides=dict(overrides or {}), run_iree=run,
    )
    text = r.path.read_text()
    assert r.bytes == len(text.encode()) and r.dialect == dialect
    args, results = entry_signature(text)
    assert len(args) == 1 + len(r.state_keys) and len(results) == 1 + len(r.state_keys), (args, results)
    assert args[0] == token_type(dialect, batch, seq_len)
    assert args[1:] == results[1:], "state in and state out differ in shape"
    filecheck(text, f"CHECK-LABEL: func.func @forward(\nCHECK: {MATMUL[dialect]}\nCHECK: return")
    if run:
        assert r.max_abs_diff is not None and r.max_abs_diff < tol, r.diffs
    return r
