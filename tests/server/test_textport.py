"""The plain-text port on the core.

The sans-I/O server core, in process (tests/corehelpers.py): client pairs, an injected clock, no sockets.
"""

from __future__ import annotations

import pytest
from corehelpers import Net, make_config

from salon.errors import ConfigError
from salon.server.client import Kind


def test_plain_prompt_name_and_lobby(net: Net) -> None:
    alice = net.register("alice")
    alice.send("JOIN #lobby")
    alice.lines()
    pat = net.connect(Kind.TEXTPORT)
    assert pat.lines() == ["Welcome to salon on test.salon.", "Your name:"]
    pat.send("alice")
    assert pat.lines() == ["* The name alice is taken. Try another. Your name:"]
    pat.send("ALICE")
    assert pat.lines() == ["* The name ALICE is taken. Try another. Your name:"]
    pat.send("9lives")
    assert "Your name:" in pat.lines()[0]
    pat.send("")
    assert pat.lines() == ["Your name:"]
    pat.send("pat")
    assert pat.lines() == [
        "Hello pat! Type /help for help, and bye, quit, exit or over to leave.",
        "* You are now in #lobby",
        "* In #lobby: @alice, pat",
    ]
    assert alice.lines() == [":pat!plain@127.0.0.1 JOIN #lobby"]
    assert "pat" in net.server.nicks


def test_plain_name_is_shared_with_irc(net: Net) -> None:
    net.plain("pat")
    conn = net.connect()
    conn.send("NICK pat")
    assert conn.numerics() == ["433"]


def test_plain_rendering(net: Net) -> None:
    alice = net.register("alice")
    alice.send("JOIN #lobby")
    alice.lines()
    pat = net.plain("pat")
    bob = net.register("bob")
    bob.send("JOIN #lobby")
    assert pat.lines() == ["* bob joined #lobby"]
    alice.lines()
    alice.send("PRIVMSG #lobby :hello pat")
    assert pat.lines() == ["alice: hello pat"]
    alice.send("PRIVMSG #lobby :\x01ACTION waves\x01")
    assert pat.lines() == ["* alice waves"]
    alice.send("PRIVMSG pat :psst")
    assert pat.lines() == ["(private) alice: psst"]
    alice.send("TOPIC #lobby :Be nice")
    assert pat.lines() == ["* alice set the topic of #lobby: Be nice"]
    alice.send("PART #lobby :bye now")
    assert pat.lines() == ["* alice left #lobby (bye now)"]


def test_plain_talk_and_msg(net: Net) -> None:
    pat = net.plain("pat")
    alice = net.register("alice")
    alice.send("JOIN #lobby")
    alice.lines()
    pat.lines()
    pat.send("hi everyone")
    assert alice.lines() == [":pat!plain@127.0.0.1 PRIVMSG #lobby :hi everyone"]
    pat.nothing()
    pat.send("//etc/passwd is a path")
    assert alice.lines() == [":pat!plain@127.0.0.1 PRIVMSG #lobby :/etc/passwd is a path"]
    pat.send("/msg alice just you")
    assert alice.lines() == [":pat!plain@127.0.0.1 PRIVMSG alice :just you"]
    pat.send("/msg nobody hello")
    assert pat.lines() == ["* No such nick/channel: nobody"]
    pat.send("/msg alice")
    assert pat.lines() == ["* Usage: /msg <name> <text>"]


def test_plain_join_who_help(net: Net) -> None:
    pat = net.plain("pat")
    alice = net.register("alice")
    alice.send("JOIN #other")
    alice.lines()
    pat.send("/join other")
    assert pat.lines() == ["* You are now in #other", "* In #other: @alice, pat"]
    assert alice.lines() == [":pat!plain@127.0.0.1 JOIN #other"]
    pat.send("in the other room")
    assert alice.lines() == [":pat!plain@127.0.0.1 PRIVMSG #other :in the other room"]
    pat.send("/who")
    assert pat.lines() == ["* In #other: @alice, pat"]
    bob = net.register("bob")
    bob.send("JOIN #lobby")
    pat.lines()
    bob.send("PRIVMSG #lobby :over here")
    assert pat.lines() == ["[#lobby] bob: over here"]
    pat.send("/help")
    lines = pat.lines()
    assert lines[0] == "Type a line and press Enter to talk to the room."
    assert any(line.startswith("/msg") for line in lines)
    assert lines[-1] == (
        "/quit [reason]       leave (so do bye, quit, exit and over on a line of their own)"
    )
    pat.send("/frobnicate")
    assert pat.lines() == ["* Unknown command /frobnicate. Type /help."]


def test_plain_bye(net: Net) -> None:
    pat = net.plain("pat")
    alice = net.register("alice")
    alice.send("JOIN #lobby")
    alice.lines()
    pat.lines()
    pat.send("bye")
    assert pat.lines() == ["Bye!"]
    assert net.is_closed(pat)
    assert alice.lines() == [":pat!plain@127.0.0.1 QUIT :Quit: bye"]
    assert "pat" not in net.server.nicks


def test_plain_default_channel_refuses(net: Net) -> None:
    alice = net.register("alice")
    alice.send("JOIN #lobby")
    alice.send("MODE #lobby +i")
    pat = net.plain()
    pat.lines()
    pat.send("pat")  # must not raise
    lines = pat.lines()
    assert any("+i" in line for line in lines), lines
    pat.send("/join #elsewhere")
    assert pat.lines()[0] == "* You are now in #elsewhere"


def test_plain_joins_the_configured_default_channel() -> None:
    net = Net(server={"default_channel": "#Meet"})
    alice = net.register("alice")
    alice.send("JOIN #meet")
    alice.lines()
    pat = net.plain()
    pat.lines()
    pat.send("pat")
    assert pat.lines()[1:] == ["* You are now in #meet", "* In #meet: @alice, pat"]
    assert alice.lines() == [":pat!plain@127.0.0.1 JOIN #meet"]
    pat.send("hello")
    assert alice.lines() == [":pat!plain@127.0.0.1 PRIVMSG #meet hello"]


@pytest.mark.parametrize(
    "name", ["lobby", "#", "#a b", "#a,b", "#bell\x07", "#zero\u200bwidth", "#" + "x" * 50]
)
def test_default_channel_must_be_a_channel_name(name: str) -> None:
    with pytest.raises(ConfigError, match=r"server\.default_channel"):
        make_config(server={"default_channel": name}, limits={"channellen": 50})


def test_plain_rendering_is_per_recipient(net: Net) -> None:
    alice = net.register("alice")
    pat = net.plain("pat")  # current room: #lobby
    sam = net.plain("sam")
    sam.send("/join #other")  # current room: #other, still in #lobby
    alice.send("JOIN #lobby")
    pat.lines()
    sam.lines()
    alice.send("PRIVMSG #lobby :hi")
    assert pat.lines() == ["alice: hi"]
    assert sam.lines() == ["[#lobby] alice: hi"]


def test_plain_user_is_told_about_shutdown(net: Net) -> None:
    pat = net.plain("pat")
    net.server.shutdown(net.now)
    assert any("shutting down" in line for line in pat.lines())


def test_plain_invalid_utf8(net: Net) -> None:
    pat = net.plain("pat")
    pat.send(b"caf\xe9")
    assert pat.lines() == ["* That line was not valid UTF-8; it was not sent."]


def test_plain_own_nick_change(net: Net) -> None:
    pat = net.plain("pat")
    pat.send("/nick patty")
    assert pat.lines() == ["* You are now known as patty"]


def test_plain_sees_irc_quit_and_nick(net: Net) -> None:
    pat = net.plain("pat")
    alice = net.register("alice")
    alice.send("JOIN #lobby")
    pat.lines()
    alice.send("NICK alicia")
    assert pat.lines() == ["* alice is now known as alicia"]
    alice.send("QUIT :later")
    assert pat.lines() == ["* alicia left (Quit: later)"]
