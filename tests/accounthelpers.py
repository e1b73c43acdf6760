"""Helpers for the account, SASL and services tests (in-process core and real server)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from argon2 import PasswordHasher
from corehelpers import Conn, Net, make_config

from salon import passwords
from salon.server.core import Server

PASSWORD = "correct horse"


@pytest.fixture(autouse=True)
def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """In-process tests hash with cheap argon2id parameters (same algorithm, less work)."""
    monkeypatch.setattr(
        passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )
    yield


def accounts_net(**sections: Any) -> Net:
    """A Net with throttles loose enough for tests that do not test them."""
    accounts = {"registration_throttle": 0}
    accounts.update(sections.pop("accounts", {}))
    return Net(make_config(accounts=accounts, **sections))


def restart(net: Net) -> Net:
    """A new server on the same store and clock, as after a restart."""
    new = Net(net.config, now=net.now)
    new.store = net.store
    new.server = Server(net.config, now=net.now)
    new.server.load(net.store)
    return new


def plain_blob(account: str, password: str, authzid: str = "") -> str:
    return base64.b64encode(f"{authzid}\0{account}\0{password}".encode()).decode()


def sasl_plain_login(conn: Any, nick: str, account: str, password: str, caps: str = "") -> None:
    """Register ``nick`` over a real connection (a LineClient), logged in to ``account``
    (SASL PLAIN), with ``caps`` too."""
    conn.send("CAP LS 302")
    conn.send(f"CAP REQ :sasl {caps}".rstrip())
    conn.send(f"NICK {nick}")
    conn.send(f"USER {nick} 0 * :{nick}")
    conn.send("AUTHENTICATE PLAIN")
    conn.expect(r"AUTHENTICATE \+")
    conn.send("AUTHENTICATE " + plain_blob(account, password))
    conn.expect(r" 903 ")
    conn.send("CAP END")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def register_account(net: Net, nick: str, password: str = PASSWORD) -> Conn:
    """Register ``nick`` as an account (REGISTER after connecting); the client stays
    connected and logged in, outbox cleared."""
    conn = net.register(nick)
    conn.send(f"REGISTER * * :{password}")
    net.run_offloads()
    conn.expect(r"REGISTER SUCCESS")
    return conn


def sasl_connect(
    net: Net,
    nick: str,
    account: str,
    password: str = PASSWORD,
    caps: str = "sasl",
    ip: str = "127.0.0.1",
) -> Conn:
    """Connect, log in with SASL PLAIN before registering, and register."""
    conn = net.connect(ip=ip)
    conn.send("CAP LS 302")
    conn.send(f"CAP REQ :{caps}")
    conn.send(f"NICK {nick}")
    conn.send(f"USER {nick} 0 * :{nick}")
    conn.send("AUTHENTICATE PLAIN")
    conn.send("AUTHENTICATE " + plain_blob(account, password))
    net.run_offloads()
    conn.send("CAP END")
    lines = conn.lines()
    assert any(" 903 " in line for line in lines), lines
    assert any(" 001 " in line for line in lines), lines
    return conn
