"""Backfill inputs as numbered records: spec messages (`.jsonl`, `.jsonl.gz`) and person->group rows (`.csv`,
`.csv.gz`, or JSONL objects without a `type`), each row turned into the `group` call it stands for.

Row columns: `user_id` or `anonymous_id`, `group_id`, optional `object_type_id` and `timestamp`; every other
column is an object attribute. CSV cells are text: an empty cell is left out (an empty value would erase the
attribute in Customer.io), and a cell of a group trait declared `number`, `integer` or `boolean` is converted
(a cell that does not convert stays text, for the contract to judge).

A CSV row that cannot be read (over `MAX_ROW_BYTES`, not UTF-8, refused by `csv`) is a `Record` with a `problem`,
quarantined as `malformed` by the backfill, and the rows after it are read on; a file that cannot be read on (not
gzip, cut short, a header not UTF-8 or repeating a column) raises `InputError` naming the file.
"""

from __future__ import annotations

import csv
import gzip
import math
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

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
        return Record(number, row=_shown(row), problem=made)
    return Record(number, payload=made)


def _shown(row: dict[Any, Any]) -> dict[str, Any]:
    """A row as its quarantine record shows it."""
    return {("(extra cells)" if k is None else k): v for k, v in row.items()}


def _unreadable(path: Path, exc: BaseException, where: str) -> InputError:
    kind = "a readable gzip file" if path.name.lower().endswith(".gz") else "readable"
    return InputError(f"{path}: not {kind}: {exc} ({where})")


#: the bound on a CSV row, in bytes: a row becomes one message, and a message can be at most 32 KB, so a row over
#: four times that cannot be valid; it is quarantined (the first characters kept) instead of read into memory
#: again and again. Python's csv stops a cell at 131,072 characters by default (`csv.field_size_limit`); either
#: way the row is quarantined and the rows after it are read on.
MAX_ROW_BYTES = 131_072
_SHOWN = 1000  # characters of an oversized row kept in its quarantine record
_BOM = b"\xef\xbb\xbf"


class _Lines:
    """The physical lines of a CSV file, decoded one at a time for `csv.reader`, with what the current row is made
    of: its first line, its size in bytes, its first undecodable line. Lines end at `\\n`, `\\r\\n` or `\\r`, as for
    `open(newline="")`. Each line is decoded on its own, so a decoding error names its own line (a text stream
    decodes buffered blocks, and `csv` reads whole rows: neither knows which row a bad byte is in)."""

    def __init__(self, path: Path, stream: IO[bytes]) -> None:
        self.path, self._raw = path, self._split(stream)
        self.line = 0
        self.begin()

    def _split(self, stream: IO[bytes]) -> Iterator[bytes]:
        try:
            for chunk in stream:
                yield from chunk.splitlines(keepends=True)
        except (OSError, EOFError, zlib.error) as exc:
            raise _unreadable(self.path, exc, _after("line", self.line)) from None

    def begin(self) -> None:
        """The next line read starts a new row."""
        self.first, self.size, self.quotes, self.undecodable, self.text = self.line + 1, 0, 0, None, ""

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        raw = next(self._raw)
        self.line += 1
        if self.line == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM):]
        self.size += len(raw)
        self.quotes += raw.count(b'"')
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            if self.undecodable is None:
                self.undecodable = (f"line {self.line} is not UTF-8 (byte 0x{raw[exc.start]:02x} at byte "
                                    f"{exc.start + 1} of the line; shown escaped as \\x{raw[exc.start]:02x})")
            text = raw.decode("utf-8", "backslashreplace")
        if len(self.text) < _SHOWN:
            self.text += text[:_SHOWN - len(self.text)]
        return text

    def skip_rest_of_row(self) -> None:
        """After `csv` gave up on a row mid-way: read on to the end of the row, which is where a line leaves no
        quoted cell open (an even number of `"` so far: a quote inside a quoted cell is written twice)."""
        while self.quotes % 2:
            try:
                next(self)
            except StopIteration:
                return

    def where(self) -> str:
        return f"line {self.first}" if self.line <= self.first else f"lines {self.first}-{self.line}"


def _after(what: str, number: int) -> str:
    return f"after {what} {number}" if number else "at the start"


def _open_csv(path: Path) -> IO[bytes]:
    try:
        return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")
    except OSError as exc:
        raise InputError(f"{path}: cannot open: {exc.strerror or exc}") from None


def _header(lines: _Lines, reader: Iterator[list[str]]) -> list[str] | None:
    """The column names, or None for an empty file; a header that cannot be read, or repeats a name, stops the
    backfill (`csv.DictReader` would keep only the last of two same-named cells, losing data silently)."""
    path = lines.path
    try:
        names = next(reader, None)
    except csv.Error as exc:
        raise InputError(f"{path}: line 1, the CSV header: cannot be read ({exc})") from None
    if lines.undecodable is not None:
        raise InputError(f"{path}: the CSV header: {lines.undecodable}") from None
    if names is None:
        return None
    names = [name.strip() for name in names]
    seen: dict[str, list[int]] = {}
    for column, name in enumerate(names, 1):
        seen.setdefault(name, []).append(column)
    repeated = {name: columns for name, columns in seen.items() if len(columns) > 1}
    if repeated:
        listed = "; ".join(f"{name!r} (columns {', '.join(map(str, columns))})" for name, columns in repeated.items())
        raise InputError(f"{path}: the CSV header repeats {listed}: a row would keep only one of the cells; "
                         f"rename or remove the repeated column(s)")
    return names


def _csv_rows(path: Path) -> Iterator[tuple[list[str] | None, _Lines, str | None]]:
    """(names, lines, None) of the header, then (cells, lines, problem) of each data row (blank lines skipped as
    `csv.DictReader` does): `problem` says why the row is quarantined, `cells` is None when it could not be read."""
    with _open_csv(path) as stream:
        lines = _Lines(path, stream)
        reader = csv.reader(lines)
        names = _header(lines, reader)
        if names is None:
            return
        yield names, lines, None  # the header first
        while True:
            lines.begin()
            problem = None
            try:
                cells: list[str] | None = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                lines.skip_rest_of_row()
                cells, problem = None, f"{lines.where()}: cannot be read as CSV ({exc})"
            if cells == []:
                continue  # a blank line, skipped as csv.DictReader does
            if lines.size > MAX_ROW_BYTES:
                cells, problem = None, (f"{lines.where()}: the row is {lines.size:,} bytes, over the "
                                        f"{MAX_ROW_BYTES:,}-byte bound of a row (a message is at most 32 KB)")
            elif problem is None and lines.undecodable is not None:
                problem = lines.undecodable
            yield cells, lines, problem


def _as_row(names: list[str], cells: list[str]) -> dict[Any, Any]:
    """The cells by column name, as `csv.DictReader` makes them: missing cells None, extra cells under None."""
    row: dict[Any, Any] = dict(zip(names, cells))
    if len(cells) > len(names):
        row[None] = cells[len(names):]
    for name in names[len(cells):]:
        row[name] = None
    return row


def _csv_records(path: Path, contract: Contract) -> Iterator[Record]:
    rows = _csv_rows(path)
    header = next(rows, None)
    if header is None:
        return
    names = header[0]
    for number, (cells, lines, problem) in enumerate(rows, 1):
        if problem is None:
            yield _row_record(number, _as_row(names, cells), contract, from_csv=True)
        elif cells is None:
            yield Record(number, row={f"(row text, first {_SHOWN} characters)": lines.text}, problem=("", problem))
        else:
            yield Record(number, row=_shown(_as_row(names, cells)), problem=("", problem))


def _jsonl_records(path: Path, contract: Contract) -> Iterator[Record]:
    number = 0
    try:
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
    except (OSError, EOFError, zlib.error) as exc:
        raise _unreadable(path, exc, _after("record", number)) from None


def is_csv(path: str | Path) -> bool:
    return str(path).lower().removesuffix(".gz").endswith(".csv")


def records(path: str | Path, contract: Contract) -> Iterator[Record]:
    """The records of one input file, in order; `contract` types the CSV cells of declared group traits."""
    path = Path(path)
    return _csv_records(path, contract) if is_csv(path) else _jsonl_records(path, contract)


def check(path: str | Path) -> None:
    """Raise InputError now, before anything is sent, for a file that cannot be started: a CSV header that cannot
    be read or repeats a column, a file that is not gzip."""
    path = Path(path)
    started = _csv_rows(path) if is_csv(path) else _jsonl_records(path, Contract())
    try:
        next(started, None)
    finally:
        started.close()


def count(path: str | Path) -> int:
    """How many records `records(path)` yields (for the progress bar's total), without making messages of them;
    a file that cannot be read counts what could be (the backfill itself then stops on it, naming it)."""
    path = Path(path)
    counted = 0
    try:
        if is_csv(path):
            counted = -1  # the header
            for _ in _csv_rows(path):
                counted += 1
        else:
            for _ in read_lines(path):
                counted += 1
    except (InputError, OSError, EOFError, zlib.error):
        pass
    return max(0, counted)
