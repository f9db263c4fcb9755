"""The README is a landing page a new user can follow (issue 18, item 6): every block it shows is run here, in a
fresh folder, as its sections say — the main job, the three quickstarts, the docs build — and what each
quickstart tells the user to look at is there. Expected values come from the README's own stream and the
contract rules (docs/contract.md), not from a run of groupspec."""

from __future__ import annotations

import re
import shutil
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import pytest
from batch_server import BatchServer
from readme_support import README, ROOT, Session, blocks
from service_harness import metrics, wait_for

#: every README section with code, and the test that runs it
RUN_BY = {
    "The two commands": "test_the_main_job", "Quickstart 1": "test_quickstart_replay_your_own_contract",
    "Quickstart 2": "test_quickstart_serve_two_sources", "Quickstart 3": "test_quickstart_sdk_hook_in_flask",
    "The manual": "test_the_docs_build",
}
PAGE = "http://localhost:3000"  # the storefront's origin in Quickstart 2


@pytest.fixture
def session(tmp_path):
    made = []

    def make(**settings) -> Session:
        made.append(Session(tmp_path, **settings))
        return made[-1]

    yield make
    for one in made:
        one.close()


def jsonl(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


# --- the page itself -------------------------------------------------------------------------------------------

def test_every_block_is_run_by_a_test():
    """A block added to the README outside the sections these tests run fails here."""
    found = blocks()
    assert found
    for block in found:
        assert any(block.section.startswith(name) for name in RUN_BY), \
            f"README section {block.section!r} has a {block.lang} block no test runs (add it to RUN_BY)"
    tested = {name for name in RUN_BY if any(b.section.startswith(name) for b in found)}
    assert tested == set(RUN_BY), f"RUN_BY names sections the README no longer has: {set(RUN_BY) - tested}"


def test_the_readme_is_a_landing_page():
    text = README.read_text()
    assert len(text.splitlines()) < 250
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), f"README links to {target}, which does not exist"


def test_pip_install_dot_gives_the_groupspec_command():
    """The first command's `pip install .`: pyproject.toml names the command (tests/test_packaging.py checks that
    every package is shipped; .ci/run installs the project the same way)."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"groupspec": "groupspec.plugin.cli:main"}


def test_ci_runs_what_the_readme_says_and_builds_the_docs():
    ci = (ROOT / ".ci/run").read_text()
    assert re.search(r'pip install .*-e "\.\[test,docs\]"', ci)
    assert "python -m pytest" in ci
    assert "mkdocs build --strict" in ci


# --- the sections ----------------------------------------------------------------------------------------------

def test_the_main_job(session, tmp_path):
    shutil.copytree(ROOT / "fixtures/households", tmp_path / "fixtures/households")
    user = session()
    user.run("The two commands")
    (replay,) = [out for cmd, out in user.outputs.items() if cmd.startswith("groupspec replay")]
    assert "replay output matches fixtures/households/expected" in replay
    assert (tmp_path / "groupspec.db").is_file()  # --store sqlite:///groupspec.db, in the working directory


def test_quickstart_replay_your_own_contract(session, tmp_path):
    user = session()
    user.run("Quickstart 1")
    out = tmp_path / "out"
    # m1 joins maya to hh_smith; m2 resolves by membership; m3 (sam, no household) is flagged; m4's id fails the
    # pattern (invalid_group_id: drop); m5's plan fails the enum (invalid_group_trait, set to strip)
    summary = orjson.loads((out / "summary.json").read_bytes())
    assert (summary["received"], summary["forwarded"], summary["quarantined"]) == (5, 4, 1)
    assert summary["violations"] == {"missing_group_id": 1, "invalid_group_id": 1, "invalid_group_trait": 1}
    forwarded = {m["messageId"]: m for m in jsonl(out / "forwarded.jsonl")}
    assert set(forwarded) == {"m1", "m2", "m3", "m5"}
    order = forwarded["m2"]["context"]
    assert order["groupId"] == "hh_smith" and order["groupspec"]["resolution"] == "membership"
    assert order["groupspec"]["group_traits"] == {"plan": "family"}
    assert [v["code"] for v in forwarded["m3"]["context"]["groupspec"]["violations"]] == ["missing_group_id"]
    assert "plan" not in forwarded["m5"]["traits"]
    assert [v["code"] for v in forwarded["m5"]["context"]["groupspec"]["violations"]] == ["invalid_group_trait"]
    operations = jsonl(out / "customerio.jsonl")
    first = operations[0]
    assert (first["type"], first["action"], first["identifiers"]["object_id"]) == ("object", "identify", "hh_smith")
    assert first["attributes"] == {"plan": "family"} and first["cio_relationships"] == [{"identifiers": {"id": "maya"}}]
    event = next(op for op in operations if op.get("name") == "Order Placed" and op["identifiers"] == {"id": "maya"})
    assert event["attributes"]["group_id"] == "hh_smith" and event["attributes"]["group_traits"] == {"plan": "family"}
    (record,) = jsonl(out / "quarantine.jsonl")
    assert record["message"]["groupId"] == "Smith Household"
    assert [v["code"] for v in record["violations"]] == ["invalid_group_id"]
    listed = next(out for cmd, out in user.outputs.items() if cmd.startswith("groupspec quarantine list"))
    assert "invalid_group_id" in listed
    report = next(out for cmd, out in user.outputs.items() if cmd.startswith("groupspec report"))
    assert "Order Placed" in report and "sam" in report  # the person who never resolved a household
    # nothing fixed yet: the quarantine replays into the quarantine again
    again = orjson.loads((out / "replayed/summary.json").read_bytes())
    assert (again["received"], again["quarantined"]) == (1, 1)


def post_like_analytics_js(block, user: Session) -> None:
    """The README's analytics.js snippet, as analytics-next sends it: each call to `<protocol>://<apiHost>/<the
    type's first letter>`, `text/plain` JSON with the write key in the body, from the page's origin."""
    settings = dict(re.findall(r"(apiKey|apiHost|protocol): '([^']+)'", block.text))
    event, sku = re.search(r"analytics\.track\('([^']+)', \{ sku: '([^']+)' \}\)", block.text).groups()
    origins = tomllib.loads((user.folder / "serve.toml").read_text())["service"]["cors_origins"]
    assert PAGE in origins
    body = {"type": "track", "event": event, "properties": {"sku": sku}, "anonymousId": "anon-ajs-1",
            "messageId": "ajs-1", "timestamp": datetime.now(UTC).isoformat(), "writeKey": settings["apiKey"]}
    url = f"{settings['protocol']}://{user.local(settings['apiHost'])}/t"
    answer = httpx.post(url, content=orjson.dumps(body), headers={"Content-Type": "text/plain", "Origin": PAGE})
    assert answer.status_code == 200, answer.text
    assert answer.headers["access-control-allow-origin"] == PAGE


def test_quickstart_serve_two_sources(session, tmp_path, cio):
    def at_the_standin(text: str) -> str:  # [customerio] is the file's last table: point it at the stand-in
        assert re.findall(r"^\[([^\]]+)\]", text, re.M)[-1] == "customerio"
        return text + f'url = "{cio.url}"\n'

    user = session(env={"CIO_SITE_ID": cio.site_id, "CIO_API_KEY": cio.api_key},
                   files={"serve.toml": at_the_standin}, handlers={"js": post_like_analytics_js})
    user.run("Quickstart 2")

    def delivered():
        ops = cio.accepted
        return ops if len([op for op in ops if op.get("action") == "event"]) >= 2 else None

    ops = wait_for(delivered, 20)
    household = next(op for op in ops if op["type"] == "object")
    assert household["identifiers"] == {"object_type_id": "1", "object_id": "hh_smith"}
    assert household["attributes"] == {"plan": "family", "store_credit": 12.5}  # the backend owns store_credit
    assert household["cio_relationships"] == [{"identifiers": {"id": "maya"}}]
    order = next(op for op in ops if op.get("name") == "Order Placed")
    assert order["identifiers"] == {"id": "maya"} and order["attributes"]["group_id"] == "hh_smith"
    viewed = next(op for op in ops if op.get("name") == "Product Viewed")  # the web source, from the page
    assert viewed["identifiers"] == {"anonymous_id": "anon-ajs-1"}
    assert not any(op.get("identifiers", {}).get("object_id") == "Smith Household" for op in ops)
    assert '"status":"ok"' in user.outputs["curl -s localhost:8080/health"].replace(" ", "")
    # the README's listing ran right after the posts; the delivery process quarantines asynchronously, so it is
    # listed again (as a user would look again) until the chunk with the bad group call is committed
    listing = next(cmd for cmd in user.outputs if cmd.startswith("groupspec quarantine list"))
    listed = wait_for(lambda: "invalid_group_id" in (out := user.shell(listing)) and out, 20)
    assert "backend" in listed
    counters = wait_for(lambda: (m := metrics(user.url("groupspec serve")))["groupspec_received_total"] == 4 and m)
    assert counters["groupspec_accepted_total"] == 4


def test_quickstart_sdk_hook_in_flask(session, tmp_path):
    pytest.importorskip("flask")
    with BatchServer() as segment:  # Segment's API: SEGMENT_HOST points the app's client here
        user = session(env={"SEGMENT_HOST": segment.url})
        user.run("Quickstart 3")
        app = user.url("flask")
        counts = wait_for(lambda: (c := httpx.get(app + "/groupspec").json())["forwarded"] == 2 and c, 20)
        assert counts == {"forwarded": 2, "quarantined": {"invalid_group_id": 1}, "failures": 0}
        order = wait_for(lambda: next((m for m in segment.messages if m.get("event") == "Order Placed"), None))
        assert order["userId"] == "maya" and order["context"]["groupId"] == "hh_smith"
        assert order["context"]["groupspec"]["resolution"] == "membership"
        assert not any(m.get("groupId") == "Smith Household" for m in segment.messages)
    listed = next(out for cmd, out in user.outputs.items() if cmd.startswith("groupspec quarantine list"))
    assert "invalid_group_id" in listed and "backend" in listed
    assert "groupspec dropped group" in (tmp_path / "flask.log").read_text()  # the app's on_drop log line


def test_the_docs_build(session, tmp_path):
    pytest.importorskip("mkdocs")
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    session().run("The manual")
    assert (tmp_path / "site/index.html").is_file() and (tmp_path / "site/configuration/index.html").is_file()
