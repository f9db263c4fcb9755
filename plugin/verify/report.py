"""The verify report three ways: a JSON document (`--json`), rich tables on a terminal, one self-contained
HTML page (`--html`: inline CSS, no script, no assets)."""

from __future__ import annotations

from html import escape
from typing import Any

import orjson
from rich.console import Console
from rich.markup import escape as rich_escape
from rich.table import Table
from rich.text import Text

from .compare import KINDS, Finding, GroupResult

SCHEMA = "groupspec.verify/1"


def _finding(f: Finding) -> dict[str, Any]:
    return {"kind": f.kind, "attribute": f.attribute, "person": f.person, "expected": f.expected, "actual": f.actual}


def document(results: list[GroupResult], repairs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The report as plain data: per group its drifts (and the members it could not check), totals, and the
    repair operations when they were built."""
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "groups_checked": len(results),
        "groups_with_drift": sum(r.drift for r in results),
        "drifts": sum(len(r.findings) for r in results),
        "groups": [{"object_type_id": r.view.object_type_id, "group_id": r.view.group_id,
                    "status": "incomplete" if r.incomplete else "drift" if r.drift else "ok",
                    "members": len(r.view.members),
                    "unchecked_anonymous_members": r.view.anonymous,
                    "findings": [_finding(f) for f in r.findings]} for r in results],
    }
    if repairs is not None:
        doc["repair"] = repairs
    return doc


def to_json(doc: dict[str, Any]) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"


def _value(value: Any) -> str:
    return "" if value is None else value if isinstance(value, str) else orjson.dumps(value).decode()


def _what(f: Finding) -> str:
    person = " ".join(f"{k}={v}" for k, v in (f.person or {}).items())
    return " · ".join(part for part in (f.attribute or "", person) if part)


def _headline(doc: dict[str, Any]) -> str:
    incomplete = sum(group["status"] == "incomplete" for group in doc["groups"])
    cut = f" ({incomplete} read incomplete: not compared, not repaired)" if incomplete else ""
    return f"{doc['groups_checked']} groups checked, {doc['groups_with_drift']} with drift{cut}, {doc['drifts']} drifts"


def render(doc: dict[str, Any], results: list[GroupResult], console: Console | None = None) -> None:
    """Print the headline and one row per drift."""
    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=max(console.width, 120))
    console.print(f"[bold]verify[/]: {_headline(doc)}")
    if doc["drifts"]:
        table = Table(title="drift between the store and Customer.io", title_justify="left")
        for name in ("object type", "group", "drift", "attribute / person", "expected", "actual"):
            table.add_column(name)
        for r in results:
            for f in r.findings:
                table.add_row(Text(r.view.object_type_id), Text(r.view.group_id), Text(f.kind), Text(_what(f)),
                              Text(_value(f.expected)), Text(_value(f.actual)))
        console.print(table)
    unchecked = sum(len(r.view.anonymous) for r in results)
    if unchecked:
        console.print(f"{unchecked} anonymous members not checked (the App API looks people up by id, email or "
                      f"cio_id)")
    if "repair" in doc:
        console.print(f"repair: {len(doc['repair'])} Track API operations")
    for op in doc.get("repair", []):
        console.print(rich_escape(orjson.dumps(op).decode()), soft_wrap=True)


CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2937; margin: 0;
       background: #f8fafc; }
main { max-width: 1040px; margin: 0 auto; padding: 28px 32px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; } .meta { color: #64748b; margin: 0 0 22px; }
table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid #e2e8f0; }
th, td { padding: 6px 10px; border-bottom: 1px solid #e2e8f0; text-align: left; vertical-align: top; }
th { background: #f1f5f9; } .ok { color: #15803d; } .drift { color: #b91c1c; font-weight: 600; }
code { font-size: 13px; } dl { color: #475569; font-size: 14px; } dt { font-weight: 600; }
"""


def html(doc: dict[str, Any]) -> str:
    """The report as one HTML page."""
    rows = []
    for group in doc["groups"]:
        head = (f"<td><code>{escape(group['object_type_id'])}</code></td>"
                f"<td><code>{escape(group['group_id'])}</code></td>")
        if not group["findings"]:
            rows.append(f"<tr>{head}<td class=ok>ok</td><td></td><td></td><td></td></tr>")
        for f in group["findings"]:
            person = " ".join(f"{k}={v}" for k, v in (f["person"] or {}).items())
            what = " · ".join(part for part in (f["attribute"] or "", person) if part)
            rows.append(f"<tr>{head}<td class=drift>{escape(f['kind'])}</td><td>{escape(what)}</td>"
                        f"<td><code>{escape(_value(f['expected']))}</code></td>"
                        f"<td><code>{escape(_value(f['actual']))}</code></td></tr>")
    legend = "".join(f"<dt>{escape(kind)}</dt><dd>{escape(text)}</dd>" for kind, text in KINDS.items())
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>groupspec verify</title>"
            f"<style>{CSS}</style></head><body><main><h1>groupspec verify</h1>"
            f"<p class=meta>{escape(_headline(doc))}</p><table><tr><th>object type</th><th>group</th><th>drift</th>"
            f"<th>attribute / person</th><th>expected</th><th>actual</th></tr>{''.join(rows)}</table>"
            f"<dl>{legend}</dl></main></body></html>\n")
