"""The file host on the HTTP listeners (soju.im/FILEHOST): uploads streamed to disk,
content-addressed blobs, and downloads with Range, served so that nothing active runs.

Each request to ``/upload`` or ``/f/`` becomes an :class:`Exchange`, fed by the HTTP
protocol (:mod:`salon.net.websocket`, where h11 parses every byte) with the request's head,
its body as it arrives, and its end. Decisions come from the core (who may upload or read:
:mod:`salon.server.files`) and from :mod:`salon.server.filepolicy` (types, names, ranges);
this module does the I/O. docs/files.md describes the feature and its security model.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import errno
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import h11

from salon.net import imagemeta
from salon.proto.casemap import casefold
from salon.server import filepolicy
from salon.server.filepolicy import CONTENT_SECURITY_POLICY, HOST_HEADER, ByteRange, Kind
from salon.server.files import FILE_PREFIX, UPLOAD_PATH, Access, Files, Principal
from salon.store.base import FileRecord
from salon.units import size_text

if TYPE_CHECKING:
    from salon.net.runner import Shell

log = logging.getLogger("salon.files")

TMP_DIR = "tmp"
# On a directory the nodes of a cluster share, an upload's temp file that was not written
# for this long is one whose node died (a live upload writes more often, or is aborted).
STALE_TEMP = 600.0
# In a cluster, a blob no file uses is unlinked only once it has been unused, and
# untouched, this long: another node may have just finished an upload of the same bytes
# that this node has not heard of yet (docs/files.md, "Across cluster nodes").
UNLINK_GRACE = 60.0
READ_CHUNK = 1 << 20  # bytes read at once when hashing
# Bytes of an upload received and not yet on disk before reading waits for the disk.
WRITE_AHEAD = 4 << 20
# A Basic login that succeeded is believed again for this long (the argon2 check costs
# tens of milliseconds and megabytes each time): keyed by an HMAC of the credentials.
BASIC_CACHE_SECONDS = 600.0
UPLOADS_AT_ONCE = 2  # per account (or guest)
HOUR = 3600.0
DAY = 86400.0
# /f/<id> or /f/<id>/<name>: the name is cosmetic, and never holds another slash.
_FILE_TARGET = re.compile(rb"/f/([a-z2-7]{26})(?:/[^/?#]*)?")
_JSON = "application/json"
_TEXT = "text/plain; charset=utf-8"

Headers = list[tuple[str, str]]
# Every answer of the file host: no sniffing, no scripts, no framing, no referrer.
SECURITY_HEADERS: Headers = [
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("Referrer-Policy", "no-referrer"),
]


class Refused(Exception):
    """An answer that ends an exchange: status, text, extra headers."""

    def __init__(self, status: int, text: str, headers: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.headers = list(headers)


class HttpSide(Protocol):
    """What an exchange needs of its HTTP connection (salon.net.websocket)."""

    ip: str
    secure: bool

    def hold(self) -> None: ...
    def release(self) -> None: ...
    def send_continue(self) -> None: ...
    def reply(
        self,
        status: int,
        body: bytes,
        content_type: str = ...,
        headers: Sequence[tuple[str, str]] = ...,
    ) -> None: ...
    def stream(
        self, status: int, headers: Sequence[tuple[str, str]], length: int, source: Any
    ) -> None: ...
    def refuse(self, status: int, text: str, headers: Sequence[tuple[str, str]] = ...) -> None: ...


class Blobs:
    """Files by their sha256 under ``data/files/<aa>/<bb>/<sha256>`` (0600, directories
    0700); uploads are written to ``tmp/`` first, then fsynced and renamed into place."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / TMP_DIR

    def create(self, shared: bool = False) -> None:
        """Make the folders, and empty tmp/ of the uploads a server died in the middle of
        (the server at start, and ``salon files gc``: never while uploads may run).
        ``shared``: other nodes upload into this tmp/ too; only their dead uploads go."""
        self.tmp.mkdir(parents=True, exist_ok=True, mode=0o700)
        stale = time.time() - STALE_TEMP
        for leftover in self.tmp.iterdir():
            with contextlib.suppress(OSError):
                if not shared or leftover.stat().st_mtime < stale:
                    leftover.unlink()

    def stored(self) -> list[str]:
        """Every blob on disk, by name."""
        return sorted(
            p.name for p in self.root.glob("??/??/*") if p.is_file() and len(p.name) == 64
        )

    def path(self, blob: str) -> Path:
        return self.root / blob[:2] / blob[2:4] / blob

    def new_temp(self) -> tuple[int, Path]:
        path = self.tmp / secrets.token_hex(16)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        return fd, path

    def settle(self, temp: Path, strip: bool) -> tuple[str, Kind, int]:
        """(off the loop) Sniff, strip metadata, hash, fsync and move a finished upload
        into place: its blob, kind and size."""
        size = temp.stat().st_size
        with open(temp, "rb") as fh:
            head = fh.read(filepolicy.TEXT_MAX + 1 if size <= filepolicy.TEXT_MAX else 65536)
        kind = filepolicy.sniff(head, size)
        if strip and kind.type in imagemeta.STRIPPED:
            stripped = temp.with_suffix(".strip")
            try:
                fd = os.open(stripped, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                with open(temp, "rb") as src, open(fd, "w+b") as dst:
                    done = imagemeta.strip(src, dst, kind.type)
                if done:
                    os.replace(stripped, temp)
                    size = temp.stat().st_size
            finally:
                with contextlib.suppress(FileNotFoundError):
                    stripped.unlink()
        digest = hashlib.sha256()
        with open(temp, "rb") as fh:
            while chunk := fh.read(READ_CHUNK):
                digest.update(chunk)
            os.fsync(fh.fileno())
        blob = digest.hexdigest()
        final = self.path(blob)
        final.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if final.exists():
            temp.unlink()  # the same bytes are there already
            with contextlib.suppress(FileNotFoundError):
                os.utime(final)  # used again: see UNLINK_GRACE
        else:
            os.replace(temp, final)
            fd = os.open(final.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        return blob, kind, size

    def delete(self, blob: str, untouched_for: float = 0.0) -> None:
        """Unlink a blob; with ``untouched_for``, only one not stored again for that long."""
        path = self.path(blob)
        with contextlib.suppress(FileNotFoundError):
            if untouched_for and path.stat().st_mtime > time.time() - untouched_for:
                return
            path.unlink()

    def free(self) -> tuple[int, int]:
        """(free bytes for us, size of the disk)."""
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


class FileReader:
    """The bytes of a range of a file, read a piece at a time as the peer takes them."""

    def __init__(self, path: Path, start: int) -> None:
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self.pos = start

    def read(self, count: int) -> bytes:
        data = os.pread(self.fd, count, self.pos)
        self.pos += len(data)
        return data

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _write_all(fd: int, pieces: list[bytes]) -> int:
    """(off the loop) Write pieces to a file, whole; the bytes written."""
    total = 0
    for piece in pieces:
        view = memoryview(piece)
        while view:
            written = os.write(fd, view)
            view = view[written:]
            total += written
    return total


class TempWriter:
    """An upload's temp file, written on the file pool, in order, one batch at a time: a
    disk that stalls (writeback throttling) stalls that thread, never the event loop."""

    def __init__(self, host: FileHost, fd: int, progress: Callable[[], None]) -> None:
        self.host = host
        self.fd = fd
        self.progress = progress  # called after each batch (or failure)
        self.pending: list[bytes] = []
        self.queued = 0  # bytes handed over and not written yet
        self.busy = False
        self.error: OSError | None = None
        self._close_when_idle = False

    def write(self, piece: bytes) -> None:
        if self.error is not None or self.fd < 0:
            return
        self.pending.append(piece)
        self.queued += len(piece)
        if not self.busy:
            self._start()

    def _start(self) -> None:
        batch, self.pending = self.pending, []
        self.busy = True
        future = self.host.shell.loop.run_in_executor(self.host.pool, _write_all, self.fd, batch)
        future.add_done_callback(self._done)

    def _done(self, future: asyncio.Future[int]) -> None:
        self.busy = False
        try:
            self.queued -= future.result()
        except OSError as exc:
            self.error = exc
            self.pending.clear()
            self.queued = 0
        if self._close_when_idle:
            self.close()
            return
        if self.pending and self.error is None:
            self._start()
        self.progress()

    @property
    def drained(self) -> bool:
        return not self.busy and not self.pending

    def close(self) -> None:
        """Close the file now, or once the batch being written is done."""
        if self.busy:
            self._close_when_idle = True
            return
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class FileHost:
    """The file host of one server process (the shell's ``filehost``)."""

    def __init__(self, shell: Shell) -> None:
        self.shell = shell
        self.config = shell.config.files
        self.files: Files = shell.server.files
        self.blobs = Blobs(shell.config.files_path)
        # A cluster's nodes share the blobs' directory (files.dir).
        self.clustered = shell.config.cluster is not None
        self.blobs.create(shared=self.clustered)
        self.unlink_due: dict[str, float] = {}  # blob -> when to look at it again (cluster)
        # Blob work (hashing, fsync, unlink) never runs on the store's thread, which
        # carries the message commits.
        self.pool = ThreadPoolExecutor(2, thread_name_prefix="salon-files")
        self._secret = secrets.token_bytes(32)
        self._basic: dict[bytes, tuple[str, float]] = {}
        self.reserved: dict[str, int] = {}  # owner -> bytes of uploads under way
        self.active: dict[str, int] = {}  # owner key -> uploads under way
        self.history: dict[str, deque[tuple[float, int]]] = {}  # owner key -> (time, bytes)

    def handles(self, target: bytes) -> bool:
        path = filepolicy.request_path(target)
        return path == UPLOAD_PATH.encode() or path.startswith(FILE_PREFIX.encode())

    def exchange(self, http: HttpSide, request: h11.Request) -> Exchange:
        return Exchange(self, http, request)

    def close(self) -> None:
        self.pool.shutdown(wait=True)

    def delete(self, record: FileRecord) -> None:
        """Delete a file now: 410 from then on, and its blob once no file uses it."""
        self.files.delete(record, time.time())
        self.collect()
        self.shell.after()

    def collect(self) -> None:
        """Unlink the blobs the core let go of (each checked again: an upload of the
        same bytes may have been kept meanwhile). On the loop, not the pool: an upload's
        record is added on the loop too, right after it checked its blob is there, so no
        unlink can fall between the two."""
        blobs = self.files.take_unlinks()
        if self.clustered:
            now = time.monotonic()
            for blob in blobs:
                self.unlink_due.setdefault(blob, now + UNLINK_GRACE)
            blobs = [blob for blob, due in self.unlink_due.items() if due <= now]
            for blob in blobs:
                del self.unlink_due[blob]
        for blob in blobs:
            if not self.files.blob_in_use(blob):
                self.blobs.delete(blob, UNLINK_GRACE if self.clustered else 0.0)

    # ------------------------------------------------------------------ credentials

    async def principal(self, headers: dict[str, str], ip: str, spend: bool) -> Principal | None:
        """Who the Authorization header says makes the request (None: no header);
        raises Refused for a wrong or throttled one."""
        header = headers.get("authorization", "")
        if not header:
            return None
        token = filepolicy.bearer_token(header)
        if token is not None:
            found = self.files.use_token(token, time.time(), spend=spend)
            if found is None:
                raise Refused(401, "The token is unknown or expired", _challenge())
            return found
        creds = filepolicy.basic_credentials(header)
        if creds is None:
            raise Refused(401, "Unsupported or malformed Authorization", _challenge())
        user, password = creds
        accounts = self.shell.server.accounts
        # The SASL throttle, by account and by address: HTTP is no password oracle.
        wait = accounts.login_wait(user, ip)
        if wait:
            retry = str(int(wait) + 1)
            raise Refused(429, f"Too many failed logins; try again in {retry} seconds",
                          [("Retry-After", retry)])  # fmt: skip
        key = hmac.digest(self._secret, f"{casefold(user)}\0{password}".encode(), "sha256")
        now = time.time()
        cached = self._basic.get(key)
        if cached is not None and cached[1] > now and cached[0] in accounts.records:
            return Principal(cached[0])
        work = accounts.verify_work(user, password)
        ok = await self.shell.loop.run_in_executor(None, work)
        if not ok:
            accounts.login_failed(user, ip)
            raise Refused(401, "Wrong account name or password", _challenge())
        cf = casefold(user)
        if len(self._basic) > 10000:
            self._basic = {k: v for k, v in self._basic.items() if v[1] > now}
        self._basic[key] = (cf, now + BASIC_CACHE_SECONDS)
        return Principal(cf)

    # ------------------------------------------------------------------ limits

    def owner_key(self, who: Principal) -> str:
        return who.account if who.account is not None else ""

    def check_limits(self, who: Principal, declared: int) -> None:
        """Before a byte of the body is read: the rate (429), the quota and the free disk
        (507), and the uploads under way."""
        cfg = self.config
        key = self.owner_key(who)
        now = time.time()
        if self.active.get(key, 0) >= UPLOADS_AT_ONCE:
            raise Refused(429, "Too many uploads at once", [("Retry-After", "5")])
        past = self.history.get(key)
        if past is not None:
            while past and past[0][0] < now - DAY:
                past.popleft()
            hour = [t for t, _ in past if t >= now - HOUR]
            if cfg.uploads_per_hour and len(hour) >= cfg.uploads_per_hour:
                retry = str(int(hour[0] + HOUR - now) + 1)
                raise Refused(429, f"Too many uploads; try again in {retry} seconds",
                              [("Retry-After", retry)])  # fmt: skip
            if cfg.bytes_per_day and sum(b for _, b in past) + declared > cfg.bytes_per_day:
                retry = str(int(past[0][0] + DAY - now) + 1)
                raise Refused(429, f"Daily upload volume reached; try again in {retry} seconds",
                              [("Retry-After", retry)])  # fmt: skip
        used = self.files.usage.get(key, 0) + self.reserved.get(key, 0)
        if used + declared > cfg.quota:
            raise Refused(507, f"Over quota: {size_text(used)} of {size_text(cfg.quota)} used")
        free, total = self.blobs.free()
        keep = max(cfg.min_free, int(total * cfg.min_free_percent / 100))
        if free - declared < keep:
            raise Refused(507, "Not enough free disk space on the server")

    def reserve(self, who: Principal, size: int) -> None:
        key = self.owner_key(who)
        self.reserved[key] = self.reserved.get(key, 0) + size
        self.active[key] = self.active.get(key, 0) + 1

    def unreserve(self, who: Principal, size: int) -> None:
        key = self.owner_key(who)
        left = self.reserved.get(key, 0) - size
        if left > 0:
            self.reserved[key] = left
        else:
            self.reserved.pop(key, None)
        count = self.active.get(key, 0) - 1
        if count > 0:
            self.active[key] = count
        else:
            self.active.pop(key, None)

    def uploaded(self, who: Principal, size: int) -> None:
        self.history.setdefault(self.owner_key(who), deque()).append((time.time(), size))

    # ------------------------------------------------------------------ URLs and CORS

    def base_url(self, http: HttpSide, headers: dict[str, str]) -> str:
        if self.config.public_url:
            return self.config.public_url
        host = headers.get("host", "")
        if not HOST_HEADER.fullmatch(host):
            raise Refused(400, "Bad request: a Host header is required")
        return f"{'https' if http.secure else 'http'}://{host}"

    def cors(self, headers: dict[str, str], preflight: bool = False) -> Headers:
        """CORS for pages on other origins (gamja): the Origin echoed when allowed. The
        credentials are an explicit header, never a cookie, so an allowed origin only
        lets a page do what its user could do anyway."""
        origin = headers.get("origin")
        if origin is None:
            return []
        allowed = self.config.allowed_origins
        if allowed and origin not in allowed:
            return [("Vary", "Origin")]
        out = [
            ("Access-Control-Allow-Origin", origin),
            ("Access-Control-Allow-Credentials", "true"),
            ("Access-Control-Expose-Headers", "Location, Upload-Limit, Retry-After"),
            ("Vary", "Origin"),
        ]
        if preflight:
            out += [
                ("Access-Control-Allow-Methods", "GET, HEAD, POST, DELETE, OPTIONS"),
                (
                    "Access-Control-Allow-Headers",
                    "Authorization, Content-Type, Content-Disposition, Range",
                ),
                ("Access-Control-Max-Age", "600"),
            ]
        return out


def _challenge() -> Headers:
    return [("WWW-Authenticate", 'Basic realm="salon", charset="UTF-8"')]


class Exchange:
    """One request to the file host, from its head to its answer."""

    def __init__(self, host: FileHost, http: HttpSide, request: h11.Request) -> None:
        self.host = host
        self.http = http
        self.method = request.method.decode("ascii", "replace").upper()
        self.target = filepolicy.request_path(request.target)
        self.headers: dict[str, str] = {}
        for name, value in request.headers:
            key = name.decode("ascii", "replace").lower()
            text = value.decode("latin-1")
            self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text
        self.cors = host.cors(self.headers, preflight=self.method == "OPTIONS")
        self.aborted = False
        self.body_ended = False
        # An upload under way: its temp file, what it may still take, and its owner.
        self.writer: TempWriter | None = None
        self.disk_wait = False  # reading waits for the writer
        self.drained: asyncio.Future[None] | None = None  # the body is all on disk
        self.temp: Path | None = None
        self.size = 0
        self.limit = 0
        self.reserved = 0
        self.who: Principal | None = None
        self.task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ from the protocol

    def begin(self) -> None:
        if self.target == UPLOAD_PATH.encode() and self.method == "POST":
            # Nothing of the body is read until the upload is allowed.
            self.http.hold()
            self._run(self._upload_begin())

    def data(self, chunk: bytes) -> None:
        if self.writer is None:
            return  # a body nobody asked for (GET, OPTIONS...): dropped
        self.size += len(chunk)
        if self.size > self.limit:
            self._fail(413, f"Over the size limit of {size_text(self.host.config.max_size)}",
                       self._limit_header())  # fmt: skip
            return
        writer = self.writer
        if writer is None:
            return
        writer.write(chunk)
        if writer.queued > WRITE_AHEAD and not self.disk_wait:
            self.disk_wait = True  # the disk is behind: read no more until it catches up
            self.http.hold()

    def _written(self) -> None:
        """A batch of the upload is on disk (or failed)."""
        writer = self.writer
        if writer is None or self.aborted:
            return
        if writer.error is not None:
            self._disk_failed(writer.error)
            return
        if self.disk_wait and writer.queued <= WRITE_AHEAD // 2 and not self.body_ended:
            self.disk_wait = False
            self.http.release()
        if self.body_ended and writer.drained and self.drained is not None:
            self.drained.set_result(None)

    def _disk_failed(self, exc: OSError) -> None:
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        log.warning("upload failed: %s", exc)
        self._fail(507 if full else 500, "The server could not store the file")

    def end(self) -> None:
        self.body_ended = True
        method, target = self.method, self.target
        if target == UPLOAD_PATH.encode():
            if method == "OPTIONS":
                self._answer(204, b"", [
                    ("Allow", "OPTIONS, POST"),
                    ("Accept-Post", "*/*"),
                    *self._limit_header(),
                ])  # fmt: skip
            elif method == "POST":
                self.http.hold()
                self._run(self._upload_end())
            else:
                self._answer(405, b"Method not allowed\n", [("Allow", "OPTIONS, POST")])
            return
        found = _FILE_TARGET.fullmatch(target)
        if found is None:
            self._answer(404, b"Not found\n")
            return
        file_id = found.group(1).decode("ascii")
        if method in ("GET", "HEAD"):
            self.http.hold()
            self._run(self._download(file_id))
        elif method == "DELETE":
            self.http.hold()
            self._run(self._delete(file_id))
        elif method == "OPTIONS":
            self._answer(204, b"", [("Allow", "GET, HEAD, DELETE, OPTIONS")])
        else:
            self._answer(405, b"Method not allowed\n", [("Allow", "GET, HEAD, DELETE, OPTIONS")])

    def abort(self) -> None:
        """The connection is gone."""
        self.aborted = True
        if self.drained is not None and not self.drained.done():
            self.drained.cancel()  # _upload_end waits for it no more
        self._cleanup()

    # ------------------------------------------------------------------ answers

    def _run(self, work: Any) -> None:
        self.task = self.host.shell.loop.create_task(self._guard(work))

    async def _guard(self, work: Any) -> None:
        try:
            await work
        except Refused as refused:
            self._fail(refused.status, refused.text, refused.headers)
        except Exception:
            log.exception("bug in the file host")
            self._fail(500, "Internal error")

    def _answer(self, status: int, body: bytes, headers: Sequence[tuple[str, str]] = (),
                content_type: str = _TEXT) -> None:  # fmt: skip
        if self.aborted:
            return
        self.http.reply(status, body, content_type, [*SECURITY_HEADERS, *self.cors, *headers])

    def _fail(self, status: int, text: str, headers: Sequence[tuple[str, str]] = ()) -> None:
        """A refusal: nothing of the upload stays, and the connection closes (the rest of
        a body is not worth reading)."""
        self._cleanup()
        if self.aborted:
            return
        self.aborted = True
        self.http.refuse(status, text, [*SECURITY_HEADERS, *self.cors, *headers])

    def _cleanup(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.temp is not None:
            with contextlib.suppress(OSError):
                self.temp.unlink()
            self.temp = None
        if self.who is not None and self.reserved:
            self.host.unreserve(self.who, self.reserved)
            self.reserved = 0

    def _limit_header(self) -> Headers:
        return [("Upload-Limit", f"maxsize={self.host.config.max_size}")]

    # ------------------------------------------------------------------ upload

    async def _upload_begin(self) -> None:
        """The head of a POST /upload: everything is checked before the body is read."""
        host, headers = self.host, self.headers
        cfg = host.config
        if not cfg.enabled:
            raise Refused(404, "Not found")
        if "transfer-encoding" in headers:
            declared, self.limit = cfg.max_size, cfg.max_size
        else:
            declared = int(headers.get("content-length", "0"))  # h11 checked its form
            if declared > cfg.max_size:
                raise Refused(413, f"Over the size limit of {size_text(cfg.max_size)}",
                              self._limit_header())  # fmt: skip
            self.limit = declared
        who = await host.principal(headers, self.http.ip, spend=True)
        if who is None:
            raise Refused(401, "Log in to share files", _challenge())
        if who.account is None and cfg.who != "everyone":
            raise Refused(403, "Log in to share files")
        if who.account is not None and who.account not in host.shell.server.accounts.records:
            raise Refused(403, "No such account")
        host.base_url(self.http, headers)  # a Host header we can answer with
        host.check_limits(who, declared)
        if self.aborted:
            return
        self.who = who
        host.reserve(who, declared)
        self.reserved = declared
        fd, self.temp = host.blobs.new_temp()
        self.writer = TempWriter(host, fd, self._written)
        self.http.send_continue()
        self.http.release()

    async def _upload_end(self) -> None:
        host, who, temp, writer = self.host, self.who, self.temp, self.writer
        if who is None or temp is None or writer is None:
            return  # refused already
        if not writer.drained:
            self.drained = host.shell.loop.create_future()
            await self.drained
        if writer.error is not None:
            self._disk_failed(writer.error)
            return
        writer.close()
        self.writer = None
        try:
            blob, kind, size = await host.shell.loop.run_in_executor(
                host.pool, host.blobs.settle, temp, host.config.strip_metadata
            )
        except OSError as exc:
            log.warning("upload failed: %s", exc)
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
            raise Refused(507 if full else 500, "The server could not store the file") from None
        self.temp = None  # moved into place (or the same bytes were there)
        files = host.files
        if self.aborted:
            if not files.blob_in_use(blob):
                host.blobs.delete(blob)
            return
        if not host.blobs.path(blob).exists():
            # The same bytes' last file was deleted while these were moved into place.
            raise Refused(503, "The file could not be kept; try again", [("Retry-After", "1")])
        name = filepolicy.clean_name(
            filepolicy.upload_name(self.headers.get("content-disposition", "")), kind
        )
        server = host.shell.server
        nick = ""
        if who.client_id is not None:
            client = server.clients.get(who.client_id)
            nick = client.nick_cf if client is not None else ""
        record = FileRecord(
            id=filepolicy.new_id(),
            blob=blob,
            size=size,
            type=kind.type,
            name=name,
            owner=who.account or "",
            created=time.time(),
            owner_nick=nick,
        )
        self._cleanup()  # the reservation: the file counts from now on
        files.add(record)
        host.uploaded(who, size)
        written: asyncio.Future[Any] = host.shell.loop.create_future()
        server.store(lambda store: store.save_file(record), written.set_result)
        host.shell.after()
        await written
        url = f"{host.base_url(self.http, self.headers)}/f/{record.id}/{filepolicy.url_name(name)}"
        log.info("upload id=%s size=%d type=%s owner=%s", record.id, size, kind.type, record.owner)
        body = json.dumps({"url": url, "id": record.id, "size": size, "type": kind.type})
        self._answer(201, body.encode() + b"\n", [("Location", url)], _JSON)

    # ------------------------------------------------------------------ download

    async def _download(self, file_id: str) -> None:
        host = self.host
        record = host.files.records.get(file_id)
        if record is None or not host.config.enabled:
            raise Refused(404, "Not found")
        if record.deleted:
            raise Refused(410, "This file was deleted")
        access = host.files.access(record, None)
        public = access is Access.ALLOWED
        if not public:
            who = await host.principal(self.headers, self.http.ip, spend=False)
            if self.aborted:
                return
            access = host.files.access(record, who)
            if access is Access.LOGIN:
                # A browser asks for a login only where one can be given: on a page it
                # opens, not for a picture or a video in another page (where the prompt
                # would stop that page; salon's client fetches such files with a token).
                navigating = self.headers.get("sec-fetch-mode", "navigate") == "navigate"
                raise Refused(401, "Log in to see this file", _challenge() if navigating else [])
            if access is Access.FORBIDDEN:
                raise Refused(403, "You may not see this file")
        self._send(record, public)

    def _send(self, record: FileRecord, public: bool) -> None:
        inline = record.type != filepolicy.OCTET_STREAM
        etag = f'"{record.blob}"'
        modified = email.utils.formatdate(record.created, usegmt=True)
        headers: Headers = [
            ("Content-Type", record.type),
            ("Content-Disposition", filepolicy.content_disposition(inline, record.name)),
            ("ETag", etag),
            ("Last-Modified", modified),
            ("Accept-Ranges", "bytes"),
        ]
        if public:
            headers.append(("Cache-Control", "public, max-age=86400"))
        else:
            headers += [
                ("Cache-Control", "private, max-age=3600"),
                ("Vary", "Cookie, Authorization"),
                ("Cross-Origin-Resource-Policy", "same-origin"),
            ]
        headers += [*SECURITY_HEADERS, *self.cors]
        size = record.size
        if etag in _tags(self.headers.get("if-none-match", "")):
            self.http.stream(304, headers, 0, None)
            return
        wanted: ByteRange | None = None
        if "range" in self.headers:
            condition = self.headers.get("if-range")
            if condition is None or condition in (etag, modified):
                wanted = filepolicy.byte_range(self.headers["range"], size)
        if wanted == filepolicy.UNSATISFIABLE:
            raise Refused(416, "Range not satisfiable", [("Content-Range", f"bytes */{size}")])
        status, start, length = 200, 0, size
        if wanted is not None:
            status, start, length = 206, wanted.start, wanted.end - wanted.start + 1
            headers.append(("Content-Range", f"bytes {wanted.start}-{wanted.end}/{size}"))
        headers.append(("Content-Length", str(length)))
        try:
            source = FileReader(self.host.blobs.path(record.blob), start)
        except FileNotFoundError:
            log.warning("file id=%s: its blob %s is missing", record.id, record.blob)
            raise Refused(404, "Not found") from None
        self.http.stream(status, headers, length, source)

    # ------------------------------------------------------------------ delete

    async def _delete(self, file_id: str) -> None:
        host = self.host
        files = host.files
        record = files.records.get(file_id)
        if record is None:
            raise Refused(404, "Not found")
        who = await host.principal(self.headers, self.http.ip, spend=False)
        if who is None:
            raise Refused(401, "Log in to delete files", _challenge())
        if record.deleted:
            raise Refused(410, "This file was deleted")
        server = host.shell.server
        is_oper = who.account is not None and any(
            c.oper for c in server.accounts.sessions.get(who.account, ())
        )
        if not is_oper and (who.account is None or who.account != record.owner):
            raise Refused(403, "Only its owner or an operator may delete a file")
        host.delete(record)
        self._answer(204, b"")


def _tags(header: str) -> list[str]:
    return [tag.strip() for tag in header.split(",") if tag.strip()]
