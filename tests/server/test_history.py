"""History (issue 5): what is stored, CHATHISTORY, event-playback, retention, replay on join.

Most tests run on the in-process core (injected clock) against both stores (MemoryStore and
a real SQLiteStore file); a few run a real server process.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from accounthelpers import cheap_argon2, register_account, sasl_connect  # noqa: F401
from corehelpers import START, Conn, HeldStoreNet, Net, find, isupport, make_config, sqlite_net
from historyhelpers import ALL, CAPS, EVENTS, texts

from salon.proto.message import Message
from salon.server import history
from salon.server.history import format_ms, parse_ms
from salon.store.base import HistoryEvent, HistoryQuery, dm_key

PLAIN = (*CAPS, "draft/message-redaction")  # no event-playback: windows hold messages only

MakeNet = Callable[..., Net]


# ---------------------------------------------------------------------------- helpers


def stored(net: Net, key: str, events: bool = True) -> list[HistoryEvent]:
    return net.store.history(HistoryQuery(key, limit=100_000, events=events))


def mid(m: Message) -> str:
    return "msgid=" + m.tags["msgid"]


def ts(m: Message) -> str:
    return "timestamp=" + m.tags["time"]


def stamp(t: float) -> str:
    return "timestamp=" + format_ms(round(t * 1000))


def batch(conn: Conn, line: str, kind: str = "chathistory") -> list[Message]:
    """Send ``line``; the answer must be exactly one batch of ``kind``: its messages."""
    conn.send(line)
    msgs = conn.messages()
    assert msgs, line
    head, tail = msgs[0], msgs[-1]
    assert head.command == "BATCH" and head.params[0].startswith("+"), [str(m) for m in msgs]
    assert head.params[1] == kind, head
    ref = head.params[0][1:]
    assert tail.command == "BATCH" and tail.params == ("-" + ref,), [str(m) for m in msgs]
    inner = msgs[1:-1]
    assert all(m.tags.get("batch") == ref for m in inner), [str(m) for m in inner]
    return inner


def fail(conn: Conn, line: str) -> Message:
    conn.send(line)
    fails = find(conn.messages(), "FAIL")
    assert len(fails) == 1, (line, fails)
    return fails[0]


def channel_pair(
    net: Net, n: int, step: float = 1.0, caps: tuple[str, ...] = PLAIN
) -> tuple[Conn, Conn, list[Message]]:
    """alice and bob in #c; alice says m0..m{n-1}, ``step`` seconds apart. Returns the
    PRIVMSGs as bob received them (with their msgid and time)."""
    alice = net.register("alice", caps)
    bob = net.register("bob", caps)
    alice.send("JOIN #c")
    bob.send("JOIN #c")
    alice.lines()
    bob.lines()
    net.advance(1)
    for i in range(n):
        alice.send(f"PRIVMSG #c :m{i}")
        net.advance(step)
    got = find(bob.messages(), "PRIVMSG")
    assert texts(got) == [f"m{i}" for i in range(n)]
    alice.lines()
    return alice, bob, got


# ---------------------------------------------------------------------------- 1. storage


def test_channel_and_private_messages_are_stored_with_msgid_and_time(make_net: MakeNet) -> None:
    net = make_net()
    alice = net.register("alice", ALL)
    bob = net.register("bob", ALL)
    alice.send("JOIN #Chan")
    bob.send("JOIN #Chan")
    alice.lines()
    bob.lines()
    alice.send("PRIVMSG #Chan :hello channel")
    net.advance(0.25)
    alice.send("NOTICE #chan :a notice")
    net.advance(0.25)
    alice.send("PRIVMSG bob :hello bob")
    net.advance(0.25)
    bob.send("NOTICE alice :hi alice")
    received = [m for m in bob.messages() + alice.messages() if m.command in ("PRIVMSG", "NOTICE")]
    # Each message once as received by the other side, once as the sender's echo.
    assert len(received) == 8
    by_msgid: dict[str, Message] = {}
    for m in received:
        assert m.tags["msgid"] and m.tags["time"]
        by_msgid.setdefault(m.tags["msgid"], m)
        assert by_msgid[m.tags["msgid"]].params == m.params  # echo == delivery
    assert len(by_msgid) == 4

    chan = [e for e in stored(net, "#chan") if e.command in ("PRIVMSG", "NOTICE")]
    dm = stored(net, dm_key("alice", "bob"))
    assert [e.text for e in chan] == ["hello channel", "a notice"]
    assert [e.text for e in dm] == ["hello bob", "hi alice"]
    for event in chan + dm:
        sent = by_msgid[event.msgid]
        assert event.command == sent.command
        assert event.params == sent.params
        assert event.source == sent.source
        parsed = parse_ms(sent.tags["time"])
        assert parsed is not None
        assert round(event.time * 1000) == parsed
    assert [round(e.time * 1000) for e in chan + dm] == [1_000_000, 1_000_250, 1_000_500, 1_000_750]
    assert dm[0].display == "bob" and dm[0].party == "alice"
    assert dm[1].display == "alice" and dm[1].party == "bob"


def test_sqlite_history_is_wal_with_msgid_and_time(tmp_path: Path) -> None:
    path = tmp_path / "salon.db"
    net = sqlite_net(path)
    alice = net.register("alice", ALL)
    alice.send("JOIN #c")
    alice.send("PRIVMSG #c :on disk")
    echo = find(alice.messages(), "PRIVMSG")[0]
    net.store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        rows = db.execute(
            "SELECT msgid, time, target, command, text FROM history WHERE command = 'PRIVMSG'"
        ).fetchall()
    assert rows == [(echo.tags["msgid"], START, "#c", "PRIVMSG", "on disk")]
    assert echo.tags["time"] == format_ms(int(START * 1000))


@pytest.mark.parametrize("target", ["#c", "bob"])
def test_message_is_committed_before_anyone_sees_it(target: str) -> None:
    net = HeldStoreNet()
    alice = net.register("alice", ALL)
    bob = net.register("bob", ALL)
    for conn in (alice, bob):
        conn.send("JOIN #c")
    net.run_store_until_idle()  # the JOIN events
    alice.lines()
    bob.lines()
    alice.send(f"PRIVMSG {target} :durable")
    # Not committed yet: no echo, no delivery.
    alice.nothing()
    bob.nothing()
    key = "#c" if target == "#c" else dm_key("alice", "bob")
    assert stored(net, key, events=False) == []
    assert net.run_store() == 1
    # Committed, then delivered.
    assert [e.text for e in stored(net, key, events=False)] == ["durable"]
    assert texts(bob.messages()) == ["durable"]
    assert texts(alice.messages()) == ["durable"]


def test_a_message_that_cannot_be_stored_is_not_delivered() -> None:
    """A failed commit (disk full, I/O error): nobody gets the message, the sender gets
    FAIL MESSAGE_NOT_STORED for each, labeled when the message was, and may go on."""
    net = HeldStoreNet()
    alice = net.register("alice", (*ALL, "labeled-response"))
    bob = net.register("bob", ALL)
    for conn in (alice, bob):
        conn.send("JOIN #c")
    net.run_store_until_idle()
    alice.lines()
    bob.lines()
    alice.send("@label=one PRIVMSG #c :lost")
    alice.send("PRIVMSG bob :lost too")
    calls, net.held = net.held, []
    for call in calls:
        net.server.complete_store(call, False, net.now)  # what the storage thread reports
    net.collect_effects()
    bob.nothing()
    fails = alice.messages()
    assert [(m.command, m.params[:2], m.tags.get("label")) for m in fails] == [
        ("FAIL", ("PRIVMSG", "MESSAGE_NOT_STORED"), "one"),
        ("FAIL", ("PRIVMSG", "MESSAGE_NOT_STORED"), None),
    ]
    alice.send("PRIVMSG #c :stored this time")
    net.run_store_until_idle()
    assert texts(bob.messages()) == ["stored this time"]


def test_reactions_are_relayed_and_stored(make_net: MakeNet) -> None:
    net = make_net()
    alice, bob, got = channel_pair(net, 1, caps=ALL)
    carol = net.register("carol")  # no message-tags: TAGMSG is not for her
    carol.send("JOIN #c")
    carol.lines()
    target = got[0].tags["msgid"]
    bob.send(f"@+draft/react=👍;+draft/reply={target} TAGMSG #c")
    relayed = find(alice.messages(), "TAGMSG")
    assert len(relayed) == 1
    assert relayed[0].tags["+draft/react"] == "👍"
    assert relayed[0].tags["+draft/reply"] == target
    assert find(carol.messages(), "TAGMSG") == []
    reactions = [e for e in stored(net, "#c") if e.command == "TAGMSG"]
    assert len(reactions) == 1
    assert reactions[0].msgid == relayed[0].tags["msgid"]
    assert dict(reactions[0].tags) == {"+draft/react": "👍", "+draft/reply": target}
    # DM reactions too.
    bob.send("@+draft/react=🎉 TAGMSG alice")
    assert find(alice.messages(), "TAGMSG")[0].tags["+draft/react"] == "🎉"
    assert [e.command for e in stored(net, dm_key("alice", "bob"))] == ["TAGMSG"]
    # Played back (as events) to a client with draft/event-playback.
    played = batch(alice, "CHATHISTORY LATEST #c * 10")
    tagmsgs = find(played, "TAGMSG")
    assert len(tagmsgs) == 1 and tagmsgs[0].tags["+draft/react"] == "👍"


@pytest.mark.parametrize("tag", ["+typing=active", "+draft/typing=active", "+typing=done"])
def test_typing_is_relayed_and_not_stored(tag: str) -> None:
    net = HeldStoreNet()
    alice = net.register("alice", ALL)
    bob = net.register("bob", ALL)
    for conn in (alice, bob):
        conn.send("JOIN #c")
    net.run_store_until_idle()
    alice.lines()
    bob.lines()
    alice.send(f"@{tag} TAGMSG #c")
    alice.send(f"@{tag} TAGMSG bob")
    # Relayed at once: nothing to commit, no store call at all.
    assert net.held == []
    relayed = find(bob.messages(), "TAGMSG")
    assert len(relayed) == 2
    key, _, value = tag.partition("=")
    assert all(m.tags[key] == value for m in relayed)
    assert [e for e in stored(net, "#c") if e.command == "TAGMSG"] == []
    assert stored(net, dm_key("alice", "bob")) == []


def test_reply_is_relayed_and_stored(make_net: MakeNet) -> None:
    net = make_net()
    alice, bob, got = channel_pair(net, 1)
    parent = got[0].tags["msgid"]
    bob.send(f"@+draft/reply={parent} PRIVMSG #c :an answer")
    relayed = find(alice.messages(), "PRIVMSG")
    assert relayed[0].tags["+draft/reply"] == parent
    answer = stored(net, "#c", events=False)[-1]
    assert answer.text == "an answer"
    assert dict(answer.tags) == {"+draft/reply": parent}
    played = batch(alice, "CHATHISTORY LATEST #c * 1")
    assert texts(played) == ["an answer"]
    assert played[0].tags["+draft/reply"] == parent


def test_one_message_to_several_targets_is_stored_for_each(make_net: MakeNet) -> None:
    net = make_net()
    alice, bob, _ = channel_pair(net, 0)
    alice.send("PRIVMSG #c,bob :to both")
    assert texts(bob.messages()) == ["to both", "to both"]
    assert [e.text for e in stored(net, "#c", events=False)] == ["to both"]
    assert [e.text for e in stored(net, dm_key("alice", "bob"))] == ["to both"]


def test_history_follows_a_renamed_channel(make_net: MakeNet) -> None:
    net = make_net()
    alice, bob, _ = channel_pair(net, 3)
    alice.send("RENAME #c #d :new name")
    bob.lines()
    assert texts(batch(bob, "CHATHISTORY LATEST #d * 10")) == ["m0", "m1", "m2"]
    assert stored(net, "#c") == []


def test_status_message_is_not_stored(make_net: MakeNet) -> None:
    """@#c reaches only ops: history (readable by every member) must not show it."""
    net = make_net()
    alice, _bob, _ = channel_pair(net, 0)
    alice.send("PRIVMSG @#c :ops only")
    assert texts(alice.messages()) == ["ops only"]
    assert stored(net, "#c", events=False) == []


def test_redact_removes_the_message_from_history(make_net: MakeNet) -> None:
    net = make_net()
    alice, bob, got = channel_pair(net, 3)
    victim = got[1].tags["msgid"]
    alice.send(f"REDACT #c {victim} :oops")
    redactions = find(bob.messages(), "REDACT")
    assert [m.params for m in redactions] == [("#c", victim, "oops")]
    assert [m.params for m in find(alice.messages(), "REDACT")] == [("#c", victim, "oops")]
    assert [e.text for e in stored(net, "#c", events=False)] == ["m0", "m2"]
    assert texts(batch(bob, "CHATHISTORY LATEST #c * 10")) == ["m0", "m2"]
    # A redacted message cannot be redacted again, nor referenced.
    assert fail(alice, f"REDACT #c {victim}").params[1] == "UNKNOWN_MSGID"
    assert fail(bob, f"CHATHISTORY AFTER #c msgid={victim} 10").params[1] == "INVALID_PARAMS"
    # In a private conversation, either side's own messages.
    bob.send("PRIVMSG alice :private oops")
    dm = find(alice.messages(), "PRIVMSG")[0].tags["msgid"]
    bob.lines()
    bob.send(f"REDACT alice {dm}")
    assert [m.params for m in find(alice.messages(), "REDACT")] == [("alice", dm)]
    assert stored(net, dm_key("alice", "bob")) == []


def test_redact_permissions(make_net: MakeNet) -> None:
    net = make_net()
    alice, bob, got = channel_pair(net, 1)  # alice created #c: she is its op
    carol = net.register("carol", ALL)
    bob.send("PRIVMSG #c :bob speaks")
    by_bob = find(alice.messages(), "PRIVMSG")[0].tags["msgid"]
    bob.lines()
    by_alice = got[0].tags["msgid"]
    assert fail(bob, f"REDACT #c {by_alice}").params[1] == "REDACT_FORBIDDEN"
    assert fail(carol, f"REDACT #c {by_alice}").params[1] == "INVALID_TARGET"
    assert fail(bob, "REDACT #c nosuchmsgid").params[1] == "UNKNOWN_MSGID"
    # A private message cannot be redacted through another conversation.
    assert fail(carol, f"REDACT alice {by_alice}").params[1] == "UNKNOWN_MSGID"
    alice.send(f"REDACT #c {by_bob}")  # a chanop may
    assert find(alice.messages(), "REDACT")
    assert [e.text for e in stored(net, "#c", events=False)] == ["m0"]


def test_redact_of_an_account_message_needs_that_account() -> None:
    """Taking the nick of a logged-in author does not give the right to redact her messages
    (the nick is no identity for a message that carried an account)."""
    net = Net(accounts={"registration_throttle": 0})
    alice = register_account(net, "alice")
    bob = net.register("bob", ALL)
    alice.send("JOIN #c")
    bob.send("JOIN #c")
    alice.send("PRIVMSG #c :signed by an account")
    msgid = find(bob.messages(), "PRIVMSG")[0].tags["msgid"]
    alice.send("NICK alice_away")
    bob.send("NICK alice")  # not logged in: NickServ will rename him, but not at once
    bob.lines()
    assert fail(bob, f"REDACT #c {msgid}").params[1] == "REDACT_FORBIDDEN"
    assert [e.text for e in stored(net, "#c", events=False)] == ["signed by an account"]
    alice.lines()
    alice.send(f"REDACT #c {msgid}")  # her account may, whatever her nick
    assert stored(net, "#c", events=False) == []


# ---------------------------------------------------------------------------- 2. events


def test_channel_events_are_stored_for_event_playback(make_net: MakeNet) -> None:
    net = make_net()
    alice = net.register("alice", EVENTS)
    bob = net.register("bob")
    carol = net.register("carol")
    dave = net.register("dave")
    alice.send("JOIN #c")
    bob.send("JOIN #c")
    alice.send("TOPIC #c :the topic")
    alice.send("MODE #c +v bob")
    bob.send("NICK bobby")
    alice.send("PRIVMSG #c :hello")
    alice.send("KICK #c bobby :behave")
    carol.send("JOIN #c")
    carol.send("PART #c :later")
    dave.send("JOIN #c")
    dave.send("QUIT :gone")
    alice.lines()
    expected = [
        "JOIN",
        "JOIN",
        "TOPIC",
        "MODE",
        "NICK",
        "PRIVMSG",
        "KICK",
        "JOIN",
        "PART",
        "JOIN",
        "QUIT",
    ]
    assert [e.command for e in stored(net, "#c")] == expected
    played = batch(alice, "CHATHISTORY LATEST #c * 100")
    assert [m.command for m in played] == expected
    by_command = {m.command: m for m in played}
    assert by_command["TOPIC"].params == ("#c", "the topic")
    assert by_command["MODE"].params == ("#c", "+v", "bob")
    assert by_command["NICK"].params == ("bobby",)
    assert by_command["NICK"].source.startswith("bob!")  # type: ignore[union-attr]
    assert by_command["KICK"].params == ("#c", "bobby", "behave")
    assert by_command["PART"].params == ("#c", "later")
    assert "gone" in by_command["QUIT"].params[-1]
    assert all(m.tags["msgid"] and m.tags["time"] for m in played)
    # Without draft/event-playback: only the messages.
    eve = net.register("eve", CAPS)
    eve.send("JOIN #c")
    eve.lines()
    assert [m.command for m in batch(eve, "CHATHISTORY LATEST #c * 100")] == ["PRIVMSG"]
    # BEFORE/AFTER windows honour the capability too.
    assert [m.command for m in batch(eve, f"CHATHISTORY AFTER #c {stamp(0)} 100")] == ["PRIVMSG"]


# ---------------------------------------------------------------------------- 3. CHATHISTORY


def test_latest(make_net: MakeNet) -> None:
    net = make_net()
    _, bob, got = channel_pair(net, 10)
    assert texts(batch(bob, "CHATHISTORY LATEST #c * 3")) == ["m7", "m8", "m9"]
    assert texts(batch(bob, "CHATHISTORY LATEST #C * 1000")) == [f"m{i}" for i in range(10)]
    assert texts(batch(bob, f"CHATHISTORY LATEST #c {mid(got[5])} 10")) == ["m6", "m7", "m8", "m9"]
    assert texts(batch(bob, f"CHATHISTORY LATEST #c {mid(got[5])} 2")) == ["m8", "m9"]
    assert texts(batch(bob, f"CHATHISTORY LATEST #c {ts(got[5])} 10")) == ["m6", "m7", "m8", "m9"]
    assert texts(batch(bob, f"CHATHISTORY LATEST #c {ts(got[9])} 10")) == []
    # The played-back lines are the very messages: same msgid, time, source and text.
    played = batch(bob, "CHATHISTORY LATEST #c * 10")
    assert [(m.tags["msgid"], m.tags["time"], m.source, m.params) for m in played] == [
        (m.tags["msgid"], m.tags["time"], m.source, m.params) for m in got
    ]


def test_before_after_around(make_net: MakeNet) -> None:
    net = make_net()
    _, bob, got = channel_pair(net, 10)
    assert texts(batch(bob, f"CHATHISTORY BEFORE #c {mid(got[5])} 3")) == ["m2", "m3", "m4"]
    assert texts(batch(bob, f"CHATHISTORY BEFORE #c {ts(got[5])} 100")) == [
        f"m{i}" for i in range(5)
    ]
    assert texts(batch(bob, f"CHATHISTORY BEFORE #c {mid(got[0])} 5")) == []
    assert texts(batch(bob, f"CHATHISTORY AFTER #c {mid(got[5])} 2")) == ["m6", "m7"]
    assert texts(batch(bob, f"CHATHISTORY AFTER #c {ts(got[5])} 100")) == [
        "m6",
        "m7",
        "m8",
        "m9",
    ]
    assert texts(batch(bob, f"CHATHISTORY AFTER #c {mid(got[9])} 5")) == []
    assert texts(batch(bob, f"CHATHISTORY AROUND #c {mid(got[5])} 3")) == ["m4", "m5", "m6"]
    assert texts(batch(bob, f"CHATHISTORY AROUND #c {ts(got[5])} 5")) == [
        "m3",
        "m4",
        "m5",
        "m6",
        "m7",
    ]
    assert texts(batch(bob, f"CHATHISTORY AROUND #c {mid(got[0])} 3")) == ["m0", "m1", "m2"]
    assert texts(batch(bob, f"CHATHISTORY AROUND #c {mid(got[9])} 3")) == ["m8", "m9"]
    # Paging backwards with BEFORE from LATEST walks the whole history exactly once.
    page = batch(bob, "CHATHISTORY LATEST #c * 3")
    seen = texts(page)
    while page:
        page = batch(bob, f"CHATHISTORY BEFORE #c {mid(page[0])} 3")
        seen = texts(page) + seen
    assert seen == [f"m{i}" for i in range(10)]


def test_between_both_directions_with_limits(make_net: MakeNet) -> None:
    net = make_net()
    _, bob, got = channel_pair(net, 10)
    forward = f"CHATHISTORY BETWEEN #c {mid(got[2])} {mid(got[7])}"
    backward = f"CHATHISTORY BETWEEN #c {mid(got[7])} {mid(got[2])}"
    # Exclusive bounds; always oldest first; the limit keeps those nearest the first one.
    assert texts(batch(bob, forward + " 100")) == ["m3", "m4", "m5", "m6"]
    assert texts(batch(bob, backward + " 100")) == ["m3", "m4", "m5", "m6"]
    assert texts(batch(bob, forward + " 2")) == ["m3", "m4"]
    assert texts(batch(bob, backward + " 2")) == ["m5", "m6"]
    by_time = f"CHATHISTORY BETWEEN #c {ts(got[0])} {ts(got[9])} 3"
    assert texts(batch(bob, by_time)) == ["m1", "m2", "m3"]
    by_time = f"CHATHISTORY BETWEEN #c {ts(got[9])} {ts(got[0])} 3"
    assert texts(batch(bob, by_time)) == ["m6", "m7", "m8"]
    mixed = f"CHATHISTORY BETWEEN #c {mid(got[4])} {ts(got[8])} 10"
    assert texts(batch(bob, mixed)) == ["m5", "m6", "m7"]
    assert texts(batch(bob, f"CHATHISTORY BETWEEN #c {mid(got[4])} {mid(got[5])} 10")) == []


def test_targets_without_batch_come_without_a_batch(make_net: MakeNet) -> None:
    """batch: servers "MUST NOT send BATCH commands to clients that have not negotiated"
    it, even to a client that asked for draft/chathistory alone."""
    net = make_net()
    alice = net.register("alice", ("draft/chathistory",))
    alice.send("JOIN #a")
    alice.send("PRIVMSG #a :hi")
    alice.lines()
    net.advance(1)
    alice.send(f"CHATHISTORY TARGETS {stamp(0)} {stamp(net.now)} 10")
    got = alice.messages()
    assert [m.command for m in got] == ["CHATHISTORY"], got
    assert got[0].params[:2] == ("TARGETS", "#a") and not got[0].tags


def test_targets(make_net: MakeNet) -> None:
    net = make_net()
    alice = net.register("alice", ALL)
    bob = net.register("bob", ALL)
    carol = net.register("carol", ALL)
    alice.send("JOIN #a,#b")
    bob.send("JOIN #a")
    carol.send("JOIN #elsewhere")
    t0 = net.now
    bob.send("PRIVMSG #a :in a")
    net.advance(10)
    bob.send("PRIVMSG alice :private")
    net.advance(10)
    carol.send("PRIVMSG #elsewhere :not for alice")
    carol.send("PRIVMSG bob :not for alice either")
    net.advance(10)
    alice.send("PRIVMSG #b :in b")
    net.advance(10)
    for conn in (alice, bob, carol):
        conn.lines()

    def targets(conn: Conn, start: float, end: float, limit: int) -> list[tuple[str, str]]:
        found = batch(
            conn,
            f"CHATHISTORY TARGETS {stamp(start)} {stamp(end)} {limit}",
            "draft/chathistory-targets",
        )
        assert all(m.command == "CHATHISTORY" and m.params[0] == "TARGETS" for m in found)
        return [(m.params[1], m.params[2]) for m in found]

    everything = targets(alice, t0 - 1, net.now, 100)
    assert everything == [
        ("#a", format_ms(int(t0 * 1000))),
        ("bob", format_ms(int((t0 + 10) * 1000))),
        ("#b", format_ms(int((t0 + 30) * 1000))),
    ]
    # Either order of the bounds; the window and the limit apply.
    assert targets(alice, net.now, t0 - 1, 100) == everything
    assert targets(alice, t0 + 5, net.now, 100) == everything[1:]
    assert len(targets(alice, t0 - 1, net.now, 2)) == 2
    assert [name for name, _ in targets(bob, t0 - 1, net.now, 100)] == ["#a", "alice", "carol"]
    assert fail(alice, f"CHATHISTORY TARGETS * {stamp(t0)} 10").params[1] == "INVALID_PARAMS"


def test_chathistory_limit_in_isupport_is_enforced(make_net: MakeNet) -> None:
    net = make_net(history={"chathistory_limit": 5})
    conn = net.connect()
    for cap in CAPS:
        conn.send(f"CAP REQ {cap}")
    conn.send("CAP END")
    conn.send("NICK alice")
    conn.send("USER alice 0 * :alice")
    tokens = isupport(conn.messages())
    assert tokens["CHATHISTORY"] == "5"
    assert tokens["MSGREFTYPES"] == "msgid,timestamp"
    conn.send("JOIN #c")
    for i in range(12):
        conn.send(f"PRIVMSG #c :m{i}")
        net.advance(1)
    conn.lines()
    assert texts(batch(conn, "CHATHISTORY LATEST #c * 100")) == [f"m{i}" for i in range(7, 12)]
    assert texts(batch(conn, f"CHATHISTORY AFTER #c {stamp(0)} 100")) == [f"m{i}" for i in range(5)]
    assert len(batch(conn, f"CHATHISTORY BETWEEN #c {stamp(0)} {stamp(net.now)} 6")) == 5
    assert len(batch(conn, f"CHATHISTORY AROUND #c {stamp(START + 6)} 99")) == 5


def test_invalid_chathistory_requests(make_net: MakeNet) -> None:
    net = make_net()
    _, bob, got = channel_pair(net, 3)
    m1 = mid(got[1])
    cases = {
        "CHATHISTORY LATEST #c * 0": "INVALID_PARAMS",
        "CHATHISTORY LATEST #c * -5": "INVALID_PARAMS",
        "CHATHISTORY LATEST #c * many": "INVALID_PARAMS",
        "CHATHISTORY BEFORE #c * 10": "INVALID_PARAMS",
        "CHATHISTORY AFTER #c msgid= 10": "INVALID_PARAMS",
        "CHATHISTORY AFTER #c timestamp=yesterday 10": "INVALID_PARAMS",
        "CHATHISTORY AROUND #c msgid=unknown 10": "INVALID_PARAMS",
        f"CHATHISTORY BETWEEN #c {m1} 10": "NEED_MORE_PARAMS",
        "CHATHISTORY LATEST #c": "NEED_MORE_PARAMS",
        "CHATHISTORY SIDEWAYS #c * 10": "INVALID_PARAMS",
        "CHATHISTORY LATEST * * 10": "INVALID_TARGET",
        # A context that echoes a word with a space still makes a FAIL (cut at the space).
        "CHATHISTORY :x y": "INVALID_PARAMS",
        "CHATHISTORY LATEST #c * :1 0": "INVALID_PARAMS",
    }
    for line, code in cases.items():
        failed = fail(bob, line)
        assert failed.params[:2] == ("CHATHISTORY", code), (line, failed)
    failed = fail(bob, "MARKREAD :a b")
    assert failed.params[:3] == ("MARKREAD", "INVALID_PARAMS", "a"), failed


@pytest.mark.parametrize("modes", ["+s", "+i", "+k hunter2", ""])
def test_a_private_channel_takes_its_history_with_it(make_net: MakeNet, modes: str) -> None:
    """A secret, invite-only or keyed channel that empties forgets its history: whoever
    creates it again reads nothing of it (CHATHISTORY, replay, SEARCH). A public one keeps
    it (anyone could have read it)."""
    net = make_net()
    alice = net.register("alice", CAPS)
    alice.send("JOIN #plans")
    if modes:
        alice.send(f"MODE #plans {modes}")
    alice.send("PRIVMSG #plans :the code is 1234")
    net.advance(1)
    alice.send("PART #plans")
    alice.lines()
    net.advance(1)
    eve = net.register("eve", CAPS)
    eve.send("JOIN #plans")
    eve.lines()
    shown = texts(batch(eve, "CHATHISTORY LATEST #plans * 10"))
    replayed = net.register("mallory")  # no chathistory: replay on join
    replayed.send("JOIN #plans")
    got = texts(replayed.messages())
    if modes:
        assert shown == [] and got == [] and stored(net, "#plans", events=False) == []
    else:
        assert shown == ["the code is 1234"] and got == ["the code is 1234"]


def test_fail_invalid_target_for_channels_not_joined(make_net: MakeNet) -> None:
    net = make_net()
    _alice, bob, _ = channel_pair(net, 2)
    carol = net.register("carol", ALL)
    for line in (
        "CHATHISTORY LATEST #c * 10",
        "CHATHISTORY LATEST #nosuchchannel * 10",
        f"CHATHISTORY AFTER #c {stamp(0)} 10",
        f"CHATHISTORY BETWEEN #c {stamp(0)} {stamp(net.now)} 10",
    ):
        failed = fail(carol, line)
        assert failed.params[:2] == ("CHATHISTORY", "INVALID_TARGET"), failed
    # Once she has left, bob may not read it either.
    bob.send("PART #c")
    bob.lines()
    assert fail(bob, "CHATHISTORY LATEST #c * 10").params[1] == "INVALID_TARGET"
    # Joining gives access to the channel's history.
    carol.send("JOIN #c")
    carol.lines()
    assert texts(batch(carol, "CHATHISTORY LATEST #c * 10")) == ["m0", "m1"]


def test_private_history_is_keyed_by_nick_without_account(make_net: MakeNet) -> None:
    net = make_net()
    alice = net.register("alice", ALL)
    bob = net.register("bob", ALL)
    carol = net.register("carol", ALL)
    alice.send("PRIVMSG bob :hi bob")
    net.advance(1)
    bob.send("PRIVMSG Alice :hi alice")
    net.advance(1)
    carol.send("PRIVMSG bob :carol here")
    for conn in (alice, bob, carol):
        conn.lines()
    mine = batch(alice, "CHATHISTORY LATEST bob * 10")
    assert [(m.source.split("!")[0], m.params) for m in mine] == [  # type: ignore[union-attr]
        ("alice", ("bob", "hi bob")),
        ("bob", ("Alice", "hi alice")),
    ]
    theirs = batch(bob, "CHATHISTORY LATEST ALICE * 10")
    assert [m.tags["msgid"] for m in theirs] == [m.tags["msgid"] for m in mine]
    assert texts(batch(bob, "CHATHISTORY LATEST carol * 10")) == ["carol here"]
    # Nobody else reads a private conversation.
    assert texts(batch(carol, "CHATHISTORY LATEST bob * 10")) == ["carol here"]
    assert texts(batch(carol, "CHATHISTORY LATEST alice * 10")) == []
    # Keyed by nick: the conversation follows the nick, also while bob is offline.
    bob.send("QUIT")
    assert texts(batch(alice, "CHATHISTORY LATEST bob * 10")) == ["hi bob", "hi alice"]


def test_private_history_follows_a_nick_change_on_either_side(make_net: MakeNet) -> None:
    """The conversation key kept from a client's last private message is made again when
    either party's nick changes between two messages."""
    net = make_net()
    alice = net.register("alice", ALL)
    bob = net.register("bob", ALL)
    alice.send("PRIVMSG bob :one")
    bob.send("NICK bobby")
    alice.send("PRIVMSG bobby :two")
    alice.send("NICK ally")
    alice.send("PRIVMSG bobby :three")
    alice.send("PRIVMSG bobby :four")
    for conn in (alice, bob):
        conn.lines()
    assert [e.text for e in stored(net, dm_key("alice", "bob"))] == ["one"]
    assert [e.text for e in stored(net, dm_key("alice", "bobby"))] == ["two"]
    assert [e.text for e in stored(net, dm_key("ally", "bobby"))] == ["three", "four"]
    assert [e.party for e in stored(net, dm_key("ally", "bobby"))] == ["ally", "ally"]


def test_private_history_is_keyed_by_account_when_logged_in() -> None:
    net = Net(accounts={"registration_throttle": 0})
    register_account(net, "alice").send("QUIT")
    ally = sasl_connect(net, "ally", "alice", caps="sasl " + " ".join(ALL))
    bob = net.register("bob", ALL)
    ally.send("PRIVMSG bob :from the account alice")
    net.advance(1)
    bob.send("PRIVMSG ally :back to ally")
    ally.lines()
    bob.lines()
    key = dm_key("~alice", "bob")
    assert [e.text for e in stored(net, key)] == ["from the account alice", "back to ally"]
    ally.send("QUIT")
    # Another nick, same account: the same conversation.
    alice2 = sasl_connect(net, "alice2", "alice", caps="sasl " + " ".join(ALL))
    played = batch(alice2, "CHATHISTORY LATEST bob * 10")
    assert texts(played) == ["from the account alice", "back to ally"]
    # bob finds it under her nick while she is online, under her account name otherwise.
    assert texts(batch(bob, "CHATHISTORY LATEST alice2 * 10")) == texts(played)
    alice2.send("QUIT")
    assert texts(batch(bob, "CHATHISTORY LATEST alice * 10")) == texts(played)
    # The nick she used is no key to it: someone else called "ally" sees nothing.
    impostor = net.register("ally", ALL)
    assert texts(batch(impostor, "CHATHISTORY LATEST bob * 10")) == []
    targets = batch(
        impostor,
        f"CHATHISTORY TARGETS {stamp(0)} {stamp(net.now + 10)} 10",
        "draft/chathistory-targets",
    )
    assert targets == []


def test_msgid_paging_within_one_millisecond(make_net: MakeNet) -> None:
    net = make_net()
    _, bob, got = channel_pair(net, 6, step=0.0)  # one instant, as a pasted burst
    assert texts(batch(bob, f"CHATHISTORY BEFORE #c {mid(got[3])} 10")) == ["m0", "m1", "m2"]
    assert texts(batch(bob, f"CHATHISTORY AFTER #c {mid(got[3])} 10")) == ["m4", "m5"]


# ---------------------------------------------------------------------------- 4. retention


def test_retention_per_server_and_per_channel(make_net: MakeNet) -> None:
    net = make_net(
        history={
            "retention_days": 1,
            "channel_retention": {"#Keep": 10, "#short": 0.5, "#forever": 0},
        }
    )
    alice = net.register("alice", ALL)
    bob = net.register("bob", ALL)
    channels = ("#gen", "#keep", "#short", "#forever")
    for chan in channels:
        alice.send(f"JOIN {chan}")
        alice.send(f"PRIVMSG {chan} :old in {chan}")
    alice.send("PRIVMSG bob :old private")
    alice.lines()
    bob.lines()
    day = 86400.0
    every = history.RETENTION_EVERY

    def remaining() -> set[str]:
        keys = [*channels, dm_key("alice", "bob")]
        return {key for key in keys if stored(net, key, events=False)}

    everything = {*channels, "alice bob"}
    net.check_timeouts()  # the first check purges (nothing is old yet)
    assert remaining() == everything
    net.check_timeouts(day / 2 + 60)  # #short (half a day) expired
    assert remaining() == everything - {"#short"}
    net.check_timeouts(day / 2 - 120)  # nearly a day: nothing else yet
    assert remaining() == everything - {"#short"}
    # A day has passed, but the last purge ran under RETENTION_EVERY ago: still there.
    net.check_timeouts(120)
    assert remaining() == everything - {"#short"}
    net.check_timeouts(every - 200)
    assert remaining() == everything - {"#short"}
    net.check_timeouts(100)  # RETENTION_EVERY after the last purge: server-wide retention
    assert remaining() == {"#keep", "#forever"}
    net.check_timeouts(9 * day)  # ten days: #keep goes, #forever (0) is kept for ever
    assert remaining() == {"#forever"}
    net.check_timeouts(365 * day)
    assert remaining() == {"#forever"}


def test_no_retention_by_default(make_net: MakeNet) -> None:
    net = make_net()
    alice = net.register("alice", ALL)
    alice.send("JOIN #c")
    alice.send("PRIVMSG #c :forever")
    net.check_timeouts()
    net.check_timeouts(3650 * 86400.0)
    assert [e.text for e in stored(net, "#c", events=False)] == ["forever"]


def test_retention_only_removes_what_is_old(make_net: MakeNet) -> None:
    net = make_net(history={"retention_days": 1})
    alice = net.register("alice", ALL)
    alice.send("JOIN #c")
    alice.send("PRIVMSG #c :old")
    net.check_timeouts()
    net.advance(86400 - 10)
    alice.send("PRIVMSG #c :new")
    net.check_timeouts(20 + history.RETENTION_EVERY)
    assert [e.text for e in stored(net, "#c", events=False)] == ["new"]


# ---------------------------------------------------------------------------- 5. replay


def replayed(conn: Conn, chan: str = "#c") -> tuple[list[Message], list[Message]]:
    """Join ``chan``; return (the join burst, what came after RPL_ENDOFNAMES)."""
    conn.send(f"JOIN {chan}")
    msgs = conn.messages()
    end = next(i for i, m in enumerate(msgs) if m.command == "366")
    return msgs[: end + 1], msgs[end + 1 :]


def say(net: Net, conn: Conn, n: int, chan: str = "#c") -> None:
    for i in range(n):
        conn.send(f"PRIVMSG {chan} :line {i}")
        net.advance(1)
    conn.lines()


@pytest.mark.parametrize(
    ("sections", "expected"),
    [({}, 20), ({"history": {"replay_lines": 3}}, 3), ({"history": {"replay_lines": 0}}, 0)],
)
def test_replay_on_join_without_chathistory(
    make_net: MakeNet, sections: dict[str, Any], expected: int
) -> None:
    net = make_net(**sections)
    alice = net.register("alice", ALL)
    alice.send("JOIN #c")
    alice.send("JOIN #other")
    alice.send("PRIVMSG #other :elsewhere")
    say(net, alice, 25)
    alice.send("TOPIC #c :a topic")  # events are not replayed
    alice.lines()
    wanted = [f"line {i}" for i in range(25 - expected, 25)]

    bob = net.register("bob", ("batch", "server-time", "message-tags"))
    burst, after = replayed(bob)
    assert [m.command for m in burst if m.command == "JOIN"] == ["JOIN"]
    if expected == 0:
        assert after == []
    else:
        assert after[0].command == "BATCH" and after[0].params[1:] == ("chathistory", "#c")
        ref = after[0].params[0][1:]
        assert after[-1].params == ("-" + ref,)
        lines = after[1:-1]
        assert texts(lines) == wanted
        assert all(m.command == "PRIVMSG" and m.tags["batch"] == ref for m in lines)
        assert all(m.tags["time"] and m.tags["msgid"] for m in lines)
    # A client without batch gets the same lines, plainly.
    carol = net.register("carol")
    _, after = replayed(carol)
    assert texts(after) == wanted
    assert all(m.command == "PRIVMSG" and not m.tags for m in after)


def test_replay_on_join_never_repeats_a_live_message() -> None:
    """A message whose commit is still on its way when someone joins is delivered to the
    new member live; the replay, read once it is stored, must not show it again. Nor
    must a message of the join's own millisecond, said after it."""
    net = HeldStoreNet()
    alice = net.register("alice", ALL)
    alice.send("JOIN #c")
    alice.send("PRIVMSG #c :before")
    net.run_store_until_idle()
    alice.send("PRIVMSG #c :in flight")  # its commit group is held: not yet delivered
    net.collect_effects()
    bob = net.register("bob")  # no chathistory: replay on join
    bob.send("JOIN #c")
    alice.send("PRIVMSG #c :same millisecond")  # the clock has not moved since the join
    net.run_store_until_idle()
    got = texts(bob.messages())
    # Each once. The message in flight may come before the replay, which is read after it.
    assert sorted(got) == sorted(["before", "in flight", "same millisecond"])
    assert got.index("in flight") < got.index("same millisecond")


def test_no_replay_for_chathistory_clients(make_net: MakeNet) -> None:
    net = make_net()
    alice = net.register("alice", ALL)
    alice.send("JOIN #c")
    say(net, alice, 5)
    bob = net.register("bob", CAPS)
    _burst, after = replayed(bob)
    assert after == []
    assert texts(batch(bob, "CHATHISTORY LATEST #c * 5")) == [f"line {i}" for i in range(5)]


def test_no_replay_when_history_is_off() -> None:
    net = Net(history={"enabled": False})
    alice = net.register("alice", ALL)
    alice.send("JOIN #c")
    say(net, alice, 5)
    assert net.store.events == {}
    _, after = replayed(net.register("bob"))
    assert after == []
    failed = fail(alice, "CHATHISTORY LATEST #c * 5")
    assert failed.params[:2] == ("CHATHISTORY", "UNKNOWN_COMMAND")


def test_config_history_section() -> None:
    cfg = make_config(
        history={"replay_lines": 7, "retention_days": 30, "channel_retention": {"#Big": 2}}
    )
    assert cfg.history.replay_lines == 7
    assert cfg.history.retention_days == 30
    assert cfg.history.channel_retention == (("#big", 2.0),)


# ---------------------------------------------------------------------------- real server


def test_multiline_concat_reaches_clients_without_message_tags(make_net: MakeNet) -> None:
    """draft/multiline defines draft/multiline-concat: a client that asked for multiline
    (and batch) but not message-tags still gets it, or it would show 'hel' / 'lo'."""
    net = make_net()
    alice = net.register("alice", ("draft/multiline", "batch", "message-tags"))
    bob = net.register("bob", ("draft/multiline", "batch"))
    for conn in (alice, bob):
        conn.send("JOIN #c")
        conn.lines()
    alice.send("BATCH +m draft/multiline #c")
    alice.send("@batch=m PRIVMSG #c :hel")
    alice.send("@batch=m;draft/multiline-concat PRIVMSG #c :lo")
    alice.send("BATCH -m")
    lines = [m for m in bob.messages() if m.command == "PRIVMSG"]
    assert [m.params[1] for m in lines] == ["hel", "lo"]
    assert (
        "draft/multiline-concat" in lines[1].tags and "draft/multiline-concat" not in lines[0].tags
    )


def test_a_multiline_line_too_long_to_relay_alone_fails_the_batch(make_net: MakeNet) -> None:
    """Clients without draft/multiline get each line alone: it must fit in 512 bytes."""
    net = make_net()
    alice = net.register("alice", ("draft/multiline", "batch", "message-tags"))
    carol = net.register("carol")
    for conn in (alice, carol):
        conn.send("JOIN #c")
        conn.lines()
    alice.send("BATCH +m draft/multiline #c")
    failed = fail(alice, "@batch=m PRIVMSG #c :" + "z" * 485)
    assert failed.params[:2] == ("BATCH", "MULTILINE_INVALID")
    alice.send("BATCH -m")
    assert carol.lines() == []
