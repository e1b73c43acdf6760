"""The plain-text port's defences, in-process: the server password, registered names,
CR in a line, terminal escapes from others, K-lines; and its rough edges (the prompts,
/me, long lines, channel keys, history on join)."""

from __future__ import annotations

import logging

import pytest
from accounthelpers import PASSWORD, accounts_net, cheap_argon2, register_account
from corehelpers import Conn, Net, make_config

from salon.server import textport

__all__ = ["cheap_argon2"]  # the fixture, used by every test here (autouse)


def quiet_net(**sections: object) -> Net:
    """A Net without history, so nothing is replayed on join."""
    return Net(make_config(history={"enabled": False}, **sections))


def lobby_pair(net: Net) -> tuple[Conn, Conn]:
    """alice on IRC and pat on the plain port, both in #lobby, outboxes cleared."""
    alice = net.register("alice")
    alice.send("JOIN #lobby")
    pat = net.plain("pat")
    alice.lines()
    return alice, pat


# ------------------------------------------------------------------ the server password


def test_server_password_is_asked_for_first() -> None:
    net = quiet_net(server={"password": "sekrit"})
    pat = net.plain()
    assert pat.lines() == ["Welcome to salon on test.salon.", "Server password:"]
    pat.send("")  # an empty line asks again
    assert pat.lines() == ["Server password:"]
    pat.send("sekrit")
    assert pat.lines() == ["Your name:"]
    pat.send("pat")
    assert pat.lines()[0] == "Hello pat! Type /help for help, and bye, quit, exit or over to leave."
    assert net.server.nicks["pat"] is pat.client


@pytest.mark.parametrize("attempt", ["wrong", "pat", "SEKRIT", "sekrit "])
def test_wrong_server_password_is_refused_and_disconnected(attempt: str) -> None:
    net = quiet_net(server={"password": "sekrit"})
    pat = net.plain()
    pat.lines()
    pat.send(attempt)
    assert pat.lines() == ["* Wrong server password. Bye."]
    assert net.is_closed(pat)
    assert not pat.client.registered
    assert "pat" not in net.server.nicks


# ------------------------------------------------------------------ registered names


def test_a_registered_accounts_name_is_refused_at_the_prompt() -> None:
    net = accounts_net(history={"enabled": False})
    register_account(net, "alice").send("QUIT")
    pat = net.plain()
    pat.lines()
    for name in ("alice", "ALICE"):
        pat.send(name)
        assert pat.lines() == [
            f"* The name {name} belongs to a registered account. Log in with an IRC client,"
            " or choose another. Your name:"
        ]
    assert not pat.client.registered
    pat.send("pat")
    assert pat.lines()[0].startswith("Hello pat!")


def test_plain_nick_change_to_a_registered_name_needs_a_login() -> None:
    net = accounts_net(history={"enabled": False})
    register_account(net, "alice").send("QUIT")
    pat = net.plain("pat")
    pat.send("/nick alice")
    assert pat.lines() == [
        "* The name alice belongs to a registered account; if it is yours, log in first:"
        " /msg NickServ IDENTIFY alice <password>"
    ]
    assert pat.nick == "pat"
    pat.send(f"/msg NickServ IDENTIFY alice {PASSWORD}")
    net.run_offloads()
    said = pat.lines()
    assert "(private) NickServ: You are now logged in as alice" in said
    assert not any("pat!" in line for line in said), said  # 900 in words, no prefix
    pat.send("/nick alice")
    assert pat.lines() == ["* You are now known as alice"]
    assert not net.server.accounts.enforcing


def test_registered_names_are_free_when_accounts_are_off() -> None:
    net = accounts_net(history={"enabled": False})
    register_account(net, "alice").send("QUIT")
    off = Net(make_config(accounts={"enabled": False}, history={"enabled": False}))
    off.store = net.store
    off.server.load(net.store)
    pat = off.plain()
    pat.lines()
    pat.send("alice")
    assert pat.lines()[0].startswith("Hello alice!")


def test_a_k_lined_plain_user_is_refused() -> None:
    from salon.passwords import hash_password

    net = accounts_net(
        oper=[{"name": "boss", "password": hash_password("pw")}], history={"enabled": False}
    )
    oper = net.register("boss", ip="192.0.2.1")
    oper.send("OPER boss pw")
    net.run_offloads()
    oper.send("KLINE *@10.0.0.1 :spamming")
    pat = net.plain(ip="10.0.0.1")
    pat.lines()
    pat.send("pat")
    lines = pat.lines()
    assert "* You are banned from this server: spamming" in lines
    assert net.is_closed(pat)
    assert "pat" not in net.server.nicks


# ------------------------------------------------------------------ CR, NUL, bad UTF-8


@pytest.mark.parametrize(
    "line", [b"cr only\rnext", b"/me waves\rhi", b"/msg alice x\ry", b"\rleading"]
)
def test_a_bare_cr_is_refused_like_nul(line: bytes, caplog: pytest.LogCaptureFixture) -> None:
    net = quiet_net()
    alice, pat = lobby_pair(net)
    pat.lines()
    with caplog.at_level(logging.ERROR):
        pat.feed(line + b"\n")
    assert pat.lines() == ["* That line had a CR byte; it was not sent."]
    alice.nothing()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_trailing_crs_are_a_line_ending() -> None:
    net = quiet_net()
    alice, pat = lobby_pair(net)
    pat.feed(b"telnet style\r\r\n")
    assert alice.lines() == [":pat!plain@127.0.0.1 PRIVMSG #lobby :telnet style"]


def test_junk_at_the_name_prompt_asks_again() -> None:
    net = quiet_net()
    pat = net.plain()
    pat.lines()
    pat.send(b"caf\xe9")
    assert pat.lines() == ["* That line was not valid UTF-8. Your name:"]
    pat.send(b"pa\rt")
    assert pat.lines() == ["* That line had a CR byte. Your name:"]
    pat.send(b"pa\0t")
    assert pat.lines() == ["* That line had a NUL byte. Your name:"]
    assert not pat.client.registered


# ------------------------------------------------------------------ terminal escapes


def test_visible_strips_formatting_and_shows_controls() -> None:
    assert textport.visible("\x02bold\x02 \x0304,01red\x03 \x1funder\x1f\x0f") == "bold red under"
    assert textport.visible("\x0312,x and \x03,5") == ",x and ,5"  # a comma needs a digit after it
    assert textport.visible("\x04FF0000,00FF00hex\x04") == "hex"
    assert textport.visible("\x1b[2J\x1b]0;pwned\x07") == "^[[2J^[]0;pwned^G"
    assert textport.visible("del\x7f c1\x9b31m tab\there") == "del^? c1\ufffd31m tab here"
    assert textport.visible("café ☕ 日本") == "café ☕ 日本"


def test_escapes_from_irc_users_do_not_reach_the_terminal() -> None:
    net = quiet_net()
    alice, pat = lobby_pair(net)
    alice.send("PRIVMSG #lobby :\x1b[2J\x1b]0;pwned\x07 \x0304,01red\x0f \x02bold\x02\x7f")
    assert pat.lines() == ["alice: ^[[2J^[]0;pwned^G red bold^?"]
    alice.send("PRIVMSG pat :\x01ACTION \x1b[5mblinks\x01")
    assert pat.lines() == ["(private) * alice ^[[5mblinks"]
    alice.send("TOPIC #lobby :\x1b[31mred topic")
    assert pat.lines() == ["* alice set the topic of #lobby: ^[[31mred topic"]
    # Channel names cannot hold control characters at all (valid_channel).
    alice.send("JOIN #\x1b[31mevil")
    assert "403" in alice.numerics()
    alice.send("JOIN #evil")
    alice.send("INVITE pat #evil")
    alice.lines()
    assert pat.lines() == ["* alice invites you to #evil (type /join #evil)"]
    pat.send("/join #evil")
    assert pat.lines() == ["* You are now in #evil", "* In #evil: @alice, pat"]
    alice.send("PART #evil :\x07bye")
    assert pat.lines() == ["* alice left #evil (^Gbye)"]
    alice.send("QUIT :\x1bc")
    assert pat.lines() == ["* alice left (Quit: ^[c)"]


def test_escapes_between_plain_users_are_shown_too() -> None:
    net = quiet_net()
    pat = net.plain("pat")
    sam = net.plain("sam")
    pat.lines()
    sam.send("look \x1b[2J\x07")
    assert pat.lines() == ["sam: look ^[[2J^G"]


# ------------------------------------------------------------------ rough edges


@pytest.mark.parametrize("word", ["bye", "QUIT", "exit", "over", "/quit", "/over"])
def test_leave_words_at_the_name_prompt_leave(word: str) -> None:
    net = quiet_net()
    pat = net.plain()
    pat.lines()
    pat.send(word)
    assert pat.lines() == ["Bye!"]
    assert net.is_closed(pat)
    assert word.lower() not in net.server.nicks


def test_no_leave_words_leaves_the_slash_commands() -> None:
    net = quiet_net(plain={"leave_words": []})
    alice = net.register("alice")
    alice.send("JOIN #lobby")
    pat = net.plain()
    pat.lines()
    pat.send("pat")
    assert pat.lines()[0] == "Hello pat! Type /help for help, and /quit to leave."
    pat.send("/help")
    assert pat.lines()[-1] == "/quit [reason]       leave"
    alice.lines()
    pat.send("bye")
    assert alice.lines() == [":pat!plain@127.0.0.1 PRIVMSG #lobby bye"]
    pat.send("/bye")
    assert pat.lines() == ["Bye!"]
    assert net.is_closed(pat)


def test_a_leave_word_in_another_script_matches_in_any_case() -> None:
    net = quiet_net(plain={"leave_words": ["Tschüss", "пока"]})
    pat = net.plain("pat")
    pat.send("/help")
    assert pat.lines()[-1] == (
        "/quit [reason]       leave (so do tschüss and пока on a line of their own)"
    )
    pat.send("ПОКА")
    assert pat.lines() == ["Bye!"]
    assert net.is_closed(pat)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("\ufeffbom", "it contains an invisible character (zero width no-break space)"),
        ("John Smith", "it contains a space"),
        ("café", 'it contains "é"'),
        ("bell\x07", "it contains a control character"),
        ("9lives", "it starts with a digit"),
        ("-dash", "it starts with -"),
        ("a" * 31, "it is 31 characters long"),
    ],
)
def test_name_errors_are_said_in_words(name: str, problem: str) -> None:
    net = quiet_net()
    pat = net.plain()
    pat.lines()
    pat.send(name)
    assert pat.lines() == [
        f"* That name can't be used: {problem}. Names have up to 30 letters (a-z), digits"
        " or - _ [ ] { } | ^ ` \\, and don't start with a digit or -. Your name:"
    ]


def test_nick_command_errors_are_said_in_words() -> None:
    net = quiet_net()
    pat = net.plain("pat")
    pat.send("/nick 9lives")
    assert pat.lines()[0].startswith("* That name can't be used: it starts with a digit.")
    pat.send("/nick")
    assert pat.lines() == ["* Usage: /nick <name>"]
    assert pat.nick == "pat"


def test_me_and_part_in_no_room() -> None:
    net = quiet_net()
    pat = net.plain("pat")
    pat.send("/part")
    pat.lines()
    pat.send("/me waves")
    assert pat.lines() == ["* You are in no room. /join #room first."]
    pat.send("/part")
    assert pat.lines() == ["* You are in no room."]
    pat.send("/me")
    assert pat.lines() == ["* Usage: /me <action>"]


def test_long_lines_are_refused_in_plain_words() -> None:
    net = quiet_net()
    alice, pat = lobby_pair(net)
    # ":pat!plain@127.0.0.1 PRIVMSG #lobby :" is 37 bytes, CR LF 2: 473 bytes of text fit.
    pat.send("x" * 473)
    assert len(alice.lines()) == 1
    pat.send("x" * 480)
    assert pat.lines() == [
        "* That line is 7 characters too long; it was not sent. Split it into shorter lines."
    ]
    pat.send("é" * 240)  # 480 bytes: 4 characters (of 2 bytes) too many
    assert pat.lines()[0].startswith("* That line is 4 characters too long;")
    pat.send("/msg alice " + "y" * 500)
    assert "too long" in pat.lines()[0]
    pat.send("/me " + "z" * 500)
    assert "too long" in pat.lines()[0]
    alice.nothing()
    pat.feed(b"w" * 9000)  # no end in sight: the core refuses it (417) before it ends
    pat.feed(b"w\r\n")
    assert pat.lines() == ["* That line is too long; it was not sent. Split it into shorter lines."]
    alice.nothing()


def test_formatting_codes_at_the_ends_of_a_message_are_kept() -> None:
    net = quiet_net()
    alice, pat = lobby_pair(net)
    pat.send("\x1funder lined\x1f")
    assert alice.lines() == [":pat!plain@127.0.0.1 PRIVMSG #lobby :\x1funder lined\x1f"]
    pat.send("  \tspaces and tabs go  ")
    assert alice.lines() == [":pat!plain@127.0.0.1 PRIVMSG #lobby :spaces and tabs go"]


def test_join_with_a_key() -> None:
    net = quiet_net()
    alice = net.register("alice")
    alice.send("JOIN #vault")
    alice.send("MODE #vault +k opensesame")
    alice.lines()
    pat = net.plain("pat")
    pat.send("/join #vault")
    assert pat.lines() == ["* #vault needs a key (a password): /join #vault <key>"]
    pat.send("/join #vault wrong")
    assert pat.lines()[0].startswith("* #vault needs a key")
    pat.send("/join vault opensesame")
    assert pat.lines()[0] == "* You are now in #vault"
    pat.send("in the vault")
    assert alice.lines()[-1] == ":pat!plain@127.0.0.1 PRIVMSG #vault :in the vault"


def test_join_a_room_you_are_in_makes_it_current() -> None:
    net = quiet_net()
    alice, pat = lobby_pair(net)
    pat.send("/join #other")
    pat.lines()
    pat.send("/join #LOBBY")
    assert pat.lines() == ["* You are now in #lobby"]
    pat.send("back here")
    assert alice.lines() == [":pat!plain@127.0.0.1 PRIVMSG #lobby :back here"]


# ------------------------------------------------------------------ history on join


def test_recent_messages_are_replayed_on_join() -> None:
    net = Net(make_config(history={"replay_lines": 2}))
    alice = net.register("alice")
    alice.send("JOIN #lobby")
    for text in ("one", "two", "\x1b[2Jthree"):
        alice.send(f"PRIVMSG #lobby :{text}")
    alice.send("PRIVMSG #lobby :\x01ACTION waves\x01")
    alice.lines()
    pat = net.plain()
    pat.lines()
    pat.send("pat")
    # START is 1000 s after the epoch: 00:16 UTC.
    assert pat.lines() == [
        "Hello pat! Type /help for help, and bye, quit, exit or over to leave.",
        "* You are now in #lobby",
        "* In #lobby: @alice, pat",
        "* Recent messages in #lobby (times in UTC):",
        "[00:16] alice: ^[[2Jthree",
        "[00:16] * alice waves",
    ]
    net.advance(86400)
    pat.send("/join #other")
    pat.lines()
    alice.send("JOIN #other")
    alice.send("PRIVMSG #other :yesterday")
    net.advance(86400)
    sam = net.plain("sam")
    sam.send("/join #other")
    assert sam.lines()[-2:] == [
        "* Recent messages in #other (times in UTC):",
        "[1970-01-02 00:16] alice: yesterday",
    ]


def test_nothing_is_replayed_for_an_empty_room() -> None:
    net = Net()
    pat = net.plain()
    pat.lines()
    pat.send("pat")
    assert pat.lines()[-1] == "* In #lobby: @pat"


def test_an_away_reply_and_a_login_read_as_sentences() -> None:
    net = quiet_net()
    alice, pat = lobby_pair(net)
    alice.send("AWAY :gone fishing")
    alice.lines()
    pat.lines()
    pat.send("/msg alice hi")
    assert "* alice is away: gone fishing" in pat.lines()


def test_a_kicked_user_is_told_and_moved_to_another_room() -> None:
    net = quiet_net()
    alice, pat = lobby_pair(net)
    pat.send("/who #lobby")
    assert pat.lines()[-1].startswith("* In #lobby:")
    pat.send("/who #nowhere")
    assert pat.lines() == ["* You are not in #nowhere."]
    op = net.register("op")
    op.send("JOIN #side2")
    pat.send("/join #side2")
    op.send("KICK #side2 pat :out")
    pat.lines()
    pat.send("still here?")
    said = pat.lines()
    assert said == ["* You are no longer in #side2; you are now in #lobby."], said
    pat.send("/quit gone fishing")
    assert pat.lines() == ["Bye!"]
    assert "Quit: gone fishing" in alice.lines()[-1]
