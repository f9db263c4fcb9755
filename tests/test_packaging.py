"""`pip install .` ships every package: each folder with an __init__.py is listed in pyproject.toml."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

from hypothesis import settings
from hypothesis_support import LONG_PROFILE, examples
from packaging.requirements import Requirement

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


DOORS = {"service": ["plugin/service"], "backfill": ["plugin/backfill"],
         "replay": ["plugin/replay.py", "plugin/replay_command.py", "plugin/quarantine_commands.py"]}


def _plugin_imports(path: Path) -> set[str]:
    """The `groupspec.*` modules `path` imports (relative imports resolved against its package)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            name = node.module or ""
            if node.level:  # relative: resolve against the file's package
                package = ".".join(["groupspec", *path.relative_to(ROOT).parent.parts][: 3 - node.level + 1])
                name = f"{package}.{name}" if name else package
            names.add(name)
            names.update(f"{name}.{alias.name}" for alias in node.names)  # `from . import spool`
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name.startswith("groupspec.")}


def _module_file(name: str) -> Path | None:
    parts = name.split(".")[1:]  # groupspec.plugin.x.y -> plugin/x/y(.py | /__init__.py)
    for candidate in (ROOT.joinpath(*parts).with_suffix(".py"), ROOT.joinpath(*parts, "__init__.py")):
        if candidate.is_file() and len(parts) > 1:
            return candidate
    return None


def test_no_door_imports_another_door():
    """The service, backfill and replay doors share the engine, the destination and the sender, never each other:
    not directly, and not through a shared module (the spool's file format is `plugin/spool.py`, not the
    service's, because the erasure a backfill runs edits it)."""
    modules = {"service": "groupspec.plugin.service", "backfill": "groupspec.plugin.backfill",
               "replay": "groupspec.plugin.replay"}
    found = []
    for door, places in DOORS.items():
        todo = [p for place in places for p in ((ROOT / place).rglob("*.py") if (ROOT / place).is_dir()
                                                else [ROOT / place])]
        seen = set(todo)
        while todo:
            path = todo.pop()
            for name in _plugin_imports(path):
                for other, module in modules.items():
                    if other != door and (name == module or name.startswith(module + ".")):
                        found.append(f"{door}: {path.relative_to(ROOT)} imports {name}")
                target = _module_file(name)
                if target is not None and target not in seen:
                    seen.add(target)
                    todo.append(target)
    assert found == []


def _requirements(specs: list[str]) -> dict[str, str]:
    """name -> its version bounds, e.g. {"pydantic": "<3,>=2.6"} (`packaging` comes with pytest)."""
    return {(req := Requirement(spec)).name: str(req.specifier) for spec in specs}


def test_every_runtime_dependency_is_bounded_below_its_next_major_version():
    """A new major release of a library whose API the code relies on cannot break an install."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    runtime = _requirements(project["dependencies"] + extras["segment"] + extras["rudderstack"] + extras["customerio"])
    assert runtime and {name: spec for name, spec in runtime.items() if "<" not in spec} == {}


def test_python_ulid_is_a_test_dependency_only():
    """Only the tests import python-ulid (the event ids are built without it)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "python-ulid" not in _requirements(project["dependencies"])
    assert "python-ulid" in _requirements(project["optional-dependencies"]["test"])
    assert [p for top in ROOTS for p in (ROOT / top).rglob("*.py") if "import ulid" in p.read_text()] == []


def test_the_default_test_run_leaves_the_long_tests_out_and_ci_runs_them():
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "-m 'not long'" in options["addopts"] and any(m.startswith("long:") for m in options["markers"])
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'HYPOTHESIS_PROFILE=long python -m pytest -m "long or hypothesis"' in ci


def test_the_long_profile_gives_the_heavy_properties_their_full_number_of_examples():
    """The default run tries a quarter of a heavy property's examples; CI's second pass (the `long` profile) all."""
    current = settings.get_current_profile_name()
    try:
        settings.load_profile("default")
        assert (examples(200), examples(20), examples(5)) == (50, 10, 5)
        settings.load_profile(LONG_PROFILE)
        assert (examples(200), examples(20), examples(5)) == (200, 20, 5)
    finally:
        settings.load_profile(current)
