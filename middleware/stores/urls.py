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
#: the store of a door that `--store` does not name. One rule for every command: an offline run (`replay`,
#: `quarantine replay`, a backfill `--dry-run`) starts from nothing whatever `[store]` says; a command whose job
#: is to change the production store (`serve`, the SDK hook, `backfill`, `quarantine replay --deliver`, `store
#: compact`, `verify`) uses `[store] url`, else this file
DEFAULTS: dict[str, str] = {"offline": "memory://", "live": "sqlite:///groupspec.db"}


def check_url(url: str) -> str:
    """`url` when its scheme is known; ValueError naming the expected forms otherwise."""
    if not any(url.startswith(scheme) for scheme in SCHEMES):
        raise ValueError(EXPECTED)
    return url
