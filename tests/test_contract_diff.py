"""`groupspec contract diff`: each classification rule, the per-source view and the exit codes."""

from __future__ import annotations

import pytest
from groupspec.middleware.config import parse_config
from groupspec.plugin.cli import main
from groupspec.plugin.contract_diff import RULES, diff

BASE = """
[contract]
version = "2026-10"
group_id_pattern = "^hh_[a-z0-9]+$"
require_group = ["Order Placed"]
attach_group_traits = ["plan"]
[contract.group_traits]
plan = { type = "string", enum = ["basic", "family"] }
credit = { type = "number", owner = "billing" }
[contract.actions]
invalid_group_trait = "strip"
[sources.web]
write_key = "wk_web"
[sources.billing]
write_key = "wk_billing"
"""


def changes(old: str, new: str) -> list[tuple[str, str, bool]]:
    """(where, description, breaking) of every change from `old` to `new` (TOML texts)."""
    import tomllib
    found = diff(parse_config(tomllib.loads(old)), parse_config(tomllib.loads(new)))
    return [(c.where, c.description, c.breaking) for c in found]


def edited(*replacements: tuple[str, str]) -> str:
    text = BASE
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    return text


def only(old: str, new: str) -> tuple[str, bool]:
    found = changes(old, new)
    assert len(found) == 1, found
    return found[0][1], found[0][2]


CASES = [
    (edited(('"basic", "family"]', '"basic"]')), True, "enum value family removed"),
    (edited(('"basic", "family"]', '"basic", "family", "pro"]')), False, "enum value pro added"),
    (edited(('credit = { type = "number"', 'credit = { type = "integer"')), True, "type narrowed number -> integer"),
    (edited(('plan = { type = "string", enum = ["basic", "family"] }', 'plan = { enum = ["basic", "family"] }')),
     False, "type widened string -> none"),
    (edited(('plan = { type = "string"', 'plan = { type = "timestamp"')), True, "type changed string -> timestamp"),
    (edited(('require_group = ["Order Placed"]', 'require_group = ["Order Placed", "Cart Updated"]')),
     True, "Cart Updated newly requires a group"),
    (edited(('require_group = ["Order Placed"]', 'require_group = []')), False, "Order Placed no longer requires"),
    (edited(('group_id_pattern = "^hh_[a-z0-9]+$"', 'group_id_pattern = "^hh_[a-z]+$"')), True, "group id pattern"),
    (edited(('group_id_pattern = "^hh_[a-z0-9]+$"\n', '')), False, "no longer need to match"),
    (edited(('version = "2026-10"', 'version = "2026-10"\ndefault_object_type_id = "2"')), True, "default object type 1 -> 2"),
    (edited(('invalid_group_trait = "strip"', 'invalid_group_trait = "drop"')), True, "stricter: strip -> drop"),
    (edited(('invalid_group_trait = "strip"', 'invalid_group_trait = "flag"')), False, "relaxed: strip -> flag"),
    (edited(('version = "2026-10"', 'version = "2026-11"')), False, "version 2026-10 -> 2026-11"),
    (edited(('credit = {', 'vip = {}\ncredit = {')), False, "group trait vip added"),
    (edited(('attach_group_traits = ["plan"]', 'attach_group_traits = []')), True, "plan no longer attached"),
    (edited(('credit = { type = "number", owner = "billing" }', 'credit = { type = "number" }')), False,
     "no longer owned by source billing"),
    (edited(('plan = { type = "string",', 'plan = { type = "string", owner = "web",')), True, "plan now owned by source web"),
    (edited(('owner = "billing" }', 'owner = "billing", enum = [0, 5] }')), True, "credit now limited to [0, 5]"),
    (edited(('version = "2026-10"', 'version = "2026-10"\ngroup_key = "household_id"')), True, "group id key"),
    (edited(('version = "2026-10"', 'version = "2026-10"\nfreshness = "6h"')), False, "freshness window none -> 6h"),
    (edited(('[contract.actions]', '[contract.rollups]\nlast = { event = "Order Placed", value = "timestamp" }\n'
                                   '[contract.actions]')), False, "rollup last added"),
]


@pytest.mark.parametrize("new, breaking, words", CASES, ids=[case[2] for case in CASES])
def test_each_rule_classifies_its_change(new, breaking, words):
    description, is_breaking = only(BASE, new)
    assert words in description
    assert is_breaking is breaking


def test_an_action_set_to_its_default_is_no_change():
    assert changes(BASE, edited(('invalid_group_trait = "strip"', 'invalid_group_trait = "strip"\nmalformed = "drop"'))) == []


def test_removed_trait_is_breaking_and_a_same_spec_addition_reads_as_a_rename():
    removed = changes(BASE, edited(('credit = { type = "number", owner = "billing" }\n', '')))
    assert removed == [("contract", "group trait credit removed", True)]
    renamed = changes(BASE, edited(('credit = {', 'balance = {')))
    assert renamed == [("contract", "group trait credit removed and balance added with the same spec: renamed?", True)]


def test_star_newly_required_is_breaking_but_naming_an_event_under_star_is_not():
    star = edited(('require_group = ["Order Placed"]', 'require_group = ["*"]'))
    assert only(BASE, star) == ("every event (*) newly requires a group", True)
    assert changes(star, edited(('require_group = ["Order Placed"]', 'require_group = ["*", "Cart Updated"]'))) == []


def test_integer_to_number_widens():
    old = edited(('credit = { type = "number"', 'credit = { type = "integer"'))
    assert only(old, BASE) == ("credit type widened integer -> number", False)


def test_sources_removed_added_and_overridden():
    no_billing = BASE.replace('[sources.billing]\nwrite_key = "wk_billing"\n', "")
    assert only(BASE, no_billing) == ("source billing removed", True)
    assert only(no_billing, BASE) == ("source billing added", False)
    override = BASE + '[sources.web.contract]\nrequire_group = ["*"]\n'
    assert changes(BASE, override) == [("sources.web", "every event (*) newly requires a group", True)]


def test_a_contract_change_is_listed_once_not_again_per_source():
    found = changes(BASE, edited(('"basic", "family"]', '"basic"]')))
    assert [where for where, _, _ in found] == ["contract"]


def test_a_changed_write_key_is_breaking_and_never_shown():
    found = changes(BASE, BASE.replace("wk_web", "wk_web_2"))
    assert found == [("sources.web", "write key of web changed: senders with the old key lose the source", True)]


def test_every_rule_has_a_description_and_a_classification():
    assert all(isinstance(breaking, bool) and text for breaking, text in RULES.values())


def write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_exit_codes(tmp_path, capsys):
    old = write(tmp_path, "old.toml", BASE)
    assert main(["contract", "diff", old, old]) == 0
    assert "no changes" in capsys.readouterr().out
    compatible = write(tmp_path, "compatible.toml", edited(('version = "2026-10"', 'version = "2026-11"')))
    assert main(["contract", "diff", old, compatible]) == 0
    breaking = write(tmp_path, "breaking.toml", edited(('"basic", "family"]', '"basic"]')))
    assert main(["contract", "diff", old, breaking]) == 1
    out = capsys.readouterr().out
    assert "BREAKING    contract  plan enum value family removed" in out
    assert "1 change(s): 1 breaking, 0 compatible" in out


def test_a_bad_config_exits_2_with_the_config_error(tmp_path, capsys):
    old = write(tmp_path, "old.toml", BASE)
    bad = write(tmp_path, "bad.toml", edited(('invalid_group_trait = "strip"', 'invalid_group_trait = "ignore"')))
    assert main(["contract", "diff", old, bad]) == 2
    assert "bad.toml: contract.actions" in capsys.readouterr().err


def test_the_terminal_table_shows_every_change(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdout.isatty", lambda: True, raising=False)
    old = write(tmp_path, "old.toml", BASE)
    new = write(tmp_path, "new.toml", edited(('"basic", "family"]', '"basic", "pro"]'), ('credit = {', '"[/x]" = {}\ncredit = {')))
    assert main(["contract", "diff", old, new]) == 1
    out = capsys.readouterr().out
    assert "breaking" in out and "compatible" in out and "family removed" in out
    assert "group trait [/x] added" in out  # names are shown as they are, never read as rich markup


def test_rollups_removed_or_redefined_are_breaking():
    latest = edited(('[contract.actions]', '[contract.rollups]\nlast = { event = "Order Placed", value = "timestamp" }\n'
                                          '[contract.actions]'))
    counted = latest.replace('value = "timestamp"', 'count_window = "30d"')
    assert only(latest, BASE) == ("rollup last removed", True)
    description, breaking = only(latest, counted)
    assert breaking and description.startswith("rollup last redefined") and "count_window" in description
