"""Casemapping.

salon advertises ``CASEMAPPING=ascii``: modern.ircdocs.horse, "ascii: the ASCII characters
97 to 122 (decimal) are defined as the lower-case characters of ASCII 65 to 90".
Non-ASCII characters (allowed in channel names) are left alone.
"""

NAME = "ascii"

_TABLE = {c: c + 32 for c in range(65, 91)}


def casefold(name: str) -> str:
    """The key under which a nick or channel name is compared and stored."""
    if name.isascii():
        return name.lower()
    return name.translate(_TABLE)
