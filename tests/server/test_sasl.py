"""SASL (IRCv3 sasl-3.1/3.2): PLAIN, SCRAM-SHA-256 and EXTERNAL against the in-process core,
with wrong passwords, aborts, over-long and NUL-carrying payloads, and the login throttles
(injected clock). Real-server checks are in test_accounts.py."""

from __future__ import annotations

import base64

import pytest
from accounthelpers import (
    PASSWORD,
    accounts_net,
    b64,
    cheap_argon2,
    plain_blob,
    register_account,
    sasl_connect,
)
from corehelpers import Conn, Net, find, one

from salon.client.sasl import ScramSha256
from salon.server.accounts import hash_credentials
from salon.server.effects import Offload
from salon.server.handlers.sasl import MAX_RESPONSE
from salon.store.base import AccountRecord

__all__ = ["cheap_argon2"]


@pytest.fixture
def net() -> Net:
    net = accounts_net()
    register_account(net, "jilles").send("QUIT")
    return net


def start(net: Net, mech: str = "PLAIN", caps: str = "sasl") -> Conn:
    conn = net.connect()
    conn.send("CAP LS 302")
    conn.send(f"CAP REQ :{caps}")
    conn.send("NICK bar")
    conn.send("USER bar 0 * :bar")
    conn.lines()
    conn.send(f"AUTHENTICATE {mech}")
    assert conn.lines() == [":test.salon AUTHENTICATE +"]
    return conn


def finish(net: Net, conn: Conn) -> list[str]:
    net.run_offloads()
    return conn.lines()


# ------------------------------------------------------------------------------- PLAIN


def test_plain_success_then_registered_with_account(net: Net) -> None:
    conn = start(net)
    conn.send("AUTHENTICATE " + plain_blob("jilles", PASSWORD))
    lines = finish(net, conn)
    assert lines == [
        ":test.salon 900 bar bar!bar@127.0.0.1 jilles :You are now logged in as jilles",
        ":test.salon 903 bar :SASL authentication successful",
    ]
    conn.send("CAP END")
    conn.expect(" 001 bar ")
    assert conn.client.account == "jilles"
    other = net.register("curious")
    other.send("WHOIS bar")
    assert " 330 curious bar jilles :is logged in as" in " ".join(other.lines())


def test_plain_password_check_runs_off_the_loop(net: Net) -> None:
    conn = start(net)
    conn.send("AUTHENTICATE " + plain_blob("jilles", PASSWORD))
    assert [type(e) for e in net.pending] == [Offload]
    assert conn.client.blocked  # its next lines wait for the result
    # Meanwhile the server goes on serving others.
    other = net.register("other")
    other.send("PING x")
    assert other.lines() == [":test.salon PONG test.salon x"]
    conn.send("CAP END")
    assert conn.lines() == []
    lines = finish(net, conn)
    assert [line.split()[1] for line in lines[:3]] == ["900", "903", "001"]


@pytest.mark.parametrize(
    "blob",
    [
        plain_blob("jilles", "wrong password"),
        plain_blob("nobody", PASSWORD),
        plain_blob("jilles", PASSWORD, authzid="other"),  # acting as someone else
        plain_blob("", PASSWORD),
        plain_blob("jilles", ""),
        b64(b"\0jilles\0" + PASSWORD.encode() + b"\0extra"),  # NUL inside the password
        b64(b"jilles\0" + PASSWORD.encode()),  # two fields
        b64(b"\0jilles\0\xff\xfe"),  # not UTF-8
        "!!!!",  # not base64
    ],
    ids=[
        "wrong-password",
        "unknown-account",
        "other-authzid",
        "empty-authcid",
        "empty-password",
        "nul-in-password",
        "two-fields",
        "not-utf8",
        "bad-base64",
    ],
)
def test_plain_failures(net: Net, blob: str) -> None:
    conn = start(net)
    conn.send("AUTHENTICATE " + blob)
    lines = finish(net, conn)
    assert len(lines) == 1 and " 904 bar " in lines[0], lines
    assert conn.client.account is None
    # The exchange is over: a new one may start.
    conn.send("AUTHENTICATE PLAIN")
    assert conn.lines() == [":test.salon AUTHENTICATE +"]


def test_chunk_over_400_bytes_is_905(net: Net) -> None:
    conn = start(net)
    conn.send("AUTHENTICATE " + "A" * 401)
    assert conn.numerics() == ["905"]
    conn.send("AUTHENTICATE " + plain_blob("jilles", PASSWORD))
    # The exchange was aborted: this is taken as a mechanism name.
    assert conn.numerics() == ["908", "904"]


def test_400_byte_chunks_and_plus_terminator() -> None:
    net = accounts_net()
    long_password = "x" * 592  # 600 bytes of payload: exactly 800 bytes of base64
    password_hash, scram_creds = hash_credentials(long_password, 4096)
    net.server.accounts.save(AccountRecord("foo", password_hash, scram_creds))
    net.collect_effects()
    conn = start(net)
    blob = plain_blob("foo", long_password, authzid="foo")
    assert len(blob) == 800
    conn.send("AUTHENTICATE " + blob[:400])
    conn.send("AUTHENTICATE " + blob[400:])
    assert conn.lines() == [] and not net.pending  # waiting for "+"
    conn.send("AUTHENTICATE +")
    assert [line.split()[1] for line in finish(net, conn)] == ["900", "903"]
    assert conn.client.account == "foo"


def test_total_payload_limit_fails_and_recovers(net: Net) -> None:
    conn = start(net)
    chunk = "QUFB" * 100  # 400 bytes of valid base64
    sent = 0
    lines: list[str] = []
    while sent <= MAX_RESPONSE:
        conn.send("AUTHENTICATE " + chunk)
        sent += len(chunk)
        lines += conn.lines()
    assert any(" 904 bar " in line and "too long" in line for line in lines), lines
    assert conn.client.auth.sasl is None  # nothing kept
    conn.send("AUTHENTICATE PLAIN")
    conn.send("AUTHENTICATE " + plain_blob("jilles", PASSWORD))
    assert " 903 " in " ".join(finish(net, conn))


def test_abort_is_906(net: Net) -> None:
    conn = start(net)
    conn.send("AUTHENTICATE *")
    assert conn.lines() == [":test.salon 906 bar :SASL authentication aborted"]
    conn.send("AUTHENTICATE PLAIN")
    conn.send("AUTHENTICATE " + "A" * 400)  # half-way through a long response
    conn.send("AUTHENTICATE *")
    assert conn.numerics() == ["AUTHENTICATE", "906"]


def test_unknown_mechanism_lists_mechanisms(net: Net) -> None:
    conn = net.connect()
    conn.send("CAP REQ sasl")
    conn.lines()
    conn.send("AUTHENTICATE FOO")
    msgs = conn.messages()
    assert [m.command for m in msgs] == ["908", "904"]
    assert msgs[0].params[1] == "PLAIN,SCRAM-SHA-256,EXTERNAL"


def test_authenticate_without_the_capability_is_refused_but_registration_works(
    net: Net,
) -> None:
    conn = net.connect()
    conn.send("AUTHENTICATE PLAIN")
    assert conn.numerics() == ["904"]
    conn.send("NICK foo")
    conn.send("USER foo 0 * :foo")
    conn.expect(" 001 foo ")


def test_cap_end_during_exchange_aborts_it(net: Net) -> None:
    conn = start(net)
    conn.send("CAP END")
    lines = conn.lines()
    assert lines[0] == ":test.salon 906 bar :SASL authentication aborted"
    assert any(" 001 bar " in line for line in lines)
    assert conn.client.account is None


def test_already_authenticated_before_registration_is_907(net: Net) -> None:
    conn = start(net)
    conn.send("AUTHENTICATE " + plain_blob("jilles", PASSWORD))
    finish(net, conn)
    conn.send("AUTHENTICATE PLAIN")
    assert conn.numerics() == ["907"]


def test_reauthenticate_after_registration(net: Net) -> None:
    register_account(net, "foo").send("QUIT")
    peer = net.register("peer", caps=["account-notify"])
    conn = sasl_connect(net, "user", "foo")
    peer.send("JOIN #c")
    conn.send("JOIN #c")
    peer.lines()
    conn.lines()
    # A failed attempt leaves the login as it was.
    conn.send("AUTHENTICATE PLAIN")
    conn.send("AUTHENTICATE " + plain_blob("jilles", "wrong"))
    assert " 904 " in " ".join(finish(net, conn))
    assert conn.client.account == "foo"
    conn.send("AUTHENTICATE PLAIN")
    conn.send("AUTHENTICATE " + plain_blob("jilles", PASSWORD))
    assert [line.split()[1] for line in finish(net, conn)] == ["AUTHENTICATE", "900", "903"]
    assert conn.client.account == "jilles"
    assert peer.lines() == [":user!user@127.0.0.1 ACCOUNT jilles"]
    assert "foo" not in net.server.accounts.sessions


def test_cap_values() -> None:
    net = accounts_net()
    conn = net.connect()
    conn.send("CAP LS 302")
    offered = " ".join(m.params[-1] for m in find(conn.messages(), "CAP")).split()
    assert "sasl=PLAIN,SCRAM-SHA-256,EXTERNAL" in offered
    assert "draft/account-registration=before-connect" in offered
    conn.send("CAP LS")
    offered = " ".join(m.params[-1] for m in find(conn.messages(), "CAP")).split()
    assert "sasl" in offered


def test_sasl_after_registration_notifies_channel_and_monitor(net: Net) -> None:
    watcher = net.register("watcher", caps=["account-notify", "extended-monitor"])
    peer = net.register("peer", caps=["account-notify"])
    deaf = net.register("deaf")
    conn = net.register("bar", caps=["sasl"])
    for c in (peer, deaf, conn):
        c.send("JOIN #c")
    watcher.send("MONITOR + bar")
    for c in (watcher, peer, deaf, conn):
        c.lines()
    conn.send("AUTHENTICATE PLAIN")
    conn.send("AUTHENTICATE " + plain_blob("jilles", PASSWORD))
    lines = finish(net, conn)
    assert [line.split()[1] for line in lines] == ["AUTHENTICATE", "900", "903"]
    assert peer.lines() == [":bar!bar@127.0.0.1 ACCOUNT jilles"]
    assert watcher.lines() == [":bar!bar@127.0.0.1 ACCOUNT jilles"]
    assert deaf.lines() == []


# ------------------------------------------------------------------------------- SCRAM


def scram_exchange(net: Net, conn: Conn, account: str, password: str) -> tuple[ScramSha256, str]:
    client = ScramSha256(account, password)
    conn.send("AUTHENTICATE " + b64(client.client_first()))
    first = one(conn.messages(), "AUTHENTICATE").params[0]
    final = client.client_final(base64.b64decode(first))
    conn.send("AUTHENTICATE " + b64(final))
    msgs = conn.messages()
    return client, " ".join(str(m) for m in msgs)


def test_scram_success_and_server_signature(net: Net) -> None:
    conn = start(net, "SCRAM-SHA-256")
    client, out = scram_exchange(net, conn, "jilles", PASSWORD)
    v = out.split("AUTHENTICATE ")[1].split()[0]
    client.verify_server_final(base64.b64decode(v))  # the server knows the password
    assert client.done
    conn.send("AUTHENTICATE +")
    assert conn.numerics() == ["900", "903"]
    assert not net.pending  # SCRAM needs no slow work at login


@pytest.mark.parametrize("account,password", [("jilles", "wrong"), ("nobody", PASSWORD)])
def test_scram_failure(net: Net, account: str, password: str) -> None:
    conn = start(net, "SCRAM-SHA-256")
    _client, out = scram_exchange(net, conn, account, password)
    assert " 904 bar " in out and "AUTHENTICATE" not in out
    assert conn.client.account is None


@pytest.mark.parametrize(
    "first",
    [
        b"p=tls-unique,,n=jilles,r=abc",  # channel binding: not offered
        b"n,,r=abc",  # no username
        b"n,,n=jilles",  # no nonce
        b"n,,n=jil=ZZles,r=abc",  # bad escape
        b"x,,n=jilles,r=abc",
        b"n,,n=jilles,r=a\0bc",
        b"n,a=other,n=jilles,r=abc",  # another authorization identity
    ],
)
def test_scram_malformed_first_message(net: Net, first: bytes) -> None:
    conn = start(net, "SCRAM-SHA-256")
    conn.send("AUTHENTICATE " + b64(first))
    assert conn.numerics() == ["904"]


def test_scram_tampered_nonce_fails(net: Net) -> None:
    conn = start(net, "SCRAM-SHA-256")
    client = ScramSha256("jilles", PASSWORD)
    conn.send("AUTHENTICATE " + b64(client.client_first()))
    first = base64.b64decode(one(conn.messages(), "AUTHENTICATE").params[0])
    final = client.client_final(first).replace(b"r=", b"r=X", 1)
    conn.send("AUTHENTICATE " + b64(final))
    assert conn.numerics() == ["904"]


# ------------------------------------------------------------------------------- EXTERNAL


FP = "ab" * 32


def test_external_by_certificate(net: Net) -> None:
    owner = net.register("jilles")
    owner.send("NS IDENTIFY jilles " + PASSWORD)
    net.run_offloads()
    owner.send(f"NS CERT ADD {FP}")
    assert "Added certificate fingerprint" in owner.lines()[-1]
    conn = net.connect()
    conn.client.certfp = FP  # what the shell sets from the TLS handshake
    conn.send("CAP REQ sasl")
    conn.send("NICK ext")
    conn.send("USER ext 0 * :ext")
    conn.send("AUTHENTICATE EXTERNAL")
    conn.send("AUTHENTICATE +")
    assert conn.numerics()[-2:] == ["900", "903"]
    assert conn.client.account == "jilles"


@pytest.mark.parametrize("certfp", [None, "cd" * 32])
def test_external_without_a_known_certificate(net: Net, certfp: str | None) -> None:
    conn = net.connect()
    conn.client.certfp = certfp
    conn.send("CAP REQ sasl")
    conn.send("AUTHENTICATE EXTERNAL")
    conn.send("AUTHENTICATE +")
    assert conn.numerics()[-1] == "904"
    assert conn.client.account is None


# ------------------------------------------------------------------------------- throttles


def test_login_throttle_per_account_then_recovers() -> None:
    net = accounts_net(accounts={"login_failures_per_account": 3, "login_throttle_period": 60})
    register_account(net, "jilles").send("QUIT")
    for i in range(3):
        conn = start(net)
        conn.send("AUTHENTICATE " + plain_blob("jilles", f"guess{i}"))
        assert " 904 " in " ".join(finish(net, conn))
    # Now even the right password is refused, without any hashing work.
    conn = start(net)
    conn.send("AUTHENTICATE " + plain_blob("jilles", PASSWORD))
    assert not net.pending
    line = conn.lines()[0]
    assert " 904 " in line and "too many failed attempts" in line
    # Another account is not affected by the per-account limit.
    register_account(net, "other").send("QUIT")
    conn = start(net)
    conn.send("AUTHENTICATE " + plain_blob("other", PASSWORD))
    assert " 903 " in " ".join(finish(net, conn))
    net.advance(61)
    conn = start(net)
    conn.send("AUTHENTICATE " + plain_blob("jilles", PASSWORD))
    assert " 903 " in " ".join(finish(net, conn))


def test_login_throttle_per_ip_then_recovers() -> None:
    net = accounts_net(accounts={"login_failures_per_account": 100, "login_failures_per_ip": 4})
    register_account(net, "jilles").send("QUIT")
    for i in range(4):
        conn = start(net)
        conn.send("AUTHENTICATE " + plain_blob(f"user{i}", "x"))
        finish(net, conn)
    conn = start(net)
    conn.send("AUTHENTICATE " + plain_blob("jilles", PASSWORD))
    assert "too many failed attempts" in conn.lines()[0]
    # Someone else, from another address, logs in fine.
    ok = sasl_connect(net, "elsewhere", "jilles", ip="192.0.2.7")
    assert ok.client.account == "jilles"
    net.advance(61)
    conn = start(net)
    conn.send("AUTHENTICATE " + plain_blob("jilles", PASSWORD))
    assert " 903 " in " ".join(finish(net, conn))


def test_scram_failures_count_too() -> None:
    net = accounts_net(accounts={"login_failures_per_account": 2})
    register_account(net, "jilles").send("QUIT")
    for _ in range(2):
        conn = start(net, "SCRAM-SHA-256")
        scram_exchange(net, conn, "jilles", "wrong")
    conn = start(net, "SCRAM-SHA-256")
    client = ScramSha256("jilles", PASSWORD)
    conn.send("AUTHENTICATE " + b64(client.client_first()))
    assert "too many failed attempts" in conn.lines()[0]


# ------------------------------------------------------------------------------- over loopback
