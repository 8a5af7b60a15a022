"""nlc as a new user gets it: a wheel that works outside the checkout, built-in specs by name,
`nlc.backends` importable from a plain checkout, and a package list that covers the tree."""
import os
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

from nlc.builtin import builtin_names, resolve_spec, specs_dir
from nlc.errors import NlcError

ROOT = Path(__file__).resolve().parents[1]


def test_declared_packages_cover_the_tree():
    """Every folder of Python code under nlc/ is a declared package (a new one would be left out of the wheel)."""
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    declared = set(cfg["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "nlc").rglob("__init__.py")}
    found |= {"nlc.backends." + p.parent.name for p in (ROOT / "backends").glob("*/__init__.py")}
    assert found - declared == set(), "add these to [tool.setuptools] packages in pyproject.toml"


def test_builtin_spec_names():
    names = builtin_names()
    assert {"hope", "titans", "cms", "transformer", "optim/adamw", "optim/m3"} <= set(names)
    assert resolve_spec("hope") == (str(specs_dir() / "hope.nl"), None)
    assert resolve_spec("titans:TitansMAG") == (str(specs_dir() / "titans.nl"), "TitansMAG")
    assert resolve_spec("titans.nl:TitansMAC", "TitansMAC")[1] == "TitansMAC"
    assert resolve_spec("optim/adamw")[0] == str(specs_dir() / "optim" / "adamw.nl")
    # a path that exists wins; names that leave specs/ are never built-ins
    assert resolve_spec("specs/hope.nl" if Path("specs/hope.nl").exists() else str(ROOT / "specs/hope.nl"))[1] is None
    assert resolve_spec("../hope") == ("../hope", None)
    assert resolve_spec("/etc/passwd:x") == ("/etc/passwd", "x")
    with pytest.raises(NlcError, match="--model"):
        resolve_spec("titans:TitansMAG", "TitansLMM")


def test_file_wins_over_builtin(tmp_path, monkeypatch):
    (tmp_path / "hope").write_text("model Mine(dim = 8) { out x }\n")
    monkeypatch.chdir(tmp_path)
    assert resolve_spec("hope") == ("hope", None)


def test_unknown_name_lists_builtins(tmp_path, monkeypatch):
    from nlc.passes import run
    monkeypatch.chdir(tmp_path)
    with pytest.raises(NlcError) as e:
        run("hopee")
    assert "hope" in e.value.hint and "titans" in e.value.hint


def _site_packages() -> str:
    return sysconfig.get_paths()["purelib"]


def test_plain_checkout_imports_backends(tmp_path):
    """No install at all: only the checkout and the dependencies on the path (-S: no .pth, no editable finder)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), _site_packages()]))
    code = ("import nlc.backends.torch_mlir as b, nlc.builtin as s; "
            "print(b.__file__); print(s.specs_dir())")
    out = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    mod, specs = out.stdout.split()
    assert Path(mod) == ROOT / "backends" / "torch_mlir" / "__init__.py"
    assert Path(specs) == ROOT / "specs"


@pytest.fixture(scope="module")
def wheel_dir(tmp_path_factory):
    """The wheel `pip install .` would install, unpacked (a wheel is a zip)."""
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(out)],
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        pytest.fail(f"pip wheel failed:\n{r.stderr[-2000:]}")
    whl = next(out.glob("nlc-*.whl"))
    site = out / "site"
    zipfile.ZipFile(whl).extractall(site)
    return site


def test_wheel_ships_specs_and_backends(wheel_dir):
    shipped = {p.relative_to(wheel_dir).as_posix() for p in wheel_dir.rglob("*") if p.is_file()}
    for spec in (ROOT / "specs").rglob("*.nl"):
        assert f"nlc/specs/{spec.relative_to(ROOT / 'specs').as_posix()}" in shipped
    assert "nlc/backends/torch_mlir/export.py" in shipped
    assert "nlc/frontend/grammar.lark" in shipped
    for py in (ROOT / "nlc").rglob("*.py"):
        assert py.relative_to(ROOT).as_posix() in shipped


def test_wheel_is_a_working_tool(wheel_dir, tmp_path):
    """The installed package, run from a folder that is not the checkout: specs by name, a model compiles."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(wheel_dir), _site_packages()]))
    code = ("import nlc, nlc.cli, sys; print(nlc.__file__); "
            "m = nlc.compile('titans:TitansMAG', dim=16, heads=2, layers=1); print(type(m).__name__); "
            "sys.exit(nlc.cli.main(['check', 'hope', 'optim/m3', '--quiet']))")
    out = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.splitlines()[0].startswith(str(wheel_dir))
