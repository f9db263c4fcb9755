"""A `Page` as one self-contained HTML page (inline CSS, no script, no assets) readable on a phone: below 640 px
a table row becomes a card of labelled cells, and long data wraps anywhere rather than scrolling sideways."""

from __future__ import annotations

from html import escape

from .page import Block, Bullets, Code, Inline, Page, Para, Table

CSS = """
* { box-sizing: border-box; }
body { font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2937; margin: 0;
       background: #f8fafc; overflow-wrap: anywhere; }
main { max-width: 960px; margin: 0 auto; padding: 24px 20px 48px; }
h1 { font-size: 26px; margin: 0 0 8px; } h2 { font-size: 20px; margin: 32px 0 10px; }
.lead { color: #475569; margin: 4px 0; }
code { font: 14px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: #eef2f7;
       border-radius: 4px; padding: 1px 4px; }
ul { padding-left: 22px; }
table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid #e2e8f0; margin: 8px 0; }
th, td { padding: 7px 10px; border-bottom: 1px solid #e2e8f0; text-align: left; vertical-align: top; }
th { background: #f1f5f9; font-weight: 600; }
@media (max-width: 640px) {
  main { padding: 16px 12px 40px; }
  table, tbody, tr, td { display: block; width: 100%; } thead { display: none; } table { border: 0; background: none; }
  tr { background: #fff; border: 1px solid #e2e8f0; border-radius: 8px; margin: 0 0 10px; padding: 4px 0; }
  td { border: 0; padding: 3px 12px; }
  td::before { content: attr(data-label); display: block; font-size: 12px; color: #64748b; text-transform: uppercase;
               letter-spacing: .03em; }
}
"""


def inline(text: Inline) -> str:
    return "".join(f"<code>{escape(part.text)}</code>" if isinstance(part, Code) else escape(part) for part in text)


def _block(block: Block) -> str:
    if isinstance(block, Para):
        return f"<p>{inline(block.text)}</p>"
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{inline(item)}</li>" for item in block.items) + "</ul>"
    assert isinstance(block, Table)
    head = "".join(f"<th>{escape(label)}</th>" for label in block.head)
    rows = "".join("<tr>" + "".join(f'<td data-label="{escape(label)}">{inline(cell)}</td>'
                                    for label, cell in zip(block.head, row)) + "</tr>" for row in block.rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def render(page: Page) -> str:
    lead = "".join(f'<p class="lead">{inline(text)}</p>' for text in page.lead)
    body = "".join(f"<section><h2>{escape(section.title)}</h2>{''.join(_block(b) for b in section.blocks)}</section>"
                   for section in page.sections)
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(page.title)}</title><style>{CSS}</style></head><body><main>"
            f"<h1>{escape(page.title)}</h1>{lead}{body}</main></body></html>\n")
