"""A `Page` as GitHub-flavoured Markdown: data in code spans, prose escaped, tables as pipe tables."""

from __future__ import annotations

import re

from .page import Block, Bullets, Code, Inline, Page, Para, Table

_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")  # prose characters Markdown would read as markup


def _code(text: str, in_table: bool) -> str:
    text = " ".join(text.splitlines())  # a line break would end the paragraph or the table row
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or text.startswith(" ") and text.endswith(" ") else ""
    body = text.replace("|", "\\|") if in_table else text  # GFM reads | as a cell edge even inside code
    return f"{fence}{pad}{body}{pad}{fence}"


def inline(text: Inline, in_table: bool = False) -> str:
    return "".join(_code(part.text, in_table) if isinstance(part, Code) else _SPECIAL.sub(r"\\\1", part)
                   for part in text)


def _block(block: Block) -> str:
    if isinstance(block, Para):
        return inline(block.text)
    if isinstance(block, Bullets):
        return "\n".join(f"- {inline(item)}" for item in block.items)
    assert isinstance(block, Table)
    head = "| " + " | ".join(block.head) + " |"
    rule = "|" + "|".join("---" for _ in block.head) + "|"
    rows = ["| " + " | ".join(inline(cell, in_table=True) for cell in row) + " |" for row in block.rows]
    return "\n".join([head, rule, *rows])


def render(page: Page) -> str:
    parts = [f"# {inline((page.title,))}", *(inline(text) for text in page.lead)]
    for section in page.sections:
        parts.append(f"## {inline((section.title,))}")
        parts.extend(_block(block) for block in section.blocks)
    return "\n\n".join(parts) + "\n"
