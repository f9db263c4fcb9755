"""Shared by the SDK hook's tests: the three SDK modules, a config with a contract, the quarantine they write."""

from __future__ import annotations

from pathlib import Path

import customerio.analytics
import orjson
import rudderstack.analytics
import segment.analytics
from groupspec.middleware.config import parse_config

SDKS = {"segment": segment.analytics, "rudderstack": rudderstack.analytics, "customerio": customerio.analytics}
CONTRACT = {
    "version": "2026-11",
    "group_id_pattern": "^hh_[A-Za-z0-9]+$",
    "require_group": ["Order Placed"],
    "group_traits": {"plan_type": {"type": "string", "enum": ["basic", "family"]}},
}


def make_config(tmp_path: Path, **extra):
    return parse_config({"contract": CONTRACT, "quarantine": {"path": str(tmp_path / "quarantine.jsonl")}, **extra})


def quarantined(tmp_path: Path) -> list[dict]:
    path = tmp_path / "quarantine.jsonl"
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []
