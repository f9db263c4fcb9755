"""`groupspec contract doc` and `groupspec contract log`: what the page says for every bundled fixture (all it
declares, nothing it does not), the group id examples, secrets and bad input, the page on a phone-sized headless
Chromium, the committed `fixtures/*/CONTRACT.md`, and the change log from files and from git history."""

from __future__ import annotations

import html as html_lib
import json
import os
import re
import shutil
import subprocess
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from groupspec.middleware.config import Config, load_config, parse_config
from groupspec.middleware.contract import id_problem
from groupspec.middleware.errors import ConfigError
from groupspec.middleware.violations import DEFAULT_ACTIONS
from groupspec.plugin.cli import main
from groupspec.plugin.contract_diff import diff
from groupspec.plugin.contract_doc import group_ids, html, markdown
from groupspec.plugin.contract_doc.build import WHEN, build
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = sorted(p.parent for p in (ROOT / "fixtures").glob("*/groupspec.toml"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REGENERATE = ("for d in fixtures/*/; do groupspec contract doc --config \"${d}groupspec.toml\" "
              "--md \"${d}CONTRACT.md\"; done")


def _value(value: object) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def declared(config: Config) -> dict[str, set[str]]:
    """What a config declares, by kind, over `[contract]` and every source's merged contract."""
    contracts = [config.contract, *(config.contract_for(name) for name in config.sources)]
    traits = [trait for c in contracts for trait in c.group_traits.values()]
    return {
        "trait": {name for c in contracts for name in c.group_traits},
        "enum value": {_value(v) for trait in traits for v in trait.enum or []},
        "owner": {trait.owner for trait in traits if trait.owner},
        "event": {e for c in contracts for e in c.require_group if e != "*"}
                 | {r.event for c in contracts for r in c.rollups.values()},
        "source": set(config.sources),
        "rollup": {name for c in contracts for name in c.rollups},
    }


def stream_events(folder: Path) -> set[str]:
    names = set()
    for path in [*folder.glob("*.jsonl")]:
        for text in path.read_text().splitlines():
            try:
                message = json.loads(text)
            except ValueError:
                continue
            for member in message.get("batch", [message]) if isinstance(message, dict) else []:
                if isinstance(member, dict) and isinstance(member.get("event"), str):
                    names.add(member["event"])
    return names


#: every name any bundled fixture uses: its config's declarations and the events of its stream
UNIVERSE: set[str] = set()
for _folder in FIXTURES:
    UNIVERSE |= set().union(*declared(load_config(_folder / "groupspec.toml")).values()) | stream_events(_folder)


def md_code(text: str) -> set[str]:
    """The code spans of the Markdown page (table pipes unescaped)."""
    return {m.group(2).strip().replace("\\|", "|") for m in re.finditer(r"(`+)(.+?)\1", text)}


def html_code(text: str) -> set[str]:
    return {html_lib.unescape(m) for m in re.findall(r"<code>(.*?)</code>", text)}


def pages(config: Config) -> tuple[str, str]:
    page = build(config)
    return markdown.render(page), html.render(page)


@pytest.mark.parametrize("folder", FIXTURES, ids=[p.name for p in FIXTURES])
def test_every_fixture_doc_shows_what_its_contract_declares_and_nothing_else(folder, monkeypatch):
    for var in ("CIO_SITE_ID", "CIO_API_KEY", "CIO_APP_API_KEY"):  # verify-drift's ${VAR}s, unset
        monkeypatch.delenv(var, raising=False)
    config = load_config(folder / "groupspec.toml")
    md, page = pages(config)
    names = declared(config)
    for code_spans in (md_code(md), html_code(page)):
        for kind, values in names.items():
            for value in values:
                assert value in code_spans, f"{kind} {value!r} is missing"
        mine = set().union(*names.values())
        foreign = sorted(name for name in UNIVERSE - mine if name in code_spans)
        assert not foreign, f"names this contract does not declare: {foreign}"
    for name in UNIVERSE - set().union(*names.values()):
        if re.search(r"[_ A-Z]", name):  # distinctive names never appear, code or prose
            assert name not in md and html_lib.escape(name) not in page, name
    for code in DEFAULT_ACTIONS:  # every violation with its action, defaults included
        row = next(text for text in md.splitlines() if text.startswith(f"| `{code}` |"))
        assert f"`{config.contract.action(code)}`" in row
        assert ("(default)" in row) == (code not in config.contract.actions)
    assert f"Data contract {config.contract.version}" in md


SOURCES = """
[contract]
version = "2027-01"
group_id_pattern = "^hh_[a-z0-9]+$"
require_group = ["Order Placed"]
attach_group_traits = ["tier"]
[contract.object_types]
1 = "household"
[contract.group_traits]
tier = { type = "string", enum = ["gold", "silver"] }
balance = { type = "number", owner = "billing" }
[contract.rollups]
orders_7d = { event = "Order Placed", count_window = "7d" }
last_total = { event = "Order Placed", value = "properties.total" }
[contract.actions]
missing_group_id = "drop"
[sources.app]
write_key = "wk_app_SECRET_ab12"
webhook_secret = "whsec_SECRET_cd34"
[sources.app.contract]
require_group = ["*"]
[sources.app.contract.actions]
invalid_group_trait = "drop"
[sources.billing]
write_key = "wk_billing_SECRET_ef56"
[customerio]
site_id = "site_SECRET_7788"
api_key = "key_SECRET_9900"
app_api_key = "${UNSET_APP_KEY_FOR_TEST}"
[service]
operator_token = "op_SECRET_1122"
[upstream]
url = "https://upstream.example.com"
write_key = "up_SECRET_3344"
"""


def test_sources_that_override_the_contract_are_shown_and_secrets_never(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("UNSET_APP_KEY_FOR_TEST", raising=False)
    path = tmp_path / "groupspec.toml"
    path.write_text(SOURCES)
    assert main(["contract", "doc", "--config", str(path), "--md", str(tmp_path / "c.md"),
                 "--html", str(tmp_path / "c.html")]) == 0
    assert main(["contract", "doc", "--config", str(path)]) == 0
    printed = capsys.readouterr()
    md, page = (tmp_path / "c.md").read_text(), (tmp_path / "c.html").read_text()
    assert printed.out.endswith(md)  # without --md / --html the Markdown goes to standard output
    for text in (md, page, printed.out, printed.err):
        assert "SECRET" not in text
    assert "| `invalid_group_trait` | " in md and "`strip` (default); source `app`: `drop` |" in md
    assert "| `missing_group_id` | " in md and "`drop`; source `app`: `drop`" not in md  # inherited: no override
    assert "For messages from source `app`:\n\n- every event (`*`)" in md
    assert "- `app`: the contract above, with its own `require_group`, `actions` (shown above)" in md
    assert "- `billing`: the contract above\n" in md
    assert "| `orders_7d` | `Order Placed` | how many in the last `7d`" in md
    assert "| `last_total` | `Order Placed` | the latest one's `properties.total` |" in md
    assert "| `tier` | string | `gold`, `silver` | any source | yes, as `group_traits.tier` |" in md
    assert "| `balance` | number | any value | source `billing` | no |" in md
    assert "| `1` | `household` | yes |" in md


def test_every_violation_code_is_explained():
    assert set(WHEN) == set(DEFAULT_ACTIONS)


def test_a_config_that_fails_check_config_fails_the_same_way(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text('[contract]\n[contract.actions]\ninvalid_group_id = "ignore"\n')
    assert main(["check-config", str(path)]) == 2
    expected = capsys.readouterr().err
    assert "contract.actions.invalid_group_id: expected flag | strip | drop, got 'ignore'" in expected
    assert main(["contract", "doc", "--config", str(path)]) == 2
    assert capsys.readouterr().err == expected
    assert main(["contract", "log", str(path), str(path)]) == 2
    assert capsys.readouterr().err == expected


def test_object_types_are_checked_and_diffed():
    with pytest.raises(ConfigError, match=r"g.toml: contract.object_types.one: expected a positive integer"):
        parse_config(tomllib.loads('[contract.object_types]\none = "household"'), "g.toml")
    with pytest.raises(ConfigError, match=r"contract.object_types.2: expected the name of the concept"):
        parse_config(tomllib.loads('[contract.object_types]\n2 = " "'), "g.toml")
    old = parse_config(tomllib.loads('[contract.object_types]\n1 = "household"\n2 = "store"'))
    new = parse_config(tomllib.loads('[contract.object_types]\n1 = "account"\n3 = "region"'))
    assert [(c.description, c.breaking) for c in diff(old, new)] == [
        ("object type 1 renamed household -> account", False),
        ("object type 2 no longer named (was store)", False),
        ("object type 3 named region", False)]


# -- group id examples -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("folder", FIXTURES, ids=[p.name for p in FIXTURES])
def test_fixture_id_examples_pass_and_fail_as_shown(folder):
    pattern = load_config(folder / "groupspec.toml").contract.group_id_pattern
    good = group_ids.passing(pattern)
    bad = group_ids.failing(pattern, good)
    regex = re.compile(pattern) if pattern else None
    assert good and all(id_problem(value, regex) is None for value in good)
    kinds = {why for _, why in bad}
    assert {"looks like an email address; use a stable id", "looks like a URL; use a stable id",
            "contains whitespace; use a stable id"} <= kinds
    if pattern:
        assert "does not match the pattern" in kinds
        alternatives = re.findall(r"\^\(([^)]*)\)", pattern)
        for prefix in alternatives[0].split("|") if alternatives else []:  # one example per alternative
            assert any(value.startswith(prefix) for value in good), (prefix, good)


PIECES = st.sampled_from(["[a-z0-9]", "[A-Za-z0-9]", r"\d", r"\w", "[a-f0-9]", "[^@ /]", ".", "x"])
REPEATS = st.sampled_from(["+", "*", "{6}", "{4,12}", "{2,}", "?", ""])


@st.composite
def patterns(draw) -> str:
    prefixes = draw(st.lists(st.from_regex(r"[a-z]{1,5}", fullmatch=True), min_size=1, max_size=3, unique=True))
    head = prefixes[0] if len(prefixes) == 1 else "(" + "|".join(prefixes) + ")"
    body = "".join(draw(PIECES) + draw(REPEATS) for _ in range(draw(st.integers(1, 3))))
    anchored = draw(st.booleans())
    return ("^" if anchored else "") + head + draw(st.sampled_from(["_", "-", ":", ""])) + body + ("$" if anchored else "")


@settings(max_examples=150, deadline=None)
@given(patterns())
def test_generated_ids_pass_and_mistakes_fail_the_contracts_own_check(pattern):
    regex = re.compile(pattern)
    good = group_ids.passing(pattern)
    assert good, pattern  # every pattern of this grammar has examples
    assert all(id_problem(value, regex) is None for value in good)
    for value, why in group_ids.failing(pattern, good):
        problem = id_problem(value, regex)
        assert problem is not None and (why in problem or why == "does not match the pattern"), (value, why)
    assert group_ids.passing(pattern) == good  # the same page every time


def test_patterns_the_generator_cannot_read_give_no_examples_but_still_failures():
    assert group_ids.passing(r"^(?=hh)hh_\w+$") == []
    assert group_ids.failing(r"^(?=hh)hh_\w+$", [])  # the mistakes still fail


# -- the committed fixture docs ----------------------------------------------------------------------------------

@pytest.mark.parametrize("folder", FIXTURES, ids=[p.name for p in FIXTURES])
def test_each_fixture_carries_its_current_contract_doc(folder, monkeypatch):
    for var in ("CIO_SITE_ID", "CIO_API_KEY", "CIO_APP_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    committed = folder / "CONTRACT.md"
    current = markdown.render(build(load_config(folder / "groupspec.toml")))
    name = folder.name
    assert committed.is_file() and committed.read_text() == current, (
        f"fixtures/{name}/CONTRACT.md is not what `groupspec contract doc` writes for fixtures/{name}/groupspec.toml "
        f"(documentation, regenerated by the command): from the repository root run\n"
        f"  groupspec contract doc --config fixtures/{name}/groupspec.toml --md fixtures/{name}/CONTRACT.md\n"
        f"or, for every fixture:\n  {REGENERATE}")


def test_the_docs_example_is_what_the_command_writes():
    docs = (ROOT / "docs" / "contract-doc.md").read_text()
    example = docs.split("<!-- example: fixtures/households/CONTRACT.md -->\n", 1)[1].split("\n<!-- end of", 1)[0]
    written = markdown.render(build(load_config(ROOT / "fixtures" / "households" / "groupspec.toml")))
    assert example.replace("\n### ", "\n## ").replace("### ", "## ", 1) in written, (
        "docs/contract-doc.md's example is not what `groupspec contract doc --config fixtures/households/groupspec.toml` "
        "writes: copy the sections again from fixtures/households/CONTRACT.md (headings one level down)")


# -- the page on a phone -----------------------------------------------------------------------------------------

#: test-only: the page in a 390 px wide frame (headless Chromium's windows are at least 500 px wide; a `srcdoc` frame is
#: same-origin, so the probe can read it); after load it writes the frame's widths and every element wider than
#: the frame into the outer page
PROBE = """<!DOCTYPE html><html><body style="margin:0">
<iframe id="phone" style="width:390px;height:844px;border:0" srcdoc="{page}"></iframe>
<script>document.getElementById("phone").addEventListener("load", () => {{
  const frame = document.getElementById("phone").contentWindow, doc = frame.document;
  const width = doc.documentElement.clientWidth;
  const wide = [...doc.querySelectorAll("body *")]
    .filter(e => e.getBoundingClientRect().right > width + 0.5 || (e.clientWidth > 0 && e.scrollWidth > e.clientWidth + 1))
    .map(e => e.tagName + ": " + e.textContent.slice(0, 60));
  const out = document.createElement("pre"); out.id = "probe";
  out.textContent = JSON.stringify({{inner: frame.innerWidth, width, scroll: doc.documentElement.scrollWidth, wide}});
  document.body.append(out);
}});</script></body></html>"""

WIDE = """
[contract]
version = "2027.01.averylongversionlabelwithoutanybreakinitatallnotevenahyphen"
group_id_pattern = "^(household|account|storelocation|distributionpartner)_[a-z0-9]{8,64}(-[a-z0-9]{4,16})?$"
require_group = ["Subscription Payment Method Updated From The Customer Portal Settings Page"]
attach_group_traits = ["subscription_status_as_reported_by_the_billing_provider_nightly_export"]
[contract.object_types]
1 = "householdaccountstorelocationdistributionpartnerregionalcooperative"
[contract.group_traits]
subscription_status_as_reported_by_the_billing_provider_nightly_export = { type = "string", enum = ["active_and_paying_with_a_valid_card_on_file", "paused"] }
[contract.rollups]
last_subscription_payment_method_update_timestamp_in_unix_seconds = { event = "Subscription Payment Method Updated From The Customer Portal Settings Page", value = "timestamp" }
[sources.the_customer_portal_settings_page_backend_service_in_eu_west]
write_key = "wk"
[sources.the_customer_portal_settings_page_backend_service_in_eu_west.contract.actions]
invalid_group_trait = "drop"
"""


def _layout(page: Path, tmp_path: Path) -> dict:
    probed = tmp_path / f"probed-{page.name}"
    probed.write_text(PROBE.format(page=html_lib.escape(page.read_text(), quote=True)))
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--virtual-time-budget=2000", "--dump-dom", probed.as_uri()], check=True,
                         capture_output=True, timeout=90).stdout.decode()
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, dom[-500:]
    return json.loads(html_lib.unescape(found.group(1)))


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (apt-get install chromium)")
@pytest.mark.parametrize("name", ["wholesale", "household-suppression", "wide"])
def test_the_html_page_does_not_scroll_sideways_on_a_phone(name, tmp_path):
    config = tmp_path / "groupspec.toml"
    config.write_text(WIDE if name == "wide" else (ROOT / "fixtures" / name / "groupspec.toml").read_text())
    page = tmp_path / f"{name}.html"
    assert main(["contract", "doc", "--config", str(config), "--html", str(page)]) == 0
    text = page.read_text()
    assert not re.search(r"(src|href)=|<script|<link|@import|url\(", text, re.I)  # self-contained, no network
    layout = _layout(page, tmp_path)
    assert layout["inner"] == 390
    assert layout["scroll"] <= layout["width"] and not layout["wide"], layout


# -- contract log ------------------------------------------------------------------------------------------------

V1 = """# The households contract: what the retention team segments on.
[contract]
version = "2026-01"
group_id_pattern = "^hh_[a-z0-9]+$"
require_group = ["Order Placed", "Checkout Started"]
attach_group_traits = ["subscription_status"]
[contract.group_traits]
plan_type = { type = "string", enum = ["basic", "family", "pro"] }
subscription_status = { type = "string", enum = ["active", "paused", "cancelled"] }
store_credit_balance = { type = "number", owner = "billing" }
[sources.billing]
write_key = "wk_billing"
"""
V2 = V1.replace('"2026-01"', '"2026-02"').replace('"basic", "family", "pro"', '"basic", "pro"')
V3 = V2.replace('"2026-02"', '"2026-03"').replace('"basic", "pro"', '"basic", "pro", "team"')


def _blocks(out: str) -> list[tuple[str, list[str]]]:
    """The log's entries: (heading, its indented lines), in printed order."""
    blocks: list[tuple[str, list[str]]] = []
    for text in out.splitlines():
        if text.startswith("  "):
            blocks[-1][1].append(text.strip())
        else:
            blocks.append((text, []))
    return blocks


def test_log_of_three_files_lists_the_breaking_change_newest_first(tmp_path, capsys):
    paths = []
    for i, text in enumerate((V1, V2, V3), start=1):
        path = tmp_path / f"v{i}.toml"
        path.write_text(text)
        stamp = datetime(2026, i, 5, 12, tzinfo=UTC).timestamp()
        os.utime(path, (stamp, stamp))
        paths.append(str(path))
    assert main(["contract", "log", *paths]) == 0
    blocks = _blocks(capsys.readouterr().out)
    assert [heading for heading, _ in blocks] == [f"2026-03 · 2026-03-05 · {paths[2]}",
                                                  f"2026-02 · 2026-02-05 · {paths[1]}",
                                                  f"2026-01 · 2026-01-05 · {paths[0]}"]
    assert blocks[0][1] == ["compatible  contract  version 2026-02 -> 2026-03",
                            "compatible  contract  plan_type enum value team added",
                            f"2 change(s): 0 breaking, 2 compatible since {paths[1]}"]
    assert blocks[1][1] == ["compatible  contract  version 2026-01 -> 2026-02",
                            "BREAKING    contract  plan_type enum value family removed",
                            f"2 change(s): 1 breaking, 1 compatible since {paths[0]}"]
    assert blocks[2][1] == ["first version"]


def _git(repo: Path, *args: str, date: str | None = None) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    if date:
        env.update(GIT_AUTHOR_DATE=date, GIT_COMMITTER_DATE=date)
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=env)


def test_log_from_git_history_follows_renames_and_shows_unreadable_versions(tmp_path, capsys):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    steps = [("a.toml", V1, "2026-01-05T10:00:00+00:00"),
             ("a.toml", V1.replace("[contract]", "[contract"), "2026-01-20T10:00:00+00:00"),  # not TOML
             ("a.toml", V2, "2026-02-05T10:00:00+00:00"),
             ("groupspec.toml", V3, "2026-03-05T10:00:00+00:00")]  # renamed and changed
    for name, text, date in steps:
        if name == "groupspec.toml":
            _git(repo, "mv", "a.toml", name)
        (repo / name).write_text(text)
        _git(repo, "add", name)
        _git(repo, "commit", "-q", "-m", f"contract {date}", date=date)
    target = repo / "groupspec.toml"
    assert main(["contract", "log", "--git", str(target)]) == 0
    blocks = _blocks(capsys.readouterr().out)
    headings = [re.sub(r"@[0-9a-f]{7}$", "@C", heading) for heading, _ in blocks]
    assert headings == [f"2026-03 · 2026-03-05 · {target}@C", f"2026-02 · 2026-02-05 · {target}@C",
                        f"? · 2026-01-20 · {target}@C", f"2026-01 · 2026-01-05 · {target}@C"]
    assert "compatible  contract  plan_type enum value team added" in blocks[0][1]
    assert "BREAKING    contract  plan_type enum value family removed" in blocks[1][1]  # across the unreadable one
    assert blocks[2][1][0].startswith("unreadable by this release:") and "not valid UTF-8 TOML" in blocks[2][1][0]
    assert blocks[3][1] == ["first version"]


def test_log_of_a_file_outside_git_or_without_history_says_so(tmp_path, capsys):
    loose = tmp_path / "loose.toml"
    loose.write_text(V1)
    assert main(["contract", "log", "--git", str(loose)]) == 2
    assert f"{loose}: not inside a git repository" in capsys.readouterr().err
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "new.toml").write_text(V1)  # never committed
    assert main(["contract", "log", "--git", str(repo / "new.toml")]) == 2
    assert "new.toml: no committed history in the repository at" in capsys.readouterr().err
    assert main(["contract", "log"]) == 2
    assert main(["contract", "log", str(loose), "--git", str(loose)]) == 2
    assert "give the contract files (oldest first) or --git FILE" in capsys.readouterr().err
