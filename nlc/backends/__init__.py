"""nlc's backends beyond PyTorch. Their code lives in the repo's top-level `backends/` folder.

A wheel installs `backends/torch_mlir` as `nlc/backends/torch_mlir` (pyproject.toml maps it);
in a checkout, or on `PYTHONPATH=.`, this package also searches the repo's `backends/`, so
`import nlc.backends.torch_mlir` works without installing anything.
"""
from pathlib import Path

_REPO_BACKENDS = Path(__file__).resolve().parents[2] / "backends"
if (_REPO_BACKENDS / "torch_mlir" / "__init__.py").is_file() and str(_REPO_BACKENDS) not in __path__:
    __path__.append(str(_REPO_BACKENDS))
