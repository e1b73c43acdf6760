"""/upload's transfer (soju.im/FILEHOST): the file is POSTed to the server's file host with
the standard library's HTTP client, in a worker thread, reporting its progress. The session
(salon.client.slash.upload) decided where and with which credentials."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from salon.client.model import UploadRequested

BLOCK = 65536
TIMEOUT = 60.0  # seconds without progress

Progress = Callable[[int, int], None]  # (bytes sent, total)


class UploadError(Exception):
    """Why an upload failed, in one line for the user."""


class Cancelled(UploadError):
    pass


class Cancel:
    """/upload cancel, from the front end's thread: the transfer reads no further block,
    and a transfer blocked on its socket (a host that stopped reading, or has not answered
    yet) is cut at once rather than after TIMEOUT."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._conn: http.client.HTTPConnection | None = None

    def is_set(self) -> bool:
        return self._event.is_set()

    def set(self) -> None:
        with self._lock:
            self._event.set()
            sock = self._conn.sock if self._conn is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def watch(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._conn = conn


class _Body:
    """The file, read by http.client block by block: each block reports progress, and a
    cancel stops the transfer."""

    def __init__(self, fh: BinaryIO, total: int, progress: Progress, cancel: Cancel):
        self.fh, self.total, self.progress, self.cancel = fh, total, progress, cancel
        self.sent = 0

    def read(self, size: int = BLOCK) -> bytes:
        if self.cancel.is_set():
            raise Cancelled("upload cancelled")
        data = self.fh.read(min(size, BLOCK))
        self.sent += len(data)
        self.progress(self.sent, self.total)
        return data


def send_file(
    request: UploadRequested,
    progress: Progress = lambda sent, total: None,
    cancel: Cancel | None = None,
) -> tuple[str, int]:
    """Upload ``request.path``; the file's URL and size, or UploadError."""
    path = Path(os.path.expanduser(request.path))
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise UploadError(f"cannot read {path}: {exc.strerror or exc}") from None
    with fh:
        size = os.fstat(fh.fileno()).st_size
        url = urllib.parse.urlsplit(request.url)
        if url.scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                url.netloc, timeout=TIMEOUT, context=ssl.create_default_context()
            )
        elif url.scheme == "http":
            conn = http.client.HTTPConnection(url.netloc, timeout=TIMEOUT)
        else:
            raise UploadError(f"the file host {request.url} is not an http(s) URL")
        name = urllib.parse.quote(path.name, safe="")
        headers = {
            "Authorization": request.authorization,
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f"attachment; filename*=UTF-8''{name}",
            "Content-Length": str(size),
        }
        cancel = cancel or Cancel()
        cancel.watch(conn)
        body = _Body(fh, size, progress, cancel)
        try:
            conn.request("POST", url.path or "/", body=body, headers=headers)
            response = conn.getresponse()
            answer = response.read(65536)
        except Cancelled:
            raise
        except (OSError, http.client.HTTPException) as exc:
            if cancel.is_set():  # the socket cut by Cancel.set
                raise Cancelled("upload cancelled") from None
            raise UploadError(f"upload failed: {exc}") from None
        finally:
            conn.close()
    if response.status == 201:
        location = response.getheader("Location") or _json_url(answer)
        if location:
            return location, size
        raise UploadError("the file host answered without the file's URL")
    raise UploadError(_refusal(response, answer))


def _json_url(answer: bytes) -> str:
    try:
        url = json.loads(answer).get("url", "")
    except (ValueError, AttributeError):
        return ""
    return url if isinstance(url, str) else ""


def _refusal(response: http.client.HTTPResponse, answer: bytes) -> str:
    status = response.status
    said = answer.decode("utf-8", "replace").strip().splitlines()
    detail = said[0][:200] if said else response.reason
    if status in (401, 403):
        return f"log in to share files ({detail})"
    if status == 413:
        limit = re.search(r"maxsize=(\d+)", response.getheader("Upload-Limit") or "")
        if limit:
            return f"the file is over the server's limit of {int(limit.group(1)) >> 20} MB"
        return "the file is too large for the server"
    if status == 429:
        return f"too many uploads: try again in {response.getheader('Retry-After') or 'a while'} s"
    return f"the file host refused the upload: {status} {detail}"
