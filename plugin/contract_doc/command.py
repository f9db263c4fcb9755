"""`groupspec contract doc` and `groupspec contract log`: read the arguments, write the page or print the log."""

from __future__ import annotations

import argparse
from pathlib import Path

from groupspec.middleware.config import load_config
from groupspec.middleware.errors import ConfigError

from ..contract_diff import Change, diff, plain_line, summary
from . import html, markdown
from .build import build
from .history import Version, from_files, from_git


def doc(args: argparse.Namespace) -> int:
    page = build(load_config(args.config))
    if args.md is None and args.html is None:
        print(markdown.render(page), end="")
    for path, text in ((args.md, markdown.render), (args.html, html.render)):
        if path is not None:
            Path(path).write_text(text(page), encoding="utf-8")
            print(f"wrote {path}")
    return 0


def log(args: argparse.Namespace) -> int:
    if bool(args.files) == bool(args.git):
        raise ConfigError("contract log: give the contract files (oldest first) or --git FILE, not both or neither")
    versions = from_git(args.git) if args.git else from_files(args.files)
    print("\n".join(entries(versions)))
    return 0


def entries(versions: list[Version]) -> list[str]:
    """The change log, newest first: each version's label, then its changes since the readable version before it."""
    blocks: list[list[str]] = []
    before = None
    for version in versions:
        if version.config is None:
            blocks.append([f"? · {version.date} · {version.origin}", f"  unreadable by this release: {version.error}"])
            continue
        head = f"{version.config.contract.version} · {version.date} · {version.origin}"
        changes: list[Change] = diff(before.config, version.config) if before is not None else []
        if before is None:
            lines = ["  first readable version" if blocks else "  first version"]
        elif not changes:
            lines = [f"  no contract changes since {before.origin}"]
        else:
            lines = [f"  {plain_line(change)}" for change in changes] + [f"  {summary(changes)} since {before.origin}"]
        blocks.append([head, *lines])
        before = version
    return [text for block in reversed(blocks) for text in block]
