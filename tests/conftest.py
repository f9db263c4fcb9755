"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cio_standin import CioStandin


@pytest.fixture
def cio() -> Iterator[CioStandin]:
    """A started local stand-in for Customer.io's Track API v2 (tests/cio_standin.py), stopped afterwards."""
    with CioStandin() as standin:
        yield standin
