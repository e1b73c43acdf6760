"""The IRC codec (salon.proto): parsing, serializing, limits and casemapping.

The vectors are our own, written from modern.ircdocs.horse ("Messages") and IRCv3
message-tags ("Escaping values", "Size limit").
"""

from __future__ import annotations

from types import MappingProxyType

import pytest

from salon.errors import InvalidUTF8, LineTooLong, ProtocolError, SerializationError
from salon.proto import casemap
from salon.proto.limits import MAX_BODY, MAX_CLIENT_TAGS, MAX_LINE, MAX_TAGS
from salon.proto.message import (
    Message,
    encode_tags,
    escape_tag_value,
    parse,
    parse_tags,
    unescape_tag_value,
)

# ------------------------------------------------------------------------------ tags


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("plain", "plain"),
        ("", ""),
        ("semi\\:colon", "semi;colon"),
        ("a\\sspace", "a space"),
        ("back\\\\slash", "back\\slash"),
        ("cr\\rlf\\n", "cr\rlf\n"),
        ("\\:\\s\\\\\\r\\n", "; \\\r\n"),
        ("trailing\\", "trailing"),
        ("\\", ""),
        ("unknown\\b", "unknownb"),
        ("\\x\\y\\z", "xyz"),
        ("double\\\\\\", "double\\"),
        ("\\\\s", "\\s"),
        ("ünïcode\\s☃", "ünïcode ☃"),
    ],
)
def test_unescape_tag_value(raw: str, expected: str) -> None:
    assert unescape_tag_value(raw) == expected


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        ("plain", "plain"),
        ("a;b", "a\\:b"),
        ("a b", "a\\sb"),
        ("a\\b", "a\\\\b"),
        ("\r\n", "\\r\\n"),
        ("; \\\r\n", "\\:\\s\\\\\\r\\n"),
        ("", ""),
    ],
)
def test_escape_tag_value_and_back(value: str, escaped: str) -> None:
    assert escape_tag_value(value) == escaped
    assert unescape_tag_value(escaped) == value


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a=b", {"a": "b"}),
        ("a=b;c=d", {"a": "b", "c": "d"}),
        ("a", {"a": ""}),
        ("a=", {"a": ""}),
        ("a;b=;c=x", {"a": "", "b": "", "c": "x"}),
        ("a=1;a=2", {"a": "2"}),
        ("a=1;b=x;a", {"a": "", "b": "x"}),
        ("a=x=y", {"a": "x=y"}),
        ("+draft/react=\\s:)", {"+draft/react": " :)"}),
        ("example.com/key=v\\:w", {"example.com/key": "v;w"}),
        ("a=b;;c=d", {"a": "b", "c": "d"}),
        ("a=b;", {"a": "b"}),
        ("=novalue;k=v", {"k": "v"}),
        ("time=2024-01-02T03:04:05.678Z", {"time": "2024-01-02T03:04:05.678Z"}),
    ],
)
def test_parse_tags(raw: str, expected: dict[str, str]) -> None:
    assert parse_tags(raw) == expected


def test_encode_tags_key_without_value_and_order() -> None:
    assert encode_tags({"a": "", "b": "x y", "+c": "1;2"}) == "a;b=x\\sy;+c=1\\:2"


@pytest.mark.parametrize(
    "tags",
    [
        {"a": "b"},
        {"k": ""},
        {"+x": "; \\\r\n", "msgid": "abc"},
        {"a": "trailing\\"},
        {"label": "lbl", "+draft/reply": "123", "time": "2024-01-01T00:00:00.000Z"},
    ],
)
def test_tags_round_trip(tags: dict[str, str]) -> None:
    assert parse_tags(encode_tags(tags)) == tags
    msg = Message("TAGMSG", ("#chan",), "nick!user@host", tags)
    assert parse(msg.serialize()).tags == tags


# ------------------------------------------------------------------------------ parse


@pytest.mark.parametrize(
    ("line", "tags", "source", "command", "params"),
    [
        ("PING", {}, None, "PING", ()),
        ("ping x", {}, None, "PING", ("x",)),
        ("privmsg #c :hello", {}, None, "PRIVMSG", ("#c", "hello")),
        ("PrivMsg #c hi", {}, None, "PRIVMSG", ("#c", "hi")),
        ("NICK alice\r\n", {}, None, "NICK", ("alice",)),
        ("NICK alice\n", {}, None, "NICK", ("alice",)),
        ("NICK alice", {}, None, "NICK", ("alice",)),
        (":src CMD a b c", {}, "src", "CMD", ("a", "b", "c")),
        (":n!u@h PRIVMSG #c :hi there", {}, "n!u@h", "PRIVMSG", ("#c", "hi there")),
        ("CMD a b :trailing with  spaces ", {}, None, "CMD", ("a", "b", "trailing with  spaces ")),
        ("CMD a :", {}, None, "CMD", ("a", "")),
        ("CMD :", {}, None, "CMD", ("",)),
        ("CMD a ::starts with colon", {}, None, "CMD", ("a", ":starts with colon")),
        ("CMD a :b :c", {}, None, "CMD", ("a", "b :c")),
        ("CMD a:b c:d", {}, None, "CMD", ("a:b", "c:d")),
        ("CMD :only trailing", {}, None, "CMD", ("only trailing",)),
        ("CMD   a    b   :c  d", {}, None, "CMD", ("a", "b", "c  d")),
        ("  CMD a", {}, None, "CMD", ("a",)),
        (":src   CMD  a", {}, "src", "CMD", ("a",)),
        ("CMD a b   ", {}, None, "CMD", ("a", "b")),
        ("001 me :Welcome", {}, None, "001", ("me", "Welcome")),
        ("@a=b CMD x", {"a": "b"}, None, "CMD", ("x",)),
        ("@a=b;c :src CMD x :y z", {"a": "b", "c": ""}, "src", "CMD", ("x", "y z")),
        ("@a=1;a=2 CMD", {"a": "2"}, None, "CMD", ()),
        ("@k=\\:\\s\\\\\\r\\n CMD", {"k": "; \\\r\n"}, None, "CMD", ()),
        ("@k=end\\ CMD", {"k": "end"}, None, "CMD", ()),
        ("@k=\\q CMD", {"k": "q"}, None, "CMD", ()),
        ("@a=b   CMD x", {"a": "b"}, None, "CMD", ("x",)),
        ("@+draft/typing=active TAGMSG #c", {"+draft/typing": "active"}, None, "TAGMSG", ("#c",)),
        ("PRIVMSG #c :☃ snow", {}, None, "PRIVMSG", ("#c", "☃ snow")),
        ("PRIVMSG #c :\x01ACTION waves\x01", {}, None, "PRIVMSG", ("#c", "\x01ACTION waves\x01")),
        # RFC 1459 2.3.1: parameters are separated by SPACE only; a tab is part of one.
        (":t!u@h PRIVMSG #lobby one\ttwo", {}, "t!u@h", "PRIVMSG", ("#lobby", "one\ttwo")),
        ("CMD a\tb c", {}, None, "CMD", ("a\tb", "c")),
        ("CMD a\t \tb", {}, None, "CMD", ("a\t", "\tb")),
        ("PRIVMSG #c :x\ty z", {}, None, "PRIVMSG", ("#c", "x\ty z")),
        ("PRIVMSG #c \t", {}, None, "PRIVMSG", ("#c", "\t")),
        ("CMD a\x0bb\x0cc", {}, None, "CMD", ("a\x0bb\x0cc",)),
        ("PRIVMSG #c a\u00a0b", {}, None, "PRIVMSG", ("#c", "a\u00a0b")),
    ],
)
def test_parse(
    line: str, tags: dict[str, str], source: str | None, command: str, params: tuple[str, ...]
) -> None:
    for data in (line, line.encode()):
        msg = parse(data)
        assert dict(msg.tags) == tags
        assert msg.source == source
        assert msg.command == command
        assert msg.params == params


def test_parse_result_is_frozen() -> None:
    msg = parse("CMD a")
    with pytest.raises(AttributeError):
        msg.command = "X"  # type: ignore[misc]


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"\r\n",
        b"   ",
        b":src",
        b":src   ",
        b"@a=b",
        b"@a=b ",
        b":src :trailing",
        b"CMD a\x00b",
        b"CMD :nul\x00",
    ],
)
def test_parse_refuses(line: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse(line)


def test_parse_refuses_nul_in_tags() -> None:
    with pytest.raises(ProtocolError):
        parse(b"@+x=a\x00b TAGMSG #c")


# ------------------------------------------------------------------------------ serialize


@pytest.mark.parametrize(
    ("msg", "wire"),
    [
        (Message("PING", ("x",)), b"PING x\r\n"),
        (Message("PING"), b"PING\r\n"),
        (Message("PRIVMSG", ("#c", "hi")), b"PRIVMSG #c hi\r\n"),
        (Message("PRIVMSG", ("#c", "hi there")), b"PRIVMSG #c :hi there\r\n"),
        (Message("PRIVMSG", ("#c", "")), b"PRIVMSG #c :\r\n"),
        (Message("PRIVMSG", ("#c", ":)")), b"PRIVMSG #c ::)\r\n"),
        (Message("CMD", ("a:b",)), b"CMD a:b\r\n"),
        (Message("001", ("me", "Welcome"), "srv"), b":srv 001 me Welcome\r\n"),
        (Message("CMD", ("x",), None, {"a": "b"}), b"@a=b CMD x\r\n"),
        (Message("CMD", (), None, {"a": "", "b": "; "}), b"@a;b=\\:\\s CMD\r\n"),
        (Message("PRIVMSG", ("#c", "☃")), "PRIVMSG #c ☃\r\n".encode()),
    ],
)
def test_serialize(msg: Message, wire: bytes) -> None:
    assert msg.serialize() == wire
    assert parse(wire) == msg


def test_serialize_without_tags() -> None:
    msg = Message("CMD", ("x",), "src", {"a": "b"})
    assert msg.serialize(tags=False) == b":src CMD x\r\n"
    assert msg.body() == ":src CMD x"
    assert str(msg) == "@a=b :src CMD x"


def test_with_tags_keeps_the_rest() -> None:
    msg = Message("CMD", ("x", "y z"), "src")
    tagged = msg.with_tags({"label": "1"})
    assert (tagged.command, tagged.params, tagged.source) == ("CMD", ("x", "y z"), "src")
    assert tagged.tags == {"label": "1"}
    assert msg.tags == {}
    assert isinstance(msg.tags, MappingProxyType)


@pytest.mark.parametrize(
    "msg",
    [
        Message("PRIVMSG", ("#c", "a\rb")),
        Message("PRIVMSG", ("#c", "a\nb")),
        Message("PRIVMSG", ("#c", "a\0b")),
        Message("PRIVMSG", ("#c", "\r\nQUIT :injected")),
        Message("PRIVMSG", ("#c\r", "x")),
        Message("PRIVMSG", ("#c\0", "x")),
        Message("PRIVMSG", ("#c", "x"), "src\n"),
        Message("PRIV\rMSG", ("#c", "x")),
        Message("PRIVMSG", ("a b", "x")),
        Message("PRIVMSG", (":a", "x")),
        Message("PRIVMSG", ("", "x")),
        Message("PRIVMSG", ("#c", "x"), "has space"),
        Message("", ("x",)),
        Message("TWO WORDS"),
    ],
)
def test_serialize_refuses(msg: Message) -> None:
    with pytest.raises(SerializationError):
        msg.serialize()
    with pytest.raises(SerializationError):
        msg.body()


@pytest.mark.parametrize(
    "tags",
    [{"+x": "a\0b"}, {"+x y": "v"}, {"+x\r\n": "v"}],
    ids=["nul-value", "space-key", "crlf-key"],
)
def test_serialize_refuses_bad_tags(tags: dict[str, str]) -> None:
    with pytest.raises(SerializationError):
        Message("TAGMSG", ("#c",), "n!u@h", tags).serialize()


@pytest.mark.parametrize(
    "msg",
    [
        Message("PRIVMSG", ("#chan", "hello world"), "nick!user@host"),
        Message("PRIVMSG", ("#chan", ""), "nick!user@host"),
        Message("PRIVMSG", ("#chan", "::"), "nick!user@host"),
        Message("MODE", ("#chan", "+ov", "a", "b"), "nick!user@host"),
        Message("005", ("me", "A=1", "B", "are supported"), "srv", {"time": "t"}),
        Message("TAGMSG", ("#c",), None, {"+a": "x y;z\\", "b": ""}),
        Message("QUIT", ("",)),
        Message("AWAY"),
        Message("PRIVMSG", ("#chan", "one\ttwo"), "tabby!u@h"),
        Message("CMD", ("a\tb", "c\td")),
    ],
)
def test_round_trip(msg: Message) -> None:
    wire = msg.serialize()
    again = parse(wire)
    assert again == msg
    assert again.serialize() == wire


# ------------------------------------------------------------------------------ limits


def test_limit_constants() -> None:
    assert MAX_LINE == 512
    assert MAX_BODY == 510
    assert MAX_CLIENT_TAGS == 4094
    assert MAX_TAGS == 8191


def _line_of(size: int) -> bytes:
    """A PRIVMSG line whose body (without CR LF) is exactly ``size`` bytes."""
    head = b"PRIVMSG #c :"
    return head + b"x" * (size - len(head))


@pytest.mark.parametrize("ending", [b"", b"\r\n", b"\n"])
def test_body_of_510_bytes_is_accepted(ending: bytes) -> None:
    msg = parse(_line_of(510) + ending)
    assert len(msg.params[1]) == 510 - len(b"PRIVMSG #c :")


@pytest.mark.parametrize("size", [511, 600, 5000])
def test_body_over_510_bytes_is_too_long(size: int) -> None:
    with pytest.raises(LineTooLong):
        parse(_line_of(size) + b"\r\n")


def test_line_too_long_is_a_protocol_error() -> None:
    assert issubclass(LineTooLong, ProtocolError)
    assert issubclass(InvalidUTF8, ProtocolError)


def test_body_limit_is_in_bytes_not_characters() -> None:
    # 170 snowmen are 510 bytes of text: with the head, over the limit.
    with pytest.raises(LineTooLong):
        parse("PRIVMSG #c :" + "☃" * 170)
    parse("PRIVMSG #c :" + "☃" * 166)


def test_body_limit_does_not_count_tags() -> None:
    msg = parse(b"@+a=" + b"v" * 1000 + b" " + _line_of(510))
    assert msg.tags["+a"] == "v" * 1000


def _client_tags_of(size: int) -> bytes:
    """Client-only tag data of exactly ``size`` bytes."""
    return b"+k=" + b"v" * (size - 3)


def test_client_tags_of_4094_bytes_are_accepted() -> None:
    msg = parse(b"@" + _client_tags_of(MAX_CLIENT_TAGS) + b" TAGMSG #c")
    assert len(msg.tags["+k"]) == MAX_CLIENT_TAGS - 3


@pytest.mark.parametrize("size", [MAX_CLIENT_TAGS + 1, 6000])
def test_client_tags_over_4094_bytes_are_too_long(size: int) -> None:
    with pytest.raises(LineTooLong):
        parse(b"@" + _client_tags_of(size) + b" TAGMSG #c")


def test_many_small_client_tags_over_4094_bytes_are_too_long() -> None:
    tags = b";".join(b"+t%04d=%s" % (i, b"v" * 40) for i in range(100))
    assert len(tags) > MAX_CLIENT_TAGS
    with pytest.raises(LineTooLong):
        parse(b"@" + tags + b" TAGMSG #c")


def test_unprefixed_client_tags_over_4094_bytes_are_too_long() -> None:
    # "this includes tags with or without the client-only prefix"
    with pytest.raises(LineTooLong):
        parse(b"@label=" + b"x" * 5000 + b" PING x")
    with pytest.raises(LineTooLong):
        parse(b"@a=" + b"x" * 3000 + b";+b=" + b"y" * 1100 + b" PING x")
    parse(b"@a=" + b"x" * 2000 + b";+b=" + b"y" * 2000 + b" PING x")


def test_tag_section_over_8191_bytes_is_too_long() -> None:
    with pytest.raises(LineTooLong):
        parse(b"@a=" + b"x" * MAX_TAGS + b" PING x")


# ------------------------------------------------------------------------------ UTF-8


@pytest.mark.parametrize(
    ("line", "command"),
    [
        (b"PRIVMSG #c :\xff\xfe", "PRIVMSG"),
        (b"privmsg #c :caf\xe9", "PRIVMSG"),
        (b":nick!u@h notice bob :\xc3", "NOTICE"),
        (b"@+a=b TOPIC #c :\x80", "TOPIC"),
        (b"JOIN #\xe9t\xe9", "JOIN"),
    ],
)
def test_invalid_utf8_carries_the_command(line: bytes, command: str) -> None:
    with pytest.raises(InvalidUTF8) as info:
        parse(line)
    assert info.value.args[0] == command


def test_invalid_utf8_in_tags() -> None:
    with pytest.raises(InvalidUTF8) as info:
        parse(b"@+a=\xff PRIVMSG #c :hi")
    assert info.value.args[0] is None


def test_valid_multibyte_utf8() -> None:
    msg = parse("PRIVMSG #café :naïve ☃ 𝄞".encode())
    assert msg.params == ("#café", "naïve ☃ 𝄞")


# ------------------------------------------------------------------------------ casemap


@pytest.mark.parametrize(
    ("name", "folded"),
    [
        ("Alice", "alice"),
        ("ALICE", "alice"),
        ("alice", "alice"),
        ("#Chan", "#chan"),
        ("Nick[]\\~", "nick[]\\~"),
        ("{}|^", "{}|^"),
        ("AZaz09", "azaz09"),
        ("@`[", "@`["),
        ("ÉCOLE", "École"),
        ("#Straße", "#straße"),
        ("ÀÉÎ", "ÀÉÎ"),
        ("ΣΑΛΟΝ", "ΣΑΛΟΝ"),
        ("", ""),
    ],
)
def test_casefold_ascii(name: str, folded: str) -> None:
    assert casemap.NAME == "ascii"
    assert casemap.casefold(name) == folded


def test_casefold_is_idempotent() -> None:
    for name in ("MiXeD[Case]", "ÉCOLE", "#Chan"):
        once = casemap.casefold(name)
        assert casemap.casefold(once) == once
