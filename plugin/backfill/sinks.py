"""Where a backfill's output goes: files for a dry run, Customer.io (through `Delivery`) for a live one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from groupspec.middleware.jsonl import JsonlFile
from groupspec.middleware.privacy import Erasure

from ..customerio.delivery import Delivery
from ..sender import SendFailed, SendReport


class Files:
    """Dry run: operations to `customerio.jsonl`, quarantine records to `quarantine.jsonl` in `out`."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self._ops = (self.out / "customerio.jsonl").open("wb")
        self._quarantine = (self.out / "quarantine.jsonl").open("wb")

    def send(self, ops: list[dict[str, Any]]) -> None:
        self._ops.write(b"".join(orjson.dumps(op) + b"\n" for op in ops))

    def quarantine(self, records: list[dict[str, Any]]) -> None:
        self._quarantine.write(b"".join(orjson.dumps(rec) + b"\n" for rec in records))

    def erase(self, done: list[Erasure]) -> None:
        """A dry run's files are the user's (`--out`): an erasure leaves them as they are."""

    def close(self) -> None:
        self._ops.close()
        self._quarantine.close()

    def totals(self) -> dict[str, int]:
        return {}


class Live:
    """Operations to Customer.io; quarantine records appended to the configured quarantine file; `erase` rewrites
    the configured files without the people an `[privacy] erase_on` event erased (`plugin/erasure.py`)."""

    def __init__(self, delivery: Delivery, quarantine: str | Path,
                 erase: Callable[[list[Erasure]], None] = lambda done: None) -> None:
        self.delivery = delivery
        self._quarantine = JsonlFile(quarantine)
        self.erase = erase
        self.delivered = self.dead_lettered = 0

    def send(self, ops: list[dict[str, Any]]) -> None:
        try:
            report = self.delivery.send(ops)
        except SendFailed as exc:  # what went out before it stopped still counts
            self._count(exc.report)
            raise
        self._count(report)

    def _count(self, report: SendReport) -> None:
        self.delivered += report.delivered
        self.dead_lettered += report.dead_lettered

    def quarantine(self, records: list[dict[str, Any]]) -> None:
        for rec in records:
            self._quarantine.append(rec)

    def close(self) -> None:
        self.delivery.close()

    def totals(self) -> dict[str, int]:
        return {"delivered": self.delivered, "dead_lettered": self.dead_lettered}
