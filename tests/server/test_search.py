"""SEARCH (soju.im/search) over stored history: SQLite FTS5, filters, and who may see what.

``SEARCH in=#chan;from=nick;after=TS;before=TS;text=words;limit=N``: only conversations the
asking user may read are searched (channels they are in, their own private conversations).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from accounthelpers import cheap_argon2, register_account, sasl_connect  # noqa: F401
from corehelpers import Conn, Net, find, sqlite_net
from historyhelpers import SEARCH, stamp

from salon.proto.message import Message
from salon.server import history
from salon.server.history import format_ms

MakeNet = Callable[..., Net]


@pytest.fixture
def fts_net(tmp_path: Path) -> Iterator[Net]:
    """The real thing: a SQLite store with its FTS5 index."""
    net = sqlite_net(tmp_path / "salon.db")
    yield net
    net.store.close()


def search(conn: Conn, query: str) -> list[Message]:
    """``SEARCH <query>``: the messages of the soju.im/search batch that answers it."""
    conn.send("SEARCH :" + query)
    msgs = conn.messages()
    assert find(msgs, "FAIL") == [], [str(m) for m in msgs]
    head, tail = msgs[0], msgs[-1]
    assert head.command == "BATCH" and head.params[1:] == ("soju.im/search",), head
    ref = head.params[0][1:]
    assert tail.command == "BATCH" and tail.params == ("-" + ref,), tail
    inner = msgs[1:-1]
    assert all(m.tags.get("batch") == ref for m in inner)
    return inner


def found(conn: Conn, query: str) -> list[str]:
    return [m.params[-1] for m in search(conn, query)]


def fail(conn: Conn, query: str) -> Message:
    conn.send("SEARCH :" + query)
    fails = find(conn.messages(), "FAIL")
    assert len(fails) == 1, query
    return fails[0]


def join(net: Net, *pairs: tuple[Conn, str]) -> None:
    for conn, chans in pairs:
        conn.send(f"JOIN {chans}")
    net.advance(1)
    for conn, _ in pairs:
        conn.lines()


def drain(*conns: Conn) -> None:
    for conn in conns:
        conn.lines()


# ---------------------------------------------------------------------------- full text


def test_full_text_search_with_fts5(fts_net: Net) -> None:
    net = fts_net
    alice = net.register("alice", SEARCH)
    join(net, (alice, "#c"))
    said = [
        "The quick brown Fox jumps",
        "a lazy dog sleeps",
        "café au lait, s'il vous plaît",
        'he said "NEAR(x y)" OR -not AND *',
        "foxes are not dogs",
    ]
    for text in said:
        alice.send(f"PRIVMSG #c :{text}")
        net.advance(1)
    echoes = find(alice.messages(), "PRIVMSG")
    assert found(alice, "text=rown") == []  # words, not the inside of words
    assert found(alice, "text=FOX jumps") == [said[0]]  # case-insensitive
    assert found(alice, "text=fox") == [said[0], said[4]]  # prefix match on the last word
    assert found(alice, "text=fox are") == []  # the other words are whole words
    assert found(alice, "text=foxes are") == [said[4]]
    assert found(alice, "text=brown quick") == [said[0]]  # every word, in any order
    assert found(alice, "text=brown dog") == []
    assert found(alice, "text=lazy dog") == [said[1]]
    assert found(alice, "text=cafe") == [said[2]]  # diacritics folded
    # FTS5 syntax in the words is only text: no error, no operator.
    assert found(alice, 'text=NEAR(x y)" OR -not') == [said[3]]
    assert found(alice, "text=OR fox") == []
    assert found(alice, 'text="') == []
    # Results are the messages themselves: msgid, time, source, text.
    result = search(alice, "text=lazy")[0]
    assert (result.tags["msgid"], result.tags["time"], result.source, result.params) == (
        echoes[1].tags["msgid"],
        echoes[1].tags["time"],
        echoes[1].source,
        echoes[1].params,
    )
    # The index is real FTS5, filled in batches (the searches above read the rows not
    # indexed yet through a temporary index of their own).
    net.store.index_pending()  # type: ignore[attr-defined]
    with sqlite3.connect(net.store.path) as db:  # type: ignore[attr-defined]
        sql = db.execute("SELECT sql FROM sqlite_master WHERE name = 'history_fts'").fetchone()
        assert "fts5" in sql[0].lower()
        hits = db.execute("SELECT COUNT(*) FROM history_fts WHERE history_fts MATCH 'lazy'")
        assert hits.fetchone()[0] == 1


def test_only_messages_are_searched(fts_net: Net) -> None:
    net = fts_net
    alice = net.register("alice", SEARCH)
    bob = net.register("bob", SEARCH)
    join(net, (alice, "#c"), (bob, "#c"))
    alice.send("TOPIC #c :topical words")
    alice.send("@+draft/react=words TAGMSG #c")
    bob.send("PART #c :parting words")
    alice.send("NOTICE #c :noticed words")
    alice.send("PRIVMSG #c :said words")
    drain(alice, bob)
    assert [(m.command, m.params[-1]) for m in search(alice, "text=words")] == [
        ("NOTICE", "noticed words"),
        ("PRIVMSG", "said words"),
    ]


def test_search_filters(make_net: MakeNet) -> None:
    net = make_net()
    alice = net.register("alice", SEARCH)
    bob = net.register("bob", SEARCH)
    carol = net.register("carol", SEARCH)
    join(net, (alice, "#one,#two"), (bob, "#one,#two"), (carol, "#one"))
    t0 = net.now
    lines = [
        (alice, "#one", "apple one"),
        (bob, "#one", "apple two"),
        (alice, "#two", "apple three"),
        (bob, "alice", "apple four"),
        (carol, "alice", "apple five"),
        (alice, "#one", "banana six"),
        (carol, "#one", "apple seven"),
    ]
    for conn, target, text in lines:
        conn.send(f"PRIVMSG {target} :{text}")
        net.advance(10)
    drain(alice, bob, carol)
    everything = ["apple one", "apple two", "apple three", "apple four", "apple five"]
    assert found(alice, "text=apple") == [*everything, "apple seven"]
    # in= a channel, or a nick (that private conversation).
    assert found(alice, "in=#one;text=apple") == ["apple one", "apple two", "apple seven"]
    assert found(alice, "in=#TWO;text=apple") == ["apple three"]
    assert found(alice, "in=bob;text=apple") == ["apple four"]
    assert found(alice, "in=Carol;text=apple") == ["apple five"]
    # from= a sender.
    assert found(alice, "from=bob;text=apple") == ["apple two", "apple four"]
    assert found(alice, "from=BOB;in=#one") == ["apple two"]
    assert found(alice, "from=carol") == ["apple five", "apple seven"]
    # after= / before=: a time range (exclusive).
    assert found(alice, f"after={stamp(t0 + 10)};text=apple") == [
        "apple three",
        "apple four",
        "apple five",
        "apple seven",
    ]
    assert found(alice, f"before={stamp(t0 + 20)};text=apple") == ["apple one", "apple two"]
    window = f"after={stamp(t0 + 5)};before={stamp(t0 + 35)}"
    assert found(alice, f"{window};text=apple") == ["apple two", "apple three", "apple four"]
    assert found(alice, f"{window};from=bob;in=bob") == ["apple four"]
    # limit=: the most recent N, oldest first.
    assert found(alice, "text=apple;limit=2") == ["apple five", "apple seven"]
    assert found(alice, "limit=1") == ["apple seven"]
    # Escaped tag values (soju.im/search uses message-tag syntax).
    assert found(alice, r"text=apple\sone") == ["apple one"]


def test_search_limit_is_capped_and_checked(make_net: MakeNet) -> None:
    net = make_net(history={"chathistory_limit": 3})
    alice = net.register("alice", SEARCH)
    join(net, (alice, "#c"))
    for i in range(6):
        alice.send(f"PRIVMSG #c :word {i}")
        net.advance(1)
    alice.lines()
    assert found(alice, "text=word;limit=100") == ["word 3", "word 4", "word 5"]
    assert found(alice, "text=word") == ["word 3", "word 4", "word 5"]
    for query in ("limit=0", "limit=-1", "limit=lots", "after=yesterday", "before=2024"):
        failed = fail(alice, query)
        assert failed.params[:2] == ("SEARCH", "INVALID_PARAMS"), (query, failed)


def test_search_needs_history() -> None:
    net = Net(history={"enabled": False})
    alice = net.register("alice", SEARCH)
    assert fail(alice, "text=x").params[:2] == ("SEARCH", "UNKNOWN_COMMAND")


# ---------------------------------------------------------------------------- entitlement


def test_no_results_from_conversations_the_user_may_not_read(make_net: MakeNet) -> None:
    net = make_net()
    alice = net.register("alice", SEARCH)
    bob = net.register("bob", SEARCH)
    carol = net.register("carol", SEARCH)
    join(net, (alice, "#secret,#pub"), (bob, "#secret,#pub"), (carol, "#pub"))
    alice.send("PRIVMSG #secret :the zanzibar plan")
    bob.send("NOTICE #secret :zanzibar at noon")
    alice.send("PRIVMSG bob :xylophone is the password")
    bob.send("PRIVMSG alice :xylophone noted")
    alice.send("PRIVMSG #pub :public words")
    carol.send("PRIVMSG bob :carol asks bob")
    net.advance(1)
    drain(alice, bob, carol)
    # The members and the correspondents find them.
    assert found(alice, "text=zanzibar") == ["the zanzibar plan", "zanzibar at noon"]
    assert found(bob, "text=xylophone") == ["xylophone is the password", "xylophone noted"]
    # carol is not in #secret, and not part of alice's and bob's conversation.
    for query in (
        "text=zanzibar",
        "text=xylophone",
        "in=#secret",
        "in=#secret;text=zanzibar",
        "in=#SECRET;from=alice",
        "from=alice;text=zanzibar",
        "in=alice",
        "in=alice;text=xylophone",
        "in=bob;text=xylophone",
        "in=bob;from=alice",
        "in=alice bob",
        "in=*",
        "in=#nosuchchannel",
    ):
        assert found(carol, query) == [], query
    # Everything carol may see, and nothing else.
    assert sorted(found(carol, "limit=1000")) == ["carol asks bob", "public words"]
    # Having been a member is not enough: what counts is being one now.
    carol.send("JOIN #secret")
    carol.send("PART #secret")
    bob.send("PART #secret")
    drain(bob, carol)
    assert found(carol, "text=zanzibar") == []
    assert found(bob, "text=zanzibar") == []
    assert found(bob, "in=#secret") == []
    assert found(bob, "text=xylophone") == ["xylophone is the password", "xylophone noted"]
    # A member (even a new one) may search the channel, as they may read its history.
    dave = net.register("dave", SEARCH)
    join(net, (dave, "#secret"))
    assert found(dave, "text=zanzibar") == ["the zanzibar plan", "zanzibar at noon"]
    assert found(dave, "text=xylophone") == []


def test_private_conversations_of_an_account_are_not_searchable_by_nick(fts_net: Net) -> None:
    net = fts_net
    register_account(net, "alice").send("QUIT")
    alice = sasl_connect(net, "alice", "alice", caps="sasl " + " ".join(SEARCH))
    bob = net.register("bob", SEARCH)
    alice.send("PRIVMSG bob :kumquat secrets")
    drain(alice, bob)
    alice.send("QUIT")
    assert found(bob, "text=kumquat") == ["kumquat secrets"]
    # Someone using the nick "alice" without the account sees none of it.
    impostor = net.register("alice", SEARCH)
    assert found(impostor, "text=kumquat") == []
    assert found(impostor, "in=bob") == []
    # The account, under any nick, does.
    again = sasl_connect(net, "al", "alice", caps="sasl " + " ".join(SEARCH))
    assert found(again, "text=kumquat") == ["kumquat secrets"]


def test_search_does_not_find_redacted_or_expired_messages(tmp_path: Path) -> None:
    net = sqlite_net(tmp_path / "salon.db", history={"retention_days": 1})
    alice = net.register("alice", SEARCH)
    join(net, (alice, "#c"))
    alice.send("PRIVMSG #c :mango one")
    alice.send("PRIVMSG #c :mango two")
    msgid = find(alice.messages(), "PRIVMSG")[1].tags["msgid"]
    net.check_timeouts()
    alice.send(f"REDACT #c {msgid}")
    alice.lines()
    assert found(alice, "text=mango") == ["mango one"]
    net.advance(86400 - 10)
    alice.send("PRIVMSG #c :mango three")
    alice.lines()
    net.check_timeouts(history.RETENTION_EVERY)
    alice.send("PONG :test.salon")  # keep her connection alive
    alice.lines()
    assert found(alice, "text=mango") == ["mango three"]
    with sqlite3.connect(net.store.path) as db:  # type: ignore[attr-defined]
        hits = db.execute("SELECT COUNT(*) FROM history_fts WHERE history_fts MATCH 'mango'")
        assert hits.fetchone()[0] == 1
    net.store.close()


def fts_integrity(net: Net) -> None:
    """FTS5's own consistency check of the index (raises if it is corrupt)."""
    store: Any = net.store
    store.conn.execute("INSERT INTO history_fts (history_fts) VALUES ('integrity-check')")


def test_messages_stored_after_redacting_the_newest_are_found(fts_net: Net) -> None:
    """Redacting the newest message (and so freeing its row id) must not hide the next
    messages from search, nor corrupt the index when those are removed in turn."""
    net = fts_net
    alice = net.register("alice", SEARCH)
    join(net, (alice, "#c"))
    alice.send("PRIVMSG #c :apple")
    alice.send("PRIVMSG #c :banana oops")
    oops = find(alice.messages(), "PRIVMSG")[1].tags["msgid"]
    assert found(alice, "text=apple") == ["apple"]  # the index is now up to date
    alice.send(f"REDACT #c {oops}")
    alice.send("PRIVMSG #c :kiwi")
    kiwi = find(alice.messages(), "PRIVMSG")[0].tags["msgid"]
    assert found(alice, "text=kiwi") == ["kiwi"]
    assert found(alice, "text=banana") == []
    fts_integrity(net)
    alice.send(f"REDACT #c {kiwi}")
    alice.send("PRIVMSG #c :lemon")
    alice.lines()
    fts_integrity(net)
    assert found(alice, "text=kiwi") == []
    assert found(alice, "text=lemon") == ["lemon"]
    assert found(alice, "") == ["apple", "lemon"]
    fts_integrity(net)


# ---------------------------------------------------------------------------- real server


@pytest.mark.parametrize("make_net", ["memory", "sqlite"], indirect=True)
def test_a_later_holder_of_a_nick_reads_none_of_its_private_history(make_net: MakeNet) -> None:
    """Without an account the nick is all that keys a user's private conversations: who
    takes the nick later sees none of what was said to or by its earlier holder, through
    CHATHISTORY, TARGETS or SEARCH, and may not redact it; from the moment they took the
    nick on, the conversation is theirs."""
    net = make_net()
    alice = net.register("alice", SEARCH)
    bob = net.register("bob", SEARCH)
    alice.send("PRIVMSG bob :secret for the first bob")
    net.advance(1)
    bob.send("PRIVMSG alice :first bob answers")
    first = find(bob.messages(), "PRIVMSG")[0].tags["msgid"]
    alice.lines()
    bob.send("QUIT")
    net.advance(1)
    bob2 = net.register("bob", SEARCH)
    net.advance(1)
    alice.send("PRIVMSG bob :hello second bob")
    bob2.lines()
    alice.lines()

    bob2.send("CHATHISTORY LATEST alice * 10")
    assert [m.params[-1] for m in find(bob2.messages(), "PRIVMSG")] == ["hello second bob"]
    bob2.send(f"CHATHISTORY TARGETS timestamp=1970-01-01T00:00:00.000Z {stamp_of(net)} 10")
    listed = find(bob2.messages(), "CHATHISTORY")
    assert [m.params[1] for m in listed] == ["alice"]  # the new conversation only
    assert found(bob2, "text=bob") == ["hello second bob"]
    assert found(bob2, "in=alice;text=first") == []
    bob2.send(f"REDACT alice {first}")
    assert [m.params[1] for m in find(bob2.messages(), "FAIL")] == ["REDACT_FORBIDDEN"]
    # alice was there all along: the whole conversation is hers.
    assert found(alice, "in=bob;text=bob") == [
        "secret for the first bob",
        "first bob answers",
        "hello second bob",
    ]
    # A nick taken by a change of nick counts from the change too.
    carol = net.register("carol", SEARCH)
    net.advance(1)
    carol.send("NICK alice2")
    carol.lines()
    alice.send("NICK alice_")
    net.advance(1)
    carol.send("NICK alice")
    carol.lines()
    assert found(carol, "text=bob") == []


def stamp_of(net: Net) -> str:

    return "timestamp=" + format_ms(int((net.now + 10) * 1000))
