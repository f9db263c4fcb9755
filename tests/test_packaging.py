"""`pip install .` ships every package: each folder with an __init__.py is listed in pyproject.toml."""

from __future__ import annotations

import ast
import subprocess
import sys
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


def test_replay_starts_without_the_http_stack_or_rich(tmp_path):
    """`groupspec replay` loads the engine alone: a door's dependencies load only when that door runs."""
    code = ("import sys; from groupspec.plugin.cli import main; "
            f"main(['replay', 'fixtures/households/stream.jsonl', '--config', 'fixtures/households/groupspec.toml', "
            f"'--out', {str(tmp_path)!r}]); "
            "print(sorted(m for m in ('httpx', 'rich', 'uvicorn', 'starlette', 'redis', 'prometheus_client') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"


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
