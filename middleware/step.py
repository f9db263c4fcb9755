"""What a chain step is: a callable `Message -> Message`, optionally limited to some message types and to
contracts that use it, so a message only meets the steps that can matter to it."""

from __future__ import annotations

from collections.abc import Callable

from .config import Contract
from .message import TYPES, Message

Step = Callable[[Message], Message]


def only(*types: str, when: Callable[[Contract], bool] | None = None):
    """Mark a step as relevant to these message types only (all, when none are named) and, with `when`, only
    to contracts for which `when(contract)` is true; the pipeline leaves it out of the other chains."""

    def mark(step):
        step.types = frozenset(types or TYPES)
        if when is not None:  # on a class, keep it a plain function, not a method of its instances
            step.when = staticmethod(when) if isinstance(step, type) else when
        return step

    return mark


def chains(steps: list[Step], contract: Contract) -> dict[str, list[Step]]:
    """The steps each message type goes through under `contract`, in order."""
    wanted = [s for s in steps if getattr(s, "when", None) is None or s.when(contract)]
    return {kind: [s for s in wanted if kind in getattr(s, "types", TYPES)] for kind in TYPES}
