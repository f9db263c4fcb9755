"""The one exception hierarchy: every error groupspec reports to a person is a `GroupspecError` whose
`exit_code` the command line returns (1: something failed or differs, 2: a usage or config error)."""

from __future__ import annotations


class GroupspecError(Exception):
    """An error with a clear message and no traceback for the user."""

    exit_code = 1
    label = "error"


class ConfigError(GroupspecError):
    """A configuration or a command line that cannot be used; the message names file, key and expectation."""

    exit_code = 2
    label = "config error"


class Unauthorized(ConfigError):
    """A destination (Customer.io, the upstream) refused the credentials: fix the named setting."""


class StoreError(GroupspecError):
    """The store cannot answer (e.g. a Redis outage); the message must not be silently unresolved."""

    label = "store error"
