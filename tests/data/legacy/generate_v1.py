"""Writes `store-v1.db`: a SQLite store at format version 1, as groupspec wrote it before group id migrations
(issue 21) made version 2 (no `migrations` / `relationships` tables, no `traits.source` column).
tests/test_formats.py opens it with today's code.

Run it with the code of main at ddd59ea (the merge base of version 2) on the path, e.g.:
    mkdir -p /tmp/v1/groupspec && git archive ddd59ea middleware plugin | tar -x -C /tmp/v1/groupspec
    PYTHONPATH=/tmp/v1 python tests/data/legacy/generate_v1.py tests/data/legacy"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

from groupspec.middleware.stores.sqlite import FORMAT, SQLiteStore

HH = ("household", "hh_1")


def main(folder: Path) -> None:
    assert FORMAT.current == 1, f"run with the code of format version 1, not {FORMAT.current}"
    path = folder / "store-v1.db"
    path.unlink(missing_ok=True)
    store = SQLiteStore(str(path))
    for n, ts in enumerate([100.0, 120.0, 150.0, 200.0], start=1):
        assert store.admit(f"m{n}", ts) == n
    store.link("u:alice", "a:anon1", arrived=2)
    store.record_membership("a:anon1", *HH, 100.0, True, arrived=1)
    store.record_membership("u:bob", *HH, 150.0, True, arrived=3)
    store.record_membership("u:carol", "household", "hh_2", 150.0, True, arrived=3)
    store.apply_traits(*HH, {"plan": "basic", "name": "Smiths"}, 100.0, "m1", arrived=1)
    store.apply_traits(*HH, {"plan": "family"}, 200.0, "m4", arrived=4)
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT kind, version FROM groupspec_format").fetchone() == ("store", 1)
    db.close()
    left = [p.name for p in folder.iterdir() if p.name.endswith(("-wal", "-shm"))]
    assert not left, f"a connection was left open: {left}"


if __name__ == "__main__":
    main(Path(sys.argv[1]))
