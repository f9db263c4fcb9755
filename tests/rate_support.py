"""Measuring a request rate from recorded times."""

from __future__ import annotations


def most_in_one_second(times: list[float]) -> int:
    """The most of `times` falling in any window [t, t + 1 s)."""
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best
