"""Membership stores behind one interface: `open_store("memory://" | "sqlite:///path" | "redis://...")`."""

from __future__ import annotations

from importlib import import_module

from .base import Activity, Lookup, Membership, Store, StoreError
from .urls import EXPECTED, SCHEMES


def open_store(url: str) -> Store:
    """Open the store a URL names (its backend is imported only then)."""
    for scheme, (module, name) in SCHEMES.items():
        if url.startswith(scheme):
            store = getattr(import_module(f".{module}", __name__), name)
            if module == "memory":
                return store()
            return store(url.removeprefix(scheme) if module == "sqlite" else url)
    raise ValueError(f"unknown store url {url!r}: expected {EXPECTED}")


__all__ = ["Activity", "Lookup", "Membership", "Store", "StoreError", "open_store"]
