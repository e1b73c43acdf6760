"""Accounts: draft/account-registration (REGISTER, VERIFY), persistence, nick ownership,
user and channel mode +R, the account extban, K-lines and D-lines, the registration and
channel flood throttles (in-process, injected clock); then a real server on loopback:
no plaintext secret in the database, the admin CLI, accounts across a restart."""

from __future__ import annotations

import re
from typing import Any

import pytest
from accounthelpers import (
    PASSWORD,
    accounts_net,
    cheap_argon2,
    register_account,
    restart,
    sasl_connect,
)
from corehelpers import Net, find, isupport, one

from salon.server.effects import Offload

__all__ = ["cheap_argon2"]


# ------------------------------------------------------------------------------- REGISTER


def test_register_before_connect() -> None:
    net = accounts_net()
    conn = net.connect()
    conn.send("CAP LS 302")
    conn.send("CAP REQ :draft/account-registration")
    conn.send("NICK bar")
    conn.lines()
    conn.send("REGISTER * * :" + PASSWORD)
    # Hashing (argon2id + SCRAM) runs off the event loop.
    assert [type(e) for e in net.pending] == [Offload]
    net.run_offloads()
    msgs = conn.messages()
    reg = one(msgs, "REGISTER")
    assert reg.params[:2] == ("SUCCESS", "bar")
    assert one(msgs, "900").params[2] == "bar"
    record = net.store.accounts["bar"]
    assert record.password_hash.startswith("$argon2id$")
    assert record.scram is not None and record.scram.iterations >= 4096
    assert PASSWORD not in repr(record)
    conn.send("USER bar 0 * :bar")
    conn.send("CAP END")
    conn.expect(" 001 bar ")
    assert conn.client.account == "bar"


def test_register_after_connect_and_login_elsewhere() -> None:
    net = accounts_net()
    register_account(net, "alice").send("QUIT")
    conn = sasl_connect(net, "other", "alice")
    assert conn.client.account == "alice"


@pytest.mark.parametrize(
    "line,code",
    [
        ("REGISTER foo * :" + PASSWORD, "ACCOUNT_NAME_MUST_BE_NICK"),
        ("REGISTER * * short", "WEAK_PASSWORD"),
        ("REGISTER * * :control\x01character", "UNACCEPTABLE_PASSWORD"),
        ("REGISTER * notanemail :" + PASSWORD, "INVALID_EMAIL"),
    ],
)
def test_register_refusals(line: str, code: str) -> None:
    net = accounts_net()
    conn = net.register("bar")
    conn.send(line)
    fail = one(conn.messages(), "FAIL")
    assert fail.params[:2] == ("REGISTER", code)
    assert fail.params[-1]  # a human-readable reason
    assert not net.pending and "bar" not in net.server.accounts.records


def test_register_existing_account_and_land_grab() -> None:
    net = accounts_net()
    register_account(net, "taken").send("QUIT")
    conn = net.register("tmp")
    conn.send("NICK taken")
    conn.lines()
    conn.send("REGISTER * * :" + PASSWORD)
    assert one(conn.messages(), "FAIL").params[:3] == ("REGISTER", "ACCOUNT_EXISTS", "taken")
    # A nick held by an anonymous client cannot be registered from under it.
    net.register("root")
    grab = net.connect()
    grab.send("NICK root")
    assert grab.numerics() == ["433"]
    grab.send("REGISTER * * :" + PASSWORD)
    assert one(grab.messages(), "FAIL").params[:3] == ("REGISTER", "ACCOUNT_EXISTS", "root")


def test_register_disallowed_before_connect() -> None:
    net = accounts_net(accounts={"registration_before_connect": False})
    conn = net.connect()
    conn.send("CAP LS 302")
    cap = " ".join(m.params[-1] for m in find(conn.messages(), "CAP")).split()
    (registration,) = [c for c in cap if c.startswith("draft/account-registration")]
    assert "before-connect" not in registration
    conn.send("NICK bar")
    conn.send("REGISTER * * :" + PASSWORD)
    fail = one(conn.messages(), "FAIL")
    assert fail.params[:2] == ("REGISTER", "COMPLETE_CONNECTION_REQUIRED")


def test_registration_disabled_hides_capability() -> None:
    net = accounts_net(accounts={"registration": False})
    conn = net.connect()
    conn.send("CAP LS 302")
    assert "draft/account-registration" not in " ".join(conn.lines())
    conn.send("NICK bar")
    conn.send("REGISTER * * :" + PASSWORD)
    assert one(conn.messages(), "FAIL").params[:2] == ("REGISTER", "DISALLOWED")


def test_email_required_then_verify() -> None:
    net = accounts_net(accounts={"registration_requires_email": True})
    conn = net.register("bar")
    conn.send("REGISTER * * :" + PASSWORD)
    assert one(conn.messages(), "FAIL").params[:2] == ("REGISTER", "INVALID_EMAIL")
    conn.send("REGISTER * bar@example.org :" + PASSWORD)
    net.run_offloads()
    reg = one(conn.messages(), "REGISTER")
    assert reg.params[:2] == ("VERIFICATION_REQUIRED", "bar")
    assert conn.client.account is None and "bar" not in net.store.accounts
    code = net.server.accounts.pending["bar"].code
    conn.send("VERIFY bar wrongcode")
    assert one(conn.messages(), "FAIL").params[:2] == ("VERIFY", "INVALID_CODE")
    conn.send(f"VERIFY bar {code}")
    msgs = conn.messages()
    assert one(msgs, "VERIFY").params[:2] == ("SUCCESS", "bar")
    assert conn.client.account == "bar"
    assert net.store.accounts["bar"].email == "bar@example.org"


def test_password_length_limit() -> None:
    from salon.server.accounts import MAX_PASSWORD_BYTES, check_password_shape

    assert check_password_shape("x" * MAX_PASSWORD_BYTES, 8) is None
    shape = check_password_shape("\u00e9" * (MAX_PASSWORD_BYTES // 2 + 1), 8)
    assert shape is not None and shape[0] == "UNACCEPTABLE_PASSWORD"
    shape = check_password_shape("short", 8)
    assert shape is not None and shape[0] == "WEAK_PASSWORD"


def test_registration_throttle_per_ip_then_recovers() -> None:
    net = Net(
        accounts={"registration_throttle": 2, "registration_throttle_period": 600},
    )
    for nick in ("one", "two"):
        register_account(net, nick)
    conn = net.register("three")
    conn.send("REGISTER * * :" + PASSWORD)
    fail = one(conn.messages(), "FAIL")
    assert fail.params[:2] == ("REGISTER", "TEMPORARILY_UNAVAILABLE")
    assert re.search(r"try again in \d+ seconds", fail.params[-1])
    assert not net.pending  # no hashing work for a refused registration
    # Another address is not affected.
    other = net.register("four", ip="198.51.100.4")
    other.send("REGISTER * * :" + PASSWORD)
    net.run_offloads()
    other.expect("REGISTER SUCCESS")
    net.advance(601)
    conn.send("REGISTER * * :" + PASSWORD)
    net.run_offloads()
    conn.expect("REGISTER SUCCESS")


# ------------------------------------------------------------------------------- persistence


def test_accounts_survive_a_restart() -> None:
    net = accounts_net()
    register_account(net, "alice")
    net2 = restart(net)
    conn = sasl_connect(net2, "alice", "alice")
    assert conn.client.account == "alice"


# ------------------------------------------------------------------------------- nick ownership


def test_registered_nick_is_enforced_after_the_grace_period() -> None:
    net = accounts_net(accounts={"nick_enforce_timeout": 30})
    register_account(net, "alice").send("QUIT")
    imposter = net.connect()
    imposter.send("NICK alice")
    imposter.send("USER a 0 * :a")
    notice = imposter.lines()
    assert " 001 alice " in notice[0]
    assert any("NickServ" in line and "registered" in line for line in notice), notice
    net.check_timeouts(29)
    assert imposter.nick == "alice"
    net.check_timeouts(2)
    lines = imposter.lines()
    assert re.fullmatch(r"Guest\d{5}", imposter.nick), lines
    assert any(f"NICK {imposter.nick}" in line for line in lines)


def test_logging_in_within_the_grace_period_keeps_the_nick() -> None:
    net = accounts_net()
    register_account(net, "alice").send("QUIT")
    conn = net.register("alice")
    conn.send("PRIVMSG NickServ :IDENTIFY " + "alice " + PASSWORD)
    net.run_offloads()
    conn.lines()
    net.check_timeouts(60)
    assert conn.nick == "alice" and conn.lines() == []


def test_changing_nick_within_the_grace_period_stops_enforcement() -> None:
    net = accounts_net()
    register_account(net, "alice").send("QUIT")
    conn = net.register("alice")
    conn.send("NICK bob")
    net.check_timeouts(60)
    assert conn.nick == "bob"


def test_immediate_enforcement() -> None:
    net = accounts_net(accounts={"nick_enforce_timeout": 0})
    register_account(net, "alice").send("QUIT")
    conn = net.register("carol")
    conn.send("NICK alice")
    assert conn.nick.startswith("Guest")


def test_logged_in_owner_keeps_the_nick() -> None:
    net = accounts_net()
    register_account(net, "alice").send("QUIT")
    conn = sasl_connect(net, "alice", "alice")
    net.check_timeouts(60)
    assert conn.nick == "alice"


def test_other_account_cannot_hold_the_nick() -> None:
    net = accounts_net(accounts={"nick_enforce_timeout": 0})
    register_account(net, "alice").send("QUIT")
    register_account(net, "bob")
    conn = sasl_connect(net, "x", "bob")
    conn.send("NICK alice")
    assert conn.nick.startswith("Guest")


# ------------------------------------------------------------------------------- modes and bans


def test_channel_mode_R_needs_an_account() -> None:
    net = accounts_net()
    op = net.register("op")
    op.send("JOIN #r")
    op.send("MODE #r +R")
    op.lines()
    anon = net.register("anon")
    anon.send("JOIN #r")
    err = one(anon.messages(), "477")
    assert err.params[1] == "#r" and "logged in" in err.params[-1]
    register_account(net, "member").send("JOIN #r")
    assert net.server.channels["#r"].members.keys() >= {net.server.nicks["member"]}


def test_channel_mode_M_only_accounts_may_speak() -> None:
    net = accounts_net()
    op = net.register("op")
    op.send("JOIN #m")
    op.send("MODE #m +M")
    anon = net.register("anon")
    anon.send("JOIN #m")
    op.lines()
    anon.lines()
    anon.send("PRIVMSG #m :hi")
    assert "+M" in one(anon.messages(), "404").params[-1]
    assert op.lines() == []
    op.send("MODE #m +v anon")
    anon.lines()
    op.lines()
    anon.send("PRIVMSG #m :voiced")
    assert op.lines() == [":anon!anon@127.0.0.1 PRIVMSG #m voiced"]
    member = register_account(net, "member")
    member.send("JOIN #m")
    member.lines()
    op.lines()
    member.send("PRIVMSG #m :logged in")
    assert op.lines() == [":member!member@127.0.0.1 PRIVMSG #m :logged in"]


def test_user_mode_R_only_accounts_may_message() -> None:
    net = accounts_net()
    evan = register_account(net, "evan")
    evan.send("MODE evan +R")
    assert evan.lines() == [":evan!evan@127.0.0.1 MODE evan +R"]
    anon = net.register("anon")
    anon.send("PRIVMSG evan :hi")
    assert one(anon.messages(), "477").params[1] == "evan"
    assert evan.lines() == []
    anon.send("NOTICE evan :hi")  # silently dropped
    assert anon.lines() == [] and evan.lines() == []
    carmen = register_account(net, "carmen")
    carmen.send("PRIVMSG evan :hi")
    assert evan.lines() == [":carmen!carmen@127.0.0.1 PRIVMSG evan hi"]
    # ACCEPT lets one anonymous user in; writing to someone accepts their replies.
    evan.send("ACCEPT anon")
    evan.lines()
    anon.send("PRIVMSG evan :again")
    assert evan.lines() == [":anon!anon@127.0.0.1 PRIVMSG evan again"]
    other = net.register("other")
    evan.send("PRIVMSG other :hello")
    other.lines()
    other.send("PRIVMSG evan :hello back")
    assert evan.lines() == [":other!other@127.0.0.1 PRIVMSG evan :hello back"]


def test_account_extban_and_isupport() -> None:
    net = accounts_net()
    op = net.register("op")
    op.send("JOIN #x")
    op.lines()
    tokens = isupport(net.register("look", caps=[]).messages() or [])
    op.send("MODE #x +b $a:bob")
    assert one(op.messages(), "MODE").params[1:] == ("+b", "$a:bob")
    register_account(net, "bob")
    bob = sasl_connect(net, "bobby", "bob")
    bob.send("JOIN #x")
    assert bob.numerics() == ["474"]
    anon = net.register("bob2")
    anon.send("JOIN #x")
    assert "JOIN" in anon.numerics()
    del tokens


def test_mute_extban() -> None:
    net = accounts_net()
    op = net.register("op")
    op.send("JOIN #m")
    op.send("MODE #m +b $m:bar!*@*")
    bar = net.register("bar")
    bar.send("JOIN #m")
    assert "JOIN" in bar.numerics()  # a mute does not keep anyone out
    op.lines()
    bar.send("PRIVMSG #m :hi")
    assert "muted" in one(bar.messages(), "404").params[-1]
    assert op.lines() == []
    op.send("MODE #m +e bar!*@*")
    op.lines()
    bar.send("PRIVMSG #m :excepted")
    assert op.lines() == [":bar!bar@127.0.0.1 PRIVMSG #m excepted"]
    op.send("MODE #m -e bar!*@*")
    op.send("MODE #m +e $m:*!bar@*")  # an exception in mute form
    op.lines()
    bar.send("PRIVMSG #m :again")
    assert op.lines() == [":bar!bar@127.0.0.1 PRIVMSG #m again"]
    op.send("MODE #m -e $m:*!bar@*")
    op.send("MODE #m +b $m:$a:acct")
    op.lines()
    register_account(net, "acct")
    muted = sasl_connect(net, "other", "acct")
    muted.send("JOIN #m")
    muted.lines()
    muted.send("PRIVMSG #m :x")
    assert "404" in muted.numerics()


def test_isupport_tokens_for_accounts() -> None:
    net = accounts_net()
    conn = net.connect()
    conn.send("NICK a")
    conn.send("USER a 0 * :a")
    tokens = isupport(conn.messages())
    assert tokens["ACCOUNTEXTBAN"] == "a"
    assert tokens["EXTBAN"] == "$,am"
    assert "R" in tokens["CHANMODES"].split(",")[3]


# ------------------------------------------------------------------------------- K/D-lines

OPERS = [{"name": "boss", "password": ""}]


def oper_net(**sections: Any) -> tuple[Net, Any]:
    from salon.passwords import hash_password

    net = accounts_net(oper=[{"name": "boss", "password": hash_password("pw")}], **sections)
    oper = net.register("boss", ip="192.0.2.1")
    oper.send("OPER boss pw")
    net.run_offloads()
    oper.lines()
    return net, oper


@pytest.mark.parametrize(
    "line", ["KLINE *@10.0.0.1 :bye", "UNKLINE *@10.0.0.1", "DLINE 10.0.0.1", "UNDLINE 10.0.0.1"]
)
def test_ban_commands_refused_for_non_operators(line: str) -> None:
    net = accounts_net()
    conn = net.register("user")
    conn.send(line)
    assert conn.numerics() == ["481"]
    assert not net.server.abuse.klines and not net.server.abuse.dlines


def test_kline_applies_to_connected_users_and_at_registration() -> None:
    net, oper = oper_net()
    victim = net.register("victim", ip="10.0.0.1")
    bystander = net.register("bystander", ip="10.0.0.2")
    oper.send("KLINE 10 *@10.0.0.1 :spamming")
    lines = oper.lines()
    assert any("K-line added" in line and "spamming" in line for line in lines), lines
    assert net.is_closed(victim)
    assert any(" 465 " in line for line in victim.lines())
    assert not net.is_closed(bystander)
    assert net.store.bans[("K", "*@10.0.0.1")].expires == pytest.approx(net.now + 600)
    again = net.connect(ip="10.0.0.1")
    again.send("NICK again")
    again.send("USER u 0 * :u")
    lines = again.lines()
    assert any(" 465 again :You are banned from this server: spamming" in line for line in lines)
    assert not any(" 001 " in line for line in lines)
    assert net.is_closed(again)
    # Persisted: a restarted server still refuses; expiry lifts it.
    net2 = restart(net)
    late = net2.connect(ip="10.0.0.1")
    late.send("NICK late")
    late.send("USER u 0 * :u")
    assert "465" in late.numerics()
    net2.check_timeouts(601)
    assert ("K", "*@10.0.0.1") not in net2.store.bans
    net2.register("welcome", ip="10.0.0.1")


def test_kline_guards_and_unkline() -> None:
    net, oper = oper_net()
    oper.send("KLINE *@*")
    assert one(oper.messages(), "FAIL").params[:2] == ("KLINE", "INVALID_MASK")
    oper.send("KLINE *@192.0.2.1 :oops")
    assert one(oper.messages(), "FAIL").params[:2] == ("KLINE", "WOULD_BAN_YOU")
    oper.send("KLINE baduser@203.0.113.9 :x")
    oper.lines()
    oper.send("KLINE LIST")
    assert any("baduser@203.0.113.9" in line for line in oper.lines())
    oper.send("UNKLINE baduser@203.0.113.9")
    assert "K-line removed" in oper.lines()[-1]
    assert not net.store.bans
    oper.send("UNKLINE baduser@203.0.113.9")
    assert one(oper.messages(), "FAIL").params[:2] == ("UNKLINE", "NO_SUCH_BAN")


def test_dline_drops_by_ip_and_is_exposed_to_the_shell() -> None:
    net, oper = oper_net()
    victim = net.register("victim", ip="10.1.2.3")
    oper.send("DLINE 1h 10.1.0.0/16 :botnet")
    oper.lines()
    assert net.is_closed(victim)
    ban = net.server.dline_for("10.1.200.1")
    assert ban is not None and ban.kind == "D" and ban.reason == "botnet"
    assert net.server.dline_for("10.2.0.1") is None
    assert net.server.dline_for("::ffff:10.1.0.9") is not None
    assert net.store.bans[("D", "10.1.0.0/16")].expires == pytest.approx(net.now + 3600)
    oper.send("DLINE 192.0.2.0/24")
    assert one(oper.messages(), "FAIL").params[:2] == ("DLINE", "WOULD_BAN_YOU")
    oper.send("DLINE 0.0.0.0/0")
    assert one(oper.messages(), "FAIL").params[:2] == ("DLINE", "INVALID_MASK")
    oper.send("UNDLINE 10.1.0.0/16")
    assert net.server.dline_for("10.1.200.1") is None
    net.check_timeouts(1)
    assert not net.store.bans


# ------------------------------------------------------------------------------- channel flood


def test_channel_flood_mutes_then_recovers() -> None:
    net = accounts_net(
        flood={
            "enabled": True,
            "rate": 1000.0,
            "burst": 1000,
            "channel_messages": 5,
            "channel_period": 10.0,
            "channel_mute": 30.0,
        }
    )
    op = net.register("op")
    op.send("JOIN #f")
    spammer = net.register("spammer")
    spammer.send("JOIN #f")
    op.lines()
    spammer.lines()
    for i in range(5):
        spammer.send(f"PRIVMSG #f :msg {i}")
    assert spammer.lines() == []
    assert len(op.lines()) == 5
    spammer.send("PRIVMSG #f :one too many")
    err = one(spammer.messages(), "404")
    assert "flooding" in err.params[-1] and "30" in err.params[-1]
    assert op.lines() == []
    net.advance(10)
    spammer.send("PRIVMSG #f :still muted")
    assert "404" in spammer.numerics() and op.lines() == []
    # The operator is never throttled.
    for i in range(10):
        op.send(f"PRIVMSG #f :op {i}")
    assert "404" not in op.numerics()
    assert len(spammer.lines()) == 10
    net.advance(21)
    spammer.send("PRIVMSG #f :back")
    assert spammer.lines() == []
    assert op.lines()[-1].endswith("PRIVMSG #f back")


# ------------------------------------------------------------------------------- real server


def test_multiline_batches_obey_user_mode_R_and_skip_services() -> None:
    net = accounts_net()
    evan = register_account(net, "evan")
    evan.send("MODE evan +R")
    evan.lines()
    anon = net.register("anon", caps=["draft/multiline", "batch"])
    for target in ("evan", "NickServ"):
        anon.send(f"BATCH +m1 draft/multiline {target}")
        anon.send(f"@batch=m1 PRIVMSG {target} :REGISTER secret-pass-1")
        anon.send("BATCH -m1")
        assert {"477", "401"} & set(anon.numerics())
    assert evan.lines() == []
    assert not any("secret-pass-1" in str(e) for evs in net.store.events.values() for e in evs)


def test_account_tag_on_messages_from_logged_in_users() -> None:
    net = accounts_net()
    register_account(net, "acct").send("QUIT")
    watcher = net.register("watcher", caps=["account-tag"])
    watcher.send("JOIN #t")
    watcher.lines()
    user = sasl_connect(net, "user", "acct")
    for line in ("JOIN #t", "PRIVMSG #t :hi", "NICK user2", "PART #t"):
        user.send(line)
    msgs = watcher.messages()
    assert [m.command for m in msgs] == ["JOIN", "PRIVMSG", "NICK", "PART"]
    assert all(m.tags.get("account") == "acct" for m in msgs)
    anon = net.register("anon")
    anon.send("JOIN #t")
    assert "account" not in one(watcher.messages(), "JOIN").tags


def test_second_session_of_an_account_gets_a_variant_nick() -> None:
    """A second device logging in to the same account with the account's nick is not
    refused: it registers as nick_ and is told why. Anyone else still gets 433."""
    from corehelpers import Net

    net = Net()
    first = net.connect()
    second = net.connect()
    for conn in (first, second):
        conn.client.account = "alice"  # as after SASL, before NICK/USER
    first.send("NICK alice")
    first.send("USER a 0 * :A")
    assert " 001 alice " in "\n".join(first.lines())
    second.send("NICK alice")
    second.send("USER a 0 * :A")
    lines = "\n".join(second.lines())
    assert "another session of your account alice" in lines
    assert " 001 alice_ " in lines
    stranger = net.connect()
    stranger.send("NICK alice")
    assert " 433 " in "\n".join(stranger.lines())
