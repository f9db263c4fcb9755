"""Shared pytest fixtures, and the hypothesis profile: `HYPOTHESIS_PROFILE=long` runs the heavy properties with
their full number of examples (tests/hypothesis_support.py; CI's second pass), the default run with fewer."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from cio_standin import CioStandin
from hypothesis import settings
from hypothesis_support import LONG_PROFILE
from redis_support import redis_cluster  # noqa: F401  (the session's local Redis Cluster, for any test)

settings.register_profile(LONG_PROFILE)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def cio() -> Iterator[CioStandin]:
    """A started local stand-in for Customer.io's Track API v2 (tests/cio_standin.py), stopped afterwards."""
    with CioStandin() as standin:
        yield standin
