"""``salon db import DATA_DIR --dsn DSN``: a data directory's SQLite store copied into an
empty PostgreSQL database (imports psycopg: only the command loads this module).

Everything the store keeps is copied: accounts, registered channels, server bans, read
markers, private channels, rejoins, private-conversation names, and history in id order
with its msgids and times. The data directory's cloaking key becomes the database's, so
cloaked hosts stay what they were.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from salon import datadir
from salon.errors import UsageError
from salon.store.base import HistoryEvent
from salon.store.postgres import CLOAK_KEY, PostgresStore
from salon.store.sqlite import SQLiteStore
from salon.store.sqlite_queries import event_from_row

# The data directory's files (net/runner.py): the database and the cloaking key.
DATABASE = "salon.db"
CLOAK_KEY_FILE = "cloak.key"
CHUNK = 5000  # history rows per transaction (one COPY each)
# The tables that hold what salon keeps, in both stores: what an import counts.
TABLES = (
    "accounts",
    "channels",
    "server_bans",
    "read_markers",
    "private_channels",
    "rejoin",
    "dm_partners",
    "conversations",
    "history",
)


def sqlite_counts(store: SQLiteStore) -> dict[str, int]:
    return {t: int(store.conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in TABLES}


def postgres_counts(store: PostgresStore) -> dict[str, int]:
    out = {}
    for table in TABLES:
        row = store.conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        out[table] = 0 if row is None else int(row[0])
    return out


def _cloak_key(data: Path) -> bytes | None:
    path = data / CLOAK_KEY_FILE
    if not path.exists():
        return None
    try:
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    except (ValueError, UnicodeDecodeError):
        raise UsageError(f"{path}: not a hex secret") from None


def _history(store: SQLiteStore) -> Iterator[list[HistoryEvent]]:
    """Every stored event in id order, in chunks (the rows as written, indexed or not)."""
    last = 0
    while True:
        rows = store.conn.execute(
            "SELECT * FROM history WHERE id > ? ORDER BY id LIMIT ?", (last, CHUNK)
        ).fetchall()
        if not rows:
            return
        last = int(rows[-1]["id"])
        yield [event_from_row(r) for r in rows]


def import_data_dir(
    data: Path, dsn: str, progress: Callable[[str], None] = lambda _: None
) -> dict[str, int]:
    """Copy ``data``'s store into the (empty) database of ``dsn``; the row counts of
    each table, the same in both. Raises UsageError for a data directory or database
    that cannot be used (psycopg.OperationalError when the database cannot be reached)."""
    if not data.is_dir():
        raise UsageError(f"the data directory {data} is not a directory")
    if not (data / DATABASE).is_file():
        raise UsageError(f"{data} has no database ({DATABASE})")
    try:
        lock = datadir.lock(data)  # not behind a running server's back
    except datadir.DataDirBusy as exc:
        raise UsageError(str(exc)) from None
    try:
        cloak = _cloak_key(data)
        source = SQLiteStore(data / DATABASE)
        try:
            target = PostgresStore(dsn, secrets={CLOAK_KEY: cloak} if cloak else None)
            try:
                return _copy(source, target, progress)
            finally:
                target.close()
        finally:
            source.close()
    finally:
        datadir.unlock(lock)


def _copy(
    source: SQLiteStore, target: PostgresStore, progress: Callable[[str], None]
) -> dict[str, int]:
    if any(postgres_counts(target).values()):
        raise UsageError("the database already holds salon data: import into an empty one")
    source.index_pending()  # its conversations table then counts every row
    with target.transaction():
        for record in source.load_accounts():
            target.save_account(record)
        for channel in source.load_channels():
            target.save_channel(channel)
        for ban in source.load_server_bans():
            target.save_server_ban(ban)
        for account, conversation, when in source.load_read_markers():
            target.set_read_marker(account, conversation, when)
        for cf in source.load_private_channels():
            target.set_private_channel(cf, True)
        for account, channels in source.load_rejoins():
            target.set_rejoin(account, channels)
    copied = 0
    for chunk in _history(source):
        target.append_history(chunk)
        copied += len(chunk)
        progress(f"history: {copied} events")
    partners = source.conn.execute("SELECT party, conversation, partner FROM dm_partners")
    with target.transaction():
        for party, conversation, partner in partners:
            # The names as they are now (the history's replayed above named them as they were).
            target.conn.execute(
                "INSERT INTO dm_partners (party, conversation, partner) VALUES (%s, %s, %s)"
                " ON CONFLICT (party, conversation) DO UPDATE SET partner = excluded.partner",
                (party, conversation, partner),
            )
    counts = sqlite_counts(source)
    copied_counts = postgres_counts(target)
    if counts != copied_counts:
        raise RuntimeError(f"import: rows differ: {counts} in SQLite, {copied_counts} copied")
    return counts
