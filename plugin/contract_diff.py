"""`groupspec contract diff OLD NEW`: every change between two contracts, classified breaking or compatible.

The comparison is of validated configs: `[contract]` and each source's merged contract (`Config.contract_for`),
so a key set to its default is no change. What counts as breaking is the `RULES` table below.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from re import _constants as _regex_constants
from re import _parser as _regex_parser
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
    ("group_id_pattern", "changed"): (True, "group id pattern {old} -> {new}: ids it accepted may now fail it"),
    ("group_id_pattern", "widened"): (False, "group id pattern widened {old} -> {new}: every id it accepted still "
                                             "matches"),
    ("default_object_type_id", "changed"): (True, "default object type {old} -> {new}"),
    ("object_type", "added"): (False, "object type {subject} named {new}"),
    ("object_type", "removed"): (False, "object type {subject} no longer named (was {old})"),
    ("object_type", "changed"): (False, "object type {subject} renamed {old} -> {new}"),
    ("require_group", "added"): (True, "{subject} newly requires a group"),
    ("require_group", "removed"): (False, "{subject} no longer requires a group"),
    ("attach_group_traits", "added"): (False, "{subject} now attached to track events"),
    ("attach_group_traits", "removed"): (True, "{subject} no longer attached to track events"),
    ("group_trait", "added"): (False, "group trait {subject} added (person traits named {subject} are only flagged "
                                      "as group_trait_on_person: action flag)"),
    ("group_trait", "added, stripped from people"): (True, "group trait {subject} added: person traits named {subject} "
                                                           "will be stripped as group_trait_on_person (action: strip)"),
    ("group_trait", "added, dropping people"): (True, "group trait {subject} added: person messages with a trait named "
                                                      "{subject} will be dropped as group_trait_on_person (action: drop)"),
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
    ("id_change_window", "changed"): (False, "id change window {old} -> {new}"),
    ("source", "added"): (False, "source {subject} added"),
    ("source", "removed"): (True, "source {subject} removed"),
    ("write_key", "changed"): (True, "write key of {subject} changed: senders with the old key lose the source"),
}

#: actions from most to least lenient
ACTION_ORDER = ("flag", "strip", "drop")
#: (old type, new type) pairs that accept more values than before; None is "any type"
TYPE_WIDENING = frozenset({("integer", "number")})
#: scalar contract keys compared as "changed" (group_id_pattern has its own added/removed/widened rules)
SCALARS = ("version", "group_key", "default_object_type_id", "rollup_interval", "freshness", "id_change_window")


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


# -- group_id_pattern: is the new pattern a widening of the old one? ---------------------------------------------
# Sound and conservative: True only when every id the old pattern fully matches (`fullmatch`, as the contract
# checks ids) is shown to match the new one by comparing the two parsed patterns (Python's own regex parser) piece
# by piece; anything not recognised is "changed" (breaking). Recognised: the same pieces in the same order where
# each new piece accepts at least what the old one did: a character class or literal inside a larger class
# (`[a-z]` -> `[a-z0-9]`, `a` -> `[ab]`, `[0-9]` -> `\d` -> `\w`), a repeat whose bounds and body both widen
# (`{8}` -> `{8,12}`, `+` -> `*`), alternatives added (`^(a|b)$` -> `^(a|b|c)$`, `^hh_x$` -> `^(hh|acct)_x$`), a
# group or `^`/`$` at the ends (no-ops under fullmatch). Never recognised (always "changed"): flags changed,
# backreferences, lookarounds, conditionals, atomic groups, possessive repeats, negated classes that differ.

_OPAQUE = frozenset({"GROUPREF", "GROUPREF_EXISTS", "GROUPREF_IGNORE", "GROUPREF_LOC_IGNORE", "GROUPREF_UNI_IGNORE",
                     "ASSERT", "ASSERT_NOT", "ATOMIC_GROUP", "POSSESSIVE_REPEAT"})
_REPEATS = frozenset({"MAX_REPEAT", "MIN_REPEAT"})  # greedy or lazy: the same ids match
_DIGITS, _WORD = frozenset(range(48, 58)), frozenset([*range(48, 58), *range(65, 91), 95, *range(97, 123)])
#: class category -> ASCII code points it is known to contain, and the categories it contains
_CATEGORY = {"CATEGORY_DIGIT": (_DIGITS, {"CATEGORY_DIGIT"}),
             "CATEGORY_WORD": (_WORD, {"CATEGORY_WORD", "CATEGORY_DIGIT"})}


class _Unknown(Exception):
    """A construct the comparison does not reason about: the change is classified as breaking."""


def pattern_widened(old: str, new: str) -> bool:
    """Whether every string `old` fully matches is shown to be fully matched by `new` (False when unsure)."""
    try:
        before, after = _regex_parser.parse(old), _regex_parser.parse(new)
        if before.state.flags != after.state.flags:
            return False
        budget = [10_000]
        return _seq(_top(before), _top(after), _Ctx(before.state.flags, budget))
    except (_Unknown, RecursionError, re.error):
        return False


@dataclass
class _Ctx:
    flags: int
    budget: list[int]

    def step(self) -> None:
        self.budget[0] -= 1
        if self.budget[0] < 0:
            raise _Unknown("too many steps")


def _items(seq: Any) -> list[tuple[str, Any]]:
    """The pieces of a parsed sequence by opcode name, plain groups spliced in (a group only matters to
    backreferences, which are never recognised)."""
    out: list[tuple[str, Any]] = []
    for op, av in seq:
        name = str(op)
        if name in _OPAQUE:
            raise _Unknown(name)
        if name == "SUBPATTERN":
            _, add_flags, del_flags, body = av
            if add_flags or del_flags:
                raise _Unknown("local flags")
            out.extend(_items(body))
        else:
            out.append((name, av))
    return out


def _top(parsed: Any) -> list[tuple[str, Any]]:
    """The whole pattern's pieces without a leading `^`/`\\A` or trailing `$`/`\\Z`: fullmatch anchors anyway."""
    items = _items(parsed)
    if items and items[0][0] == "AT" and str(items[0][1]) in ("AT_BEGINNING", "AT_BEGINNING_STRING"):
        items = items[1:]
    if items and items[-1][0] == "AT" and str(items[-1][1]) in ("AT_END", "AT_END_STRING"):
        items = items[:-1]
    return items


def _empty_ok(item: tuple[str, Any]) -> bool:
    return item[0] in _REPEATS and item[1][0] == 0


def _seq(old: list[tuple[str, Any]], new: list[tuple[str, Any]], ctx: _Ctx) -> bool:
    """Every string the sequence `old` matches, `new` matches."""
    ctx.step()
    if not old:
        return all(_empty_ok(item) for item in new)
    if not new:
        return False
    head, rest = old[0], old[1:]
    if head[0] == "BRANCH":  # (A|B)R is AR or BR
        return all(_seq(_items(alt) + rest, new, ctx) for alt in head[1][1])
    if head[0] == "IN" and len(head[1]) > 1 and not _negated(head[1]) and not _one(head, new[0], ctx):
        return all(_seq([("IN", [part])] + rest, new, ctx) for part in head[1])  # [ab]R is aR or bR
    first = new[0]
    if _empty_ok(first) and _seq(old, new[1:], ctx):
        return True
    if first[0] == "BRANCH":
        alts = [_items(alt) for alt in first[1][1]]
        return any(_seq(old[:k], alt, ctx) and _seq(old[k:], new[1:], ctx)
                   for k in range(len(old) + 1) for alt in alts)
    return _one(head, first, ctx) and _seq(rest, new[1:], ctx)


def _one(old: tuple[str, Any], new: tuple[str, Any], ctx: _Ctx) -> bool:
    """Every string the single piece `old` matches, the single piece `new` matches."""
    ctx.step()
    if new[0] in _REPEATS:
        low, high, body = new[1]
        if old[0] in _REPEATS:
            return low <= old[1][0] and (high == _regex_constants.MAXREPEAT or
                                         old[1][1] != _regex_constants.MAXREPEAT and old[1][1] <= high) \
                and _seq(_items(old[1][2]), _items(body), ctx)
        return low <= 1 <= high and _seq([old], _items(body), ctx)
    if ctx.flags & re.IGNORECASE:  # case folding reaches beyond ASCII: only the same piece is known to match the same
        return old == new
    if new[0] == "ANY":  # `.`: anything but a newline (anything at all with DOTALL)
        return old[0] == "ANY" or old[0] in ("LITERAL", "IN") and _in_class_all(old, [("RANGE", (11, 0x10FFFF)),
                                                                                      ("RANGE", (0, 9))])
    if old[0] in ("LITERAL", "IN") and new[0] in ("LITERAL", "IN"):
        return _in_class_all(old, new[1] if new[0] == "IN" else [("LITERAL", new[1])])
    if old[0] in _REPEATS or old[0] == "BRANCH" or new[0] == "BRANCH":
        return False
    return old[0] == new[0] and old[1] == new[1]  # the same dot, anchor or negated literal


def _in_class_all(old: tuple[str, Any], within: list[Any]) -> bool:
    """Whether every character the literal or class `old` matches is in the class members `within`."""
    parts = old[1] if old[0] == "IN" else [("LITERAL", old[1])]
    if _negated(parts) or _negated(within):
        return parts == within
    return all(_in_class(str(op), av, within) for op, av in parts)


def _negated(parts: list[Any]) -> bool:
    return any(str(op) == "NEGATE" for op, _ in parts)


def _in_class(op: str, av: Any, within: list[Any]) -> bool:
    """Whether a class member (LITERAL, RANGE or CATEGORY) is inside the members `within`."""
    categories = {str(v) for o, v in within if str(o) == "CATEGORY"}
    if op == "CATEGORY":
        return any(str(av) in _CATEGORY.get(c, ((), {c}))[1] for c in categories)
    low, high = (av, av) if op == "LITERAL" else av if op == "RANGE" else (None, None)
    if low is None or high - low > 0x10000:
        return False
    known: set[int] = set()
    for o, v in within:
        if str(o) == "LITERAL":
            known.add(v)
        elif str(o) == "RANGE":
            if v[0] <= low and high <= v[1]:
                return True
            known.update(range(max(v[0], low), min(v[1], high) + 1))
    for c in categories:
        known |= _CATEGORY.get(c, (frozenset(), set()))[0]
    return all(code in known for code in range(low, high + 1))


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


#: what adding a group trait does to senders that already send that name as a person trait, by the new contract's
#: `group_trait_on_person` action: flagged messages still go out as they were; stripped or dropped ones do not
ADDED_TRAIT = {"flag": "added", "strip": "added, stripped from people", "drop": "added, dropping people"}


def _group_traits(where: str, old_contract: Contract, new_contract: Contract) -> Iterator[Change]:
    old, new = old_contract.group_traits, new_contract.group_traits
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
        yield Change(where, "group_trait", ADDED_TRAIT[new_contract.action("group_trait_on_person")], name)
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
        kind = _presence(old.group_id_pattern, new.group_id_pattern)
        if kind == "changed" and pattern_widened(old.group_id_pattern, new.group_id_pattern):
            kind = "widened"
        changes.append(Change(where, "group_id_pattern", kind, "", old.group_id_pattern, new.group_id_pattern))
    changes.extend(Change(where, "object_type", _presence(old.object_types.get(key), new.object_types.get(key)), key,
                          old.object_types.get(key), new.object_types.get(key))
                   for key in sorted(set(old.object_types) | set(new.object_types), key=int)
                   if old.object_types.get(key) != new.object_types.get(key))
    changes.extend(_require_group(where, old, new))
    changes.extend(Change(where, "attach_group_traits", kind, name)
                   for kind, name in _added_removed(set(old.attach_group_traits), set(new.attach_group_traits)))
    changes.extend(_group_traits(where, old, new))
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


def plain_line(change: Change) -> str:
    """One change on one line: BREAKING or compatible, where, what."""
    label = "BREAKING" if change.breaking else "compatible"
    return f"{label:<10}  {change.where}  {change.description}"


def summary(changes: list[Change]) -> str:
    breaking = sum(change.breaking for change in changes)
    return f"{len(changes)} change(s): {breaking} breaking, {len(changes) - breaking} compatible"


def print_changes(changes: list[Change], plain: bool) -> None:
    """A table on a terminal, one line per change otherwise (CI logs)."""
    if plain:
        for change in changes:
            print(plain_line(change))
        print(summary(changes))
        return
    table = Table(title="contract changes", caption=summary(changes))
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
