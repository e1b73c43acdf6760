"""Operators: OPER and the commands it unlocks.

The sans-I/O server core, in process (tests/corehelpers.py): client pairs, an injected clock, no sockets.
"""

from __future__ import annotations

import pytest
from corehelpers import ALL_TAG_CAPS, Net, one

from salon.passwords import hash_password
from salon.server.effects import Offload


@pytest.fixture(scope="module")
def oper_hash() -> str:
    return hash_password("letmein")


@pytest.fixture
def oper_net(oper_hash: str) -> Net:
    return Net(oper=[{"name": "root", "password": oper_hash}])


def test_oper_offload(oper_net: Net) -> None:
    net = oper_net
    alice = net.register("alice")
    alice.send("OPER root letmein")
    alice.nothing()  # the answer waits for the offloaded work
    assert len(net.pending) == 1
    effect = net.pending[0]
    assert isinstance(effect, Offload) and effect.client is alice.client
    assert alice.client.blocked
    alice.send("PING queued")  # waits behind OPER
    alice.nothing()
    net.pending.clear()
    result = effect.work()
    assert result is True
    net.server.complete(effect, result, net.now)
    assert alice.lines() == [
        ":test.salon 381 alice :You are now an IRC operator",
        ":alice!alice@127.0.0.1 MODE alice +o",
        ":test.salon PONG test.salon queued",
    ]
    assert alice.client.oper == "root"
    assert not alice.client.blocked


def test_offload_completed_after_disconnect(oper_net: Net) -> None:
    net = oper_net
    alice = net.register("alice")
    alice.send("OPER root letmein")
    net.server.disconnected(alice.client, net.now)
    alice.lines()
    net.run_offloads()  # completes for a closed client: no output, no error
    alice.nothing()
    assert alice.client.oper is None


@pytest.mark.parametrize("line", ["OPER root wrong", "OPER nobody letmein"])
def test_oper_refused(oper_net: Net, line: str) -> None:
    alice = oper_net.register("alice")
    alice.send(line)
    assert oper_net.run_offloads() == 1
    assert alice.lines() == [":test.salon 464 alice :Password incorrect"]
    assert alice.client.oper is None


def test_oper_labeled(oper_net: Net) -> None:
    alice = oper_net.register("alice", caps=ALL_TAG_CAPS)
    alice.send("@label=op OPER root letmein")
    alice.nothing()
    oper_net.run_offloads()
    msgs = alice.messages()
    assert msgs[0].command == "BATCH" and msgs[0].tags["label"] == "op"
    assert [m.command for m in msgs[1:-1]] == ["381", "MODE"]


def test_kill_and_wallops_need_oper(oper_net: Net) -> None:
    net = oper_net
    alice = net.register("alice")
    bob = net.register("bob")
    bob.send("MODE bob +w")
    bob.lines()
    for line in ("KILL bob :go", "WALLOPS :hear ye"):
        alice.send(line)
        assert alice.lines() == [
            ":test.salon 481 alice :Permission Denied - You're not an IRC operator"
        ]
    bob.nothing()
    alice.send("OPER root letmein")
    net.run_offloads()
    alice.lines()
    alice.send("WALLOPS :hear ye")
    assert bob.lines() == [":alice!alice@127.0.0.1 WALLOPS :hear ye"]
    alice.nothing()  # alice lacks +w
    alice.send("KILL nobody :x")
    assert alice.numerics() == ["401"]
    carol = net.register("carol")
    carol.send("JOIN #c")
    bob.send("JOIN #c")
    carol.lines()
    alice.send("KILL bob :spamming")
    assert bob.lines()[-1] == "ERROR :Closing Link: test.salon (Killed (alice (spamming)))"
    assert carol.lines() == [":bob!bob@127.0.0.1 QUIT :Killed (alice (spamming))"]
    assert net.is_closed(bob)
    carol.send("WHO alice")
    assert one(carol.messages(), "352").params[6] == "H*"
    carol.send("WHOIS alice")
    assert "313" in carol.numerics()
    carol.send("USERHOST alice")
    assert carol.lines() == [":test.salon 302 carol alice*=+alice@127.0.0.1"]
    carol.send("LUSERS")
    assert one(carol.messages(), "252").params[1] == "1"
