"""History rows in the SQLite store itself: the conversation index and every row shape."""

from __future__ import annotations

from pathlib import Path

from corehelpers import START

from salon.store.base import HistoryEvent, HistoryQuery, SearchQuery


def test_sqlite_conversation_index_is_filled_in_batches(tmp_path: Path) -> None:
    """Rows reach the conversation index in batches; reads see every committed row anyway
    (the tail not indexed yet is read by id), and a database from before that index gets it filled when it is opened."""
    from salon.store.sqlite import SQLiteStore

    path = tmp_path / "salon.db"
    store = SQLiteStore(path)

    def event(i: int, target: str) -> HistoryEvent:
        # A msgid as the server makes them: its millisecond first (store.base.msgid_time).
        msgid = f"{int((START + i) * 1000):011x}ab{i:x}"
        return HistoryEvent(msgid, START + i, target, "PRIVMSG", "a!a@h", None, (target, f"t{i}"))

    with store.transaction():
        store.append_history([event(i, "#a" if i % 2 else "#b") for i in range(10)])
    count = "SELECT COUNT(*) FROM history_by_target"
    assert store.conn.execute(count).fetchone()[0] == 0  # not indexed yet
    assert [e.text for e in store.history(HistoryQuery("#a", limit=100))] == [
        "t1", "t3", "t5", "t7", "t9"
    ]  # fmt: skip
    assert store.conn.execute(count).fetchone()[0] == 0  # a read never writes
    store.index_pending()
    assert store.conn.execute(count).fetchone()[0] == 10
    # An older database: the same rows, no conversation index, the old per-row indexes,
    # and msgids of the old form (without their millisecond).
    store.conn.execute("DROP TABLE history_by_target")
    store.conn.execute("CREATE INDEX history_target_time ON history (target, time)")
    store.conn.execute("CREATE INDEX history_msgid ON history (msgid)")
    with store.transaction():
        store.append_history(
            [
                event(20, "#c")._replace(msgid="deadbeef1"),
                event(21, "#c")._replace(msgid="deadbeef0001f"),
            ]
        )
    store.conn.execute("UPDATE fts_state SET indexed = (SELECT MAX(id) FROM history)")
    store.close()
    store = SQLiteStore(path)
    assert store.history_event("#c", "deadbeef1") is not None
    assert store.history_position("#c", "deadbeef0001f") is not None
    assert store.history_event("#b", "deadbeef1") is None
    assert store.conn.execute(count).fetchone()[0] == 12  # filled when opened
    indexes = {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master")}
    assert "history_target_time" not in indexes
    with store.transaction():
        store.append_history([event(10, "#b")])
    assert [e.text for e in store.history(HistoryQuery("#b", limit=3))] == ["t6", "t8", "t10"]
    # Retention and redaction remove rows from the index as well.
    assert store.purge_history(START + 5, "#b") == 3
    assert store.redact_history("#b", event(8, "#b").msgid)
    assert not store.redact_history("#a", event(6, "#b").msgid)  # not in that conversation
    assert store.history_position("#b", event(6, "#b").msgid) is not None
    assert [e.text for e in store.history(HistoryQuery("#b", limit=9))] == ["t6", "t10"]
    # t10 is newer than the purge's limit: the purge left it to the next indexing.
    store.index_pending()
    rows = store.conn.execute("SELECT id FROM history_by_target WHERE target = '#b'")
    assert len(rows.fetchall()) == 2
    store.close()


def test_sqlite_rows_of_every_shape_keep_their_order_and_fields(tmp_path: Path) -> None:
    """One batch mixes short rows (a plain message) with full ones (client tags, a display
    name, JSON parameters): they are inserted in runs of one shape, and read back in the
    order and with the fields they were written with; a search finds the plain ones."""
    from salon.store.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "salon.db")
    t = START
    events = [
        HistoryEvent("m1", t, "#a", "PRIVMSG", "ann!a@h", None, ("#a", "plain one")),
        HistoryEvent("m2", t, "#a", "PRIVMSG", "bo!b@h", "bo", ("#a", "tagged"), (("+draft/reply", "m1"),)),
        HistoryEvent("m3", t, "#a", "JOIN", "cy!c@h", None, ("#a",)),
        HistoryEvent("m4", t, "#a", "NOTICE", "ann!a@h", None, ("#a", "plain two")),
        HistoryEvent("m5", t, "#a", "TAGMSG", "bo!b@h", None, ("#a",), (("+draft/react", "x"),)),
        HistoryEvent("m6", t, "#a", "PRIVMSG", "ann!a@h", None, ("#A", "plain three")),
        HistoryEvent("m7", t, "#a", "PRIVMSG", "ann!a@h", "ann", ("#a", "plain four")),
    ]  # fmt: skip
    # Private messages: the sender's party, with and without an account.
    private = [
        HistoryEvent("p1", t, "ann bo", "PRIVMSG", "ann!a@h", None, ("bo", "hi"), party="ann"),
        HistoryEvent("p2", t, "ann bo", "PRIVMSG", "bo!b@h", "bo", ("ann", "yo"), party="bo"),
        HistoryEvent("p3", t, "ann bo", "NOTICE", "bo!b@h", None, ("ann", "hm"), party="bo"),
    ]  # fmt: skip
    with store.transaction():
        store.append_history(events[:3] + private[:2] + events[3:] + private[2:])
    assert store.history(HistoryQuery("#a", limit=10)) == events
    assert store.history(HistoryQuery("ann bo", limit=10)) == private
    found = store.search_history(SearchQuery("plain", ("#a",), limit=10))
    assert [e.msgid for e in found] == ["m1", "m4", "m6", "m7"]
    store.close()


def test_sqlite_conversations_counted_as_stored_match_the_rows(tmp_path: Path) -> None:
    """The conversations table gets the rows counted as they were stored when an indexing
    takes exactly those rows, and groups the rows themselves otherwise: either way it holds,
    after every indexing, what grouping every indexed row gives (a redaction, a rolled back
    transaction, an indexing in slices, a reopened database and a purge in between)."""
    from salon.store.sqlite import SQLiteStore

    path = tmp_path / "salon.db"
    store = SQLiteStore(path)
    made = 0

    def events(targets: list[str], command: str = "PRIVMSG") -> list[HistoryEvent]:
        nonlocal made
        out = []
        for target in targets:
            made += 1
            msgid = f"{int((START + made) * 1000):011x}ab{made:x}"
            params = (target,) if command in ("JOIN", "TAGMSG") else (target, f"t{made}")
            tags = (("+react", "x"),) if command == "TAGMSG" else ()
            out.append(
                HistoryEvent(msgid, START + made, target, command, "a!a@h", None, params, tags)
            )
        return out

    grouped = (
        "SELECT target, MAX(CASE WHEN command IN ('PRIVMSG', 'NOTICE', 'TAGMSG') THEN time"
        " ELSE -1 END), SUM(command IN ('PRIVMSG', 'NOTICE', 'TAGMSG')) FROM history"
        " WHERE id <= (SELECT indexed FROM fts_state) GROUP BY target ORDER BY target"
    )
    table = "SELECT target, last, messages FROM conversations ORDER BY target"
    upserts: list[str] = []
    store.conn.set_trace_callback(upserts.append)

    def check() -> None:
        rows = [tuple(r) for r in store.conn.execute(table)]
        assert rows == [tuple(r) for r in store.conn.execute(grouped)]

    def counted_as_stored() -> bool:
        taken = any(sql.startswith("INSERT INTO conversations (target, last, messages) VALUES")
                    for sql in upserts)  # fmt: skip
        upserts.clear()
        return taken

    with store.transaction():
        store.append_history(events(["#a", "#b", "#a"]))
        store.append_history(events(["#c"], "JOIN") + events(["#a"], "NOTICE"))
    with store.transaction():
        store.append_history(events(["#b"], "TAGMSG") + events(["#d"], "JOIN"))
    store.index_pending()
    assert counted_as_stored()
    check()
    assert (
        store.conn.execute("SELECT last FROM conversations WHERE target = '#d'").fetchone()[0] == -1
    )
    # A transaction that fails: its rows are not stored, nor counted (the next rows are
    # counted afresh: they take the ids of the rows rolled back).
    try:
        with store.transaction():
            store.append_history(events(["#a", "#e"]))
            raise RuntimeError("the batch fails")
    except RuntimeError:
        pass
    with store.transaction():
        store.append_history(events(["#e", "#a"]))
    store.index_pending()
    assert counted_as_stored()
    check()
    # Counted as stored again from then on; a redacted row not indexed yet is not counted.
    with store.transaction():
        store.append_history(events(["#a", "#b", "#b"]))
    store.index_pending()
    assert counted_as_stored()
    with store.transaction():
        latest = events(["#b", "#f"])
        store.append_history(latest)
    assert store.redact_history("#b", latest[0].msgid)
    store.index_pending()
    assert not counted_as_stored()
    check()
    # Indexed in slices: grouped, and counted as stored once an indexing takes every row.
    with store.transaction():
        store.append_history(events(["#a", "#b", "#c", "#a", "#g"]))
    assert store.maintain(2) == 3
    store.index_pending()
    check()
    with store.transaction():
        store.append_history(events(["#g", "#a"]))
    store.index_pending()
    assert counted_as_stored()
    check()
    # The newest rows purged: the ids are used again, and the rows after are grouped.
    assert store.purge_history(START + made + 1, "#a") == 8
    with store.transaction():
        store.append_history(events(["#a", "#h"]))
    store.index_pending()
    assert not counted_as_stored()
    check()
    store.close()
    store = SQLiteStore(path)
    store.conn.set_trace_callback(upserts.append)
    with store.transaction():
        store.append_history(events(["#h", "#a"]))
    store.index_pending()
    check()
    with store.transaction():
        store.append_history(events(["#h"]))
    store.index_pending()
    assert counted_as_stored()
    check()


def test_sqlite_forgets_the_messages_the_order_never_had(tmp_path: Path) -> None:
    """forget_unordered (a cluster node's start, salon.server.cluster.Census) deletes the
    rows it is told were never ordered, indexed or not, from the search index and the
    conversations table too; it looks only at the rows since the time it is given (down
    to SCAN_SLACK older) and at messages only."""
    from salon.store.sqlite import SCAN_SLACK, SQLiteStore

    store = SQLiteStore(tmp_path / "salon.db")

    def event(i: float, target: str, command: str = "PRIVMSG") -> HistoryEvent:
        msgid = f"{int((START + i) * 1000):011x}ab{int(i):x}"
        return HistoryEvent(msgid, START + i, target, command, "a!a@h", None, (target, f"w{i}"))

    old = event(-SCAN_SLACK - 10, "#a")  # (below the scan: never looked at)
    kept, gone, later = event(1, "#a"), event(2, "#a"), event(3, "#b")
    join = HistoryEvent(event(4, "#a").msgid, START + 4, "#a", "JOIN", "a!a@h", None, ("#a",))
    with store.transaction():
        store.append_history([old, kept, gone])
    store.index_pending()  # (gone is indexed: searchable and counted)
    assert [e.msgid for e in store.search_history(SearchQuery("w2", ("#a",), limit=9))] == [
        gone.msgid
    ]
    with store.transaction():
        store.append_history([later, join])  # (not indexed yet)
    asked: list[str] = []

    def unordered(msgid: str, time: float) -> bool:
        asked.append(msgid)
        return msgid != kept.msgid

    with store.transaction():
        assert store.forget_unordered(START, unordered) == 2
    assert old.msgid not in asked and join.msgid not in asked
    assert [e.msgid for e in store.history(HistoryQuery("#a", limit=9))] == [
        old.msgid, kept.msgid, join.msgid
    ]  # fmt: skip
    assert store.history(HistoryQuery("#b", limit=9)) == []
    store.index_pending()
    assert store.search_history(SearchQuery("w2", ("#a", "#b"), limit=10)) == []
    counts = dict(store.conn.execute("SELECT target, messages FROM conversations").fetchall())
    assert counts == {"#a": 2}  # (#b's only row went before it was counted)
    store.close()
