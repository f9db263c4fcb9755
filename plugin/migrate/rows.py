"""A migration map (`MAP.csv`: ``object_type_id,old_id,new_id[,mode][,at]``, an optional header) and the checks
each row must pass against the store before anything changes. Every problem names its row; any problem stops the
whole map (exit 2, nothing changed)."""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import NamedTuple

from groupspec.middleware.config import Config
from groupspec.middleware.contract import id_problem
from groupspec.middleware.errors import ConfigError
from groupspec.middleware.message import parse_time
from groupspec.middleware.migrations import MODES, Migration, MigrationMap
from groupspec.middleware.stores.migrated import Migrated

HEADER = ("object_type_id", "old_id", "new_id", "mode", "at")
_TYPE = re.compile(r"[1-9][0-9]*")


class Row(NamedTuple):
    """One line of a migration map, as written (`mode` and `at` may be left out)."""

    where: str  # "MAP.csv:LINE"
    object_type_id: str
    old_id: str
    new_id: str
    mode: str | None
    at: float | None


def read_map(path: str | Path) -> list[Row]:
    """The rows of a migration map; ConfigError naming every bad row."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the migration map ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    rows, problems = [], []
    for number, cells in enumerate(csv.reader(text.splitlines()), 1):
        cells = [cell.strip() for cell in cells]
        if not any(cells) or (number == 1 and cells[0] == HEADER[0]):
            continue
        where = f"{path}:{number}"
        row, problem = _row(where, cells)
        if problem:
            problems.append(f"{where}: {problem}")
        else:
            rows.append(row)
    seen: dict[tuple[str, str], str] = {}
    for row in rows:
        first = seen.setdefault((row.object_type_id, row.old_id), row.where)
        if first != row.where:
            problems.append(f"{row.where}: {row.object_type_id}:{row.old_id} is migrated again (first at {first})")
    if problems:
        raise ConfigError("; ".join(problems))
    if not rows:
        raise ConfigError(f"{path}: no rows (expected {','.join(HEADER[:3])}[,mode][,at])")
    return rows


def _row(where: str, cells: list[str]) -> tuple[Row | None, str | None]:
    if not 3 <= len(cells) <= 5:
        return None, f"expected {','.join(HEADER[:3])}[,mode][,at], got {len(cells)} columns"
    type_id, old_id, new_id, mode, at = (*cells, "", "")[:5]
    if not _TYPE.fullmatch(type_id):
        return None, f"object_type_id: expected a positive integer, got {type_id!r}"
    if not old_id or not new_id:
        return None, "old_id and new_id must not be empty"
    if old_id == new_id:
        return None, f"old_id and new_id are both {old_id!r}"
    if mode and mode not in MODES:
        return None, f"mode: expected {' | '.join(MODES)} (or nothing), got {mode!r}"
    when = None
    if at:
        when = parse_time(at)
        if when is None:
            return None, f"at: expected an ISO-8601 time, got {at!r}"
    return Row(where, type_id, old_id, new_id, mode or None, when), None


def check(rows: list[Row], store: Migrated, config: Config, default_at: float | None, *,
          keep_old: bool = False) -> tuple[list[tuple[Row, Migration]], list[Row]]:
    """``(the rows to migrate with their migrations, the rows the store has recorded already)``: ConfigError naming
    every row whose old id is unknown to the store (or migrated elsewhere already), whose new id breaks
    `group_id_pattern`, whose mode contradicts what the store knows, that closes a cycle, or that has no time."""
    known = set(store.groups())
    recorded = store.map
    current: MigrationMap = recorded
    todo, done, problems = [], [], []
    for row in rows:
        type_id, old_id, new_id = row.object_type_id, row.old_id, row.new_id
        earlier = recorded.migrated(type_id, old_id)
        if earlier is not None:
            if earlier.new_id == new_id and row.mode in (None, earlier.mode) and row.at in (None, earlier.at):
                done.append(row)
            else:
                problems.append(f"{row.where}: {type_id}:{old_id} was migrated to {earlier.new_id!r} ({earlier.mode}) "
                                f"already")
            continue
        at = row.at if row.at is not None else default_at
        if at is None:
            problems.append(f"{row.where}: no at: a replay applies each row at its own time (add an ISO-8601 at column)")
            continue
        if not _exists(type_id, old_id, known, current):
            problems.append(f"{row.where}: old id {type_id}:{old_id} is unknown to the store")
            continue
        problem = id_problem(new_id, config.contract.group_id_regex)
        if problem is not None:
            problems.append(f"{row.where}: new id: {problem}")
            continue
        new_exists = _exists(type_id, new_id, known, current)
        mode = row.mode or ("merge" if new_exists else "rename")
        if mode == "rename" and new_exists:
            problems.append(f"{row.where}: rename to {new_id!r}, which the store knows already (a merge joins an "
                            f"existing group)")
            continue
        if mode == "merge" and not new_exists:
            problems.append(f"{row.where}: merge into {new_id!r}, which the store does not know (a rename takes a "
                            f"new id)")
            continue
        migration = Migration(type_id, old_id, new_id, mode, at, keep_old)
        after = current.with_rows([migration])
        if old_id in after.chain(type_id, new_id):
            chain = " -> ".join(after.chain(type_id, old_id) + [old_id])
            problems.append(f"{row.where}: a cycle ({chain}): an id cannot be migrated back to itself")
            continue
        todo.append((row, migration))
        current = after
    if problems:
        raise ConfigError("; ".join(problems))
    return todo, done


def _exists(type_id: str, group_id: str, known: set[tuple[str, str]], migrations: MigrationMap) -> bool:
    """Whether the store (or an earlier row) knows the group and it was not migrated away."""
    if migrations.migrated(type_id, group_id) is not None:
        return False
    return (type_id, group_id) in known or migrations.has_sources(type_id, group_id)
