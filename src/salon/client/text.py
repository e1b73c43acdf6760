"""Small text helpers: server errors in plain words, message splitting, times, casemapping."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, NamedTuple

from salon.proto import Message
from salon.proto.formatting import (
    BOLD,
    COLOUR,
    FORMAT_CODES,
    FORMATTING,
    ITALIC,
    MONOSPACE,
    RESET,
    REVERSE,
    STRIKE,
    UNDERLINE,
    has_formatting,
    shown_controls,
)

# Numeric -> plain words. ``{0}`` is the first parameter after our nick, ``{1}`` the second;
# ``{text}`` is the server's own text (its last parameter).
_ERRORS: dict[str, str] = {
    "401": "There is no one called {0} here",
    "402": "No such server: {0}",
    "403": "There is no channel called {0}",
    "404": "You can't send to {0}: {text}",
    "405": "You are in too many channels to join {0}",
    "406": "There was no one called {0}",
    "407": "Too many targets: {text}",
    "411": "Who should get that message?",
    "412": "There is nothing to send",
    "417": "That line is too long for the server",
    "421": "The server does not know the command {0}",
    "422": "The server has no message of the day",
    "431": "Which nick? None was given",
    "432": "{0} is not a valid nick: {text}",
    "433": "The nick {0} is taken",
    "436": "The nick {0} collided with another",
    "437": "{0} is temporarily unavailable",
    "441": "{0} is not in {1}",
    "442": "You are not in {0}",
    "443": "{0} is already in {1}",
    "451": "You are not registered yet",
    "461": "{0} needs more parameters",
    "462": "You are already registered",
    "464": "Wrong server password",
    "465": "You are banned from this server",
    "471": "You can't join {0}: it is full",
    "472": "{0} is not a mode the server knows",
    "473": "You can't join {0}: it is invite-only",
    "474": "You can't join {0}: you are banned",
    "475": "You can't join {0}: it needs a key",
    "476": "{0} is not a valid channel name",
    "477": "You can't join {0}: {text}",
    "478": "The list of {0} is full",
    "481": "You need to be an IRC operator for that",
    "482": "You need to be an operator of {0} for that",
    "483": "You can't kill a server",
    "491": "No operator block for your host",
    "501": "The server does not know that user mode",
    "502": "You can only change your own modes",
    "525": "{0}: bad channel key",
    "691": "STARTTLS failed",
    "723": "You need the {0} privilege for that",
    "902": "You must use a nick assigned to you",
    "904": "SASL login failed: wrong account or password",
    "905": "SASL login failed: the message was too long",
    "906": "SASL login was aborted",
    "907": "You are already logged in",
}


def describe_numeric(msg: Message) -> str:
    """A numeric error (or notice-like reply) as one plain sentence."""
    params = msg.params[1:]  # drop our nick
    text = params[-1] if params else ""
    args = params[:-1] if len(params) > 1 else ()
    template = _ERRORS.get(msg.command)
    if template is None:
        return " ".join([*args, text]).strip() if args else text
    padded = [*args, "", ""]
    try:
        return template.format(*padded, text=text)
    except (IndexError, KeyError):
        return text


def describe_fail(msg: Message) -> str:
    """An IRCv3 standard reply: ``FAIL <command> <code> [<context>...] :<description>``."""
    params = msg.params
    command = params[0] if params else "?"
    code = params[1] if len(params) > 1 else ""
    description = params[-1] if len(params) > 2 else code
    context = [p for p in params[2:-1]]
    where = f" ({' '.join(context)})" if context else ""
    if command == "*":
        return f"{description}{where}"
    return f"{command} failed: {description}{where}"


def parse_time(value: str | None, fallback: datetime) -> datetime:
    """A server-time tag (``2024-01-02T03:04:05.678Z``), or ``fallback`` when absent or bad."""
    if not value:
        return fallback
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return fallback
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def format_time(when: datetime) -> str:
    """The ``timestamp=`` form of CHATHISTORY: ISO 8601 UTC with milliseconds."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def utc(now: float) -> datetime:
    return datetime.fromtimestamp(now, tz=UTC)


_RFC1459 = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ[]\\~", "abcdefghijklmnopqrstuvwxyz{}|^")
_ASCII = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def casefold(name: str, casemapping: str = "rfc1459") -> str:
    if casemapping == "ascii":
        return name.translate(_ASCII)
    return name.translate(_RFC1459)


def nick_of(source: str | None) -> str:
    """``nick!user@host`` -> ``nick``; a server name stays as it is."""
    if not source:
        return ""
    return source.split("!", 1)[0]


def mentions(text: str, nick: str) -> bool:
    """Does ``text`` name ``nick`` as a word (case-insensitively)?"""
    if not nick:
        return False
    pattern = r"(?<![\w\-\[\]\\`^{}|])" + re.escape(nick) + r"(?![\w\-\[\]\\`^{}|])"
    return re.search(pattern, text, re.IGNORECASE) is not None


def split_utf8(text: str, limit: int) -> list[str]:
    """Split ``text`` into pieces of at most ``limit`` UTF-8 bytes, at spaces where possible."""
    limit = max(limit, 8)
    out: list[str] = []
    while len(text.encode()) > limit:
        cut = 0
        size = 0
        for i, ch in enumerate(text):
            size += len(ch.encode())
            if size > limit:
                cut = i
                break
        space = text.rfind(" ", 0, cut + 1)
        if space > cut // 2:
            out.append(text[:space])
            text = text[space + 1 :]
        else:
            out.append(text[:cut])
            text = text[cut:]
    out.append(text)
    return out


def ctcp(text: str) -> tuple[str, str] | None:
    """``\\x01ACTION waves\\x01`` -> ("ACTION", "waves"); None for ordinary text."""
    if len(text) < 2 or not text.startswith("\x01"):
        return None
    body = text[1:].rstrip("\x01")
    command, _, rest = body.partition(" ")
    return command.upper(), rest


# ------------------------------------------------------------------ formatting codes
# (The codes, their pattern and stripping: salon.proto.formatting.)
# The 16 colours of mIRC, 0 to 15 (99 and the extended 16 to 98 are shown as the default).
MIRC_COLOURS = (
    "#ffffff",
    "#000000",
    "#00007f",
    "#009300",
    "#ff0000",
    "#7f0000",
    "#9c009c",
    "#fc7f00",
    "#ffff00",
    "#00fc00",
    "#009393",
    "#00ffff",
    "#0000fc",
    "#ff00ff",
    "#7f7f7f",
    "#d2d2d2",
)


class Format(NamedTuple):
    """How a span of text is formatted; colours are "#rrggbb" or "" for the default."""

    bold: bool = False
    italic: bool = False
    underline: bool = False
    strike: bool = False
    reverse: bool = False
    monospace: bool = False
    fg: str = ""
    bg: str = ""


PLAIN_FORMAT = Format()


# What another user writes must not drive our terminal: its control characters are shown
# (proto.formatting.shown_controls). The formatting codes stay for the display to style or
# strip, \x01 for CTCP, and a tab, which is harmless.
_SHOWN = shown_controls(keep="\x01\t" + FORMAT_CODES)


# The same characters in a received line (UTF-8): is there anything to make visible?
UNSAFE_BYTES = re.compile(
    b"["
    + re.escape(bytes(sorted(_SHOWN.keys() - {0x0A, 0x0D} - set(range(0x80, 0xA0)))))
    + b"]|\xc2[\x80-\x9f]"
)


def visible(text: str) -> str:
    """``text`` with the control characters a terminal would obey made visible."""
    return text.translate(_SHOWN)


def _mirc(number: str | None) -> str:
    if number is None:
        return ""
    value = int(number)
    return MIRC_COLOURS[value] if value < len(MIRC_COLOURS) else ""


# The codes that switch a style on and off, and the Format field each one flips.
_TOGGLES = {
    BOLD: "bold",
    ITALIC: "italic",
    UNDERLINE: "underline",
    STRIKE: "strike",
    REVERSE: "reverse",
    MONOSPACE: "monospace",
}


def format_spans(text: str) -> list[tuple[str, Format]]:
    """``text`` as (piece, format) spans, the formatting codes consumed."""
    if not has_formatting(text):
        return [(text, PLAIN_FORMAT)] if text else []
    spans: list[tuple[str, Format]] = []
    fmt = PLAIN_FORMAT
    pos = 0
    for m in FORMATTING.finditer(text):
        if m.start() > pos:
            spans.append((text[pos : m.start()], fmt))
        pos = m.end()
        code = m.group(0)[0]
        toggled = _TOGGLES.get(code)
        if toggled is not None:
            flipped: dict[str, Any] = {toggled: not getattr(fmt, toggled)}
            fmt = fmt._replace(**flipped)
        elif code == RESET:
            fmt = PLAIN_FORMAT
        elif code == COLOUR:
            if m.group(1) is None:
                fmt = fmt._replace(fg="", bg="")
            else:
                fmt = fmt._replace(fg=_mirc(m.group(1)))
                if m.group(2) is not None:
                    fmt = fmt._replace(bg=_mirc(m.group(2)))
        else:  # HEX_COLOUR
            if m.group(3) is None:
                fmt = fmt._replace(fg="", bg="")
            else:
                fmt = fmt._replace(fg="#" + m.group(3).lower())
                if m.group(4) is not None:
                    fmt = fmt._replace(bg="#" + m.group(4).lower())
    if pos < len(text):
        spans.append((text[pos:], fmt))
    return spans


# A file host link (soju.im/FILEHOST as salon serves it): .../f/<id>/<name>.
_FILE_LINK = re.compile(r"https?://[^\s/]+/f/[a-z2-7]{26}/([^\s/?#]+)")
_AFTER_LINKS = ".,;:!?)]'\""  # punctuation that ends a sentence, not a link
_FILE_KINDS = {
    "image": ("png", "jpg", "jpeg", "gif", "webp", "avif"),
    "video": ("mp4", "webm", "ogv"),
    "audio": ("mp3", "ogg", "flac", "wav", "m4a", "opus"),
}


def file_links(text: str) -> str:
    """Each file host link preceded by what it is and its name: ``[image] cat.png URL``."""

    def label(found: re.Match[str]) -> str:
        from urllib.parse import unquote

        link = found.group(0).rstrip(_AFTER_LINKS)
        tail = found.group(0)[len(link) :]
        name = visible(unquote(link.rsplit("/", 1)[1]))
        ext = name.rpartition(".")[2].lower()
        kind = next((k for k, exts in _FILE_KINDS.items() if ext in exts), "file")
        return f"[{kind}] {name} {link}{tail}"

    return _FILE_LINK.sub(label, text) if "/f/" in text else text
