"""The control store's persistence: tables of pickled rows in SQLite.

Every mutation is written through, so a restarted head reloads its tables
(nodes, jobs, actors, placement groups, the key-value store, the replies of
applied writes, the most recent ended tasks) from the session directory.
"""

from __future__ import annotations

import pickle
import sqlite3
import threading
from typing import Any


class Storage:
    """A tiny table store: ``put(table, key, row)``, ``delete``, ``load``."""

    def __init__(self, path: str | None) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path or ":memory:", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS rows (tbl TEXT, key TEXT, value BLOB, PRIMARY KEY (tbl, key))")

    def put(self, table: str, key: str, row: Any) -> None:
        blob = pickle.dumps(row, protocol=5)
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO rows VALUES (?, ?, ?)", (table, key, blob))

    def put_many(self, table: str, rows: list[tuple[str, Any]]) -> None:
        """Write several rows in one transaction (a row written again moves to the newest end)."""
        if not rows:
            return
        blobs = [(table, key, pickle.dumps(row, protocol=5)) for key, row in rows]
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany("INSERT OR REPLACE INTO rows VALUES (?, ?, ?)", blobs)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def trim(self, table: str, keep: int) -> int:
        """Delete all but the ``keep`` most recently written rows of ``table``; the number deleted."""
        with self._lock:
            cur = self._db.execute(
                "DELETE FROM rows WHERE tbl = ? AND rowid NOT IN "
                "(SELECT rowid FROM rows WHERE tbl = ? ORDER BY rowid DESC LIMIT ?)", (table, table, keep))
            return cur.rowcount

    def load_ordered(self, table: str) -> list[tuple[str, Any]]:
        """``table``'s rows, oldest written first."""
        with self._lock:
            cur = self._db.execute("SELECT key, value FROM rows WHERE tbl = ? ORDER BY rowid", (table,))
            return [(key, pickle.loads(value)) for key, value in cur.fetchall()]

    def delete(self, table: str, key: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM rows WHERE tbl = ? AND key = ?", (table, key))

    def load(self, table: str) -> dict[str, Any]:
        with self._lock:
            cur = self._db.execute("SELECT key, value FROM rows WHERE tbl = ?", (table,))
            return {key: pickle.loads(value) for key, value in cur.fetchall()}

    def close(self) -> None:
        with self._lock:
            self._db.close()
