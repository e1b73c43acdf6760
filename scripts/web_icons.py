"""Writes the web client's app icons (src/salon/web/icon-192.png, icon-512.png): a blue
square with a white speech bubble, drawn here so that no image tool is needed.

    python scripts/web_icons.py
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

BLUE = (0x2F, 0x5D, 0x8A)
WHITE = (0xFF, 0xFF, 0xFF)


def pixel(x: float, y: float) -> tuple[int, int, int]:
    """The colour at (x, y) in a unit square: a bubble (an ellipse and its tail)."""
    in_bubble = ((x - 0.5) / 0.3) ** 2 + ((y - 0.46) / 0.22) ** 2 <= 1
    in_tail = 0.3 <= x <= 0.42 and 0.6 <= y <= 0.78 and (x - 0.3) <= (0.78 - y) * 0.7
    return WHITE if in_bubble or in_tail else BLUE


def png(size: int) -> bytes:
    rows = b"".join(
        b"\0" + b"".join(bytes(pixel((i + 0.5) / size, (j + 0.5) / size)) for i in range(size))
        for j in range(size)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


def main() -> None:
    web = Path(__file__).resolve().parent.parent / "src" / "salon" / "web"
    for size in (192, 512):
        (web / f"icon-{size}.png").write_bytes(png(size))


if __name__ == "__main__":
    main()
