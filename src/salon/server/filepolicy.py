"""The file host's rules about bytes and names, sans-I/O: what a file is (sniffed from its
first bytes, never taken from the uploader), whether it may be shown inline, the names and
headers it is served with, and which part of it a Range asks for.

The I/O is :mod:`salon.net.filehost`'s; who may read a file is :mod:`salon.server.files`'.
Security model: docs/files.md.
"""

from __future__ import annotations

import base64
import email.message
import re
import secrets
import unicodedata
import urllib.parse
from typing import NamedTuple

# Bytes of a file the sniffer looks at; a text file is text only up to TEXT_MAX bytes.
SNIFF_BYTES = 4096
TEXT_MAX = 1 << 20
NAME_MAX = 200  # bytes of UTF-8 in a stored file name
OCTET_STREAM = "application/octet-stream"
TEXT_PLAIN = "text/plain; charset=utf-8"
# What every /f/ response carries: nothing it serves may run a script, load anything, or
# be framed; "sandbox" makes even a document a browser decided to render an opaque origin
# without scripts.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'; sandbox"
)
# The file id: 128 random bits in lowercase base32 (26 characters, no padding).
ID_LENGTH = 26
_ID = re.compile(r"[a-z2-7]{26}")
# A Host header fit for a URL: a name or an address, and a port.
HOST_HEADER = re.compile(r"[A-Za-z0-9.-]+(:\d{1,5})?|\[[0-9A-Fa-f:.]+\](:\d{1,5})?")
# A file URL's path in a message, whatever the host: the reference the rules follow.
FILE_PATH = re.compile(r"/f/([a-z2-7]{26})(?![a-z2-7])")


class Kind(NamedTuple):
    """What the sniffer made of a file: the type it is served with, whether a browser may
    show it inline, and the extension its name gets."""

    type: str
    inline: bool
    ext: str


ATTACHMENT = Kind(OCTET_STREAM, False, "bin")
TEXT = Kind(TEXT_PLAIN, True, "txt")

_MAGIC: tuple[tuple[int, bytes, Kind], ...] = (
    (0, b"\xff\xd8\xff", Kind("image/jpeg", True, "jpg")),
    (0, b"\x89PNG\r\n\x1a\n", Kind("image/png", True, "png")),
    (0, b"GIF87a", Kind("image/gif", True, "gif")),
    (0, b"GIF89a", Kind("image/gif", True, "gif")),
    (0, b"fLaC", Kind("audio/flac", True, "flac")),
    (0, b"ID3", Kind("audio/mpeg", True, "mp3")),
)
# Markup a browser might render as a document, wherever it starts in a text file: such
# "text" is served as an attachment (HTML, SVG, XML, and anything that looks like them).
_MARKUP = re.compile(rb"<\s*[!?/A-Za-z]")


def request_path(target: bytes) -> bytes:
    """The path of a request target, without its query; RFC 9112 3.2.2: "a server MUST
    accept the absolute-form in requests", whose scheme and authority are dropped."""
    path = target.split(b"?", 1)[0].split(b"#", 1)[0]
    for scheme in (b"http://", b"https://"):
        if path[: len(scheme)].lower() == scheme:
            rest = path[len(scheme) :]
            slash = rest.find(b"/")
            return rest[slash:] if slash >= 0 else b"/"
    return path


def new_id() -> str:
    return base64.b32encode(secrets.token_bytes(16)).decode("ascii").rstrip("=").lower()


def valid_id(text: str) -> bool:
    return bool(_ID.fullmatch(text))


def sniff(head: bytes, size: int) -> Kind:
    """The kind of a file of ``size`` bytes whose first bytes (all of them up to TEXT_MAX,
    else at least SNIFF_BYTES) are ``head``. Only raster images, audio, video and plain
    text are inline; SVG, HTML, PDF and everything unknown are attachments."""
    for offset, magic, kind in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return Kind("image/webp", True, "webp")
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return Kind("audio/wav", True, "wav")
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return Kind("image/avif", True, "avif")
        if brand in (b"M4A ", b"M4B "):
            return Kind("audio/mp4", True, "m4a")
        if brand in (b"isom", b"iso2", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42", b"avc1"):
            return Kind("video/mp4", True, "mp4")
        if brand == b"dash":
            return Kind("video/mp4", True, "mp4")
        return ATTACHMENT
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return Kind("video/webm", True, "webm") if b"webm" in head[:64] else ATTACHMENT
    if head[:4] == b"OggS":
        if b"theora" in head[:64]:
            return Kind("video/ogg", True, "ogv")
        return Kind("audio/ogg", True, "ogg")
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE6 == 0xE2:
        # An MPEG audio frame header: 11 sync bits, a version, layer III.
        return Kind("audio/mpeg", True, "mp3")
    if size <= TEXT_MAX and len(head) >= size and _plain_text(head[:size]):
        return TEXT
    return ATTACHMENT


def _plain_text(data: bytes) -> bool:
    if b"\0" in data or _MARKUP.search(data):
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def upload_name(disposition: str) -> str:
    """The file name an upload's Content-Disposition gives (RFC 6266: ``filename*`` in
    RFC 8187's form wins over ``filename``), read by the standard library's MIME parser;
    "" when there is none."""
    message = email.message.Message()
    message["Content-Disposition"] = disposition
    try:
        name = message.get_filename("")
    except (ValueError, LookupError):
        return ""
    return name if isinstance(name, str) else ""


def clean_name(name: str, kind: Kind) -> str:
    """The name a file is stored and served with: NFC, no control characters, slashes or
    leading dots, at most NAME_MAX bytes, and the sniffed kind's extension (a name whose
    own extension says otherwise keeps it, followed by the right one)."""
    name = unicodedata.normalize("NFC", name)
    name = "".join(
        "_" if ch in "/\\" else ch
        for ch in name
        if unicodedata.category(ch)[0] != "C" and ch not in "\u2028\u2029"
    )
    name = name.strip().lstrip(".").strip()
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    if ext.lower() != kind.ext and not (kind.ext == "jpg" and ext.lower() == "jpeg"):
        stem, ext = name, kind.ext
    stem = stem or "file"
    budget = NAME_MAX - len(ext.encode()) - 1
    encoded = stem.encode()
    if len(encoded) > budget:
        stem = encoded[:budget].decode("utf-8", "ignore")
    return f"{stem}.{ext}"


def content_disposition(inline: bool, name: str) -> str:
    """RFC 6266 with RFC 8187's ``filename*`` (UTF-8, percent-encoded) and an ASCII
    fallback: no quote, backslash, control or non-ASCII character reaches the header."""
    fallback = "".join(ch if " " <= ch <= "~" and ch not in '"\\%;' else "_" for ch in name).strip()
    encoded = urllib.parse.quote(name, safe="!#$&+-.^_`|~")
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{fallback or 'file'}\"; filename*=UTF-8''{encoded}"


def url_name(name: str) -> str:
    """The name as the last segment of a file's URL (cosmetic: the id finds the file)."""
    return urllib.parse.quote(name, safe="")


class ByteRange(NamedTuple):
    start: int
    end: int  # inclusive


UNSATISFIABLE = ByteRange(-1, -1)


def byte_range(header: str, size: int) -> ByteRange | None:
    """RFC 9110 14.2: the one range a ``Range`` header asks for; None to answer with the
    whole file (no header, another unit, a malformed one, or several ranges: "A server
    MAY ignore the Range header field", which keeps several ranges from costing more than
    the file); UNSATISFIABLE for a 416."""
    unit, eq, spec = header.partition("=")
    if not eq or unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not _digits(first, True) or not _digits(last, True) or first == last == "":
        return None
    if first == "":
        suffix = int(last)
        if suffix == 0 or size == 0:
            return UNSATISFIABLE
        return ByteRange(max(0, size - suffix), size - 1)
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None  # RFC 9110 14.1.1: invalid, so ignored
    if start >= size:
        return UNSATISFIABLE
    return ByteRange(start, min(end, size - 1))


def _digits(text: str, empty: bool) -> bool:
    """ASCII digits only (``int()`` would take "+1", "1_0" and other scripts' digits)."""
    if not text:
        return empty
    return len(text) <= 18 and text.isascii() and text.isdigit()


def basic_credentials(header: str) -> tuple[str, str] | None:
    """RFC 7617: ``Basic base64(user:password)``, UTF-8; None when malformed."""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    user, colon, password = raw.partition(":")
    if not colon or not user or not password:
        return None
    return user, password


def bearer_token(header: str) -> str | None:
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
