"""Metadata stripping for uploaded JPEG, PNG and WebP files, without decoding them: the
pieces that carry metadata (where a photo was taken, the camera, the author, the time,
comments) are dropped, and the image data is copied as it is. The orientation is kept,
in a minimal Exif block of its own, so that photos still show the right way up.

- JPEG: APP1 (Exif, XMP), APP3 to APP13 (IPTC among them), APP15 and COM segments before
  the first scan are dropped; APP0 (JFIF), APP2 (ICC colour profile) and APP14 (Adobe
  colour transform) are needed to show the colours right and stay.
- PNG: tEXt, zTXt, iTXt, tIME and eXIf chunks are dropped.
- WebP: EXIF and XMP chunks are dropped, and the VP8X header's flags follow.

A file that does not parse is left as it is (the upload is not refused for it); the
caller learns it from the False returned. Written as a small careful parser rather than a
dependency: docs/dependencies.md says why.
"""

from __future__ import annotations

import logging
import struct
from typing import BinaryIO

log = logging.getLogger("salon.files")

STRIPPED = ("image/jpeg", "image/png", "image/webp")
COPY_CHUNK = 1 << 20
ORIENTATION = 0x0112
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_DROPPED = {b"tEXt", b"zTXt", b"iTXt", b"tIME", b"eXIf"}
# JPEG markers without a length: SOI, EOI, RSTn, TEM.
_NO_LENGTH = {0xD8, 0xD9, 0x01, *range(0xD0, 0xD8)}
_JPEG_KEPT_APPS = {0xE0, 0xE2, 0xEE}  # JFIF, ICC profile, Adobe
_SOS = 0xDA
_WEBP_DROPPED = {b"EXIF", b"XMP "}
_VP8X_EXIF = 0x08
_VP8X_XMP = 0x04


class Malformed(Exception):
    pass


def strip(src: BinaryIO, dst: BinaryIO, content_type: str) -> bool:
    """Copy ``src`` to ``dst`` without its metadata; False (and ``dst`` to be ignored) when
    ``src`` does not parse as ``content_type`` or is not a kind this module strips."""
    try:
        if content_type == "image/jpeg":
            _jpeg(src, dst)
        elif content_type == "image/png":
            _png(src, dst)
        elif content_type == "image/webp":
            _webp(src, dst)
        else:
            return False
    except (Malformed, struct.error) as exc:
        log.info("metadata kept: the %s does not parse (%s)", content_type, exc)
        return False
    return True


def _read(src: BinaryIO, count: int) -> bytes:
    data = src.read(count)
    if len(data) != count:
        raise Malformed("truncated")
    return data


def _copy_rest(src: BinaryIO, dst: BinaryIO) -> None:
    while chunk := src.read(COPY_CHUNK):
        dst.write(chunk)


def _copy(src: BinaryIO, dst: BinaryIO, count: int) -> None:
    while count > 0:
        chunk = _read(src, min(COPY_CHUNK, count))
        dst.write(chunk)
        count -= len(chunk)


# ---------------------------------------------------------------------- Exif orientation


def exif_orientation(tiff: bytes) -> int | None:
    """The Orientation (1 to 8) in a TIFF structure (Exif's, after "Exif\\0\\0"), if any."""
    if len(tiff) < 8 or tiff[:4] not in (b"II*\0", b"MM\0*"):
        return None
    order = "<" if tiff[:2] == b"II" else ">"
    (ifd,) = struct.unpack_from(order + "I", tiff, 4)
    if ifd + 2 > len(tiff):
        return None
    (count,) = struct.unpack_from(order + "H", tiff, ifd)
    for i in range(count):
        at = ifd + 2 + 12 * i
        if at + 12 > len(tiff):
            return None
        tag, kind, n = struct.unpack_from(order + "HHI", tiff, at)
        if tag == ORIENTATION and kind == 3 and n == 1:
            (value,) = struct.unpack_from(order + "H", tiff, at + 8)
            return value if 1 <= value <= 8 else None
    return None


def minimal_tiff(orientation: int) -> bytes:
    """A TIFF structure with one IFD holding only the Orientation."""
    return b"MM\0*" + struct.pack(">IHHHIHHI", 8, 1, ORIENTATION, 3, 1, orientation, 0, 0)


# ---------------------------------------------------------------------- JPEG


def _jpeg(src: BinaryIO, dst: BinaryIO) -> None:
    if _read(src, 2) != b"\xff\xd8":
        raise Malformed("no SOI")
    dst.write(b"\xff\xd8")
    orientation: int | None = None
    wrote_orientation = False
    while True:
        byte = _read(src, 1)
        if byte != b"\xff":
            raise Malformed("no marker")
        marker = _read(src, 1)[0]
        while marker == 0xFF:  # fill bytes
            marker = _read(src, 1)[0]
        if marker in _NO_LENGTH:
            dst.write(bytes((0xFF, marker)))
            if marker == 0xD9:
                return
            continue
        (length,) = struct.unpack(">H", _read(src, 2))
        if length < 2:
            raise Malformed("bad segment length")
        if marker == _SOS or not (0xE0 <= marker <= 0xEF or marker == 0xFE):
            if orientation is not None and orientation != 1 and not wrote_orientation:
                _jpeg_orientation(dst, orientation)
                wrote_orientation = True
            dst.write(bytes((0xFF, marker)) + struct.pack(">H", length))
            _copy(src, dst, length - 2)
            if marker == _SOS:
                _copy_rest(src, dst)  # the scans: image data, copied as it is
                return
            continue
        body = _read(src, length - 2)
        if marker in _JPEG_KEPT_APPS:
            dst.write(bytes((0xFF, marker)) + struct.pack(">H", length) + body)
        elif marker == 0xE1 and body.startswith(b"Exif\0\0") and orientation is None:
            orientation = exif_orientation(body[6:])


def _jpeg_orientation(dst: BinaryIO, orientation: int) -> None:
    body = b"Exif\0\0" + minimal_tiff(orientation)
    dst.write(b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body)


# ---------------------------------------------------------------------- PNG


def _png(src: BinaryIO, dst: BinaryIO) -> None:
    import zlib

    if _read(src, 8) != _PNG_SIGNATURE:
        raise Malformed("no PNG signature")
    dst.write(_PNG_SIGNATURE)
    while True:
        head = _read(src, 8)
        (length,) = struct.unpack(">I", head[:4])
        kind = head[4:]
        if length > 1 << 31:
            raise Malformed("bad chunk length")
        if kind in _PNG_DROPPED:
            data = _read(src, length + 4)[:length]
            if kind == b"eXIf":
                orientation = exif_orientation(data)
                if orientation is not None and orientation != 1:
                    tiff = minimal_tiff(orientation)
                    crc = zlib.crc32(b"eXIf" + tiff)
                    dst.write(
                        struct.pack(">I", len(tiff)) + b"eXIf" + tiff + struct.pack(">I", crc)
                    )
            continue
        dst.write(head)
        _copy(src, dst, length + 4)
        if kind == b"IEND":
            return


# ---------------------------------------------------------------------- WebP


def _webp(src: BinaryIO, dst: BinaryIO) -> None:
    head = _read(src, 12)
    if head[:4] != b"RIFF" or head[8:] != b"WEBP":
        raise Malformed("no RIFF WEBP header")
    (riff_size,) = struct.unpack("<I", head[4:8])
    remaining = riff_size - 4
    dst.write(head)
    written = 4
    vp8x_at: int | None = None
    flags = 0
    kept_orientation = False
    while remaining >= 8:
        chunk_head = _read(src, 8)
        kind = chunk_head[:4]
        (size,) = struct.unpack("<I", chunk_head[4:])
        padded = size + (size & 1)
        remaining -= 8 + padded
        if remaining < 0:
            raise Malformed("chunk past the end")
        if kind in _WEBP_DROPPED:
            data = _read(src, padded)[:size]
            if kind == b"EXIF":
                tiff = data[6:] if data.startswith(b"Exif\0\0") else data
                orientation = exif_orientation(tiff)
                if orientation is not None and orientation != 1:
                    body = minimal_tiff(orientation)
                    dst.write(b"EXIF" + struct.pack("<I", len(body)) + body)
                    written += 8 + len(body)
                    kept_orientation = True
            continue
        if kind == b"VP8X":
            vp8x_at = dst.tell()
            data = _read(src, padded)
            flags = data[0]
            dst.write(chunk_head + data)
        else:
            dst.write(chunk_head)
            _copy(src, dst, padded)
        written += 8 + padded
    _copy_rest(src, dst)  # anything past the RIFF (kept: not ours to judge)
    if vp8x_at is not None:
        flags &= ~(_VP8X_EXIF | _VP8X_XMP)
        if kept_orientation:
            flags |= _VP8X_EXIF
        end = dst.tell()
        dst.seek(vp8x_at + 8)
        dst.write(bytes((flags,)))
        dst.seek(end)
    end = dst.tell()
    dst.seek(4)
    dst.write(struct.pack("<I", written))
    dst.seek(end)
