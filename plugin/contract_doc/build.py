"""What the contract doc says, built from a validated `Config`: the facts a retention marketer needs to build
segments on the contract (groups and object types, group ids, group and person attributes, required events,
rollups, what each violation does), per source where a source's merged contract differs. No secret is read:
sources appear by name only."""

from __future__ import annotations

from pathlib import Path

import orjson
from groupspec.middleware.config import Config, Contract, Rollup
from groupspec.middleware.contract import MAX_ID_BYTES
from groupspec.middleware.events import OBJECT_TYPE_KEYS
from groupspec.middleware.violations import DEFAULT_ACTIONS

from . import group_ids
from .page import Block, Bullets, Code, Inline, Page, Para, Section, Table, line, listing

#: violation code -> when it happens, in the words of someone who builds segments
WHEN: dict[str, str] = {
    "malformed": "the message is not a valid Segment/RudderStack message (bad JSON, no person id, wrong types, "
                 "too large or too deep)",
    "missing_group_id": "an event that must carry a group resolved none",
    "invalid_group_id": "a group id breaks the group id rule",
    "group_id_conflict": "an event names a group the person is not a member of at that time",
    "group_trait_on_person": "a person's traits carry a group attribute",
    "invalid_group_trait": "a group attribute has the wrong type or a value outside its allowed values",
    "stale_group_update": "a group update is older than the value already applied for an attribute (newest wins)",
    "invalid_object_type": "an object type id is not a positive whole number",
    "not_attribute_owner": "a source writes a group attribute another source owns",
    "future_timestamp": "the message is dated in the future (a wrong device clock)",
    "customerio_limit": "the Customer.io call would break a Track API limit (id or value size, attribute count)",
    "anonymous_relationship_delete": "an anonymous visitor leaves a group and is linked to no single user id",
    "not_mapped": "Customer.io would get nothing for the message from the reference destination (e.g. a device "
                  "event without a token, a screen without a name), so it gets no Customer.io call",
    "group_id_migrated": "a message names a group id that was renamed or merged; it is sent on with the new id",
    "store_unavailable": "the membership store could not answer",
    "internal_error": "groupspec failed on the message (a bug)",
}
#: action -> what it does to the message
EFFECT: dict[str, Inline] = {
    "flag": line("sent on, the violation recorded in ", Code("context.groupspec.violations")),
    "strip": line("the offending field is removed, the rest is sent on"),
    "drop": line("quarantined: nothing reaches Customer.io"),
}
#: a contract's keys each section is made of: a source whose merged contract differs in them gets its own view
SECTION_KEYS = {
    "Groups": ("default_object_type_id", "object_types", "group_key"),
    "Group ids": ("group_id_pattern", "actions"),
    "Group attributes": ("group_traits", "attach_group_traits", "actions"),
    "What stays on the person": ("group_traits", "actions"),
    "Events that must carry a group": ("require_group", "actions"),
    "Rollups": ("rollups", "rollup_interval"),
}


def build(config: Config) -> Page:
    """The contract doc of `config`."""
    contract = config.contract
    lead = [line("Version ", Code(contract.version), ", read from ", Code(Path(config.path).name),
                 ". Every message groupspec forwards carries the version in ", Code("context.groupspec.contract"), "."),
            line("Customer.io mapping: the ", Code(contract.compat), " profile. This page is written by ",
                 Code("groupspec contract doc"), ": change the config, not the page.")]
    sections = [Section(title, _with_sources(config, title)) for title in SECTION_KEYS]
    sections.append(Section("What each violation does", _violations(config)))
    sections.append(Section("Sources", _sources(config)))
    return Page(f"Data contract {contract.version}", tuple(lead), tuple(sections))


def _with_sources(config: Config, title: str) -> tuple[Block, ...]:
    """A section for `[contract]`, then for each source whose contract differs in the section's keys."""
    render = _RENDER[title]
    blocks = list(render(config.contract))
    keys = SECTION_KEYS[title]
    for name in config.sources:
        own = config.contract_for(name)
        if own is not config.contract and any(getattr(own, key) != getattr(config.contract, key) for key in keys):
            mine = render(own)
            if mine != render(config.contract):
                blocks.append(Para(line("For messages from source ", Code(name), ":")))
                blocks.extend(mine)
    return tuple(blocks)


def _action(contract: Contract, code: str) -> Inline:
    action = contract.action(code)
    return line(Code(code), ": ", Code(action), " (", *EFFECT[action], ")")


def _value(value: object) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _groups(contract: Contract) -> tuple[Block, ...]:
    default = contract.default_object_type_id
    types = dict(sorted({default: contract.object_types.get(default, ""), **contract.object_types}.items(),
                        key=lambda item: int(item[0])))
    rows = tuple((line(Code(type_id)), line(Code(name)) if name else line("not named (", Code("object_types"), ")"),
                  ("yes" if type_id == default else "",)) for type_id, name in types.items())
    named: list[str | Code] = []
    for i, key in enumerate(OBJECT_TYPE_KEYS[contract.conventions, "group"]):
        named.extend((" else ", Code(f"traits.{key}")) if i else (Code(f"traits.{key}"),))
    key = contract.group_key
    return (
        Para(line("A group is a Customer.io object; its members are the people related to it. Each group has an "
                  "object type (what kind of group it is) and an id.")),
        Table(("object type id", "concept", "default"), rows),
        Para(line("A group call names its object type in ", *named, "; without one the group is of "
                  "type ", Code(default), ".")),
        Para(line("A message finds its group from ", Code("context.groupId"), ", else ", Code(f"properties.{key}"),
                  " (events) or ", Code(f"traits.{key}"), " (identify), else the groups the person belonged to at "
                  "the message's time. Events reach Customer.io with the group's id as the event attribute ",
                  Code("group_id"), ".")),
    )


def _group_ids(contract: Contract) -> tuple[Block, ...]:
    pattern = contract.group_id_pattern
    rule = (line("matches the pattern ", Code(pattern), " in full") if pattern
            else line("any text: this contract sets no ", Code("group_id_pattern")))
    good = group_ids.passing(pattern)
    bad = group_ids.failing(pattern, good)
    blocks: list[Block] = [
        Para(line("A group id must be stable: it never changes while the group exists.")),
        Bullets((rule, line(f"at most {MAX_ID_BYTES} bytes"),
                 line("no email address, no URL, no whitespace (they change, so they are not ids)"))),
    ]
    if good:
        blocks.append(Para(line("Ids that pass: ", *listing(good))))
    else:
        blocks.append(Para(line("No example could be generated from this pattern.")))
    blocks.append(Bullets(tuple(line("fails: ", Code(value), f" ({why})") for value, why in bad)))
    blocks.append(Para(line("When an id fails, ", *_action(contract, "invalid_group_id"), ".")))
    return tuple(blocks)


def _group_attributes(contract: Contract) -> tuple[Block, ...]:
    traits = contract.group_traits
    if not traits:
        return (Para(line("This contract declares no group attributes.")),)
    rows = []
    for name, trait in traits.items():
        allowed = listing([_value(v) for v in trait.enum], "") if trait.enum is not None else ("any value",)
        owner = line("source ", Code(trait.owner)) if trait.owner else ("any source",)
        snapshot = (line("yes, as ", Code(f"group_traits.{name}")) if name in contract.attach_group_traits
                    else ("no",))
        rows.append((line(Code(name)), line(trait.type or "any type"), allowed, owner, snapshot))
    return (
        Para(line("Attributes of the group, set by ", Code("group"), " calls and kept on the Customer.io object. "
                  "The newest update of each attribute wins.")),
        Table(("attribute", "type", "allowed values", "written by", "on events"), tuple(rows)),
        Para(line("\"On events\": a snapshot of the attribute as it was at the event's time is attached to every "
                  "event of a member, as the event attribute ", Code("group_traits"), ".")),
        Bullets((line("a wrong type or value: ", *_action(contract, "invalid_group_trait")),
                 line("written by a source that is not the owner: ", *_action(contract, "not_attribute_owner")),
                 line("an update older than the value applied: ", *_action(contract, "stale_group_update")))),
    )


def _person(contract: Contract) -> tuple[Block, ...]:
    names = list(contract.group_traits)
    if not names:
        return (Para(line("Every trait stays on the person: this contract declares no group attributes.")),)
    return (
        Para(line("Everything that is not a group attribute stays on the person: identify traits become person "
                  "attributes in Customer.io.")),
        Para(line("The group attributes ", *listing(names), " never become person attributes. A person's traits "
                  "carrying one: ", *_action(contract, "group_trait_on_person"), ".")),
    )


def _required(contract: Contract) -> tuple[Block, ...]:
    events = contract.require_group
    if not events:
        items: tuple[Inline, ...] = (line("none: no event must carry a group"),)
    elif "*" in events:
        items = (line("every event (", Code("*"), ")"),)
    else:
        items = tuple(line(Code(event)) for event in events)
    return (Bullets(items), Para(line("Such an event without a group: ", *_action(contract, "missing_group_id"), ".")))


def _computed(rollup: Rollup) -> Inline:
    if rollup.count_window is not None:
        return line("how many in the last ", Code(rollup.count_window), " (up to the group's latest such event)")
    if rollup.value == "timestamp":
        return line("the time of the latest one (unix seconds)")
    return line("the latest one's ", Code(rollup.value))


def _rollups(contract: Contract) -> tuple[Block, ...]:
    if not contract.rollups:
        return (Para(line("This contract has no rollups.")),)
    rows = tuple((line(Code(name)), line(Code(rollup.event)), _computed(rollup))
                 for name, rollup in contract.rollups.items())
    return (
        Para(line("Group attributes computed from the members' events and kept on the Customer.io object:")),
        Table(("attribute", "from the event", "computed as"), rows),
        Para(line("Updated at most once per ", Code(contract.rollup_interval), " of event time per group; a late "
                  "event counts without rolling an attribute back.")),
    )


_RENDER = {"Groups": _groups, "Group ids": _group_ids, "Group attributes": _group_attributes,
           "What stays on the person": _person, "Events that must carry a group": _required, "Rollups": _rollups}


def _violations(config: Config) -> tuple[Block, ...]:
    rows = []
    for code in DEFAULT_ACTIONS:
        action = config.contract.action(code)
        cell: list[str | Code] = [Code(action), " (default)" if code not in config.contract.actions else ""]
        for name in config.sources:
            own = config.contract_for(name).action(code)
            if own != action:
                cell.extend(("; source ", Code(name), ": ", Code(own)))
        rows.append((line(Code(code)), line(WHEN[code]), line(*cell)))
    return (
        Table(("violation", "when", "action"), tuple(rows)),
        Bullets(tuple(line(Code(action), ": ", *effect) for action, effect in EFFECT.items())),
    )


def _sources(config: Config) -> tuple[Block, ...]:
    if not config.sources:
        return (Para(line("No sources are declared: every message is held to this contract.")),)
    items = []
    for name in config.sources:
        own = config.contract_for(name)
        keys = [key for key in Contract.model_fields if getattr(own, key) != getattr(config.contract, key)]
        own_keys = line(", with its own ", *listing(keys), " (shown above)") if keys else ()
        items.append(line(Code(name), ": the contract above", *own_keys))
    return (Para(line("Sources are told apart by their write key. A message from no known source is held to the "
                      "contract above.")), Bullets(tuple(items)))
