"""tests/roundrobin.py, the forwarder of the irctest controller's two-node mode: alternate
connections reach alternate targets, bytes pass both ways, and a target's close reaches
the client."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from roundrobin import RoundRobin


class Target:
    """A loopback server that greets each connection with its name, echoes one line, and
    closes the connection after it."""

    def __init__(self, name: bytes) -> None:
        self.name = name
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.sendall(self.name + b"\n")
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(100)
                    if not chunk:
                        break
                    data += chunk
                conn.sendall(self.name + b":" + data)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def targets() -> Iterator[list[Target]]:
    made = [Target(b"A"), Target(b"B")]
    yield made
    for target in made:
        target.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(100):
        data += chunk
    return data


def test_connections_alternate_between_targets(targets: list[Target]) -> None:
    port = free_port()
    forwarder = RoundRobin([("127.0.0.1", port, [("127.0.0.1", t.port) for t in targets])]).start()
    try:
        seen = []
        for i in range(5):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                c.sendall(b"line %d\n" % i)
                # The target's greeting, its echo, then end-of-file when it closes.
                seen.append(read_all(c))
        assert seen == [
            b"A\nA:line 0\n",
            b"B\nB:line 1\n",
            b"A\nA:line 2\n",
            b"B\nB:line 3\n",
            b"A\nA:line 4\n",
        ]
    finally:
        forwarder.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_two_listeners_share_one_count(targets: list[Target]) -> None:
    """The WebSocket port and the IRC port of the two-node mode take turns together."""
    first, second = free_port(), free_port()
    to = [("127.0.0.1", t.port) for t in targets]
    forwarder = RoundRobin([("127.0.0.1", first, to), ("127.0.0.1", second, to)]).start()
    try:
        greetings = []
        for port in (first, second, second, first):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                c.sendall(b"x\n")
                greetings.append(read_all(c)[:1])
        assert greetings == [b"A", b"B", b"A", b"B"]
        assert [port for port, _target in forwarder.routed] == [first, second, second, first]
    finally:
        forwarder.stop()
