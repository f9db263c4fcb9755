"""The manual in docs/ (issue 18, item 6): it builds as a site with no broken link, anchor or page left out of the
nav, and its tables say what the code does — the violation codes and actions, every configuration key."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from groupspec.middleware.config import (Config, Contract, CustomerIO, Privacy, Quarantine, Service, Source, Store,
                                         Upstream)
from groupspec.middleware.violations import ALLOWED_ACTIONS, DEFAULT_ACTIONS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
#: config table -> its model (`Config`'s fields, `sources.NAME` for each source)
TABLES = {"contract": Contract, "sources.NAME": Source, "customerio": CustomerIO, "store": Store,
          "service": Service, "upstream": Upstream, "quarantine": Quarantine, "privacy": Privacy}


def table_rows(text: str, heading: str) -> list[list[str]]:
    """The cells of the first table under `heading` (a markdown heading line), header and rule left out."""
    section = text.split(heading + "\n", 1)[1]
    rows = []
    for line in section.splitlines():
        if line.startswith("|"):
            rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
        elif rows:
            break
    return rows[2:]


def test_the_site_builds_strictly(tmp_path):
    """`mkdocs build --strict`, as .ci/run runs it: a broken link or anchor, or a page not in the nav, fails."""
    pytest.importorskip("mkdocs")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_a_broken_link_fails_the_build(tmp_path):
    """The strict build really checks links and anchors (mkdocs only reports some of them by default)."""
    pytest.importorskip("mkdocs")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# Home\n\n[a page](missing.md), [a section](#nowhere)\n")
    config = (ROOT / "mkdocs.yml").read_text().split("\nnav:")[0] + "\nvalidation:" + \
        (ROOT / "mkdocs.yml").read_text().split("\nvalidation:")[1]
    (tmp_path / "mkdocs.yml").write_text(config)
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict"], cwd=tmp_path, capture_output=True,
                          text=True)
    assert done.returncode != 0
    assert "missing.md" in done.stderr and "#nowhere" in done.stderr


def test_every_page_is_in_the_nav():
    nav = set(re.findall(r":\s*(\S+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), re.M))
    assert nav == {p.name for p in DOCS.glob("*.md")}


def test_the_violation_table_is_the_code():
    """docs/contract.md's violation table: every code, its default and the actions it may take, as
    middleware/violations.py has them."""
    documented = {}
    for code_cell, _when, default, may_be in table_rows((DOCS / "contract.md").read_text(), "## Contract violations"):
        for code in re.findall(r"`([a-z_]+)`", code_cell):
            documented[code] = (default, {a.strip() for a in may_be.split(",")})
    assert documented == {code: (DEFAULT_ACTIONS[code], set(ALLOWED_ACTIONS[code])) for code in DEFAULT_ACTIONS}


def documented_keys() -> set[str]:
    """Each `table.key` the configuration page's tables name (`a.b`, `c`: `c` takes `a.b`'s table)."""
    keys = set()
    for row in re.findall(r"^\| (`[^|]+)\|", (DOCS / "configuration.md").read_text(), re.M):
        table = None
        for name in re.findall(r"`([^`]+)`", row):
            if "." in name:
                parts = name.split(".")
                width = 2 if parts[0] == "sources" else 1
                table, key = ".".join(parts[:width]), parts[width]
            elif table is None:
                continue
            else:
                key = name
            keys.add(f"{table}.{key}")
    return keys


def test_every_config_key_is_documented():
    """A key added to a config model without a row on docs/configuration.md fails here."""
    assert set(Config.model_fields) - {"path", "missing_env"} == {t.split(".")[0] for t in TABLES}
    expected = {f"{table}.{field}" for table, model in TABLES.items() for field in model.model_fields}
    documented = documented_keys()
    assert expected - documented == set(), "undocumented config keys"
    assert documented - expected == set(), "docs/configuration.md names keys the config does not have"
