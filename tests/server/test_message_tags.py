"""IRCv3 on the core: labeled-response, echo-message, server-time, message-tags.

The sans-I/O server core, in process (tests/corehelpers.py): client pairs, an injected clock, no sockets.
"""

from __future__ import annotations

import re

from corehelpers import ALL_TAG_CAPS, Net, one

from salon.server.core import format_time

TIME_RX = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def test_labeled_response_ack_single_and_batch(net: Net) -> None:
    alice = net.register("alice", caps=ALL_TAG_CAPS)
    alice.send("@label=a1 PONG x")
    assert alice.lines() == ["@label=a1 :test.salon ACK"]
    alice.send("@label=a2 PING tok")
    assert alice.lines() == ["@label=a2 :test.salon PONG test.salon tok"]
    alice.send("@label=a3 MOTD")
    msgs = alice.messages()
    start, *inner, end = msgs
    assert start.command == "BATCH" and start.tags == {"label": "a3"}
    ref = start.params[0][1:]
    assert start.params == ("+" + ref, "labeled-response")
    assert [m.command for m in inner] == ["375", "372", "376"]
    assert all(m.tags == {"batch": ref} for m in inner)
    assert end.command == "BATCH" and end.params == ("-" + ref,)
    alice.send("@label=a4 NOSUCHCMD")
    assert alice.lines() == ["@label=a4 :test.salon 421 alice NOSUCHCMD :Unknown command"]


def test_labeled_response_not_without_the_cap(net: Net) -> None:
    alice = net.register("alice")
    alice.send("@label=x PING tok")
    assert alice.lines() == [":test.salon PONG test.salon tok"]
    alice.send("@label=x PONG tok")
    alice.nothing()


def test_labeled_response_without_message_tags(net: Net) -> None:
    # The label tag belongs to labeled-response itself, like time to server-time.
    alice = net.register("alice", caps=["labeled-response", "batch"])
    alice.send("@label=l1 PONG x")
    assert alice.lines() == ["@label=l1 :test.salon ACK"]
    alice.send("@label=l2 PING x")
    assert alice.lines() == ["@label=l2 :test.salon PONG test.salon x"]
    alice.send("@label=l3 MOTD")
    msgs = alice.messages()
    assert msgs[0].tags == {"label": "l3"}
    assert msgs[1].tags == {"batch": msgs[0].params[0][1:]}


def test_labeled_response_without_batch_is_unlabeled_when_long(net: Net) -> None:
    alice = net.register("alice", caps=["labeled-response"])
    alice.send("@label=l1 PING x")
    assert alice.lines() == ["@label=l1 :test.salon PONG test.salon x"]
    alice.send("@label=l2 MOTD")
    msgs = alice.messages()
    assert [m.command for m in msgs] == ["375", "372", "376"]
    assert all(not m.tags for m in msgs)


def test_labeled_invalid_utf8(net: Net) -> None:
    alice = net.register("alice", caps=ALL_TAG_CAPS)
    alice.send(b"@label=u8 PRIVMSG #c :\xff")
    fail = one(alice.messages(), "FAIL")
    assert fail.tags["label"] == "u8"
    assert fail.params[:2] == ("PRIVMSG", "INVALID_UTF8")


def test_echo_message(net: Net) -> None:
    alice = net.register("alice", caps=["echo-message"])
    bob = net.register("bob")
    alice.send("PRIVMSG bob :echoed")
    assert alice.lines() == [":alice!alice@127.0.0.1 PRIVMSG bob echoed"]
    assert bob.lines() == [":alice!alice@127.0.0.1 PRIVMSG bob echoed"]
    bob.send("PRIVMSG alice :not echoed")
    bob.nothing()
    alice.lines()
    alice.send("PRIVMSG nobody :x")  # a failed message is not echoed
    assert alice.numerics() == ["401"]


def test_echo_message_labeled(net: Net) -> None:
    alice = net.register("alice", caps=ALL_TAG_CAPS)
    net.register("bob")
    alice.send("@label=e1 PRIVMSG bob :hi")
    msg = one(alice.messages(), "PRIVMSG")
    assert msg.tags["label"] == "e1"
    assert re.fullmatch(TIME_RX, msg.tags["time"])
    assert msg.tags["msgid"]


def test_server_time_only_with_the_cap(net: Net) -> None:
    net.advance(0.25)
    alice = net.register("alice")
    timed = net.register("timed", caps=["server-time"])
    tagged = net.register("tagged", caps=["message-tags"])
    plain = net.register("plain")
    for conn in (alice, timed, tagged, plain):
        conn.send("JOIN #c")
    for conn in (alice, timed, tagged, plain):
        conn.lines()
    alice.send("PRIVMSG #c :when")
    stamp = format_time(net.now)
    assert stamp == "1970-01-01T00:16:40.250Z"
    assert timed.lines() == [f"@time={stamp} :alice!alice@127.0.0.1 PRIVMSG #c when"]
    assert plain.lines() == [":alice!alice@127.0.0.1 PRIVMSG #c when"]
    tags = one(tagged.messages(), "PRIVMSG").tags
    assert "time" not in tags and "msgid" in tags


def test_message_tags_client_only_relay(net: Net) -> None:
    alice = net.register("alice", caps=["message-tags"])
    bob = net.register("bob", caps=["message-tags"])
    carol = net.register("carol")
    for conn in (alice, bob, carol):
        conn.send("JOIN #c")
    for conn in (alice, bob, carol):
        conn.lines()
    alice.send("@+draft/reply=abc;+example.com/x=a\\sb;label=nope;msgid=forged PRIVMSG #c :re")
    tags = one(bob.messages(), "PRIVMSG").tags
    assert tags["+draft/reply"] == "abc"
    assert tags["+example.com/x"] == "a b"
    assert "label" not in tags
    assert tags["msgid"] != "forged"
    assert carol.lines() == [":alice!alice@127.0.0.1 PRIVMSG #c re"]


def test_client_tags_with_invalid_keys_are_not_relayed(net: Net) -> None:
    """message-tags: a key is [<vendor> '/'] <key_name>, a key_name of letters, digits and
    hyphens; others are dropped, the valid ones beside them still go."""
    alice = net.register("alice", caps=["message-tags"])
    bob = net.register("bob", caps=["message-tags"])
    for conn in (alice, bob):
        conn.send("JOIN #c")
        conn.lines()
    alice.send("@+=1;+é=2;+a/=3;+x.y/z_w=4;+ok=5;+example.com/fine-1=6 TAGMSG #c")
    tags = one(bob.messages(), "TAGMSG").tags
    assert {k for k in tags if k[0] == "+"} == {"+ok", "+example.com/fine-1"}, tags


def test_a_non_ascii_channel_counts_in_bytes_for_the_512_limit(net: Net) -> None:
    alice = net.register("alice")
    bob = net.register("bob")
    name = "#" + "é" * 30
    for conn in (alice, bob):
        conn.send(f"JOIN {name}")
        conn.lines()
    room = 512 - len(f":alice!alice@127.0.0.1 PRIVMSG {name} :\r\n".encode())
    alice.send(f"PRIVMSG {name} :a {'x' * (room - 1)}")  # a space: relayed with its ':'
    assert "417" in alice.numerics() and bob.lines() == []
    alice.send(f"PRIVMSG {name} :a {'x' * (room - 2)}")
    assert len(bob.lines()[0].encode()) + 2 == 512


def test_tagmsg_only_to_message_tags_clients(net: Net) -> None:
    alice = net.register("alice", caps=["message-tags"])
    bob = net.register("bob", caps=["message-tags"])
    carol = net.register("carol")
    for conn in (alice, bob, carol):
        conn.send("JOIN #c")
    for conn in (alice, bob, carol):
        conn.lines()
    alice.send("@+draft/typing=active TAGMSG #c")
    msg = one(bob.messages(), "TAGMSG")
    assert msg.params == ("#c",)
    assert msg.tags["+draft/typing"] == "active"
    carol.nothing()
    alice.send("@+draft/typing=active TAGMSG carol")
    carol.nothing()
    alice.nothing()
    alice.send("@+draft/typing=done TAGMSG bob")
    assert one(bob.messages(), "TAGMSG").tags["+draft/typing"] == "done"


def test_msgids_are_unique(net: Net) -> None:
    alice = net.register("alice")
    bob = net.register("bob", caps=["message-tags"])
    for _ in range(3):
        alice.send("PRIVMSG bob :x")
    ids = [m.tags["msgid"] for m in bob.messages()]
    assert len(set(ids)) == 3
