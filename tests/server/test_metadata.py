"""IRCv3 draft/metadata-3 in the core (salon.server.metadata, handlers/metadata.py): the
subcommands, who hears of a change, the join burst, limits, the rate limit (on the
injected clock), before-connect, accounts keeping their keys, and the Metadata event."""

from __future__ import annotations

from accounthelpers import PASSWORD, accounts_net, cheap_argon2, plain_blob, restart
from corehelpers import START, Net, find, one

from salon.proto import numerics as n
from salon.server import events
from salon.server.core import Server
from salon.store.memory import MemoryStore

__all__ = ["cheap_argon2"]

CAPS = ("draft/metadata-3", "batch")


def test_cap_ls_gives_the_limits() -> None:
    net = Net(metadata={"max_subs": 7, "max_keys": 3, "max_value_bytes": 99})
    conn = net.connect()
    conn.send("CAP LS 302")
    cap = " ".join(m.params[-1] for m in find(conn.messages(), "CAP")).split()
    assert "draft/metadata-3=before-connect,max-subs=7,max-keys=3,max-value-bytes=99" in cap


def test_disabled_metadata_is_neither_offered_nor_answered() -> None:
    net = Net(metadata={"enabled": False})
    conn = net.connect()
    conn.send("CAP LS 302")
    assert "draft/metadata-3" not in " ".join(conn.lines())
    conn.send("CAP REQ draft/metadata-3")
    conn.expect(r"CAP \* NAK")
    conn.send("CAP END")
    conn.send("NICK a")
    conn.send("USER a 0 * :a")
    conn.lines()
    conn.send("METADATA * LIST")
    assert conn.numerics() == [n.ERR_UNKNOWNCOMMAND]


def test_set_get_list_clear_own_keys() -> None:
    net = Net()
    alice = net.register("alice", caps=CAPS)
    alice.send("METADATA * SET display-name :Alice Liddell")
    m = one(alice.messages(), n.RPL_KEYVALUE)
    assert m.params == ("alice", "alice", "display-name", "*", "Alice Liddell")
    alice.send("METADATA alice SET color :#C90076")  # normalized
    assert one(alice.messages(), n.RPL_KEYVALUE).params[-1] == "#c90076"
    alice.send("METADATA * GET display-name pronouns Bad$Key")
    msgs = alice.messages()
    assert [m.command for m in msgs] == ["BATCH", n.RPL_KEYVALUE, n.RPL_KEYNOTSET, "FAIL", "BATCH"]
    ref = msgs[0].params[0][1:]
    assert msgs[0].params[1:] == ("metadata", "alice")
    assert all(m.tags.get("batch") == ref for m in msgs[1:-1])
    assert msgs[3].params[:3] == ("METADATA", "KEY_INVALID", "Bad$Key")
    alice.send("METADATA * LIST")
    listed = {m.params[2]: m.params[4] for m in find(alice.messages(), n.RPL_KEYVALUE)}
    assert listed == {"display-name": "Alice Liddell", "color": "#c90076"}
    alice.send("METADATA * SET color")
    assert one(alice.messages(), n.RPL_KEYNOTSET).params[:3] == ("alice", "alice", "color")
    alice.send("METADATA * SET color")
    fail = one(alice.messages(), "FAIL")
    assert fail.params[:4] == ("METADATA", "KEY_NOT_SET", "alice", "color")
    alice.send("METADATA * CLEAR")
    cleared = find(alice.messages(), n.RPL_KEYNOTSET)
    assert [m.params[2] for m in cleared] == ["display-name"]
    assert alice.client.metadata == {}


def test_bad_targets_subcommands_and_values() -> None:
    net = Net()
    alice = net.register("alice", caps=CAPS)
    net.register("bob", caps=CAPS)
    alice.send("METADATA nobody LIST")
    assert one(alice.messages(), "FAIL").params[:3] == ("METADATA", "INVALID_TARGET", "nobody")
    alice.send("METADATA * DESTROY")
    assert one(alice.messages(), "FAIL").params[1] == "SUBCOMMAND_INVALID"
    alice.send("METADATA bob SET display-name :not bob")
    fail = one(alice.messages(), "FAIL")
    assert fail.params[:4] == ("METADATA", "KEY_NO_PERMISSION", "bob", "display-name")
    alice.send("METADATA bob CLEAR")
    assert one(alice.messages(), "FAIL").params[:4] == (
        "METADATA",
        "KEY_NO_PERMISSION",
        "bob",
        "*",
    )
    for key, value in [
        ("color", "red"),
        ("avatar", "javascript:alert(1)"),
        ("display-name", "\x02bold\x02"),
        ("status", "x" * 301),
    ]:
        alice.send(f"METADATA * SET {key} :{value}")
        fail = one(alice.messages(), "FAIL")
        assert fail.params[:3] == ("METADATA", "INVALID_VALUE", key), (key, fail)
    alice.send("METADATA * SET UPPER :x")
    assert one(alice.messages(), "FAIL").params[:3] == ("METADATA", "KEY_INVALID", "UPPER")
    alice.send("METADATA * SET status :")  # the empty string is a valid value
    assert one(alice.messages(), n.RPL_KEYVALUE).params[-1] == ""
    assert alice.client.metadata == {"status": ""}


def test_key_limit() -> None:
    net = Net(metadata={"max_keys": 2})
    alice = net.register("alice", caps=CAPS)
    alice.send("METADATA * SET a :1")
    alice.send("METADATA * SET b :2")
    alice.lines()
    alice.send("METADATA * SET c :3")
    assert one(alice.messages(), "FAIL").params[:3] == ("METADATA", "LIMIT_REACHED", "alice")
    alice.send("METADATA * SET a :changed")  # a key already set is no new key
    assert one(alice.messages(), n.RPL_KEYVALUE).params[-1] == "changed"


def test_changes_are_rate_limited_on_the_clock() -> None:
    net = Net(metadata={"rate_changes": 3, "rate_period": 10})
    alice = net.register("alice", caps=CAPS)
    for i in range(3):
        alice.send(f"METADATA * SET status :{i}")
        net.advance(1)
    alice.lines()
    alice.send("METADATA * SET status :again")
    fail = one(alice.messages(), "FAIL")
    # The first change was 3 seconds ago: it leaves the window in 7.
    assert fail.params[:5] == ("METADATA", "RATE_LIMITED", "alice", "status", "7")
    alice.send("METADATA * SET status :2")  # no change: no rate spent, same reply
    assert one(alice.messages(), n.RPL_KEYVALUE).params[-1] == "2"
    net.advance(7)
    alice.send("METADATA * SET status :again")
    assert one(alice.messages(), n.RPL_KEYVALUE).params[-1] == "again"


def test_subscribers_sharing_a_channel_hear_of_changes() -> None:
    net = Net()
    alice = net.register("alice", caps=CAPS)
    bob = net.register("bob", caps=CAPS)
    carol = net.register("carol", caps=CAPS)  # subscribed, no common channel
    dave = net.register("dave", caps=CAPS)  # in the channel, not subscribed
    bob.send("METADATA * SUB display-name avatar")
    assert one(bob.messages(), n.RPL_METADATASUBOK).params == ("bob", "display-name", "avatar")
    carol.send("METADATA * SUB display-name")
    for conn in (alice, bob, dave):
        conn.send("JOIN #c")
    bob.lines()
    carol.lines()
    dave.lines()
    alice.send("METADATA * SET display-name :Alice")
    alice.expect(n.RPL_KEYVALUE)
    m = one(bob.messages(), n.RPL_KEYVALUE)
    assert m.params == ("bob", "alice", "display-name", "*", "Alice")
    carol.nothing()
    dave.nothing()
    alice.send("METADATA * SET pronouns :she/her")  # bob did not subscribe to it
    bob.nothing()
    alice.send("METADATA * SET display-name")
    assert one(bob.messages(), n.RPL_KEYNOTSET).params[:3] == ("bob", "alice", "display-name")
    bob.send("METADATA * UNSUB display-name")
    assert one(bob.messages(), n.RPL_METADATAUNSUBOK).params == ("bob", "display-name")
    alice.send("METADATA * SET display-name :Again")
    bob.nothing()
    bob.send("METADATA * SUBS")
    msgs = bob.messages()
    assert [m.command for m in msgs] == ["BATCH", n.RPL_METADATASUBS, "BATCH"]
    assert msgs[0].params[1] == "metadata-subs" and msgs[1].params == ("bob", "avatar")


def test_monitoring_subscribers_hear_of_changes() -> None:
    net = Net()
    alice = net.register("alice", caps=CAPS)
    bob = net.register("bob", caps=CAPS)
    alice.send("METADATA * SET status :here")
    alice.send("METADATA * SET pronouns :she/her")
    bob.send("METADATA * SUB status")
    bob.lines()
    bob.send("MONITOR + alice")  # the current values of the keys subscribed to come along
    msgs = bob.messages()
    assert [m.command for m in msgs] == [n.RPL_MONONLINE, n.RPL_KEYVALUE]
    assert msgs[1].params[1:] == ("alice", "status", "*", "here")
    alice.send("METADATA * SET status :busy")
    assert one(bob.messages(), n.RPL_KEYVALUE).params[1:] == ("alice", "status", "*", "busy")


def test_channel_keys_are_set_by_operators_and_told_to_members() -> None:
    net = Net()
    alice = net.register("alice", caps=CAPS)
    bob = net.register("bob", caps=CAPS)
    bob.send("METADATA * SUB display-name")
    alice.send("JOIN #c")
    bob.send("JOIN #c")
    alice.lines()
    bob.lines()
    bob.send("METADATA #c SET display-name :mine")
    assert one(bob.messages(), "FAIL").params[:4] == (
        "METADATA",
        "KEY_NO_PERMISSION",
        "#c",
        "display-name",
    )
    alice.send("METADATA #c SET display-name :The C")
    assert one(alice.messages(), n.RPL_KEYVALUE).params[1:] == ("#c", "display-name", "*", "The C")
    assert one(bob.messages(), n.RPL_KEYVALUE).params == ("bob", "#c", "display-name", "*", "The C")
    bob.send("METADATA #c GET display-name")
    assert one(bob.messages(), n.RPL_KEYVALUE).params[-1] == "The C"


def test_secret_channels_keep_their_keys_from_outsiders() -> None:
    net = Net()
    alice = net.register("alice", caps=CAPS)
    eve = net.register("eve", caps=CAPS)
    alice.send("JOIN #c")
    alice.send("METADATA #c SET display-name :Hidden")
    alice.send("MODE #c +i")
    alice.lines()
    for sub in ("GET display-name", "LIST", "SYNC"):
        eve.send(f"METADATA #c {sub}")
        lines = eve.lines()
        assert lines and not any("Hidden" in line for line in lines), lines
        assert "KEY_NO_PERMISSION" in lines[0]


def test_joining_brings_the_subscribed_keys_of_the_channel_and_its_members() -> None:
    net = Net()
    alice = net.register("alice", caps=CAPS)
    bob = net.register("bob", caps=CAPS)
    alice.send("JOIN #c")
    alice.send("METADATA #c SET avatar :https://example.com/c.png")
    alice.send("METADATA * SET display-name :Alice")
    alice.send("METADATA * SET status :here")
    alice.send("METADATA * SUB display-name")
    bob.send("METADATA * SET display-name :Bob")
    alice.lines()
    bob.send("METADATA * SUB display-name avatar")
    bob.lines()
    bob.send("JOIN #c")
    msgs = bob.messages()
    commands = [m.command for m in msgs]
    # After the names, the batch: the channel's avatar and alice's display-name.
    assert commands.index(n.RPL_ENDOFNAMES) < commands.index("BATCH")
    values = {(m.params[1], m.params[2]): m.params[4] for m in find(msgs, n.RPL_KEYVALUE)}
    assert values == {
        ("#c", "avatar"): "https://example.com/c.png",
        ("alice", "display-name"): "Alice",
    }
    # alice, subscribed to display-name, learns bob's as he joins.
    assert one(alice.messages(), n.RPL_KEYVALUE).params[1:] == ("bob", "display-name", "*", "Bob")
    bob.send("JOIN #d")
    alice.send("JOIN #d")
    assert find(bob.messages(), n.RPL_KEYVALUE) == []  # nothing new for an old friend
    bob.send("METADATA #c SYNC")
    assert len(find(bob.messages(), n.RPL_KEYVALUE)) == 2


def test_subscribing_in_channels_asks_to_sync_later() -> None:
    net = Net()
    alice = net.register("alice", caps=CAPS)
    alice.send("JOIN #c")
    alice.lines()
    alice.send("METADATA * SUB display-name")
    msgs = alice.messages()
    assert [m.command for m in msgs] == [n.RPL_METADATASUBOK, n.RPL_METADATASYNCLATER]
    assert msgs[1].params == ("alice", "#c")


def test_subscription_limit_stops_at_the_first_key_refused() -> None:
    net = Net(metadata={"max_subs": 2})
    alice = net.register("alice", caps=CAPS)
    alice.send("METADATA * SUB a b$ b c d")
    msgs = alice.messages()
    assert one(msgs, n.RPL_METADATASUBOK).params == ("alice", "a", "b")
    fails = [m.params[1:3] for m in find(msgs, "FAIL")]
    assert fails == [("KEY_INVALID", "b$"), ("TOO_MANY_SUBS", "c")]


def test_whois_shows_the_keys() -> None:
    net = Net()
    alice = net.register("alice", caps=CAPS)
    bob = net.register("bob", caps=CAPS)
    plain = net.register("plain")
    alice.send("METADATA * SET pronouns :she/her")
    bob.send("WHOIS alice")
    m = one(bob.messages(), n.RPL_WHOISKEYVALUE)
    assert m.params == ("bob", "alice", "pronouns", "*", "she/her")
    plain.send("WHOIS alice")
    assert find(plain.messages(), n.RPL_WHOISKEYVALUE) == []


def test_before_connect_keys_arrive_in_the_registration_burst() -> None:
    net = Net()
    bob = net.register("bob", caps=CAPS)
    bob.send("METADATA * SUB display-name")
    bob.send("MONITOR + foo")
    bob.lines()
    conn = net.connect()
    conn.send("CAP LS 302")
    conn.send("CAP REQ :draft/metadata-3 batch")
    conn.send("METADATA * SUB display-name")
    conn.send("METADATA * SET display-name :Foo F.")
    msgs = conn.messages()
    assert one(msgs, n.RPL_METADATASUBOK).params == ("*", "display-name")
    assert one(msgs, n.RPL_KEYVALUE).params == ("*", "*", "display-name", "*", "Foo F.")
    conn.send("METADATA bob GET display-name")  # only itself before registering
    assert one(conn.messages(), "FAIL").params[1] == "INVALID_TARGET"
    conn.send("NICK foo")
    conn.send("USER foo 0 * :foo")
    conn.send("CAP END")
    msgs = conn.messages()
    commands = [m.command for m in msgs]
    start = commands.index("BATCH")
    assert msgs[start].params[1:] == ("metadata", "foo")
    assert msgs[start + 1].params == ("foo", "foo", "display-name", "*", "Foo F.")
    assert start < commands.index(n.RPL_ENDOFMOTD)
    # A monitoring subscriber learns the keys of the user coming online.
    assert one(bob.messages(), n.RPL_KEYVALUE).params[1:] == ("foo", "display-name", "*", "Foo F.")


def test_registration_burst_has_an_empty_batch_without_keys() -> None:
    net = Net()
    conn = net.register("alice", caps=CAPS)
    conn.send("METADATA * LIST")  # the burst was read by register(): look again
    assert [m.command for m in conn.messages()] == ["BATCH", "BATCH"]
    fresh = net.connect()
    fresh.send("CAP REQ :draft/metadata-3 batch")
    fresh.send("NICK b")
    fresh.send("USER b 0 * :b")
    fresh.send("CAP END")
    msgs = fresh.messages()
    batches = [m for m in msgs if m.command == "BATCH"]
    assert [b.params[0][0] for b in batches] == ["+", "-"]
    assert batches[0].params[1:] == ("metadata", "b")


def test_an_accounts_keys_survive_reconnection_and_restart() -> None:
    net = accounts_net()
    alice = net.register("alice", caps=CAPS)
    alice.send("METADATA * SET pronouns :she/her")  # before the account: kept for it
    alice.send(f"REGISTER * * :{PASSWORD}")
    net.run_offloads()
    alice.send("METADATA * SET display-name :Alice A.")
    alice.send("QUIT")
    assert net.store.metadata == {"alice": {"pronouns": "she/her", "display-name": "Alice A."}}
    net = restart(net)
    conn = net.connect()
    conn.send("CAP LS 302")
    conn.send("CAP REQ :draft/metadata-3 batch sasl")
    conn.send("NICK alice")
    conn.send("USER alice 0 * :alice")
    conn.send("AUTHENTICATE PLAIN")
    conn.send("AUTHENTICATE " + plain_blob("alice", PASSWORD))
    net.run_offloads()
    conn.send("CAP END")
    msgs = conn.messages()
    values = {m.params[2]: m.params[4] for m in find(msgs, n.RPL_KEYVALUE)}
    assert values == {"pronouns": "she/her", "display-name": "Alice A."}
    # Logging in after registering (NickServ) brings them back too.
    other = net.register("guest", caps=CAPS)
    other.send(f"PRIVMSG NickServ :IDENTIFY alice {PASSWORD}")
    net.run_offloads()
    other.lines()
    assert other.client.metadata == {"pronouns": "she/her", "display-name": "Alice A."}
    other.send("METADATA * SET display-name")
    assert net.store.metadata == {"alice": {"pronouns": "she/her"}}


def test_a_registered_channel_keeps_its_keys_across_a_restart() -> None:
    net = accounts_net()
    alice = net.register("alice", caps=CAPS)
    alice.send(f"REGISTER * * :{PASSWORD}")
    net.run_offloads()
    alice.send("JOIN #kept")
    alice.send("CS REGISTER #kept")
    alice.send("METADATA #kept SET display-name :Kept")
    alice.send("JOIN #gone")
    alice.send("METADATA #gone SET display-name :Gone")
    alice.lines()
    net = restart(net)
    assert net.server.channels["#kept"].metadata == {"display-name": "Kept"}
    assert "#gone" not in net.server.channels
    bob = net.register("bob", caps=CAPS)
    bob.send("METADATA #kept GET display-name")
    assert one(bob.messages(), n.RPL_KEYVALUE).params[-1] == "Kept"


def test_metadata_changes_are_events_that_replay() -> None:
    net = Net()
    net.server.event_log = []
    alice = net.register("alice", caps=CAPS)
    alice.send("JOIN #c")
    alice.send("METADATA * SET display-name :Alice")
    alice.send("METADATA #c SET avatar :https://example.com/c.png")
    alice.send("METADATA * SET status :away")
    alice.send("METADATA * SET status")
    log = net.server.event_log
    assert [e for e in log if isinstance(e, events.Metadata)] == [
        events.Metadata(alice.client.id, None, "display-name", "Alice"),
        events.Metadata(alice.client.id, "#c", "avatar", "https://example.com/c.png"),
        events.Metadata(alice.client.id, None, "status", "away"),
        events.Metadata(alice.client.id, None, "status", None),
    ]
    fresh = Server(net.config, now=START)
    fresh.load(MemoryStore())
    for event in log:
        fresh.emit(event)
    assert fresh.nicks["alice"].metadata == {"display-name": "Alice"}
    assert fresh.channels["#c"].metadata == {"avatar": "https://example.com/c.png"}
