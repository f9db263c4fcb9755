"""`groupspec report OUTDIR | --service URL [--token TOKEN] [--config FILE] [--html FILE]`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from groupspec.middleware.config import ConfigError, load_config

from . import html, terminal
from .collect import ReportError, collect
from .service import fetch


def run(args: argparse.Namespace) -> int:
    if (args.outdir is None) == (args.service is None):
        raise ConfigError("report: give either an output folder or --service URL")
    try:
        if args.service is not None:
            report = fetch(args.service, token=args.token or os.environ.get("GROUPSPEC_OPERATOR_TOKEN") or None)
        else:
            report = collect(args.outdir, load_config(args.config) if args.config else None)
    except ReportError as exc:
        print(f"groupspec: {exc}", file=sys.stderr)
        return 1
    terminal.render(report)
    if args.html:
        Path(args.html).write_text(html.render(report), encoding="utf-8")
        print(f"wrote {args.html}", file=sys.stderr)
    return 0
