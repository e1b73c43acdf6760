"""The PostgreSQL store beyond the conformance suite: it is never imported unless used,
its shared secrets, its search budget, and ``salon db import`` of a data directory."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from salon.errors import QueryTooBroad
from salon.store.base import (
    AccountRecord,
    ChannelRecord,
    HistoryEvent,
    HistoryQuery,
    ListRecord,
    ScramCredentials,
    SearchQuery,
    ServerBan,
    dm_key,
    dm_other,
)
from salon.store.memory import MemoryStore
from salon.store.sqlite import SQLiteStore

# Everything a server without PostgreSQL loads: none of it may import psycopg.
WITHOUT_POSTGRES = (
    "salon.cli",
    "salon.net.runner",
    "salon.net.storage",
    "salon.store.sqlite",
    "salon.store.memory",
    "salon.server.core",
    "salon.admin",
    "salon.tui.cli",
)


# A real PostgreSQL server (bench/pgserver.py): not part of the in-process suite.
pytestmark = pytest.mark.e2e


def loaded_modules(*modules: str) -> set[str]:
    """The top-level packages in sys.modules of a new interpreter after importing
    ``modules``."""
    code = "import sys\n" + "".join(f"import {m}\n" for m in modules)
    code += "print(' '.join(sorted({n.split('.')[0] for n in sys.modules})))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return set(done.stdout.split())


def test_off_means_off_nothing_imports_psycopg() -> None:
    assert "psycopg" not in loaded_modules(*WITHOUT_POSTGRES)
    # The check sees an import when there is one.
    assert "psycopg" in loaded_modules("salon.store.postgres")


def test_a_new_database_gets_shared_secrets_every_node_reads(postgres_dsn: str) -> None:
    from salon.store.postgres import ACCOUNT_SECRET, CLOAK_KEY, SECRET_SIZE, PostgresStore

    given = b"k" * SECRET_SIZE
    first = PostgresStore(postgres_dsn, secrets={CLOAK_KEY: given})
    # A second node with other secrets of its own: the database's stay.
    second = PostgresStore(postgres_dsn, secrets={CLOAK_KEY: b"x" * SECRET_SIZE})
    try:
        assert first.secret(CLOAK_KEY) == second.secret(CLOAK_KEY) == given
        made = first.secret(ACCOUNT_SECRET)
        assert len(made) == SECRET_SIZE and made != given
        assert second.secret(ACCOUNT_SECRET) == made
        with pytest.raises(KeyError):
            first.secret("nothing")
    finally:
        first.close()
        second.close()


def test_a_search_past_its_budget_is_too_broad_and_leaves_the_store_usable(
    postgres_dsn: str,
) -> None:
    from salon.store.postgres import PostgresStore

    store = PostgresStore(postgres_dsn, query_budget=0.001)
    many = 50_000
    store.append_history(
        [
            HistoryEvent(f"m{i}", 1000.0 + i, "#c", "PRIVMSG", "a!a@h", None, ("#c", f"word {i}"))
            for i in range(many)
        ]
    )
    reader = store.reader()
    try:
        for view in (store, reader):
            with pytest.raises(QueryTooBroad):
                view.search_history(SearchQuery("word", ("#c",), limit=many))
        # Inside a writer's transaction (a savepoint): the transaction goes on.
        with store.transaction():
            with pytest.raises(QueryTooBroad):
                store.search_history(SearchQuery("word", ("#c",), limit=many))
            store.set_rejoin("a", ["#c"])
        assert store.load_rejoins() == [("a", ["#c"])]
        store.query_budget = reader.query_budget = 30.0
        for view in (store, reader):
            assert len(view.search_history(SearchQuery("word", ("#c",), limit=many))) == many
    finally:
        reader.close()
        store.close()


def test_a_readers_window_is_one_statement_outside_any_transaction(postgres_dsn: str) -> None:
    """A read of a window (CHATHISTORY LATEST) is its statement alone: no BEGIN and COMMIT
    around it, two more round trips to PostgreSQL's process. A search within the reader's
    own budget neither; one with a share of it is a transaction that sets the share."""
    import psycopg

    from salon.store.postgres import PostgresStore

    store = PostgresStore(postgres_dsn)
    store.append_history(
        [
            HistoryEvent(f"m{i}", 1000.0 + i, "#c", "PRIVMSG", "a!a@h", None, ("#c", f"word {i}"))
            for i in range(10)
        ]
    )
    reader = store.reader()
    idle = psycopg.pq.TransactionStatus.IDLE
    seen: list[psycopg.pq.TransactionStatus] = []
    run = reader._sql

    def noting(sql: str, args: Any = ()) -> Any:
        seen.append(reader.conn.info.transaction_status)
        return run(sql, args)

    reader._sql = noting  # type: ignore[method-assign]
    try:
        with reader.transaction():
            assert len(reader.history(HistoryQuery("#c", limit=5))) == 5
        assert seen == [idle]
        seen.clear()
        with reader.transaction(), reader.budget():
            assert len(reader.history(HistoryQuery("#c", limit=5))) == 5
        assert seen == [idle]
        seen.clear()
        with reader.transaction(), reader.budget(reader.query_budget / 2):
            assert len(reader.history(HistoryQuery("#c", limit=5))) == 5
        assert seen[0] == psycopg.pq.TransactionStatus.INTRANS  # the share, then the read
        assert reader.conn.info.transaction_status == idle
    finally:
        reader.close()
        store.close()


# ---------------------------------------------------------------------------- import


def make_data_dir(data: Path) -> list[str]:
    """A data directory with something in every table, and history of several
    conversations, part of it indexed; its conversation keys."""
    data.mkdir(mode=0o700)
    (data / "cloak.key").write_text("ab" * 32 + "\n")
    store = SQLiteStore(data / "salon.db")
    scram = ScramCredentials(b"salt", 4096, b"s" * 32, b"k" * 32)
    store.save_account(AccountRecord("Alice", "$argon2id$x", scram, "a@example.org"))
    store.save_account(AccountRecord("bob", "$argon2id$y", certfps=("ab:cd",)))
    store.save_channel(
        ChannelRecord("#Salon", "alice", 1.5, "tøpic", bans=(ListRecord("*!*@x", "a", 1),))
    )
    store.save_server_ban(ServerBan("K", "*@bad", "spam", "oper", 10.0, 20.0))
    store.set_read_marker("alice", "#salon", 1234.5)
    store.set_private_channel("#secret", True)
    store.set_rejoin("alice", ["#salon", "#b"])
    dm = dm_key("alice", "bob")
    words = ["apple", "banana", "café", "naïve", "x-ray", "snake_case", "s'il"]
    events = []
    for i in range(3000):
        target = ("#salon", "#b", dm)[i % 3]
        text = f"{words[i % len(words)]} {words[(i * 3) % len(words)]} number{i}"
        command = "NOTICE" if i % 11 == 0 else "PRIVMSG"
        extra = {"party": "alice", "display": "Bob" if i % 50 == 0 else ""} if target == dm else {}
        events.append(
            HistoryEvent(
                f"{1_700_000_000_000 + i * 10:011x}q{i}",
                1_700_000_000 + i / 100,
                target,
                command,
                f"{'alice' if i % 2 else 'Bob'}!u@h",
                "alice" if i % 5 == 0 else None,
                (target if target != dm else "bob", text),
                (("+draft/reply", "x"),) if i % 13 == 0 else (),
                **extra,
            )
        )
        if i % 97 == 0:
            events.append(
                HistoryEvent(f"j{i}", 1_700_000_000 + i / 100, "#b", "JOIN", "c!c@h", None, ("#b",))
            )
    store.append_history(events[:2000])
    store.maintain(1500)  # part indexed, the rest in the tail
    store.append_history(events[2000:])
    store.close()
    return ["#salon", "#b", dm]


SEARCHES = ["apple", "cafe", "naive CAFÉ", "naive", "x-ray", "case", "s'il", "il s", "num", ""]


def salon_db(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "salon", "db", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")},
    )


def test_db_import_copies_a_data_dir_with_equal_counts_and_searches(
    postgres_dsn: str, tmp_path: Path
) -> None:
    from salon.store.pgimport import postgres_counts, sqlite_counts
    from salon.store.postgres import CLOAK_KEY, PostgresStore

    data = tmp_path / "data"
    targets = make_data_dir(data)
    done = salon_db("import", str(data), "--dsn", postgres_dsn)
    assert done.returncode == 0, done.stderr
    assert "history 3031" in done.stdout
    # Budgets no load exhausts: SQLite answers a search that runs out with what it found.
    source = SQLiteStore(data / "salon.db", query_budget=30.0)
    copy = PostgresStore(postgres_dsn, query_budget=30.0)
    try:
        source.index_pending()
        counts = sqlite_counts(source)
        assert counts["history"] == 3031 and all(counts.values()), counts
        assert postgres_counts(copy) == counts
        for text in SEARCHES:
            for sender in (None, "alice"):
                query = SearchQuery(text, tuple(targets), sender=sender, limit=200)
                want = source.search_history(query)
                assert want, query
                assert copy.search_history(query) == want, query
        for target in targets:
            assert copy.history(HistoryQuery(target, limit=500)) == source.history(
                HistoryQuery(target, limit=500)
            )
            assert sorted(copy.dm_partners("alice")) == sorted(source.dm_partners("alice"))
        assert copy.history_targets(targets, 0, 2e9, 10) == source.history_targets(
            targets, 0, 2e9, 10
        )
        assert sorted(copy.load_accounts(), key=repr) == sorted(source.load_accounts(), key=repr)
        assert copy.load_channels() == source.load_channels()
        assert copy.load_rejoins() == source.load_rejoins()
        assert copy.secret(CLOAK_KEY) == bytes.fromhex("ab" * 32)
    finally:
        copy.close()
        source.close()
    # Once only: a database that holds salon data is not imported into.
    again = salon_db("import", str(data), "--dsn", postgres_dsn)
    assert again.returncode == 2
    assert again.stderr == (
        "salon db import: the database already holds salon data: import into an empty one\n"
    )


def test_db_import_errors_are_one_line(postgres_dsn: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_data_dir(data)
    cases = [
        (["import", str(tmp_path / "none"), "--dsn", postgres_dsn], 2, "is not a directory"),
        (["import", str(tmp_path), "--dsn", postgres_dsn], 2, "has no database (salon.db)"),
        (["import", str(data), "--dsn", "no such = option"], 2, "--dsn: "),
        (["import", str(data)], 2, "the following arguments are required: --dsn"),
        (
            ["import", str(data), "--dsn", "host=127.0.0.1 port=1 connect_timeout=5"],
            1,
            "PostgreSQL: ",
        ),
    ]
    for args, code, says in cases:
        done = salon_db(*args)
        assert done.returncode == code, (args, done.stderr)
        assert done.stderr.startswith("salon db import: "), done.stderr
        assert says in done.stderr and done.stderr.count("\n") == 1, done.stderr


# ---------------------------------------------------------------------------- lost connections


def run_batches(store: Any, batches: list[list[Any]]) -> list[Any]:
    """Each batch through a real Storage (its storage thread), one after the other; every
    call's result."""
    import asyncio

    from storehelpers import until

    from salon.net.storage import Storage

    async def main() -> list[Any]:
        results: list[Any] = []
        storage = Storage(store, asyncio.get_running_loop(), lambda c, r: results.append(r))
        try:
            done = 0
            for batch in batches:
                storage.submit(batch)
                done += len(batch)
                await until(lambda n=done: len(results) == n and not storage.busy)
        finally:
            storage.stop()
        return results

    return asyncio.run(main())


def test_a_commit_whose_answer_is_lost_is_looked_up_not_stored_twice(postgres_dsn: str) -> None:
    import contextlib

    import psycopg
    from storehelpers import append, event

    from salon.store.postgres import PostgresStore

    class LosesAnAnswer(PostgresStore):
        """Its next COMMIT (``lose``) takes effect, and then the connection goes (the
        server crashed before it answered)."""

        lose = 0

        @contextlib.contextmanager
        def transaction(self) -> Iterator[None]:
            with super().transaction():
                yield
            if self.lose and not self._depth:
                self.lose -= 1
                self.conn.close()
                raise psycopg.OperationalError("server closed the connection unexpectedly")

    store = LosesAnAnswer(postgres_dsn, retry_for=5.0)
    store.lose = 1
    try:
        results = run_batches(store, [[append(event(i)) for i in range(3)], [append(event(3))]])
        assert results == [True] * 4
        assert store.lose == 0  # it did lose one
        rows = store.conn.execute("SELECT msgid FROM history ORDER BY id").fetchall()
        assert [r[0] for r in rows] == ["id0", "id1", "id2", "id3"]
        row = store.conn.execute("SELECT messages FROM conversations").fetchone()
        assert row == (4,)
    finally:
        store.close()


def test_a_batch_whose_connection_dies_before_its_commit_runs_again(postgres_dsn: str) -> None:
    import psycopg
    from storehelpers import append, event

    from salon.server.effects import StoreCall
    from salon.store.postgres import PostgresStore

    store = PostgresStore(postgres_dsn, retry_for=5.0)
    kills = []

    def kill_my_connection(s: Any) -> bool:
        # The first time only: the database ends this session (as a restart would).
        if not kills:
            pid = s.conn.info.backend_pid
            with psycopg.connect(postgres_dsn, autocommit=True) as other:
                other.execute("SELECT pg_terminate_backend(%s)", (pid,))
            kills.append(pid)
        return True

    try:
        batch = [append(event(0)), StoreCall(kill_my_connection), append(event(1))]
        assert run_batches(store, [batch]) == [True, True, True]
        assert len(kills) == 1 and store.conn.info.backend_pid != kills[0]
        rows = store.conn.execute("SELECT msgid FROM history ORDER BY id").fetchall()
        assert [r[0] for r in rows] == ["id0", "id1"]
    finally:
        store.close()


def test_a_batch_fails_when_the_database_stays_away_past_retry_for(postgres_server: Any) -> None:
    from storehelpers import append, event

    from salon.net.storage import StorageFailed
    from salon.server.effects import StoreCall
    from salon.store.postgres import PostgresStore

    name = postgres_server.create_database()
    store = PostgresStore(postgres_server.dsn(name), retry_for=0.5)

    def drop(s: Any) -> bool:
        # The database goes away for good: dropped, its sessions ended.
        postgres_server.drop_database(name)
        return True

    try:
        started = time.monotonic()
        results = run_batches(store, [[StoreCall(drop), append(event(0))]])
        assert [type(r) for r in results] == [StorageFailed, StorageFailed]
        assert 0.5 <= time.monotonic() - started < 10
    finally:
        store.close()


def test_a_search_knows_common_words_from_the_statistics(postgres_dsn: str) -> None:
    """Which plan goes first: the words' index for rare words, walking the conversations
    for common ones (their shares, from what ANALYZE keeps)."""
    from salon.store.postgres import PostgresStore

    store = PostgresStore(postgres_dsn, query_budget=30.0)
    try:
        texts = [f"the common{i % 2} unique{i}" for i in range(2000)]
        store.append_history(
            [
                HistoryEvent(f"m{i}", 1000.0 + i, "#c", "PRIVMSG", "a!a@h", None, ("#c", t))
                for i, t in enumerate(texts)
            ]
        )
        assert store.share("the") == 0.0  # no statistics yet: every word is rare
        assert store.walk_from(3) == 1.0  # and no word common enough for the walk
        store.conn.execute("ANALYZE history")
        store._common = None  # read them again now
        assert store.share("the") > 0.9
        assert 0.4 < store.share("common1") < 0.6
        assert store.share("comm") > 0.9  # a prefix: every word it starts
        # The costs cross at sqrt(3 / 2000) of the rows: about 4%.
        assert 0.01 < store.walk_from(3) < 0.04 < store.share("common1")
        assert store.share("the unique1999") == store.share("unique1999") < store.walk_from(3)
        assert store.share("nowhere") == 0.0
        # Either plan answers alike.
        found = store.search_history(SearchQuery("the common1", ("#c",), limit=3))
        assert [e.text for e in found] == texts[-5::2]
        found = store.search_history(SearchQuery("unique1999", ("#c",), limit=3))
        assert [e.text for e in found] == ["the common1 unique1999"]
    finally:
        store.close()


# Words of the plan test: a few common ones, and prefixes that stand for many rarer ones.
PLAN_WORDS = ["the", "a", "stri", "strip", "string", "strong", "gort", "gorta", "rare"]
PLAN_TEXTS = [
    "the", "a", "stri", "str", "strong", "the stri", "gort", "gor", "rare", "nowhere", "",
]  # fmt: skip


def plan_history(conversations: int, count: int) -> list[HistoryEvent]:
    """``count`` messages, newest last, in ``conversations`` channels and private
    conversations of very different sizes, from three senders."""
    import random

    rng = random.Random(19)
    targets = [f"#c{i}" for i in range(conversations - 3)]
    targets += [dm_key("alice", f"u{i}") for i in range(3)]
    events = []
    for i in range(count):
        # One message in each conversation first, then most in a few.
        pick = i if i < len(targets) else int(rng.paretovariate(0.8)) - 1
        target = targets[min(pick, len(targets) - 1)]
        text = " ".join(rng.choice(PLAN_WORDS) + rng.choice(["", "", "s", "x"]) for _ in "123")
        nick = ("alice", "bob", "carol")[i % 3]
        if not target.startswith("#"):
            nick = ("alice", dm_other(target, "alice"))[i % 2]
        events.append(
            HistoryEvent(
                f"m{i}",
                1000.0 + i,
                target,
                "NOTICE" if i % 7 == 0 else "PRIVMSG",
                f"{nick}!{nick}@h",
                None,
                (target, text),
                party=nick if not target.startswith("#") else "",
            )
        )
    return events


@pytest.mark.parametrize("conversations", [12, 120], ids=["merged", "one-by-one"])
def test_every_search_plan_answers_as_the_other_stores(
    postgres_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, conversations: int
) -> None:
    """The words' index and the walk (merged up to MERGE_MOST conversations, one by one
    beyond) give what the memory store gives for the same history, whatever the words
    and filters; and what SQLite's store gives where its answer is exact (it takes the
    whole-word matches of a last word shorter than PREFIX_MIN when they are enough)."""
    from salon.store import postgres
    from salon.store.postgres import MERGE_MOST, PostgresStore
    from salon.store.sqlite_queries import PREFIX_MIN

    events = plan_history(conversations, 3000)
    targets = tuple(dict.fromkeys(e.target for e in events))
    assert (len(targets) > MERGE_MOST) == (conversations > MERGE_MOST)
    memory = MemoryStore()
    sqlite = SQLiteStore(tmp_path / "salon.db", query_budget=30.0)
    store = PostgresStore(postgres_dsn, query_budget=30.0)
    reader = store.reader()
    try:
        memory.append_history(events)
        sqlite.append_history(events)
        while sqlite.maintain(1000):
            pass
        store.append_history(events)
        store.conn.execute("ANALYZE history")
        queries = [
            SearchQuery(text, targets, limit=limit, **kw)
            for text in PLAN_TEXTS
            for limit in (1, 25, 5000)
            for kw in ({}, {"sender": "bob"}, {"start": 1500.0, "end": 2600.0})
        ]
        queries += [
            SearchQuery("stri", targets[:1]),
            SearchQuery("the", targets, private_since=2000.0),
        ]
        want = [[e.msgid for e in memory.search_history(q)] for q in queries]
        assert sum(map(len, want)) > 10 * len(queries)  # most find something
        for query, right in zip(queries, want, strict=True):
            if len((query.text.split() or [""])[-1]) >= PREFIX_MIN or not query.text:
                assert [e.msgid for e in sqlite.search_history(query)] == right, query
        for plan, slack in (("index", 1e9), ("walk", 0.0)):
            # WALK_SLACK decides: 0, the walk for every search; huge, the index first
            # (and within this budget only).
            monkeypatch.setattr(postgres, "WALK_SLACK", slack)
            with reader.transaction():
                got = [[e.msgid for e in reader.search_history(q)] for q in queries]
            for query, mine, right in zip(queries, got, want, strict=True):
                assert mine == right, (plan, query)
    finally:
        reader.close()
        store.close()
        sqlite.close()


def test_a_failing_call_leaves_the_others_of_its_batch_stored(postgres_dsn: str) -> None:
    """PostgreSQL ends a transaction at its first error, and COMMIT then rolls back what
    went before: the batch runs again without the failing call (never reported stored
    and lost)."""
    from storehelpers import append, event

    from salon.net.storage import StorageFailed
    from salon.server.effects import StoreCall
    from salon.store.postgres import PostgresStore

    store = PostgresStore(postgres_dsn)

    def divide_by_zero(s: Any) -> bool:
        s.conn.execute("SELECT 1 / 0")
        return True

    try:
        batch = [append(event(0)), StoreCall(divide_by_zero), append(event(1))]
        first, failed, last = run_batches(store, [batch])
        assert first is True and last is True and isinstance(failed, StorageFailed)
        rows = store.conn.execute("SELECT msgid FROM history ORDER BY id").fetchall()
        assert [r[0] for r in rows] == ["id0", "id1"]
    finally:
        store.close()
