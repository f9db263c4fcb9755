"""Where a backfill got to, kept in a small JSON file so a rerun after an interruption skips what was done.

A `Position` says: every record of the inputs before `file`, and records 1..`line` of `file`, are delivered,
and so are the first `ops` operations of the record after them. `file == len(inputs)` stands for the final
flush of pending rollup updates; the backfill is complete at `Position(len(inputs), 1)`.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import orjson
from groupspec.middleware.config import ConfigError
from groupspec.middleware.message import parse_time
from groupspec.middleware.quarantine import iso


@dataclass(frozen=True, order=True)
class Position:
    file: int = 0
    line: int = 0
    ops: int = 0


class Checkpoint:
    """The checkpoint file of one backfill (its inputs, in order, are part of it)."""

    def __init__(self, path: str | Path, inputs: list[str]) -> None:
        self.path = Path(path)
        self.inputs = [str(Path(name).resolve()) for name in inputs]

    def complete(self, position: Position) -> bool:
        return position >= Position(len(self.inputs), 1)

    def load(self) -> tuple[Position, float] | None:
        """(position, the run's time) of an earlier run of the same inputs; None when there is no file yet."""
        if not self.path.exists():
            return None
        try:
            data = orjson.loads(self.path.read_bytes())
            position = Position(int(data["file"]), int(data["line"]), int(data["ops"]))
            at = parse_time(data["at"])
            inputs = data["inputs"]
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{self.path}: not a readable backfill checkpoint ({exc}); move it away to start over") \
                from None
        if inputs != self.inputs or at is None:
            raise ConfigError(f"{self.path}: written for other inputs ({', '.join(inputs)}); give the same inputs in "
                              f"the same order, or another --checkpoint file")
        return position, at

    def save(self, position: Position, at: float) -> None:
        """Write atomically (a temporary file renamed over the old one), so a crash leaves the old or the new."""
        current = self.inputs[position.file] if position.file < len(self.inputs) else None
        data = {"inputs": self.inputs, "path": current, "file": position.file, "line": position.line,
                "ops": position.ops, "at": iso(at), "complete": self.complete(position)}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
