"""Metadata stripping (salon.net.imagemeta) on JPEG, PNG and WebP files built here byte by
byte: GPS, XMP, comments and text chunks go, the image data and the orientation stay."""

from __future__ import annotations

import io
import struct
import zlib

from imagehelpers import SCAN, SECRET, jpeg, tiff

from salon.net import imagemeta


def run(data: bytes, kind: str) -> bytes | None:
    out = io.BytesIO()
    return out.getvalue() if imagemeta.strip(io.BytesIO(data), out, kind) else None


def app1_orientation(data: bytes) -> int | None:
    at = data.index(b"\xff\xe1")
    (length,) = struct.unpack(">H", data[at + 2 : at + 4])
    body = data[at + 4 : at + 2 + length]
    assert body.startswith(b"Exif\0\0")
    return imagemeta.exif_orientation(body[6:])


def test_jpeg_loses_its_metadata_and_keeps_orientation_colours_and_scans() -> None:
    original = jpeg(6)
    stripped = run(original, "image/jpeg")
    assert stripped is not None
    assert SECRET not in stripped and b"xmpmeta" not in stripped
    assert app1_orientation(stripped) == 6
    assert b"JFIF" in stripped and b"ICC_PROFILE" in stripped
    assert stripped.endswith(b"\xff\xda\x00\x08\x01\x01\0\0\x3f\0" + SCAN + b"\xff\xd9")
    # Upright photos need no Exif at all.
    upright = run(jpeg(1), "image/jpeg")
    assert upright is not None and b"\xff\xe1" not in upright


def test_broken_files_are_left_alone() -> None:
    assert run(jpeg()[:40], "image/jpeg") is None
    assert run(b"\xff\xd8\x00\x01", "image/jpeg") is None
    assert run(b"\x89PNG\r\n\x1a\nshort", "image/png") is None
    assert run(b"RIFF\x04\0\0\0WEBX", "image/webp") is None
    assert run(b"GIF89a", "image/gif") is None  # not a kind this strips


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_png_loses_text_time_and_exif_but_keeps_orientation() -> None:
    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
    idat = chunk(b"IDAT", zlib.compress(b"\0\xff\0\0"))
    original = (
        b"\x89PNG\r\n\x1a\n"
        + ihdr
        + chunk(b"tEXt", b"Author\0" + SECRET)
        + chunk(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0" + SECRET)
        + chunk(b"tIME", b"\x07\xea\x0c\x06\x04\x00\x00")
        + chunk(b"eXIf", tiff(8))
        + idat
        + chunk(b"IEND", b"")
    )
    stripped = run(original, "image/png")
    assert stripped is not None and SECRET not in stripped and b"tIME" not in stripped
    assert ihdr in stripped and idat in stripped and stripped.endswith(chunk(b"IEND", b""))
    at = stripped.index(b"eXIf")
    (length,) = struct.unpack(">I", stripped[at - 4 : at])
    exif = stripped[at + 4 : at + 4 + length]
    assert imagemeta.exif_orientation(exif) == 8
    assert struct.unpack(">I", stripped[at + 4 + length : at + 8 + length])[0] == zlib.crc32(
        b"eXIf" + exif
    )


def webp_chunk(kind: bytes, data: bytes) -> bytes:
    return kind + struct.pack("<I", len(data)) + data + (b"\0" if len(data) & 1 else b"")


def test_webp_loses_exif_and_xmp_and_its_flags_follow() -> None:
    vp8x = webp_chunk(b"VP8X", bytes((0x08 | 0x04, 0, 0, 0)) + b"\0\0\0\0\0\0")
    image = webp_chunk(b"VP8L", b"\x2f\0\0\0\0\x07")
    body = (
        b"WEBP"
        + vp8x
        + image
        + webp_chunk(b"EXIF", b"Exif\0\0" + tiff(3))
        + webp_chunk(b"XMP ", b"<x:xmpmeta>" + SECRET + b"</x:xmpmeta>")
    )
    original = b"RIFF" + struct.pack("<I", len(body)) + body
    stripped = run(original, "image/webp")
    assert stripped is not None and SECRET not in stripped and b"XMP " not in stripped
    assert struct.unpack("<I", stripped[4:8])[0] == len(stripped) - 8
    assert stripped[20] == 0x08  # VP8X: Exif (the orientation) yes, XMP no
    assert image in stripped
    at = stripped.index(b"EXIF")
    (size,) = struct.unpack("<I", stripped[at + 4 : at + 8])
    assert imagemeta.exif_orientation(stripped[at + 8 : at + 8 + size]) == 3
