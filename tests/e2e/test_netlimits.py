"""The network edge against a real server: per-address connection limits and the
connection throttle (firing, then recovering), exemptions, D-lines refused at accept,
and IP cloaking (no IP in anything a non-operator sees; operators see it)."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from conftest import free_port
from nethelpers import NetClient, client_context

from salon.passwords import hash_password
from salon.server.cloak import cloak_host

pytestmark = pytest.mark.timeout(60)

CLOAK = re.compile(r"^[0-9a-f]{8}\.[0-9a-f]{8}\.salon$")


def registered(port: int, nick: str, source: str, caps: str = "") -> NetClient:
    c = NetClient(port, source=source)
    c.register(nick, caps)
    return c


# ------------------------------------------------------------------ limits


def test_concurrent_limit_per_address_fires_and_recovers(make_salon: Any) -> None:
    s = make_salon(connections={"max_per_ip": 2, "throttle": 0, "exempt": []})
    first = registered(s.irc_port, "one", "127.0.0.2")
    second = registered(s.irc_port, "two", "127.0.0.2")
    third = NetClient(s.irc_port, source="127.0.0.2")
    line = third.error_line()
    assert (
        line
        == "ERROR :Closing Link: 127.0.0.2 (Too many connections from your address (at most 2))"
    )
    # The plain-text port counts too.
    plain = NetClient(s.plain_port, source="127.0.0.2")
    assert "Too many connections" in plain.error_line()
    # Another address is not affected.
    registered(s.irc_port, "other", "127.0.0.3").close()
    # One leaves: there is room again.
    first.send("QUIT")
    first.error_line()
    first.close()
    deadline = time.monotonic() + 5
    while True:
        c = NetClient(s.irc_port, source="127.0.0.2")
        try:
            c.register("again")
            break
        except (ConnectionError, TimeoutError):
            assert time.monotonic() < deadline, c.lines
            c.close()
            time.sleep(0.1)
    c.close()
    second.close()
    s.wait_log("refused ip=127.0.0.2: Too many connections")


def test_connection_throttle_fires_and_recovers(make_salon: Any) -> None:
    s = make_salon(
        connections={"max_per_ip": 0, "throttle": 3, "throttle_window": 2.0, "exempt": []}
    )
    start = time.monotonic()
    for i in range(3):
        c = registered(s.irc_port, f"t{i}", "127.0.0.4")
        c.close()
    refused = NetClient(s.irc_port, source="127.0.0.4")
    line = refused.error_line()
    assert re.fullmatch(
        r"ERROR :Closing Link: 127\.0\.0\.4 \(Too many new connections from your address; "
        r"try again in [12] seconds\)",
        line,
    ), line
    # Elsewhere: fine.
    registered(s.irc_port, "elsewhere", "127.0.0.5").close()
    # Refused attempts are not counted: once the window has passed, it works again.
    time.sleep(max(0.0, start + 2.2 - time.monotonic()))
    registered(s.irc_port, "back", "127.0.0.4").close()


def test_limit_over_tls_gets_the_error_line_too(make_salon: Any) -> None:
    port = free_port()
    s = make_salon(
        listen={"tls_port": port}, connections={"max_per_ip": 1, "throttle": 0, "exempt": []}
    )
    held = NetClient(port, source="127.0.0.14", context=client_context())
    held.register("held")
    refused = NetClient(port, source="127.0.0.14", context=client_context())
    assert "Too many connections" in refused.error_line()
    assert "Too many connections" in NetClient(s.irc_port, source="127.0.0.14").error_line()
    held.close()


def test_exempt_networks_and_loopback_default(make_salon: Any) -> None:
    # Loopback is exempt by default: no limit for 127.0.0.0/8.
    s = make_salon(connections={"max_per_ip": 1, "throttle": 1})
    clients = [registered(s.irc_port, f"lo{i}", "127.0.0.6") for i in range(3)]
    for c in clients:
        c.close()
    # An explicit exemption list replaces the default.
    t = make_salon(connections={"max_per_ip": 1, "throttle": 0, "exempt": ["127.0.0.7/32"]})
    kept = [registered(t.irc_port, f"ex{i}", "127.0.0.7") for i in range(3)]
    held = registered(t.irc_port, "lim", "127.0.0.8")
    assert "Too many" in NetClient(t.irc_port, source="127.0.0.8").error_line()
    for c in [*kept, held]:
        c.close()


def test_limits_are_per_cidr(make_salon: Any) -> None:
    s = make_salon(connections={"max_per_ip": 1, "throttle": 0, "exempt": [], "cidr_ipv4": 24})
    held = registered(s.irc_port, "net", "127.0.9.1")
    assert "Too many" in NetClient(s.irc_port, source="127.0.9.2").error_line()
    registered(s.irc_port, "othernet", "127.0.10.1").close()
    held.close()


# ------------------------------------------------------------------ D-lines


def test_dline_refuses_at_accept(make_salon: Any) -> None:
    s = make_salon(opers=[{"name": "boss", "password": hash_password("pw")}])
    oper = registered(s.irc_port, "boss", "127.0.0.1")
    oper.send("OPER boss pw")
    oper.expect(r" 381 ")
    victim = registered(s.irc_port, "victim", "127.0.0.9")
    oper.send("DLINE 127.0.0.9 :no bots here")
    oper.expect(r"D-line|DLINE")
    assert "no bots here" in victim.error_line()
    # A new connection is refused before registration, with the reason.
    for port in (s.irc_port, s.plain_port):
        c = NetClient(port, source="127.0.0.9")
        assert c.error_line() == "ERROR :Closing Link: 127.0.0.9 (D-lined: no bots here)"
        assert not any(" 001 " in line for line in c.lines)
    s.wait_log("refused ip=127.0.0.9 by D-line 127.0.0.9/32")
    # Other addresses are fine; lifting the ban lets it back in.
    registered(s.irc_port, "fine", "127.0.0.10").close()
    oper.send("UNDLINE 127.0.0.9")
    oper.read_all()
    registered(s.irc_port, "back", "127.0.0.9").close()


# ------------------------------------------------------------------ cloaking


def test_cloak_host_function() -> None:
    key = b"k" * 32
    a = cloak_host(key, "203.0.113.7", "salon")
    assert CLOAK.fullmatch(a)
    assert cloak_host(key, "203.0.113.7", "salon") == a
    assert cloak_host(key, "::ffff:203.0.113.7", "salon") == a
    b = cloak_host(key, "203.0.113.8", "salon")
    assert a.split(".")[0] != b.split(".")[0]
    assert a.split(".")[1] == b.split(".")[1]  # same /24
    assert cloak_host(key, "203.0.114.7", "salon").split(".")[1] != a.split(".")[1]
    assert cloak_host(b"j" * 32, "203.0.113.7", "salon") != a
    # IPv6: one /64 is one cloak.
    assert cloak_host(key, "2001:db8:1:2::1", "x.net") == cloak_host(
        key, "2001:db8:1:2::99", "x.net"
    )
    assert cloak_host(key, "2001:db8:1:3::1", "x.net") != cloak_host(
        key, "2001:db8:1:2::1", "x.net"
    )
    assert cloak_host(key, "2001:db8:1:2::1", "x.net").endswith(".x.net")
    assert "203" not in a and "113" not in a.split(".")[2]


def test_no_ip_for_non_operators(make_salon: Any) -> None:
    ip = "127.0.0.11"
    s = make_salon(
        cloak={"enabled": True}, opers=[{"name": "boss", "password": hash_password("pw")}]
    )
    key = (s.data_dir / "cloak.key").read_text().strip()
    assert (s.data_dir / "cloak.key").stat().st_mode & 0o777 == 0o600
    host = cloak_host(bytes.fromhex(key), ip, "salon")
    watcher = registered(
        s.irc_port, "watcher", "127.0.0.12", caps="userhost-in-names extended-join"
    )
    watcher.send("JOIN #room")
    watcher.expect(r" 366 ")
    alice = registered(s.irc_port, "alice", ip)
    alice.send("JOIN #room")
    alice.expect(r" 366 ")
    watcher.send("NAMES #room")
    watcher.send("WHO #room")
    watcher.send("WHO alice %tcuihsnfdlar,42")
    watcher.send("WHOIS alice")
    watcher.send("USERHOST alice")
    watcher.send("PRIVMSG alice :hi")
    lines = watcher.read_all(0.5)
    lines += watcher.lines
    alice.send("PRIVMSG #room :hello")
    alice.send("QUIT :bye")
    # Her QUIT waits for her message's commit (a busy machine can take longer than any
    # fixed sleep): WHOWAS once the watcher has seen it.
    while True:
        line = watcher.readline(10)
        lines.append(line)
        if line.startswith(":alice!") and " QUIT " in line:
            break
    watcher.send("WHOWAS alice")
    lines += watcher.read_all(0.5)
    text = "\n".join(lines)
    assert ip not in text, text
    assert f"alice!alice@{host} JOIN #room" in text
    assert f"alice!alice@{host}" in text  # NAMES with userhost-in-names
    assert re.search(rf" 352 watcher #room alice {re.escape(host)} ", text), text
    assert re.search(rf" 311 watcher alice alice {re.escape(host)} \* ", text), text
    assert re.search(rf" 302 watcher :?alice=\+alice@{re.escape(host)}", text), text
    assert re.search(rf" 354 watcher 42 \S+ alice 255\.255\.255\.255 {re.escape(host)} ", text)
    assert re.search(rf" 314 watcher alice alice {re.escape(host)} ", text), text
    assert f":alice!alice@{host} QUIT" in text
    # Alice herself and an operator see the address.
    bob = registered(s.irc_port, "bob", ip)
    bob.send("WHOIS bob")
    bob.expect(rf" 338 bob bob bob@{re.escape(ip)} {re.escape(ip)} ")
    oper = registered(s.irc_port, "boss", "127.0.0.1")
    oper.send("OPER boss pw")
    oper.expect(r" 381 ")
    oper.send("WHOIS bob")
    oper.expect(rf" 338 boss bob bob@{re.escape(ip)} {re.escape(ip)} ")
    oper.send("WHO bob %tni,7")
    oper.expect(rf" 354 boss 7 {re.escape(ip)} bob")


def test_cloak_stable_across_restart_and_can_be_turned_off(make_salon: Any) -> None:
    s = make_salon(cloak={"enabled": True})
    c = registered(s.irc_port, "stable", "127.0.0.13")
    c.send("WHOIS stable")
    first = c.expect(r" 311 stable stable stable (\S+) ").group(1)
    assert CLOAK.fullmatch(first)
    c.close()
    s.stop()
    s.start()
    c = registered(s.irc_port, "stable", "127.0.0.13")
    c.send("WHOIS stable")
    assert c.expect(r" 311 stable stable stable (\S+) ").group(1) == first
    c.close()
    off = make_salon(cloak={"enabled": False})
    c = registered(off.irc_port, "open", "127.0.0.13")
    c.send("WHOIS open")
    c.expect(r" 311 open open open 127\.0\.0\.13 ")
    assert not (off.data_dir / "cloak.key").exists()
    suffixed = make_salon(cloak={"enabled": True, "suffix": "users.example.org"})
    c = registered(suffixed.irc_port, "sfx", "127.0.0.13")
    c.send("WHOIS sfx")
    assert c.expect(r" 311 sfx sfx sfx (\S+) ").group(1).endswith(".users.example.org")
