"""`groupspec store compact`: remove from the store what `[store] retention` no longer keeps, and say what went
and what is left."""

from __future__ import annotations

import argparse
import time

from groupspec.middleware import ConfigError, load_config, open_store


def compact(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if config.retention_seconds is None:
        raise ConfigError(f"{config.path}: store.retention: expected a duration (e.g. \"90d\") to compact by, "
                          "none is configured")
    store = open_store(config.store_url("live", args.store))
    try:
        removed = store.compact(time.time() - config.retention_seconds)
        size = store.size()
    finally:
        store.close()
    print("kind\tremoved\tkept")
    for kind in size:
        print(f"{kind}\t{removed.get(kind, 0)}\t{size[kind]}")
    return 0
