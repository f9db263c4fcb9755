"""Customer.io's Track API v2 schema (`tests/customerio_schema/`) as a validator: which schema each operation
answers to, and the deviations Customer.io's real API takes because Segment's own destination sends them."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

DOCUMENT = json.loads((Path(__file__).parent / "customerio_schema" / "track-v2-batch.json").read_text())
_REGISTRY = Registry().with_resource("urn:customerio-track", Resource.from_contents(DOCUMENT, DRAFT202012))

#: (type, action) -> the component schema of that operation (the batch item's `anyOf` alternatives)
SCHEMAS = {
    ("person", "identify"): "identify_person", ("person", "event"): "person_event",
    ("person", "page"): "person_page", ("person", "screen"): "person_screen",
    ("person", "add_device"): "person_add_device", ("person", "delete_device"): "person_delete_device",
    ("person", "merge"): "person_merge", ("person", "delete"): "person_delete",
    ("person", "suppress"): "person_suppress", ("person", "unsuppress"): "person_unsuppress",
    ("person", "add_relationships"): "person_add_relationships",
    ("person", "delete_relationships"): "person_delete_relationships",
    ("object", "identify"): "object_identify", ("object", "identify_anonymous"): "object_identify_anonymous",
    ("object", "delete"): "object_delete", ("object", "add_relationships"): "object_add_relationships",
    ("object", "delete_relationships"): "object_delete_relationships",
}
_VALIDATORS = {key: Draft202012Validator({"$ref": f"urn:customerio-track#/components/schemas/{name}"},
                                         registry=_REGISTRY) for key, name in SCHEMAS.items()}
BATCH = Draft202012Validator(
    {"$ref": "urn:customerio-track#/paths/~1api~1v2~1batch/post/requestBody/content/application~1json/schema"},
    registry=_REGISTRY)


def allowed(op: dict[str, Any]) -> dict[str, Any]:
    """`op` with the deviations the issue allows undone: Segment's destination sends them to the real API.
    A person named `{anonymous_id}` (the schema lists id, email, phone, cio_id), a device platform in another
    case (`iOS`), device attribute values that are not strings."""
    op = copy.deepcopy(op)
    if op.get("type") == "person" and set(op.get("identifiers") or ()) == {"anonymous_id"}:
        op["identifiers"] = {"id": op["identifiers"]["anonymous_id"]}
    device = op.get("device")
    if op.get("action") == "add_device" and isinstance(device, dict):
        if isinstance(device.get("platform"), str):
            device["platform"] = device["platform"].lower()
        if isinstance(device.get("attributes"), dict):
            device["attributes"] = {k: v if isinstance(v, str) else json.dumps(v) for k, v in device["attributes"].items()}
    return op


def problems(op: dict[str, Any], deviations: bool = True) -> list[str]:
    """Why Customer.io's schema refuses `op` (empty when it takes it): its action's schema, and as a member of a
    `/api/v2/batch` request."""
    checked = allowed(op) if deviations else op
    validator = _VALIDATORS.get((checked.get("type"), checked.get("action")))
    if validator is None:
        return [f"no Track API v2 operation {checked.get('type')!r} {checked.get('action')!r}"]
    found = [f"{'/'.join(map(str, e.absolute_path)) or '(op)'}: {e.message}" for e in validator.iter_errors(checked)]
    found += [f"batch: {e.message}" for e in BATCH.iter_errors({"batch": [checked]})][:1] if not found else []
    return found
