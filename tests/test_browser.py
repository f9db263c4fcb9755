"""A browser source for real: Segment's analytics.js (`@segment/analytics-next` from npm, bundled by
tests/browser/) on a web page served from another origin, its Segment.io destination pointed at the service, in
headless Chromium. Its events must arrive through the contract; from an origin not in `cors_origins`, none may.

The bundle is built by .ci/run (`npm ci && npm run bundle` in tests/browser); without it or without chromium
these tests skip, saying which is missing.
"""

from __future__ import annotations

import functools
import shutil
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode

import orjson
import pytest
from service_harness import WRITE_KEYS, ThreadService, metrics, wait_for, write_config

BROWSER = Path(__file__).parent / "browser"
BUNDLE = BROWSER / "dist" / "analytics.js"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CALLS = ["identify", "group", "Order Placed", "page", "bad group id"]  # what page.html calls, in order

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (apt-get install chromium)"),
    pytest.mark.skipif(not BUNDLE.is_file(), reason=f"no analytics.js bundle at {BUNDLE}: run "
                                                    f"`npm ci && npm run bundle` in {BROWSER} (.ci/run does)"),
]


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def page_server() -> Iterator[str]:
    """tests/browser/ over HTTP on a loopback port of its own: an origin that is not the service's."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(BROWSER)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def run_page(page_origin: str, service_url: str, profile: Path, batching: bool = False) -> dict[str, int]:
    """Load page.html in headless Chromium until its calls are done; for each call, the errors analytics.js met
    sending it (with `batching`, sending is the batch's: its errors are not the calls')."""
    query = urlencode({"api": service_url.removeprefix("http://") + "/v1", "key": WRITE_KEYS["web"],
                       **({"batching": "1"} if batching else {})})
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
         "--virtual-time-budget=20000", "--dump-dom", f"{page_origin}/page.html#{query}"],
        capture_output=True, timeout=120, check=True)
    dom = done.stdout.decode()
    status = dom.partition('<pre id="status">')[2].partition("</pre>")[0]
    assert status.startswith("{"), f"the page did not finish: {status!r}\n{done.stderr.decode()[-2000:]}"
    return orjson.loads(status)


@pytest.mark.parametrize("batching", [False, True], ids=["one request per call", "batching strategy"])
def test_analytics_js_events_arrive_through_the_contract(tmp_path, cio, page_server, batching):
    config = write_config(tmp_path, cio, service={"cors_origins": [page_server]})
    with ThreadService(config) as svc:
        errors = run_page(page_server, svc.url, tmp_path / "profile", batching)
        assert errors == dict.fromkeys(CALLS, 0)
        wait_for(lambda: len(cio.accepted) == 4, 30)  # the fifth is quarantined
        wait_for(lambda: (tmp_path / "quarantine.jsonl").exists(), 30)
        posts = metrics(svc.url)['groupspec_requests_total{status="200"}']
        assert posts == (1 if batching else len(CALLS))  # batching: all five in one POST to /v1/b
    by_action = {(op["type"], op["action"]): op for op in cio.accepted}
    assert by_action[("person", "identify")]["identifiers"] == {"id": "browser_user"}
    assert by_action[("object", "identify")]["identifiers"]["object_id"] == "hh_browser"
    order = by_action[("person", "event")]
    assert order["name"] == "Order Placed"
    assert order["attributes"]["group_id"] == "hh_browser"  # resolved from the membership the group call taught
    assert by_action[("person", "page")]["name"] == f"{page_server}/page.html"  # the page's URL, as reported
    [record] = [orjson.loads(line) for line in (tmp_path / "quarantine.jsonl").read_bytes().splitlines()]
    assert record["violations"][-1]["code"] == "invalid_group_id"
    assert record["message"]["context"]["library"]["name"] == "analytics.js"  # it came from the browser
    assert record["message"]["messageId"].startswith("ajs-next-")


def test_a_page_from_an_origin_not_allowed_gets_nothing_through(tmp_path, cio, page_server):
    config = write_config(tmp_path, cio, service={"cors_origins": ["https://shop.example"]})
    with ThreadService(config) as svc:
        errors = run_page(page_server, svc.url, tmp_path / "profile")
        assert all(errors[name] > 0 for name in CALLS), errors  # the browser refused every request
        with sqlite3.connect(tmp_path / "spool.db") as db:
            assert db.execute("SELECT COUNT(*) FROM spool").fetchone()[0] == 0
    assert cio.accepted == []
