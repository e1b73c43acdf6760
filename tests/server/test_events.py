"""The event model (salon.server.events, .apply): every change of shared state is an
event applied by one function. A scripted session on one server, replayed event by event
on a fresh server, must leave the same users, channels, members, modes and topics."""

from __future__ import annotations

from typing import Any

from accounthelpers import PASSWORD, accounts_net, cheap_argon2
from corehelpers import START, Net

from salon.passwords import hash_password
from salon.server import events
from salon.server.core import Server
from salon.store.memory import MemoryStore

__all__ = ["cheap_argon2"]


def state(server: Server) -> dict[str, Any]:
    """What the network shares, as plain data (users by nick, channels by name)."""
    users = {
        cf: (
            c.nick,
            c.user,
            c.host,
            c.realname,
            c.account,
            c.away,
            "".join(sorted(c.modes)),
            sorted(chan.name for chan in c.channels.values()),
        )
        for cf, c in server.nicks.items()
        if c.registered
    }
    channels = {
        cf: (
            chan.name,
            chan.created,
            {m.nick: modes for m, modes in chan.members.items()},
            sorted(chan.modes),
            chan.key,
            chan.limit,
            (chan.topic, chan.topic_by, chan.topic_time),
            [(e.mask, e.setter, e.time) for e in chan.bans],
            [(e.mask, e.setter, e.time) for e in chan.excepts],
            [(e.mask, e.setter, e.time) for e in chan.invex],
            sorted(chan.invited),
        )
        for cf, chan in server.channels.items()
    }
    return {
        "users": users,
        "channels": channels,
        "invisible": sorted(c.nick for c in server.invisible),
        "opers": sorted(c.nick for c in server.opers),
        "klines": dict(server.abuse.klines),
        "dlines": dict(server.abuse.dlines),
    }


def replay(net: Net, log: list[events.Event]) -> Server:
    fresh = Server(net.config, now=START)
    fresh.load(MemoryStore())
    for event in log:
        fresh.emit(event)
    return fresh


def test_replaying_the_events_of_a_session_gives_the_same_state() -> None:
    net = accounts_net(oper=[{"name": "root", "password": hash_password("pw")}])
    net.server.event_log = []
    alice = net.register("alice")
    bob = net.register("bob", caps=["extended-join", "away-notify"])
    carol = net.register("carol")
    alice.send("JOIN #a,#b")
    bob.send("JOIN #a")
    carol.send("JOIN #a,#b")
    net.advance(5)
    bob.send("NICK robert")
    carol.send("NICK Carol")  # a change of case only
    alice.send("KICK #a Carol :out")
    robert = bob
    robert.send("PART #a :bye")
    robert.send("JOIN #c")
    alice.send("JOIN #c")
    dave = net.register("dave", ip="10.0.0.9")
    dave.send("JOIN #c")
    alice.send("TOPIC #b :the b topic")
    alice.send("MODE #b +o-o+v Carol Carol Carol")
    alice.send("MODE #b +bbe bad!*@* *!*@evil.example good!*@*")
    alice.send("MODE #b -b+I BAD!*@* friend!*@*")
    alice.send("MODE #b +kl-n secret 10")
    alice.send("MODE #b +mi-l")
    alice.send("INVITE robert #b")
    alice.send("INVITE robert #nowhere")
    robert.send("JOIN #b")
    robert.send("MODE robert +iw-w")
    alice.send("MODE alice +B")
    robert.send("AWAY :lunch")
    alice.send("AWAY :brb")
    alice.send("AWAY")
    robert.send("SETNAME :Robert R.")
    robert.send("OPER root pw")
    net.run_offloads()
    # K-lines and D-lines: set (dropping the users they match), lifted, expired.
    eve = net.register("eve", ip="10.2.3.4")
    eve.send("JOIN #c")
    robert.send("KLINE 1h *@10.0.0.9 :spam")
    robert.send("KLINE keep@203.0.113.9 :kept")
    robert.send("KLINE gone@203.0.113.9 :lifted")
    robert.send("UNKLINE GONE@203.0.113.9")
    robert.send("KLINE 30s brief@203.0.113.9 :expires")
    robert.send("DLINE 10.2.0.0/16 :botnet")
    robert.send("DLINE 10.3.0.0/16 :lifted")
    robert.send("UNDLINE 10.3.0.1/16")
    net.check_timeouts(31)
    # Log in and out: REGISTER (logs in), NickServ LOGOUT.
    robert.send("REGISTER * * :" + PASSWORD)
    net.run_offloads()
    alice.send("REGISTER * * :" + PASSWORD)
    net.run_offloads()
    alice.send("PRIVMSG NickServ :LOGOUT")
    # ChanServ's own mode changes: CS OP/DEOP/VOICE, and the founder's +o on joining.
    robert.send("JOIN #d")
    alice.send("JOIN #d")
    robert.send("CS REGISTER #d")
    robert.send("CS VOICE #d alice")
    robert.send("CS DEOP #d")
    robert.send("CS OP #d")
    robert.send("PART #d")
    robert.send("JOIN #d")
    net.advance(3)
    robert.send("TOPIC #c :set by an op")
    robert.send("RENAME #c #cee :tidier")
    carol.send("QUIT :gone")
    net.advance(1)
    log = net.server.event_log
    kinds = {type(event) for event in log}
    assert {
        events.Intro,
        events.Nick,
        events.Join,
        events.Part,
        events.Kick,
        events.Quit,
        events.Topic,
        events.ChannelMode,
        events.UserMode,
        events.Invite,
        events.Away,
        events.Setname,
        events.Account,
        events.Rename,
        events.Ban,
        events.Unban,
    } <= kinds
    before = state(net.server)
    assert before["users"]["robert"][0] == "robert"
    assert "carol" not in before["users"]
    b = before["channels"]["#b"]
    assert b[2] == {"alice": "o", "robert": ""}
    assert b[4:7] == ("secret", None, ("the b topic", alice.client.prefix, int(START) + 5))
    assert [e[0] for e in b[7]] == ["*!*@evil.example"]
    assert before["invisible"] == ["robert"]
    assert before["users"]["robert"][3:6] == ("Robert R.", "robert", "lunch")
    assert before["users"]["alice"][4] is None
    assert before["opers"] == ["robert"]
    assert before["channels"]["#cee"][0] == "#cee" and "#c" not in before["channels"]
    chanserv = net.server.services.chanserv.client
    by_chanserv = [e for e in log if isinstance(e, events.ChannelMode) and e.uid == chanserv.id]
    assert [e.changes for e in by_chanserv] == [
        ((True, "v", "alice"),),
        ((False, "o", "robert"),),
        ((True, "o", "robert"),),
        ((True, "o", "robert"),),
    ]
    assert before["channels"]["#d"][2] == {"alice": "v", "robert": "o"}
    assert net.is_closed(dave) and net.is_closed(eve)
    assert "dave" not in before["users"] and "eve" not in before["users"]
    assert sorted(before["klines"]) == ["*@10.0.0.9", "keep@203.0.113.9"]
    assert sorted(before["dlines"]) == ["10.2.0.0/16"]
    assert replay(net, log).event_log is None
    assert state(replay(net, log)) == before


def test_events_are_plain_frozen_values() -> None:
    net = Net()
    net.server.event_log = []
    alice = net.register("alice")
    alice.send("JOIN #a")
    for event in net.server.event_log:
        assert event.__dataclass_params__.frozen  # type: ignore[union-attr]
        for value in vars(event).values() if hasattr(event, "__dict__") else ():
            raise AssertionError(f"{event} has a __dict__ ({value})")
        for name in event.__slots__:
            assert isinstance(getattr(event, name), str | int | float | bool | None), name


def test_no_log_is_kept_by_default() -> None:
    net = Net()
    alice = net.register("alice")
    alice.send("JOIN #a")
    assert net.server.event_log is None
