"""What the hostile-input tests (replay and service) share: JSON written as any client may write it, messages nested
to a given depth, and hypothesis strategies for random and nearly valid messages."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st


def dumps(value: Any) -> bytes:
    """JSON as a client may write it: any integer, any depth (orjson writes neither)."""
    return json.dumps(value).encode()


def nested(levels: int, user: str = "deep") -> dict:
    """A track call whose JSON nests exactly `levels` objects deep (the message itself is level 1)."""
    inner: dict = {"leaf": 1}
    for _ in range(levels - 2):
        inner = {"a": inner}
    return {"type": "track", "userId": user, "event": "Deep", "messageId": "deep",
            "timestamp": "2026-01-01T10:00:00Z", "properties": inner}


def deep_body(levels: int, *before: dict) -> bytes:
    """`nested(levels)` as JSON, after `before` in a batch if any (written by hand: json recurses per level)."""
    head, tail = dumps(nested(2)).split(b'{"leaf": 1}')
    deep = head + b'{"a": ' * (levels - 2) + b'{"leaf": 1}' + b"}" * (levels - 2) + tail
    return deep if not before else b'{"batch": [' + b", ".join(map(dumps, before)) + b", " + deep + b"]}"


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12)
MEMBER = st.fixed_dictionaries(  # nearly valid messages: each optional field may be missing or wrong
    {"type": st.sampled_from(["track", "identify", "group", "page", "alias", "bogus"])},
    optional={"userId": st.sampled_from(["ann", "bob"]) | st.text(max_size=8) | st.integers(),
              "event": st.sampled_from(["Viewed", "Order Placed"]) | st.text(max_size=8),
              "groupId": st.sampled_from(["hh_1", "bad id", ""]), "previousId": st.just("old"),
              "timestamp": st.sampled_from(["2026-01-01T10:00:00Z", "2099-01-01T00:00:00Z", "1969-01-01T00:00:00Z",
                                            "9999-12-31T23:59:59-14:00", "2026-01-01t10:00:00z", "yesterday"]),
              "sentAt": st.just("2026-01-01T10:05:00Z"), "properties": JSON, "traits": JSON,
              "messageId": st.text(max_size=4)})
