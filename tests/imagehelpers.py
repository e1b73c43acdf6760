"""Images with metadata, built byte by byte, for the stripping tests (unit and end to end)."""

from __future__ import annotations

import struct

from salon.net import imagemeta

SECRET = b"51.5007N-0.1246W"
SCAN = b"\x12\x34\xff\x00\x56\xff\xd0\x78" * 50  # entropy-coded data, a stuffed FF, an RST


def tiff(orientation: int, gps: bool = True) -> bytes:
    """Little-endian TIFF: IFD0 with Orientation and a GPS IFD pointer; the GPS IFD holds
    one ASCII entry pointing at SECRET."""
    entries = [(imagemeta.ORIENTATION, 3, 1, orientation)]
    if gps:
        entries.append((0x8825, 4, 1, 8 + 2 + 12 * 2 + 4))  # GPS IFD right after IFD0
    ifd0 = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHII", tag, kind, n, value) for tag, kind, n, value in entries
    )
    ifd0 += struct.pack("<I", 0)
    data = b"II*\0" + struct.pack("<I", 8) + ifd0
    if gps:
        secret_at = len(data) + 2 + 12 + 4
        data += struct.pack("<HHHII", 1, 0x0002, 2, len(SECRET), secret_at) + struct.pack("<I", 0)
        data += SECRET
    return data


def segment(marker: int, body: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(body) + 2) + body


def jpeg(orientation: int = 6) -> bytes:
    return (
        b"\xff\xd8"
        + segment(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0")
        + segment(0xE1, b"Exif\0\0" + tiff(orientation))
        + segment(0xE1, b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta>" + SECRET + b"</x:xmpmeta>")
        + segment(0xE2, b"ICC_PROFILE\0\x01\x01colours")
        + segment(0xED, b"Photoshop 3.0\0" + SECRET)
        + segment(0xFE, b"taken at " + SECRET)
        + segment(0xDB, b"\0" + bytes(64))
        + segment(0xC0, b"\x08\0\x10\0\x10\x01\x01\x11\0")
        + segment(0xDA, b"\x01\x01\0\0\x3f\0")
        + SCAN
        + b"\xff\xd9"
    )
