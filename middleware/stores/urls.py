"""The one registry of store URLs: the schemes groupspec understands and each door's default store."""

from __future__ import annotations

#: scheme -> the module (in this package) and class that open it
SCHEMES: dict[str, tuple[str, str]] = {
    "memory://": ("memory", "MemoryStore"),
    "sqlite:///": ("sqlite", "SQLiteStore"),
    "redis://": ("redis", "RedisStore"),
    "redis+cluster://": ("redis", "RedisStore"),
}
EXPECTED = "memory:// | sqlite:///path | redis://host:port/db | redis+cluster://host:port[,host:port]"
#: the store a door uses when neither `--store` nor `[store] url` names one: offline runs (replay, backfill)
#: start from nothing; live ones (the service, the SDK hook, `quarantine replay --deliver`) share a file
DEFAULTS: dict[str, str] = {"offline": "memory://", "live": "sqlite:///groupspec.db"}


def check_url(url: str) -> str:
    """`url` when its scheme is known; ValueError naming the expected forms otherwise."""
    if not any(url.startswith(scheme) for scheme in SCHEMES):
        raise ValueError(EXPECTED)
    return url
