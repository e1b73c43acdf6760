"""History at scale (issue 17) on the core over a real SQLite file: TARGETS from a reader, SEARCH budgets and rate, retention in many store calls."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from corehelpers import START, HeldStoreNet, find, make_config, sqlite_net
from storehelpers import fill, said

from salon.store.sqlite import SQLiteStore


def test_targets_is_answered_from_a_reader_on_a_real_core(tmp_path: Path) -> None:
    net = sqlite_net(tmp_path / "salon.db")
    caps = ["draft/chathistory", "batch", "server-time", "message-tags"]
    alice = net.register("alice", caps)
    bob = net.register("bob", caps)
    alice.send("JOIN #c")
    alice.send("PRIVMSG #c :hello")
    alice.send("PRIVMSG bob :private")
    bob.lines()
    alice.lines()
    alice.send(
        "CHATHISTORY TARGETS timestamp=1970-01-01T00:00:00.000Z timestamp=2100-01-01T00:00:00.000Z 10"
    )
    names = [m.params[1] for m in find(alice.messages(), "CHATHISTORY")]
    assert sorted(names) == ["#c", "bob"]


def test_search_on_the_core_says_too_broad(tmp_path: Path) -> None:
    """Alice's channel is big, and every match of her word is in another one: walking
    the matches and scanning her channel both cost more than the budget."""
    net = sqlite_net(tmp_path / "salon.db", history={"query_budget": 0.001})
    store: SQLiteStore = net.store  # type: ignore[assignment]
    fill(store, [said(i, "#big", f"common {i}") for i in range(60000)])
    fill(store, [said(60000 + i, "#other", f"zebra {i}") for i in range(60000)])
    store.index_pending()
    alice = net.register("alice", ["batch", "server-time", "message-tags", "soju.im/search"])
    alice.send("JOIN #big")
    alice.lines()
    alice.send("SEARCH text=zebra")
    fails = find(alice.messages(), "FAIL")
    assert [m.params[:2] for m in fails] == [("SEARCH", "TOO_BROAD")]


def test_searches_are_rate_limited_by_the_flood_budget(tmp_path: Path) -> None:
    """Each SEARCH takes more of the sender's flood budget than a line: a client that
    repeats it has its next lines wait, and is never refused."""
    net = sqlite_net(tmp_path / "salon.db", flood={"enabled": True, "rate": 1.0, "burst": 8})
    alice = net.register("alice", ["batch", "server-time", "message-tags", "soju.im/search"])
    alice.lines()
    for _ in range(4):
        alice.send("SEARCH text=x")
    batches = [m for m in alice.messages() if m.command == "BATCH" and m.params[0][0] == "+"]
    assert len(batches) == 2  # 2 x (1 + SEARCH_COST) of 8 tokens; the rest wait
    net.tick(8)
    batches = [m for m in alice.messages() if m.command == "BATCH" and m.params[0][0] == "+"]
    assert len(batches) == 2


def test_targets_are_rate_limited_by_the_flood_budget(tmp_path: Path) -> None:
    """Each CHATHISTORY TARGETS takes TARGETS_COST (1) of the sender's flood budget
    besides its line: a client that repeats it has its next lines wait (no FAIL, no
    numeric: it is slowed down, never refused), and another client is answered at once
    meanwhile."""
    net = sqlite_net(tmp_path / "salon.db", flood={"enabled": True, "rate": 1.0, "burst": 8})
    caps = ["draft/chathistory", "batch", "server-time", "message-tags"]
    alice = net.register("alice", caps)
    bob = net.register("bob", caps)
    alice.lines()
    bob.lines()
    targets = "CHATHISTORY TARGETS timestamp=1970-01-01T00:00:00.000Z timestamp=2100-01-01T00:00:00.000Z 10"

    def answered(client: Any) -> list[Any]:
        messages = client.messages()
        assert not find(messages, "FAIL"), messages
        assert not [m for m in messages if m.command.isdigit()], messages
        return [m for m in messages if m.command == "BATCH" and m.params[0][0] == "+"]

    for _ in range(6):
        alice.send(targets)
    assert len(answered(alice)) == 4  # 4 x (1 + TARGETS_COST) of 8 tokens; 2 wait
    bob.send(targets)
    assert len(answered(bob)) == 1
    for _ in range(2):
        net.tick(2)  # a line and its cost, at 1 token a second
        assert len(answered(alice)) == 1
    net.tick(2)
    assert answered(alice) == []


def test_retention_runs_as_many_store_calls_one_per_tick(tmp_path: Path) -> None:
    """A purge is one store call per step, and one step per tick: messages committed
    meanwhile go between them, and so do the WAL's checkpoints."""
    net = sqlite_net(tmp_path / "salon.db", HeldStoreNet(history={"retention_days": 1}))
    assert isinstance(net, HeldStoreNet)
    store: SQLiteStore = net.store  # type: ignore[assignment]
    fill(store, [said(i, "#old", f"t{i}") for i in range(1200)])
    fill(store, [said(i, "#new", f"t{i}", when=START + 3 * 86400) for i in range(1200, 1210)])
    net.advance(3 * 86400)
    net.server.last_purge = -math.inf
    net.check_timeouts()
    assert net.run_store_until_idle() == 1  # the first step, and no other without a tick
    steps = 1
    while net.server.later:
        net.tick(0.1)
        assert net.run_store_until_idle() == 1
        steps += 1
    left = store.conn.execute("SELECT target, COUNT(*) FROM history GROUP BY target")
    assert [tuple(r) for r in left] == [("#new", 10)]
    assert steps >= 3  # 1,200 rows in steps of PURGE_CHUNK


def test_config_refuses_a_budget_out_of_range() -> None:
    from salon.errors import ConfigError

    with pytest.raises(ConfigError, match=r"history\.query_budget"):
        make_config(history={"query_budget": 0})
