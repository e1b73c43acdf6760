"""The plain-text port, as used with ``nc localhost PORT``; names are shared with IRC."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
from conftest import irc_user

pytestmark = pytest.mark.timeout(30)


def plain_user(connect: Any, salon: Any, name: str) -> Any:
    c = connect(salon.plain_port)
    c.expect(r"^Your name:")
    c.send(name)
    c.expect(rf"^Hello {name}!")
    c.expect(r"^\* You are now in #lobby")
    return c


def assert_closed(c: Any, timeout: float = 3.0) -> None:
    """The server closed the socket (after whatever it still had to say)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        c.sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = c.sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            return
        if not data:
            return
        c.buf += data
    raise AssertionError(f"socket still open; buffered {c.buf[-300:]!r}")


def test_asks_for_a_name_and_puts_you_in_lobby(salon: Any, connect: Any) -> None:
    c = connect(salon.plain_port)
    c.expect(r"^Welcome to ")
    c.expect(r"^Your name:")
    c.send("")  # an empty line asks again
    c.expect(r"^Your name:")
    c.send("9lives")  # not a valid name
    c.expect(r"can't be used.*Your name:")
    c.send("alice")
    c.expect(r"^Hello alice!")
    c.expect(r"^\* You are now in #lobby")
    c.expect(r"^\* In #lobby: .*alice")


def test_taken_name_is_refused_and_asked_again(salon: Any, connect: Any) -> None:
    irc_user(connect, salon.irc_port, "bob")
    plain_user(connect, salon, "carol")
    c = connect(salon.plain_port)
    c.expect(r"^Your name:")
    c.send("bob")  # held by an IRC user
    c.expect(r"name bob is taken.*Your name:")
    c.send("BOB")  # case-insensitively
    c.expect(r"is taken.*Your name:")
    c.send("carol")  # held by a plain-text user
    c.expect(r"name carol is taken.*Your name:")
    c.send("dave")
    c.expect(r"^Hello dave!")
    c.expect(r"^\* You are now in #lobby")


def test_text_goes_to_lobby_and_lines_from_others_arrive(salon: Any, connect: Any) -> None:
    bob = irc_user(connect, salon.irc_port, "bob", "#lobby")
    alice = plain_user(connect, salon, "alice")
    bob.expect(r"^:alice!\S+ JOIN #lobby")
    alice.send("hello there, everyone")
    bob.expect(r"^:alice!\S+@\S+ PRIVMSG #lobby :hello there, everyone$")
    bob.send("PRIVMSG #lobby :hi alice")
    alice.expect(r"^bob: hi alice$")
    bob.send("PRIVMSG #lobby :\x01ACTION waves\x01")
    alice.expect(r"^\* bob waves$")
    # A line starting with // is sent as text with one slash.
    alice.send("//not a command")
    bob.expect(r"PRIVMSG #lobby :/not a command$")


def test_join_and_leave_notices(salon: Any, connect: Any) -> None:
    alice = plain_user(connect, salon, "alice")
    bob = irc_user(connect, salon.irc_port, "bob", "#lobby")
    alice.expect(r"^\* bob joined #lobby$")
    bob.send("PART #lobby :gone fishing")
    alice.expect(r"^\* bob left #lobby \(gone fishing\)$")
    bob.send("JOIN #lobby")
    alice.expect(r"^\* bob joined #lobby$")
    bob.send("QUIT :see you")
    alice.expect(r"^\* bob left \(Quit: see you\)$")
    carol = plain_user(connect, salon, "carol")
    alice.expect(r"^\* carol joined #lobby$")
    carol.send("bye")
    alice.expect(r"^\* carol left")


@pytest.mark.parametrize("word", ["bye", "quit", "exit", "over", "BYE", "Over", "/quit"])
def test_leave_words_close_cleanly(word: str, salon: Any, connect: Any) -> None:
    bob = irc_user(connect, salon.irc_port, "bob", "#lobby")
    alice = plain_user(connect, salon, "alice")
    bob.expect(r"JOIN #lobby")
    alice.send(word)
    alice.expect(r"^Bye!")
    assert_closed(alice)
    bob.expect(r"^:alice!\S+ QUIT :")
    # The name is free again.
    again = plain_user(connect, salon, "alice")
    again.send("still here")
    bob.expect(r"^:alice!\S+ PRIVMSG #lobby :still here$")


def test_leave_words_are_configurable(make_salon: Any, connect: Any) -> None:
    salon = make_salon(plain={"leave_words": ["Over", "adios"]})
    bob = irc_user(connect, salon.irc_port, "bob", "#lobby")
    alice = connect(salon.plain_port)
    alice.expect(r"^Your name:")
    alice.send("alice")
    alice.expect(r"^Hello alice! Type /help for help, and over or adios to leave\.$")
    bob.expect(r"JOIN #lobby")
    alice.send("/help")
    alice.expect(r"^/quit \[reason\] +leave \(so do over and adios on a line of their own\)$")
    alice.send("bye")  # no longer a leave word: it is said to the room
    bob.expect(r"^:alice!\S+ PRIVMSG #lobby :?bye$")
    alice.send("OVER")
    alice.expect(r"^Bye!")
    assert_closed(alice)
    bob.expect(r"^:alice!\S+ QUIT :Quit: bye$")


def test_closing_the_socket_is_a_quit(salon: Any, connect: Any) -> None:
    bob = irc_user(connect, salon.irc_port, "bob", "#lobby")
    alice = plain_user(connect, salon, "alice")
    bob.expect(r"JOIN #lobby")
    alice.sock.shutdown(socket.SHUT_WR)  # nc sends EOF on ^D
    bob.expect(r"^:alice!\S+ QUIT :")


def test_private_messages_both_ways(salon: Any, connect: Any) -> None:
    bob = irc_user(connect, salon.irc_port, "bob")
    alice = plain_user(connect, salon, "alice")
    alice.send("/msg bob psst, a secret")
    bob.expect(r"^:alice!\S+ PRIVMSG bob :psst, a secret$")
    bob.send("PRIVMSG alice :secret received")
    alice.expect(r"^\(private\) bob: secret received$")
    alice.send("/msg nobody hello?")
    alice.expect(r"nobody")
    alice.send("/msg bob")
    alice.expect(r"^\* Usage: /msg")


def test_join_another_room_and_talk_there(salon: Any, connect: Any) -> None:
    bob = irc_user(connect, salon.irc_port, "bob", "#room")
    alice = plain_user(connect, salon, "alice")
    alice.send("/join #room")
    alice.expect(r"^\* You are now in #room")
    bob.expect(r"^:alice!\S+ JOIN #room")
    alice.send("over here now")
    bob.expect(r"^:alice!\S+ PRIVMSG #room :over here now$")
    # Without the '#', the room name is completed.
    alice.send("/join other")
    alice.expect(r"^\* You are now in #other")


def test_who_lists_the_room(salon: Any, connect: Any) -> None:
    irc_user(connect, salon.irc_port, "bob", "#lobby")
    alice = plain_user(connect, salon, "alice")
    alice.read_all(0.2)
    alice.send("/who")
    m = alice.expect(r"^\* In #lobby: (.*)$")
    names = {name.lstrip("@+") for name in m.group(1).split(", ")}
    assert names == {"alice", "bob"}


def test_help_and_unknown_command(salon: Any, connect: Any) -> None:
    alice = plain_user(connect, salon, "alice")
    alice.send("/help")
    lines = [alice.expect(r"/msg").string]
    lines += alice.read_all(0.3)
    text = "\n".join(lines)
    for needle in ("/join", "/who", "/help", "bye"):
        assert needle in text
    alice.send("/frobnicate")
    alice.expect(r"Unknown command /frobnicate")


def test_nick_uniqueness_spans_both_ports(salon: Any, connect: Any) -> None:
    plain_user(connect, salon, "alice")
    # A registered IRC user changing to the plain user's name.
    bob = irc_user(connect, salon.irc_port, "bob")
    bob.send("NICK alice")
    bob.expect(r" 433 bob alice ")
    bob.send("NICK ALICE")
    bob.expect(r" 433 bob ALICE ")
    # An IRC connection registering with it.
    c = connect(salon.irc_port)
    c.send("NICK alice")
    c.send("USER x 0 * :x")
    c.expect(r" 433 \* alice ")
    c.send("NICK alice2")
    c.expect(r" 001 alice2 ")
    # And the other way round: a plain user cannot take bob.
    d = connect(salon.plain_port)
    d.expect(r"^Your name:")
    d.send("bob")
    d.expect(r"taken")


def test_invalid_utf8_and_nul_are_not_sent(salon: Any, connect: Any) -> None:
    bob = irc_user(connect, salon.irc_port, "bob", "#lobby")
    alice = plain_user(connect, salon, "alice")
    bob.expect(r"JOIN #lobby")
    alice.send(b"caf\xe9 \xff\xfe\r\n")
    alice.expect(r"not valid UTF-8")
    alice.send(b"nul\x00byte\r\n")
    alice.expect(r"NUL")
    alice.send("after the junk")
    m = bob.expect(r"PRIVMSG #lobby :")
    assert m.string.endswith(":after the junk"), m.string


def test_server_password_is_asked_for_first(make_salon: Any, connect: Any) -> None:
    salon = make_salon(server={"password": "sekrit"})
    c = connect(salon.plain_port)
    c.expect(r"^Server password:")
    c.send("nope")
    c.expect(r"^\* Wrong server password\. Bye\.$")
    assert_closed(c)
    c = connect(salon.plain_port)
    c.expect(r"^Server password:")
    c.send("sekrit")
    c.expect(r"^Your name:")
    c.send("alice")
    c.expect(r"^Hello alice!")


def test_cr_and_terminal_escapes(salon: Any, connect: Any) -> None:
    bob = irc_user(connect, salon.irc_port, "bob", "#lobby")
    alice = plain_user(connect, salon, "alice")
    bob.expect(r"JOIN #lobby")
    for line in (b"cr only\rnext\n", b"/me waves\rhi\n", b"/msg bob x\ry\n"):
        alice.send(line)
        alice.expect(r"^\* That line had a CR byte; it was not sent\.$")
    bob.send("PRIVMSG #lobby :\x1b[2J\x1b]0;pwned\x07 \x0304red\x0f")
    m = alice.expect(r"^bob: ")
    assert m.string == "bob: ^[[2J^[]0;pwned^G red"
    alice.send("after the junk")
    m = bob.expect(r"PRIVMSG #lobby :")
    assert m.string.endswith(":after the junk"), m.string
    assert "Traceback" not in salon.log()
