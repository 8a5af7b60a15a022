"""The built-in specs, addressable by name from anywhere.

A spec argument is a path to a `.nl` file, or the name of a built-in spec with an optional
model: `hope`, `titans:TitansMAG`, `optim/adamw`, `titans.nl:TitansMAC`. An existing file
always wins over a built-in of the same name, so `nlc check hope` in a folder holding a file
called `hope` checks that file.

The repo's `specs/` folder is the source. A wheel installs it as `nlc/specs` (package data,
see pyproject.toml); a checkout or an editable install reads the repo folder itself.
"""
from __future__ import annotations

from pathlib import Path

from nlc.errors import NlcError

_HERE = Path(__file__).resolve().parent


def specs_dir() -> Path:
    """The folder of built-in specs: installed package data first, else the checkout's specs/."""
    for d in (_HERE / "specs", _HERE.parent / "specs"):
        if (d / "hope.nl").is_file():
            return d
    raise NlcError("the built-in specs are missing from this installation",
                   hint="reinstall nlc (pip install .), or run from a checkout that has specs/")


def builtin_names() -> list[str]:
    """Every built-in spec by name, e.g. ['cms', 'hope', ..., 'optim/adamw', ...]."""
    root = specs_dir()
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.nl"))


def builtin_file(name: str) -> Path | None:
    name = name.removesuffix(".nl")
    # only plain names below specs/: no absolute paths, no '..'
    if not name or name.startswith("/") or ".." in Path(name).parts:
        return None
    p = specs_dir() / f"{name}.nl"
    return p if p.is_file() else None


def resolve_spec(arg: str, model: str | None = None) -> tuple[str, str | None]:
    """(path, model) for a spec argument: a file, `NAME` or `NAME:MODEL` of a built-in spec.

    `model` (e.g. from --model) and a `:MODEL` suffix must agree when both are given."""
    arg = str(arg)
    if Path(arg).exists():
        return arg, model
    name, _, suffix = arg.partition(":")
    if suffix and model and suffix != model:
        raise NlcError(f"{arg}: names model '{suffix}' but --model is '{model}'", hint="give the model once")
    if suffix and Path(name).exists():  # a file with a model suffix: specs/titans.nl:TitansMAG
        return name, suffix or model
    p = builtin_file(name)
    if p is None:
        return arg, model  # not a built-in: the loader reports the missing file with its own hint
    return str(p), suffix or model
