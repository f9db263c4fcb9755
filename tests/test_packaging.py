"""`pip install .` ships every package: each folder with an __init__.py is listed in pyproject.toml."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROOTS = {"middleware": "groupspec.middleware", "plugin": "groupspec.plugin"}


def test_every_package_folder_is_listed():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join([ROOTS[init.relative_to(ROOT).parts[0]], *init.relative_to(ROOT).parts[1:-1]])
        for top in ROOTS for init in (ROOT / top).rglob("__init__.py")
    }
    assert found - listed == set(), "add these to [tool.setuptools] packages"


def test_plugin_never_imported_by_middleware():
    offenders = [p for p in (ROOT / "middleware").rglob("*.py") if "groupspec.plugin" in p.read_text()]
    assert offenders == []
