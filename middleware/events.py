"""Track events that change groups rather than record a person's activity: the one table every layer reads
(resolution, contract, learning, counting); what each becomes in Customer.io is the destination's mapping table."""

from __future__ import annotations

#: event name -> its effect on the store: "leave" ends the person's membership, "delete_object" ends the group
STORE_EVENTS: dict[str, str] = {
    "Relationship Deleted": "leave",
    "Object Deleted": "delete_object",
}
