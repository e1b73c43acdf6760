"""IRC over WebSocket on the HTTP listener, against a real server process on loopback,
with the ``websockets`` library's own client."""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port, irc_user
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import CloseCode
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def web(make_salon: Any) -> Any:
    """A server with its HTTP listener on a free port (``web.http_port``)."""
    return make_salon(listen={"http_port": free_port()})


@pytest.fixture
def ws_client(web: Any) -> Iterator[Any]:
    with contextlib.ExitStack() as opened:

        def factory(subprotocols: list[str] | None = None, path: str = "/") -> ClientConnection:
            return opened.enter_context(
                ws_connect(
                    f"ws://127.0.0.1:{web.http_port}{path}",
                    subprotocols=subprotocols,
                    open_timeout=5,
                )
            )

        yield factory


def recv_until(conn: ClientConnection, needle: str, timeout: float = 5.0) -> list[str | bytes]:
    """Messages received until one containing ``needle``, that one included."""
    got: list[str | bytes] = []
    while True:
        msg = conn.recv(timeout=timeout)
        got.append(msg)
        text = msg.decode() if isinstance(msg, bytes) else msg
        if needle in text:
            return got


def register(conn: ClientConnection, nick: str, binary: bool = False) -> list[str | bytes]:
    for line in (f"NICK {nick}", f"USER {nick} 0 * :web user"):
        conn.send(line.encode() if binary else line)
    return recv_until(conn, " 376 ")


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        (["binary.ircv3.net"], "binary.ircv3.net"),
        (["text.ircv3.net"], "text.ircv3.net"),
        (["binary.ircv3.net", "text.ircv3.net"], "binary.ircv3.net"),
        (["text.ircv3.net", "binary.ircv3.net"], "text.ircv3.net"),
        (["x.example", "text.ircv3.net"], "text.ircv3.net"),
        (None, None),
    ],
)
def test_subprotocol_follows_the_clients_order(
    web: Any, ws_client: Any, connect: Any, offered: list[str] | None, chosen: str | None
) -> None:
    tcp = irc_user(connect, web.irc_port, "tcp")
    conn = ws_client(offered)
    assert conn.subprotocol == chosen
    binary = chosen == "binary.ircv3.net"
    welcome = register(conn, "web", binary)
    # Binary frames for binary.ircv3.net; text frames otherwise (no subprotocol included).
    assert all(isinstance(m, bytes if binary else str) for m in welcome)
    # One IRC line per message, without CR LF.
    assert all(
        not (m.endswith(b"\n") if isinstance(m, bytes) else m.endswith("\n")) for m in welcome
    )
    conn.send(b"PRIVMSG tcp :hello from the web" if binary else "PRIVMSG tcp :hello from the web")
    tcp.expect(r"^:web!\S+ PRIVMSG tcp :hello from the web$")
    tcp.send("PRIVMSG web :hi, browser")
    got = recv_until(conn, "hi, browser")[-1]
    text = got.decode() if isinstance(got, bytes) else got
    assert text.startswith(":tcp!") and text.endswith("PRIVMSG web :hi, browser")


def test_web_and_tcp_users_share_a_channel(web: Any, ws_client: Any, connect: Any) -> None:
    tcp = irc_user(connect, web.irc_port, "tcp", "#lobby")
    conn = ws_client(["text.ircv3.net"])
    register(conn, "web")
    conn.send("JOIN #lobby")
    names = recv_until(conn, " 366 ")
    assert any(" 353 " in str(m) and "tcp" in str(m) for m in names)
    tcp.expect(r"^:web!\S+ JOIN #lobby")
    conn.send("PRIVMSG #lobby :ça marche ✓")
    tcp.expect(r"^:web!\S+ PRIVMSG #lobby :ça marche ✓$")
    conn.close()  # a clean WebSocket close: the others see the user leave
    tcp.expect(r"^:web!\S+ QUIT :")


def test_fragments_pings_and_crlf(web: Any, ws_client: Any, connect: Any) -> None:
    tcp = irc_user(connect, web.irc_port, "tcp")
    conn = ws_client(["binary.ircv3.net"])
    register(conn, "web", binary=True)
    # A message in three frames is one line.
    conn.send([b"PRIVMSG tcp :one ", b"line in ", b"three frames"])
    tcp.expect(r"PRIVMSG tcp :one line in three frames$")
    # A client that ends its message with CR LF anyway is not refused for it.
    conn.send(b"PRIVMSG tcp :with crlf\r\n")
    tcp.expect(r"PRIVMSG tcp :with crlf$")
    # WebSocket pings are answered (by the protocol), IRC PINGs too.
    assert conn.ping(b"x").wait(5)
    conn.send(b"PING :irc")
    assert recv_until(conn, "PONG")[-1] == b":test.salon PONG test.salon irc"


def test_bad_input_gets_irc_errors_then_a_close(web: Any, ws_client: Any) -> None:
    conn = ws_client(["text.ircv3.net"])
    register(conn, "web")
    # Not UTF-8 (a binary frame on a text connection): refused with FAIL, not relayed.
    conn.send(b"PRIVMSG web :caf\xe9")
    assert "FAIL PRIVMSG INVALID_UTF8" in str(recv_until(conn, "INVALID_UTF8")[-1])
    # Over 512 bytes: 417, as on TCP (the message limit is 510 bytes plus CR LF).
    conn.send("PRIVMSG web :" + "x" * 600)
    assert " 417 web " in str(recv_until(conn, " 417 ")[-1])
    # Far over what a line with tags may be: the WebSocket is closed (1009).
    conn.send("PRIVMSG web :" + "x" * 10_000)
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            conn.recv(timeout=5)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == CloseCode.MESSAGE_TOO_BIG


def test_quit_and_shutdown_close_the_websocket(web: Any, ws_client: Any) -> None:
    conn = ws_client(["text.ircv3.net"])
    register(conn, "web")
    conn.send("QUIT :bye now")
    got = recv_until(conn, "ERROR")
    assert "Quit: bye now" in str(got[-1])
    with pytest.raises(ConnectionClosed) as closed:
        conn.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == CloseCode.NORMAL_CLOSURE

    other = ws_client(["text.ircv3.net"])
    register(other, "other")
    web.proc.send_signal(signal.SIGTERM)
    assert "ERROR" in str(recv_until(other, "ERROR")[-1])
    with pytest.raises(ConnectionClosed):
        other.recv(timeout=5)
    assert web.proc.wait(10) == 0
    assert "Traceback" not in web.log()


def http(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        # The server keeps a connection open for more requests (keep-alive): say there
        # are none, and it closes once it has answered.
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_plain_http_gets_a_page_or_an_error(web: Any) -> None:
    page = http(web.http_port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = page.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"text/html" in head
    assert b"test.salon" in body and f"port {web.irc_port}".encode() in body
    # The login form proposes the server's default channel (server.default_channel).
    assert b'id="channels" name="channels" spellcheck="false" value="#lobby"' in body
    # The web client: its page, script and style, under a policy that allows no other
    # script, style or connection than the server's own.
    assert b"Content-Security-Policy: default-src 'none'; script-src 'self'" in head
    assert b'<script type="module" src="/app.js"' in body
    assets = (
        ("/app.js", b"text/javascript"),
        ("/irc.js", b"text/javascript"),
        ("/state.js", b"text/javascript"),
        ("/view.js", b"text/javascript"),
        ("/sw.js", b"text/javascript"),
        ("/app.css", b"text/css"),
        ("/manifest.webmanifest", b"application/manifest+json"),
        ("/icon-192.png", b"image/png"),
        ("/icon-512.png", b"image/png"),
    )
    for path, kind in assets:
        asset = http(web.http_port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        asset_head, _, asset_body = asset.partition(b"\r\n\r\n")
        assert asset_head.startswith(b"HTTP/1.1 200 OK") and kind in asset_head, path
        assert b"X-Content-Type-Options: nosniff" in asset_head
        assert len(asset_body) > 500, path
    assert http(web.http_port, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n").startswith(
        b"HTTP/1.1 404 "
    )
    head = http(web.http_port, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n")  # no body
    post = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    assert http(web.http_port, post).startswith(b"HTTP/1.1 405 ")
    # A WebSocket upgrade without its key, and garbage: an HTTP error, then closed.
    bad = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    assert http(web.http_port, bad).startswith(b"HTTP/1.1 400 ")
    http(web.http_port, b"\x16\x03\x01 not http at all\r\n\r\n")
    # The server is still fine, and said nothing alarming.
    assert http(web.http_port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 200 ")
    # RFC 9112 3.2: "A server MUST respond with a 400 (Bad Request) status code to any
    # HTTP/1.1 request message that lacks a Host header field".
    assert http(web.http_port, b"GET / HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    log = web.log()
    assert "Traceback" not in log and "ERROR" not in log
    assert "websockets" not in log  # its INFO line per connection is not the server log's


def test_every_front_door_proposes_the_configured_default_channel(
    make_salon: Any, connect: Any
) -> None:
    """server.default_channel, set once: the page's login form proposes it (escaped as an
    attribute value, and not taken for one of the page's own fields), IRC clients are told
    it in ISUPPORT, and the plain-text port puts its users there."""
    chan = "#\"x'<b>&{{ports}}"
    s = make_salon(server={"default_channel": chan}, listen={"http_port": free_port()})
    head, _, body = http(s.http_port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    escaped = b"#&quot;x&#x27;&lt;b&gt;&amp;{{ports}}"
    assert b'value="' + escaped + b'" placeholder="' + escaped + b'"' in body
    assert chan.encode() not in body and body.count(b"<li>") == 3  # IRC, plain-text, HTTP
    tcp = irc_user(connect, s.irc_port, "tcp")
    tcp.send("VERSION")
    tcp.expect(r" 005 tcp .*salon\.chat/DEFAULTCHANNEL=#\"x'<b>&\{\{ports\}\} ")
    pat = connect(s.plain_port)
    pat.expect(r"^Your name:")
    pat.send("pat")
    pat.expect(r"^\* You are now in #\"x'<b>&\{\{ports\}\}$")


@pytest.mark.parametrize("trusted", [True, False])
def test_a_trusted_proxy_gives_the_clients_address(
    make_salon: Any, connect: Any, trusted: bool
) -> None:
    """Behind a reverse proxy every web user would come from the proxy's address, with
    one cloak and one ban for all: a trusted proxy's X-Forwarded-For names the user."""
    proxies = ["127.0.0.0/8"] if trusted else []
    s = make_salon(listen={"http_port": free_port(), "http_proxies": proxies})
    port = s.http_port
    tcp = irc_user(connect, s.irc_port, "tcp")
    headers = {"X-Forwarded-For": "198.51.100.7, 203.0.113.9", "X-Forwarded-Proto": "https"}
    with ws_connect(
        f"ws://127.0.0.1:{port}/",
        subprotocols=["text.ircv3.net"],
        additional_headers=headers,
    ) as conn:
        register(conn, "web")
        tcp.send("WHOIS web")
        host = "203.0.113.9" if trusted else "127.0.0.1"
        tcp.expect(rf" 311 tcp web web {re.escape(host)} ")
        whois = []
        while " 318 " not in (line := tcp.readline()):
            whois.append(line)
        assert any(" 671 tcp web " in line for line in whois) == trusted  # secure connection
    # A header that is not an address: the proxy's own address is kept.
    with ws_connect(
        f"ws://127.0.0.1:{port}/", additional_headers={"X-Forwarded-For": "nonsense"}
    ) as conn:
        register(conn, "web2")
        tcp.send("WHOIS web2")
        tcp.expect(r" 311 tcp web2 web2 127\.0\.0\.1 ")
    # An IPv6 zone is free text (spaces too), never a client's: the proxy's address again.
    # An IPv4-mapped address is the IPv4 one.
    for nick, forwarded, host in (
        ("web3", "fe80::1%x KICK #x victim", "127.0.0.1"),
        ("web4", "::ffff:10.1.2.3", "10.1.2.3" if trusted else "127.0.0.1"),
    ):
        with ws_connect(
            f"ws://127.0.0.1:{port}/", additional_headers={"X-Forwarded-For": forwarded}
        ) as conn:
            register(conn, nick)
            tcp.send(f"WHOIS {nick}")
            tcp.expect(rf" 311 tcp {nick} {nick} {re.escape(host)} ")
    assert "Traceback" not in s.log()


def test_wss_on_the_https_port(make_salon: Any, connect: Any) -> None:
    """IRC over WebSocket with TLS (listen.https_port), here with the self-signed
    certificate: the user's connection counts as secure (WHOIS 671)."""
    s = make_salon(listen={"https_port": free_port()})
    port = s.https_port
    tcp = irc_user(connect, s.irc_port, "tcp")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # self-signed
    url = f"wss://127.0.0.1:{port}/"
    with ws_connect(url, ssl=context, subprotocols=["text.ircv3.net"]) as conn:
        register(conn, "sec")
        conn.send("PRIVMSG tcp :over tls")
        tcp.expect(r"^:sec!\S+ PRIVMSG tcp :over tls$")
        tcp.send("WHOIS sec")
        tcp.expect(r" 671 tcp sec ")
    # The page over HTTPS names the wss:// port (the plain HTTP one is off here).
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    with context.wrap_socket(raw) as tls:
        tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        page = b""
        while chunk := tls.recv(65536):
            page += chunk
    assert page.startswith(b"HTTP/1.1 200 ")
    assert f"(wss://): port {port}".encode() in page and b"(ws://" not in page


def test_only_the_configured_web_origins_may_connect(make_salon: Any) -> None:
    """listen.http_origins: a page from elsewhere cannot make its visitors' browsers
    connect (HTTP 403); clients that are not browsers send no Origin and get in."""
    s = make_salon(listen={"http_port": free_port(), "http_origins": ["https://chat.example.org"]})
    url = f"ws://127.0.0.1:{s.http_port}/"
    with ws_connect(url, origin="https://chat.example.org") as conn:
        register(conn, "good")
    with ws_connect(url) as conn:  # no Origin header at all
        register(conn, "bot")
    with pytest.raises(InvalidStatus) as refused:
        ws_connect(url, origin="https://evil.example")
    assert refused.value.response.status_code == 403


def test_a_bad_origin_list_is_a_config_error(tmp_path: Path) -> None:
    from salon.config import ConfigError, load

    path = tmp_path / "salon.toml"
    path.write_text('[listen]\nhttp_origins = ["chat.example.org/path"]\n')
    with pytest.raises(ConfigError, match="is not an origin"):
        load(str(path))


def raw_websocket(port: int, rcvbuf: int) -> socket.socket:
    """A WebSocket opened by hand on a socket with a tiny receive buffer, never read."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Protocol: binary.ircv3.net\r\n\r\n"
    )
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 101 "), answer
    return sock


def masked(payload: bytes) -> bytes:
    """One client frame (binary, final, masked with a zero key: RFC 6455 allows any)."""
    assert len(payload) < 126
    return bytes([0x82, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


def test_a_web_client_that_never_reads_is_dropped(make_salon: Any, connect: Any) -> None:
    """SendQ applies to WebSocket users too: what the socket will not take waits in the
    transport, and past limits.sendq the user is dropped; the others are served on. The
    SendQ is larger than what one read of the flooder's input can make in one turn, so
    the limit that acts is the one on the transport's buffer, behind the WebSocket."""
    s = make_salon(
        listen={"http_port": free_port()}, limits={"sendq": 1 << 20}, history={"enabled": False}
    )
    port = s.http_port
    flooder = irc_user(connect, s.irc_port, "flooder", "#flood")  # gets no echo of its own
    slow = raw_websocket(port, rcvbuf=4096)
    slow.sendall(masked(b"NICK slow") + masked(b"USER slow 0 * :slow") + masked(b"JOIN #flood"))
    flooder.expect(r"^:slow!\S+ JOIN #flood")
    line = b"PRIVMSG #flood :" + b"F" * 400 + b"\r\n"
    for _ in range(400):  # up to 17 MB: more than the kernel's buffers and the SendQ hold
        flooder.sock.sendall(line * 100)
        if any(" QUIT " in seen for seen in flooder.read_all(0.01)):
            break
    else:
        flooder.expect(r" QUIT ")
    assert [seen for seen in flooder.lines if " QUIT " in seen] == [
        ":slow!slow@127.0.0.1 QUIT :SendQ exceeded"
    ]
    slow.close()
    flooder.send("PING :alive")
    flooder.expect(r"PONG \S+ :?alive")
    assert "Traceback" not in s.log()


def test_a_ping_flood_is_dropped_by_the_sendq(make_salon: Any, connect: Any) -> None:
    """The protocol answers every WebSocket ping with a pong by itself: a client that
    pings without reading is dropped once the pongs pass the SendQ, instead of the
    server buffering them without bound."""
    s = make_salon(listen={"http_port": free_port()}, limits={"sendq": 65536})
    observer = irc_user(connect, s.irc_port, "observer", "#c")
    pinger = raw_websocket(s.http_port, rcvbuf=4096)
    pinger.sendall(masked(b"NICK pinger") + masked(b"USER p 0 * :p") + masked(b"JOIN #c"))
    observer.expect(r"^:pinger!\S+ JOIN #c")
    ping = bytes([0x89, 0x80 | 125]) + b"\0\0\0\0" + b"p" * 125
    sent = 0
    try:
        for _ in range(400):  # up to 52 MB of pongs to answer
            pinger.sendall(ping * 1000)
            sent += 1
            if any(" QUIT " in seen for seen in observer.read_all(0.01)):
                break
    except OSError:
        pass  # the server closed the connection under the flood
    if not any(" QUIT " in seen for seen in observer.lines):
        observer.expect(r"^:pinger!\S+ QUIT ")
    assert [seen for seen in observer.lines if " QUIT " in seen] == [
        ":pinger!p@127.0.0.1 QUIT :SendQ exceeded"
    ]
    assert sent < 400
    pinger.close()
    assert "Traceback" not in s.log()


def test_unfinished_handshakes_count_against_the_address(make_salon: Any, connect: Any) -> None:
    """Connection limits apply from the accept on the HTTP port too: one address cannot
    hold descriptors with handshakes it never finishes (they are cut at 15 s anyway)."""
    s = make_salon(
        listen={"http_port": free_port()},
        connections={"max_per_ip": 3, "throttle": 0, "exempt": []},
    )
    time.sleep(0.5)  # until the start-up probes of the ports have been seen to close
    idle = [socket.create_connection(("127.0.0.1", s.http_port), timeout=5) for _ in range(3)]
    refused = http(s.http_port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert refused.startswith(b"HTTP/1.1 429 "), refused
    assert b"connections" in refused.lower()
    # They are counted with the address's IRC connections, once each.
    irc = socket.create_connection(("127.0.0.1", s.irc_port), timeout=5)
    assert b"ERROR :Closing Link" in irc.recv(4096)
    idle[0].close()
    for _ in range(50):  # the server sees the close
        page = http(s.http_port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        if page.startswith(b"HTTP/1.1 200 "):
            break
    assert page.startswith(b"HTTP/1.1 200 ")
    # A WebSocket client is counted once, not once at the accept and again after the 101.
    idle[1].close()
    with ws_connect(f"ws://127.0.0.1:{s.http_port}/") as conn:
        register(conn, "web")
    for sock in (*idle, irc):
        sock.close()


def test_bytes_behind_a_plain_request_do_not_lose_the_answer(web: Any) -> None:
    """Requests sent one behind the other on a kept-alive connection get their answers in
    order; bytes behind them that are not a request get a 400, after those answers."""
    for request, statuses in (
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\r\n", [b"200", b"400"]),
        (
            b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
            [b"404", b"200"],
        ),
        (b"POST / HTTP/1.1\r\nHost: x\r\n\r\nab", [b"405", b"400"]),
    ):
        answer = http(web.http_port, request)
        assert re.findall(rb"HTTP/1.1 (\d+) ", answer) == statuses, answer
    # A bad frame right behind the handshake: the connection is closed, quietly.
    bad = (
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        b"\x81\x05hello"  # unmasked
    )
    http(web.http_port, bad)
    log = web.log()
    assert "Traceback" not in log and "ERROR" not in log
