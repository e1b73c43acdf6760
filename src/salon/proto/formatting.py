"""IRC text formatting and control characters, for whoever shows IRC text to a person.

modern.ircdocs.horse, "Formatting": bold, colour (mIRC, and hex), reset, monospace,
reverse, italics, strikethrough, underline. Any other control character would be obeyed by
a terminal (ESC starts sequences that clear the screen or retitle the window, BEL rings,
some terminals obey the C1 controls U+0080-009F): :func:`shown_controls` makes them
visible instead. Used by the plain-text port (server) and by ``salon chat`` (client).
"""

from __future__ import annotations

import re

BOLD, COLOUR, HEX_COLOUR, RESET = "\x02", "\x03", "\x04", "\x0f"
MONOSPACE, REVERSE, ITALIC, STRIKE, UNDERLINE = "\x11", "\x16", "\x1d", "\x1e", "\x1f"
FORMAT_CODES = BOLD + COLOUR + HEX_COLOUR + RESET + MONOSPACE + REVERSE + ITALIC
FORMAT_CODES += STRIKE + UNDERLINE
_CODES = frozenset(FORMAT_CODES)

# A colour code takes up to two digits, then optionally a comma and up to two more: a comma
# not followed by a digit is text ("\x0304,red" is red ",red"), as is a third digit. Groups:
# foreground and background of \x03, then of \x04 (RRGGBB).
FORMATTING = re.compile(
    r"\x03(?:(\d{1,2})(?:,(\d{1,2}))?)?"
    r"|\x04(?:([0-9A-Fa-f]{6})(?:,([0-9A-Fa-f]{6}))?)?"
    r"|[\x02\x0f\x11\x16\x1d\x1e\x1f]"
)


def has_formatting(text: str) -> bool:
    return not _CODES.isdisjoint(text)


def strip_formatting(text: str) -> str:
    """The text without its formatting codes (colours with their numbers)."""
    return FORMATTING.sub("", text) if has_formatting(text) else text


def shown_controls(keep: str = "") -> dict[int, str]:
    """A ``str.translate`` table that shows control characters instead of sending them to
    a terminal: C0 and DEL in caret notation (ESC as ^[, DEL as ^?), C1 as U+FFFD. The
    characters of ``keep`` are left as they are."""
    table = {code: "^" + chr(code + 64) for code in range(0x20)}
    table[0x7F] = "^?"
    table.update({code: "\ufffd" for code in range(0x80, 0xA0)})
    for ch in keep:
        table.pop(ord(ch), None)
    return table
