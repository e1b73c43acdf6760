"""The SQLite store: one file (WAL) in the data directory.

All calls run on one thread of the shell (see :mod:`salon.net.storage`); writes of one
event-loop turn are grouped in one transaction by :meth:`SQLiteStore.transaction`.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from salon import __version__
from salon.proto.casemap import casefold
from salon.store.base import (
    AccountRecord,
    ChannelRecord,
    FileRecord,
    FileRef,
    HistoryEvent,
    ListRecord,
    PurgeProgress,
    ScramCredentials,
    ServerBan,
    dm_other,
    is_dm,
    purge_all,
)
from salon.store.sqlite_queries import ACTIVITY, DEFAULT_BUDGET, HistoryReads, SQLiteReader

SCHEMA_VERSION = 1
INDEX_SLICE = 1000  # rows indexed per maintain() call by default
WAL_LIMIT = 64 << 20  # bytes the WAL file keeps after a checkpoint
WAL_CAP_FACTOR = 2  # past this many times WAL_LIMIT the writer checkpoints (maintain)
# A purge step removes at most this many events (one transaction of its own), looking at
# most at PURGE_SCAN conversations.
PURGE_CHUNK = 500
PURGE_BITE = 50  # events per DELETE statement: a message that arrives waits for one
PURGE_SECONDS = 0.02  # a step stops looking for, and deleting, events after this long
PURGE_SCAN = 2000
# Seconds by which a row stored after another may be older than it (forget_unordered).
SCAN_SLACK = 60.0
# Bytes of pending terms after which FTS5 writes what it has as a new segment of the search
# index (its default is 1 MiB): a batch of the indexing under load (index_pending, tens of
# thousands of rows) goes in as one segment instead of several, which merges redo.
FTS_HASHSIZE = 8 << 20
# Pages of search index a purge step's merge statement writes at most: FTS5 merges its
# segments in units of pages, and a unit is what a message that arrives may wait for.
PURGE_MERGE_PAGES = 16
PURGE_MERGE_SECONDS = 0.01  # a step merges the search index for at most this long
AUTOMERGE_DEFAULT = 4  # FTS5's automerge when a table sets none
# Segments on one level of the search index that make a purge step merge instead of
# deleting: FTS5 merges a whole level at once, in one statement, when it reaches 16
# (its crisismerge), which in a large index is a long statement.
PURGE_MERGE_BEHIND = 8

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS accounts (
    name_cf TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    scram_salt BLOB,
    scram_iterations INTEGER,
    scram_stored_key BLOB,
    scram_server_key BLOB,
    email TEXT NOT NULL DEFAULT '',
    verified INTEGER NOT NULL DEFAULT 1,
    created REAL NOT NULL,
    certfps TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS channels (
    name_cf TEXT PRIMARY KEY,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS server_bans (
    kind TEXT NOT NULL,
    mask TEXT NOT NULL,
    reason TEXT NOT NULL,
    setter TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL,
    PRIMARY KEY (kind, mask)
);
CREATE TABLE IF NOT EXISTS read_markers (
    account TEXT NOT NULL,
    target TEXT NOT NULL,
    time REAL NOT NULL,
    PRIMARY KEY (account, target)
);
CREATE TABLE IF NOT EXISTS private_channels (
    name_cf TEXT PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS rejoin (
    account TEXT PRIMARY KEY,
    channels TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS metadata (
    account TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (account, key)
);
CREATE TABLE IF NOT EXISTS files (
    id TEXT PRIMARY KEY,
    blob TEXT NOT NULL,
    size INTEGER NOT NULL,
    type TEXT NOT NULL,
    name TEXT NOT NULL,
    owner TEXT NOT NULL,
    owner_nick TEXT NOT NULL,
    created REAL NOT NULL,
    deleted REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS file_refs (
    file TEXT NOT NULL,
    target TEXT NOT NULL,
    msgid TEXT NOT NULL,
    time REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS file_refs_target ON file_refs (target, time);
CREATE INDEX IF NOT EXISTS file_refs_file ON file_refs (file);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY,
    msgid TEXT NOT NULL,
    time REAL NOT NULL,
    target TEXT NOT NULL,
    command TEXT NOT NULL,
    source TEXT NOT NULL,
    account TEXT,
    params TEXT NOT NULL,
    tags TEXT NOT NULL,
    display TEXT NOT NULL,
    party TEXT NOT NULL,
    text TEXT NOT NULL,
    dest TEXT NOT NULL DEFAULT ''
);
-- The conversation index: (target, time, id) of every row up to the mark in fts_state,
-- filled in batches like the search index (see index_pending). An index on history itself
-- would be updated row by row: each new message dirties one leaf page per conversation,
-- and every commit writes those pages to the WAL, which cost more than the row itself
-- when a transaction holds messages of many conversations. Filled in batches, sorted by
-- conversation, one page takes many rows at once.
DROP INDEX IF EXISTS history_target_time;
CREATE TABLE IF NOT EXISTS history_by_target (
    target TEXT NOT NULL,
    time REAL NOT NULL,
    id INTEGER NOT NULL,
    PRIMARY KEY (target, time, id)
) WITHOUT ROWID;
-- Every conversation with its last message (PRIVMSG, NOTICE or TAGMSG; -1 for none) and
-- how many it holds: CHATHISTORY TARGETS reads one row per conversation, and a search
-- estimates what scanning a conversation costs. Kept by the batched indexing (_index).
CREATE TABLE IF NOT EXISTS conversations (
    target TEXT PRIMARY KEY,
    last REAL NOT NULL,
    messages INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS dm_partners (
    party TEXT NOT NULL,
    conversation TEXT NOT NULL,
    partner TEXT NOT NULL,
    PRIMARY KEY (party, conversation)
);
-- No index on msgid: a msgid starts with its millisecond (store.base.msgid_time), so a
-- message is found through history_by_target. Databases from before keep their
-- history_msgid index for the msgids they hold (see HistoryReads.find).
-- columnsize=0: no per-row token counts (only bm25 ranking needs them, and search
-- orders by time); that halves the cost of indexing a row. detail=none: no token
-- positions, only which rows hold a token, which is all a search of words needs; a word
-- of several tokens (a phrase) is matched exactly on the rows found (see
-- HistoryReads._search_index). Databases from before keep their table as it was.
CREATE VIRTUAL TABLE IF NOT EXISTS history_fts USING fts5(
    text, content='history', content_rowid='id', tokenize='unicode61', columnsize=0,
    detail=none
);
-- A vocabulary table once planned searches: counting a common word's rows in it reads
-- the word's whole posting list, which cost more than the search.
DROP TABLE IF EXISTS history_vocab;
DROP TRIGGER IF EXISTS history_ai;
DROP TRIGGER IF EXISTS history_ad;
CREATE TABLE IF NOT EXISTS fts_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    indexed INTEGER NOT NULL
);
INSERT OR IGNORE INTO fts_state (id, indexed) VALUES (1, 0);
-- Rows are indexed (for search, and by conversation) in batches (index_pending), not one
-- by one: one FTS5 insert per message would cost more than the message itself. A deleted
-- row leaves the indexes only if it was indexed. Deleting the newest rows frees their ids
-- for reuse (no AUTOINCREMENT), so the mark comes down with them: the next rows are
-- indexed, and a row that never was is never removed from the index (which would corrupt
-- it).
DROP TRIGGER IF EXISTS history_fts_delete;
DROP TRIGGER IF EXISTS history_fts_remove;
CREATE TRIGGER IF NOT EXISTS history_remove AFTER DELETE ON history BEGIN
    INSERT INTO history_fts (history_fts, rowid, text)
    SELECT 'delete', old.id, old.text
    WHERE old.command IN ('PRIVMSG', 'NOTICE')
      AND old.id <= (SELECT indexed FROM fts_state WHERE id = 1);
    DELETE FROM history_by_target
    WHERE target = old.target AND time = old.time AND id = old.id;
    UPDATE fts_state SET indexed = (SELECT COALESCE(MAX(id), 0) FROM history)
    WHERE id = 1 AND indexed >= old.id
      AND indexed > (SELECT COALESCE(MAX(id), 0) FROM history);
END;
"""

_MESSAGE_COMMANDS = ("PRIVMSG", "NOTICE", "TAGMSG")
_ACTIVE = frozenset(_MESSAGE_COMMANDS)  # the commands sqlite_queries.ACTIVITY names
# A conversation's rows added to what the table holds of it (a new one is inserted).
_MERGE_CONVERSATION = (
    " ON CONFLICT (target) DO UPDATE SET last = MAX(last, excluded.last),"
    " messages = messages + excluded.messages"
)
_UPSERT_CONVERSATION = (
    "INSERT INTO conversations (target, last, messages) VALUES (?, ?, ?)" + _MERGE_CONVERSATION
)


def _varint(data: bytes, at: int) -> tuple[int, int]:
    """SQLite's varint at ``at`` (big-endian groups of 7 bits, the ninth byte whole): its
    value and where the next one starts."""
    value = 0
    for i in range(8):
        byte = data[at + i]
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, at + i + 1
    return (value << 8) | data[at + 8], at + 9


def fts_levels(structure: bytes) -> list[int] | None:
    """The number of segments on each level of an FTS5 index, from its structure record
    (row 10 of the ``_data`` table; fts5_index.c, "Structure record"): a 4-byte cookie,
    then varints: levels, segments, write counter, and for each level the segments in its
    merge, its segments, and for each segment its id, first and last page. None for a
    record of another format (later SQLite versions mark theirs with 0xff after the
    cookie)."""
    try:
        if structure[4] == 0xFF:
            return None
        levels, at = _varint(structure, 4)
        _, at = _varint(structure, at)  # segments
        _, at = _varint(structure, at)  # write counter
        counts = []
        for _ in range(levels):
            _, at = _varint(structure, at)  # in the merge
            segments, at = _varint(structure, at)
            for _ in range(3 * segments):
                _, at = _varint(structure, at)
            counts.append(segments)
    except IndexError:
        return None
    return counts if at == len(structure) else None


def _nobody() -> bool:
    """No call waits for the writer (a store that no storage thread runs)."""
    return False


def _row(e: HistoryEvent) -> tuple[Any, ...]:
    """The values of an event's row; how many there are tells which columns the INSERT
    writes as literals (``_TEMPLATES``)."""
    msgid, time, target, command, source, account, params, tags, display, party = e
    if len(params) == 2 and (command == "PRIVMSG" or command == "NOTICE"):
        # The common row: its two parameters in columns of their own, no JSON.
        dest, text = params
        if not tags and not display:
            if account is not None:
                return (msgid, time, target, command, source, account, party, text, dest)
            if command != "PRIVMSG":
                return (msgid, time, target, command, source, party, text, dest)
            if party:
                return (msgid, time, target, source, party, text, dest)
            if dest == target:
                # A channel named as its key: the row's dest is the target (event_from_row).
                return (msgid, time, target, source, text)
            return (msgid, time, target, source, text, dest)
        return (
            msgid, time, target, command, source, account, party, text, dest, "",
            json.dumps([list(t) for t in tags]) if tags else "", display,
        )  # fmt: skip
    return (
        msgid, time, target, command, source, account, party, "", "",
        json.dumps(list(params)), json.dumps([list(t) for t in tags]) if tags else "", display,
    )  # fmt: skip


# The columns of a row. An INSERT binds a value for some and writes the rest as literals,
# by the number of values a row has: a bound value costs its share of an insert, and a
# bound None three times a string's (the sqlite3 module looks for an adapter for anything
# but a str, int, float or bytearray). A missing account is NULL: a literal in the common
# rows, bound in the rare full ones (12 values). Private and channel messages without an
# account, the bulk of history, bind the fewest: their command is a literal too.
_COLUMNS = "msgid, time, target, command, source, account, party, text, dest, params, tags, display"
_FULL = 12  # the values of a row that binds every column
_TEMPLATES = {
    _FULL: "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    9: "(?, ?, ?, ?, ?, ?, ?, ?, ?, '', '', '')",  # a message from an account
    8: "(?, ?, ?, ?, ?, NULL, ?, ?, ?, '', '', '')",  # a NOTICE, no account
    7: "(?, ?, ?, 'PRIVMSG', ?, NULL, ?, ?, ?, '', '', '')",  # a private one, no account
    6: "(?, ?, ?, 'PRIVMSG', ?, NULL, '', ?, ?, '', '', '')",  # a channel one, no account
    5: "(?, ?, ?, 'PRIVMSG', ?, NULL, '', ?, '', '', '', '')",  # the same, dest = target
}
_INSERT_SIZES = (256, 64, 16, 4, 1)  # rows per INSERT: few statement shapes to cache


@functools.cache
def _insert_sql(rows: int, width: int, sender: bool) -> str:
    """The INSERT of ``rows`` rows of ``width`` values; ``sender``: the table has the
    sender column of databases from before (written empty: reads derive the sender from
    the source, see sqlite_queries.SENDER)."""
    template = _TEMPLATES[width]
    if sender:
        template = template[:-1] + ", '')"
    marks = ", ".join([template] * rows)
    columns = _COLUMNS + ", sender" if sender else _COLUMNS
    return f"INSERT INTO history ({columns}) VALUES {marks}"


class SQLiteStore(HistoryReads):
    """The writer: every write, on the storage thread; reads too when no reader can be had
    (an in-memory database)."""

    # Errors of the storage itself (a full disk, an I/O error, a locked file), not bugs.
    OUTAGES: tuple[type[BaseException], ...] = (sqlite3.OperationalError,)

    def __init__(self, path: Path | str, query_budget: float = DEFAULT_BUDGET) -> None:
        self.path = Path(path)
        self.query_budget = query_budget
        if str(path) != ":memory:" and not self.path.exists():
            # Private messages, password hashes and SCRAM keys: readable by its owner only.
            # SQLite gives the -wal and -shm files the database file's permissions.
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._ckpt: sqlite3.Connection | None = None
        self._waiting: Callable[[], bool] = _nobody
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a committed transaction survives a crash of the process.
        self.conn.execute("PRAGMA synchronous=NORMAL")
        # 32 MB of page cache (SQLite's default is 2 MB): the recent pages of history, its
        # indexes and the search index stay in memory.
        self.conn.execute("PRAGMA cache_size=-32768")
        # A purge or a burst can grow the WAL; once a checkpoint has emptied it, SQLite
        # truncates the file back to this size instead of keeping its largest.
        self.conn.execute(f"PRAGMA journal_size_limit={WAL_LIMIT}")
        self.conn.execute("PRAGMA foreign_keys=ON")
        fill = self._migrate()
        conversations = self._has_table("conversations")
        self.conn.executescript(SCHEMA)
        self.conn.execute(
            "INSERT INTO history_fts (history_fts, rank) VALUES ('hashsize', ?)", (FTS_HASHSIZE,)
        )
        if self._fts_config("automerge", AUTOMERGE_DEFAULT) == 0:
            # A purge step turns automerge off for its deletes and back on after them; a
            # process that died between the two left it off (a start-up purge runs outside
            # a transaction).
            self._fts_command("automerge", AUTOMERGE_DEFAULT)
        if fill:
            # A database from before the conversation index: index what was indexed.
            with self.transaction():
                self.conn.execute(
                    "INSERT INTO history_by_target (target, time, id) SELECT target, time, id"
                    " FROM history WHERE id <= (SELECT indexed FROM fts_state WHERE id = 1)"
                )
        if not conversations:
            # A database from before the conversations table: count what was indexed.
            with self.transaction():
                self._count_conversations(0, self._marks()[0])
        now = str(int(time.time()))
        with self.transaction():
            self.conn.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('created', ?)", (now,)
            )
            self.conn.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('version', ?)", (__version__,)
            )
            self.conn.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema', ?)",
                (str(SCHEMA_VERSION),),
            )
        self._depth = 0
        # The conversations table's share of the rows stored since the last indexing,
        # counted as they are stored: {conversation: [last message's time or -1, messages]}
        # for rows _tally_from (exclusive) to _tally_top, while _tally_valid. The indexing
        # adds it to the table instead of grouping those rows again (see _index).
        self._tally: dict[str, list[Any]] = {}
        self._tally_from = self._tally_top = 0
        self._tally_valid = False

    def _has_table(self, name: str) -> bool:
        row = self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone()
        return row is not None

    def reader(self) -> SQLiteReader | None:
        """A new reader of this database, for another thread; None for an in-memory one."""
        if str(self.path) == ":memory:":
            return None
        return SQLiteReader(self.path, self.query_budget)

    def _migrate(self) -> bool:
        """Bring a database made by an earlier version up to this schema; True when its
        conversation index is to be filled once the schema is in place."""
        columns = {row[1] for row in self.conn.execute("PRAGMA table_info(history)")}
        if columns and "dest" not in columns:
            self.conn.execute("ALTER TABLE history ADD COLUMN dest TEXT NOT NULL DEFAULT ''")
        # Databases from before keep their sender column (dropping it would rewrite the
        # table at start); new rows leave it empty.
        self._sender = "sender" in columns
        tables = {
            row[0] for row in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        return "fts_state" in tables and "history_by_target" not in tables

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        depth = getattr(self, "_depth", 0)
        if depth:
            self._depth = depth + 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._depth = 1
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._tally_valid = False  # it may count rows that are not stored
            # Some errors (a full disk, an I/O error) end the transaction themselves.
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")
        finally:
            self._depth = 0

    def yield_to(self, waiting: Callable[[], bool]) -> None:
        """Let a long write (a purge's step) end early when ``waiting()`` says that a call
        waits for the writer (the storage thread's queue)."""
        self._waiting = waiting

    def checkpoints_elsewhere(self) -> None:
        """Stop checkpointing on commit: :meth:`checkpoint` is called by another thread.

        SQLite copies the WAL back into the database file every 1,000 pages, in the
        commit that crosses the mark, with two fsyncs; a message in that commit waits
        milliseconds for them. A checkpoint on a connection of its own, from another
        thread, runs beside the writer instead (WAL lets writers go on meanwhile).
        """
        self.conn.execute("PRAGMA wal_autocheckpoint=0")

    def checkpoint(self) -> None:
        """PASSIVE checkpoint on the checkpointing connection (any thread but the
        writer's); nothing is written when the WAL has nothing new.

        Never a TRUNCATE (or RESTART) checkpoint here: those hold the writer's lock while
        they run, and the writer's busy wait sleeps in growing steps past its end, so
        messages waited behind them (docs/BENCHMARKS.md, "The purge's long tail"). The WAL
        starts over, and shrinks to journal_size_limit, in the writer's next write after a
        checkpoint that copied all of it (see purge_step for a quiet server)."""
        if self._ckpt is None:
            self._ckpt = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=0
            )
        self._ckpt.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def close(self) -> None:
        if self._ckpt is not None:
            self._ckpt.close()
            self._ckpt = None
        # Leave a database file that holds everything (and an empty WAL).
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.conn.close()

    def meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    # ------------------------------------------------------------------ accounts

    def load_accounts(self) -> list[AccountRecord]:
        out = []
        for row in self.conn.execute("SELECT * FROM accounts"):
            scram = None
            if row["scram_salt"] is not None:
                scram = ScramCredentials(
                    bytes(row["scram_salt"]),
                    int(row["scram_iterations"]),
                    bytes(row["scram_stored_key"]),
                    bytes(row["scram_server_key"]),
                )
            out.append(
                AccountRecord(
                    name=row["name"],
                    password_hash=row["password_hash"],
                    scram=scram,
                    email=row["email"],
                    verified=bool(row["verified"]),
                    created=row["created"],
                    certfps=tuple(json.loads(row["certfps"])),
                )
            )
        return out

    def save_account(self, record: AccountRecord) -> None:
        scram = record.scram
        self.conn.execute(
            "INSERT OR REPLACE INTO accounts (name_cf, name, password_hash, scram_salt,"
            " scram_iterations, scram_stored_key, scram_server_key, email, verified, created,"
            " certfps) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                casefold(record.name),
                record.name,
                record.password_hash,
                scram.salt if scram else None,
                scram.iterations if scram else None,
                scram.stored_key if scram else None,
                scram.server_key if scram else None,
                record.email,
                int(record.verified),
                record.created,
                json.dumps(list(record.certfps)),
            ),
        )

    def delete_account(self, name: str) -> None:
        self.conn.execute("DELETE FROM accounts WHERE name_cf = ?", (casefold(name),))
        self.conn.execute("DELETE FROM metadata WHERE account = ?", (casefold(name),))

    # ------------------------------------------------------------------ channels

    def load_channels(self) -> list[ChannelRecord]:
        out = []
        for row in self.conn.execute("SELECT record FROM channels"):
            data: dict[str, Any] = json.loads(row["record"])
            for key in ("bans", "excepts", "invex"):
                data[key] = tuple(ListRecord(**entry) for entry in data.get(key, []))
            data["access"] = tuple((a, m) for a, m in data.get("access", []))
            data["metadata"] = tuple((k, v) for k, v in data.get("metadata", []))
            out.append(ChannelRecord(**data))
        return out

    def save_channel(self, record: ChannelRecord) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO channels (name_cf, record) VALUES (?, ?)",
            (casefold(record.name), json.dumps(asdict(record))),
        )

    def delete_channel(self, name: str) -> None:
        self.conn.execute("DELETE FROM channels WHERE name_cf = ?", (casefold(name),))

    # ------------------------------------------------------------------ server bans

    def load_server_bans(self) -> list[ServerBan]:
        return [
            ServerBan(
                row["kind"],
                row["mask"],
                row["reason"],
                row["setter"],
                row["created"],
                row["expires"],
            )
            for row in self.conn.execute("SELECT * FROM server_bans")
        ]

    def save_server_ban(self, ban: ServerBan) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO server_bans (kind, mask, reason, setter, created, expires)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (ban.kind, ban.mask, ban.reason, ban.setter, ban.created, ban.expires),
        )

    def delete_server_ban(self, kind: str, mask: str) -> None:
        self.conn.execute("DELETE FROM server_bans WHERE kind = ? AND mask = ?", (kind, mask))

    # ------------------------------------------------------------------ read markers

    def load_read_markers(self) -> list[tuple[str, str, float]]:
        return [
            (row["account"], row["target"], row["time"])
            for row in self.conn.execute("SELECT * FROM read_markers")
        ]

    def set_read_marker(self, account: str, target: str, time: float) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO read_markers (account, target, time) VALUES (?, ?, ?)",
            (account, target, time),
        )

    # ------------------------------------------------------------------ private channels

    def load_private_channels(self) -> list[str]:
        return [row[0] for row in self.conn.execute("SELECT name_cf FROM private_channels")]

    def set_private_channel(self, cf: str, private: bool) -> None:
        if private:
            self.conn.execute("INSERT OR IGNORE INTO private_channels (name_cf) VALUES (?)", (cf,))
        else:
            self.conn.execute("DELETE FROM private_channels WHERE name_cf = ?", (cf,))

    # ------------------------------------------------------------------ metadata

    def load_metadata(self) -> list[tuple[str, str, str]]:
        return [
            (row["account"], row["key"], row["value"])
            for row in self.conn.execute("SELECT account, key, value FROM metadata")
        ]

    def set_metadata(self, account: str, key: str, value: str | None) -> None:
        if value is not None:
            self.conn.execute(
                "INSERT OR REPLACE INTO metadata (account, key, value) VALUES (?, ?, ?)",
                (account, key, value),
            )
        else:
            self.conn.execute("DELETE FROM metadata WHERE account = ? AND key = ?", (account, key))

    # ------------------------------------------------------------------ rejoin

    def load_rejoins(self) -> list[tuple[str, list[str]]]:
        return [
            (row["account"], json.loads(row["channels"]))
            for row in self.conn.execute("SELECT account, channels FROM rejoin")
        ]

    def set_rejoin(self, account: str, channels: Sequence[str]) -> None:
        if channels:
            self.conn.execute(
                "INSERT OR REPLACE INTO rejoin (account, channels) VALUES (?, ?)",
                (account, json.dumps(list(channels))),
            )
        else:
            self.conn.execute("DELETE FROM rejoin WHERE account = ?", (account,))

    # ------------------------------------------------------------------ files

    def load_files(self) -> list[FileRecord]:
        rows = self.conn.execute(
            "SELECT id, blob, size, type, name, owner, created, deleted, owner_nick FROM files"
        )
        return [FileRecord(*row) for row in rows]

    def load_file_refs(self) -> list[FileRef]:
        rows = self.conn.execute("SELECT file, target, msgid, time FROM file_refs")
        return [FileRef(*row) for row in rows]

    def save_file(self, record: FileRecord) -> None:
        r = record
        self.conn.execute(
            "INSERT OR REPLACE INTO files (id, blob, size, type, name, owner, created, "
            "deleted, owner_nick) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (r.id, r.blob, r.size, r.type, r.name, r.owner, r.created, r.deleted, r.owner_nick),
        )

    def forget_file(self, file_id: str) -> None:
        self.conn.execute("DELETE FROM files WHERE id = ?", (file_id,))
        self.conn.execute("DELETE FROM file_refs WHERE file = ?", (file_id,))

    def add_file_refs(self, refs: Sequence[FileRef]) -> None:
        self.conn.executemany(
            "INSERT INTO file_refs (file, target, msgid, time) VALUES (?, ?, ?, ?)", refs
        )

    def delete_file_refs(self, target: str, msgid: str | None = None) -> None:
        if msgid is None:
            self.conn.execute("DELETE FROM file_refs WHERE target = ?", (target,))
        else:
            self.conn.execute(
                "DELETE FROM file_refs WHERE target = ? AND msgid = ?", (target, msgid)
            )

    def delete_refs_of_file(self, file_id: str) -> None:
        self.conn.execute("DELETE FROM file_refs WHERE file = ?", (file_id,))

    # ------------------------------------------------------------------ history

    def append_history(self, events: Sequence[HistoryEvent]) -> None:
        # Several rows per INSERT statement: executemany steps once per row, and the
        # sqlite3 module lets go of the GIL around every step, so a batch of rows made as
        # many GIL hand-overs with the event loop's thread. The values of each run of rows
        # of one width go into one flat list as they are made (ids follow the events).
        #
        # Each row is counted in the tally of the conversations table on the way (see
        # _index). The tally goes on from the last call's when the rows' ids follow its
        # rows' (the ids of new rows are consecutive: one writer, INTEGER PRIMARY KEY); it
        # is valid again only once the rows are stored.
        if not events:
            return
        going_on = self._tally_valid
        self._tally_valid = False
        tally = self._tally
        if not going_on:
            tally.clear()
        runs: list[tuple[int, list[Any]]] = []
        values: list[Any] = []
        width = 0
        full = False  # a row of every column: it may (re)name a private conversation
        for e in events:
            row = _row(e)
            if len(row) != width:
                width = len(row)
                values = []
                runs.append((width, values))
                full = full or width == _FULL
            values += row
            count = tally.get(e[2])
            if count is None:
                count = tally[e[2]] = [-1, 0]
            if e[3] in _ACTIVE:
                count[1] += 1
                if e[1] > count[0]:
                    count[0] = e[1]
        execute = self.conn.execute
        last = 0
        for width, values in runs:
            start, end = 0, len(values)
            for size in _INSERT_SIZES:
                step = size * width
                sql = _insert_sql(size, width, self._sender)
                while end - start >= step:
                    last = execute(sql, values[start : start + step]).lastrowid or 0
                    start += step
        first = last - len(events) + 1
        if not going_on:
            self._tally_from, self._tally_top, self._tally_valid = first - 1, last, True
        elif first == self._tally_top + 1:
            self._tally_top, self._tally_valid = last, True
        if not full:
            return
        partners = []
        for e in events:
            # display is set only on the private messages that (re)name a conversation.
            if e.display and e.party and is_dm(e.target):
                partners.append((e.party, e.target, e.display))
                other = dm_other(e.target, e.party)
                partners.append((other, e.target, e.source.split("!", 1)[0]))
        if partners:
            self.conn.executemany(
                "INSERT OR REPLACE INTO dm_partners (party, conversation, partner)"
                " VALUES (?, ?, ?)",
                partners,
            )

    def rename_history(self, old: str, new: str) -> None:
        self.index_pending()
        self._tally_valid = False
        # A message row with an empty dest was addressed to its target (_row): it keeps
        # the name it was sent to.
        self.conn.execute(
            "UPDATE history SET target = ?,"
            " dest = CASE WHEN dest = '' AND params = '' THEN target ELSE dest END"
            " WHERE id IN (SELECT id FROM history_by_target WHERE target = ?)",
            (new, old),
        )
        self.conn.execute("UPDATE history_by_target SET target = ? WHERE target = ?", (new, old))
        # Into a conversation that may exist already (a channel of that name had history).
        self.conn.execute(
            "INSERT INTO conversations (target, last, messages)"
            " SELECT ?, last, messages FROM conversations WHERE target = ? AND target != ?"
            + _MERGE_CONVERSATION,
            (new, old, new),
        )
        self.conn.execute("DELETE FROM conversations WHERE target = ? AND target != ?", (old, new))

    def redact_history(self, target: str, msgid: str) -> bool:
        row = self.find(target, msgid)
        if row is None:
            return False
        self._delete_event(row["id"], target, row["command"])
        return True

    def forget_unordered(self, since: float, unordered: Callable[[str, float], bool]) -> int:
        """Delete the messages stored since ``since`` that ``unordered(msgid, time)`` says
        the network's order never had (salon.server.cluster.Census: a cluster node killed
        between its commit of a message and its send); return how many. The newest rows
        are looked at, down to the first one older than ``since`` by SCAN_SLACK: rows are
        stored nearly in time order (another node's message once delivered)."""
        rows: list[tuple[int, str, str]] = []
        # Plain tuples, not Rows: the scan may cover a million rows (docs/BENCHMARKS.md,
        # "The never-ordered scan's cost").
        cursor = self.conn.cursor()
        cursor.row_factory = None
        limit = since - SCAN_SLACK
        for row_id, msgid, when, target, command in cursor.execute(
            "SELECT id, msgid, time, target, command FROM history"
            f" WHERE command IN {ACTIVITY} ORDER BY id DESC"
        ):
            if when < limit:
                break
            if unordered(msgid, when):
                rows.append((row_id, target, command))
        for row_id, target, command in rows:
            self._delete_event(row_id, target, command)
        return len(rows)

    def _delete_event(self, row_id: int, target: str, command: str) -> None:
        """Delete one row of history, from the search index and the conversations table
        too."""
        counted = command in _MESSAGE_COMMANDS and row_id <= self._marks()[0]
        self._tally_valid = False  # (it may count the row)
        self.conn.execute("DELETE FROM history WHERE id = ?", (row_id,))
        if counted:
            # It was counted in the conversations table: the conversation's last message
            # may be an earlier one now (CHATHISTORY TARGETS).
            self.conn.execute(
                "UPDATE conversations SET messages = MAX(0, messages - 1), last = COALESCE("
                "(SELECT t.time FROM history_by_target t JOIN history h ON h.id = t.id"
                f" WHERE t.target = ?1 AND h.command IN {ACTIVITY}"
                " ORDER BY t.time DESC, t.id DESC LIMIT 1), -1) WHERE target = ?1",
                (target,),
            )

    def _marks(self) -> tuple[int, int]:
        """(the last row indexed, the last row stored)."""
        done = int(self.conn.execute("SELECT indexed FROM fts_state WHERE id = 1").fetchone()[0])
        top = int(self.conn.execute("SELECT COALESCE(MAX(id), 0) FROM history").fetchone()[0])
        return done, top

    def _index(self, done: int, top: int) -> None:
        """Add rows ``done`` (exclusive) to ``top`` to the full-text and conversation
        indexes, and move the mark."""
        if top <= done:
            return
        with self.transaction():
            self.conn.execute(
                "INSERT INTO history_fts (rowid, text) SELECT id, text FROM history"
                " WHERE id > ? AND id <= ? AND command IN ('PRIVMSG', 'NOTICE')",
                (done, top),
            )
            self.conn.execute(
                "INSERT INTO history_by_target (target, time, id) SELECT target, time, id"
                " FROM history WHERE id > ? AND id <= ? ORDER BY target, time, id",
                (done, top),
            )
            if self._tally_valid and self._tally_from == done and self._tally_top == top:
                # The rows counted as they were stored: no second pass over them.
                self.conn.executemany(
                    _UPSERT_CONVERSATION, [(k, v[0], v[1]) for k, v in self._tally.items()]
                )
                self._tally.clear()
                self._tally_from = top
            else:
                self._count_conversations(done, top)
                if top > self._tally_from:
                    self._tally_valid = False  # the rows it counts are counted now
            self.conn.execute("UPDATE fts_state SET indexed = ? WHERE id = 1", (top,))

    def _count_conversations(self, done: int, top: int) -> None:
        """Rows ``done`` (exclusive) to ``top`` into the conversations table."""
        self.conn.execute(
            "INSERT INTO conversations (target, last, messages)"
            f" SELECT target, MAX(CASE WHEN command IN {ACTIVITY} THEN time ELSE -1 END),"
            f" SUM(command IN {ACTIVITY}) FROM history WHERE id > ? AND id <= ?"
            " GROUP BY target" + _MERGE_CONVERSATION,
            (done, top),
        )

    def _index_older(self, before: float) -> None:
        """Index the rows stored since the last indexing if any is older than ``before``
        (a purge finds rows through the conversation index). A retention purge's rows are
        a year old: indexing the new ones in its step would make the search index write a
        segment of its own when the step's deletes begin (see purge_step)."""
        done, top = self._marks()
        if (
            top > done
            and self.conn.execute(
                "SELECT 1 FROM history WHERE id > ? AND time < ? LIMIT 1", (done, before)
            ).fetchone()
        ):
            self._index(done, top)

    def index_pending(self) -> None:
        """Index every row stored since the last call (before a write that finds rows
        through the indexes; reads read the tail instead)."""
        self._index(*self._marks())

    def maintain(self, most: int = INDEX_SLICE) -> int:
        """Background work (the storage thread calls it between transactions): index at
        most ``most`` of the pending rows, and keep the WAL bounded; return how many rows
        are still pending."""
        done, top = self._marks()
        upto = min(top, done + most)
        self._index(done, upto)
        if self._wal_bytes() > WAL_CAP_FACTOR * WAL_LIMIT:
            self._checkpoint_between_writes()
        return top - upto

    def _checkpoint_between_writes(self) -> None:
        """A checkpoint on the writer's connection, between its transactions.

        SQLite starts the WAL over only in a write that begins after a checkpoint copied
        all of it. Under writes that never pause (a flood at the server's limit) the
        checkpointing thread's checkpoints never end at such a moment: each one ends with
        new frames written meanwhile, and the WAL grows without end. Here nothing is
        written meanwhile, so the checkpoint copies all (unless a read holds an older
        snapshot) and the next write starts the WAL over. It costs the writer's thread
        the copy of what the checkpointing thread has not copied yet, and a sync: only
        past WAL_CAP_FACTOR times the WAL's limit, which a purge (that waits at the
        limit) and traffic that pauses never reach."""
        self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def purge_history(
        self, before: float, target: str | None = None, exclude: Sequence[str] = ()
    ) -> int:
        """Everything :meth:`purge_step` removes, at once (at start, and in tests)."""
        return purge_all(self, before, target, exclude)

    def _forget_if_empty(self, key: str) -> None:
        """A conversation whose every event is gone leaves the conversations table."""
        if not self.conn.execute(
            "SELECT 1 FROM history_by_target WHERE target = ? LIMIT 1", (key,)
        ).fetchone():
            self.conn.execute("DELETE FROM conversations WHERE target = ?", (key,))

    def _fts_config(self, key: str, default: int) -> int:
        row = self.conn.execute("SELECT v FROM history_fts_config WHERE k = ?", (key,)).fetchone()
        return default if row is None else int(row[0])

    def _fts_command(self, key: str, value: int) -> None:
        self.conn.execute("INSERT INTO history_fts (history_fts, rank) VALUES (?, ?)", (key, value))

    def _fts_structure(self) -> bytes | None:
        row = self.conn.execute("SELECT block FROM history_fts_data WHERE id = 10").fetchone()
        return None if row is None else bytes(row[0])

    def _search_index_behind(self) -> bool:
        """Whether a level of the search index holds PURGE_MERGE_BEHIND segments or more."""
        structure = self._fts_structure()
        levels = None if structure is None else fts_levels(structure)
        return bool(levels) and max(levels or [0]) >= PURGE_MERGE_BEHIND

    def _merge_search_index(self) -> bool:
        """Merge work on the search index in units of PURGE_MERGE_PAGES pages, for at most
        PURGE_MERGE_SECONDS and while no call waits (one unit at least): what automerge
        would have done in the purge's statements. Segments of delete markers merged with
        the ones that hold the rows free their pages; segments left to pile up would end
        in a crisis merge of a whole level (FTS5's crisismerge), in one statement.
        Whether there was anything to merge."""
        until = time.monotonic() + PURGE_MERGE_SECONDS
        merged = False
        while True:
            was = self._fts_structure()
            self._fts_command("merge", PURGE_MERGE_PAGES)
            if self._fts_structure() == was:
                return merged  # nothing to merge: no level holds usermerge segments
            merged = True
            if self._waiting() or time.monotonic() > until:
                return merged

    def _wal_bytes(self) -> int:
        try:
            return os.path.getsize(f"{self.path}-wal")
        except OSError:
            return 0

    def purge_step(
        self,
        before: float,
        target: str | None = None,
        exclude: Sequence[str] = (),
        after: str = "",
        most: int = PURGE_CHUNK,
    ) -> PurgeProgress:
        """Remove at most ``most`` events older than ``before``, for at most PURGE_SECONDS:
        of ``target``, or of every conversation from ``after`` on (in key order) but those
        in ``exclude``. Each conversation's old events are found through the conversation
        index (the time limit is checked between conversations), then deleted PURGE_BITE
        at a time (the time limit is checked between bites) with the search index's
        automerge off; the index is then merged in units of its own, while no call waits
        (:meth:`_merge_search_index`). A step only merges while a level of the index holds
        PURGE_MERGE_BEHIND segments."""
        if self._wal_bytes() > WAL_LIMIT:
            # Deleting rows rewrites the search index's segments: let the checkpoints
            # catch up before going on. SQLite starts the WAL over (and truncates it to
            # journal_size_limit) only in a transaction's first write after a checkpoint
            # copied all of it; on a quiet server no message may come to make that write,
            # so the step makes one.
            self.conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('purge_waited', ?)",
                (repr(time.time()),),
            )
            return PurgeProgress(0, after)
        if self._search_index_behind() and self._merge_search_index():
            # Segments of delete markers came faster than the merges after the steps'
            # deletes (cut short when messages wait) merged them: this step only merges.
            return PurgeProgress(0, after)
        deadline = time.monotonic() + PURGE_SECONDS
        self._index_older(before)
        if target is not None:
            keys: list[str] = [target]
        else:
            keys = [
                row[0]
                for row in self.conn.execute(
                    "SELECT target FROM conversations WHERE target >= ? ORDER BY target LIMIT ?",
                    (after, PURGE_SCAN),
                )
            ]
        skip = set(exclude)
        # The events go in two passes: found conversation by conversation, then deleted in
        # the order of their ids. Each deleted message leaves a delete marker in the search
        # index's pending data, and FTS5 writes that data out as a new segment (and merges
        # segments) whenever a row id comes lower than the one before: deleting conversation
        # by conversation did that at every conversation, in the middle of the step.
        #
        # A call that arrives meanwhile for the writer (a message to store) ends the step
        # early, after the bite in hand: it waits for one bite and the commit, no more.
        found: list[tuple[int, str]] = []
        finished: list[str] = []  # conversations whose every event older than ``before`` is found
        stop: str | None = None
        for key in keys:
            if key in skip:
                continue
            want = most - len(found)
            rows = self.conn.execute(
                "SELECT id FROM history_by_target WHERE target = ? AND time < ?"
                " ORDER BY time LIMIT ?",
                (key, before, want),
            ).fetchall()
            found += [(row[0], key) for row in rows]
            if rows and len(rows) < want:
                finished.append(key)
            elif not rows:
                self._forget_if_empty(key)
            if len(found) >= most or time.monotonic() > deadline or self._waiting():
                # On from this one if it may hold more, else from the next.
                stop = key if len(rows) >= want else key + "\0"
                break
        found.sort()
        gone = 0
        # Messages deleted per conversation: the table counts PRIVMSG, NOTICE and TAGMSG
        # only, not the JOINs, PARTs and topics deleted with them.
        counts: collections.Counter[str] = collections.Counter()
        if found:
            # FTS5 does merge work (automerge) whenever it writes out pending data, in
            # proportion to what it writes and to the number of levels of the index, in
            # the statement that writes: in a large index one bite of deletes, or the
            # commit after it, took tens of milliseconds that way. The step's deletes go
            # without it, and the step merges in units of its own afterwards.
            automerge = self._fts_config("automerge", AUTOMERGE_DEFAULT)
            self._fts_command("automerge", 0)
            try:
                while gone < len(found):
                    if gone and (self._waiting() or time.monotonic() > deadline):
                        break
                    bite = ",".join(str(i) for i, _ in found[gone : gone + PURGE_BITE])
                    deleted = self.conn.execute(
                        f"DELETE FROM history WHERE id IN ({bite}) RETURNING target, command"
                    ).fetchall()
                    counts.update(key for key, command in deleted if command in _ACTIVE)
                    gone += PURGE_BITE
            finally:
                # (Each DELETE wrote its delete markers out as a segment of its own when it
                # ended, a statement's savepoint being a sync for FTS5: none wait for the
                # commit, which would do automerge's work for them.)
                self._fts_command("automerge", automerge)
            self._merge_search_index()
        left = {key for _, key in found[gone:]}
        if left:
            # Conversations from the first one with events left on are looked at again.
            stop = min(left) if stop is None else min(stop, *left)
        self.conn.executemany(
            "UPDATE conversations SET messages = MAX(0, messages - ?) WHERE target = ?",
            [(n, key) for key, n in counts.items()],
        )
        for key in finished:
            if key in left:
                continue
            # Every message before ``before`` is gone: a last one older is no more.
            self.conn.execute(
                "UPDATE conversations SET last = -1 WHERE target = ? AND last < ?",
                (key, before),
            )
            self._forget_if_empty(key)
        removed = min(gone, len(found))
        if stop is not None:
            return PurgeProgress(removed, stop)
        if target is not None or len(keys) < PURGE_SCAN:
            return PurgeProgress(removed, None)
        return PurgeProgress(removed, keys[-1] + "\0")


# The name the shell used before the store had its interfaces.
Database = SQLiteStore
