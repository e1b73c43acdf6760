"""History at scale (issue 17): reads beside the writer, budgets, the conversations
table, purges in steps, and a failing disk said once. Real SQLite files, real threads."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from corehelpers import START
from storehelpers import event, fill, msgid, said

from salon.errors import QueryTooBroad
from salon.store.base import HistoryEvent, HistoryQuery, SearchQuery, dm_key
from salon.store.sqlite import SQLiteStore

# ---------------------------------------------------------------------------- readers


def test_reads_see_rows_not_indexed_yet(tmp_path: Path) -> None:
    """Rows are indexed in batches after their commit; a reader (which never writes)
    finds the rows since the last batch by id: windows, msgids, TARGETS and search."""
    store = SQLiteStore(tmp_path / "salon.db")
    fill(store, [said(i, "#a", f"old {i}") for i in range(1, 6)])
    store.index_pending()
    fill(store, [said(i, "#a", f"new {i}") for i in range(6, 9)])
    reader = store.reader()
    assert reader is not None
    with reader.transaction():
        window = reader.history(HistoryQuery("#a", limit=4))
        assert [e.text for e in window] == ["old 5", "new 6", "new 7", "new 8"]
        position = reader.history_position("#a", msgid(7))
        assert position is not None
        before = reader.history(HistoryQuery("#a", end=position[0], end_seq=position[1], limit=2))
        assert [e.text for e in before] == ["old 5", "new 6"]
        assert reader.history_targets(["#a"], 0, math.inf, 10) == [("#a", START + 8)]
        found = reader.search_history(SearchQuery("new", ("#a",), limit=10))
        assert [e.text for e in found] == ["new 6", "new 7", "new 8"]
        assert [e.text for e in reader.search_history(SearchQuery("ol", ("#a",), limit=2))] == [
            "old 4",
            "old 5",
        ]
    count = store.conn.execute("SELECT COUNT(*) FROM history_by_target").fetchone()[0]
    assert count == 5  # the reader wrote nothing
    reader.close()
    store.close()


def test_targets_come_from_the_conversations_table(tmp_path: Path) -> None:
    """TARGETS: one row per conversation with its last message (joins do not count), kept
    by the indexing; a private conversation only from the reader's floor on."""
    store = SQLiteStore(tmp_path / "salon.db")
    dm = dm_key("alice", "bob")
    fill(
        store,
        [
            said(1, "#a", "hi"),
            said(2, dm, "psst"),
            said(3, "#b", "yo"),
            event(4, "#a")._replace(msgid="j4", command="JOIN", params=("#a",), time=START + 4),
        ],
    )
    store.index_pending()
    rows = store.conn.execute("SELECT target, last, messages FROM conversations ORDER BY target")
    assert [tuple(r) for r in rows] == [
        ("#a", START + 1, 1),
        ("#b", START + 3, 1),
        (dm, START + 2, 1),
    ]
    targets = ["#a", "#b", dm, "#none"]
    assert store.history_targets(targets, 0, math.inf, 10) == [
        ("#a", START + 1),
        (dm, START + 2),
        ("#b", START + 3),
    ]
    assert store.history_targets(targets, START + 1.5, math.inf, 1) == [(dm, START + 2)]
    assert store.history_targets(targets, 0, math.inf, 10, private_since=START + 2.5) == [
        ("#a", START + 1),
        ("#b", START + 3),
    ]
    store.close()


# ---------------------------------------------------------------------------- budgets


def big_store(tmp_path: Path, budget: float) -> SQLiteStore:
    """60,000 rows: "common" in every row of #big, "zebra" only in #big; #small's rows
    say neither."""
    store = SQLiteStore(tmp_path / "salon.db", query_budget=budget)
    rows = [said(i, "#big", f"common zebra {i}") for i in range(60000)]
    rows += [said(60000 + i, "#small", f"quiet {i}") for i in range(50)]
    fill(store, rows)
    store.index_pending()
    return store


def ticking(store: SQLiteStore) -> None:
    """The store's clock moves a millisecond at every look, whatever the machine's load."""
    ticks = [0.0]

    def clock() -> float:
        ticks[0] += 0.001
        return ticks[0]

    store.clock = clock  # type: ignore[method-assign]


@pytest.mark.parametrize("detail", ["none", "full"])
def test_a_word_of_several_tokens_through_the_search_index(tmp_path: Path, detail: str) -> None:
    """A big conversation is searched through the search index first. That index keeps no
    token positions (detail=none; a database from before keeps its full one): a word of
    several tokens ("x-ray") finds the rows with those tokens anywhere, and only those
    with them one after the other are kept."""
    store = SQLiteStore(tmp_path / "salon.db", query_budget=3600)  # no walk cut short
    texts = ["x-ray of a bone", "a ray of x", "an x-rayed bone", "plain text"]
    fill(store, [said(i, "#big", f"{texts[i % 4]} {i}") for i in range(2400)])
    if detail == "full":
        store.conn.executescript(
            "DROP TABLE history_fts;"
            " CREATE VIRTUAL TABLE history_fts USING fts5(text, content='history',"
            " content_rowid='id', tokenize='unicode61', columnsize=0);"
            " INSERT INTO history_fts (history_fts) VALUES ('rebuild');"
        )
    store.index_pending()
    fts = store.conn.execute("SELECT sql FROM sqlite_master WHERE name = 'history_fts'")
    assert ("detail=none" in fts.fetchone()[0]) == (detail == "none")
    reader = store.reader()
    assert reader is not None
    statements: list[str] = []
    reader.conn.set_trace_callback(statements.append)

    def search(text: str, limit: int = 10) -> list[str]:
        query = SearchQuery(text, ("#big",), limit=limit)
        assert not reader.scan_first(query)
        with reader.transaction():
            return [e.text for e in reader.search_history(query)]

    # The index's matches are enough (as many as the limit, or every match seen): no
    # conversation is scanned.
    newest = [f"{texts[i % 4]} {i}" for i in range(2380, 2400) if i % 4 in (0, 2)]
    assert search("x-ray") == newest
    assert search("x-ray bone") == [f"x-ray of a bone {i}" for i in range(2360, 2400, 4)]
    assert search("ray x", 2) == ["x-ray of a bone 2396", "a ray of x 2397"]  # any order
    assert search("x-rayed", 2) == ["an x-rayed bone 2394", "an x-rayed bone 2398"]
    assert search("bone x-ra", 2) == ["x-ray of a bone 2396", "an x-rayed bone 2398"]
    assert search("ray-x") == []
    assert search("x-ray -") == []
    assert not any("history_by_target" in s for s in statements)
    reader.close()
    store.close()


def test_a_search_that_finds_nothing_in_its_budget_is_too_broad(tmp_path: Path) -> None:
    """Every match of the word is in a conversation the asker may not read, and the
    asker's own conversation is big too: both plans run out of the budget."""
    store = big_store(tmp_path, budget=0.01)
    fill(store, [said(80000 + i, "#mine", f"plain {i}") for i in range(60000)])
    store.index_pending()
    ticking(store)
    with pytest.raises(QueryTooBroad):
        store.search_history(SearchQuery("zebra", ("#mine", "#elsewhere"), limit=100))
    store.query_budget = 3600
    assert store.search_history(SearchQuery("zebra", ("#small",), limit=100)) == []
    store.close()


def test_a_search_over_budget_returns_the_newest_matches_it_found(tmp_path: Path) -> None:
    store = big_store(tmp_path, budget=0.05)
    ticking(store)
    found = store.search_history(SearchQuery("common", ("#big",), limit=50000))
    assert 0 < len(found) < 60000
    newest = [e.msgid for e in found]
    assert newest == [msgid(i) for i in range(60000 - len(found), 60000)]
    store.close()


def test_a_search_in_a_small_channel_scans_it_not_the_network(tmp_path: Path) -> None:
    """The asker's one small channel: its rows are matched, not the network's matches
    filtered, so even a tiny budget is enough."""
    store = big_store(tmp_path, budget=5)
    fill(store, [said(70000, "#small", "a common word here")])
    store.index_pending()
    assert store.scan_first(SearchQuery("common", ("#small",), limit=100))
    assert not store.scan_first(SearchQuery("common", ("#big",), limit=100))
    found = store.search_history(SearchQuery("common", ("#small",), limit=100))
    assert [e.text for e in found] == ["a common word here"]
    store.close()


def test_a_budget_that_ends_in_a_scans_write_leaves_the_reader_working(tmp_path: Path) -> None:
    """A search scans a small conversation's chunks through a temporary index, which it
    writes. SQLite rolls back the whole transaction when it interrupts a write inside
    one: the read's snapshot is gone, and its end must not fail (once, at 10M messages, a
    search in a small channel answered INTERNAL_ERROR: "cannot commit - no transaction is
    active")."""
    store = SQLiteStore(tmp_path / "salon.db")
    texts = [f"the word {i}" if i % 50 == 0 else f"plain {i}" for i in range(1500)]
    fill(store, [said(i, "#small", text) for i, text in enumerate(texts)])
    store.index_pending()
    reader = store.reader()
    assert reader is not None
    statements: list[str] = []
    reader.conn.set_trace_callback(statements.append)
    write = "INSERT INTO temp.scan_fts (rowid, text)"

    def clock() -> float:
        # The budget runs out as the scan writes its rows into its temporary index.
        return math.inf if statements and write in statements[-1] else 0.0

    reader.clock = clock  # type: ignore[method-assign]
    query = SearchQuery("word", ("#small",), limit=100)
    assert reader.scan_first(query)
    with pytest.raises(QueryTooBroad), reader.transaction():
        reader.search_history(query)
    assert any(write in s for s in statements)
    reader.conn.set_trace_callback(None)
    reader.clock = lambda: 0.0  # type: ignore[method-assign]
    with reader.transaction():
        assert len(reader.search_history(query)) == 30
    reader.close()
    store.close()


# ---------------------------------------------------------------------------- purges


def test_purges_go_in_bounded_steps(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "salon.db")
    events = [said(i, f"#c{i % 3}", f"t{i}") for i in range(90)]
    fill(store, events)
    steps = []
    after = ""
    while True:
        with store.transaction():
            step = store.purge_step(START + 60, None, ("#c2",), after, most=7)
        steps.append(step.removed)
        assert step.removed <= 7
        if step.next is None:
            break
        after = step.next
    assert sum(steps) == 40 and len(steps) >= 6  # 20 of #c0 and 20 of #c1, in steps of 7
    left = store.conn.execute("SELECT target, COUNT(*) FROM history GROUP BY target")
    assert sorted(tuple(r) for r in left) == [("#c0", 10), ("#c1", 10), ("#c2", 30)]
    # The end of a conversation's history is the end of its row in the table.
    with store.transaction():
        assert store.purge_history(math.inf, "#c0") == 10
    targets = [r[0] for r in store.conn.execute("SELECT target FROM conversations")]
    assert sorted(targets) == ["#c1", "#c2"]
    store.conn.execute("PRAGMA integrity_check").fetchall()
    store.close()


def test_a_purge_counts_off_only_the_messages_it_deletes(tmp_path: Path) -> None:
    """The conversations table counts PRIVMSG, NOTICE and TAGMSG: a purge that deletes
    JOINs too takes only its messages off the count."""
    store = SQLiteStore(tmp_path / "salon.db")
    joins = [
        event(i, "#a")._replace(msgid=f"j{i}", command="JOIN", params=("#a",), time=START + i)
        for i in range(0, 40, 2)
    ]
    messages = [said(i, "#a", f"t{i}") for i in range(1, 40, 2)]
    fill(store, sorted([*joins, *messages], key=lambda e: e.time))
    store.index_pending()
    with store.transaction():
        assert store.purge_step(START + 20, None, ()).removed == 20  # 10 joins, 10 messages
    row = store.conn.execute("SELECT messages FROM conversations WHERE target = '#a'")
    assert row.fetchone()[0] == 10
    store.close()


def test_a_purge_deletes_in_bites_with_the_search_index_merging_apart(tmp_path: Path) -> None:
    """A purge is never one big DELETE: each statement that deletes history names at most
    PURGE_BITE rows. FTS5's automerge is off while they run (its merge work would go into
    them) and back to what it was after, and the search index stays right."""
    from salon.store.sqlite import AUTOMERGE_DEFAULT, PURGE_BITE

    store = SQLiteStore(tmp_path / "salon.db")
    fill(store, [said(i, f"#c{i % 4}", f"word{i % 7} t{i}") for i in range(400)])
    store.index_pending()
    store.conn.execute("INSERT INTO history_fts (history_fts, rank) VALUES ('automerge', 7)")
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)
    with store.transaction():
        step = store.purge_step(START + 300, None, ())
    store.conn.set_trace_callback(None)
    assert step.removed == 300 and step.next is None
    deletes = [i for i, sql in enumerate(statements) if sql.startswith("DELETE FROM history ")]
    assert len(deletes) >= 300 // PURGE_BITE
    for i in deletes:
        assert statements[i].split("(", 1)[1].split(")", 1)[0].count(",") < PURGE_BITE
    config = [(i, sql) for i, sql in enumerate(statements) if "VALUES ('automerge'" in sql]
    assert [sql.rsplit(",", 1)[1] for _, sql in config] == [" 0)", " 7)"]
    assert config[0][0] < deletes[0] and deletes[-1] < config[1][0]
    row = store.conn.execute("SELECT v FROM history_fts_config WHERE k = 'automerge'")
    assert row.fetchone()[0] == 7
    # A process that died while it was off: the next open turns it back on.
    store.conn.execute("INSERT INTO history_fts (history_fts, rank) VALUES ('automerge', 0)")
    store.close()
    store = SQLiteStore(tmp_path / "salon.db")
    row = store.conn.execute("SELECT v FROM history_fts_config WHERE k = 'automerge'")
    assert row.fetchone()[0] == AUTOMERGE_DEFAULT
    store.conn.execute("INSERT INTO history_fts (history_fts) VALUES ('integrity-check')")
    found = store.search_history(SearchQuery("word3", ("#c0", "#c1", "#c2", "#c3"), limit=100))
    assert sorted(e.text for e in found) == sorted(
        f"word3 t{i}" for i in range(300, 400) if i % 7 == 3
    )
    store.close()


def test_a_purge_step_merges_a_search_index_that_fell_behind(tmp_path: Path) -> None:
    """With PURGE_MERGE_BEHIND segments or more on a level of the search index, a step
    only merges (it would otherwise end in FTS5's merge of a whole level in one
    statement); the next steps delete."""
    from salon.store.sqlite import PURGE_MERGE_BEHIND, fts_levels

    store = SQLiteStore(tmp_path / "salon.db")
    store.conn.execute("INSERT INTO history_fts (history_fts, rank) VALUES ('automerge', 0)")
    for n in range(PURGE_MERGE_BEHIND + 2):
        fill(store, [said(10 * n + i, "#c", f"word{i} t{n}") for i in range(10)])
        store.index_pending()  # a transaction, a segment

    def levels() -> list[int]:
        block = store.conn.execute("SELECT block FROM history_fts_data WHERE id = 10")
        counted = fts_levels(block.fetchone()[0])
        assert counted is not None
        return counted

    assert max(levels()) >= PURGE_MERGE_BEHIND
    segments = store.conn.execute("SELECT COUNT(DISTINCT segid) FROM history_fts_idx")
    assert sum(levels()) == segments.fetchone()[0]
    with store.transaction():
        assert store.purge_step(START + 50, None, (), "#a") == (0, "#a")
    assert max(levels()) < PURGE_MERGE_BEHIND
    with store.transaction():
        assert store.purge_step(START + 50, None, (), "#a").removed == 50
    store.conn.execute("INSERT INTO history_fts (history_fts) VALUES ('integrity-check')")
    store.close()


def test_a_purge_step_gives_way_to_a_waiting_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a call waits for the writer, a step deletes one bite and ends; the steps
    still remove everything, and the conversations table and the search index stay
    right (ids deleted in order, across conversations)."""
    from salon.store import sqlite as sqlite_store

    monkeypatch.setattr(sqlite_store, "PURGE_BITE", 4)
    store = SQLiteStore(tmp_path / "salon.db")
    fill(store, [said(i, f"#c{i % 3}", f"word{i % 5} t{i}") for i in range(60)])
    store.index_pending()
    waiting = [False]
    store.yield_to(lambda: waiting[0])
    with store.transaction():
        first = store.purge_step(START + 30, None, ())
    assert first.removed == 30 and first.next is None  # nothing waits: one step
    fill(store, [said(i, f"#c{i % 3}", f"word{i % 5} t{i}") for i in range(60, 90)])
    store.index_pending()
    waiting[0] = True
    steps = []
    after = ""
    while True:
        with store.transaction():
            step = store.purge_step(START + 75, None, (), after)
        steps.append(step.removed)
        if step.next is None:
            break
        after = step.next
    assert max(steps) == 4 and sum(steps) == 45
    left = store.conn.execute("SELECT target, COUNT(*) FROM history GROUP BY target")
    counts = sorted(tuple(r) for r in left)
    assert counts == [("#c0", 5), ("#c1", 5), ("#c2", 5)]
    table = store.conn.execute("SELECT target, messages FROM conversations ORDER BY target")
    assert [tuple(r) for r in table] == counts
    store.conn.execute("INSERT INTO history_fts (history_fts) VALUES ('integrity-check')")
    found = store.search_history(SearchQuery("word1", ("#c0", "#c1", "#c2"), limit=100))
    assert sorted(e.text for e in found) == ["word1 t76", "word1 t81", "word1 t86"]
    store.close()


def test_a_purge_keeps_the_wal_bounded_and_its_space_is_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 17, point 5. A purge of three quarters of the history in steps, as the
    server runs it: the checkpoints (store.checkpoint, here every CHECKPOINT_EVERY steps
    on this thread, as the checkpointing thread would between them) keep the WAL within
    WAL_LIMIT and one step's writes, also when nothing else writes. Then as many new rows
    again: they go into the pages the purge freed (SQLite's freelist), the file does not
    grow by more than a small part of them."""
    from salon.store import sqlite as sqlite_store

    limit = 1 << 20
    monkeypatch.setattr(sqlite_store, "WAL_LIMIT", limit)  # read at open (journal_size_limit)
    path = tmp_path / "salon.db"
    store = SQLiteStore(path)
    store.checkpoints_elsewhere()  # as under the storage thread: no checkpoint on commit
    words = ["apple", "banana", "cherry", "delta", "echo", "fox", "golf", "hotel"]

    def rows(first: int, count: int) -> None:
        for at in range(first, first + count, 2000):
            fill(store, [
                said(i, f"#c{i % 20}", f"{words[i % 8]} {words[i * 7 % 8]} {i} " + "x" * (i % 50))
                for i in range(at, min(at + 2000, first + count))
            ])  # fmt: skip
            store.index_pending()

    def on_disk() -> int:
        """The database file and its WAL, after a checkpoint that empties the WAL."""
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return path.stat().st_size + store._wal_bytes()

    total, purged = 20000, 15000
    rows(0, total)
    full = on_disk()
    checkpoint_every = 5
    steps, after, wal, step_writes = 0, "", 0, 0
    while True:
        before = store._wal_bytes()
        with store.transaction():
            step = store.purge_step(START + purged, None, (), after)
        steps += 1
        wal = max(wal, store._wal_bytes())
        step_writes = max(step_writes, store._wal_bytes() - before)
        if steps % checkpoint_every == 0:
            store.checkpoint()
        if step.next is None:
            break
        after = step.next
        assert steps < 1000, "the purge stalls"
    assert store.conn.execute("SELECT COUNT(*) FROM history").fetchone()[0] == total - purged
    # Steps of PURGE_CHUNK events each, the checkpoints every few: without the wait for
    # the checkpoints (purge_step) the WAL held several steps' writes.
    assert steps > checkpoint_every
    assert wal <= limit + step_writes, (wal, step_writes)
    emptied = on_disk()
    free = store.conn.execute("PRAGMA freelist_count").fetchone()[0]
    freed = free * store.conn.execute("PRAGMA page_size").fetchone()[0]
    assert freed > full / 2  # most of the history's pages, free in the file
    rows(total, purged)
    refilled = on_disk()
    assert refilled - emptied < freed / 4, (full, emptied, freed, refilled)
    store.conn.execute("INSERT INTO history_fts (history_fts) VALUES ('integrity-check')")
    store.close()


# ---------------------------------------------------------------------------- outages


# ---------------------------------------------------------------------------- rows

# The history table as databases made before the sender column was dropped have it.
OLD_HISTORY = """
CREATE TABLE history (
    id INTEGER PRIMARY KEY, msgid TEXT NOT NULL, time REAL NOT NULL, target TEXT NOT NULL,
    command TEXT NOT NULL, source TEXT NOT NULL, sender TEXT NOT NULL, account TEXT,
    params TEXT NOT NULL, tags TEXT NOT NULL, display TEXT NOT NULL, party TEXT NOT NULL,
    text TEXT NOT NULL, dest TEXT NOT NULL DEFAULT ''
);
INSERT INTO history VALUES
    (1, 'old1', 1000.0, '#c', 'PRIVMSG', 'Bob!b@h', 'bob', NULL, '', '', '', '',
     'apple from before', '#C');
"""


def every_kind_of_row(base: int) -> list[HistoryEvent]:
    """One event of each shape the store writes (sqlite._row)."""
    at = START + base
    dm = dm_key("alice", "bob")
    plain = said(base, "#c", "apple plain", at)
    return [
        plain,
        plain._replace(msgid=msgid(base + 1, at), params=("#C", "apple cased")),
        plain._replace(
            msgid=msgid(base + 2, at), target=dm, params=("bob", "apple dm"), party="alice"
        ),
        plain._replace(msgid=msgid(base + 3, at), command="NOTICE", params=("#c", "apple notice")),
        plain._replace(msgid=msgid(base + 4, at), account="Alice", params=("#c", "apple account")),
        plain._replace(
            msgid=msgid(base + 5, at), tags=(("+draft/reply", "x"),), params=("#c", "apple tagged")
        ),
        plain._replace(msgid=msgid(base + 6, at), command="TOPIC", params=("#c", "apple topic")),
        plain._replace(
            msgid=msgid(base + 7, at),
            target=dm,
            params=("Bob", "apple named"),
            party="alice",
            display="Bob",
        ),
    ]


@pytest.mark.parametrize("old", [False, True])
def test_every_row_reads_back_as_written(tmp_path: Path, old: bool) -> None:
    """Each shape of row, in a new database and in one from before (which keeps its
    sender column and its rows): read back equal, searched by sender, after indexing too."""
    path = tmp_path / "salon.db"
    if old:
        import sqlite3

        conn = sqlite3.connect(path)
        conn.executescript(OLD_HISTORY)
        conn.close()
    store = SQLiteStore(path)
    written = every_kind_of_row(0)
    fill(store, written)
    for indexed in (False, True):
        if indexed:
            store.index_pending()
        for e in written:
            assert store.history_event(e.target, e.msgid) == e
        found = store.search_history(SearchQuery("apple", ("#c",), sender="alice", limit=50))
        assert [e.text for e in found] == [
            "apple plain", "apple cased", "apple notice", "apple account", "apple tagged"
        ]  # fmt: skip
        old_rows = store.search_history(SearchQuery("apple", ("#c",), sender="bob", limit=50))
        assert [(e.source, e.params) for e in old_rows] == (
            [("Bob!b@h", ("#C", "apple from before"))] if old else []
        )
    store.close()


def test_a_renamed_channel_keeps_the_name_each_message_was_sent_to(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "salon.db")
    fill(store, [said(0, "#c", "to the key"), said(1, "#c", "x")._replace(params=("#C", "cased"))])
    with store.transaction():
        store.rename_history("#c", "#d")
    events = store.history(HistoryQuery("#d", limit=10))
    assert [e.params for e in events] == [("#c", "to the key"), ("#C", "cased")]
    store.close()


def test_writes_that_never_pause_keep_the_wal_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flood at the server's limit leaves the checkpointing thread no moment when the
    WAL is copied whole and no write has begun since, so SQLite never starts the WAL over:
    here no checkpoint runs at all but the storage thread's upkeep between transactions
    (maintain), which checkpoints past WAL_CAP_FACTOR times the limit. The WAL stays
    within that and one transaction's writes, and nothing is lost."""
    from salon.store import sqlite as sqlite_store

    limit = 1 << 20
    monkeypatch.setattr(sqlite_store, "WAL_LIMIT", limit)  # read at open (journal_size_limit)
    store = SQLiteStore(tmp_path / "salon.db")
    store.checkpoints_elsewhere()
    wal, one = 0, 0  # the largest WAL, and the most one batch and its indexing wrote
    for batch in range(200):
        before = store._wal_bytes()
        fill(
            store, [said(batch * 50 + i, f"#c{i % 7}", f"word{i} " + "x" * 200) for i in range(50)]
        )
        one = max(one, store._wal_bytes() - before)
        store.maintain()  # indexes the batch, then checkpoints if the WAL is over the cap
        one = max(one, store._wal_bytes() - before)
        wal = max(wal, store._wal_bytes())
    cap = sqlite_store.WAL_CAP_FACTOR * limit
    assert 0 < one < cap / 4
    assert wal <= cap + 2 * one, (wal, cap, one)
    assert store.conn.execute("SELECT COUNT(*) FROM history").fetchone()[0] == 10000
    store.close()


def test_a_purge_waits_while_the_wal_is_over_its_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deleting rewrites the search index: while the WAL is over its limit a step does
    nothing but say where to go on, so the checkpoints catch up."""
    from salon.store import sqlite as sqlite_store

    store = SQLiteStore(tmp_path / "salon.db")
    fill(store, [said(i, "#c", f"t{i}") for i in range(20)])
    store.index_pending()
    monkeypatch.setattr(sqlite_store, "WAL_LIMIT", 0)
    with store.transaction():
        assert store.purge_step(START + 10, None, (), "#a") == (0, "#a")
    assert store.conn.execute("SELECT COUNT(*) FROM history").fetchone()[0] == 20
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with store.transaction():
        assert store.purge_step(START + 10, None, (), "#a").removed == 10
    store.close()
