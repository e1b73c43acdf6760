"""Issue 19 point 7 on two real ``salon serve`` nodes sharing one real PostgreSQL (and one
real redis-server): PostgreSQL restarted under traffic from both nodes; each message is
either stored once and delivered, or refused with FAIL ... MESSAGE_NOT_STORED and
delivered to nobody."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import LineClient, SalonProcess
from nodehelpers import stored_msgids

from salon.proto.message import parse
from tests.cluster.test_loopback import client, cluster

pytestmark = pytest.mark.e2e

__all__ = ["cluster"]


def heard(c: LineClient, chan: str, quiet: float) -> tuple[list[tuple[str, str]], int]:
    """The ``(msgid=..., text)`` of each PRIVMSG to ``chan`` that ``c`` got (echoes
    included) and how many FAIL ... MESSAGE_NOT_STORED, once ``c`` is quiet."""
    got: list[tuple[str, str]] = []
    refused = 0
    for line in c.read_all(quiet):
        msg = parse(line)
        if msg.command == "PRIVMSG" and msg.params[0] == chan:
            got.append(("msgid=" + msg.tags["msgid"], msg.params[-1]))
        elif msg.command == "FAIL" and "MESSAGE_NOT_STORED" in msg.params:
            refused += 1
    return got, refused


def test_postgresql_restarted_under_traffic_on_two_nodes(
    cluster: Callable[..., SalonProcess], own_postgres: Any
) -> None:
    """A sender on each node floods #r while the shared PostgreSQL is down for longer
    than retry_for: some messages are refused, the rest stored. Every message anyone got
    is in CHATHISTORY exactly once; each refused one reached nobody (neither echoed nor
    delivered); every stored one reached every member on both nodes once."""
    dsn = own_postgres.dsn(own_postgres.create_database())
    pg = {"postgres": {"dsn": dsn, "retry_for": 1.0}}
    a, b = cluster("a", **pg), cluster("b", **pg)
    caps = "message-tags echo-message"
    senders = {"sa": client(a, "sa", caps), "sb": client(b, "sb", caps)}
    history = "message-tags batch draft/chathistory server-time"
    readers = [client(a, "ra", history), client(b, "rb", history)]
    everyone = {**senders, "ra": readers[0], "rb": readers[1]}
    for c in everyone.values():
        c.send("JOIN #r")
        c.expect(r" 366 ")
    time.sleep(0.3)
    for c in everyone.values():
        c.read_all(0.1)
    restart = threading.Thread(target=own_postgres.restart, kwargs={"down": 2.0})
    count = 400
    for i in range(count):
        if i == count // 8:
            restart.start()
        for nick, s in senders.items():
            s.send(f"PRIVMSG #r :{nick} {i}")
        time.sleep(0.01)
    restart.join()
    outcome = {nick: heard(c, "#r", quiet=3.0) for nick, c in everyone.items()}

    stored = stored_msgids(readers[0], "#r")
    assert len(stored) == len(set(stored))  # none stored twice
    assert sorted(stored_msgids(readers[1], "#r")) == sorted(stored)
    for nick, (got, refused) in outcome.items():
        # Delivered (or echoed) once each, and only what is stored: all of it.
        assert sorted(m for m, _ in got) == sorted(stored), nick
        assert refused == 0 or nick in senders
    for nick in senders:
        said = [f"{nick} {i}" for i in range(count)]
        echoed = [t for _, t in outcome[nick][0] if t.startswith(f"{nick} ")]
        refused_n = outcome[nick][1]
        # Each message either went out once (in order) or was refused, and the outage
        # refused some and stored messages after it.
        assert len(echoed) + refused_n == count, (nick, len(echoed), refused_n)
        assert echoed == [t for t in said if t in set(echoed)]
        assert refused_n > 0 and echoed[-1] == said[-1], (nick, refused_n)
    # What was refused reached nobody: each member got the texts echoed to the senders.
    went_out = sorted(t for nick in senders for _, t in outcome[nick][0] if t.startswith(nick))
    for nick, (got, _) in outcome.items():
        assert sorted(t for _, t in got) == went_out, nick
    refusals = {nick: outcome[nick][1] for nick in senders}
    print(f"PostgreSQL restarted: {len(stored)} stored and delivered, refused {refusals}")
    for node in (a, b):
        log = node.wait_log("storage recovered after")
        assert "storage failing" in log
