"""Before/after in one run: run a benchmark script of another git revision against that revision's code.

    with exported("8f40fb3") as tree: print(run(tree, "bench/replay.py", "--messages", "100000"))

The revision is exported with `git archive` into a temporary folder, and the script runs in a subprocess whose
`PYTHONPATH` puts that revision's `groupspec.middleware` and `groupspec.plugin` first (its own subprocesses, such
as a `groupspec serve`, inherit it). Nothing is installed.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def exported(rev: str) -> Iterator[Path]:
    """A temporary copy of `rev`'s tree, with an importable `groupspec` package under `path/`."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True).stdout
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp)
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tree, filter="data")
        package = tree / "path" / "groupspec"
        package.mkdir(parents=True)
        for part in ("middleware", "plugin"):
            (package / part).symlink_to(tree / part)
        yield tree


def run(tree: Path, script: str, *args: str) -> str:
    """The output of `script` (a path in the exported tree) run against the exported code."""
    env = dict(os.environ, PYTHONPATH=str(tree / "path"))
    done = subprocess.run([sys.executable, str(tree / script), *args], env=env, capture_output=True, text=True,
                          cwd=tree)
    if done.returncode != 0:
        raise RuntimeError(f"{script} at the earlier revision failed:\n{done.stderr[-2000:]}")
    return done.stdout
