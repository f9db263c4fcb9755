"""How many examples a heavy hypothesis property tries: `examples(full)` is a quarter of `full` (at least 10) in
the default run, and `full` under the `long` profile (`HYPOTHESIS_PROFILE=long`, tests/conftest.py), which CI's
second pass uses (`.ci/run`). Every property runs in both; only the number of examples differs."""

from __future__ import annotations

from hypothesis import settings

LONG_PROFILE = "long"


def examples(full: int) -> int:
    if settings.get_current_profile_name() == LONG_PROFILE:
        return full
    return min(full, max(10, full // 4))
