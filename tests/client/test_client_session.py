"""The sans-I/O client session, driven by hand-written server lines (no sockets)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from salon.client import Session, Settings
from salon.client.commands import PLAIN_KEYS, completions, help_lines, split_command
from salon.client.model import (
    AutoJoin,
    BufferAdded,
    BufferRemoved,
    Event,
    Fatal,
    Focus,
    HistoryAdded,
    Joined,
    JoinFailed,
    LocalCommand,
    Mention,
    QuitRequested,
    TimedOut,
    Unsent,
)
from salon.client.sasl import (
    ChunkReader,
    SaslError,
    ScramSha256,
    encode_chunks,
    plain_payload,
)
from salon.client.text import (
    MIRC_COLOURS,
    Format,
    describe_fail,
    describe_numeric,
    format_spans,
    mentions,
    parse_time,
    split_utf8,
)
from salon.proto import parse
from salon.proto.formatting import strip_formatting

NOW = 1_700_000_000.0
SERVER = "irc.test"


class Wire:
    """A session plus helpers to play the server's side of a conversation."""

    def __init__(self, session: Session) -> None:
        self.s = session
        self.events: list[Event] = []

    def sent(self) -> list[str]:
        data = self.s.data_to_send().decode()
        return [line for line in data.split("\r\n") if line]

    def recv(self, *lines: str) -> list[Event]:
        events: list[Event] = []
        for line in lines:
            events += self.s.receive_line(line, NOW)
        self.events += events
        return events

    def input(self, text: str, buffer: str = "#lobby") -> list[Event]:
        events = self.s.input(text, buffer, NOW)
        self.events += events
        return events


def make(**kw: object) -> Wire:
    settings = Settings(nick=str(kw.pop("nick", "me")), **kw)  # type: ignore[arg-type]
    return Wire(Session(settings, nonce=lambda: "rOprNGfwEbeRWgbNEkqO"))


def registered(caps: str = "", **kw: object) -> Wire:
    """A session through CAP negotiation and the welcome, joined to #lobby."""
    w = make(**kw)
    w.s.connection_made(NOW)
    w.sent()
    w.recv(f":{SERVER} CAP * LS :{caps}")
    if caps:
        req = w.sent()
        assert req and req[0].startswith("CAP REQ ")
        w.recv(f":{SERVER} CAP me ACK :{parse(req[0]).params[-1]}")
    w.recv(
        f":{SERVER} 001 me :Welcome",
        f":{SERVER} 005 me PREFIX=(ov)@+ CHANTYPES=# CHANMODES=beI,k,l,imnst :are supported",
    )
    w.sent()
    w.recv(
        ":me!u@h JOIN #lobby",
        f":{SERVER} 353 me = #lobby :@alice +bob me",
        f":{SERVER} 366 me #lobby :End of /NAMES list",
    )
    return w


# ---------------------------------------------------------------------------- registration


def test_registration_sends_cap_ls_nick_user_then_cap_end() -> None:
    w = make(password="secret", username="u", realname="Real Name")
    w.s.connection_made(NOW)
    assert w.sent() == [
        "CAP LS 302",
        "PASS secret",
        "NICK me",
        "USER u 0 * :Real Name",
    ]
    w.recv(
        f":{SERVER} CAP * LS * :server-time batch unknown-cap", f":{SERVER} CAP * LS :echo-message"
    )
    assert w.sent() == ["CAP REQ :server-time batch echo-message"]
    w.recv(f":{SERVER} CAP * ACK :server-time batch echo-message")
    assert w.sent() == ["CAP END"]
    assert w.s.caps == {"server-time", "batch", "echo-message"}


def test_cap_nak_retries_one_by_one() -> None:
    w = make()
    w.s.connection_made(NOW)
    w.sent()
    w.recv(f":{SERVER} CAP * LS :server-time batch")
    w.sent()
    w.recv(f":{SERVER} CAP * NAK :server-time batch")
    assert w.sent() == ["CAP REQ server-time", "CAP REQ batch"]
    w.recv(f":{SERVER} CAP * ACK :server-time")
    assert w.sent() == []
    w.recv(f":{SERVER} CAP * NAK :batch")
    assert w.sent() == ["CAP END"]


def test_no_caps_offered_ends_at_once() -> None:
    w = make()
    w.s.connection_made(NOW)
    w.sent()
    w.recv(f":{SERVER} CAP * LS :")
    assert w.sent() == ["CAP END"]


def test_welcome_joins_the_configured_channels_and_focuses_the_first() -> None:
    w = make(channels=("#a", "b"))
    w.s.connection_made(NOW)
    w.sent()
    w.recv(f":{SERVER} 001 me :Welcome")
    assert w.sent() == ["JOIN #a,#b"]
    events = w.recv(":me!u@h JOIN #a")
    assert any(isinstance(e, BufferAdded) and e.focus for e in events)
    events = w.recv(f":{SERVER} 366 me #a :End")
    assert any(isinstance(e, Joined) for e in events)


def welcomed(*isupport: str, **kw: object) -> Wire:
    """Through 001 and a 005 with ``isupport`` tokens, before the MOTD."""
    w = make(**kw)
    w.s.connection_made(NOW)
    w.sent()
    w.recv(f":{SERVER} 001 me :Welcome", f":{SERVER} 005 me {' '.join(isupport)} :are supported")
    return w


def test_with_no_channel_named_it_joins_the_servers_default_after_the_motd() -> None:
    w = welcomed("CHANTYPES=#", "salon.chat/DEFAULTCHANNEL=#meet", server_default=True)
    assert w.sent() == []  # 005 comes after 001: the join waits for every token
    events = w.recv(f":{SERVER} 376 me :End of /MOTD command.")
    assert w.sent() == ["JOIN #meet"]
    assert [e for e in events if isinstance(e, AutoJoin)] == [AutoJoin(("#meet",))]
    events = w.recv(":me!u@h JOIN #meet")
    assert any(isinstance(e, BufferAdded) and e.focus for e in events)
    # A later MOTD (the MOTD command) joins nothing more.
    w.recv(f":{SERVER} 376 me :End of /MOTD command.")
    assert w.sent() == []


@pytest.mark.parametrize(
    ("tokens", "joined"),
    [
        ((), "#lobby"),  # another server: no such token
        (("salon.chat/DEFAULTCHANNEL=#a\\x3Db\\x5Cc",), "#a=b\\c"),  # ISUPPORT escapes
        (("salon.chat/DEFAULTCHANNEL=#a,#b",), "#lobby"),  # not one channel name
        (("salon.chat/DEFAULTCHANNEL=lobby",), "#lobby"),
        (("salon.chat/DEFAULTCHANNEL=",), "#lobby"),
    ],
)
def test_the_servers_default_is_a_channel_or_the_own_default_is_joined(
    tokens: tuple[str, ...], joined: str
) -> None:
    w = welcomed("CHANTYPES=#", *tokens, server_default=True)
    w.recv(f":{SERVER} 422 me :MOTD File is missing")
    assert w.sent() == [f"JOIN {joined}"]


def test_channels_the_user_named_win_over_the_servers_default() -> None:
    w = make(channels=("#mine",))
    w.s.connection_made(NOW)
    w.sent()
    events = w.recv(f":{SERVER} 001 me :Welcome")
    assert w.sent() == ["JOIN #mine"]
    assert [e for e in events if isinstance(e, AutoJoin)] == [AutoJoin(("#mine",))]
    w.recv(f":{SERVER} 005 me salon.chat/DEFAULTCHANNEL=#meet :are supported")
    w.recv(f":{SERVER} 376 me :End of /MOTD command.")
    assert w.sent() == []


def test_a_link_lost_before_the_motd_joins_the_default_on_the_next() -> None:
    w = welcomed("salon.chat/DEFAULTCHANNEL=#meet", server_default=True)
    w.s.connection_lost(NOW, "reset")
    w.s.connection_made(NOW)
    w.sent()
    w.recv(f":{SERVER} 001 me :Welcome", f":{SERVER} 005 me salon.chat/DEFAULTCHANNEL=#meet :x")
    assert w.sent() == []
    w.recv(f":{SERVER} 376 me :End of /MOTD command.")
    assert w.sent() == ["JOIN #meet"]


def test_nick_in_use_tries_alternatives_then_gives_up() -> None:
    w = make(nick="bob")
    w.s.connection_made(NOW)
    w.sent()
    for expected in ("bob_", "bob__", "bob___"):
        w.recv(f":{SERVER} 433 * {w.s.nick} :Nickname is already in use")
        assert w.sent() == [f"NICK {expected}"]
    events = w.recv(f":{SERVER} 433 * bob___ :Nickname is already in use")
    fatal = [e for e in events if isinstance(e, Fatal)]
    assert fatal and "bob___" in fatal[0].message


def test_erroneous_nick_is_fatal_with_a_plain_message() -> None:
    w = make(nick="9bad")
    w.s.connection_made(NOW)
    events = w.recv(f":{SERVER} 432 * 9bad :Erroneous nickname")
    (fatal,) = [e for e in events if isinstance(e, Fatal)]
    assert (
        fatal.message
        == "the server refused the nick '9bad': 9bad is not a valid nick: Erroneous nickname"
    )


def test_error_before_welcome_is_fatal() -> None:
    w = make()
    w.s.connection_made(NOW)
    events = w.recv("ERROR :Closing link: too many connections")
    assert any(isinstance(e, Fatal) and "too many" in e.message for e in events)


def test_ping_pong_and_keepalive() -> None:
    w = registered()
    w.recv("PING :abc")
    assert w.sent() == ["PONG abc"]
    assert w.s.tick(NOW + 30) == []
    assert w.sent() == []
    w.s.tick(NOW + 61)
    assert w.sent() == [f"PING salon-{int(NOW + 61)}"]
    assert any(isinstance(e, TimedOut) for e in w.s.tick(NOW + 130))


# ---------------------------------------------------------------------------- messages


def test_channel_message_mention_and_unread_counts() -> None:
    w = registered()
    w.s.set_active(w.s.server.name)
    events = w.recv(
        "@time=2024-01-02T03:04:05.000Z :alice!a@h PRIVMSG #lobby :hi all",
        ":bob!b@h PRIVMSG #lobby :hey ME, look",
    )
    buf = w.s.buffer("#lobby")
    assert buf is not None
    first, second = buf.lines[-2:]
    assert first.time == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert (first.nick, first.text, first.highlight) == ("alice", "hi all", False)
    assert second.highlight
    assert (buf.unread, buf.mentions) == (2, 1)
    assert [type(e) for e in events].count(Mention) == 1
    w.s.set_active("#LOBBY")
    assert (buf.unread, buf.mentions) == (0, 0)


def test_private_message_opens_a_query_and_counts_as_mention() -> None:
    w = registered()
    events = w.recv(":carol!c@h PRIVMSG me :psst")
    added = [e for e in events if isinstance(e, BufferAdded)]
    assert added and added[0].buffer.name == "carol" and added[0].buffer.kind == "query"
    assert any(isinstance(e, Mention) for e in events)


def test_action_and_ctcp_version_reply() -> None:
    w = registered()
    w.recv(":alice!a@h PRIVMSG #lobby :\x01ACTION waves\x01")
    buf = w.s.buffer("#lobby")
    assert buf is not None
    assert (buf.lines[-1].kind, buf.lines[-1].text) == ("action", "waves")
    w.recv(":alice!a@h PRIVMSG me :\x01VERSION\x01")
    assert w.sent() == ["NOTICE alice :\x01VERSION salon chat\x01"]


def test_sending_without_echo_message_adds_a_local_line() -> None:
    w = registered()
    w.input("hello")
    assert w.sent() == ["PRIVMSG #lobby hello"]
    buf = w.s.buffer("#lobby")
    assert buf is not None and buf.lines[-1].own and buf.lines[-1].text == "hello"


def test_sending_with_echo_message_waits_for_the_echo() -> None:
    w = registered(caps="echo-message")
    before = len(w.s.buffers["#lobby"].lines)
    w.input("hello")
    assert w.sent() == ["PRIVMSG #lobby hello"]
    assert len(w.s.buffers["#lobby"].lines) == before
    w.recv(":me!u@h PRIVMSG #lobby hello")
    assert w.s.buffers["#lobby"].lines[-1].own


def test_echo_of_private_message_goes_to_the_query() -> None:
    w = registered(caps="echo-message")
    w.recv(":me!u@h PRIVMSG carol :hi carol")
    buf = w.s.buffer("carol")
    assert buf is not None and buf.lines[-1].own


def test_long_messages_are_split_under_512_bytes() -> None:
    w = registered()
    w.input("word " * 300)
    lines = w.sent()
    assert len(lines) >= 3
    assert all(len(line.encode()) + 80 <= 512 for line in lines)
    assert " ".join(parse(line).params[1] for line in lines).split() == ["word"] * 300


def test_not_connected_keeps_the_text() -> None:
    w = registered()
    w.s.connection_lost(NOW, "reset")
    events = w.input("lost words")
    assert w.sent() == []
    assert any(isinstance(e, Unsent) and e.text == "lost words" for e in events)


# ---------------------------------------------------------------------------- membership


def test_names_with_prefixes_and_mode_changes() -> None:
    w = registered()
    buf = w.s.buffers["#lobby"]
    assert {m.nick: m.prefixes for m in buf.members.values()} == {
        "alice": "@",
        "bob": "+",
        "me": "",
    }
    w.recv(":alice!a@h MODE #lobby +o-v+l bob bob 10")
    assert buf.members["bob"].prefixes == "@"
    assert [m.nick for m in buf.sorted_members()] == ["alice", "bob", "me"]


def test_join_part_quit_nick_kick_lines() -> None:
    w = registered()
    buf = w.s.buffers["#lobby"]
    w.recv(":dave!d@host JOIN #lobby")
    assert "dave" in buf.members and buf.lines[-1].kind == "join"
    w.recv(":dave!d@host NICK dan")
    assert "dan" in buf.members and "dave" not in buf.members
    w.recv(":dan!d@host PART #lobby :later")
    assert "dan" not in buf.members and buf.lines[-1].text == "dan left (later)"
    w.recv(":bob!b@h QUIT :gone")
    assert "bob" not in buf.members and buf.lines[-1].kind == "quit"
    w.recv(":alice!a@h KICK #lobby me :out")
    assert not buf.joined and not buf.want_joined
    assert buf.lines[-1].text == "alice kicked you from #lobby (out)"


def test_own_part_removes_the_buffer() -> None:
    w = registered()
    w.input("/part")
    assert w.sent() == ["PART #lobby"]
    events = w.recv(":me!u@h PART #lobby")
    assert any(isinstance(e, BufferRemoved) for e in events)
    assert w.s.buffer("#lobby") is None


def test_topic_reply_and_change() -> None:
    w = registered()
    w.recv(f":{SERVER} 332 me #lobby :Welcome all")
    buf = w.s.buffers["#lobby"]
    assert buf.topic == "Welcome all"
    w.recv(":alice!a@h TOPIC #lobby :New topic")
    assert buf.topic == "New topic" and buf.lines[-1].text == "alice set the topic: New topic"


# ---------------------------------------------------------------------------- commands


@pytest.mark.parametrize(
    ("typed", "sent"),
    [
        ("/join #rust", ["JOIN #rust"]),
        ("/join rust key", ["JOIN #rust key"]),
        ("/part", ["PART #lobby"]),
        ("/part #x see you", ["PART #x :see you"]),
        ("/msg bob hi there", ["PRIVMSG bob :hi there"]),
        ("/me dances", ["PRIVMSG #lobby :\x01ACTION dances\x01"]),
        ("/notice bob psst", ["NOTICE bob psst"]),
        ("/nick newme", ["NICK newme"]),
        ("/topic a new topic", ["TOPIC #lobby :a new topic"]),
        ("/topic", ["TOPIC #lobby"]),
        ("/names", ["NAMES #lobby"]),
        ("/whois bob", ["WHOIS bob"]),
        ("/away lunch", ["AWAY lunch"]),
        ("/away", ["AWAY"]),
        ("/invite bob", ["INVITE bob #lobby"]),
        ("/kick bob be nice", ["KICK #lobby bob :be nice"]),
        ("/kick #other bob", ["KICK #other bob"]),
        ("/mode +m", ["MODE #lobby +m"]),
        ("/mode bob +i", ["MODE bob +i"]),
        ("/quote PRIVMSG #lobby :raw", ["PRIVMSG #lobby :raw"]),
        ("/frobnicate a b", ["FROBNICATE a b"]),
        ("//not a command", ["PRIVMSG #lobby :/not a command"]),
        ("/say bye", ["PRIVMSG #lobby bye"]),
        ("/quit gone fishing", ["QUIT :gone fishing"]),
        ("bye", ["QUIT bye"]),
        ("EXIT", ["QUIT bye"]),
        ("over", ["QUIT bye"]),
        ("/over and out", ["QUIT :and out"]),
    ],
)
def test_commands_put_the_right_line_on_the_wire(typed: str, sent: list[str]) -> None:
    w = registered()
    w.input(typed)
    assert w.sent() == sent


def test_quit_words_emit_quit_requested() -> None:
    w = registered()
    events = w.input("quit")
    assert any(isinstance(e, QuitRequested) for e in events)


def test_query_opens_and_focuses() -> None:
    w = registered()
    events = w.input("/query carol hello")
    assert any(isinstance(e, BufferAdded) and e.buffer.name == "carol" for e in events)
    assert any(isinstance(e, Focus) and e.buffer.name == "carol" for e in events)
    assert w.sent() == ["PRIVMSG carol hello"]


def test_help_and_joins_toggle_are_local() -> None:
    w = registered()
    w.input("/help")
    assert w.sent() == []
    assert any("/join #channel" in line.text for line in w.s.buffers["#lobby"].lines)
    events = w.input("/joins hide")
    assert any(isinstance(e, LocalCommand) and e.args == "hide" for e in events)
    assert help_lines("j") == ["/join #channel [key]: join a channel (several: #a,#b)"]


def test_server_buffer_refuses_plain_text() -> None:
    w = registered()
    w.input("hello", w.s.server.name)
    assert w.sent() == []
    assert "server window" in w.s.server.lines[-1].text


def test_split_command_and_completions() -> None:
    assert split_command("/J #a") == ("join", "#a")
    assert split_command("//x") is None
    assert split_command("hello") is None
    assert completions("bo", ["alice", "Bob", "bobby"]) == ["Bob", "bobby"]


def test_completion_candidates_put_recent_speakers_first() -> None:
    w = registered()
    w.recv(":bob!b@h PRIVMSG #lobby :hi")
    cands = w.s.completion_candidates("#lobby")
    assert cands[:2] == ["bob", "alice"]
    assert "#lobby" in cands and "/join" in cands and "me" not in cands


# ---------------------------------------------------------------------------- errors


def test_errors_are_plain_words_in_the_right_buffer() -> None:
    w = registered()
    w.s.set_active(w.s.server.name)
    w.recv(f":{SERVER} 482 me #lobby :You're not channel operator")
    assert w.s.buffers["#lobby"].lines[-1].text == "You need to be an operator of #lobby for that"
    w.recv(f":{SERVER} 401 me nobody :No such nick/channel")
    assert w.s.server.lines[-1].text == "There is no one called nobody here"
    assert w.s.server.lines[-1].kind == "error"
    w.recv("FAIL CHATHISTORY INVALID_TARGET #lobby :Messages could not be retrieved")
    assert w.s.buffers["#lobby"].lines[-1].text == (
        "CHATHISTORY failed: Messages could not be retrieved (#lobby)"
    )


def test_join_failure_event() -> None:
    w = registered()
    w.input("/join #locked")
    w.sent()
    events = w.recv(f":{SERVER} 473 me #locked :Cannot join channel (+i)")
    assert any(isinstance(e, JoinFailed) and "invite-only" in e.reason for e in events)


def test_describe_helpers() -> None:
    assert describe_numeric(parse(":s 404 me #c :Cannot send to channel")) == (
        "You can't send to #c: Cannot send to channel"
    )
    assert describe_numeric(parse(":s 999 me :Something odd")) == "Something odd"
    assert describe_fail(parse("FAIL REGISTER WEAK_PASSWORD * :Too weak")) == (
        "REGISTER failed: Too weak (*)"
    )
    assert mentions("hi Me!", "me") and not mentions("meme", "me")
    assert split_utf8("é" * 10, 8) == ["éééé", "éééé", "éé"]
    fallback = datetime(2020, 1, 1, tzinfo=UTC)
    assert parse_time("garbage", fallback) == fallback


# ---------------------------------------------------------------------------- batches and history


def test_multiline_batch_is_one_message() -> None:
    w = registered(caps="batch draft/multiline")
    w.recv(
        "@time=2024-01-01T00:00:00.000Z;msgid=m1 :alice!a@h BATCH +x draft/multiline #lobby",
        "@batch=x :alice!a@h PRIVMSG #lobby :first",
        "@batch=x;draft/multiline-concat :alice!a@h PRIVMSG #lobby :+more",
        "@batch=x :alice!a@h PRIVMSG #lobby :second",
        "BATCH -x",
    )
    line = w.s.buffers["#lobby"].lines[-1]
    assert (line.text, line.msgid) == ("first+more\nsecond", "m1")


def test_paste_is_sent_as_multiline_when_offered() -> None:
    w = registered(caps="batch draft/multiline=max-bytes=4096,max-lines=10")
    w.input("one\ntwo\n")
    assert w.sent() == [
        "BATCH +ml1 draft/multiline #lobby",
        "@batch=ml1 PRIVMSG #lobby one",
        "@batch=ml1 PRIVMSG #lobby two",
        "BATCH -ml1",
    ]


def test_paste_is_several_lines_otherwise() -> None:
    w = registered()
    w.input("one\n\ntwo")
    assert w.sent() == ["PRIVMSG #lobby one", "PRIVMSG #lobby two"]


HIST = "batch server-time message-tags draft/chathistory"


def test_chathistory_is_a_no_op_when_not_offered() -> None:
    w = registered(caps="batch server-time")
    w.recv(":me!u@h JOIN #other")
    assert w.sent() == []
    w.s.load_older("#other", NOW)
    assert w.sent() == []


def test_chathistory_latest_on_join_and_merge() -> None:
    w = make()
    w.s.connection_made(NOW)
    w.sent()
    w.recv(f":{SERVER} CAP * LS :{HIST}")
    w.sent()
    w.recv(f":{SERVER} CAP me ACK :{HIST}", f":{SERVER} 001 me :hi")
    w.recv(f":{SERVER} 005 me CHATHISTORY=20 MSGREFTYPES=msgid,timestamp :ok")
    w.sent()
    w.recv("@time=2024-01-01T10:00:00.000Z :me!u@h JOIN #lobby")
    assert w.sent() == ["CHATHISTORY LATEST #lobby * 20"]
    events = w.recv(
        "BATCH +h chathistory #lobby",
        "@batch=h;time=2024-01-01T09:00:00.000Z;msgid=a :bob!b@h PRIVMSG #lobby :old one",
        "@batch=h;time=2024-01-01T09:30:00.000Z;msgid=b :bob!b@h PRIVMSG #lobby :old two",
        "BATCH -h",
    )
    (added,) = [e for e in events if isinstance(e, HistoryAdded)]
    assert added.count == 2 and not added.older
    buf = w.s.buffers["#lobby"]
    assert [line.text for line in buf.lines] == ["old one", "old two", "You joined #lobby"]
    assert buf.unread == 0
    # Scrolling up asks for the page before the oldest message.
    w.s.load_older("#lobby", NOW)
    assert w.sent() == ["CHATHISTORY BEFORE #lobby msgid=a 20"]
    events = w.recv(
        "BATCH +h2 chathistory #lobby",
        "@batch=h2;time=2024-01-01T08:00:00.000Z;msgid=z :bob!b@h PRIVMSG #lobby :older",
        "@batch=h2;time=2024-01-01T09:00:00.000Z;msgid=a :bob!b@h PRIVMSG #lobby :old one",
        "BATCH -h2",
    )
    (added,) = [e for e in events if isinstance(e, HistoryAdded)]
    assert added.count == 1 and added.older
    assert buf.lines[0].text == "older" and buf.history_exhausted
    w.s.load_older("#lobby", NOW)
    assert w.sent() == []


def test_reconnect_rejoins_and_fills_the_gap() -> None:
    w = registered(caps=HIST)
    w.recv("@time=2024-01-01T10:00:00.000Z;msgid=last :bob!b@h PRIVMSG #lobby :before drop")
    w.s.connection_lost(NOW, "Connection reset")
    buf = w.s.buffers["#lobby"]
    assert not buf.joined and buf.want_joined and buf.lines[-1].text.startswith("Disconnected")
    w.s.connection_made(NOW + 5)
    w.sent()
    w.recv(f":{SERVER} CAP * LS :{HIST}")
    w.sent()
    w.recv(f":{SERVER} CAP me ACK :{HIST}", f":{SERVER} 001 me :hi again")
    assert w.sent() == ["CAP END", "JOIN #lobby"]
    w.recv(":me!u@h JOIN #lobby")
    assert w.sent() == ["CHATHISTORY LATEST #lobby msgid=last 50"]
    w.recv(
        "BATCH +g chathistory #lobby",
        "@batch=g;time=2024-01-01T10:05:00.000Z;msgid=gap :bob!b@h PRIVMSG #lobby :missed",
        "BATCH -g",
    )
    assert any(line.text == "missed" for line in buf.lines)


# ---------------------------------------------------------------------------- SASL


def test_plain_encoding() -> None:
    assert plain_payload("jilles", "sesame") == b"\0jilles\0sesame"
    assert encode_chunks(plain_payload("jilles", "sesame")) == ["AGppbGxlcwBzZXNhbWU="]
    assert encode_chunks(b"") == ["+"]
    # A payload whose base64 is exactly 400 bytes ends with an empty "+" chunk.
    assert encode_chunks(b"x" * 300) == [base64.b64encode(b"x" * 300).decode(), "+"]
    long = encode_chunks(b"y" * 700)
    assert [len(c) for c in long] == [400, 400, 136]


def test_chunk_reader() -> None:
    r = ChunkReader()
    assert r.feed("A" * 400) is None
    assert r.feed("+") == base64.b64decode("A" * 400)
    assert r.feed("+") == b""


def test_scram_sha_256_rfc7677_vector() -> None:
    scram = ScramSha256("user", "pencil", nonce=lambda: "rOprNGfwEbeRWgbNEkqO")
    assert scram.client_first() == b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    final = scram.client_final(
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    )
    assert final == (
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    )
    scram.verify_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
    assert scram.done


def test_scram_rejects_a_bad_server() -> None:
    scram = ScramSha256("user", "pencil", nonce=lambda: "abc")
    with pytest.raises(SaslError):
        scram.client_final(b"r=xyz,s=AAAA,i=4096")  # nonce not ours
    scram.client_final(b"r=abcdef,s=AAAA,i=1")
    with pytest.raises(SaslError):
        scram.verify_server_final(b"v=" + base64.b64encode(b"wrong"))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_sasl_scram_exchange_in_the_session() -> None:
    w = make(nick="user", sasl_account="user", sasl_password="pencil")
    w.s.connection_made(NOW)
    w.sent()
    w.recv(f":{SERVER} CAP * LS :sasl=PLAIN,SCRAM-SHA-256 server-time")
    assert w.sent() == ["CAP REQ :server-time sasl"]
    w.recv(f":{SERVER} CAP * ACK :server-time sasl")
    assert w.sent() == ["AUTHENTICATE SCRAM-SHA-256"]
    w.recv("AUTHENTICATE +")
    assert w.sent() == ["AUTHENTICATE " + _b64(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")]
    server_first = (
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    )
    w.recv("AUTHENTICATE " + _b64(server_first))
    (line,) = w.sent()
    assert base64.b64decode(line.split()[1]).endswith(
        b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    )
    w.recv("AUTHENTICATE " + _b64(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="))
    assert w.sent() == ["AUTHENTICATE +"]
    w.recv(f":{SERVER} 900 user user!u@h user :You are now logged in", f":{SERVER} 903 user :ok")
    assert w.sent() == ["CAP END"]


def test_sasl_plain_exchange_and_failure_is_fatal() -> None:
    """A failed SASL login must not go on unauthenticated (as someone else): no CAP END,
    a QUIT, and one Fatal that says why."""
    w = make(nick="jilles", sasl_account="jilles", sasl_password="sesame", sasl_mechanism="plain")
    w.s.connection_made(NOW)
    w.sent()
    w.recv(f":{SERVER} CAP * LS :sasl")
    w.sent()
    w.recv(f":{SERVER} CAP * ACK :sasl")
    assert w.sent() == ["AUTHENTICATE PLAIN"]
    w.recv("AUTHENTICATE +")
    assert w.sent() == ["AUTHENTICATE AGppbGxlcwBzZXNhbWU="]
    events = w.recv(f":{SERVER} 904 jilles :SASL authentication failed")
    assert w.sent() == ["QUIT :SASL login failed"]
    assert [e.message for e in events if isinstance(e, Fatal)] == [
        "SASL login as jilles failed: wrong account or password"
    ]
    # Whatever else arrives on that link is ignored: no welcome, no JOIN.
    assert w.recv(f":{SERVER} 001 jilles :Welcome") == []
    assert w.sent() == [] and not w.s.registered


def test_sasl_success_goes_on() -> None:
    w = make(sasl_account="me", sasl_password="pw", sasl_mechanism="plain")
    w.s.connection_made(NOW)
    w.sent()
    w.recv(f":{SERVER} CAP * LS :sasl", f":{SERVER} CAP * ACK :sasl", "AUTHENTICATE +")
    w.sent()
    w.recv(f":{SERVER} 903 me :SASL authentication successful")
    assert w.sent() == ["CAP END"]
    w.recv(f":{SERVER} 001 me :Welcome")
    assert w.sent() == ["JOIN #lobby"]


@pytest.mark.parametrize(
    ("lines", "why"),
    [
        (
            [f":{SERVER} CAP * LS :server-time", f":{SERVER} CAP me ACK :server-time"],
            "the server does not offer SASL",
        ),
        ([f":{SERVER} CAP * LS :sasl", f":{SERVER} CAP me NAK :sasl"], "does not offer SASL"),
        ([f":{SERVER} 001 me :Welcome"], "the server does not offer SASL"),  # no CAP at all
        (
            [f":{SERVER} CAP * LS :sasl=EXTERNAL", f":{SERVER} CAP me ACK :sasl"],
            "the server offers EXTERNAL, not SCRAM-SHA-256 or PLAIN",
        ),
        (
            [
                f":{SERVER} CAP * LS :sasl",
                f":{SERVER} CAP me ACK :sasl",
                f":{SERVER} 906 me :SASL authentication aborted",
            ],
            "SASL login was aborted",
        ),
    ],
)
def test_sasl_that_cannot_happen_is_fatal(lines: list[str], why: str) -> None:
    w = make(sasl_account="me", sasl_password="pw")
    w.s.connection_made(NOW)
    w.sent()
    events = w.recv(*lines)
    (fatal,) = [e for e in events if isinstance(e, Fatal)]
    assert fatal.message.startswith("SASL login as me failed: ") and why in fatal.message
    sent = w.sent()
    assert "CAP END" not in sent and not any(line.startswith("JOIN") for line in sent)


def test_sasl_falls_back_when_the_mechanism_is_unknown() -> None:
    w = make(sasl_account="me", sasl_password="pw")
    w.s.connection_made(NOW)
    w.sent()
    w.recv(f":{SERVER} CAP * LS :sasl")
    w.sent()
    w.recv(f":{SERVER} CAP * ACK :sasl")
    assert w.sent() == ["AUTHENTICATE SCRAM-SHA-256"]
    w.recv(f":{SERVER} 908 me PLAIN :are available SASL mechanisms")
    w.recv(f":{SERVER} 904 me :SASL authentication failed")
    assert w.sent() == ["AUTHENTICATE PLAIN"]


def test_register_only_where_offered() -> None:
    w = registered()
    w.input("/register pw")
    assert w.sent() == []
    assert "does not offer" in w.s.buffers["#lobby"].lines[-1].text
    w2 = registered(caps="draft/account-registration")
    w2.input("/register me@example.org hunter2")
    assert w2.sent() == ["REGISTER * me@example.org hunter2"]
    w2.recv("REGISTER SUCCESS me :Account created")
    assert w2.s.buffers["#lobby"].lines[-1].text == "Account created"


# ---------------------------------------------------------------------------- a peer that is not IRC


def test_registration_times_out() -> None:
    w = make(register_timeout=30.0)
    w.s.peer = "example.org:6667"
    w.s.connection_made(NOW)
    assert w.s.tick(NOW + 29) == []
    w.recv(f":{SERVER} NOTICE * :*** Looking up your hostname")  # talking, but no welcome
    events = w.s.tick(NOW + 31)
    assert [e.message for e in events if isinstance(e, Fatal)] == [
        "example.org:6667 did not welcome us within 30 s: is it an IRC server, and the right port?"
    ]
    assert w.s.tick(NOW + 40) == []  # said once


def test_no_registration_timeout_once_welcomed() -> None:
    w = registered()
    assert not any(isinstance(e, Fatal) for e in w.s.tick(NOW + 3600))


def test_a_slow_welcome_after_a_reconnect_retries() -> None:
    w = registered()
    w.s.connection_lost(NOW + 1)
    w.s.connection_made(NOW + 2)
    events = w.s.tick(NOW + 40)
    assert any(isinstance(e, TimedOut) for e in events)
    assert not any(isinstance(e, Fatal) for e in events)


@pytest.mark.parametrize(
    ("data", "said"),
    [
        (b"Welcome to salon on salon.local.\r\nYour name:\r\n", "it said 'Welcome to salon"),
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", "it said 'HTTP/1.1 400 Bad Request'"),
        (b"SSH-2.0-OpenSSH_9.6\r\n", "it said 'SSH-2.0-OpenSSH_9.6'"),
        (b"\x15\x03\x03\x00\x02\x02\x46", "binary data (a TLS port? try --tls)"),
    ],
)
def test_a_first_line_that_is_not_irc_is_fatal(data: bytes, said: str) -> None:
    w = make()
    w.s.peer = "127.0.0.1:6000"
    w.s.connection_made(NOW)
    w.sent()
    events = w.s.receive(data, NOW)
    (fatal,) = [e for e in events if isinstance(e, Fatal)]
    assert fatal.message.startswith("127.0.0.1:6000 does not speak IRC: ")
    assert said in fatal.message
    assert w.sent() == []


@pytest.mark.parametrize(
    "first",
    [
        f":{SERVER} NOTICE * :*** Looking up your hostname...",
        "NOTICE AUTH :*** Checking Ident",
        "PING :4FA2B1",
        "@time=2024-01-01T00:00:00.000Z :srv CAP * LS :sasl",
        f":{SERVER} 001 me :Welcome",
        "ERROR :Closing Link: too many connections",
        "020 * :Please wait while we process your connection.",
    ],
)
def test_what_irc_servers_say_first_is_irc(first: str) -> None:
    w = make()
    w.s.connection_made(NOW)
    # Split anywhere: a first line that arrives in pieces is judged whole.
    data = first.encode() + b"\r\n"
    events = w.s.receive(data[:3], NOW) + w.s.receive(data[3:], NOW)
    assert not any(isinstance(e, Fatal) and "IRC" in e.message for e in events)


def test_error_reason_is_kept_for_the_disconnect_message() -> None:
    w = registered()
    w.recv("ERROR :Closing Link: me (Killed (oper (spam)))")
    assert w.s.error_reason == "Closing Link: me (Killed (oper (spam)))"
    w.s.connection_made(NOW)
    assert w.s.error_reason == ""


# ---------------------------------------------------------------------------- tabs, formatting, help


def test_a_tab_is_part_of_the_text_live_and_in_history() -> None:
    w = registered(caps=HIST)
    w.recv(":tabby!u@h PRIVMSG #lobby one\ttwo")
    assert w.s.buffers["#lobby"].lines[-1].text == "one\ttwo"
    w.recv(
        "BATCH +h chathistory #lobby",
        "@batch=h;time=2024-01-01T09:00:00.000Z;msgid=t1 :tabby!u@h PRIVMSG #lobby a\tb",
        "@batch=h;time=2024-01-01T09:01:00.000Z;msgid=t2 :tabby!u@h PRIVMSG #lobby :c\td e",
        "BATCH -h",
    )
    texts = [line.text for line in w.s.buffers["#lobby"].lines]
    assert "a\tb" in texts and "c\td e" in texts


@pytest.mark.parametrize(
    ("text", "stripped"),
    [
        ("\x0304red", "red"),
        ("\x0304,12red on blue\x03 plain", "red on blue plain"),
        ("\x034,red", ",red"),  # a comma without a digit after it is text
        ("\x03,05x", ",05x"),  # no foreground: the colour code ends at \x03
        ("\x031234", "34"),  # two digits at most
        ("\x02bold\x02 \x1ditalic\x1d \x1funder\x1f \x1estrike\x1e", "bold italic under strike"),
        ("\x16rev\x0f \x11mono\x11", "rev mono"),
        ("\x04ff8800hex\x04 done", "hex done"),
        ("no codes", "no codes"),
    ],
)
def test_strip_formatting(text: str, stripped: str) -> None:
    assert strip_formatting(text) == stripped


def test_format_spans() -> None:
    spans = format_spans("a\x0304,01red\x0f \x02b\x1di\x02\x1d \x04FF8800h")
    assert spans == [
        ("a", Format()),
        ("red", Format(fg=MIRC_COLOURS[4], bg=MIRC_COLOURS[1])),
        (" ", Format()),
        ("b", Format(bold=True)),
        ("i", Format(bold=True, italic=True)),
        (" ", Format()),
        ("h", Format(fg="#ff8800")),
    ]
    assert format_spans("\x0399x")[0][1].fg == ""  # 99: the default colour


def test_help_ends_with_the_keys_of_the_front_end() -> None:
    tui = registered()
    tui.input("/help")
    assert "Alt+1..9" in tui.s.buffers["#lobby"].lines[-1].text
    plain = registered(help_keys=PLAIN_KEYS)
    plain.input("/help")
    texts = [line.text for line in plain.s.buffers["#lobby"].lines]
    assert texts[-1] == PLAIN_KEYS and not any("Alt+" in t for t in texts)


def test_control_characters_from_others_never_reach_the_terminal() -> None:
    """ESC (title, clear screen, colours), BEL, DEL and C1 controls in what others write
    (messages, topics, reasons) are made visible; formatting codes and tabs stay."""
    w = registered()
    w.recv(
        ":eve!e@h PRIVMSG #lobby :title \x1b]2;PWNED\x07 \x1b[2J\x9b1m \x02bold\x02\tx\x7f",
        f":{SERVER} 332 me #lobby :\x1b[31mred topic",
        ":eve!e@h PART #lobby :\x1bcbye",
    )
    texts = [line.text for line in w.s.buffers["#lobby"].lines[-3:]]
    assert texts[0] == "title ^[]2;PWNED^G ^[[2J\ufffd1m \x02bold\x02\tx^?"
    assert "^[cbye" in texts[2] and not any("\x1b" in text for text in texts)
    assert w.s.buffers["#lobby"].topic == "^[[31mred topic"


def test_the_link_moves_only_by_its_transition_table() -> None:
    """Registration is a table of steps (client/link.py): a step it does not list is a bug
    in the session, and says so instead of guessing."""
    from salon.client.link import TRANSITIONS, LinkEvent, LinkStateError, Phase, next_phase

    assert next_phase(Phase.GREETING, LinkEvent.HEARD) is Phase.CAP_LS
    assert next_phase(Phase.SASL, LinkEvent.CAP_END) is Phase.CAP_END
    assert next_phase(Phase.CAP_END, LinkEvent.WELCOME) is Phase.REGISTERED
    with pytest.raises(LinkStateError, match="SASL is not possible in phase REGISTERED"):
        next_phase(Phase.REGISTERED, LinkEvent.SASL)
    # From every phase a connection can be lost, and a new one made.
    for phase in Phase:
        assert TRANSITIONS[phase, LinkEvent.LOST] is Phase.CLOSED
        assert TRANSITIONS[phase, LinkEvent.CONNECT] is Phase.GREETING


# ---------------------------------------------------------------------------- metadata


def test_without_before_connect_display_names_are_subscribed_after_the_welcome() -> None:
    w = make()
    w.s.connection_made(NOW)
    w.sent()
    w.recv(f":{SERVER} CAP * LS :batch draft/metadata-3=max-subs=10")
    w.sent()
    w.recv(f":{SERVER} CAP me ACK :batch draft/metadata-3")
    assert w.sent() == ["CAP END"]
    w.recv(f":{SERVER} 001 me :Welcome")
    assert w.sent()[0] == "METADATA * SUB display-name"


def test_display_names_follow_nick_changes_quits_and_removal() -> None:
    w = registered("batch draft/metadata-3")
    w.recv(f":{SERVER} 761 me bob display-name * :Bob B.")
    w.recv(":bob!b@h PRIVMSG #lobby :one")
    assert w.s.buffers["#lobby"].lines[-1].display == "Bob B."
    w.recv(":bob!b@h NICK robert")
    w.recv(":robert!b@h PRIVMSG #lobby :two")
    assert w.s.buffers["#lobby"].lines[-1].display == "Bob B."
    w.recv(f":{SERVER} 761 me #lobby display-name * :The Lobby")  # a channel's: not a user
    assert w.s.display_names == {"robert": "Bob B."}
    w.recv(f":{SERVER} 766 me robert display-name :key not set")
    assert w.s.display_names == {}
    w.recv(f":{SERVER} 761 me alice display-name * :Alice")
    w.recv(":alice!a@h QUIT :bye")
    assert w.s.display_names == {}


def test_sync_later_is_answered_with_sync() -> None:
    w = registered("batch draft/metadata-3")
    w.recv(f":{SERVER} 774 me #lobby")
    assert w.sent() == ["METADATA #lobby SYNC"]


def test_displayname_sets_and_clears_the_own_display_name() -> None:
    w = registered("batch draft/metadata-3")
    w.input("/displayname Me Myself")
    assert w.sent() == ["METADATA * SET display-name :Me Myself"]
    w.recv(f":{SERVER} 761 me me display-name * :Me Myself")
    assert w.s.buffers["#lobby"].lines[-1].text == "Your display name is now Me Myself"
    w.input("/displayname")
    assert w.sent() == ["METADATA * SET display-name"]
    w.recv(f":{SERVER} 766 me me display-name :key not set")
    assert w.s.buffers["#lobby"].lines[-1].text == "You have no display name now"
    w.recv(f":{SERVER} 761 me me display-name * :From the burst")  # not asked: not shown
    assert w.s.buffers["#lobby"].lines[-1].text == "You have no display name now"


def test_displayname_needs_the_capability() -> None:
    w = registered("batch")
    w.input("/displayname Me")
    assert w.sent() == []
    assert "does not offer display names" in w.s.buffers["#lobby"].lines[-1].text
