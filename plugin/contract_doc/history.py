"""The versions of a contract, oldest first: files given in order (dated by their modification time) or a file's
git history (dated by each commit, read with the `git` command). Each version is validated by this release's
config models, so its defaults are today's; `contract log` diffs each version against the one before."""

from __future__ import annotations

import subprocess
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from groupspec.middleware.config import Config, load_config, parse_config
from groupspec.middleware.errors import ConfigError, GroupspecError

GIT_TIMEOUT = 60  # seconds for one git command


@dataclass(frozen=True)
class Version:
    """One version of the contract: where it was read from, its date, and its config (None: it failed to read)."""

    origin: str  # the file, or FILE@commit
    date: str  # YYYY-MM-DD
    config: Config | None
    error: str | None = None


def from_files(paths: list[str]) -> list[Version]:
    """The files as versions, in the order given; a file that fails `check-config` fails the same way."""
    versions = []
    for path in paths:
        config = load_config(path)
        mtime = datetime.fromtimestamp(Path(path).stat().st_mtime, UTC)
        versions.append(Version(path, mtime.date().isoformat(), config))
    return versions


def _git(folder: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, timeout=GIT_TIMEOUT)
    except FileNotFoundError:
        raise ConfigError("--git: the git command is not installed") from None
    except subprocess.TimeoutExpired:
        raise GroupspecError(f"--git: git {args[0]} did not answer within {GIT_TIMEOUT}s") from None


def from_git(path: str) -> list[Version]:
    """The committed versions of `path`, oldest first, following renames. A version that this release cannot
    read is kept with its error, so the log shows it instead of hiding history."""
    folder = Path(path).resolve().parent
    if not folder.is_dir():
        raise ConfigError(f"{path}: no such folder: {folder}")
    top = _git(folder, "rev-parse", "--show-toplevel")
    if top.returncode != 0:
        raise ConfigError(f"{path}: not inside a git repository, so it has no history to read")
    root = Path(top.stdout.decode().strip())
    relative = Path(path).resolve().relative_to(root.resolve()).as_posix()
    found = _git(root, "log", "--follow", "--format=%x01%H %cI", "--name-only", "--", relative)
    commits = []  # newest first, as git lists them
    for record in found.stdout.decode().split("\x01")[1:]:
        header, *names = [text for text in record.splitlines() if text]
        commit, date = header.split(" ", 1)
        commits.append((commit, date[:10], names[-1] if names else relative))
    if found.returncode != 0 or not commits:
        raise ConfigError(f"{path}: no committed history in the repository at {root}")
    return [_read_commit(root, path, *commit) for commit in reversed(commits)]


def _read_commit(root: Path, path: str, commit: str, date: str, name: str) -> Version:
    origin = f"{path}@{commit[:7]}"
    shown = _git(root, "show", f"{commit}:{name}")
    try:
        if shown.returncode != 0:
            raise ConfigError(f"{origin}: cannot be read from git ({shown.stderr.decode().strip()})")
        try:
            data = tomllib.loads(shown.stdout.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{origin}: not valid UTF-8 TOML ({exc})") from None
        return Version(origin, date, parse_config(data, origin))
    except ConfigError as exc:
        return Version(origin, date, None, str(exc))
