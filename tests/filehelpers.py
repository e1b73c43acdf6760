"""Helpers for the file host's tests: a server with files on, accounts, and HTTP requests
made with the standard library's client (a real socket to a real server process)."""

from __future__ import annotations

import base64
import http.client
import re
import socket
import sqlite3
import threading
from pathlib import Path
from typing import Any

from conftest import LineClient, free_port

PASSWORD = "sesame"
URL = re.compile(r"http://127\.0\.0\.1:\d+/f/[a-z2-7]{26}/\S*")


def files_salon(make_salon: Any, **sections: Any) -> Any:
    """A server whose HTTP listener hosts files, announced at its own loopback URL."""
    port = free_port()
    files = {"public_url": f"http://127.0.0.1:{port}", "min_free": 0, "min_free_percent": 0.0}
    files.update(sections.pop("files", {}))
    accounts = {"password_min_length": 4, "registration_throttle": 0}
    accounts.update(sections.pop("accounts", {}))
    listen = {"http_port": port, **sections.pop("listen", {})}
    return make_salon(listen=listen, accounts=accounts, files=files, **sections)


def account(connect: Any, s: Any, nick: str, *channels: str) -> LineClient:
    """A connected user, registered as an account of its nick and logged in."""
    c: LineClient = connect(s.irc_port)
    c.register(nick)
    c.send(f"REGISTER * * :{PASSWORD}")
    c.expect(rf"REGISTER SUCCESS {nick}")
    for chan in channels:
        c.send(f"JOIN {chan}")
        c.expect(rf" 366 {nick} {chan} ")
    return c


def basic(user: str, password: str = PASSWORD) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


class Answer:
    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.headers = response.headers
        self.body = response.read()

    def header(self, name: str) -> str:
        return self.headers.get(name) or ""


def request(
    s: Any,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    conn = http.client.HTTPConnection("127.0.0.1", s.http_port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        return Answer(conn.getresponse())
    finally:
        conn.close()


def upload(
    s: Any,
    data: bytes,
    name: str = "file.bin",
    auth: dict[str, str] | None = None,
    content_type: str = "application/octet-stream",
) -> Answer:
    headers = {
        "Content-Type": content_type,
        "Content-Disposition": f"attachment; filename*=UTF-8''{_quote(name)}",
        **(auth or {}),
    }
    return request(s, "POST", "/upload", data, headers)


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def stored_blobs(s: Any) -> list[Path]:
    """Every blob under the data directory, and whatever is left in its tmp/."""
    root = Path(s.data_dir) / "files"
    return sorted(p for p in root.rglob("*") if p.is_file())


def file_rows(s: Any) -> int:
    with sqlite3.connect(Path(s.data_dir) / "salon.db") as db:
        return int(db.execute("SELECT COUNT(*) FROM files").fetchone()[0])


class StallingHost:
    """A file host on loopback that reads the first bytes of one upload, then stops reading,
    as a stalled transfer does; ``drain()`` then reads on to tell whether the client cut the
    connection."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.started = threading.Event()
        self._drain = threading.Event()
        self.cut = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.recv(65536)
            self.started.set()
            self._drain.wait(30)
            conn.settimeout(10)
            try:
                while conn.recv(1 << 20):
                    pass
                self.cut.set()  # the end of the stream
            except TimeoutError:
                pass  # the client still holds it open
            except OSError:
                self.cut.set()  # reset

    def drain(self) -> bool:
        """Read what is left: whether the client closed the connection (not a timeout)."""
        self._drain.set()
        return self.cut.wait(10)

    def close(self) -> None:
        self._drain.set()
        self.sock.close()
        self.thread.join(15)
