"""pytest plugin for running an SDK's own shipped test suite, bare or with groupspec on every client.

Loaded by `peer_suites.py` as `-p peer_plugin`. It
- stubs the network: a request to any host but loopback gets `200 {}` from requests' transport adapter (the
  suites' own mocks of `post` or `_session.post` sit above it and still win);
- with `GROUPSPEC_PEER_MODE=consumer|inline|default`, installs groupspec on every `Client` the suite creates (its
  default-client modules included), with a contract that drops nothing the suites send and a memory store;
- undoes test classes that override `unittest.TestCase.fail` as their `on_error` callback (Segment's
  `TestClient`): that override also receives every failed assertion (`assertEqual` calls `self.fail(msg)`),
  so the assertion passed silently. Here `fail(exception, batch)` still records the error, and
  `fail("message")` raises as unittest means it to.
"""

from __future__ import annotations

import importlib
import os
import tempfile
import unittest
from urllib.parse import urlparse

import pytest
import requests
from requests.adapters import HTTPAdapter

SDKS = ("segment.analytics", "rudderstack.analytics", "customerio.analytics")
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
_send = HTTPAdapter.send


def _stub_send(self, request, *args, **kwargs):
    proxies = kwargs.get("proxies") or {}
    via = {urlparse(p if "://" in p else "http://" + p).hostname for p in proxies.values() if p}
    if urlparse(request.url).hostname in LOOPBACK or via & LOOPBACK:  # a suite's own local server or proxy
        return _send(self, request, *args, **kwargs)
    response = requests.Response()
    response.status_code = 200
    response._content = b"{}"
    response.headers["Content-Type"] = "application/json"
    response.url, response.request, response.encoding = request.url, request, "utf-8"
    return response


def _hook_clients(mode: str) -> None:
    from groupspec.middleware import install
    from groupspec.middleware.config import parse_config

    folder = tempfile.mkdtemp(prefix="groupspec-peer-")
    config = parse_config({"contract": {"version": "peer"},
                           "quarantine": {"path": os.path.join(folder, "quarantine.jsonl")}})
    for name in SDKS:
        try:
            module = importlib.import_module(name + ".client")
        except ImportError:
            continue
        cls = module.Client
        init = cls.__init__

        def hooked_init(self, *args, _init=init, **kwargs):
            _init(self, *args, **kwargs)
            install(self, config, store="memory://", **({} if mode == "default" else {"mode": mode}))

        cls.__init__ = hooked_init


def pytest_configure(config: pytest.Config) -> None:
    HTTPAdapter.send = _stub_send
    mode = os.environ.get("GROUPSPEC_PEER_MODE", "")
    if mode:
        _hook_clients(mode)


def _strict_fail(on_error):
    def fail(self, e=None, *args, **kwargs):
        if isinstance(e, BaseException):  # the suite's on_error(exception, batch)
            return on_error(self, e, *args, **kwargs)
        raise self.failureException(e)

    return fail


def pytest_collection_finish(session: pytest.Session) -> None:
    for item in session.items:
        cls = getattr(item, "cls", None)
        if cls is None or not issubclass(cls, unittest.TestCase):
            continue
        own = cls.__dict__.get("fail")
        if own is not None and not getattr(own, "strict", False):
            strict = _strict_fail(own)
            strict.strict = True
            cls.fail = strict
