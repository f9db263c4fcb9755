"""A page as data: sections of paragraphs, bullet lists and tables whose text is runs of prose and `Code` (data
shown as it is: names, values, ids). The renderers escape each run for their format."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Code:
    """Data from the contract, shown verbatim (a trait name, an enum value, an event name, an id)."""

    text: str


#: a run of text: prose and code
Inline = tuple[str | Code, ...]


def line(*parts: str | Code) -> Inline:
    return tuple(part for part in parts if part != "")


def listing(values: list[str], empty: str = "none") -> Inline:
    """Values as code, separated by commas; `empty` when there are none."""
    if not values:
        return (empty,)
    out: list[str | Code] = []
    for i, value in enumerate(values):
        out.extend((", ", Code(value)) if i else (Code(value),))
    return tuple(out)


@dataclass(frozen=True)
class Para:
    text: Inline


@dataclass(frozen=True)
class Bullets:
    items: tuple[Inline, ...]


@dataclass(frozen=True)
class Table:
    head: tuple[str, ...]
    rows: tuple[tuple[Inline, ...], ...]


Block = Para | Bullets | Table


@dataclass(frozen=True)
class Section:
    title: str
    blocks: tuple[Block, ...]


@dataclass(frozen=True)
class Page:
    title: str
    lead: tuple[Inline, ...]
    sections: tuple[Section, ...]
