"""The sans-I/O server core, in process: what belongs to no one handler (the wire limits,
masks, config plumbing). The handlers' tests are beside this file, one per module.

Every test drives :class:`salon.server.core.Server` through the same calls the asyncio
shell makes (connect, feed, tick, check_timeouts, complete) and reads the outboxes.
"""

from __future__ import annotations

import pytest
from corehelpers import ALL_TAG_CAPS, Net, make_config

from salon.proto.message import Message


def test_make_config_defaults() -> None:
    cfg = make_config()
    assert cfg.server.name == "test.salon"
    assert cfg.flood.enabled is False
    assert make_config(flood={"enabled": True}).flood.rate == cfg.flood.rate


def test_messages_from_the_core_fit_the_wire(net: Net) -> None:
    alice = net.register("alice", caps=ALL_TAG_CAPS)
    alice.send("JOIN #c")
    alice.send("VERSION")
    alice.send("HELP")
    for line in alice.lines():
        body = line.split(" ", 1)[1] if line.startswith("@") else line
        assert len(body.encode()) + 2 <= 512, line


def test_message_value_is_what_the_core_sends(net: Net) -> None:
    alice = net.register("alice")
    net.server.send(alice.client, Message("NOTICE", ("alice", "direct"), "test.salon"))
    assert alice.lines() == [":test.salon NOTICE alice direct"]


def _glob_reference(mask: str, subject: str) -> bool:
    """Glob matching by dynamic programming: the slow, obviously right answer."""
    dp = [True] + [False] * len(subject)
    for ch in mask:
        if ch == "*":
            for i in range(1, len(subject) + 1):
                dp[i] = dp[i] or dp[i - 1]
        else:
            dp = [False] + [dp[i] and (ch == "?" or ch == subject[i]) for i in range(len(subject))]
    return dp[-1]


def test_masks_match_like_globs_and_never_backtrack_for_long() -> None:
    """WHO, LIST and ban masks are globs. A mask like ``*a*a*a*a*a*a*a*a*a*a*b`` against a
    long name must not freeze the server (it took seconds with ``.*`` per star)."""
    import random
    import time

    from salon.server.channel import mask_matches

    rng = random.Random(7)
    for _ in range(3000):
        mask = "".join(rng.choice("ab*?") for _ in range(rng.randrange(8)))
        subject = "".join(rng.choice("ab") for _ in range(rng.randrange(10)))
        assert mask_matches(mask, subject) == _glob_reference(mask, subject), (mask, subject)
    started = time.process_time()
    # With ".*" per star these took seconds (more stars or a longer name: hours).
    assert not mask_matches("*a" * 7 + "*b", "a" * 80)
    assert mask_matches("*a" * 7 + "*b", "a" * 80 + "b")
    assert time.process_time() - started < 0.5


@pytest.mark.parametrize(
    ("line", "numeric"),
    [
        ("MODE #c +l ²", "696"),  # ERR_INVALIDMODEPARAM
        ("WHOWAS bob ²", "369"),
        ("WHOWAS bob --5", "369"),
        ("LIST >²", "323"),
        ("LIST C<²", "323"),
    ],
)
def test_numbers_that_are_not_ascii_digits_are_refused_not_a_crash(
    net: Net, line: str, numeric: str
) -> None:
    alice = net.register("alice")
    alice.send("JOIN #c")
    alice.lines()
    alice.send(line)
    numerics = alice.numerics()
    assert numeric in numerics and "400" not in numerics, numerics


@pytest.mark.parametrize(
    "line", [b"@label=x \x00\xff x", b":src :\xff", b"\xff" * 400], ids=["nul", "colon", "long"]
)
def test_an_unparsable_command_word_is_not_echoed(net: Net, line: bytes) -> None:
    """The error reply to an invalid line names its command only when it is one."""
    alice = net.register("alice", ("labeled-response", "batch", "message-tags"))
    alice.send(line)
    got = alice.messages()
    assert len(got) == 1 and got[0].params[0] == "*", got


def test_no_line_sent_is_over_512_bytes() -> None:
    """RFC 1459 2.3: 512 bytes a line, CR LF included. Replies and broadcasts that echo a
    client's words are cut to fit (found by fuzzing: PART, QUIT, TOPIC, KICK, AWAY, PONG,
    421 and MONITOR lists went to 514-643 bytes)."""

    def full(head: str) -> str:
        """``head`` and a text that fills the line a client may send (510 bytes)."""
        return head + "x " + "é" * ((510 - len(head.encode()) - 2) // 2)

    net = Net(limits={"nicklen": 30})
    alice = net.register("a" * 30, caps=["away-notify"])
    bob = net.register("b" * 30, caps=["away-notify"])
    for conn in (alice, bob):
        conn.send("JOIN #c")
    alice.send("MONITOR + " + ",".join(f"{c}{'m' * 29}" for c in "cdefghijklmnopqrstuvwxyz"))
    for line in (
        full("TOPIC #c :"),
        full("AWAY :"),
        f"PRIVMSG {'a' * 30} :hi",
        full(f"FROBNICATE{'Z' * 200} :"),
        full("PING :"),
        "MONITOR L",
        full(f"KICK #c {'b' * 30} :"),
        "JOIN #" + "x" * 504,  # echoed as a middle parameter: 403 was 543 bytes
        "WHOIS " + "n" * 504,
        "WHOWAS " + "n" * 503,
        full("PART #c :"),
        full("QUIT :"),
    ):
        alice.send(line)
    sent = [line + b"\r\n" for conn in (alice, bob) for line in conn.raw().split(b"\r\n")[:-1]]
    assert len(sent) > 20
    bodies = [line.split(b" ", 1)[1] if line[:1] == b"@" else line for line in sent]
    assert [body for body in bodies if len(body) > 512] == []


def test_whois_lists_every_channel_over_several_lines() -> None:
    net = Net(limits={"channellen": 64})
    alice = net.register("alice")
    names = [f"#{i:02d}" + "f" * 60 for i in range(20)]
    for name in names:
        alice.send(f"JOIN {name}")
    bob = net.register("bob")
    bob.send("WHOIS alice")
    lines = [m for m in bob.messages() if m.command == "319"]
    assert len(lines) > 1
    shown = [word.lstrip("@") for m in lines for word in m.params[-1].split(" ")]
    assert sorted(shown) == names


def test_a_secret_channels_lists_are_for_its_members(net: Net) -> None:
    alice = net.register("alice")
    alice.send("JOIN #s")
    alice.send("MODE #s +sbeI secret!*@* ex!*@* in!*@*")
    alice.lines()
    eve = net.register("eve")
    for mode, end in (("b", "368"), ("e", "349"), ("I", "347")):
        eve.send(f"MODE #s {mode}")
        assert eve.numerics() == [end], mode
        alice.send(f"MODE #s {mode}")
        assert len(alice.numerics()) == 2, mode


def test_a_quit_that_cannot_be_sent_still_removes_the_user(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bug that makes a QUIT unserializable (a host with a space, say) is logged, and the
    user still leaves its channels and its nick: no ghost left behind."""
    net = Net()
    alice = net.register("alice")
    bob = net.register("bob")
    for conn in (alice, bob):
        conn.send("JOIN #c")
    bob.send("MONITOR + alice")
    bob.lines()
    alice.client.host = "forged host"  # what no code path may produce
    alice.client.update_prefix()
    net.server.disconnected(alice.client, net.now, "gone")
    assert "bug telling the channels of alice" in caplog.text
    assert "alice" not in net.server.nicks
    bob.send("NAMES #c")
    assert [m.params[-1] for m in bob.messages() if m.command == "353"] == ["bob"]
    net.register("alice")  # the nick is free again
