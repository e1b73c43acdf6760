"""The store conformance suite: one set of tests that every store implementation passes,
through the Protocols of :mod:`salon.store.base` only.

A new implementation joins by adding one entry to ``STORES``. The in-memory store is
the reference the core's tests run on; where it and a database differ, this file says
which behaviour is the contract.

History reads run on every object that answers them: the store itself and, when it has
them (``store.reader()``), a reader of its own; and, for a store that indexes what it
stored in batches (``store.maintain()``), with the rows as written (none indexed), part
indexed and all indexed.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from salon.store.base import (
    AccountRecord,
    ChannelRecord,
    FileRecord,
    FileRef,
    HistoryEvent,
    HistoryQuery,
    HistoryReader,
    ListRecord,
    ScramCredentials,
    SearchQuery,
    ServerBan,
    Store,
    dm_key,
    msgid_time,
)
from salon.store.memory import MemoryStore
from salon.store.sqlite import SQLiteStore

# A read's budget far above what these small reads take: a machine busy with other
# tests must not turn a search into QueryTooBroad (that budget has tests of its own).
BUDGET = 30.0


def postgres(request: pytest.FixtureRequest, _: Path) -> Store:
    """A PostgresStore on a fresh database of the session's PostgreSQL (conftest.py)."""
    from salon.store.postgres import PostgresStore

    return PostgresStore(request.getfixturevalue("postgres_dsn"), query_budget=BUDGET)


# Each entry makes a new, empty store (from the test's request and temporary directory).
STORES: dict[str, Callable[[pytest.FixtureRequest, Path], Store]] = {
    "memory": lambda _, __: MemoryStore(),
    "sqlite": lambda _, tmp: SQLiteStore(tmp / "salon.db", query_budget=BUDGET),
    "postgres": postgres,
}


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made = STORES[request.param](request, tmp_path)
    yield made
    made.close()


def index_all(store: Store) -> None:
    """Index every stored row, for a store that indexes in batches."""
    maintain: Callable[[int], int] | None = getattr(store, "maintain", None)
    while maintain is not None and maintain(1000):
        pass


def readings(store: Store) -> Iterator[tuple[str, HistoryReader]]:
    """Every way to read the store's history as it is now: see the module's note."""
    opener: Callable[[], Any] | None = getattr(store, "reader", None)
    reader = opener() if opener is not None else None
    views: list[tuple[str, HistoryReader]] = [("store", store)]
    if reader is not None:
        views.append(("reader", reader))
    try:
        for _, view in views:
            yield "as written", view
        maintain: Callable[[int], int] | None = getattr(store, "maintain", None)
        if maintain is None:
            return
        maintain(2)
        for name, view in views:
            yield f"{name}, part indexed", view
        index_all(store)
        for name, view in views:
            yield f"{name}, indexed", view
    finally:
        if reader is not None:
            reader.close()


def on_every_reading(store: Store, check: Callable[[HistoryReader], None]) -> None:
    """``check`` on every reading of the store, naming the one that fails."""
    for name, view in readings(store):
        try:
            check(view)
        except AssertionError as exc:
            raise AssertionError(f"[{name}] {exc}") from exc


# ---------------------------------------------------------------------------- events

BASE_MS = 1_700_000_000_000
_counter = itertools.count(1)


def msgid(ms: int) -> str:
    """A msgid as the server makes them: its millisecond in 11 hex digits, a process
    prefix, a counter (Server.new_msgid)."""
    return f"{ms:011x}q7x{next(_counter):x}"


def at(ms: int) -> float:
    """The stored time of an event of millisecond ``BASE_MS + ms``."""
    return (BASE_MS + ms) / 1000


def ev(
    ms: int,
    target: str = "#c",
    text: str = "hello",
    *,
    command: str = "PRIVMSG",
    nick: str = "alice",
    account: str | None = None,
    params: tuple[str, ...] | None = None,
    tags: tuple[tuple[str, str], ...] = (),
    display: str = "",
    party: str = "",
) -> HistoryEvent:
    if params is None:
        params = (target, text)
    return HistoryEvent(
        msgid=msgid(BASE_MS + ms),
        time=at(ms),
        target=target,
        command=command,
        source=f"{nick}!{nick[:4]}@host.example",
        account=account,
        params=params,
        tags=tags,
        display=display,
        party=party,
    )


def texts(events: Sequence[HistoryEvent]) -> list[str]:
    return [e.text for e in events]


# ---------------------------------------------------------------------------- accounts

SCRAM = ScramCredentials(b"\x00salt\xff", 4096, b"s" * 32, b"k" * 32)


def test_accounts_round_trip_and_are_keyed_by_casefolded_name(store: Store) -> None:
    alice = AccountRecord(
        "Alice", "$argon2id$v=19$x", SCRAM, "a@example.org", False, 12.5, ("ab:cd", "ef")
    )
    bob = AccountRecord("bob", "$argon2id$v=19$y")
    store.save_account(alice)
    store.save_account(bob)
    assert sorted(store.load_accounts(), key=lambda a: a.name) == [alice, bob]
    # The same account under another case: replaced, with the name as saved last.
    again = AccountRecord("ALICE", "$argon2id$v=19$z", certfps=("12",))
    store.save_account(again)
    assert sorted(store.load_accounts(), key=lambda a: a.name) == [again, bob]
    store.delete_account("alice")
    store.delete_account("nobody")
    assert store.load_accounts() == [bob]
    store.delete_account("BOB")
    assert store.load_accounts() == []


# ---------------------------------------------------------------------------- channels


def test_channels_round_trip_with_their_lists(store: Store) -> None:
    full = ChannelRecord(
        name="#Salon",
        founder="alice",
        created=1234.5,
        topic="a tøpic",
        topic_by="alice!a@h",
        topic_time=99,
        modes="ntisk",
        key="sekrit",
        limit=25,
        bans=(ListRecord("*!*@bad", "alice", 1), ListRecord("x!*@*", "bob", 2)),
        excepts=(ListRecord("*!*@good", "alice", 3),),
        invex=(ListRecord("$a:bob", "alice", 4),),
        access=(("bob", "o"), ("carol", "v")),
        topiclock=True,
        metadata=(("avatar", "https://example.com/s.png"), ("display-name", "Le Salon ☕")),
    )
    bare = ChannelRecord("#other", "bob", 1.0)
    store.save_channel(full)
    store.save_channel(bare)
    assert sorted(store.load_channels(), key=lambda c: c.name) == [full, bare]
    renewed = ChannelRecord("#SALON", "carol", 2.0)
    store.save_channel(renewed)
    assert sorted(store.load_channels(), key=lambda c: c.name) == [renewed, bare]
    store.delete_channel("#salon")
    store.delete_channel("#none")
    assert store.load_channels() == [bare]


def test_channel_names_fold_ascii_letters_only(store: Store) -> None:
    """CASEMAPPING=ascii: non-ASCII letters are distinct in either case."""
    store.save_channel(ChannelRecord("#Café", "a", 1.0))
    store.save_channel(ChannelRecord("#CAFÉ", "b", 2.0))
    assert sorted(c.founder for c in store.load_channels()) == ["a", "b"]
    store.delete_channel("#cafÉ")
    assert [c.founder for c in store.load_channels()] == ["a"]


# ---------------------------------------------------------------------------- small tables


def test_server_bans(store: Store) -> None:
    k = ServerBan("K", "*@bad.example", "spam", "oper", 10.0, 20.5)
    d = ServerBan("D", "192.0.2.0/24", "flood", "oper", 11.0)
    same_mask = ServerBan("D", "*@bad.example", "other kind", "oper", 12.0)
    for ban in (k, d, same_mask):
        store.save_server_ban(ban)
    key = lambda b: (b.kind, b.mask)  # noqa: E731
    assert sorted(store.load_server_bans(), key=key) == sorted([k, d, same_mask], key=key)
    longer = ServerBan("K", "*@bad.example", "more spam", "root", 13.0, None)
    store.save_server_ban(longer)
    store.delete_server_ban("D", "*@bad.example")
    store.delete_server_ban("K", "192.0.2.0/24")  # no such ban: nothing happens
    assert sorted(store.load_server_bans(), key=key) == sorted([longer, d], key=key)


def test_files_and_their_references(store: Store) -> None:
    one = FileRecord("a" * 26, "f" * 64, 12, "text/plain; charset=utf-8", "é.txt", "alice", 1.5)
    two = FileRecord("b" * 26, "f" * 64, 12, "image/png", "x.png", "", 2.5, owner_nick="bob")
    with store.transaction():
        store.save_file(one)
        store.save_file(two)
        store.add_file_refs(
            [
                FileRef(one.id, "#lobby", "m1", 3.0),
                FileRef(one.id, "#lobby", "m2", 4.0),
                FileRef(two.id, "~alice ~bob", "m3", 5.0),
            ]
        )
    assert sorted(store.load_files(), key=lambda r: r.id) == [one, two]
    with store.transaction():
        store.save_file(FileRecord(**{**_fields(one), "deleted": 9.0}))
        store.delete_file_refs("#lobby", "m1")
    assert {r.id: r.deleted for r in store.load_files()} == {one.id: 9.0, two.id: 0.0}
    assert sorted(store.load_file_refs()) == [
        FileRef(one.id, "#lobby", "m2", 4.0),
        FileRef(two.id, "~alice ~bob", "m3", 5.0),
    ]
    with store.transaction():
        store.delete_refs_of_file(one.id)
        store.delete_file_refs("~alice ~bob")
        store.forget_file(two.id)
    assert store.load_file_refs() == []
    assert [r.id for r in store.load_files()] == [one.id]


def _fields(record: FileRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in FileRecord.__slots__}


def test_read_markers(store: Store) -> None:
    store.set_read_marker("alice", "#c", 1.5)
    store.set_read_marker("alice", "alice bob", 2.5)
    store.set_read_marker("bob", "#c", 3.0)
    store.set_read_marker("alice", "#c", 4.25)
    assert sorted(store.load_read_markers()) == [
        ("alice", "#c", 4.25),
        ("alice", "alice bob", 2.5),
        ("bob", "#c", 3.0),
    ]


def test_private_channels(store: Store) -> None:
    store.set_private_channel("#a", True)
    store.set_private_channel("#b", True)
    store.set_private_channel("#a", True)
    store.set_private_channel("#c", False)
    assert sorted(store.load_private_channels()) == ["#a", "#b"]
    store.set_private_channel("#a", False)
    assert store.load_private_channels() == ["#b"]


def test_rejoins(store: Store) -> None:
    store.set_rejoin("alice", ["#b", "#a"])
    store.set_rejoin("bob", ["#x"])
    store.set_rejoin("alice", ["#z", "#b", "#a"])
    assert sorted(store.load_rejoins()) == [("alice", ["#z", "#b", "#a"]), ("bob", ["#x"])]
    store.set_rejoin("bob", [])  # an empty list forgets the account
    store.set_rejoin("carol", [])
    assert store.load_rejoins() == [("alice", ["#z", "#b", "#a"])]


def test_metadata(store: Store) -> None:
    store.set_metadata("alice", "display-name", "Alice A.")
    store.set_metadata("alice", "color", "#c90076")
    store.set_metadata("bob", "avatar", "https://example.com/b.png")
    store.set_metadata("alice", "display-name", "Alice \u2764 B.")  # replaced
    assert sorted(store.load_metadata()) == [
        ("alice", "color", "#c90076"),
        ("alice", "display-name", "Alice \u2764 B."),
        ("bob", "avatar", "https://example.com/b.png"),
    ]
    store.set_metadata("alice", "color", None)  # None removes the key
    store.set_metadata("carol", "color", None)  # removing what is not there is no error
    store.set_metadata("bob", "status", "")  # the empty string is a value
    assert sorted(store.load_metadata()) == [
        ("alice", "display-name", "Alice \u2764 B."),
        ("bob", "avatar", "https://example.com/b.png"),
        ("bob", "status", ""),
    ]


def test_deleting_an_account_forgets_its_metadata(store: Store) -> None:
    store.save_account(AccountRecord("alice", "h"))
    store.set_metadata("alice", "display-name", "Alice")
    store.set_metadata("bob", "display-name", "Bob")
    store.delete_account("Alice")
    assert store.load_metadata() == [("bob", "display-name", "Bob")]


def test_transactions_nest_and_commit(store: Store) -> None:
    with store.transaction():
        store.save_account(AccountRecord("a", "h"))
        with store.transaction():
            store.set_rejoin("a", ["#c"])
        store.append_history([ev(1)])
    assert [a.name for a in store.load_accounts()] == ["a"]
    assert store.load_rejoins() == [("a", ["#c"])]
    assert texts(store.history(HistoryQuery("#c"))) == ["hello"]


# ---------------------------------------------------------------------------- rows


DM = dm_key("alice", "bob")


def every_shape() -> list[HistoryEvent]:
    """One event of every shape a row can have, in one conversation or another."""
    tags = (("+draft/reply", "abc"), ("+draft/react", "👍"), ("label", ""))
    return [
        ev(1, text="plain"),
        ev(2, text="from an account", account="alice"),
        ev(3, text="with tags", tags=tags),
        ev(4, text="tags and account", tags=tags, account="alice"),
        ev(5, "#c", "noticed", command="NOTICE", nick="Srv.Example"),
        ev(6, "#c", command="TAGMSG", params=("#c",), tags=(("+typing", "active"),)),
        ev(7, "#c", command="JOIN", params=("#c", "alice", "Real Name"), account="alice"),
        ev(8, "#c", command="PART", params=("#c", 'parting "words" [1, 2]')),
        ev(9, "#c", command="KICK", params=("#c", "bob", "out")),
        ev(10, "#c", command="TOPIC", params=("#c", "")),
        ev(11, "#c", command="MODE", params=("#c", "+ovk", "bob", "carol", "key")),
        ev(12, "#c", command="NICK", params=("alicia",)),
        ev(13, "#c", command="QUIT", params=("Quit: bye",)),
        ev(14, "#c", "", nick="bob"),  # an empty text
        ev(15, "#c", "ünïcode\ttab, \\ and \"quotes\" {'json': [1]}"),
        ev(16, DM, "private, no account", party="alice", params=("bob", "private, no account")),
        ev(17, DM, "private", account="bob", nick="bob", party="bob", params=("alice", "x")),
        ev(18, DM, "named", nick="alice", party="alice", display="Bob", params=("Bob", "hi")),
        ev(19, DM, "all", account="a", party="alice", display="Bob", tags=tags),
        ev(20, DM, command="TAGMSG", party="alice", params=("bob",), tags=(("+typing", "x"),)),
    ]


def test_every_row_shape_round_trips(store: Store) -> None:
    shapes = every_shape()
    # One batch, and one event at a time: both give the same rows back.
    store.append_history(shapes[:10])
    for event in shapes[10:]:
        store.append_history([event])

    def check(r: HistoryReader) -> None:
        for target in ("#c", DM):
            mine = [e for e in shapes if e.target == target]
            assert r.history(HistoryQuery(target, limit=100)) == mine
            for e in mine:
                assert r.history_event(target, e.msgid) == e
                assert r.history_time_of(target, e.msgid) == e.time
                position = r.history_position(target, e.msgid)
                assert position is not None and position[0] == e.time

    on_every_reading(store, check)


def test_lookups_by_msgid(store: Store) -> None:
    a, b = ev(1, "#a"), ev(1, "#b", "same millisecond, other conversation")
    store.append_history([a, b])
    assert msgid_time(a.msgid) == a.time
    stranger = msgid(BASE_MS + 1)  # well-formed, never stored

    def check(r: HistoryReader) -> None:
        assert r.history_event("#b", a.msgid) is None  # another conversation's message
        assert r.history_time_of("#b", a.msgid) is None
        assert r.history_position("#b", a.msgid) is None
        assert r.history_event("#a", stranger) is None
        assert r.history_time_of("#nowhere", a.msgid) is None
        assert r.history_event("#b", b.msgid) == b

    on_every_reading(store, check)


# ---------------------------------------------------------------------------- windows


def conversation(store: Store) -> list[HistoryEvent]:
    """Messages m0..m9 in #c, 10 ms apart, with a JOIN and a TAGMSG among them, and
    other conversations' messages in between."""
    events = []
    for i in range(10):
        events.append(ev(10 * i, "#c", f"m{i}"))
        events.append(ev(10 * i + 1, "#other", f"o{i}"))
        if i == 3:
            events.append(ev(10 * i + 2, "#c", command="JOIN", params=("#c",), nick="bob"))
        if i == 6:
            events.append(ev(10 * i + 2, "#c", command="TAGMSG", params=("#c",)))
    store.append_history(events)
    return [e for e in events if e.target == "#c"]


def names(events: Sequence[HistoryEvent]) -> list[str]:
    return [e.text if e.command == "PRIVMSG" else e.command for e in events]


def test_history_windows(store: Store) -> None:
    conversation(store)

    def check(r: HistoryReader) -> None:
        def window(**kw: Any) -> list[str]:
            return names(r.history(HistoryQuery("#c", **kw)))

        everything = ["m0", "m1", "m2", "m3", "JOIN", "m4", "m5", "m6", "TAGMSG", "m7", "m8"]
        assert window() == [*everything, "m9"]
        # LATEST: the newest, oldest first.
        assert window(limit=3) == ["m7", "m8", "m9"]
        assert window(limit=3, events=False) == ["m7", "m8", "m9"]
        assert window(limit=4) == ["TAGMSG", "m7", "m8", "m9"]
        # Without events: PRIVMSG and NOTICE only (no TAGMSG, no JOIN).
        assert window(limit=5, events=False) == ["m5", "m6", "m7", "m8", "m9"]
        # BEFORE (exclusive): the newest before the bound.
        assert window(end=at(50), limit=3) == ["m3", "JOIN", "m4"]
        assert window(end=at(50), limit=3, events=False) == ["m2", "m3", "m4"]
        # AFTER (exclusive): the oldest after it.
        assert window(start=at(30), limit=3, newest_first=False) == ["JOIN", "m4", "m5"]
        # BETWEEN, from either end.
        between = {"start": at(20), "end": at(70)}
        assert window(**between, limit=3, newest_first=False) == ["m3", "JOIN", "m4"]
        assert window(**between, limit=3) == ["m5", "m6", "TAGMSG"]
        assert window(**between, limit=100) == ["m3", "JOIN", "m4", "m5", "m6", "TAGMSG"]
        assert window(start=at(20), end=at(30)) == []
        # since: an inclusive floor, whatever the window asks.
        assert window(since=at(80)) == ["m8", "m9"]
        assert window(since=at(80), end=at(90), limit=5) == ["m8"]
        assert window(since=at(80), start=at(0), newest_first=False, limit=5) == ["m8", "m9"]
        # Nothing asked, nothing there.
        assert window(limit=0) == []
        assert window(limit=0, newest_first=False) == []
        assert r.history(HistoryQuery("#nowhere")) == []

    on_every_reading(store, check)


def test_paging_inside_one_millisecond(store: Store) -> None:
    same = [ev(5, "#c", f"s{i}") for i in range(5)]
    store.append_history([ev(4, "#c", "before"), *same, ev(6, "#c", "after")])

    def check(r: HistoryReader) -> None:
        position = r.history_position("#c", same[2].msgid)
        assert position is not None
        t, seq = position
        assert t == at(5)
        up = r.history(HistoryQuery("#c", start=t, start_seq=seq, newest_first=False))
        assert texts(up) == ["s3", "s4", "after"]
        down = r.history(HistoryQuery("#c", end=t, end_seq=seq))
        assert texts(down) == ["before", "s0", "s1"]
        assert texts(r.history(HistoryQuery("#c", end=t, end_seq=seq, limit=1))) == ["s1"]
        # Without a position, a bound excludes its whole millisecond.
        assert texts(r.history(HistoryQuery("#c", start=t, newest_first=False))) == ["after"]
        assert texts(r.history(HistoryQuery("#c", end=t))) == ["before"]

    on_every_reading(store, check)


def test_events_stored_out_of_time_order_read_in_time_order(store: Store) -> None:
    """A clock that steps back: reads are in time order all the same."""
    store.append_history([ev(30, text="c"), ev(10, text="a")])
    store.append_history([ev(20, text="b"), ev(40, text="d")])

    def check(r: HistoryReader) -> None:
        assert texts(r.history(HistoryQuery("#c"))) == ["a", "b", "c", "d"]
        assert texts(r.history(HistoryQuery("#c", limit=2))) == ["c", "d"]
        assert texts(r.history(HistoryQuery("#c", limit=2, newest_first=False))) == ["a", "b"]

    on_every_reading(store, check)


@pytest.mark.parametrize("indexed", [False, True], ids=["as-written", "indexed"])
def test_positions_stay_valid_after_a_redaction(store: Store, indexed: bool) -> None:
    same = [ev(5, "#c", f"s{i}") for i in range(5)]
    store.append_history(same)
    if indexed:
        index_all(store)
    position = store.history_position("#c", same[2].msgid)
    assert position is not None
    assert store.redact_history("#c", same[0].msgid)
    t, seq = position
    assert texts(store.history(HistoryQuery("#c", start=t, start_seq=seq))) == ["s3", "s4"]
    assert texts(store.history(HistoryQuery("#c", end=t, end_seq=seq))) == ["s1"]


# ---------------------------------------------------------------------------- rename, redact


@pytest.mark.parametrize("indexed", [False, True], ids=["as-written", "indexed"])
def test_rename_moves_a_conversation(store: Store, indexed: bool) -> None:
    old = [ev(10, "#old", "one"), ev(30, "#old", "three apple")]
    store.append_history([ev(20, "#new", "two"), *old, ev(25, "#else", "apple")])
    if indexed:
        index_all(store)
    store.rename_history("#old", "#new")
    store.rename_history("#absent", "#new2")

    def check(r: HistoryReader) -> None:
        assert r.history(HistoryQuery("#old")) == []
        moved = r.history(HistoryQuery("#new"))
        assert texts(moved) == ["one", "two", "three apple"]  # merged, in time order
        assert {e.target for e in moved} == {"#new"}
        assert r.history_event("#new", old[0].msgid) == old[0]._replace(target="#new")
        assert r.history_event("#old", old[0].msgid) is None
        assert r.history_targets(["#old", "#new"], 0, at(100), 10) == [("#new", at(30))]
        found = r.search_history(SearchQuery("apple", ("#new",)))
        assert [(e.target, e.text) for e in found] == [("#new", "three apple")]
        assert r.search_history(SearchQuery("apple", ("#old",))) == []

    on_every_reading(store, check)


@pytest.mark.parametrize("indexed", [False, True], ids=["as-written", "indexed"])
def test_redact(store: Store, indexed: bool) -> None:
    a, b, c = ev(10, "#c", "keep this"), ev(20, "#c", "drop this"), ev(30, "#d", "drop")
    store.append_history([a, b, c])
    if indexed:
        index_all(store)
    assert not store.redact_history("#d", b.msgid)  # not that conversation's
    assert not store.redact_history("#c", msgid(BASE_MS + 20))
    assert store.redact_history("#c", b.msgid)
    assert not store.redact_history("#c", b.msgid)  # already gone

    def check(r: HistoryReader) -> None:
        assert r.history(HistoryQuery("#c")) == [a]
        assert r.history_event("#c", b.msgid) is None
        assert r.history_position("#c", b.msgid) is None
        assert r.search_history(SearchQuery("this", ("#c",))) == [a]
        assert r.history_event("#d", c.msgid) == c

    on_every_reading(store, check)


# ---------------------------------------------------------------------------- targets


def test_history_targets(store: Store) -> None:
    store.append_history(
        [
            ev(10, "#a", "a1"),
            ev(20, "#b", "b1"),
            ev(30, "#a", "a2"),
            ev(40, "#joins", command="JOIN", params=("#joins",)),
            ev(50, "#b", command="PART", params=("#b",)),  # no message: not activity
            ev(60, "#t", command="TAGMSG", params=("#t",)),  # a TAGMSG is
            ev(70, DM, "dm", party="alice"),
            ev(80, "#n", "noticed", command="NOTICE"),
            ev(90, "#unasked", "u"),
        ]
    )
    everyone = ["#a", "#b", "#joins", "#t", DM, "#n", "#nowhere", "#a"]

    def check(r: HistoryReader) -> None:
        def targets(*args: Any, **kw: Any) -> list[tuple[str, float]]:
            return r.history_targets(everyone, *args, **kw)

        full = [("#b", at(20)), ("#a", at(30)), ("#t", at(60)), (DM, at(70)), ("#n", at(80))]
        assert targets(0, at(1000), 100) == full
        assert targets(at(1000), 0, 100) == full  # either order of bounds
        # Exclusive bounds, on the last message's time.
        assert targets(at(20), at(70), 100) == [("#a", at(30)), ("#t", at(60))]
        # The limit keeps the earliest.
        assert targets(0, at(1000), 2) == full[:2]
        # Private conversations only from private_since on; channels are not affected.
        assert targets(0, at(1000), 100, private_since=at(71)) == [*full[:3], full[4]]
        assert targets(0, at(1000), 100, private_since=at(70)) == full
        assert r.history_targets([], 0, at(1000), 100) == []

    on_every_reading(store, check)


def test_dm_partners(store: Store) -> None:
    ac, bc = dm_key("alice", "carol"), dm_key("bob", "~dave")
    store.append_history(
        [
            ev(1, DM, "hi", nick="Alice", party="alice", display="Bob", params=("Bob", "hi")),
            ev(2, DM, "no display", nick="Bob", party="bob", params=("Alice", "x")),
            ev(3, ac, "hey", nick="carol", party="carol", display="ALICE", params=("ALICE", "h")),
            ev(4, bc, "yo", nick="Dave", party="~dave", display="bob", params=("bob", "yo")),
            ev(5, "#c", "a channel", party="alice", display="#c"),  # not a private one
        ]
    )

    def check(r: HistoryReader) -> None:
        assert sorted(r.dm_partners("alice")) == sorted([(DM, "Bob"), (ac, "carol")])
        assert sorted(r.dm_partners("bob")) == sorted([(DM, "Alice"), (bc, "Dave")])
        assert sorted(r.dm_partners("carol")) == [(ac, "ALICE")]
        assert sorted(r.dm_partners("~dave")) == [(bc, "bob")]
        assert r.dm_partners("nobody") == []

    on_every_reading(store, check)
    # A later message that names the conversation again: the new names replace the old.
    store.append_history(
        [ev(6, DM, "again", nick="bobby", party="bob", display="Alicia", params=("Alicia", "a"))]
    )
    on_every_reading(
        store,
        lambda r: assert_equal(
            sorted(r.dm_partners("alice")), sorted([(DM, "bobby"), (ac, "carol")])
        ),
    )
    on_every_reading(
        store,
        lambda r: assert_equal(
            sorted(r.dm_partners("bob")), sorted([(DM, "Alicia"), (bc, "Dave")])
        ),
    )


def assert_equal(got: object, want: object) -> None:
    assert got == want


# ---------------------------------------------------------------------------- search

SAID = [
    "The quick brown Fox jumps",
    "a lazy dog sleeps",
    "café au lait, s'il vous plaît",
    'he said "NEAR(x y)" OR -not AND *',
    "foxes are not dogs",
    "snake_case and x-ray",
    "ÉCOLE naïve",
]


def search(r: HistoryReader, text: str, targets: Sequence[str] = ("#c",), **kw: Any) -> list[str]:
    return texts(r.search_history(SearchQuery(text, tuple(targets), **kw)))


def test_search_words(store: Store) -> None:
    store.append_history([ev(i, "#c", text) for i, text in enumerate(SAID)])

    def check(r: HistoryReader) -> None:
        assert search(r, "rown") == []  # words, not the inside of words
        assert search(r, "FOX jumps") == [SAID[0]]  # case folded
        assert search(r, "fox") == [SAID[0], SAID[4]]  # the last word is a prefix
        assert search(r, "fox are") == []  # the others are whole words
        assert search(r, "foxes are") == [SAID[4]]
        assert search(r, "brown quick") == [SAID[0]]  # every word, in any order
        assert search(r, "brown dog") == []
        assert search(r, "lazy dog") == [SAID[1]]
        assert search(r, "cafe") == [SAID[2]]  # diacritics folded
        assert search(r, "CAFÉ") == [SAID[2]]
        assert search(r, "ecole naive") == [SAID[6]]
        assert search(r, "Ecole Naïv") == [SAID[6]]
        # A word of several index words: those words, one after the other.
        assert search(r, "s'il") == [SAID[2]]
        assert search(r, "il s") == [SAID[2]]
        assert search(r, "il's") == []
        assert search(r, "x-ray") == [SAID[5]]
        assert search(r, "case") == [SAID[5]]  # the underscore cuts words
        assert search(r, "snake_c") == [SAID[5]]
        # FTS5 syntax in the words is only text: no error, no operator.
        assert search(r, 'NEAR(x y)" OR -not') == [SAID[3]]
        assert search(r, "OR fox") == []
        assert search(r, "*") == []  # a word with no letters or digits matches nothing
        assert search(r, '"') == []
        assert search(r, "lazy -") == []
        # No words: every message.
        assert search(r, "") == SAID
        assert search(r, "   ") == SAID

    on_every_reading(store, check)


def test_search_filters(store: Store) -> None:
    store.append_history(
        [
            ev(10, "#one", "apple one", nick="Alice"),
            ev(20, "#one", "apple two", nick="bob"),
            ev(30, "#two", "apple three", nick="alice"),
            ev(40, DM, "apple four", nick="bob", party="bob", params=("alice", "apple four")),
            ev(50, "#one", "banana five", nick="alice"),
            ev(60, "#one", "apple notice", nick="carol", command="NOTICE"),
            ev(70, "#one", command="TOPIC", params=("#one", "apple topic")),
            ev(71, "#one", command="PART", params=("#one", "apple part")),
            ev(72, "#one", command="TAGMSG", params=("#one",), tags=(("+x", "apple"),)),
            ev(80, "#hidden", "apple hidden"),
        ]
    )
    mine = ("#one", "#two", DM)

    def check(r: HistoryReader) -> None:
        everything = ["apple one", "apple two", "apple three", "apple four", "apple notice"]
        assert search(r, "apple", mine) == everything  # oldest first, messages only
        assert search(r, "apple", ("#one",)) == ["apple one", "apple two", "apple notice"]
        assert search(r, "apple", (DM, DM, "#two")) == ["apple three", "apple four"]
        assert search(r, "apple", ()) == []
        # sender: the casefolded nick.
        assert search(r, "apple", mine, sender="alice") == ["apple one", "apple three"]
        assert search(r, "", mine, sender="bob") == ["apple two", "apple four"]
        # start / end: exclusive.
        assert search(r, "apple", mine, start=at(20)) == everything[2:]
        assert search(r, "apple", mine, end=at(40)) == everything[:3]
        assert search(r, "apple", mine, start=at(10), end=at(60)) == everything[1:4]
        # Private conversations only from private_since on; channels are not affected.
        assert search(r, "apple", mine, private_since=at(41)) == [*everything[:3], "apple notice"]
        assert search(r, "apple", mine, private_since=at(40)) == everything
        # The limit keeps the newest, oldest first.
        assert search(r, "apple", mine, limit=2) == ["apple four", "apple notice"]
        assert search(r, "", mine, limit=1) == ["apple notice"]

    on_every_reading(store, check)


def test_search_results_are_the_stored_events(store: Store) -> None:
    shapes = every_shape()
    store.append_history(shapes)
    said = [e for e in shapes if e.command in ("PRIVMSG", "NOTICE")]

    def check(r: HistoryReader) -> None:
        assert r.search_history(SearchQuery("", ("#c", DM), limit=100)) == said

    on_every_reading(store, check)


# ---------------------------------------------------------------------------- purge


def purge_fixture(store: Store) -> None:
    """#a: 5 events at 10..50, #b: 3 at 10..30, a private one: 2 at 10, 20; #keep: 2."""
    events = [ev(10 * i, "#a", f"a{i}") for i in range(1, 6)]
    events += [ev(10 * i, "#b", f"b{i}") for i in range(1, 4)]
    events += [ev(10 * i, DM, f"d{i}", party="alice") for i in range(1, 3)]
    events += [ev(10 * i, "#keep", f"k{i}") for i in range(1, 3)]
    events.sort(key=lambda e: e.time)
    store.append_history(events)


def left(store: Store) -> dict[str, list[str]]:
    out = {}
    for target in ("#a", "#b", DM, "#keep"):
        out[target] = texts(store.history(HistoryQuery(target)))
    return out


@pytest.mark.parametrize("indexed", [False, True], ids=["as-written", "indexed"])
def test_purge_history(store: Store, indexed: bool) -> None:
    purge_fixture(store)
    if indexed:
        index_all(store)
    assert store.purge_history(at(30), target="#a") == 2  # before is exclusive
    assert store.purge_history(at(30), target="#nowhere") == 0
    assert store.purge_history(at(25), exclude=["#keep"]) == 4
    assert left(store) == {
        "#a": ["a3", "a4", "a5"],
        "#b": ["b3"],
        DM: [],
        "#keep": ["k1", "k2"],
    }
    # An excluded conversation stays even when it is the one named.
    assert store.purge_history(at(1000), target="#keep", exclude=["#keep"]) == 0
    assert store.purge_history(at(1000)) == 6

    def check(r: HistoryReader) -> None:
        assert r.history_targets(["#a", "#b", DM, "#keep"], 0, at(1000), 10) == []
        assert r.search_history(SearchQuery("", ("#a", "#b", DM, "#keep"))) == []

    on_every_reading(store, check)


@pytest.mark.parametrize("indexed", [False, True], ids=["as-written", "indexed"])
def test_purge_steps(store: Store, indexed: bool) -> None:
    purge_fixture(store)
    if indexed:
        index_all(store)
    steps = []
    after = ""
    while True:
        step = store.purge_step(at(35), exclude=["#keep"], after=after, most=2)
        assert step.removed <= 2
        steps.append(step.removed)
        if step.next is None:
            break
        after = step.next
        assert len(steps) < 20, steps
    assert sum(steps) == 3 + 3 + 2
    assert len(steps) >= 4  # in chunks
    assert left(store) == {"#a": ["a4", "a5"], "#b": [], DM: [], "#keep": ["k1", "k2"]}
    # One conversation, in steps.
    first = store.purge_step(at(1000), target="#a", most=1)
    assert first.removed == 1 and first.next is not None
    rest = store.purge_step(at(1000), target="#a", after=first.next, most=5)
    assert rest == (1, None)
    assert store.purge_step(at(1000), target="#a", most=5) == (0, None)
    assert store.purge_step(at(1000), exclude=["#keep"], most=5) == (0, None)
    assert left(store)["#keep"] == ["k1", "k2"]


def test_purge_steps_out_of_time_still_finish(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step that runs out of its time slice at once (a loaded machine) still moves on:
    a conversation it has finished is never named again as the place to go on from."""
    monkeypatch.setattr("salon.store.sqlite.PURGE_SECONDS", 0.0)
    purge_fixture(store)
    after: str | None = ""
    removed = 0
    for _ in range(20):
        step = store.purge_step(at(35), exclude=["#keep"], after=after or "", most=1000)
        removed += step.removed
        after = step.next
        if after is None:
            break
    assert after is None and removed == 3 + 3 + 2


def test_purged_conversations_leave_targets(store: Store) -> None:
    """A conversation whose messages are all purged is no longer a target, even when
    events newer than them stay."""
    store.append_history(
        [ev(10, "#a", "old"), ev(50, "#a", command="JOIN", params=("#a",)), ev(20, "#b", "b")]
    )
    index_all(store)
    assert store.purge_history(at(30)) == 2

    def check(r: HistoryReader) -> None:
        assert r.history_targets(["#a", "#b"], 0, at(1000), 10) == []

    on_every_reading(store, check)


@pytest.mark.parametrize("indexed", [False, True], ids=["as-written", "indexed"])
def test_redacting_the_last_message_moves_the_target_back(store: Store, indexed: bool) -> None:
    first, last = ev(10, "#a", "first"), ev(20, "#a", "last")
    store.append_history([first, last, ev(30, "#a", command="JOIN", params=("#a",))])
    if indexed:
        index_all(store)
    assert store.redact_history("#a", last.msgid)

    def check(r: HistoryReader) -> None:
        assert r.history_targets(["#a"], 0, at(1000), 10) == [("#a", at(10))]

    on_every_reading(store, check)
    assert store.redact_history("#a", first.msgid)
    on_every_reading(store, lambda r: assert_equal(r.history_targets(["#a"], 0, at(1000), 10), []))


@pytest.mark.parametrize("indexed", [False, True], ids=["as-written", "indexed"])
def test_redacting_the_newest_row_moves_the_target_back(store: Store, indexed: bool) -> None:
    first, last = ev(10, "#a", "first"), ev(20, "#a", "last")
    store.append_history([first, last])
    if indexed:
        index_all(store)
    assert store.redact_history("#a", last.msgid)
    store.append_history([ev(30, "#b", "after")])

    def check(r: HistoryReader) -> None:
        got = r.history_targets(["#a", "#b"], 0, at(1000), 10)
        assert got == [("#a", at(10)), ("#b", at(30))]
        assert texts(r.history(HistoryQuery("#a"))) == ["first"]
        assert search(r, "", ("#a", "#b")) == ["first", "after"]

    on_every_reading(store, check)
