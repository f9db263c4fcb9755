"""`groupspec contract diff OLD NEW`: every change between two contracts, classified breaking or compatible.

The comparison is of validated configs: `[contract]` and each source's merged contract (`Config.contract_for`),
so a key set to its default is no change. What counts as breaking is the `RULES` table below.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from groupspec.middleware.config import Config, Contract, GroupTrait, load_config
from groupspec.middleware.violations import DEFAULT_ACTIONS
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table
from rich.text import Text

#: (aspect, kind of change) -> (breaking, description); descriptions format `subject`, `old` and `new`
RULES: dict[tuple[str, str], tuple[bool, str]] = {
    ("version", "changed"): (False, "version {old} -> {new}"),
    ("group_key", "changed"): (True, "group id key {old} -> {new}: events carrying {old} lose their group"),
    ("group_id_pattern", "added"): (True, "group ids must now match {new}"),
    ("group_id_pattern", "removed"): (False, "group ids no longer need to match {old}"),
    ("group_id_pattern", "changed"): (True, "group id pattern {old} -> {new}"),
    ("default_object_type_id", "changed"): (True, "default object type {old} -> {new}"),
    ("require_group", "added"): (True, "{subject} newly requires a group"),
    ("require_group", "removed"): (False, "{subject} no longer requires a group"),
    ("attach_group_traits", "added"): (False, "{subject} now attached to track events"),
    ("attach_group_traits", "removed"): (True, "{subject} no longer attached to track events"),
    ("group_trait", "added"): (False, "group trait {subject} added"),
    ("group_trait", "removed"): (True, "group trait {subject} removed"),
    ("group_trait", "renamed"): (True, "group trait {old} removed and {new} added with the same spec: renamed?"),
    ("trait_type", "narrowed"): (True, "{subject} type narrowed {old} -> {new}"),
    ("trait_type", "widened"): (False, "{subject} type widened {old} -> {new}"),
    ("trait_type", "changed"): (True, "{subject} type changed {old} -> {new}"),
    ("enum", "restricted"): (True, "{subject} now limited to {new}"),
    ("enum", "unrestricted"): (False, "{subject} no longer limited to an enum"),
    ("enum_value", "removed"): (True, "{subject} enum value {old} removed"),
    ("enum_value", "added"): (False, "{subject} enum value {new} added"),
    ("owner", "added"): (True, "{subject} now owned by source {new}"),
    ("owner", "removed"): (False, "{subject} no longer owned by source {old}"),
    ("owner", "changed"): (True, "{subject} owner {old} -> {new}"),
    ("action", "stricter"): (True, "action for {subject} stricter: {old} -> {new}"),
    ("action", "relaxed"): (False, "action for {subject} relaxed: {old} -> {new}"),
    ("rollup", "added"): (False, "rollup {subject} added"),
    ("rollup", "removed"): (True, "rollup {subject} removed"),
    ("rollup", "changed"): (True, "rollup {subject} redefined: {old} -> {new}"),
    ("rollup_interval", "changed"): (False, "rollup interval {old} -> {new}"),
    ("freshness", "changed"): (False, "freshness window {old} -> {new}"),
    ("source", "added"): (False, "source {subject} added"),
    ("source", "removed"): (True, "source {subject} removed"),
    ("write_key", "changed"): (True, "write key of {subject} changed: senders with the old key lose the source"),
}

#: actions from most to least lenient
ACTION_ORDER = ("flag", "strip", "drop")
#: (old type, new type) pairs that accept more values than before; None is "any type"
TYPE_WIDENING = frozenset({("integer", "number")})
#: scalar contract keys compared as "changed" (group_id_pattern has its own added/removed rules)
SCALARS = ("version", "group_key", "default_object_type_id", "rollup_interval", "freshness")


@dataclass(frozen=True)
class Change:
    """One difference between two contracts."""

    where: str  # "contract" or "sources.NAME"
    aspect: str
    kind: str
    subject: str = ""
    old: Any = None
    new: Any = None

    @property
    def breaking(self) -> bool:
        return RULES[self.aspect, self.kind][0]

    @property
    def description(self) -> str:
        return RULES[self.aspect, self.kind][1].format(subject=self.subject, old=_show(self.old), new=_show(self.new))

    @property
    def key(self) -> tuple[Any, ...]:
        """What the change is, wherever it is (a source inherits the changes of `[contract]`)."""
        return self.aspect, self.kind, self.subject, repr(self.old), repr(self.new)


def _show(value: Any) -> str:
    if isinstance(value, BaseModel):  # a rollup's definition
        return str(value.model_dump(exclude_none=True))
    return "none" if value is None else str(value)


def _added_removed(old: set[str], new: set[str]) -> Iterator[tuple[str, str]]:
    yield from (("removed", name) for name in sorted(old - new))
    yield from (("added", name) for name in sorted(new - old))


def _presence(old: Any, new: Any) -> str:
    """How an optional setting changed: "added", "removed" or "changed"."""
    return "added" if old is None else "removed" if new is None else "changed"


def _type_change(old: str | None, new: str | None) -> str:
    if new is None or (old, new) in TYPE_WIDENING:
        return "widened"
    return "narrowed" if old is None or (new, old) in TYPE_WIDENING else "changed"


def _trait_changes(where: str, name: str, old: GroupTrait, new: GroupTrait) -> Iterator[Change]:
    if old.type != new.type:
        yield Change(where, "trait_type", _type_change(old.type, new.type), name, old.type, new.type)
    if old.enum is None and new.enum is not None:
        yield Change(where, "enum", "restricted", name, None, new.enum)
    elif old.enum is not None and new.enum is None:
        yield Change(where, "enum", "unrestricted", name, old.enum, None)
    elif old.enum is not None and new.enum is not None:
        before, after = ({(type(v).__name__, v) for v in enum} for enum in (old.enum, new.enum))  # 1 is not True
        for _, value in sorted(before - after, key=repr):
            yield Change(where, "enum_value", "removed", name, value, None)
        for _, value in sorted(after - before, key=repr):
            yield Change(where, "enum_value", "added", name, None, value)
    if old.owner != new.owner:
        yield Change(where, "owner", _presence(old.owner, new.owner), name, old.owner, new.owner)


def _group_traits(where: str, old: dict[str, GroupTrait], new: dict[str, GroupTrait]) -> Iterator[Change]:
    removed = sorted(set(old) - set(new))
    added = sorted(set(new) - set(old))
    for name in removed:
        twin = next((n for n in added if new[n] == old[name]), None)
        if twin is not None:
            added.remove(twin)
            yield Change(where, "group_trait", "renamed", twin, name, twin)
        else:
            yield Change(where, "group_trait", "removed", name)
    for name in added:
        yield Change(where, "group_trait", "added", name)
    for name in sorted(set(old) & set(new)):
        yield from _trait_changes(where, name, old[name], new[name])


def _require_group(where: str, old: Contract, new: Contract) -> Iterator[Change]:
    for kind, event in _added_removed(set(old.require_group), set(new.require_group)):
        label = "every event (*)" if event == "*" else event
        if kind == "added" and not old.requires_group(event):
            yield Change(where, "require_group", "added", label)
        elif kind == "removed" and not new.requires_group(event):
            yield Change(where, "require_group", "removed", label)


def _actions(where: str, old: Contract, new: Contract) -> Iterator[Change]:
    for code in DEFAULT_ACTIONS:
        before, after = old.action(code), new.action(code)
        if before != after:
            kind = "stricter" if ACTION_ORDER.index(after) > ACTION_ORDER.index(before) else "relaxed"
            yield Change(where, "action", kind, code, before, after)


def contract_changes(where: str, old: Contract, new: Contract) -> list[Change]:
    """Every change from `old` to `new`, each classified by `RULES`."""
    changes = [Change(where, key, "changed", "", getattr(old, key), getattr(new, key))
               for key in SCALARS if getattr(old, key) != getattr(new, key)]
    if old.group_id_pattern != new.group_id_pattern:
        changes.append(Change(where, "group_id_pattern", _presence(old.group_id_pattern, new.group_id_pattern), "",
                              old.group_id_pattern, new.group_id_pattern))
    changes.extend(_require_group(where, old, new))
    changes.extend(Change(where, "attach_group_traits", kind, name)
                   for kind, name in _added_removed(set(old.attach_group_traits), set(new.attach_group_traits)))
    changes.extend(_group_traits(where, old.group_traits, new.group_traits))
    changes.extend(_actions(where, old, new))
    for kind, name in _added_removed(set(old.rollups), set(new.rollups)):
        changes.append(Change(where, "rollup", kind, name))
    changes.extend(Change(where, "rollup", "changed", name, old.rollups[name], new.rollups[name])
                   for name in sorted(set(old.rollups) & set(new.rollups)) if old.rollups[name] != new.rollups[name])
    return changes


def _write_key(config: Config, name: str) -> str | None:
    key = config.sources[name].write_key
    return key.get_secret_value() if key is not None else None


def diff(old: Config, new: Config) -> list[Change]:
    """The changes between two configs: `[contract]` first, then what differs per source beyond it."""
    base = contract_changes("contract", old.contract, new.contract)
    inherited = {change.key for change in base}
    changes = list(base)
    for kind, name in _added_removed(set(old.sources), set(new.sources)):
        changes.append(Change(f"sources.{name}", "source", kind, name))
    for name in sorted(set(old.sources) & set(new.sources)):
        where = f"sources.{name}"
        own = contract_changes(where, old.contract_for(name), new.contract_for(name))
        changes.extend(change for change in own if change.key not in inherited)
        if _write_key(old, name) != _write_key(new, name):  # the keys themselves are secrets: never shown
            changes.append(Change(where, "write_key", "changed", name))
    return changes


def print_changes(changes: list[Change], plain: bool) -> None:
    """A table on a terminal, one line per change otherwise (CI logs)."""
    breaking = sum(change.breaking for change in changes)
    summary = f"{len(changes)} change(s): {breaking} breaking, {len(changes) - breaking} compatible"
    if plain:
        for change in changes:
            label = "BREAKING" if change.breaking else "compatible"
            print(f"{label:<10}  {change.where}  {change.description}")
        print(summary)
        return
    table = Table(title="contract changes", caption=summary)
    for column in ("", "where", "change"):
        table.add_column(column)
    for change in changes:
        label = "[bold red]breaking[/]" if change.breaking else "[green]compatible[/]"
        table.add_row(label, Text(change.where), Text(change.description))  # names are data, not markup
    Console().print(table)


def run(args: argparse.Namespace) -> int:
    changes = diff(load_config(args.old), load_config(args.new))
    if not changes:
        print("no changes")
        return 0
    print_changes(changes, plain=args.plain or not sys.stdout.isatty())
    return 1 if any(change.breaking for change in changes) else 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add `contract diff` to the CLI."""
    contract = commands.add_parser("contract", help="work with data contracts")
    verbs = contract.add_subparsers(dest="verb", required=True)
    parser = verbs.add_parser("diff", help="list contract changes; exit 1 when any is breaking")
    parser.add_argument("old", metavar="OLD.toml")
    parser.add_argument("new", metavar="NEW.toml")
    parser.add_argument("--plain", action="store_true", help="one line per change, even on a terminal")
    parser.set_defaults(run=run)
