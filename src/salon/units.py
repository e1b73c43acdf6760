"""Sizes for people, shared by the server's messages and the chat client."""

from __future__ import annotations


def size_text(n: int) -> str:
    """A size for people: "1.5 MB", "980 kB", "12 bytes" (powers of 1024)."""
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}".replace(".0 ", " ")
    return f"{n} bytes"
