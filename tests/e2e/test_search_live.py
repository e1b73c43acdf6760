"""SEARCH on a real salon process."""

from __future__ import annotations

from typing import Any

from corehelpers import START
from historyhelpers import SEARCH, stamp


def test_search_on_a_real_server(salon: Any, connect: Any) -> None:
    alice = connect(salon.irc_port)
    alice.register("alice", " ".join(SEARCH))
    bob = connect(salon.irc_port)
    bob.register("bob", " ".join(SEARCH))
    carol = connect(salon.irc_port)
    carol.register("carol", " ".join(SEARCH))
    alice.send("JOIN #secret,#pub")
    alice.expect(r" 366 \S+ #pub ")
    bob.send("JOIN #secret")
    bob.expect(r" 366 ")
    carol.send("JOIN #pub")
    carol.expect(r" 366 ")
    alice.send("PRIVMSG #secret :the walrus sings at dawn")
    alice.send("PRIVMSG bob :walrus private note")
    alice.send("PRIVMSG #pub :walrus in public")
    carol.expect("walrus in public")
    bob.expect("walrus private note")

    bob.send("SEARCH :text=walrus")
    assert [m.params[-1] for m in bob.read_batch("soju.im/search")] == [
        "the walrus sings at dawn",
        "walrus private note",
    ]
    alice.send("SEARCH :text=walr;in=#secret")
    assert [m.params[-1] for m in alice.read_batch("soju.im/search")] == [
        "the walrus sings at dawn"
    ]
    alice.send(f"SEARCH :text=walrus;from=alice;after={stamp(START)};limit=2")
    assert [m.params[-1] for m in alice.read_batch("soju.im/search")] == [
        "walrus private note",
        "walrus in public",
    ]
    carol.send("SEARCH :text=walrus")
    assert [m.params[-1] for m in carol.read_batch("soju.im/search")] == ["walrus in public"]
    carol.send("SEARCH :in=#secret;text=walrus")
    assert carol.read_batch("soju.im/search") == []
    carol.send("SEARCH :in=bob")
    assert carol.read_batch("soju.im/search") == []
