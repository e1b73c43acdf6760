"""The commit pipeline on the core (issue 5): a sender waits for its commits, nothing is reordered, a long paste is slowed, not dropped."""

from __future__ import annotations

from corehelpers import HeldStoreNet, find

from salon.server.commit import CommitGroup
from salon.server.core import PIPELINE
from salon.store.base import HistoryQuery

TAGS = "message-tags server-time echo-message"


def held_messages(net: HeldStoreNet) -> int:
    """Messages waiting in held store calls (a commit group holds many)."""
    count = 0
    for call in net.held:
        group = getattr(call.call, "__self__", None)
        count += len(group.events) if isinstance(group, CommitGroup) else 1
    return count


def test_a_sender_waits_for_its_commits_and_nothing_is_reordered() -> None:
    net = HeldStoreNet()
    alice = net.register("alice", TAGS.split())
    bob = net.register("bob", TAGS.split())
    for conn in (alice, bob):
        conn.send("JOIN #c")
    net.run_store_until_idle()
    alice.lines()
    bob.lines()
    lines = [f"PRIVMSG #c :m{i}" for i in range(100)]
    lines.insert(70, "PING :mark")  # a command after messages waits for their delivery
    alice.feed("".join(line + "\r\n" for line in lines).encode())
    client = alice.client
    # The disk is slow: PIPELINE messages wait for their commit, the rest is not read.
    assert client.pending_commits == PIPELINE == 64
    assert client.blocked
    assert held_messages(net) == PIPELINE
    assert client.inbuf.count(b"\n") == len(lines) - PIPELINE
    alice.nothing()
    bob.nothing()
    net.run_store()  # one transaction: 64 commits, then their delivery
    assert [m.params[-1] for m in bob.messages()] == [f"m{i}" for i in range(64)]
    assert held_messages(net) == 70 - 64  # up to the PING, which waits behind them
    net.run_store()
    assert [m.params[-1] for m in find(bob.messages(), "PRIVMSG")] == [
        f"m{i}" for i in range(64, 70)
    ]
    assert net.run_store_until_idle() >= 1
    echoes = alice.messages()
    assert [m.params[-1] for m in find(echoes, "PRIVMSG")] == [f"m{i}" for i in range(100)]
    order = [m.command for m in echoes]
    assert order.index("PONG") == 70  # after the echo of m69, before that of m70
    assert [m.params[-1] for m in bob.messages()] == [f"m{i}" for i in range(70, 100)]
    events = net.store.history(HistoryQuery("#c", limit=1000, events=False))
    assert [e.text for e in events] == [f"m{i}" for i in range(100)]
    assert not client.blocked and client.pending_commits == 0


def test_a_long_paste_is_slowed_not_dropped() -> None:
    net = HeldStoreNet()
    alice = net.register("alice", TAGS.split())
    bob = net.register("bob", TAGS.split())
    alice.send("JOIN #c")
    bob.send("JOIN #c")
    net.run_store_until_idle()
    alice.lines()
    bob.lines()
    total = 3000  # far more than the RecvQ holds
    data = "".join(f"PRIVMSG #c :line {i:05d} of a long paste\r\n" for i in range(total))
    assert len(data) > 4 * net.config.limits.recvq
    alice.feed(data.encode())
    transactions = 0
    while net.held:
        assert len(net.held) <= PIPELINE
        net.run_store()
        transactions += 1
    assert transactions == -(-total // PIPELINE)
    assert not net.is_closed(alice)
    assert [m.params[-1][:10] for m in bob.messages()] == [f"line {i:05d}" for i in range(total)]


def test_a_pong_does_not_overtake_a_message_waiting_for_its_commit() -> None:
    """A client that PINGs after someone sent it a message gets the message first: the
    server had it before the PING, so the PONG waits for its commit (irctest's clients,
    and bots, use a PING to know that the server has sent them everything so far)."""
    net = HeldStoreNet()
    alice = net.register("alice", TAGS.split())
    bob = net.register("bob", TAGS.split())
    carol = net.register("carol", TAGS.split())
    alice.send("PRIVMSG bob :hello")
    bob.send("PING :mark")
    carol.send("PING :other")  # nothing waits for carol, but the order is kept for all
    bob.nothing()
    carol.nothing()
    net.run_store_until_idle()
    assert [m.command for m in bob.messages()] == ["PRIVMSG", "PONG"]
    assert [m.command for m in carol.messages()] == ["PONG"]
    # Once everything is committed, replies come at once again.
    bob.send("PING :again")
    assert [m.command for m in bob.messages()] == ["PONG"]
    assert net.server.uncommitted == 0
