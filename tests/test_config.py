"""The TOML config: loading, `${VAR}` expansion, per-source merging, and errors that name file, key and
expectation (never a traceback)."""

from __future__ import annotations

import re

import pytest
from core_support import config
from groupspec.middleware.config import ConfigError, load_config, parse_config
from groupspec.middleware.violations import ALLOWED_ACTIONS, DEFAULT_ACTIONS
from groupspec.plugin.cli import main

FULL = """
[contract]
version = "2026-11"
group_key = "household"
group_id_pattern = "^(hh|acct)_[A-Za-z0-9]+$"
require_group = ["Order Placed", "Checkout Started"]
default_object_type_id = 2
attach_group_traits = ["subscription_status"]

[contract.group_traits]
subscription_status = { type = "string", enum = ["active", "paused", "cancelled"] }
store_credit_balance = { type = "number", owner = "billing" }
vip_tier = {}

[contract.actions]
missing_group_id = "drop"
invalid_group_id = "flag"

[sources.web]
write_key = "wk_web"
[sources.web.contract]
require_group = ["*"]
[sources.web.contract.actions]
group_trait_on_person = "drop"
[sources.web.contract.group_traits]
plan_type = { type = "string" }

[sources.billing]
write_key = "wk_billing"

[customerio]
site_id = "${GS_TEST_SITE}"
api_key = "${GS_TEST_KEY}"
region = "eu"

[store]
url = "sqlite:///groupspec.db"
"""

#: docs/contract.md's violation table, "may be" column: the actions a config may choose per code
MAY_BE = {
    "malformed": {"drop"},
    "missing_group_id": {"flag", "drop"},
    "invalid_group_id": {"flag", "strip", "drop"},
    "group_id_conflict": {"flag", "strip", "drop"},
    "group_trait_on_person": {"flag", "strip", "drop"},
    "invalid_group_trait": {"flag", "strip", "drop"},
    "stale_group_update": {"flag", "strip", "drop"},
    "invalid_object_type": {"flag", "drop"},
    "not_attribute_owner": {"flag", "strip", "drop"},
    "customerio_limit": {"drop"},
    "future_timestamp": {"flag", "drop"},
    "anonymous_relationship_delete": {"drop"},
    "not_mapped": {"flag", "drop"},
    "group_id_migrated": {"flag", "drop"},
    "store_unavailable": {"drop"},
    "internal_error": {"drop"},
}
#: the "default" column: SPEC's, with issue 18's defaults that protect (a bad group value is kept out of
#: Customer.io): `group_id_conflict` and `invalid_group_trait` strip
DEFAULTS = {
    "malformed": "drop", "missing_group_id": "flag", "invalid_group_id": "drop", "group_id_conflict": "strip",
    "group_trait_on_person": "strip", "invalid_group_trait": "strip", "stale_group_update": "strip",
    "invalid_object_type": "drop", "not_attribute_owner": "strip", "customerio_limit": "drop", "future_timestamp": "drop",
    "anonymous_relationship_delete": "drop", "not_mapped": "flag", "group_id_migrated": "flag", "store_unavailable": "drop",
    "internal_error": "drop",
}


def write(tmp_path, text: str | bytes, name: str = "groupspec.toml"):
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def error_of(tmp_path, text: str | bytes) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(str(path) + ":"), message
    return message


# --- loading -------------------------------------------------------------------------------------------------

def test_a_full_file_loads_with_every_key(tmp_path, monkeypatch):
    monkeypatch.setenv("GS_TEST_SITE", "site-1")
    monkeypatch.setenv("GS_TEST_KEY", "key-1")
    cfg = load_config(write(tmp_path, FULL))
    c = cfg.contract
    assert c.version == "2026-11"
    assert c.group_key == "household"
    assert c.group_id_regex.fullmatch("hh_abc") and not c.group_id_regex.fullmatch("xx_abc")
    assert c.require_group == ["Order Placed", "Checkout Started"]
    assert c.default_object_type_id == "2"  # a number in TOML, a string in the model
    assert c.attach_group_traits == ["subscription_status"]
    assert c.group_traits["subscription_status"].enum == ["active", "paused", "cancelled"]
    assert c.group_traits["store_credit_balance"].owner == "billing"
    assert c.group_traits["vip_tier"].type is None
    assert c.action("missing_group_id") == "drop"
    assert c.action("invalid_group_id") == "flag"
    assert cfg.customerio.region == "eu"
    assert cfg.customerio.base_url == "https://track-eu.customer.io"
    assert cfg.store_url("live") == "sqlite:///groupspec.db"  # [store] url: the commands that change the store
    assert cfg.store_url("offline") == "memory://"  # a replay: whatever [store] says (issue 18)
    assert cfg.require("customerio.site_id", cfg.customerio.site_id) == "site-1"
    assert cfg.require("customerio.api_key", cfg.customerio.api_key) == "key-1"


def test_an_empty_file_gives_the_documented_defaults(tmp_path):
    cfg = load_config(write(tmp_path, ""))
    c = cfg.contract
    assert (c.version, c.group_key, c.group_id_pattern, c.require_group, c.default_object_type_id) == (
        "unversioned", "group_id", None, [], "1")
    assert cfg.store is None and (cfg.store_url("offline"), cfg.store_url("live")) == ("memory://", "sqlite:///groupspec.db")
    assert cfg.customerio.base_url == "https://track.customer.io"
    assert {code: c.action(code) for code in DEFAULTS} == DEFAULTS


def test_the_violation_table_matches_the_readme():
    assert {code: set(actions) for code, actions in ALLOWED_ACTIONS.items()} == MAY_BE
    assert DEFAULT_ACTIONS == DEFAULTS


def test_require_group_star_requires_every_event():
    c = config('[contract]\nrequire_group = ["*"]').contract
    assert c.requires_group("Anything") and c.requires_group("Order Placed")
    c = config('[contract]\nrequire_group = ["Order Placed"]').contract
    assert c.requires_group("Order Placed") and not c.requires_group("Page Viewed")


# --- ${VAR} --------------------------------------------------------------------------------------------------

def test_env_vars_expand_inside_strings(monkeypatch):
    monkeypatch.setenv("GS_TEST_SITE", "abc")
    cfg = config('[customerio]\nsite_id = "pre-${GS_TEST_SITE}-post"\n[sources.web]\nwrite_key = "${GS_TEST_SITE}"')
    assert cfg.customerio.site_id.get_secret_value() == "pre-abc-post"
    assert cfg.source_for_key("abc") == "web"


def test_an_unset_var_is_reported_only_when_its_secret_is_needed(monkeypatch):
    monkeypatch.delenv("GS_TEST_KEY", raising=False)
    monkeypatch.setenv("GS_TEST_SITE", "abc")
    cfg = config('[customerio]\nsite_id = "${GS_TEST_SITE}"\napi_key = "${GS_TEST_KEY}"')  # loads fine
    assert cfg.require("customerio.site_id", cfg.customerio.site_id) == "abc"
    with pytest.raises(ConfigError) as caught:
        cfg.require("customerio.api_key", cfg.customerio.api_key)
    assert str(caught.value) == "test.toml: customerio.api_key: environment variable GS_TEST_KEY is not set"


def test_a_secret_that_is_not_configured_at_all_says_so():
    cfg = config("")
    with pytest.raises(ConfigError, match=r"test.toml: customerio.api_key: expected a value"):
        cfg.require("customerio.api_key", cfg.customerio.api_key)


def test_secrets_do_not_appear_in_the_models_text(monkeypatch):
    monkeypatch.setenv("GS_TEST_KEY", "very-secret-key")
    cfg = config('[customerio]\napi_key = "${GS_TEST_KEY}"\n[sources.web]\nwrite_key = "wk_secret_web"')
    for text in (repr(cfg), str(cfg), str(cfg.model_dump())):
        assert "very-secret-key" not in text and "wk_secret_web" not in text


# --- per-source merge ----------------------------------------------------------------------------------------

def test_a_source_contract_merges_over_the_base(monkeypatch):
    cfg = config(FULL)
    base, web, billing = cfg.contract, cfg.contract_for("web"), cfg.contract_for("billing")
    assert web.require_group == ["*"] and base.require_group == ["Order Placed", "Checkout Started"]
    # tables merge per key: the source adds to the base's actions and group traits
    assert web.action("group_trait_on_person") == "drop"
    assert web.action("missing_group_id") == "drop" and web.action("invalid_group_id") == "flag"
    assert set(web.group_traits) == {"subscription_status", "store_credit_balance", "vip_tier", "plan_type"}
    assert web.version == "2026-11" and web.group_key == "household"
    assert base.action("group_trait_on_person") == "strip" and "plan_type" not in base.group_traits
    assert billing is base  # no overrides: the base contract itself
    assert cfg.contract_for(None) is base and cfg.contract_for("unknown") is base


def test_a_write_key_selects_its_source():
    cfg = config(FULL)
    assert cfg.source_for_key("wk_web") == "web"
    assert cfg.source_for_key("wk_billing") == "billing"
    assert cfg.source_for_key("wk_other") is None


# --- errors name file, key and expectation -------------------------------------------------------------------

@pytest.mark.parametrize(("code", "action"), [
    (code, action) for code in sorted(MAY_BE) for action in ("flag", "strip", "drop") if action not in MAY_BE[code]
])
def test_an_action_a_code_does_not_allow_is_refused(tmp_path, code, action):
    message = error_of(tmp_path, f'[contract.actions]\n{code} = "{action}"')
    assert f"actions.{code}" in message
    for allowed in MAY_BE[code]:
        assert allowed in message
    assert repr(action) in message


@pytest.mark.parametrize(("code", "action"), [(c, a) for c in sorted(MAY_BE) for a in sorted(MAY_BE[c])])
def test_every_allowed_action_loads(code, action):
    assert config(f'[contract.actions]\n{code} = "{action}"').contract.action(code) == action


def test_a_disallowed_action_in_a_source_names_the_source(tmp_path):
    message = error_of(tmp_path, '[sources.web.contract.actions]\nmalformed = "flag"')
    assert "sources.web.contract" in message and "malformed" in message and "drop" in message


def test_the_readme_example_error_is_what_a_user_sees(tmp_path):
    path = write(tmp_path, '[contract.actions]\ninvalid_group_id = "ignore"')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: contract.actions.invalid_group_id: expected flag | strip | drop, got 'ignore'"


@pytest.mark.parametrize(("text", "key", "expectation"), [
    ('[contract.actions]\ninvalid_group_id = "ignore"', "contract.actions.invalid_group_id", "flag"),
    ('[contract.actions]\nno_such_code = "flag"', "contract.actions.no_such_code", "missing_group_id"),
    ('[contract]\ngroup_id_pattern = "(hh_"', "contract.group_id_pattern", "regular expression"),
    ('[contract]\ngroup_id_pattern = "[a-"', "contract.group_id_pattern", "regular expression"),
    ('[contract]\ndefault_object_type_id = "households"', "contract.default_object_type_id", "positive integer"),
    ('[contract]\ndefault_object_type_id = 0', "contract.default_object_type_id", "positive integer"),
    ('[contract]\ndefault_object_type_id = -3', "contract.default_object_type_id", "positive integer"),
    ('[contract]\ndefault_object_type_id = "01"', "contract.default_object_type_id", "positive integer"),
    ('[contract]\ndefault_object_type_id = true', "contract.default_object_type_id", "positive integer"),
    ('[contract]\ndefault_object_type_id = 1.5', "contract.default_object_type_id", "positive integer"),
    ('[contract]\nrequire_group = "Order Placed"', "contract.require_group",
     "expected a list of strings, got 'Order Placed'"),
    ('[contract]\nversionn = "x"', "contract.versionn", "unknown key"),
    ('[contract]\nattach_group_traits = ["plan"]', "attach_group_traits", "group_traits"),
    ('[contract.group_traits]\nplan = { type = "text" }', "contract.group_traits.plan.type", "string"),
    ('[contract.group_traits]\nplan = { typ = "string" }', "contract.group_traits.plan.typ", "unknown key"),
    ('[contract.group_traits]\nplan = "string"', "contract.group_traits.plan", "expected a table, got 'string'"),
    ('contract = 5', "contract", "expected a table, got 5"),
    ('[sources]\nweb = "wk"', "sources.web", "expected a table, got 'wk'"),
    ('[sources.web.contract]\ngroup_key = 5', "sources.web.contract.group_key", "string"),
    ('[sources.web.contract]\ndefault_object_type_id = "x"', "sources.web.contract.default_object_type_id",
     "positive integer"),
    ('[customerio]\nregion = "ap"', "customerio.region", "us"),
    ('[store]\nurl = "postgres://db"', "store.url", "sqlite:///"),
])
def test_every_error_names_the_file_the_key_and_the_expectation(tmp_path, text, key, expectation):
    message = error_of(tmp_path, text)
    assert key in message and expectation in message


def test_a_toml_syntax_error_names_the_file(tmp_path):
    assert "not valid TOML" in error_of(tmp_path, "[contract\nversion = 1")


def test_a_missing_file_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match=re.escape(str(tmp_path / "nope.toml"))):
        load_config(tmp_path / "nope.toml")


# --- check-config ----------------------------------------------------------------------------------------------

def test_check_config_exits_0_on_a_good_file(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GS_TEST_SITE", "site-1")
    monkeypatch.setenv("GS_TEST_KEY", "key-1")
    assert main(["check-config", str(write(tmp_path, FULL))]) == 0
    out = capsys.readouterr().out
    assert "ok" in out and "2026-11" in out and "web" in out and "billing" in out


def test_check_config_reports_unset_variables_unless_allowed(tmp_path, capsys, monkeypatch):
    """Issue 18: an unset `${VAR}` passes CI and fails at `serve`; check-config says so (exit 2) and
    `--allow-unset` accepts it for CI without secrets."""
    monkeypatch.delenv("GS_TEST_SITE", raising=False)
    monkeypatch.setenv("GS_TEST_KEY", "key-1")
    path = write(tmp_path, FULL)
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: customerio.site_id: environment variable GS_TEST_SITE is not set" in err
    assert "GS_TEST_KEY" not in err and "key-1" not in err
    assert main(["check-config", str(path), "--allow-unset"]) == 0
    assert "unset: GS_TEST_SITE" in capsys.readouterr().out
    load_config(path)  # the run-time deferral stays: a replay needs no Customer.io secret


BAD_FILES = {
    "syntax": "[contract\n",
    "action": '[contract.actions]\ninvalid_group_id = "ignore"',
    "regex": '[contract]\ngroup_id_pattern = "(("',
    "object type": '[contract]\ndefault_object_type_id = "abc"',
    "types": "contract = [1, 2]\nsources = 3",
    "nested": "[sources.web.contract.group_traits.plan]\nenum = 5",
    "empty key": '"" = 1',
    "directory": None,
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_check_config_exits_2_without_a_traceback_on_a_bad_file(tmp_path, capsys, name):
    text = BAD_FILES[name]
    if text is None:
        (tmp_path / "groupspec.toml").mkdir()
        path = tmp_path / "groupspec.toml"
    else:
        path = write(tmp_path, text)
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "Traceback" not in err


def test_check_config_exits_2_on_a_file_that_is_not_utf8(tmp_path, capsys):
    path = write(tmp_path, b"\xff\xfe[contract]\x00")
    assert main(["check-config", str(path)]) == 2
    assert str(path) in capsys.readouterr().err


def test_an_unset_variable_outside_the_secrets_fails_at_load(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("GS_TEST_PATTERN", raising=False)
    path = tmp_path / "groupspec.toml"
    path.write_text('[contract]\ngroup_id_pattern = "${GS_TEST_PATTERN}"\n')
    assert main(["check-config", str(path)]) == 2
    assert "contract.group_id_pattern: environment variable GS_TEST_PATTERN is not set" in capsys.readouterr().err


# --- issue 18: configuration mistakes caught, in the config's words ------------------------------------------

def test_an_owner_that_is_no_source_is_refused(tmp_path, capsys):
    """`owner = "biling"` made every write to the trait `not_attribute_owner`-stripped; now exit 2 naming the key."""
    text = ('[contract.group_traits]\ncredit = { type = "number", owner = "biling" }\n'
            '[sources.web]\nwrite_key = "wk_web"\n[sources.billing]\nwrite_key = "wk_billing"\n')
    path = write(tmp_path, text)
    assert main(["check-config", str(path)]) == 2
    assert (f"{path}: contract.group_traits.credit.owner: expected a source of [sources] (web, billing), got 'biling' "
            "(did you mean `billing`?)") in capsys.readouterr().err
    own = text.replace('owner = "biling"', 'owner = "billing"') + '[sources.web.contract.group_traits]\nplan = { owner = "pos" }\n'
    assert "sources.web.contract.group_traits.plan.owner: expected a source of [sources]" in error_of(tmp_path, own)


def test_two_sources_with_one_write_key_are_refused_without_showing_it(tmp_path, capsys):
    path = write(tmp_path, '[sources.web]\nwrite_key = "wk_shared_9x"\n[sources.billing]\nwrite_key = "wk_shared_9x"\n')
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: sources.billing.write_key: the same write key as sources.web.write_key" in err
    assert "wk_shared_9x" not in err


@pytest.mark.parametrize(("text", "message"), [
    ('[contract]\ngroup_kye = "hh"', "contract.group_kye: unknown key (did you mean `group_key`?)"),
    ('[sources.web]\nwritekey = "x"', "sources.web.writekey: unknown key (did you mean `write_key`?)"),
    ('[stroe]\nurl = "memory://"', "stroe: unknown key (did you mean `store`?)"),
    ('[contract.actions]\nmising_group_id = "drop"', "(did you mean `missing_group_id`?)"),
    ('[contract]\nrequire_group = "Order Placed"', "contract.require_group: expected a list of strings, got 'Order Placed'"),
    ('[service]\ncors_origins = "https://shop.example"', "service.cors_origins: expected a list of strings, got"),
    ('[contract.group_traits]\nplan = { enum = "basic" }', "plan.enum: expected a list of strings, whole numbers, "
                                                          "numbers or booleans, got 'basic'"),
    ('[customerio]\nbatch_size = "many"', "customerio.batch_size: expected a whole number, got 'many'"),
    ('[customerio]\nbatch_size = 0', "customerio.batch_size: expected a number at least 1, got 0"),
    ('[store]\nurl = 5', "store.url: expected a string, got 5"),
    ('[customerio]\napi_key = 918273645', "customerio.api_key: expected a string, got a number"),  # never the value
])
def test_config_errors_speak_the_configs_language(tmp_path, text, message):
    error = error_of(tmp_path, text)
    assert message in error and "Input should" not in error and "dictionary" not in error


def test_an_action_error_offers_only_the_actions_the_code_allows(tmp_path):
    """`missing_group_id` may flag or drop; a typo must not be answered with "flag | strip | drop"."""
    error = error_of(tmp_path, '[contract.actions]\nmissing_group_id = "strp"')
    assert "contract.actions.missing_group_id: expected flag | drop, got 'strp'" in error and "strip" not in error


def test_each_source_has_its_upstream_write_key():
    """Issue 18: a source's `upstream_write_key`, else its own write key, else `upstream.write_key` (a webhook-fed
    source without an override, or a message of no source)."""
    cfg = parse_config({"sources": {"web": {"write_key": "wk_web"},
                                    "billing": {"write_key": "wk_billing", "upstream_write_key": "seg_billing"},
                                    "hooks": {"webhook_secret": "s", "upstream_write_key": "seg_hooks"},
                                    "plain_hooks": {"webhook_secret": "s"}},
                        "upstream": {"url": "http://up.test", "write_key": "seg_default"}})
    assert [cfg.upstream_key(name) for name in ("web", "billing", "hooks", "plain_hooks", None)] == \
        ["wk_web", "seg_billing", "seg_hooks", "seg_default", "seg_default"]
    with pytest.raises(ConfigError, match=r"sources\.web\.upstream_write_key: environment variable GS_UNSET_18"):
        parse_config({"sources": {"web": {"write_key": "wk", "upstream_write_key": "${GS_UNSET_18}"}}},
                     "g.toml").upstream_key("web")
