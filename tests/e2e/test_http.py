"""Plain HTTP on the HTTP listener (h11 in front of the WebSocket protocol): keep-alive,
requests that smuggle or are malformed, and the per-address request budget, against a
real server process over real sockets."""

from __future__ import annotations

import re
import socket
import time
from typing import Any

import h11
import pytest
from conftest import free_port, irc_user
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

pytestmark = pytest.mark.timeout(60)

GET = b"GET /app.css HTTP/1.1\r\nHost: x\r\n\r\n"


def read_response(sock: socket.socket, client: h11.Connection) -> tuple[h11.Response, bytes]:
    """One whole response, read with h11's client side."""
    response: h11.Response | None = None
    body = b""
    while True:
        event = client.next_event()
        if event is h11.NEED_DATA:
            client.receive_data(sock.recv(65536))
        elif isinstance(event, h11.Response):
            response = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert response is not None
            return response, body
        else:
            raise AssertionError(f"unexpected {event!r}")


def until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_fifty_gets_over_one_connection(make_salon: Any) -> None:
    s = make_salon(listen={"http_port": free_port()})
    with socket.create_connection(("127.0.0.1", s.http_port), timeout=5) as sock:
        client = h11.Connection(h11.CLIENT)
        for i in range(50):
            path = "/" if i % 2 else "/app.js"
            request = h11.Request(method="GET", target=path, headers=[("Host", "x")])
            sock.sendall(client.send(request) + client.send(h11.EndOfMessage()))
            response, body = read_response(sock, client)
            assert response.status_code == 200, i
            assert dict(response.headers).get(b"connection") != b"close"
            assert len(body) > 1000
            client.start_next_cycle()
    # Pipelined: three requests in one write, three answers in order.
    with socket.create_connection(("127.0.0.1", s.http_port), timeout=5) as sock:
        last = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        sock.sendall(GET + b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n" + last)
        answer = until_closed(sock)
    assert re.findall(rb"HTTP/1.1 (\d+) ", answer) == [b"200", b"404", b"200"]
    assert "Traceback" not in s.log()


SMUGGLED = {
    "CL and TE": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "two Content-Lengths": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
    b"Content-Length: 6\r\n\r\nabcdef",
    "Content-Length +5": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nabcde",
    "Content-Length 1_0": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1_0\r\n\r\n" + b"a" * 10,
    "Arabic digits": "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: \u0665\r\n\r\nabcde".encode(),
    "chunk size 0x5": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"0x5\r\nabcde\r\n0\r\n\r\n",
    "LF-only chunk lines": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\nabcde\n0\n\n",
    "LF-only last chunk": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nabcde\r\n0\n\n",
    "obs-fold": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
    "LF-only head": b"GET / HTTP/1.1\nHost: x\n\n",
    "LF-only head, second request": GET + b"GET / HTTP/1.1\nHost: x\n\n",
}


@pytest.mark.parametrize("request_bytes", SMUGGLED.values(), ids=SMUGGLED.keys())
def test_smuggling_gets_400_and_a_close(make_salon: Any, request_bytes: bytes) -> None:
    s = make_salon(listen={"http_port": free_port()})
    with socket.create_connection(("127.0.0.1", s.http_port), timeout=5) as sock:
        sock.sendall(request_bytes)
        answer = until_closed(sock)  # closed by the server, or the read times out
    statuses = re.findall(rb"HTTP/1.1 (\d+) ", answer)
    assert statuses[-1:] == [b"400"], answer
    # Nothing was answered from what followed the bad part (a smuggled request).
    assert statuses.count(b"400") == 1 and len(statuses) <= 2, answer
    assert b"Connection: close" in answer
    assert "Traceback" not in s.log()


def test_page_reloads_do_not_use_up_the_irc_throttle(make_salon: Any, connect: Any) -> None:
    """Plain requests spend the address's request budget (429 with Retry-After once it is
    empty), never its throttle of new connections; WebSocket upgrades count there."""
    s = make_salon(
        listen={"http_port": free_port(), "http_request_burst": 30, "http_request_rate": 0.01},
        connections={"throttle": 4, "exempt": []},
    )
    time.sleep(0.5)  # until the start-up probes of the ports have been seen to close
    # 10 reloads of the page, each on a new connection: 3 requests each.
    for _ in range(10):
        with socket.create_connection(("127.0.0.1", s.http_port), timeout=5) as sock:
            sock.sendall(
                b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /app.js HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /app.css HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            answer = until_closed(sock)
        assert re.findall(rb"HTTP/1.1 (\d+) ", answer) == [b"200"] * 3
    with socket.create_connection(("127.0.0.1", s.http_port), timeout=5) as sock:
        sock.sendall(GET)
        refused = until_closed(sock)
    assert refused.startswith(b"HTTP/1.1 429 "), refused
    assert re.search(rb"\r\nRetry-After: \d+\r\n", refused)
    # The same address still gets on IRC, and over WebSocket until the throttle (which
    # counted the start-up probe of the IRC port too) is used up.
    irc_user(connect, s.irc_port, "tcp")
    opened = 0
    with pytest.raises(InvalidStatus) as refusal:
        for _ in range(3):
            with ws_connect(f"ws://127.0.0.1:{s.http_port}/", open_timeout=5):
                opened += 1
    assert refusal.value.response.status_code == 429
    assert 1 <= opened < 3
    assert "Traceback" not in s.log()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("http_request_burst = -1", "http_request_burst: out of range"),
        ("http_request_rate = 0", "http_request_rate: must be positive"),
        ('http_request_rate = "fast"', "http_request_rate"),
    ],
)
def test_a_bad_request_budget_is_a_config_error(tmp_path: Any, text: str, message: str) -> None:
    from salon.config import ConfigError, load

    path = tmp_path / "salon.toml"
    path.write_text(f"[listen]\n{text}\n")
    with pytest.raises(ConfigError, match=message):
        load(str(path))
