"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cio_standin import CioStandin
from redis_support import redis_cluster  # noqa: F401  (the session's local Redis Cluster, for any test)


@pytest.fixture
def cio() -> Iterator[CioStandin]:
    """A started local stand-in for Customer.io's Track API v2 (tests/cio_standin.py), stopped afterwards."""
    with CioStandin() as standin:
        yield standin
