"""`pip install .` ships every package: each folder with an __init__.py is listed in pyproject.toml."""

from __future__ import annotations

import ast
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


def test_no_test_module_imports_another():
    """Shared test helpers live in conftest.py or a support module: importing a test module runs its tests'
    collection twice and ties unrelated suites together."""
    offenders = []
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}:{node.lineno} imports {name}" for name in names
                          if name.split(".")[0].startswith("test_")]
    assert offenders == []
