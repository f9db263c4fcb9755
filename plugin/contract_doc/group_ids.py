"""Group ids that pass and fail a contract's id rule, for the contract doc.

Passing ids are generated from the parsed `group_id_pattern` (Python's own regex parser), one per alternative
where the pattern has several; failing ids are the mistakes pipelines make (a database number, an email, a URL,
whitespace, the wrong case, a missing prefix). Every example is checked by the contract's own id check
(`middleware.contract.id_problem`), so a passing example passes and a failing one fails with the reason shown."""

from __future__ import annotations

import random
import re
from re import _constants as _regex_constants
from re import _parser as _regex_parser
from typing import Any

from groupspec.middleware.contract import id_problem

#: characters a generated id is made of (what ids usually look like), and the ones used only where a piece of the
#: pattern allows none of those
ALPHABET, FALLBACK = "abcdefghijklmnopqrstuvwxyz0123456789", "_-ABCDEFGHIJKLMNOPQRSTUVWXYZ.:"
#: the length of a single-character piece repeated without a fixed count (`+`, `*`, `{2,}`)
TYPICAL_RUN = 6
#: passing ids when the contract has no pattern
PLAIN_IDS = ("acme", "48213", "7f3a9c2e")
#: failing ids that do not depend on the pattern
MISTAKES = ("48213", "ann@example.com")
MAX_EXAMPLES = 3


class _Unsupported(Exception):
    """A construct the generator does not produce strings for (lookarounds, backreferences, …)."""


def passing(pattern: str | None) -> list[str]:
    """Up to three ids the rule accepts: one per alternative of the pattern when it has several."""
    regex = re.compile(pattern) if pattern else None
    candidates = list(PLAIN_IDS) if regex is None else _generated(pattern)
    return _unique(c for c in candidates if id_problem(c, regex) is None)[:MAX_EXAMPLES]


def failing(pattern: str | None, passing_ids: list[str]) -> list[tuple[str, str]]:
    """(id, why it fails) for the usual mistakes, built on a passing id where there is one."""
    regex = re.compile(pattern) if pattern else None
    base = passing_ids[0] if passing_ids else "acme"
    candidates = [*MISTAKES, f"https://example.com/{base}", base[: len(base) // 2] + " " + base[len(base) // 2:],
                  base.upper(), re.sub(r"^[^_\-:.]*[_\-:.]", "", base)]
    out = []
    for candidate in _unique(candidates):
        problem = id_problem(candidate, regex)
        if candidate and problem is not None:
            why = problem.removeprefix(f"group id {candidate!r} ")
            out.append((candidate, "does not match the pattern" if why.startswith("does not match ") else why))
    return out


def _unique(values: Any) -> list[str]:
    return list(dict.fromkeys(values))


def _generated(pattern: str) -> list[str]:
    try:
        parsed = _regex_parser.parse(pattern)
    except re.error:
        return []
    out = []
    for variant in range(MAX_EXAMPLES):
        rng = random.Random(f"{pattern}#{variant}")  # the same page every time for the same pattern
        try:
            out.append(_emit(list(parsed), variant, rng, parsed.state.flags & re.IGNORECASE))
        except (_Unsupported, RecursionError):
            return []
    return out


def _emit(items: list[tuple[Any, Any]], variant: int, rng: random.Random, ignorecase: int) -> str:
    out = []
    for op, av in items:
        name = str(op)
        if name == "LITERAL":
            out.append(chr(av))
        elif name in ("IN", "ANY", "NOT_LITERAL", "CATEGORY"):
            out.append(_char(name, av, rng, ignorecase))
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, high, body = av
            single = len(body) == 1 and str(body[0][0]) in ("LITERAL", "IN", "ANY", "NOT_LITERAL", "CATEGORY")
            wanted = TYPICAL_RUN if single else 1
            count = max(low, min(wanted, high if high != _regex_constants.MAXREPEAT else wanted))
            out.extend(_emit(list(body), variant, rng, ignorecase) for _ in range(count))
        elif name == "BRANCH":
            alternatives = av[1]
            out.append(_emit(list(alternatives[variant % len(alternatives)]), variant, rng, ignorecase))
        elif name == "SUBPATTERN":
            out.append(_emit(list(av[-1]), variant, rng, ignorecase))
        elif name != "AT":  # anchors match no character
            raise _Unsupported(name)
    return "".join(out)


def _char(name: str, av: Any, rng: random.Random, ignorecase: int) -> str:
    """A character the piece matches: a random one from `ALPHABET`, else from `FALLBACK`."""
    test = re.compile(_piece(name, av), re.IGNORECASE if ignorecase else 0)
    allowed = [c for c in ALPHABET if test.fullmatch(c)] or [c for c in FALLBACK if test.fullmatch(c)]
    if not allowed:
        raise _Unsupported(name)
    return rng.choice(allowed)


def _piece(name: str, av: Any) -> str:
    """The one-character regex of a parsed piece, rebuilt to test candidate characters against."""
    if name == "ANY":
        return "."
    if name == "NOT_LITERAL":
        return "[^" + re.escape(chr(av)) + "]"
    members = [(str(op), value) for op, value in (av if name == "IN" else [(name, av)])]
    out = []
    for op, value in members:
        if op == "NEGATE":
            out.append("^")
        elif op == "LITERAL":
            out.append(re.escape(chr(value)))
        elif op == "RANGE":
            out.append(re.escape(chr(value[0])) + "-" + re.escape(chr(value[1])))
        elif op == "CATEGORY":
            out.append(_CATEGORIES.get(str(value)) or _raise(op))
        else:
            raise _Unsupported(op)
    return "[" + "".join(out) + "]"


_CATEGORIES = {"CATEGORY_DIGIT": r"\d", "CATEGORY_NOT_DIGIT": r"\D", "CATEGORY_WORD": r"\w",
               "CATEGORY_NOT_WORD": r"\W", "CATEGORY_SPACE": r"\s", "CATEGORY_NOT_SPACE": r"\S"}


def _raise(what: str) -> str:
    raise _Unsupported(what)
