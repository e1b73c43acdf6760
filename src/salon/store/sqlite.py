"""The SQLite database in the data directory."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from salon import __version__

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


class Database:
    """One SQLite file (WAL mode). Opened once at start; schema created if missing."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(SCHEMA)
        now = str(int(time.time()))
        self.conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('created', ?)", (now,))
        self.conn.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES ('version', ?)", (__version__,)
        )

    def close(self) -> None:
        self.conn.close()
