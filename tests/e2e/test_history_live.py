"""History on a real salon process: it survives a restart, and a private channel's goes after a crash."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path
from typing import Any

from conftest import SalonProcess
from historyhelpers import ALL, CAPS, EVENTS, texts


def test_history_survives_restart_real_server(tmp_path: Path, connect: Any) -> None:
    server = SalonProcess(tmp_path, history={"replay_lines": 3}).start()
    try:
        alice = connect(server.irc_port)
        alice.register("alice", " ".join(ALL))
        alice.send("JOIN #real")
        alice.expect(r" 366 ")
        bob = connect(server.irc_port)
        bob.register("bob", " ".join(ALL))
        bob.send("JOIN #real")
        bob.expect(r" 366 ")
        for i in range(5):
            alice.send(f"PRIVMSG #real :before restart {i}")
        alice.send("@+draft/reply=x PRIVMSG bob :a private word")
        bob.expect("a private word")
        alice.send("@+typing=active TAGMSG #real")
        bob.expect(r"\+typing=active")
        assert server.stop(signal.SIGTERM) == 0

        server.start()
        carol = connect(server.irc_port)
        carol.register("carol", "batch server-time message-tags")
        carol.send("JOIN #real")
        lines = carol.read_batch("chathistory")
        assert texts(lines) == [f"before restart {i}" for i in (2, 3, 4)]
        dave = connect(server.irc_port)
        dave.register("dave", " ".join(EVENTS))
        dave.send("JOIN #real")
        dave.expect(r" 366 ")
        dave.send("CHATHISTORY LATEST #real * 100")
        played = dave.read_batch("chathistory")
        commands = [m.command for m in played]
        assert texts(played) == [f"before restart {i}" for i in range(5)]
        assert "TAGMSG" not in commands  # +typing is never stored
        assert {"JOIN", "QUIT"} <= set(commands)  # alice's and bob's QUIT at shutdown
        # The private message survived too, but a new "bob" without an account is not the
        # bob it was sent to: he does not read it (history.private_floor).
        bob2 = connect(server.irc_port)
        bob2.register("bob", " ".join(CAPS))
        bob2.send("CHATHISTORY LATEST alice * 10")
        assert texts(bob2.read_batch("chathistory")) == []
        with sqlite3.connect(server.data_dir / "salon.db") as db:
            count = db.execute("SELECT COUNT(*) FROM history WHERE command = 'PRIVMSG'")
            assert count.fetchone()[0] == 6
            row = db.execute("SELECT text, tags FROM history WHERE dest = 'bob'").fetchone()
            assert row == ("a private word", '[["+draft/reply", "x"]]')
    finally:
        server.stop()


def test_a_private_channels_history_is_gone_after_a_crash_too(tmp_path: Path, connect: Any) -> None:
    """A server killed with a secret channel still open cannot empty it: the next start
    deletes its history (whoever re-creates the channel must not read it)."""
    server = SalonProcess(tmp_path).start()
    try:
        alice = connect(server.irc_port)
        alice.register("alice", " ".join(CAPS))
        alice.send("JOIN #secret,#public")
        alice.send("MODE #secret +s")
        alice.send("PRIVMSG #secret :the code is 1234")
        alice.send("PRIVMSG #public :hello all")
        alice.send("PING sync")
        alice.expect("PONG")  # after the messages' commit, and the MODE's before it
        server.stop(signal.SIGKILL)
        server.start()
        eve = connect(server.irc_port)
        eve.register("eve", " ".join(CAPS))
        eve.send("JOIN #secret,#public")
        eve.expect(r" 366 eve #public ")
        eve.send("CHATHISTORY LATEST #secret * 10")
        assert texts(eve.read_batch("chathistory")) == []
        eve.send("CHATHISTORY LATEST #public * 10")
        assert texts(eve.read_batch("chathistory")) == ["hello all"]
    finally:
        server.stop()
