"""`groupspec report`: the numbers on a crafted replay output, the terminal view, the HTML page in a real
headless Chromium, and reading a service's `report.json`."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from groupspec.middleware.config import load_config
from groupspec.plugin.cli import main
from groupspec.plugin.report import html, terminal
from groupspec.plugin.report.collect import collect

CONFIG = """
[contract]
version = "2026-11"
freshness = "6h"
require_group = ["Order Placed"]
[sources.web]
write_key = "wk_web"
[sources.backend]
write_key = "wk_backend"
"""


def msg(kind: str, when: str, **fields) -> dict:
    return {"type": kind, "timestamp": f"2026-11-20T{when}:00Z", **fields}


STREAM = [
    msg("identify", "08:00", userId="u1", anonymousId="a1", writeKey="wk_web"),
    msg("group", "09:00", userId="u1", groupId="hh_one", writeKey="wk_backend"),
    msg("group", "01:00", userId="u5", groupId="hh_old", writeKey="wk_backend"),
    msg("group", "01:00", userId="u6", groupId="hh_gone", traits={"objectTypeId": "2"}),
    msg("track", "02:00", userId="u6", event="Object Deleted", properties={"objectId": "hh_gone", "objectTypeId": "2"}),
    msg("track", "10:00", userId="u1", event="Order Placed", writeKey="wk_web"),  # membership
    msg("track", "10:30", userId="u2", event="Order Placed", properties={"group_id": "hh_two"}),  # property
    msg("track", "11:00", userId="u3", event="Order Placed", writeKey="wk_web"),  # unresolved, flagged
    msg("track", "11:30", userId="u3", event="Order Placed", writeKey="wk_web",
        context={"groupId": "bad id@example.com"}),  # invalid_group_id: quarantined
    msg("track", "12:00", anonymousId="a9", event="Product Viewed"),
    msg("track", "11:00", anonymousId="a8", event="Product Viewed"),
    msg("alias", "11:30", userId="u8", previousId="a8"),
    msg("group", "11:40", userId="u8", groupId="hh_one", writeKey="wk_backend"),
    msg("group", "01:00", userId="u7", groupId="hh_back"),
    msg("track", "02:00", userId="u7", event="Object Deleted", properties={"objectId": "hh_back"}),
    msg("group", "03:00", userId="u7", groupId="hh_back"),  # created again after its deletion
]


@pytest.fixture(scope="module")
def replayed(tmp_path_factory) -> tuple[Path, Path]:
    """(replay output folder, config path) of the crafted stream, plus a line that is not JSON."""
    root = tmp_path_factory.mktemp("report")
    config = root / "groupspec.toml"
    config.write_text(CONFIG)
    stream = root / "stream.jsonl"
    stream.write_text("".join(json.dumps(m) + "\n" for m in STREAM) + "not json\n")
    assert main(["replay", str(stream), "--config", str(config), "--out", str(root / "out")]) == 0
    return root / "out", config


@pytest.fixture(scope="module")
def report(replayed):
    out, config = replayed
    return collect(out, load_config(config))


def test_totals_and_time_come_from_the_data(report, replayed):
    summary = json.loads((replayed[0] / "summary.json").read_text())
    assert (report.received, report.forwarded, report.quarantined) == (17, 15, 2)
    assert report.received == summary["received"]
    assert report.as_of == "2026-11-20T12:00:00.000Z"
    assert report.contract == "2026-11"


def test_per_event_counts_share_and_resolution(report):
    rows = {row.event: row for row in report.events}
    assert set(rows) == {"Order Placed", "Product Viewed"}  # object events are not person events
    placed = rows["Order Placed"]
    assert (placed.received, placed.forwarded, placed.quarantined) == (4, 3, 1)
    assert placed.resolution == {"explicit": 0, "property": 1, "membership": 1, "unresolved": 1}
    assert placed.share == pytest.approx(2 / 3)
    assert rows["Product Viewed"].share == 0
    assert [row.event for row in report.events] == ["Order Placed", "Product Viewed"]  # busiest first


def test_violations_by_code_and_source(report):
    found = {(v.code, v.source): (v.forwarded, v.quarantined) for v in report.violations}
    assert found == {("missing_group_id", "web"): (1, 0), ("invalid_group_id", "web"): (0, 1),
                     ("malformed", "-"): (0, 1)}


def test_people_without_any_group_follow_identity_links(report):
    # a1 is u1 (identify), a8 is u8 (alias) and u8 joined a group; u2 carried a group id as a property
    assert report.people.total == 8
    assert report.people.without_group == 2
    assert report.people.examples == ["a9", "u3"]


def test_stale_groups_relative_to_the_latest_message(report):
    groups = report.groups
    assert groups.total == 3  # hh_gone was deleted; hh_back was deleted and created again
    assert groups.freshness == "6h"
    assert groups.stale_count == 2
    assert [(g.object_type_id, g.group_id, g.age_seconds) for g in groups.stale] == \
        [("1", "hh_old", 11 * 3600), ("1", "hh_back", 9 * 3600)]  # oldest first


def test_without_config_sources_are_unknown_and_no_freshness(replayed):
    bare = collect(replayed[0])
    found = {(v.code, v.source) for v in bare.violations}  # quarantine records name their source themselves
    assert found == {("missing_group_id", "-"), ("invalid_group_id", "web"), ("malformed", "-")}
    assert bare.groups.freshness is None and bare.groups.stale == []
    assert bare.contract == "2026-11"  # read from the forwarded messages


def test_terminal_report(replayed, capsys):
    out, config = replayed
    assert main(["report", str(out), "--config", str(config)]) == 0
    text = capsys.readouterr().out
    assert "received 17, forwarded 15, quarantined 2" in text
    assert "Order Placed" in text and "67%" in text
    assert "people without any group: 2 of 8 — a9, u3" in text
    assert "hh_old" in text and "11h" in text


def test_the_event_tables_explicit_column_says_what_it_counts(report):
    """Issue 18: for track events, "explicit" is `context.groupId`; summary.json's `resolution.explicit` (which
    counts group calls too) keeps its key, the report's column is named for what it counts."""
    from rich.console import Console

    console = Console(record=True, width=200)
    terminal.render(report, console)
    header = next(line for line in console.export_text().splitlines() if "with group" in line)
    assert "context.groupId" in header and "explicit" not in header
    page = html.render(report)
    assert "<th>context.groupId</th>" in page and ">explicit<" not in page


def test_terminal_shows_names_as_data_not_markup(tmp_path, capsys):
    body = {"type": "track", "userId": "[bold]u", "event": "[/x] Clicked",
            "context": {"groupspec": {"resolution": "unresolved", "violations": []}}}
    (tmp_path / "forwarded.jsonl").write_text(json.dumps(body) + "\n")
    assert main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "[/x] Clicked" in out and "[bold]u" in out and "(no [contract] freshness window configured)" in out


def test_missing_folder_is_a_usage_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert "no forwarded.jsonl" in capsys.readouterr().err


def test_corrupt_output_is_reported_not_a_traceback(tmp_path, capsys):
    (tmp_path / "forwarded.jsonl").write_text('{"type": "track"}\n{oops\n')
    assert main(["report", str(tmp_path)]) == 1
    assert "forwarded.jsonl:2: not valid JSON" in capsys.readouterr().err


def test_html_is_self_contained_and_escaped(report):
    page = html.render(report.model_copy(update={"origin": "<script>alert(1)</script>"}))
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<link" not in page and "src=" not in page
    assert page.count("<svg") == 2
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (apt-get install chromium)")
def test_html_renders_in_headless_chromium(replayed, tmp_path):
    out, config = replayed
    page = tmp_path / "coverage.html"
    assert main(["report", str(out), "--config", str(config), "--html", str(page)]) == 0
    shot = tmp_path / "coverage.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,1600",
                    page.as_uri()], check=True, capture_output=True, timeout=90)
    data = shot.read_bytes()
    assert _png_size(data) == (1200, 1600)
    assert len(data) > 20_000  # a blank page compresses to a few KB; tables and charts do not


class _Service(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self):  # noqa: N802 (http.server's naming)
        found = self.path == "/report.json" and self.body
        self.send_response(200 if found else 404)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(self.body if found else b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture
def service():
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (_Service,), {}))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def test_service_report_json(service, report, capsys, tmp_path):
    numbers = report.model_dump(exclude={"people", "groups"})  # a service counts messages, not people
    service.RequestHandlerClass.body = json.dumps({**numbers, "origin": "service", "resolution": {}}).encode()
    url = f"http://127.0.0.1:{service.server_port}"
    assert main(["report", "--service", url, "--html", str(tmp_path / "service.html")]) == 0
    out = capsys.readouterr().out
    assert "received 17, forwarded 15, quarantined 2" in out and "Order Placed" in out
    assert "people and groups: not tracked by service" in out
    assert "Not tracked by service" in (tmp_path / "service.html").read_text()


def test_service_without_a_report_is_a_clear_error(service, capsys):
    url = f"http://127.0.0.1:{service.server_port}"
    assert main(["report", "--service", url]) == 1
    assert "does not expose a coverage report" in capsys.readouterr().err
    service.RequestHandlerClass.body = b'{"origin": "x", "events": "many"}'
    assert main(["report", "--service", url]) == 1
    assert "not a coverage report (events" in capsys.readouterr().err


def test_folder_and_service_are_exclusive(capsys):
    assert main(["report"]) == 2
    assert "either an output folder or --service" in capsys.readouterr().err


def test_the_service_counts_in_the_shape_the_report_reads(report, replayed):
    """The service's `/report.json` (plugin/service/metrics.py) agrees with the numbers of a replay folder."""
    from groupspec.middleware import Engine, open_store
    from groupspec.plugin.report.collect import Coverage
    from groupspec.plugin.service.metrics import Metrics

    config = load_config(replayed[1])
    pipeline, metrics = Engine(config, open_store("memory://")), Metrics(config.contract.version)
    for line in [json.dumps(m) for m in STREAM] + ["not json"]:
        metrics.counts.merge(pipeline.process(line).counts)
    served = Coverage.model_validate(metrics.coverage("service"))
    assert (served.received, served.forwarded, served.quarantined) == (report.received, report.forwarded,
                                                                       report.quarantined)
    assert served.events == report.events
    assert served.violations == report.violations
