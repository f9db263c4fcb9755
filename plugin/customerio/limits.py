"""Customer.io's documented limits for one Track API v2 operation (../shared/customerio.md), and the fields its
schema requires of each operation (../shared/customerio-track-openapi-batch.json), checked by hand."""

from __future__ import annotations

from typing import Any

import orjson

MAX_OPERATION_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
MAX_ID_BYTES = 150
MAX_NAME_BYTES = 150
MAX_VALUE_BYTES = 1000
MAX_ATTRIBUTES = 300
MAX_TOTAL_ATTRIBUTE_BYTES = 100 * 1024
PERSON_KEYS = frozenset({"id", "email", "cio_id", "anonymous_id"})
_ATTRIBUTE_HOLDERS = {("person", "identify"), ("object", "identify"), ("object", "identify_anonymous")}

#: (type, action) -> the fields Customer.io's Track API v2 schema requires besides `type`, `action` and the
#: identifiers (dotted paths): an operation without one would be refused in a 207 and dead-lettered
REQUIRED: dict[tuple[str, str], tuple[str, ...]] = {
    ("person", "event"): ("name",),
    ("person", "page"): ("name",),
    ("person", "screen"): ("name",),
    ("person", "add_device"): ("device.token", "device.platform"),
    ("person", "delete_device"): ("device.token",),
    ("person", "merge"): ("primary", "secondary"),
    ("person", "add_relationships"): ("cio_relationships",),
    ("person", "delete_relationships"): ("cio_relationships",),
    ("object", "add_relationships"): ("cio_relationships",),
    ("object", "delete_relationships"): ("cio_relationships",),
}
#: `device.platform`'s enum; its case is not checked: Segment's destination sends `context.device.type` as it is
PLATFORMS = frozenset({"ios", "android"})
#: (type, action) -> the attributes the schema gives a type (the others are free): name -> (test, what it wants)
TYPED_ATTRIBUTES: dict[tuple[str, str], dict[str, tuple[Any, str]]] = {
    ("person", "page"): {
        **dict.fromkeys(("url", "path", "referrer", "search"), (lambda v: isinstance(v, str), "a string")),
        "keywords": (lambda v: isinstance(v, list) and all(isinstance(k, str) for k in v), "a list of strings"),
    },
    ("person", "event"): dict.fromkeys(("recipient", "from_address", "reply_to"),
                                       (lambda v: isinstance(v, str), "a string")),
}

_TYPED_NAMES = {kind: frozenset(names) for kind, names in TYPED_ATTRIBUTES.items()}
_REQUIRED_KEYS = {kind: tuple((path, tuple(path.split("."))) for path in paths) for kind, paths in REQUIRED.items()}


def missing(op: dict[str, Any]) -> tuple[str, str] | None:
    """(field, reason) when `op` lacks a field Customer.io's schema requires, names a platform it does not know or
    gives a typed attribute another type; None otherwise. Cheap: table lookups and a few reads."""
    kind = (op["type"], op["action"])
    for path, keys in _REQUIRED_KEYS.get(kind, ()):
        value: Any = op
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if value is None or value == "":
            return path, f"Customer.io's Track API refuses a {op['type']} {op['action']} without {path}"
    if op["action"] == "add_device":
        platform = op["device"]["platform"]
        if not isinstance(platform, str) or platform.lower() not in PLATFORMS:
            return "device.platform", f"Customer.io's Track API takes device platform ios or android, got {platform!r}"
    typed = TYPED_ATTRIBUTES.get(kind)
    if typed:
        attrs = op.get("attributes") or {}
        for name, (test, wanted) in typed.items():
            if name in attrs and not test(attrs[name]):
                return (f"attributes.{name}", f"Customer.io's Track API takes a {op['action']}'s attributes.{name} as "
                        f"{wanted}, got {attrs[name]!r}")
    return None


def _size(value: Any) -> int:
    return len(value.encode()) if isinstance(value, str) else len(orjson.dumps(value))


def _identifiers(ids: Any, where: str, kind: str) -> tuple[str, str] | None:
    if not isinstance(ids, dict):
        return where, "identifiers missing"
    if kind == "object":
        if set(ids) != {"object_type_id", "object_id"}:
            return where, "object identifiers need exactly object_type_id and object_id"
        type_id = ids["object_type_id"]
        if not isinstance(type_id, str) or not type_id.isdigit() or type_id.startswith("0"):
            return f"{where}.object_type_id", "object_type_id must be a positive integer as a string"
    elif len(ids) != 1 or not set(ids) <= PERSON_KEYS:
        return where, f"person identifiers need exactly one of {sorted(PERSON_KEYS)}, got {sorted(ids)}"
    for key, value in ids.items():
        if not isinstance(value, str) or not value:
            return f"{where}.{key}", "identifier must be a non-empty string"
        if len(value.encode()) > MAX_ID_BYTES:
            return f"{where}.{key}", f"identifier is over {MAX_ID_BYTES} bytes"
    return None


def _attributes(attrs: Any, where: str) -> tuple[str, str] | None:
    if not isinstance(attrs, dict):
        return where, "attributes must be an object"
    if len(attrs) > MAX_ATTRIBUTES:
        return where, f"{len(attrs)} attributes, over the limit of {MAX_ATTRIBUTES}"
    total = 0
    for name, value in attrs.items():
        if len(name.encode()) > MAX_NAME_BYTES:
            return f"{where}.{name[:40]}", f"attribute name is over {MAX_NAME_BYTES} bytes"
        size = _size(value)
        if size > MAX_VALUE_BYTES:
            return f"{where}.{name}", f"attribute value of {size} bytes is over {MAX_VALUE_BYTES} bytes"
        total += size
    if total > MAX_TOTAL_ATTRIBUTE_BYTES:
        return where, "attributes total over 100 KB"
    return None


_ACTIVITIES = frozenset({"event", "page", "screen"})


def problem(op: dict[str, Any], line: bytes | None = None) -> tuple[str, str] | None:
    """(field, reason) for the first limit `op` breaks, or None when Customer.io will accept its shape; `line`
    is `op` written out, when the caller has it (the 32 KB limit is then checked on it)."""
    kind, action = op["type"], op["action"]
    if kind == "person" and action in _ACTIVITIES:  # the common case: one person identifier + the size
        ((key, value),) = op["identifiers"].items()
        if not value or len(value.encode()) > MAX_ID_BYTES:
            return f"identifiers.{key}", f"identifier must be a non-empty string of at most {MAX_ID_BYTES} bytes"
        if not op["name"]:
            return "name", f"a {action} needs a name ({'the page URL' if action == 'page' else 'the screen name'})"
        return _too_big(op, line)
    if action == "merge":
        found = _identifiers(op["primary"], "primary", "person") or _identifiers(op["secondary"], "secondary", "person")
    else:
        found = _identifiers(op["identifiers"], "identifiers", kind)
    if found:
        return found
    if (kind, action) in _ATTRIBUTE_HOLDERS:
        found = _attributes(op.get("attributes", {}), "attributes")
        if found:
            return found
    for i, link in enumerate(op.get("cio_relationships", ())):
        found = _identifiers(link["identifiers"], f"cio_relationships[{i}].identifiers", "person" if kind == "object" else "object")
        found = found or _attributes(link.get("relationship_attributes", {}), f"cio_relationships[{i}].relationship_attributes")
        if found:
            return found
    return _too_big(op, line)


def _too_big(op: dict[str, Any], line: bytes | None) -> tuple[str, str] | None:
    size = len(orjson.dumps(op) if line is None else line)
    if size > MAX_OPERATION_BYTES:
        return "", f"operation of {size} bytes is over Customer.io's 32 KB limit"
    return None


def activity_accepted(op: dict[str, Any], line: bytes) -> bool:
    """True when neither `missing` nor `problem` would find anything in a person event, page or screen operation
    (`line`: it written out): a name, one person identifier of at most `MAX_ID_BYTES`, none of the attributes the
    schema types (`TYPED_ATTRIBUTES`), at most `MAX_OPERATION_BYTES`. False: ask them (the flat path's check)."""
    ((_, value),) = op["identifiers"].items()
    if not value or len(value.encode()) > MAX_ID_BYTES or not op["name"]:
        return False
    typed = _TYPED_NAMES.get(("person", op["action"]))
    return (typed is None or typed.isdisjoint(op["attributes"])) and len(line) <= MAX_OPERATION_BYTES
