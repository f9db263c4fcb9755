"""Backfill inputs as numbered records: spec messages (`.jsonl`, `.jsonl.gz`) and person->group rows (`.csv`,
`.csv.gz`, or JSONL objects without a `type`), each row turned into the `group` call it stands for.

Row columns: `user_id` or `anonymous_id`, `group_id`, optional `object_type_id` and `timestamp`; every other
column is an object attribute. CSV cells are text: an empty cell is left out (an empty value would erase the
attribute in Customer.io), and a cell of a group trait declared `number`, `integer` or `boolean` is converted
(a cell that does not convert stays text, for the contract to judge).
"""

from __future__ import annotations

import csv
import gzip
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from groupspec.middleware.config import Contract

from groupspec.middleware.jsonl import read_lines

#: row column -> spec message key
ROW_KEYS = {"user_id": "userId", "anonymous_id": "anonymousId", "group_id": "groupId", "timestamp": "timestamp"}
_TRUE, _FALSE = frozenset({"true", "yes", "1"}), frozenset({"false", "no", "0"})


class InputError(Exception):
    """An input file that cannot be read on (not a bad record: those are quarantined)."""


@dataclass(frozen=True)
class Record:
    """One input record: `payload` for the pipeline, or the `row` that could not become a group call and why."""

    number: int  # 1-based: the non-blank line of a JSONL file, the data row of a CSV file
    payload: bytes | dict[str, Any] | None = None
    row: dict[str, Any] | None = None
    problem: tuple[str, str] | None = None  # (field, message)


def _number(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        value = float(text)
        return value if math.isfinite(value) else text


def _integer(text: str) -> Any:
    return int(text)


def _boolean(text: str) -> Any:
    lowered = text.lower()
    return True if lowered in _TRUE else False if lowered in _FALSE else text


_CONVERT: dict[str, Callable[[str], Any]] = {"number": _number, "integer": _integer, "boolean": _boolean}


def _cell(name: str, text: str, contract: Contract) -> Any:
    rule = contract.group_traits.get(name)
    convert = _CONVERT.get(rule.type) if rule is not None and rule.type else None
    if convert is None:
        return text
    try:
        return convert(text.strip())
    except ValueError:
        return text


def group_call(row: dict[str, Any], contract: Contract, from_csv: bool) -> dict[str, Any] | tuple[str, str]:
    """The `group` call a row stands for, or (field, message) saying why it cannot be one."""
    if None in row:  # csv.DictReader's key for cells beyond the header
        return "", f"row has {len(row[None])} more cell(s) than the header"
    if from_csv:
        row = {k: _cell(k, v, contract) for k, v in row.items() if v not in (None, "")}
    if row.get("group_id") in (None, ""):
        return "group_id", "row has no group_id"
    if row.get("user_id") in (None, "") and row.get("anonymous_id") in (None, ""):
        return "user_id", "row has neither user_id nor anonymous_id"
    message: dict[str, Any] = {"type": "group"}
    traits: dict[str, Any] = {}
    for key, value in row.items():
        if key in ROW_KEYS:
            if value not in (None, ""):
                message[ROW_KEYS[key]] = value
        elif key == "object_type_id":
            traits["objectTypeId"] = value
        else:
            traits[key] = value
    message["traits"] = traits
    return message


def _row_record(number: int, row: dict[str, Any], contract: Contract, from_csv: bool) -> Record:
    made = group_call(row, contract, from_csv)
    if isinstance(made, tuple):
        shown = {("(extra cells)" if k is None else k): v for k, v in row.items()}
        return Record(number, row=shown, problem=made)
    return Record(number, payload=made)


def _csv_records(path: Path, contract: Contract) -> Iterator[Record]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8-sig", newline="") as stream:
        reader = csv.DictReader(stream)
        try:
            if reader.fieldnames is None:
                return
        except (UnicodeDecodeError, csv.Error) as exc:
            raise InputError(f"{path}: cannot read the CSV header ({exc})") from None
        reader.fieldnames = [name.strip() for name in reader.fieldnames]
        number = 0
        try:
            for number, row in enumerate(reader, 1):
                yield _row_record(number, row, contract, from_csv=True)
        except (UnicodeDecodeError, csv.Error) as exc:
            raise InputError(f"{path}: after data row {number}: cannot read the CSV ({exc})") from None


def _jsonl_records(path: Path, contract: Contract) -> Iterator[Record]:
    for number, line in enumerate(read_lines(path), 1):
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            yield Record(number, payload=line)  # the pipeline quarantines it as malformed
            continue
        if isinstance(value, dict) and "type" not in value and "batch" not in value:
            yield _row_record(number, value, contract, from_csv=False)
        else:
            yield Record(number, payload=value)


def is_csv(path: str | Path) -> bool:
    return str(path).lower().removesuffix(".gz").endswith(".csv")


def records(path: str | Path, contract: Contract) -> Iterator[Record]:
    """The records of one input file, in order; `contract` types the CSV cells of declared group traits."""
    path = Path(path)
    return _csv_records(path, contract) if is_csv(path) else _jsonl_records(path, contract)


def count(path: str | Path) -> int:
    """How many records `records(path)` yields (for the progress bar's total), without decoding them."""
    if not is_csv(path):
        return sum(1 for _ in read_lines(path))
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8-sig", newline="") as stream:
        rows = sum(1 for row in csv.reader(stream) if row)  # DictReader skips blank lines too
    return max(0, rows - 1)
