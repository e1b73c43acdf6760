"""Channel and user modes.

The sans-I/O server core, in process (tests/corehelpers.py): client pairs, an injected clock, no sockets.
"""

from __future__ import annotations

import pytest
from corehelpers import START, Net, find, one, pair


def test_user_modes(net: Net) -> None:
    alice = net.register("alice")
    net.register("bob")
    alice.send("MODE alice")
    assert alice.lines() == [":test.salon 221 alice +"]
    alice.send("MODE alice +iwB")
    assert alice.lines() == [":alice!alice@127.0.0.1 MODE alice +iwB"]
    alice.send("MODE alice")
    assert alice.lines() == [":test.salon 221 alice +Biw"]
    alice.send("MODE alice +i")  # no change, no reply
    alice.nothing()
    alice.send("MODE alice -w")
    assert alice.lines() == [":alice!alice@127.0.0.1 MODE alice -w"]
    alice.send("MODE alice +o")  # opers only via OPER
    alice.nothing()
    assert alice.client.oper is None
    alice.send("MODE alice +Z")
    assert alice.numerics() == ["501"]
    alice.send("MODE bob +i")
    assert alice.numerics() == ["502"]
    alice.send("MODE nobody")
    assert alice.numerics() == ["401"]


def test_bot_mode_shows(net: Net) -> None:
    alice, bob = pair(net)
    alice.send("MODE alice +B")
    bob.send("WHOIS alice")
    assert one(bob.messages(), "335").params[1] == "alice"
    bob.send("WHO #c")
    flags = {m.params[5]: m.params[6] for m in find(bob.messages(), "352")}
    assert flags == {"alice": "H@B", "bob": "H"}
    tagged = net.register("tagged", caps=["message-tags"])
    tagged.send("JOIN #c")
    tagged.lines()
    alice.send("PRIVMSG #c :beep")
    assert "bot" in one(tagged.messages(), "PRIVMSG").tags


def test_channel_mode_query(net: Net) -> None:
    alice, _ = pair(net)
    alice.send("MODE #c")
    assert alice.lines() == [
        ":test.salon 324 alice #c +nt",
        f":test.salon 329 alice #c {int(START)}",
    ]
    alice.send("MODE #none")
    assert alice.numerics() == ["403"]


@pytest.mark.parametrize("flag", list("mnstiC"))
def test_channel_flag_modes(net: Net, flag: str) -> None:
    alice, bob = pair(net)
    sign = "-" if flag in "nt" else "+"
    alice.send(f"MODE #c {sign}{flag}")
    change = f":alice!alice@127.0.0.1 MODE #c {sign}{flag}"
    assert alice.lines() == [change]
    assert bob.lines() == [change]
    alice.send(f"MODE #c {sign}{flag}")  # no change: nothing at all
    alice.nothing()
    bob.send(f"MODE #c {'+' if sign == '-' else '-'}{flag}")
    assert bob.lines() == [":test.salon 482 bob #c :You're not channel operator"]


def test_channel_modes_combined_and_params(net: Net) -> None:
    alice, bob = pair(net)
    alice.send("MODE #c +mlk-t 5 key")
    change = ":alice!alice@127.0.0.1 MODE #c +mlk-t 5 key"
    assert alice.lines() == [change]
    assert bob.lines() == [change]
    alice.send("MODE #c +l abc")
    assert alice.numerics() == ["696"]
    alice.send("MODE #c +k")
    assert alice.numerics() == ["461"]
    alice.send("MODE #c -lk *")
    assert alice.lines() == [":alice!alice@127.0.0.1 MODE #c -lk *"]
    alice.send("MODE #c +X")
    assert alice.lines() == [":test.salon 472 alice X :is an unknown mode char to me"]
    carol = net.register("carol")
    carol.send("MODE #c +m")
    assert carol.numerics() == ["442"]


def test_channel_modes_max_four_per_line(net: Net) -> None:
    alice, _ = pair(net)
    alice.send("MODE #c +bbbbb a b c d e")
    assert alice.lines() == [":alice!alice@127.0.0.1 MODE #c +bbbb a!*@* b!*@* c!*@* d!*@*"]


def test_op_and_voice(net: Net) -> None:
    alice, bob = pair(net)
    alice.send("MODE #c +o bob")
    assert bob.lines() == [":alice!alice@127.0.0.1 MODE #c +o bob"]
    assert alice.lines() == [":alice!alice@127.0.0.1 MODE #c +o bob"]
    bob.send("MODE #c -o+v alice alice")
    assert alice.lines() == [":bob!bob@127.0.0.1 MODE #c -o+v alice alice"]
    alice.send("NAMES #c")
    assert one(alice.messages(), "353").params[-1] == "+alice @bob"
    alice.send("MODE #c +o alice")
    assert alice.numerics() == ["482"]
    bob.lines()
    bob.send("MODE #c +o nobody")
    assert bob.numerics() == ["401"]
    net.register("carol")
    bob.send("MODE #c +v carol")
    assert bob.numerics() == ["441"]


@pytest.mark.parametrize(
    ("mode", "entry", "end", "text"),
    [
        ("b", "367", "368", "End of channel ban list"),
        ("e", "348", "349", "End of channel exception list"),
        ("I", "346", "347", "End of channel invite list"),
    ],
)
def test_list_modes(net: Net, mode: str, entry: str, end: str, text: str) -> None:
    alice, bob = pair(net)
    alice.send(f"MODE #c {mode}")
    assert alice.lines() == [f":test.salon {end} alice #c :{text}"]
    net.advance(7)
    alice.send(f"MODE #c +{mode} *!*@example.com")
    assert bob.lines() == [f":alice!alice@127.0.0.1 MODE #c +{mode} *!*@example.com"]
    alice.send(f"MODE #c +{mode} *!*@EXAMPLE.com")  # already there (casefolded)
    alice.lines()
    bob.send(f"MODE #c {mode}")  # anyone may look
    assert bob.lines() == [
        f":test.salon {entry} bob #c *!*@example.com alice!alice@127.0.0.1 {int(START + 7)}",
        f":test.salon {end} bob #c :{text}",
    ]
    bob.send(f"MODE #c -{mode} *!*@example.com")
    assert bob.numerics() == ["482"]
    alice.send(f"MODE #c -{mode} *!*@example.com")
    assert alice.lines() == [f":alice!alice@127.0.0.1 MODE #c -{mode} *!*@example.com"]
    alice.send(f"MODE #c {mode}")
    assert alice.numerics() == [end]


@pytest.mark.parametrize("mask", [":bad mask", "::colon"])
def test_list_mode_entries_are_all_listable(net: Net, mask: str) -> None:
    alice = net.register("alice")
    alice.send("JOIN #c")
    alice.send(f"MODE #c +b {mask}")
    alice.send("MODE #c +b good")
    alice.lines()
    alice.send("MODE #c b")
    assert len(find(alice.messages(), "367")) == len(net.server.channels["#c"].bans)


def test_list_mode_limit() -> None:
    net = Net(limits={"max_list_entries": 2})
    alice = net.register("alice")
    alice.send("JOIN #c")
    alice.send("MODE #c +bbb a b c")
    msgs = alice.messages()
    assert one(msgs, "478").params[1:3] == ("#c", "c!*@*")
    assert one(msgs, "MODE").params == ("#c", "+bb", "a!*@*", "b!*@*")
