"""Which strings are channel names: checked by the server on JOIN and RENAME, and by the
configuration for ``server.default_channel``."""

# RFC 2812's space, comma and ^G, and every other control character too (C0, DEL, C1): a
# channel name is shown in lists and window titles, where ESC or a tab would be obeyed. So
# are the invisible characters that make one name look like another or reverse the text
# after it (zero-width, bidirectional controls, line and paragraph separators).
_BAD_CHAN_CHARS = frozenset(
    " ,\x7f"
    + "".join(map(chr, range(0x20)))
    + "".join(map(chr, range(0x80, 0xA0)))
    + "\u200b\u200c\u200d\u200e\u200f\u2028\u2029\u202a\u202b\u202c\u202d\u202e"
    + "\u2060\u2066\u2067\u2068\u2069\ufeff"
)


def valid_channel(name: str, maxlen: int) -> bool:
    """RFC 2812 1.3: "Channels names are strings (beginning with a '&', '#', '+' or '!'
    character) of length up to fifty (50) characters ... shall not contain any spaces
    (' '), a control G (^G or ASCII 7), a comma (',')". salon offers only '#'."""
    return 1 < len(name) <= maxlen and name[0] == "#" and _BAD_CHAN_CHARS.isdisjoint(name)
