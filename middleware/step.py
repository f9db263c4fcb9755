"""What a chain step is: a callable `Message -> Message`, optionally limited to some message types."""

from __future__ import annotations

from collections.abc import Callable

from .message import TYPES, Message

Step = Callable[[Message], Message]


def only(*types: str):
    """Mark a step as relevant to these message types only; the pipeline skips it for the others."""

    def mark(step):
        step.types = frozenset(types)
        return step

    return mark


def chains(steps: list[Step]) -> dict[str, list[Step]]:
    """The steps each message type goes through, in order."""
    return {kind: [s for s in steps if kind in getattr(s, "types", TYPES)] for kind in TYPES}
