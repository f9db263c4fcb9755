"""The shared retrying batch sender, through Customer.io delivery and the upstream alike, over an
`httpx.MockTransport`: retries, `Retry-After` capped at `retry_cap`, one `Unauthorized`, dead letters."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import httpx
import orjson
import pytest
from fake_clock import FakeClock
from groupspec.middleware.config import ConfigError, parse_config
from groupspec.plugin import quarantine_commands
from groupspec.plugin.customerio.delivery import Delivery
from groupspec.plugin.sender import DeadLetterFile, SendFailed, Unauthorized
from groupspec.plugin.sender.upstream import Upstream


class Script:
    """A mock transport answering from a script, then 200 `{}`; an exception class in the script is raised
    as a network error. `bodies` holds the JSON of every request."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.transport = httpx.MockTransport(self._answer)

    def _answer(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if self.answers else httpx.Response(200, json={})
        if isinstance(answer, type):
            raise answer("scripted network error", request=request)
        return answer

    @property
    def bodies(self) -> list[dict]:
        return [orjson.loads(r.content) for r in self.requests]


class Target:
    """One destination under test: builds its sender over a `Script`, knows its items and its dead letter."""

    def __init__(self, name, tmp_path):
        self.name = name
        self.dead_letter = tmp_path / f"{name}-dead-letter.jsonl"
        self.clock = FakeClock()

    def make(self, script: Script, **settings):
        options = {"sleep": self.clock.sleep, "clock": self.clock, "rng": random.Random(3),
                   "transport": script.transport}
        settings = {"dead_letter": str(self.dead_letter), **settings}
        if self.name == "customerio":
            config = parse_config({"customerio": {"site_id": "site", "api_key": "key", "url": "http://cio.test",
                                                  **settings}})
            return Delivery.from_config(config, **options)
        config = parse_config({"upstream": {"url": "http://upstream.test", "write_key": "wk", **settings}})
        return Upstream(config, **options)

    def items(self, n):
        if self.name == "customerio":
            return [{"type": "person", "action": "event", "identifiers": {"id": f"u{i}"}, "name": "Played"}
                    for i in range(n)]
        return [(None, {"type": "track", "userId": f"u{i}", "event": "Played", "messageId": f"m{i}"}) for i in range(n)]

    def sent(self, items):
        """What goes on the wire of `items`: operations as they are; upstream (source, message) pairs' messages."""
        return items if self.name == "customerio" else [message for _, message in items]

    def one_per_batch(self, n):
        """`n` items and the settings that send them one a request."""
        if self.name == "customerio":
            return self.items(n), {"batch_size": 1}
        return [(source, {**item, "properties": {"pad": "x" * 300_000}}) for source, item in self.items(n)], {}

    def dead(self):
        return DeadLetterFile(self.dead_letter).records()


@pytest.fixture(params=["customerio", "upstream"])
def target(request, tmp_path):
    return Target(request.param, tmp_path)


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_credential_is_the_same_exception_from_either_destination(target, status):
    sender = target.make(Script(httpx.Response(status)))
    items = target.items(3)
    with pytest.raises(Unauthorized) as caught:
        sender.send(items)
    assert isinstance(caught.value, ConfigError) and isinstance(caught.value, SendFailed)
    assert caught.value.remaining == items
    assert (caught.value.report.delivered, caught.value.report.requests) == (0, 1)
    assert target.dead() == [] and target.clock.sleeps == []


@pytest.mark.parametrize("retry_after", [
    "86400", format_datetime(datetime.now(timezone.utc) + timedelta(days=1), usegmt=True)])
def test_retry_after_a_day_waits_at_most_retry_cap(target, retry_after):
    script = Script(httpx.Response(429, headers={"Retry-After": retry_after}))
    sender = target.make(script, retry_cap=30)
    report = sender.send(target.items(2))
    assert target.clock.sleeps == [30.0]
    assert (report.delivered, report.retries, report.requests) == (2, 1, 2)
    assert report.throttled_seconds == 30.0
    assert sender.sender.throttled_until == 1030.0 and not sender.sender.throttled  # the clock slept it off


def test_throttled_while_the_destination_asks_for_time(target):
    target.clock.sleep = lambda seconds: target.clock.sleeps.append(seconds)  # time stands still
    sender = target.make(Script(httpx.Response(429, headers={"Retry-After": "5"})))
    assert not sender.sender.throttled
    sender.send(target.items(1))
    assert sender.sender.throttled and sender.sender.throttled_until == 1005.0


@pytest.mark.parametrize("answer", [408, 425, 429, 500, 502, 503, 504, httpx.ConnectError, httpx.ReadTimeout])
def test_throttling_server_errors_and_network_errors_are_retried(target, answer):
    first = answer if isinstance(answer, type) else httpx.Response(answer)
    script = Script(first)
    items = target.items(2)
    report = target.make(script, retry_base=0.5, retry_cap=4).send(items)
    assert (report.delivered, report.retries, report.requests) == (2, 1, 2)
    assert script.bodies[0] == script.bodies[1] == {"batch": target.sent(items)}
    (slept,) = target.clock.sleeps
    assert 0 <= slept <= 0.5  # full jitter: uniform in [0, base]


@pytest.mark.parametrize("status", [400, 413, 422])
def test_a_refused_request_goes_to_the_dead_letter_with_the_reason_and_is_not_delivered(target, status):
    script = Script(httpx.Response(status, json={"errors": [{"reason": "invalid", "message": "no good"}]}))
    items = target.items(2)
    report = target.make(script).send(items)
    assert (report.delivered, report.dead_lettered, report.retries) == (0, 2, 0)
    dead = target.dead()
    key = "operation" if target.name == "customerio" else "forwarded"
    assert [rec[key] for rec in dead] == target.sent(items)
    assert {rec["error"]["status"] for rec in dead} == {status}
    assert "no good" in dead[0]["error"]["message"]


def test_retries_exhausted_keep_the_rest_and_report_what_went_out(target):
    script = Script(httpx.Response(200, json={}), *[httpx.Response(503)] * 3)
    items, settings = target.one_per_batch(3)
    sender = target.make(script, max_retries=2, **settings)
    with pytest.raises(SendFailed, match="HTTP 503 after 2 retries") as caught:
        sender.send(items)
    assert type(caught.value) is SendFailed
    assert caught.value.remaining == items[1:]
    assert (caught.value.report.delivered, caught.value.report.retries, caught.value.report.requests) == (1, 2, 4)
    assert target.dead() == []


def test_an_unexpected_answer_keeps_everything_queued(target):
    items = target.items(2)
    with pytest.raises(SendFailed, match="unexpected HTTP 404") as caught:
        target.make(Script(httpx.Response(404))).send(items)
    assert caught.value.remaining == items and target.dead() == [] and target.clock.sleeps == []


def test_upstream_posts_segment_batches_with_its_write_key(tmp_path):
    script = Script()
    target = Target("upstream", tmp_path)
    items = target.items(2)
    target.make(script).send(items)
    (request,) = script.requests
    assert str(request.url) == "http://upstream.test/v1/batch"
    assert request.headers["authorization"] == httpx.BasicAuth("wk", "")._auth_header
    assert script.bodies == [{"batch": target.sent(items)}]


def test_upstream_rate_limit_spaces_requests(tmp_path):
    target = Target("upstream", tmp_path)
    items, _ = target.one_per_batch(3)
    report = target.make(Script(), rate_limit=10).send(items)
    assert target.clock.sleeps == pytest.approx([0.1, 0.1])
    assert report.throttled_seconds == pytest.approx(0.2) and report.requests == 3


def test_replay_delivery_counts_upstream_refusals_as_dead_lettered_not_forwarded(tmp_path, monkeypatch):
    script = Script(httpx.Response(400, json={"success": False, "message": "invalid"}))
    monkeypatch.setattr(quarantine_commands, "Upstream",
                        lambda config: Upstream(config, transport=script.transport))
    dead_letter = tmp_path / "upstream-dead.jsonl"
    config = parse_config({"upstream": {"url": "http://upstream.test", "write_key": "wk",
                                        "dead_letter": str(dead_letter)}})
    bodies = [message for _, message in Target("upstream", tmp_path).items(2)]
    (tmp_path / "forwarded.jsonl").write_bytes(b"".join(orjson.dumps(b) + b"\n" for b in bodies))
    done = quarantine_commands.deliver(config, tmp_path, [None, None])
    assert (done["upstream_forwarded"], done["upstream_dead_lettered"]) == (0, 2)
    assert [rec["forwarded"] for rec in DeadLetterFile(dead_letter).records()] == bodies
    assert quarantine_commands.summary_line(1, DeadLetterFile(dead_letter).records()[0]).endswith(
        "\ttrack\trefused (HTTP 400)")


def test_upstream_dead_letter_has_a_default():
    assert parse_config({}).upstream.dead_letter == "groupspec-upstream-dead-letter.jsonl"
