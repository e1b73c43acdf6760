"""Input limits and encodings: line length, UTF-8, tags, malformed lines.

The sans-I/O server core, in process (tests/corehelpers.py): client pairs, an injected clock, no sockets.
"""

from __future__ import annotations

from corehelpers import Net, pair


def test_417_for_a_600_byte_line(net: Net) -> None:
    alice, bob = pair(net)
    alice.send("PRIVMSG #c :" + "x" * 588)
    assert alice.lines() == [":test.salon 417 alice :Input line too long"]
    bob.nothing()
    alice.send("PRIVMSG #c :fine")  # the connection goes on
    assert bob.lines() == [":alice!alice@127.0.0.1 PRIVMSG #c fine"]


def test_417_for_too_many_client_tags(net: Net) -> None:
    alice = net.register("alice", caps=["message-tags"])
    alice.send("@+big=" + "v" * 5000 + " PING x")
    assert alice.numerics() == ["417"]


def test_endless_line_is_refused_and_discarded(net: Net) -> None:
    alice = net.register("alice")
    alice.feed(b"PRIVMSG bob :" + b"x" * 9000)
    assert alice.numerics() == ["417"]
    alice.feed(b"y" * 100 + b"\r\nPING after\r\n")
    assert alice.lines() == [":test.salon PONG test.salon after"]


def test_lines_may_arrive_in_pieces(net: Net) -> None:
    alice = net.register("alice")
    for piece in (b"PI", b"NG a", b"b\r", b"\nPING c\nPING d\r\n"):
        alice.feed(piece)
    assert alice.lines() == [
        ":test.salon PONG test.salon ab",
        ":test.salon PONG test.salon c",
        ":test.salon PONG test.salon d",
    ]


def test_empty_lines_are_ignored(net: Net) -> None:
    alice = net.register("alice")
    alice.feed(b"\r\n\n   \r\nPING x\r\n")
    assert alice.numerics() == ["PONG"]


def test_invalid_utf8(net: Net) -> None:
    alice, bob = pair(net)
    alice.send(b"PRIVMSG #c :caf\xe9")
    assert alice.lines() == [
        ":test.salon FAIL PRIVMSG INVALID_UTF8 :Message rejected: your client must use UTF-8"
    ]
    bob.nothing()
    alice.send("PRIVMSG #c :café")
    assert bob.lines() == [":alice!alice@127.0.0.1 PRIVMSG #c café"]


def test_nul_or_cr_inside_a_line_is_refused_with_a_reason(net: Net) -> None:
    """RFC 1459 2.3: a message ends at CR LF and contains neither, nor NUL. Such a line is
    neither relayed nor dropped silently."""
    alice, bob = pair(net)
    alice.send(b"PRIVMSG #c :split\rline")
    alice.send(b"PRIVMSG bob :nul\0inside")
    alice.send(b"@+x=1\0 TAGMSG #c")
    assert alice.lines() == [
        ":test.salon 400 alice PRIVMSG :Line contains a NUL or CR",
        ":test.salon 400 alice PRIVMSG :Line contains a NUL or CR",
        ":test.salon 400 alice * :Line contains a NUL or CR",
    ]
    bob.nothing()
