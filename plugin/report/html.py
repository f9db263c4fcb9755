"""The coverage report as one self-contained HTML page: inline CSS, inline SVG charts, no script, no assets."""

from __future__ import annotations

from collections import Counter
from html import escape

from groupspec.middleware.counts import RESOLUTIONS
from .collect import COLUMNS, Coverage
from .terminal import age, percent

#: series -> colour, shared by the charts and their legends
COLOURS = {
    "explicit": "#2563eb", "property": "#0891b2", "membership": "#16a34a", "unresolved": "#f59e0b",
    "quarantined": "#dc2626", "forwarded": "#f59e0b",
}
LABEL_WIDTH, BAR_WIDTH, ROW_HEIGHT = 220, 560, 26
LABEL_CHARS = 26  # what fits in LABEL_WIDTH at 13px

CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2937;
       margin: 0; background: #f8fafc; }
main { max-width: 1040px; margin: 0 auto; padding: 28px 32px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; } h2 { font-size: 19px; margin: 34px 0 10px; }
.meta { color: #64748b; margin: 0 0 22px; }
.tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 12px; }
.tile { background: #fff; border: 1px solid #e2e8f0; border-radius: 10px; padding: 12px 14px; }
.tile b { display: block; font-size: 24px; } .tile span { color: #64748b; font-size: 13px; }
.tile.warn b { color: #b45309; } .tile.bad b { color: #b91c1c; }
table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid #e2e8f0; }
th, td { padding: 6px 10px; border-bottom: 1px solid #e2e8f0; text-align: right; }
th { background: #f1f5f9; font-weight: 600; white-space: nowrap; } .text { text-align: left; }
svg { display: block; }
.chart { background: #fff; border: 1px solid #e2e8f0; border-radius: 10px; padding: 10px; margin-bottom: 12px; }
.legend span { display: inline-block; margin-right: 16px; font-size: 13px; }
.legend i { display: inline-block; width: 12px; height: 12px; border-radius: 2px; margin-right: 5px;
            vertical-align: -1px; }
.none { color: #64748b; } code { font-size: 13px; }
"""


def _legend(series: list[str]) -> str:
    items = "".join(f'<span><i style="background:{COLOURS[s]}"></i>{escape(COLUMNS.get(s, s))}</span>' for s in series)
    return f'<div class="legend">{items}</div>'


def stacked_bars(rows: list[tuple[str, dict[str, int]]], series: list[str]) -> str:
    """An inline SVG of horizontal stacked bars, one row per label, scaled to the largest total."""
    top = max((sum(values.values()) for _, values in rows), default=0) or 1
    height = ROW_HEIGHT * len(rows) + 8
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{LABEL_WIDTH + BAR_WIDTH + 70}" height="{height}" '
             f'role="img" font-family="system-ui, sans-serif" font-size="13">']
    for i, (label, values) in enumerate(rows):
        y = 4 + i * ROW_HEIGHT
        shown = label if len(label) <= LABEL_CHARS else label[:LABEL_CHARS - 1] + "…"
        parts.append(f'<text x="{LABEL_WIDTH - 8}" y="{y + 16}" text-anchor="end">{escape(shown)}</text>')
        x = float(LABEL_WIDTH)
        for name in series:
            width = BAR_WIDTH * values.get(name, 0) / top
            if width > 0:
                parts.append(f'<rect x="{x:.1f}" y="{y + 3}" width="{width:.1f}" height="{ROW_HEIGHT - 8}" '
                             f'fill="{COLOURS[name]}"><title>{escape(label)}: {values[name]} {name}</title></rect>')
                x += width
        parts.append(f'<text x="{x + 6:.1f}" y="{y + 16}" fill="#475569">{sum(values.values())}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _table(head: list[str], rows: list[list[str]], text_columns: int = 1) -> str:
    def cells(tag: str, row: list[str]) -> str:
        return "".join(f'<{tag}{" class=text" if i < text_columns else ""}>{cell}</{tag}>' for i, cell in enumerate(row))
    body = "".join(f"<tr>{cells('td', row)}</tr>" for row in rows)
    th = cells("th", [escape(h) for h in head])
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _tile(value: str, label: str, level: str = "") -> str:
    return f'<div class="tile {level}"><b>{escape(value)}</b><span>{escape(label)}</span></div>'


def _tiles(report: Coverage) -> str:
    forwarded = sum(row.forwarded for row in report.events)
    grouped = sum(row.with_group for row in report.events)
    share = grouped / forwarded if forwarded else None
    people, groups = report.people, report.groups
    tiles = [
        _tile(str(report.received), "messages received"),
        _tile(str(report.quarantined), "quarantined", "bad" if report.quarantined else ""),
        _tile(percent(share), "track events with a group", "" if share is None or share >= 0.95 else "warn"),
    ]
    if people is not None:
        tiles.append(_tile(str(people.without_group), f"of {people.total} people without any group",
                           "warn" if people.without_group else ""))
    if groups is not None:
        tiles.append(_tile(str(groups.stale_count) if groups.freshness else "-",
                           f"of {groups.total} groups stale" + (f" (> {groups.freshness})" if groups.freshness else ""),
                           "warn" if groups.stale_count else ""))
    return '<div class="tiles">' + "".join(tiles) + "</div>"


def _events(report: Coverage) -> str:
    if not report.events:
        return '<p class="none">No track events.</p>'
    series = [*RESOLUTIONS, "quarantined"]
    chart = stacked_bars([(row.event, {**row.resolution, "quarantined": row.quarantined}) for row in report.events],
                         series)
    rows = [[escape(row.event), str(row.received), str(row.quarantined), percent(row.share),
             *(str(row.resolution.get(name, 0)) for name in RESOLUTIONS)] for row in report.events]
    return (f'<div class="chart">{_legend(series)}{chart}</div>'
            + _table(["event", "received", "quarantined", "with group", *(COLUMNS[r] for r in RESOLUTIONS)], rows))


def _violations(report: Coverage) -> str:
    if not report.violations:
        return '<p class="none">No violations.</p>'
    by_code: dict[str, Counter[str]] = {}
    for row in report.violations:
        counts = by_code.setdefault(row.code, Counter())
        counts["forwarded"] += row.forwarded
        counts["quarantined"] += row.quarantined
    chart = stacked_bars([(code, dict(counts)) for code, counts in by_code.items()], ["forwarded", "quarantined"])
    rows = [[escape(row.code), escape(row.source), str(row.forwarded), str(row.quarantined)] for row in report.violations]
    return (f'<div class="chart">{_legend(["forwarded", "quarantined"])}{chart}</div>'
            + _table(["code", "source", "forwarded (flag/strip)", "quarantined"], rows, text_columns=2))


def _people(report: Coverage) -> str:
    people = report.people
    if people is None:
        return f'<p class="none">Not tracked by {escape(report.origin)}.</p>'
    if not people.without_group:
        return f'<p class="none">All {people.total} people have a group.</p>'
    more = people.without_group - len(people.examples)
    listed = ", ".join(f"<code>{escape(name)}</code>" for name in people.examples)
    return (f"<p>{people.without_group} of {people.total} people never resolved a group: {listed}"
            + (f" and {more} more" if more > 0 else "") + ".</p>")


def _stale(report: Coverage) -> str:
    groups = report.groups
    if groups is None:
        return f'<p class="none">Not tracked by {escape(report.origin)}.</p>'
    if groups.freshness is None:
        return f'<p class="none">{groups.total} groups; no <code>[contract] freshness</code> window is configured.</p>'
    if not groups.stale_count:
        return f'<p class="none">All {groups.total} groups were updated within {escape(groups.freshness)}.</p>'
    rows = [[escape(g.object_type_id), escape(g.group_id), escape(g.last_update), age(g.age_seconds)]
            for g in groups.stale]
    note = f"<p>The {len(groups.stale)} oldest of {groups.stale_count}.</p>" if groups.stale_count > len(rows) else ""
    return _table(["object type", "group", "last update", "age"], rows, text_columns=3) + note


def _id_changes(report: Coverage) -> str:
    if report.id_changes is None:
        return f'<p class="none">Not tracked by {escape(report.origin)}.</p>'
    if not report.id_changes:
        return '<p class="none">None found.</p>'
    rows = [[escape(c.object_type_id), escape(c.old_id), escape(c.new_id), str(c.members), escape(c.first_move),
             escape(c.last_move)] for c in report.id_changes]
    return _table(["object type", "old id", "new id", "members", "moved from", "moved until"], rows, text_columns=3)


def render(report: Coverage) -> str:
    """The whole page as a string."""
    title = f"groupspec coverage — {report.origin}"
    meta = (f"contract {escape(report.contract or '?')} · as of {escape(report.as_of or 'no data')} · "
            f"{report.forwarded} forwarded, {report.quarantined} quarantined")
    window = report.groups.freshness if report.groups is not None else None
    freshness = f" (not updated within {escape(window)})" if window else ""
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{CSS}</style></head><body><main>"
            f"<h1>Group coverage</h1><p class=\"meta\">{escape(report.origin)} · {meta}</p>{_tiles(report)}"
            f"<h2>Track events by group resolution</h2>{_events(report)}"
            f"<h2>Violations by code and source</h2>{_violations(report)}"
            f"<h2>People without any group</h2>{_people(report)}"
            f"<h2>Stale groups{freshness}</h2>{_stale(report)}"
            f"<h2>Likely group id changes nobody migrated</h2>{_id_changes(report)}"
            "</main></body></html>\n")
