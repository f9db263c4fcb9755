"""The peer-suite harness (tests/peer/): it hooks every client a suite creates, stubs the network, and makes
an assertion inside a `fail`-overriding TestCase fail again. The suites themselves run in CI
(`python tests/peer/peer_suites.py`, in .ci/run)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PEER = Path(__file__).resolve().parent / "peer"
SUITE = '''
import unittest
import segment.analytics
from segment.analytics.client import Client


class TestClient(unittest.TestCase):
    def fail(self, e, batch=[]):  # as Segment's suite does: on_error, and every failed assertion
        self.failed = True

    def test_assertion_fails_again(self):
        self.assertEqual(1, 2)

    def test_network_is_stubbed(self):
        self.failed = False
        client = Client("testsecret", on_error=self.fail, max_retries=0)
        client.track("u1", "Viewed")
        client.flush()
        assert self.failed is False


def test_every_client_is_hooked():
    hooked = getattr(Client("k", send=False)._enqueue, "gate", None)
    assert (hooked is not None) == ({MODE!r} != "bare")
    if hooked is not None:
        assert hooked.mode == {MODE!r}
'''


@pytest.mark.parametrize("mode", ["bare", "consumer", "inline"])
def test_plugin(tmp_path, mode):
    (tmp_path / "test_suite.py").write_text(textwrap.dedent(SUITE.replace("{MODE!r}", repr(mode))))
    env = dict(os.environ, PYTHONPATH=str(PEER))
    env.pop("GROUPSPEC_PEER_MODE", None)
    if mode != "bare":
        env["GROUPSPEC_PEER_MODE"] = mode
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "peer_plugin",
                           "--rootdir", str(tmp_path), "-rA", str(tmp_path / "test_suite.py")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    out = done.stdout
    assert "FAILED test_suite.py::TestClient::test_assertion_fails_again" in out, out
    assert "PASSED test_suite.py::TestClient::test_network_is_stubbed" in out, out
    assert "PASSED test_suite.py::test_every_client_is_hooked" in out, out
