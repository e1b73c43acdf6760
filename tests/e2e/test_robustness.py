"""Robustness over real loopback sockets: bad input, timeouts, queues, flood, shutdown, log."""

from __future__ import annotations

import errno
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import LineClient, irc_user

pytestmark = pytest.mark.timeout(40)


# ---------------------------------------------------------------------- helpers


def alive(c: LineClient, token: str = "still-here") -> None:
    """The connection still works: a PING gets its PONG."""
    c.send(f"PING {token}")
    c.expect(rf"PONG \S+ :?{token}$")


def no_traceback(log: str) -> None:
    assert "Traceback" not in log, log[-3000:]
    assert not re.search(r"\bbug\b", log), log[-3000:]


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def raw_socket(port: int, rcvbuf: int | None = None) -> socket.socket:
    s = socket.socket()
    if rcvbuf is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    return s


def read_until_closed(s: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection (or resets it)."""
    data = b""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"connection not closed; last bytes {data[-300:]!r}")
        s.settimeout(remaining)
        try:
            chunk = s.recv(1 << 20)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def wait_log(server: Any, pattern: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        log: str = server.log()
        if re.search(pattern, log, re.M):
            return log
        if time.monotonic() > deadline:
            raise AssertionError(f"{pattern!r} not in log:\n{log[-2000:]}")
        time.sleep(0.05)


# ---------------------------------------------------------------------- bad input


def test_overlong_line_gets_417_and_connection_continues(salon: Any, connect: Any) -> None:
    a = irc_user(connect, salon.irc_port, "alice", "#c")
    b = irc_user(connect, salon.irc_port, "bob", "#c")
    a.send("PRIVMSG #c :" + "x" * 600)
    a.expect(r" 417 alice :")
    alive(a, "one")
    # Longer than any legal line (tags included), but terminated: still just a 417.
    a.send("PRIVMSG #c :" + "y" * 10000)
    a.expect(r" 417 alice :")
    alive(a, "two")
    # A line that fits in 512 bytes even once relayed with the sender's prefix is fine.
    prefix = "PRIVMSG #c :"
    a.send(prefix + "z" * (510 - len(prefix) - 40))
    m = b.expect(r"PRIVMSG #c :?z")
    assert m.string.endswith("z" * 100)
    assert "x" * 100 not in "\n".join(b.lines)
    assert "y" * 100 not in "\n".join(b.lines)


def test_relayed_lines_fit_in_512_bytes(salon: Any, connect: Any) -> None:
    """RFC 1459 2.3: lines are at most 512 bytes. A message that would only fit without the
    sender's nick!user@host is refused with 417 (nothing is cut silently); one that fits
    is relayed whole."""
    a = irc_user(connect, salon.irc_port, "alice", "#c")
    b = irc_user(connect, salon.irc_port, "bob", "#c")
    prefix = "PRIVMSG #c :"
    a.send(prefix + "w" * (510 - len(prefix)))
    a.expect(r" 417 alice .*too long")
    a.send("PING done")
    a.expect(r"PONG")
    a.send("WHO alice %uh")
    user, host = a.expect(r" 354 alice (\S+) (\S+)$").groups()
    room = 510 - len(f":alice!{user}@{host} PRIVMSG #c :")
    a.send(prefix + "v" * room)
    line = b.expect(r"PRIVMSG #c :?v").string
    assert len(line.encode()) + 2 <= 512, len(line.encode()) + 2
    assert line.endswith("v" * room)


def test_invalid_utf8_is_refused_and_not_relayed(salon: Any, connect: Any) -> None:
    a = irc_user(connect, salon.irc_port, "alice", "#c")
    b = irc_user(connect, salon.irc_port, "bob", "#c")
    a.send(b"PRIVMSG #c :caf\xe9 \xff\xfe broken\r\n")
    a.expect(r"^:\S+ FAIL PRIVMSG INVALID_UTF8 ")
    a.send(b"NOTICE #c :\xc3\x28\r\n")
    a.expect(r"^:\S+ FAIL NOTICE INVALID_UTF8 ")
    a.send("PRIVMSG #c :valid after invalid")
    m = b.expect(r"PRIVMSG #c :|NOTICE #c :")
    assert m.string.endswith(":valid after invalid"), m.string
    alive(a)


def test_garbage_never_crashes_the_server(salon: Any, connect: Any) -> None:
    watcher = irc_user(connect, salon.irc_port, "watcher", "#c")
    rng = random.Random(1234)
    payloads = [
        bytes(rng.randrange(256) for _ in range(4096)),  # binary junk with stray newlines
        b":\r\n:\n: \r\n::\r\n:x\r\n",  # lone ':' lines and prefixes without command
        b"\x00\r\nNICK \x00\r\nPRIVMSG #c :\x00\r\n\x00\x00\x00\n",  # NUL bytes
        b"\r\n\n\r\n   \r\n\r\r\r\n",  # empty lines
        b"@\r\n@;;; \r\n@a=\\ PING x\r\n@" + b"t" * 9000 + b" PING x\r\n",  # odd tags
        b"A" * 100_000,  # 100 KB without a newline
        b"PRIVMSG\r\nPRIVMSG #c\r\nJOIN\r\nMODE\r\nNICK\r\nUSER\r\nCAP\r\nCAP REQ\r\n",
        b"\xff\xfe\xfd\r\n" * 50,
        # Words that cannot be echoed back as a middle parameter.
        b"NICK :a b\r\nNICK ::x\r\nWHOIS :a b\r\nJOIN :#a b\r\nPART :#a b\r\n"
        b"MODE :a b\r\nPRIVMSG :a b :hi\r\nTOPIC :#a b\r\nWHO :a b\r\nKICK #c :a b\r\n",
    ]
    for i, payload in enumerate(payloads):
        for registered in (False, True):
            c: LineClient = connect(salon.irc_port)
            if registered:
                c.register(f"junk{i}")
                c.send("JOIN #c")
            try:
                # The server may drop it half-way (RecvQ): a reset here is fine.
                c.sock.sendall(payload)
                c.sock.sendall(b"\r\nPING after\r\n")
                c.read_all(0.1)
            except OSError:
                pass
            finally:
                c.close()
    # Plain-text port gets the same.
    for payload in payloads:
        c = connect(salon.plain_port)
        try:
            c.sock.sendall(payload + b"\r\n")
            c.read_all(0.05)
        except OSError:
            pass
        finally:
            c.close()
    alive(watcher)
    fresh = irc_user(connect, salon.irc_port, "fresh", "#c")
    fresh.send("PRIVMSG #c :server is fine")
    watcher.expect(r"PRIVMSG #c :server is fine$")
    assert salon.proc.poll() is None
    no_traceback(salon.log())


def test_unterminated_line_within_recvq_keeps_the_connection(salon: Any, connect: Any) -> None:
    """A partial line arriving slowly is kept until its newline."""
    a = irc_user(connect, salon.irc_port, "alice", "#c")
    b = irc_user(connect, salon.irc_port, "bob", "#c")
    for part in (b"PRIV", b"MSG #c", b" :in ", b"pieces", b"\r", b"\n"):
        a.sock.sendall(part)
        time.sleep(0.02)
    b.expect(r"PRIVMSG #c :in pieces$")


# ---------------------------------------------------------------------- timeouts


def test_registration_and_ping_timeouts(make_salon: Any, connect: Any) -> None:
    s = make_salon(limits={"registration_timeout": 1, "ping_interval": 1, "ping_timeout": 1})
    unreg: LineClient = connect(s.irc_port)
    unreg.send("NICK never")  # starts but never finishes registering
    silent = irc_user(connect, s.irc_port, "silent")
    answering = irc_user(connect, s.irc_port, "answering")
    clients = {"unreg": unreg, "silent": silent, "answering": answering}
    closed: dict[str, list[str]] = {}
    pings = {name: 0 for name in clients}
    deadline = time.monotonic() + 6.0
    while time.monotonic() < deadline:
        if "unreg" in closed and "silent" in closed and pings["answering"] >= 2:
            break
        for name, c in clients.items():
            if name in closed:
                continue
            try:
                line = c.readline(0.05)
            except TimeoutError:
                continue
            except (ConnectionError, OSError):
                closed[name] = c.lines
                continue
            if line.startswith("PING "):
                pings[name] += 1
                if name == "answering":
                    c.send("PONG " + line.split(" ", 1)[1])
    assert "unreg" in closed, unreg.lines
    assert any(re.match(r"^ERROR :.*Registration timed out", x) for x in unreg.lines), unreg.lines
    assert "silent" in closed, silent.lines
    assert pings["silent"] >= 1
    assert any(re.match(r"^ERROR :.*Ping timeout", x) for x in silent.lines), silent.lines
    assert "answering" not in closed, answering.lines
    assert pings["answering"] >= 2
    alive(answering)
    log = wait_log(s, r"quit id=\d+ nick=silent reason=Ping timeout")
    no_traceback(log)


# ---------------------------------------------------------------------- lost connections


def reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the kernel sends an RST, the server's read gets ECONNRESET."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@pytest.mark.parametrize("port", ["irc", "plain"])
def test_a_reset_reads_as_words_in_the_quit_line(port: str, salon: Any, connect: Any) -> None:
    bob = irc_user(connect, salon.irc_port, "bob", "#lobby")
    if port == "irc":
        alice = irc_user(connect, salon.irc_port, "alice", "#lobby")
    else:
        alice = connect(salon.plain_port)
        alice.send("alice")
        alice.expect(r"^\* You are now in #lobby")
    bob.expect(r"^:alice!\S+ JOIN #lobby")
    reset(alice.sock)
    bob.expect(r"^:alice!\S+ QUIT :Read error: Connection reset by peer$")
    no_traceback(wait_log(salon, r"quit id=\d+ nick=alice reason=Read error: Connection reset"))


def test_lost_reasons_are_words_never_class_names() -> None:
    from salon.net.connection import lost_reason

    cases = {
        None: "Connection closed",
        ConnectionResetError(errno.ECONNRESET, "reset"): "Read error: Connection reset by peer",
        ConnectionResetError(): "Read error: Connection reset by peer",
        TimeoutError(errno.ETIMEDOUT, "timed out"): "Read error: Connection timed out",
        TimeoutError(): "Read error: Connection timed out",
        BrokenPipeError(errno.EPIPE, "pipe"): "Write error: Broken pipe",
        ConnectionAbortedError(): "Read error: Software caused connection abort",
        OSError(errno.EHOSTUNREACH, "x"): "Read error: No route to host",
        OSError("no errno"): "Read error: Connection lost",
        RuntimeError("not an OSError"): "Read error: Connection lost",
    }
    for exc, reason in cases.items():
        assert lost_reason(exc) == reason, exc


# ---------------------------------------------------------------------- RecvQ


def test_recvq_without_newline_drops_client(make_salon: Any, connect: Any) -> None:
    s = make_salon(limits={"recvq": 4096})
    watcher = irc_user(connect, s.irc_port, "watcher", "#c")
    a = irc_user(connect, s.irc_port, "alice", "#c")
    try:
        for _ in range(64):
            a.sock.sendall(b"B" * 1024)
    except OSError:
        pass
    data = read_until_closed(a.sock, 5)
    assert b"RecvQ exceeded" in data or b"ERROR" in data, data[-300:]
    watcher.expect(r"^:alice!\S+ QUIT :RecvQ exceeded")
    alive(watcher)


def test_recvq_default_endless_line_drops_client(salon: Any, connect: Any) -> None:
    """Default recvq (16384) is above the longest legal line (8703): still dropped."""
    watcher = irc_user(connect, salon.irc_port, "watcher", "#c")
    a = irc_user(connect, salon.irc_port, "alice", "#c")
    try:
        for _ in range(64):  # 4 MB, no newline, far beyond recvq (16384)
            a.sock.sendall(b"C" * 65536)
    except OSError:
        pass
    data = read_until_closed(a.sock, 5)
    assert b"RecvQ exceeded" in data
    watcher.expect(r"^:alice!\S+ QUIT :RecvQ exceeded")


# ---------------------------------------------------------------------- SendQ


def test_sendq_drops_a_client_that_never_reads(make_salon: Any, connect: Any) -> None:
    # History off: with it, every message waits for its commit, and flooding ~12 MB through
    # one sender would take most of the test budget (the SendQ path is the same).
    s = make_salon(limits={"sendq": 65536}, history={"enabled": False})
    port = s.irc_port
    observer = irc_user(connect, port, "observer", "#flood")
    flooder = irc_user(connect, port, "flooder", "#flood")
    # The slow client: a tiny receive buffer, registers and joins, then never reads.
    slow = raw_socket(port, rcvbuf=4096)
    slow.sendall(b"NICK slow\r\nUSER slow 0 * :slow\r\nJOIN #flood\r\n")
    observer.expect(r"^:slow!\S+ JOIN #flood")
    baseline = rss_kb(s.proc.pid)

    body = "F" * 400
    line = f"PRIVMSG #flood :{body}\r\n".encode()
    batch = 100
    total_batches = 300  # ~12.5 MB relayed to each member
    received = 0
    dropped_seen = False
    obs = observer.sock
    obs.settimeout(5)
    pending = observer.buf
    peak = baseline
    for i in range(total_batches):
        flooder.sock.sendall(line * batch)
        want = (i + 1) * batch
        while received < want:
            chunk = obs.recv(1 << 20)
            assert chunk, "observer was disconnected"
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for ln in lines:
                if b" PRIVMSG #flood " in ln:
                    received += 1
                elif b"QUIT" in ln and ln.startswith(b":slow!"):
                    assert b"SendQ exceeded" in ln, ln
                    dropped_seen = True
        if i % 50 == 0:
            peak = max(peak, rss_kb(s.proc.pid))
    peak = max(peak, rss_kb(s.proc.pid))
    assert received == total_batches * batch
    assert dropped_seen, "the slow client was not dropped"
    growth_mb = (peak - baseline) / 1024
    print(f"RSS baseline {baseline} kB, peak {peak} kB, growth {growth_mb:.1f} MB")
    assert growth_mb < 50
    # Whatever the slow client reads now ends with the ERROR, or the socket was cut.
    try:
        data = read_until_closed(slow, 8)
    except OSError:
        data = b""
    if b"ERROR" in data:
        assert re.search(rb"ERROR :[^\r\n]*SendQ exceeded", data), data[-300:]
    slow.close()
    alive(flooder)
    alive(observer)
    no_traceback(s.log())


# ---------------------------------------------------------------------- flood control


def test_flood_control_throttles_then_drops(make_salon: Any, connect: Any) -> None:
    s = make_salon(flood={"enabled": True, "rate": 1.0, "burst": 5})
    b = irc_user(connect, s.irc_port, "bob", "#f")
    a = irc_user(connect, s.irc_port, "alice", "#f")
    b.expect(r"JOIN #f")
    time.sleep(1.0)  # let alice's bucket refill after registering and joining
    a.sock.sendall(b"".join(f"PRIVMSG #f :msg {i}\r\n".encode() for i in range(30)))
    t0 = time.monotonic()
    got = []
    while time.monotonic() - t0 < 1.0:
        try:
            line = b.readline(max(0.01, 1.0 - (time.monotonic() - t0)))
        except TimeoutError:
            break
        if "PRIVMSG #f :msg " in line:
            got.append(line)
    assert 3 <= len(got) < 15, got  # the burst, then one a second; not all 30
    # Throttled lines keep coming at the bucket's pace, in order.
    b.expect(r"PRIVMSG #f :msg " + str(len(got)) + "$", timeout=3)
    # Far more than RecvQ (16384 bytes) while throttled: dropped with "Excess Flood".
    try:
        a.sock.sendall((b"PRIVMSG #f :" + b"z" * 60 + b"\r\n") * 2000)
    except OSError:
        pass
    data = read_until_closed(a.sock, 5)
    assert re.search(rb"ERROR :[^\r\n]*Excess Flood", data), data[-300:]
    b.expect(r"^:alice!\S+ QUIT :Excess Flood", timeout=5)
    no_traceback(s.log())


def test_flood_exempt_cidr_is_not_throttled(make_salon: Any, connect: Any) -> None:
    s = make_salon(flood={"enabled": True, "rate": 1.0, "burst": 5, "exempt": ["127.0.0.0/8"]})
    b = irc_user(connect, s.irc_port, "bob", "#f")
    a = irc_user(connect, s.irc_port, "alice", "#f")
    b.expect(r"JOIN #f")
    t0 = time.monotonic()
    a.sock.sendall(b"".join(f"PRIVMSG #f :msg {i}\r\n".encode() for i in range(30)))
    b.expect(r"PRIVMSG #f :msg 29$", timeout=2)
    assert time.monotonic() - t0 < 1.0
    # Even far beyond RecvQ in one go: no Excess Flood for an exempt address.
    a.sock.sendall((b"PRIVMSG #f :" + b"e" * 60 + b"\r\n") * 2000)
    alive(a)


# ---------------------------------------------------------------------- shutdown


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_graceful_shutdown_with_many_clients(sig: int, make_salon: Any) -> None:
    s = make_salon()
    port = s.irc_port
    clients: list[socket.socket] = []
    try:
        for i in range(200):
            c = raw_socket(port)
            c.sendall(f"NICK u{i}\r\nUSER u 0 * :u\r\nJOIN #all\r\n".encode())
            clients.append(c)
        unreg = raw_socket(port)  # one that never registers
        clients.append(unreg)
        # Wait until everyone is registered and in the channel.
        last = clients[199]
        buf = b""
        while b" 366 u199 #all " not in buf:
            chunk = last.recv(65536)
            assert chunk
            buf += chunk
        # One more client that stops reading with a full pipe.
        t0 = time.monotonic()
        s.proc.send_signal(sig)
        rc = s.proc.wait(10)
        elapsed = time.monotonic() - t0
        print(f"shutdown with {len(clients)} clients: {elapsed:.2f} s")
        assert rc == 0
        assert elapsed < 5.0
        for c in clients:
            data = read_until_closed(c, 5)
            assert data.rstrip(b"\r\n").endswith(b"ERROR :Server shutting down"), data[-200:]
        # Stopped accepting.
        with pytest.raises(OSError):
            raw_socket(port).close()
    finally:
        for c in clients:
            c.close()
    log = s.log()
    assert "shutting down" in log
    no_traceback(log)


def test_shutdown_does_not_wait_for_a_client_that_never_reads(
    make_salon: Any, connect: Any
) -> None:
    s = make_salon(limits={"sendq": 64 * 1024 * 1024}, history={"enabled": False})
    port = s.irc_port
    flooder = irc_user(connect, port, "flooder", "#big")
    slow = raw_socket(port, rcvbuf=4096)
    slow.sendall(b"NICK slow\r\nUSER slow 0 * :slow\r\nJOIN #big\r\n")
    flooder.expect(r"^:slow!\S+ JOIN #big")
    # Overfill the kernel buffers towards the slow client so output waits in user space.
    line = b"PRIVMSG #big :" + b"S" * 400 + b"\r\n"
    for _ in range(200):
        flooder.sock.sendall(line * 100)
    alive(flooder)
    t0 = time.monotonic()
    s.proc.send_signal(signal.SIGTERM)
    flooder.expect(r"^ERROR :Server shutting down")
    # While it waits for the stuck client, the server no longer accepts connections.
    with pytest.raises(ConnectionRefusedError):
        raw_socket(port).close()
    assert s.proc.poll() is None, "expected the server to still be waiting for the reader"
    rc = s.proc.wait(10)
    elapsed = time.monotonic() - t0
    print(f"shutdown with a stuck reader: {elapsed:.2f} s")
    assert rc == 0
    assert elapsed < 5.0
    slow.close()
    no_traceback(s.log())


def test_shutdown_tells_plain_text_users(make_salon: Any, connect: Any) -> None:
    s = make_salon()
    p: LineClient = connect(s.plain_port)
    p.expect("Your name:")
    p.send("alice")
    p.expect(r"You are now in #lobby")
    p.read_all(0.2)
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(10) == 0
    data = read_until_closed(p.sock, 5)
    assert b"Server shutting down" in data


# ---------------------------------------------------------------------- server log


def _chat(s: Any, connect: Any, secret: str) -> None:
    a = irc_user(connect, s.irc_port, "alice", "#logged")
    b = irc_user(connect, s.irc_port, "bob", "#logged", "#lobby")
    p: LineClient = connect(s.plain_port)
    p.expect("Your name:")
    p.send("carol")
    b.expect(r"^:carol!\S+ JOIN #lobby")
    p.send(f"{secret}-plain")
    b.expect(re.escape(f"{secret}-plain"))
    a.send(f"PRIVMSG #logged :{secret}")
    b.expect(re.escape(secret))
    a.send(f"PRIVMSG bob :{secret}-private")
    b.expect(re.escape(secret + "-private"))
    b.send("PART #logged")
    b.expect(r"PART #logged")
    a.send("QUIT :done")
    a.expect(r"^ERROR ")


def test_log_records_events_but_not_message_text(make_salon: Any, connect: Any) -> None:
    s = make_salon()
    secret = "unique-secret-" + str(random.randrange(10**9))
    _chat(s, connect, secret)
    log = wait_log(s, r"quit id=\d+ nick=alice")
    for pattern in (
        r"connect id=\d+ ip=127\.0\.0\.1",
        r"register id=\d+ nick=alice",
        r"register id=\d+ nick=bob",
        r"join nick=alice channel=#logged",
        r"part nick=bob channel=#logged",
        r"quit id=\d+ nick=alice reason=Quit: done",
    ):
        assert re.search(pattern, log), (pattern, log)
    assert secret not in log
    no_traceback(log)


def test_log_records_message_text_when_enabled(make_salon: Any, connect: Any) -> None:
    s = make_salon(log={"messages": True})
    secret = "unique-secret-" + str(random.randrange(10**9))
    _chat(s, connect, secret)
    log = wait_log(s, r"quit id=\d+ nick=alice")
    assert re.search(rf"PRIVMSG #logged <alice> {secret}$", log, re.M), log
    assert f"{secret}-private" in log
    assert f"{secret}-plain" in log


def test_log_records_plain_text_registration(make_salon: Any, connect: Any) -> None:
    s = make_salon()
    p: LineClient = connect(s.plain_port)
    p.expect("Your name:")
    p.send("plainy")
    p.expect(r"You are now in #lobby")
    wait_log(s, r"join nick=plainy channel=#lobby")
    wait_log(s, r"register id=\d+ nick=plainy", timeout=1)


def test_half_close_still_gets_the_replies(salon: Any) -> None:
    """``printf 'PING x\\r\\n' | nc -N host port``: replies to the last input still arrive."""
    s = raw_socket(salon.irc_port)
    s.sendall(b"NICK halfy\r\nUSER h 0 * :h\r\nPING last-words\r\n")
    s.shutdown(socket.SHUT_WR)
    data = read_until_closed(s, 5)
    s.close()
    assert b" 001 halfy " in data
    assert b"last-words" in data, data[-300:]
    p = raw_socket(salon.plain_port)
    p.sendall(b"halfplain\r\n/help\r\n")
    p.shutdown(socket.SHUT_WR)
    data = read_until_closed(p, 5)
    p.close()
    assert b"Hello halfplain!" in data
    assert b"/join" in data, data[-300:]


def test_a_quit_connection_lingers_then_closes(salon: Any) -> None:
    """After QUIT the server sends ERROR and a FIN, ignores what still arrives for about
    LINGER (1 s: a late line must not turn into an RST that destroys the ERROR), then
    closes: from then on the peer's lines are answered with a reset."""
    s = raw_socket(salon.irc_port)
    s.sendall(b"NICK lingery\r\nUSER l 0 * :l\r\nQUIT :off\r\n")
    data = read_until_closed(s, 5)
    assert re.search(rb"ERROR :[^\r\n]*Quit: off", data), data[-300:]
    assert_lingers_then_closes(s)


def test_a_refused_connection_lingers_then_closes(make_salon: Any) -> None:
    """A connection refused at accept (here: over the per-address limit) gets its ERROR
    line and is closed the same way, by the same sweep."""
    server = make_salon(connections={"max_per_ip": 1, "throttle": 0, "exempt": []})
    deadline = time.monotonic() + 5
    while True:  # the readiness probe's connection may still hold the place
        first = raw_socket(server.irc_port)
        first.sendall(b"NICK holder\r\nUSER h 0 * :h\r\n")
        if b" 001 " in first.recv(4096):
            break
        first.close()
        assert time.monotonic() < deadline
        time.sleep(0.1)
    s = raw_socket(server.irc_port)
    s.sendall(b"NICK refused\r\n")
    data = read_until_closed(s, 5)
    assert data.startswith(b"ERROR :Closing Link: 127.0.0.1 (Too many connections"), data
    assert_lingers_then_closes(s)
    first.close()


def assert_lingers_then_closes(s: socket.socket) -> None:
    """``s`` has just read the server's FIN: it may go on sending for about LINGER with
    no reset, then its lines are answered with one."""
    closed_at = time.monotonic()
    s.sendall(b"PING still-open\r\n")  # half-closed, still reading: no reset
    time.sleep(0.3)
    s.sendall(b"PING still-open\r\n")
    reset = None
    while reset is None and time.monotonic() - closed_at < 8:
        time.sleep(0.1)
        try:
            s.sendall(b"PING closed-yet\r\n")
        except (BrokenPipeError, ConnectionResetError) as exc:
            reset = exc
    lingered = time.monotonic() - closed_at
    s.close()
    assert reset is not None, "the server never closed the lingering connection"
    # LINGER is 1 s (slack for a busy machine); the cutoff at CLOSE_TIMEOUT (5 s) is not it.
    assert 0.5 < lingered < 3.5, lingered


def test_the_data_directory_is_private(salon: Any, connect: Any) -> None:
    """The database holds private messages, password hashes and SCRAM keys: the data
    directory is its owner's alone (0700) and so are the database and its WAL (0600),
    whatever the umask."""
    alice = connect(salon.irc_port)
    alice.register("alice")
    alice.send("JOIN #c")
    alice.send("PRIVMSG #c :written to the WAL")
    alice.send("PING sync")
    alice.expect("PONG")
    modes = {
        path.name: path.stat().st_mode & 0o777
        for path in (salon.data_dir, *salon.data_dir.glob("salon.db*"))
    }
    assert modes["data"] == 0o700, modes
    assert modes["salon.db"] == 0o600 and modes["salon.db-wal"] == 0o600, modes


def test_a_second_server_on_the_same_data_directory_is_refused(salon: Any) -> None:
    """Two servers on one database would each keep their own accounts and channels in
    memory and overwrite the other's: the second one stops at once, saying why."""
    from conftest import free_port

    ports = ["--irc-port", str(free_port()), "--tls-port", "0", "--plain-port", "0"]
    ports += ["--http-port", "0"]
    second = subprocess.run(
        [sys.executable, "-m", "salon", "serve", "--data-dir", str(salon.data_dir), *ports],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert second.returncode == 2, second
    assert f"in use by another salon process (pid {salon.proc.pid})" in second.stderr
    assert "Traceback" not in second.stderr
    assert salon.proc.poll() is None


def test_account_commands_wait_for_the_server_to_stop(salon: Any) -> None:
    """``salon account create`` behind a running server's back would be overwritten (the
    server keeps accounts in memory): it is refused, in one line, while the server runs."""
    config = ["--config", str(salon.config_path)]
    command = [sys.executable, "-m", "salon", "account", "create", "zed", "pw-123456", *config]
    refused = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2, refused
    assert f"in use by another salon process (pid {salon.proc.pid})" in refused.stderr
    assert refused.stderr.count("\n") == 1
    listed = subprocess.run(
        [sys.executable, "-m", "salon", "account", "list", *config],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed  # reading is fine
    salon.stop()
    created = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert created.returncode == 0, created
