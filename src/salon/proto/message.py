"""IRC messages as frozen values, with a parse and serialize pair.

Grammar (modern.ircdocs.horse, "Messages")::

    message  ::= ['@' <tags> SPACE] [':' <source> SPACE] <command> <parameters> <crlf>
    params   ::= *( SPACE <middle> ) [ SPACE ':' <trailing> ]

Parameters are separated by SPACE (0x20) only, as RFC 1459 2.3.1 and modern.ircdocs.horse
say: a tab is an ordinary character of a parameter (``PRIVMSG #c one<TAB>two`` has the
text ``one<TAB>two``). Parsing is lenient where clients commonly are (several spaces between
parameters, a missing CR); serialization is strict: it refuses CR, LF and NUL anywhere, and
parameters that would change meaning on the wire.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, NamedTuple

from salon.errors import (
    ForbiddenCharacter,
    InvalidUTF8,
    LineTooLong,
    ProtocolError,
    SerializationError,
)
from salon.proto.limits import MAX_BODY, MAX_CLIENT_TAGS

_EMPTY_TAGS: Final[Mapping[str, str]] = MappingProxyType({})

# message-tags, "Escaping values": the mapping between characters and escape sequences.
_UNESCAPE: Final = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}
_ESCAPE: Final = str.maketrans({";": "\\:", " ": "\\s", "\\": "\\\\", "\r": "\\r", "\n": "\\n"})
_FORBIDDEN: Final = ("\r", "\n", "\0")


def unescape_tag_value(value: str) -> str:
    """message-tags: "If a lone \\ exists at the end of an escaped value (with no escape
    character following it), then there SHOULD be no output character"; an invalid escape
    sequence stands for the character after the backslash."""
    if "\\" not in value:
        return value
    out: list[str] = []
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if c == "\\":
            i += 1
            if i < n:
                nxt = value[i]
                out.append(_UNESCAPE.get(nxt, nxt))
        else:
            out.append(c)
        i += 1
    return "".join(out)


def escape_tag_value(value: str) -> str:
    return value.translate(_ESCAPE)


def parse_tags(raw: str) -> dict[str, str]:
    """Parse the tag section without its leading '@'. A tag without value maps to ''.

    message-tags: "If there are multiple tags with the same key, implementations MUST
    use the last one."
    """
    tags: dict[str, str] = {}
    for item in raw.split(";"):
        if not item:
            continue
        key, eq, value = item.partition("=")
        if not key:
            continue
        tags[key] = unescape_tag_value(value) if eq else ""
    return tags


_BAD_KEY_CHARS: Final = frozenset(" \r\n\0;=")


def encode_tags(tags: Mapping[str, str]) -> str:
    """The tag section without '@', e.g. ``time=2024-01-01T00:00:00.000Z;msgid=abc``.

    Refuses (SerializationError) keys with spaces, CR, LF, NUL, ';' or '=', and NUL in
    values (which message-tags escaping cannot represent).
    """
    parts = []
    for key, value in tags.items():
        if not key or not _BAD_KEY_CHARS.isdisjoint(key):
            raise SerializationError(f"bad tag key {key!r}")
        if value and "\0" in value:
            raise SerializationError(f"NUL in tag {key!r}")
        if value:
            parts.append(f"{key}={escape_tag_value(value)}")
        else:
            parts.append(key)
    return ";".join(parts)


class Message(NamedTuple):
    """One IRC message. ``command`` is upper-case for words, three digits for numerics.

    A named tuple: immutable, and the cheapest record Python makes (a frozen dataclass
    costs four ``object.__setattr__`` calls per message, and two are made per relay).
    """

    command: str
    params: tuple[str, ...] = ()
    source: str | None = None
    tags: Mapping[str, str] = _EMPTY_TAGS

    def with_tags(self, tags: Mapping[str, str]) -> Message:
        return Message(self.command, self.params, self.source, tags)

    def body(self) -> str:
        """The message without tags and without CR LF, validated for the wire."""
        parts: list[str] = []
        if self.source:
            if " " in self.source:
                raise SerializationError(f"space in source {self.source!r}")
            parts.append(":" + self.source)
        if not self.command or " " in self.command:
            raise SerializationError(f"bad command {self.command!r}")
        parts.append(self.command)
        params = self.params
        last = len(params) - 1
        for i, p in enumerate(params):
            if i == last:
                if not p or " " in p or p[0] == ":":
                    parts.append(":" + p)
                else:
                    parts.append(p)
            else:
                if not p or " " in p or p[0] == ":":
                    raise SerializationError(f"middle parameter {p!r} must be a non-empty word")
                parts.append(p)
        text = " ".join(parts)
        for bad in _FORBIDDEN:
            if bad in text:
                raise SerializationError(f"{bad!r} in message {self.command}")
        return text

    def serialize(self, *, tags: bool = True) -> bytes:
        """The wire form, CR LF included. Refuses CR, LF and NUL (SerializationError)."""
        text = self.body()
        if tags and self.tags:
            text = "@" + encode_tags(self.tags) + " " + text
        return text.encode("utf-8", "surrogateescape") + b"\r\n"

    def __str__(self) -> str:
        return self.serialize().decode("utf-8", "replace").rstrip("\r\n")


def parse(line: bytes | str, *, max_body: int = MAX_BODY) -> Message:
    """Parse one line (CR LF optional) into a :class:`Message`.

    Raises :class:`LineTooLong` over the limits, :class:`InvalidUTF8` for bytes that are not
    UTF-8 (its ``args[0]`` is the command when it could be read), and :class:`ProtocolError`
    for an empty line or one with no command.
    """
    data = line.encode("utf-8", "surrogateescape") if isinstance(line, str) else line
    data = data.rstrip(b"\r\n")
    tags: Mapping[str, str] = _EMPTY_TAGS
    if data[:1] == b"@":
        space = data.find(b" ")
        if space < 0:
            raise ProtocolError("tags without a command")
        # message-tags: "Clients MUST NOT send messages with tag data exceeding 4094 bytes"
        # (the tag data excludes the leading '@' and the trailing space).
        if space - 1 > MAX_CLIENT_TAGS:
            raise LineTooLong("tags too long")
        raw_tags = data[1:space]
        if b"\0" in raw_tags or b"\r" in raw_tags:
            raise ForbiddenCharacter(None)
        try:
            tags = parse_tags(raw_tags.decode("utf-8"))
        except UnicodeDecodeError:
            raise InvalidUTF8(None, {}) from None
        data = data[space + 1 :].lstrip(b" ")
    if len(data) > max_body:
        raise LineTooLong("line too long")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        # Any whitespace ends the command word here: it is only named in the error reply.
        words = data.decode("utf-8", "replace").split()
        if words and words[0].startswith(":"):
            words = words[1:]
        raise InvalidUTF8(words[0].upper() if words else None, dict(tags)) from None
    if "\0" in text or "\r" in text:
        # RFC 1459 2.3: a message ends at CR LF and can contain neither, nor NUL.
        words = text.replace("\0", " ").replace("\r", " ").split()
        if words and words[0].startswith(":"):
            words = words[1:]
        raise ForbiddenCharacter(words[0].upper() if words else None)
    source: str | None = None
    if text[:1] == ":":
        src, _, text = text.partition(" ")
        source = src[1:] or None
    trailing: str | None = None
    head, sep, rest = text.partition(" :")
    if sep:
        trailing = rest
    elif head.startswith(":"):
        # A line that is only ':trailing' after the command cannot have a command.
        raise ProtocolError("no command")
    # SPACE only, never str.split(): other whitespace (a tab) belongs to the parameter.
    parts = head.split(" ")
    if "" in parts:
        parts = [p for p in parts if p]
    if not parts:
        raise ProtocolError("no command")
    command = parts[0].upper()
    if trailing is not None:
        parts.append(trailing)
    return Message(command, tuple(parts[1:]), source, tags)
