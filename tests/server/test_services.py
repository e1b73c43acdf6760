"""NickServ and ChanServ (in-process core): account commands for clients without SASL or
REGISTER, registered channels that survive a restart, access lists, and refusals."""

from __future__ import annotations

from accounthelpers import (
    PASSWORD,
    accounts_net,
    cheap_argon2,
    register_account,
    restart,
    sasl_connect,
)
from corehelpers import Conn, Net, one

__all__ = ["cheap_argon2"]


def ns(net: Net, conn: Conn, text: str) -> list[str]:
    """Send to NickServ, run any hashing, return the notice texts."""
    conn.send(f"PRIVMSG NickServ :{text}")
    net.run_offloads()
    return [m.params[-1] for m in conn.messages() if m.command == "NOTICE"]


def cs(net: Net, conn: Conn, text: str) -> list[str]:
    conn.send(f"CS {text}")
    return [m.params[-1] for m in conn.messages() if m.command == "NOTICE"]


# ------------------------------------------------------------------------------- NickServ


def test_nickserv_register_identify_logout() -> None:
    net = accounts_net()
    alice = net.register("alice")
    assert ns(net, alice, "REGISTER " + "hunter22") == ["Account created"]
    assert alice.client.account == "alice"
    assert ns(net, alice, "LOGOUT")[0] == "You are now logged out"
    assert alice.client.account is None
    assert ns(net, alice, "IDENTIFY wrongpass") == ["Invalid account credentials"]
    assert ns(net, alice, "IDENTIFY hunter22") == ["You are now logged in as alice"]
    other = net.register("other")
    assert ns(net, other, "IDENTIFY alice hunter22") == ["You are now logged in as alice"]
    assert other.client.account == "alice"


def test_nickserv_replies_come_from_nickserv_and_are_not_relayed() -> None:
    net = accounts_net()
    alice = net.register("alice", caps=["echo-message"])
    spy = net.register("spy")
    alice.send("PRIVMSG NickServ,spy :REGISTER hunter22")
    net.run_offloads()
    lines = alice.lines()
    assert lines[0] == ":alice!alice@127.0.0.1 PRIVMSG NickServ :REGISTER hunter22"
    assert ":NickServ!NickServ@test.salon NOTICE alice :Account created" in lines
    # The other target gets the message (the user asked for it), NickServ's part stays.
    assert spy.lines() == [":alice!alice@127.0.0.1 PRIVMSG spy :REGISTER hunter22"]
    # Nothing addressed to NickServ went to history.
    assert not any("NickServ" in str(e) for evs in net.store.events.values() for e in evs)


def test_nickserv_verify_when_email_is_required() -> None:
    net = accounts_net(accounts={"registration_requires_email": True})
    conn = net.register("alice")
    assert ns(net, conn, "REGISTER hunter22") == ["A valid e-mail address is required"]
    out = ns(net, conn, "REGISTER hunter22 alice@example.org")
    assert "pending verification" in out[0]
    assert conn.client.account is None
    assert ns(net, conn, "VERIFY alice nope") == ["Invalid verification code"]
    code = net.server.accounts.pending["alice"].code
    assert ns(net, conn, f"VERIFY alice {code}") == ["Account alice verified"]
    assert conn.client.account == "alice"
    assert net.store.accounts["alice"].verified


def test_whois_shows_certificate_to_self_and_operators_only() -> None:
    net = accounts_net()
    alice = net.register("alice")
    alice.client.certfp = "ef" * 32
    alice.send("WHOIS alice")
    assert "276" in alice.numerics()
    other = net.register("other")
    other.send("WHOIS alice")
    assert "276" not in other.numerics()


def test_nick_of_services_is_reserved_and_they_cannot_be_killed() -> None:
    from salon.passwords import hash_password

    net = accounts_net(oper=[{"name": "boss", "password": hash_password("pw")}])
    conn = net.register("someone")
    conn.send("NICK NickServ")
    assert conn.numerics() == ["433"]
    conn.send("WHOIS ChanServ")
    assert "311" in conn.numerics()
    conn.send("OPER boss pw")
    net.run_offloads()
    conn.lines()
    conn.send("KILL NickServ :bye")
    assert conn.numerics() == ["483"]


def test_ns_alias_and_help() -> None:
    net = accounts_net()
    conn = net.register("alice")
    conn.send("NS HELP")
    assert len(conn.lines()) > 5
    conn.send("NICKSERV BOGUS")
    assert "Unknown command" in conn.lines()[0]


def test_identify_and_drop_share_the_login_throttle() -> None:
    net = accounts_net(accounts={"login_failures_per_account": 2})
    conn = register_account(net, "alice", "sesame123")
    assert ns(net, conn, "DROP wrong1") == ["Invalid password"]
    assert ns(net, conn, "SET PASSWORD wrong2 newpass99") == [
        "Your current password is not correct"
    ]
    out = ns(net, conn, "DROP sesame123")
    assert out[0].startswith("Too many failed login attempts")
    assert not net.pending and "alice" in net.store.accounts
    other = net.register("other")
    assert ns(net, other, "IDENTIFY alice sesame123")[0].startswith("Too many failed")
    net.advance(61)
    assert ns(net, other, "IDENTIFY alice sesame123") == ["You are now logged in as alice"]


def test_ghost_and_regain() -> None:
    net = accounts_net()
    register_account(net, "alice").send("QUIT")
    imposter = net.register("alice")
    owner = sasl_connect(net, "owner", "alice")
    assert ns(net, owner, "GHOST alice") == ["alice has been disconnected"]
    assert net.is_closed(imposter)
    imposter2 = net.register("alice")
    owner.send("NS REGAIN alice")
    assert owner.nick == "alice"
    assert net.is_closed(imposter2)
    # Not somebody else's nick.
    net.register("bystander")
    out = ns(net, owner, "GHOST bystander")
    assert out == ["bystander is not your nick"]
    anon = net.register("anon")
    assert ns(net, anon, "GHOST alice") == ["You are not logged in to an account"]


def test_set_password() -> None:
    net = accounts_net()
    conn = register_account(net, "alice")
    assert ns(net, conn, "SET PASSWORD wrongpass newpass99") == [
        "Your current password is not correct"
    ]
    assert ns(net, conn, "SET PASSWORD alice short") == [
        "Passwords must be at least 8 characters long"
    ]
    old = net.store.accounts["alice"]
    assert ns(net, conn, f"SET PASSWORD {PASSWORD.split()[0]} x") != ["Password changed"]
    conn.send(f"NS SET PASSWORD {PASSWORD} newpass99")  # current has a space: split wrong
    net.run_offloads()
    conn.lines()
    assert net.store.accounts["alice"] == old
    # With a one-word password it works, and SCRAM/argon2 both change.
    register_account(net, "bob", "oldpass99")
    bob = sasl_connect(net, "bob2", "bob", "oldpass99")
    assert ns(net, bob, "SET PASSWORD oldpass99 newpass99") == ["Password changed"]
    new = net.store.accounts["bob"]
    assert new.password_hash.startswith("$argon2id$")
    sasl_connect(net, "bob3", "bob", "newpass99")


def test_drop_account() -> None:
    net = accounts_net()
    conn = register_account(net, "alice", "sesame123")
    conn.send("JOIN #mine")
    conn.lines()
    assert cs(net, conn, "REGISTER #mine") == ["Channel #mine is now registered to alice"]
    assert ns(net, conn, "DROP wrongpass") == ["Invalid password"]
    out = ns(net, conn, "DROP sesame123")
    assert out[0] == "Account alice has been dropped"
    assert not any("registered" in text for text in out), out  # no warning about the nick
    assert conn.client.account is None
    assert "alice" not in net.store.accounts
    assert "#mine" not in net.store.channels  # its channels go with it
    # The name is free again.
    other = net.register("x")
    other.send("NICK alice")
    assert ns(net, other, "REGISTER anotherpass") == ["Account created"]


def test_info_and_cert() -> None:
    net = accounts_net()
    conn = register_account(net, "alice")
    info = ns(net, conn, "INFO")
    assert info[0].startswith("Account alice, registered")
    assert "TLS certificates: 0" in info
    fp = "AB:" * 31 + "AB"
    assert ns(net, conn, f"CERT ADD {fp}") == ["Added certificate fingerprint " + "ab" * 32]
    assert ns(net, conn, "CERT LIST") == ["ab" * 32]
    assert ns(net, conn, "CERT ADD nothex") != ["Added certificate fingerprint nothex"]
    other = register_account(net, "bob")
    assert ns(net, other, f"CERT ADD {'ab' * 32}") == ["That fingerprint is already on an account"]
    # Someone else's INFO does not show their certificates.
    assert all("TLS" not in line for line in ns(net, other, "INFO alice"))
    assert ns(net, conn, f"CERT DEL {'ab' * 32}") == [
        "Removed certificate fingerprint " + "ab" * 32
    ]
    assert net.store.accounts["alice"].certfps == ()
    # IDENTIFY with no argument uses the connection's certificate.
    assert ns(net, conn, f"CERT ADD {'cd' * 32}")[0].startswith("Added")
    third = net.register("third")
    third.client.certfp = "cd" * 32
    assert ns(net, third, "IDENTIFY") == ["You are now logged in as alice (TLS certificate)"]


# ------------------------------------------------------------------------------- ChanServ


def setup_channel(net: Net) -> Conn:
    founder = register_account(net, "alice")
    founder.send("JOIN #chan")
    founder.lines()
    assert cs(net, founder, "REGISTER #chan") == ["Channel #chan is now registered to alice"]
    return founder


def test_chanserv_register_needs_login_and_ops() -> None:
    net = accounts_net()
    anon = net.register("anon")
    anon.send("JOIN #a")
    anon.lines()
    assert "logged in" in cs(net, anon, "REGISTER #a")[0]
    user = register_account(net, "bob")
    user.send("JOIN #a")
    user.lines()
    assert "channel operator" in cs(net, user, "REGISTER #a")[0]


def test_registered_channel_persists_across_restart() -> None:
    net = accounts_net()
    founder = setup_channel(net)
    founder.send("TOPIC #chan :a kept topic")
    founder.send("MODE #chan +ntsk-n key")
    founder.send("MODE #chan +b *!*@bad.example")
    founder.send("MODE #chan +e $a:friend")
    founder.lines()
    founder.send("PART #chan")
    assert "#chan" in net.server.channels  # stays while empty
    net2 = restart(net)
    chan = net2.server.channels["#chan"]
    assert chan.topic == "a kept topic" and chan.key == "key"
    assert {"s", "t"} <= chan.modes and "n" not in chan.modes
    assert [e.mask for e in chan.bans] == ["*!*@bad.example"]
    assert [e.mask for e in chan.excepts] == ["$a:friend"]
    # Its founder is opped by ChanServ on joining.
    back = sasl_connect(net2, "alice", "alice")
    back.send("JOIN #chan key")
    lines = back.lines()
    assert lines[1] == ":ChanServ!ChanServ@test.salon MODE #chan +o alice", lines
    # An unregistered channel does not survive.
    net2.register("x").send("JOIN #gone")
    assert "#gone" not in restart(net2).server.channels


def test_amode_access_list() -> None:
    net = accounts_net()
    founder = setup_channel(net)
    bob = register_account(net, "bob")
    assert cs(net, founder, "AMODE #chan +o bob") == ["#chan: +o bob"]
    bob.send("JOIN #chan")
    assert "MODE #chan +o bob" in " ".join(bob.lines())
    assert net.store.channels["#chan"].access == (("bob", "o"),)
    # bob (access o) may grant voices, not operators.
    register_account(net, "carol")
    assert cs(net, bob, "AMODE #chan +v carol") == ["#chan: +v carol"]
    assert "enough access" in cs(net, bob, "AMODE #chan +o carol")[0]
    assert "not a registered account" in cs(net, founder, "AMODE #chan +o nobody")[0]
    listing = cs(net, founder, "AMODE #chan")
    assert "  +o bob" in listing and "  +v carol" in listing
    assert cs(net, founder, "AMODE #chan -o bob") == ["#chan: -o bob"]
    assert "MODE #chan -o bob" in " ".join(bob.lines())


def test_op_deop_voice() -> None:
    net = accounts_net()
    founder = setup_channel(net)
    guest = net.register("guest")
    guest.send("JOIN #chan")
    guest.lines()
    founder.lines()
    cs(net, founder, "VOICE #chan guest")
    assert guest.lines() == [":ChanServ!ChanServ@test.salon MODE #chan +v guest"]
    cs(net, founder, "DEOP #chan")
    assert not net.server.channels["#chan"].is_op(founder.client)
    cs(net, founder, "OP #chan")
    assert net.server.channels["#chan"].is_op(founder.client)
    # Without access: refused, even as a channel operator.
    assert "enough access" in cs(net, guest, "OP #chan")[0]


def test_topiclock() -> None:
    net = accounts_net()
    founder = setup_channel(net)
    opped = net.register("opped")
    opped.send("JOIN #chan")
    founder.send("MODE #chan +o opped")
    founder.lines()
    opped.lines()
    assert cs(net, founder, "TOPICLOCK #chan ON") == ["Topic lock for #chan is on"]
    opped.send("TOPIC #chan :hijack")
    err = one(opped.messages(), "482")
    assert "locked" in err.params[-1]
    founder.send("TOPIC #chan :official")
    assert net.store.channels["#chan"].topic == "official"
    assert net.store.channels["#chan"].topiclock


def test_chanserv_drop() -> None:
    net = accounts_net()
    founder = setup_channel(net)
    intruder = register_account(net, "intruder")
    assert "enough access" in cs(net, intruder, "DROP #chan")[0]
    assert cs(net, founder, "DROP #chan") == ["Channel #chan is no longer registered"]
    assert "#chan" not in net.store.channels
    founder.send("PART #chan")
    assert "#chan" not in net.server.channels


def test_a_registered_channel_is_not_renamed() -> None:
    """ChanServ keeps a registration under the channel's name: RENAME would orphan it."""
    net = accounts_net()
    founder = setup_channel(net)
    founder.send("RENAME #chan #other")
    failed = one(founder.messages(), "FAIL")
    assert failed.params[:2] == ("RENAME", "CANNOT_RENAME"), failed
    assert "#chan" in net.server.channels and "#other" not in net.server.channels
