"""The coverage report as rich tables on a terminal (plain text when the output is not one)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from groupspec.middleware.counts import RESOLUTIONS
from .collect import COLUMNS, Coverage


def percent(share: float | None) -> str:
    return "-" if share is None else f"{share:.0%}"


def age(seconds: int) -> str:
    """A duration in the largest whole units: `2d 3h`, `5h 10m`, `45s`."""
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")) if n]
    return " ".join(parts[:2]) or "0s"


def _events(report: Coverage) -> Table:
    table = Table(title="track events: group coverage", title_justify="left")
    for name in ("event", "received", "quarantined", "with group", *(COLUMNS[r] for r in RESOLUTIONS)):
        table.add_column(name, justify="left" if name == "event" else "right")
    for row in report.events:
        share = row.share
        style = "" if share is None or share >= 0.95 else "yellow" if share >= 0.5 else "red"
        table.add_row(Text(row.event), str(row.received), str(row.quarantined),
                      f"[{style}]{percent(share)}[/]" if style else percent(share),
                      *(str(row.resolution.get(name, 0)) for name in RESOLUTIONS))
    return table


def _violations(report: Coverage) -> Table:
    table = Table(title="violations by code and source", title_justify="left")
    for name in ("code", "source", "forwarded (flag/strip)", "quarantined"):
        table.add_column(name, justify="right" if name[0] in "fq" else "left")
    for row in report.violations:
        table.add_row(Text(row.code), Text(row.source), str(row.forwarded), str(row.quarantined))
    return table


def _stale(report: Coverage) -> Table:
    groups = report.groups
    table = Table(title=f"groups not updated within {groups.freshness}: {groups.stale_count} of {groups.total}",
                  title_justify="left")
    for name in ("object type", "group", "last update", "age"):
        table.add_column(name)
    for group in groups.stale:
        table.add_row(Text(group.object_type_id), Text(group.group_id), group.last_update, age(group.age_seconds))
    if groups.stale_count > len(groups.stale):
        table.caption = f"the {len(groups.stale)} oldest shown"
    return table


def _id_changes(report: Coverage) -> Table:
    table = Table(title="likely group id changes nobody migrated (groupspec groups migrate)", title_justify="left")
    for name in ("object type", "old id", "new id", "members", "moved from", "moved until"):
        table.add_column(name)
    for change in report.id_changes:
        table.add_row(Text(change.object_type_id), Text(change.old_id), Text(change.new_id), str(change.members),
                      change.first_move, change.last_move)
    return table


def render(report: Coverage, console: Console | None = None) -> None:
    """Print the report: headline, events, violations, people without a group, stale groups."""
    if console is None:
        console = Console()
        if not console.is_terminal:  # a log or a pipe: wide enough that the tables do not wrap
            console = Console(width=max(console.width, 120))
    console.print(f"[bold]coverage of {escape(report.origin)}[/] — contract {escape(report.contract or '?')}, "
                  f"as of {report.as_of or 'no data'}")
    console.print(f"received {report.received}, forwarded {report.forwarded}, quarantined {report.quarantined}")
    console.print(_events(report) if report.events else "no track events")
    console.print(_violations(report) if report.violations else "no violations")
    people, groups = report.people, report.groups
    if people is not None:
        console.print(f"people without any group: {people.without_group} of {people.total}"
                      + (f" — {escape(', '.join(people.examples))}" if people.examples else ""))
    if groups is None:
        console.print(f"people and groups: not tracked by {escape(report.origin)}")
    elif groups.freshness is None:
        console.print(f"groups: {groups.total} (no {escape('[contract]')} freshness window configured)")
    else:
        console.print(_stale(report) if groups.stale_count else
                      f"groups: all {groups.total} updated within {groups.freshness}")
    if report.id_changes:
        console.print(_id_changes(report))
