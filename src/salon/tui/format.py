"""How lines look: Rich text for the TUI, one plain (optionally ANSI-coloured) line for --plain."""

from __future__ import annotations

import zlib
from datetime import tzinfo

from rich.text import Text

from salon.client.model import EVENT_KINDS, Line
from salon.client.text import Format, file_links, format_spans
from salon.proto.formatting import strip_formatting

# Readable on dark and light backgrounds; a nick always gets the same one.
NICK_COLOURS = (
    "#e06c75",
    "#98c379",
    "#e5c07b",
    "#61afef",
    "#c678dd",
    "#56b6c2",
    "#d19a66",
    "#7fbf7f",
    "#ff79c6",
    "#8be9fd",
    "#bd93f9",
    "#f1fa8c",
)
ANSI_COLOURS = (31, 32, 33, 34, 35, 36, 91, 92, 93, 94, 95, 96)

ARROWS = {"join": "→", "part": "←", "quit": "←", "kick": "←", "nick": "•", "mode": "•"}


def colour_index(nick: str) -> int:
    """Stable across runs and machines (not Python's salted hash)."""
    return zlib.crc32(nick.lower().encode()) % len(NICK_COLOURS)


def nick_colour(nick: str) -> str:
    return NICK_COLOURS[colour_index(nick)]


def stamp(line: Line, tz: tzinfo | None = None) -> str:
    return line.time.astimezone(tz).strftime("%H:%M")


def _style(base: str, fmt: Format) -> str:
    parts = [base]
    for name in ("bold", "italic", "underline", "strike", "reverse"):
        if getattr(fmt, name):
            parts.append(name)
    if fmt.fg:
        parts.append(fmt.fg)
    if fmt.bg:
        parts.append("on " + fmt.bg)
    return " ".join(p for p in parts if p)


_SAID = ("message", "action", "notice")  # lines whose file links get a label


def irc_text(text: str, style: str = "") -> Text:
    """IRC text with its formatting codes (bold, colours...) shown as Rich styles."""
    out = Text()
    for piece, fmt in format_spans(text):
        out.append(piece, style=_style(style, fmt))
    return out


def shown_display(line: Line) -> str:
    """The sender's display name when it says more than the nick ("" otherwise)."""
    display = line.display
    return display if display and display != line.nick else ""


def _sender(out: Text, line: Line, colour: str) -> None:
    """``Display Name (nick)``, or the nick alone."""
    display = shown_display(line)
    if display:
        out.append(display, style=f"bold {colour}")
        out.append(f" ({line.nick})", style=colour)
    else:
        out.append(line.nick, style=f"bold {colour}")


def render(line: Line, tz: tzinfo | None = None) -> Text:
    """One line for the message pane."""
    out = Text(stamp(line, tz) + " ", style="dim")
    colour = nick_colour(line.nick) if line.nick else ""
    body = file_links(line.text) if line.kind in _SAID else line.text
    if line.kind == "message":
        out.append("<", style="dim")
        _sender(out, line, colour)
        out.append("> ", style="dim")
        out.append_text(irc_text(body, "bold" if line.highlight else ""))
    elif line.kind == "action":
        out.append("* ", style=colour)
        _sender(out, line, colour)
        out.append(" ")
        out.append_text(irc_text(body, "italic" + (" bold" if line.highlight else "")))
    elif line.kind == "notice":
        out.append("-", style="dim")
        out.append(line.nick or "server", style=f"bold {colour}")
        out.append("- ", style="dim")
        out.append_text(irc_text(body))
    elif line.kind in EVENT_KINDS:
        out.append_text(irc_text(f"{ARROWS.get(line.kind, '•')} {body}", "dim"))
    elif line.kind == "topic":
        out.append_text(irc_text(f"• {body}", "dim italic"))
    elif line.kind == "error":
        out.append_text(irc_text(f"! {body}", "bold red"))
    else:
        out.append_text(irc_text(f"- {body}", "cyan"))
    if line.highlight:
        out.stylize("on #4a3b00")
    return out


def plain(line: Line, tz: tzinfo | None = None, *, colour: bool = False, where: str = "") -> str:
    """One line for --plain: ``[12:01] <bob> hi`` (``where`` is put before the nick)."""
    prefix = f"[{stamp(line, tz)}] " + (f"{where} " if where else "")

    def c(text: str, code: int) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if colour else text

    who = f"{shown_display(line)} ({line.nick})" if shown_display(line) else line.nick
    nick = c(who, ANSI_COLOURS[colour_index(line.nick)]) if line.nick else ""
    text = file_links(line.text) if line.kind in _SAID else line.text
    body = strip_formatting(text).replace("\n", "\n" + " " * len(prefix))
    if line.kind == "message":
        text = f"<{nick}> {body}"
    elif line.kind == "action":
        text = f"* {nick} {body}"
    elif line.kind == "notice":
        text = f"-{nick or 'server'}- {body}"
    elif line.kind in EVENT_KINDS:
        text = c(f"{ARROWS.get(line.kind, '*')} {body}", 2)
    elif line.kind == "error":
        text = c(f"! {body}", 31)
    else:
        text = f"- {body}"
    if line.highlight and colour:
        text = f"\x1b[1m{text}\x1b[0m"
    return (c(prefix, 2) if colour else prefix) + text
