"""Flood control, RecvQ and SendQ on the core.

The sans-I/O server core, in process (tests/corehelpers.py): client pairs, an injected clock, no sockets.
"""

from __future__ import annotations

from corehelpers import Net, find, pair


def flood_net(**limits: int) -> Net:
    return Net(flood={"enabled": True, "rate": 1.0, "burst": 3}, limits=limits)


def test_flood_lines_beyond_burst_wait_for_tick() -> None:
    net = flood_net()
    alice = net.register("alice")
    alice.feed(b"".join(b"PING %d\r\n" % i for i in range(1, 6)))
    assert alice.lines() == [f":test.salon PONG test.salon {i}" for i in (1, 2, 3)]
    assert alice.client.throttled
    net.tick(0.5)
    alice.nothing()
    net.tick(0.6)
    assert alice.lines() == [":test.salon PONG test.salon 4"]
    net.tick(0.2)
    alice.nothing()
    net.tick(0.8)
    assert alice.lines() == [":test.salon PONG test.salon 5"]
    assert not alice.client.throttled
    assert net.server.throttled == set()


def test_flood_burst_refills() -> None:
    net = flood_net()
    alice = net.register("alice")
    alice.feed(b"PING a\r\n" * 3)
    assert len(alice.lines()) == 3
    net.tick(10)  # tokens refill up to the burst, not beyond
    alice.feed(b"PING b\r\n" * 5)
    assert len(alice.lines()) == 3


def test_flood_registration_is_not_throttled() -> None:
    net = flood_net()
    conn = net.connect()
    conn.feed(b"CAP LS 302\r\nCAP REQ :server-time\r\nNICK a\r\nUSER a 0 * :a\r\nCAP END\r\n")
    assert "001" in conn.numerics()


def test_excess_flood() -> None:
    net = flood_net(recvq=1024)
    alice, bob = pair(net)
    net.tick(5)
    bob.feed(b"PING x\r\n" * 3)
    bob.lines()
    bob.feed(b"PRIVMSG alice :" + b"x" * 100 + b"\r\n")
    assert bob.client.throttled and not net.is_closed(bob)
    bob.feed((b"PRIVMSG alice :" + b"x" * 100 + b"\r\n") * 10)
    assert bob.lines() == ["ERROR :Closing Link: 127.0.0.1 (Excess Flood)"]
    assert net.is_closed(bob)
    assert alice.lines() == [":bob!bob@127.0.0.1 QUIT :Excess Flood"]


def test_flood_exempt_cidr() -> None:
    net = Net(flood={"enabled": True, "rate": 1.0, "burst": 3, "exempt": ["10.1.0.0/16"]})
    exempt = net.register("exempt", ip="10.1.2.3")
    limited = net.register("limited", ip="10.2.0.1")
    exempt.feed(b"PING x\r\n" * 50)
    limited.feed(b"PING x\r\n" * 50)
    assert len(exempt.lines()) == 50
    assert len(limited.lines()) == 3
    assert not exempt.client.throttled
    assert limited.client.throttled


def test_flood_disabled_never_throttles(net: Net) -> None:
    alice = net.register("alice")
    alice.feed(b"PING x\r\n" * 100)
    assert len(alice.lines()) == 100


def test_recvq_exceeded_without_flood() -> None:
    net = Net(limits={"recvq": 1024})
    alice = net.register("alice")
    alice.send("OPER a b")  # blocks input until the offload completes
    # While input is blocked the shell stops reading; what it holds is still bounded.
    alice.feed(b"PING x\r\n" * 200)
    assert not net.is_closed(alice)
    alice.feed(b"PING x\r\n" * 200_000)
    assert alice.lines()[-1] == "ERROR :Closing Link: 127.0.0.1 (RecvQ exceeded)"


def test_sendq_exceeded() -> None:
    net = Net(limits={"sendq": 4096})
    alice, bob = pair(net)
    carol = net.register("carol")
    carol.send("JOIN #c")
    carol.lines()
    alice.lines()
    for _ in range(20):
        alice.send("PRIVMSG bob :" + "x" * 300)
    assert net.is_closed(bob)
    # The backlog is thrown away; only the ERROR is left to send.
    assert bob.client.outbox == [b"ERROR :Closing Link: 127.0.0.1 (SendQ exceeded)\r\n"]
    assert ":bob!bob@127.0.0.1 QUIT :SendQ exceeded" in carol.lines()
    assert {m.params[1] for m in find(alice.messages(), "401")} == {"bob"}


def test_sendq_counts_only_unflushed_output() -> None:
    net = Net(limits={"sendq": 4096})
    alice = net.register("alice")
    bob = net.register("bob")
    for _ in range(20):
        alice.send("PRIVMSG bob :" + "x" * 300)
        bob.lines()  # the shell flushed
    assert not net.is_closed(bob)
