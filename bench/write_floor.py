"""What a durable message costs SQLite at the least (issue 17, point 6).

``python -m bench.write_floor`` writes the same private messages (``--rows``, in
transactions of ``--group`` over ``--conversations`` conversations, a unique word in each
text as in ``python -m bench``'s DM scenario) into fresh databases of several layouts, on
one thread, WAL with ``synchronous=NORMAL``; every ``--every`` transactions the rows that
wait are indexed (search, conversation index) and the WAL checkpointed (PASSIVE), as the
storage threads do under load. It prints the thread's CPU time per
row of each: from a bare table with one INSERT per message up to the store itself
(``SQLiteStore.append_history`` and its batched indexing), so that the floor of a durable
message can be set beside history off's whole cost per message (``python -m bench``).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from salon.store.base import HistoryEvent, dm_key
from salon.store.sqlite import SQLiteStore

TABLE = """
CREATE TABLE history (
    id INTEGER PRIMARY KEY, msgid TEXT NOT NULL, time REAL NOT NULL, target TEXT NOT NULL,
    command TEXT NOT NULL, source TEXT NOT NULL, account TEXT, params TEXT NOT NULL,
    tags TEXT NOT NULL, display TEXT NOT NULL, party TEXT NOT NULL, text TEXT NOT NULL,
    dest TEXT NOT NULL DEFAULT ''
);
"""
FTS = (
    "CREATE VIRTUAL TABLE history_fts USING fts5(text, content='history', content_rowid='id',"
    " tokenize='unicode61', columnsize=0, detail=none);"
)
# The search index as it was before it dropped token positions (detail=full, the default).
FTS_FULL = FTS.replace(", detail=none", "")
BY_TARGET = (
    "CREATE TABLE history_by_target (target TEXT NOT NULL, time REAL NOT NULL,"
    " id INTEGER NOT NULL, PRIMARY KEY (target, time, id)) WITHOUT ROWID;"
)
CLUSTERED = """
CREATE TABLE history (
    target TEXT NOT NULL, time REAL NOT NULL, id INTEGER NOT NULL, msgid TEXT NOT NULL,
    command TEXT NOT NULL, source TEXT NOT NULL, account TEXT, params TEXT NOT NULL,
    tags TEXT NOT NULL, display TEXT NOT NULL, party TEXT NOT NULL, text TEXT NOT NULL,
    dest TEXT NOT NULL DEFAULT '', PRIMARY KEY (target, time, id)
) WITHOUT ROWID;
"""
ROW = "(?, ?, ?, 'PRIVMSG', ?, NULL, '', '', '', ?, ?, ?)"
COLUMNS = "msgid, time, target, command, source, account, params, tags, display, party, text, dest"
CLUSTERED_COLUMNS = (
    "target, time, id, msgid, command, source, account, params, tags, display, party, text, dest"
)
CLUSTERED_ROW = "(?, ?, ?, ?, 'PRIVMSG', ?, NULL, '', '', '', ?, ?, ?)"


def messages(rows: int, conversations: int) -> list[HistoryEvent]:
    """Private messages as the DM scenario sends them: pairs of users, a unique word each."""
    pairs = [(f"user{2 * i}", f"user{2 * i + 1}") for i in range(conversations)]
    start = time.time() - 3600
    out = []
    for i in range(rows):
        a, b = pairs[i % conversations]
        text = f"hello there, this is message w{i:x} of the benchmark"
        msgid = f"{int((start + i / 1000) * 1000):011x}abcd{i:x}"
        out.append(
            HistoryEvent(
                msgid, start + i / 1000, dm_key(a, b), "PRIVMSG", f"{a}!~{a}@host", None,
                (b, text), (), "", a,
            )
        )  # fmt: skip
    return out


def connect(path: Path, schema: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA cache_size=-32768")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.executescript(schema)
    return conn


Writer = Callable[[list[HistoryEvent]], None]


def layout(name: str, path: Path) -> tuple[Writer, Callable[[], None], Callable[[], None]]:
    """(write a transaction's events, index what waits, checkpoint) for one layout."""
    if name == "store":
        store = SQLiteStore(path)
        store.checkpoints_elsewhere()

        def write_store(events: list[HistoryEvent]) -> None:
            with store.transaction():
                store.append_history(events)

        def index_store() -> None:
            store.index_pending()

        def checkpoint_store() -> None:
            store.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

        return write_store, index_store, checkpoint_store
    clustered = name.startswith("clustered")
    schema = CLUSTERED if clustered else TABLE
    if name in ("table+fts", "table+fts+by_target"):
        schema += FTS
    if name == "table+fts_full":
        schema += FTS_FULL
    if name == "table+fts+by_target":
        schema += BY_TARGET
    if name == "clustered+id":
        schema += "CREATE UNIQUE INDEX history_id ON history (id);"
    conn = connect(path, schema)
    marks: dict[int, str] = {}
    ids = itertools.count(1)
    indexed = [0]

    def write(events: list[HistoryEvent]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        if name == "executemany":
            conn.executemany(
                f"INSERT INTO history ({COLUMNS}) VALUES {ROW}",
                [
                    (e.msgid, e.time, e.target, e.source, e.party, e.params[1], e.params[0])
                    for e in events
                ],
            )
        elif clustered:
            values = [
                v
                for e in events
                for v in (
                    e.target,
                    e.time,
                    next(ids),
                    e.msgid,
                    e.source,
                    e.party,
                    e.params[1],
                    e.params[0],
                )
            ]
            sql = marks.get(-len(events))
            if sql is None:
                sql = f"INSERT INTO history ({CLUSTERED_COLUMNS}) VALUES " + ", ".join(
                    [CLUSTERED_ROW] * len(events)
                )
                marks[-len(events)] = sql
            conn.execute(sql, values)
        else:
            values = [
                v
                for e in events
                for v in (e.msgid, e.time, e.target, e.source, e.party, e.params[1], e.params[0])
            ]
            sql = marks.get(len(events))
            if sql is None:
                sql = f"INSERT INTO history ({COLUMNS}) VALUES " + ", ".join([ROW] * len(events))
                marks[len(events)] = sql
            conn.execute(sql, values)
        conn.execute("COMMIT")

    def index() -> None:
        if "fts" not in name:
            return
        top = int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM history").fetchone()[0])
        upto = top
        if upto <= indexed[0]:
            return
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO history_fts (rowid, text) SELECT id, text FROM history"
            " WHERE id > ? AND id <= ?",
            (indexed[0], upto),
        )
        if "by_target" in name:
            conn.execute(
                "INSERT INTO history_by_target (target, time, id) SELECT target, time, id"
                " FROM history WHERE id > ? AND id <= ? ORDER BY target, time, id",
                (indexed[0], upto),
            )
        conn.execute("COMMIT")
        indexed[0] = upto

    def checkpoint() -> None:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    return write, index, checkpoint


LAYOUTS = (
    "table",
    "executemany",
    "table+fts_full",
    "table+fts",
    "table+fts+by_target",
    "store",
    "clustered",
    "clustered+id",
)


def run(name: str, events: Sequence[HistoryEvent], group: int, every: int) -> float:
    """CPU µs per row of one layout, in a fresh database."""
    with tempfile.TemporaryDirectory(prefix="salon-floor-") as tmp:
        write, index, checkpoint = layout(name, Path(tmp) / "salon.db")
        cpu = time.thread_time()
        for n, start in enumerate(range(0, len(events), group), 1):
            write(list(events[start : start + group]))
            if n % every == 0:
                index()
                checkpoint()
        while True:  # what is left to index, as the storage thread would
            before = time.thread_time()
            index()
            if time.thread_time() - before < 1e-4:
                break
        return (time.thread_time() - cpu) / len(events) * 1e6


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.write_floor", description=__doc__)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--group", type=int, default=275, help="rows per transaction (275)")
    ap.add_argument("--conversations", type=int, default=500)
    ap.add_argument(
        "--every",
        type=int,
        default=10,
        help="transactions between an indexing of every row that waits (a backlog over "
        "storage.FLOOD_ROWS is indexed at once) and a checkpoint (10)",
    )
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--layouts", default=",".join(LAYOUTS))
    args = ap.parse_args(argv)
    names = [n for n in args.layouts.split(",") if n]
    for n in names:
        if n not in LAYOUTS:
            ap.error(f"unknown layout {n!r}; choose from {', '.join(LAYOUTS)}")
    events = messages(args.rows, args.conversations)
    results: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(args.repeat):  # alternating, so that the machine's noise falls on all
        for n in names:
            results[n].append(run(n, events, args.group, args.every))
    print(
        f"CPU µs per row, {args.rows:,} rows in transactions of {args.group} over "
        f"{args.conversations} conversations, {args.repeat} runs (median; all), "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    for n in names:
        runs = results[n]
        print(f"  {n:22} {statistics.median(runs):6.2f}   {', '.join(f'{r:.2f}' for r in runs)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
