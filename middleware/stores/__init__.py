"""Membership stores behind one interface: `open_store("memory://" | "sqlite:///path" | "redis://...")`."""

from __future__ import annotations

from .base import Activity, Membership, Store, StoreError


def open_store(url: str) -> Store:
    """Open the store a `[store] url` names."""
    if url.startswith("memory://"):
        from .memory import MemoryStore

        return MemoryStore()
    if url.startswith("sqlite:///"):
        from .sqlite import SQLiteStore

        return SQLiteStore(url.removeprefix("sqlite:///"))
    if url.startswith("redis://"):
        from .redis import RedisStore

        return RedisStore(url)
    raise ValueError(f"unknown store url {url!r}: expected memory://, sqlite:///path or redis://host:port/db")


__all__ = ["Activity", "Membership", "Store", "StoreError", "open_store"]
