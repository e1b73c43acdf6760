"""History at scale (issue 17): reads beside the writer, budgets, the conversations
table, purges in steps, and a failing disk said once. Real SQLite files, real threads."""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from pathlib import Path
from typing import Any

import pytest
from corehelpers import START, HeldStoreNet, find, make_config, sqlite_net
from test_durability import append, event, until

from salon.errors import QueryTooBroad
from salon.net.storage import Storage, StorageFailed
from salon.server.effects import StoreCall
from salon.store.base import HistoryEvent, HistoryQuery, SearchQuery, dm_key
from salon.store.sqlite import SQLiteStore


def said(i: int, target: str, text: str, when: float | None = None) -> HistoryEvent:
    """Message ``i`` at START + i (or ``when``), with a msgid as the server makes them:
    its millisecond first (store.base.msgid_time)."""
    at = START + i if when is None else when
    return event(i, target)._replace(msgid=msgid(i, at), params=(target, text), time=at)


def msgid(i: int, at: float | None = None) -> str:
    return f"{int((START + i if at is None else at) * 1000):011x}m{i}"


def fill(store: SQLiteStore, events: list[HistoryEvent]) -> None:
    with store.transaction():
        store.append_history(events)


# ---------------------------------------------------------------------------- readers


def test_a_read_does_not_wait_for_the_writer(tmp_path: Path) -> None:
    """A read runs on a reader of its own while the writer is inside a transaction: it
    answers with what was committed before, and the commit is not held up by it."""
    store = SQLiteStore(tmp_path / "salon.db")
    fill(store, [said(1, "#c", "before")])
    inside, release = threading.Event(), threading.Event()

    def slow_write(s: Any) -> bool:
        s.append_history([said(2, "#c", "uncommitted")])
        inside.set()
        assert release.wait(10)
        return True

    read = StoreCall(lambda s: s.history(HistoryQuery("#c", limit=10)), read=True)
    results: dict[int, Any] = {}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        storage = Storage(store, loop, lambda call, result: results.__setitem__(id(call), result))
        try:
            write = StoreCall(slow_write)
            storage.submit([write])
            await until(inside.is_set)
            storage.submit([read])
            await until(lambda: id(read) in results)  # while the writer still waits
            assert id(write) not in results
            release.set()
            await until(lambda: id(write) in results)
        finally:
            release.set()
            storage.stop()

    asyncio.run(main())
    assert [e.text for e in results[id(read)]] == ["before"]
    store.close()


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


def test_targets_is_answered_from_a_reader_on_a_real_core(tmp_path: Path) -> None:
    net = sqlite_net(tmp_path / "salon.db")
    caps = ["draft/chathistory", "batch", "server-time", "message-tags"]
    alice = net.register("alice", caps)
    bob = net.register("bob", caps)
    alice.send("JOIN #c")
    alice.send("PRIVMSG #c :hello")
    alice.send("PRIVMSG bob :private")
    bob.lines()
    alice.lines()
    alice.send(
        "CHATHISTORY TARGETS timestamp=1970-01-01T00:00:00.000Z timestamp=2100-01-01T00:00:00.000Z 10"
    )
    names = [m.params[1] for m in find(alice.messages(), "CHATHISTORY")]
    assert sorted(names) == ["#c", "bob"]


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
    assert not store._walk_cheaper(SearchQuery("common", ("#small",), limit=100))
    found = store.search_history(SearchQuery("common", ("#small",), limit=100))
    assert [e.text for e in found] == ["a common word here"]
    store.close()


def test_search_on_the_core_says_too_broad(tmp_path: Path) -> None:
    """Alice's channel is big, and every match of her word is in another one: walking
    the matches and scanning her channel both cost more than the budget."""
    net = sqlite_net(tmp_path / "salon.db", history={"query_budget": 0.001})
    store: SQLiteStore = net.store  # type: ignore[assignment]
    fill(store, [said(i, "#big", f"common {i}") for i in range(60000)])
    fill(store, [said(60000 + i, "#other", f"zebra {i}") for i in range(60000)])
    store.index_pending()
    alice = net.register("alice", ["batch", "server-time", "message-tags", "soju.im/search"])
    alice.send("JOIN #big")
    alice.lines()
    alice.send("SEARCH text=zebra")
    fails = find(alice.messages(), "FAIL")
    assert [m.params[:2] for m in fails] == [("SEARCH", "TOO_BROAD")]


def test_searches_are_rate_limited_by_the_flood_budget(tmp_path: Path) -> None:
    """Each SEARCH takes more of the sender's flood budget than a line: a client that
    repeats it has its next lines wait, and is never refused."""
    net = sqlite_net(tmp_path / "salon.db", flood={"enabled": True, "rate": 1.0, "burst": 8})
    alice = net.register("alice", ["batch", "server-time", "message-tags", "soju.im/search"])
    alice.lines()
    for _ in range(4):
        alice.send("SEARCH text=x")
    batches = [m for m in alice.messages() if m.command == "BATCH" and m.params[0][0] == "+"]
    assert len(batches) == 2  # 2 x (1 + SEARCH_COST) of 8 tokens; the rest wait
    net.tick(8)
    batches = [m for m in alice.messages() if m.command == "BATCH" and m.params[0][0] == "+"]
    assert len(batches) == 2


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


def test_retention_runs_as_many_store_calls_one_per_tick(tmp_path: Path) -> None:
    """A purge is one store call per step, and one step per tick: messages committed
    meanwhile go between them, and so do the WAL's checkpoints."""
    net = sqlite_net(tmp_path / "salon.db", HeldStoreNet(history={"retention_days": 1}))
    assert isinstance(net, HeldStoreNet)
    store: SQLiteStore = net.store  # type: ignore[assignment]
    fill(store, [said(i, "#old", f"t{i}") for i in range(1200)])
    fill(store, [said(i, "#new", f"t{i}", when=START + 3 * 86400) for i in range(1200, 1210)])
    net.advance(3 * 86400)
    net.server.last_purge = -math.inf
    net.check_timeouts()
    assert net.run_store_until_idle() == 1  # the first step, and no other without a tick
    steps = 1
    while net.server.later:
        net.tick(0.1)
        assert net.run_store_until_idle() == 1
        steps += 1
    left = store.conn.execute("SELECT target, COUNT(*) FROM history GROUP BY target")
    assert [tuple(r) for r in left] == [("#new", 10)]
    assert steps >= 3  # 1,200 rows in steps of PURGE_CHUNK


# ---------------------------------------------------------------------------- outages


def test_a_full_disk_is_logged_once_and_its_end_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SQLiteStore(tmp_path / "salon.db")
    pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
    results: list[Any] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        storage = Storage(store, loop, lambda call, result: results.append(result))
        try:
            store.conn.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own "disk full"
            for i in range(1, 21):
                storage.submit([append(event(i)._replace(params=("#c", "x" * 5000)))])
                await until(lambda n=i: len(results) == n and not storage.busy)
            store.conn.execute("PRAGMA max_page_count = 1073741823")
            storage.submit([append(event(99))])
            await until(lambda: len(results) == 21 and not storage.busy)
        finally:
            storage.stop()

    with caplog.at_level(logging.INFO, logger="salon.storage"):
        asyncio.run(main())
    assert all(isinstance(r, StorageFailed) for r in results[:20]) and results[20] is True
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith("storage failing: OperationalError: database or disk is full")
    assert lines[1].startswith("storage recovered after 20 failures")
    assert not any(r.exc_info for r in caplog.records)
    store.close()


def test_config_refuses_a_budget_out_of_range() -> None:
    from salon.errors import ConfigError

    with pytest.raises(ConfigError, match=r"history\.query_budget"):
        make_config(history={"query_budget": 0})


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
