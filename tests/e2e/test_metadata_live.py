"""draft/metadata-3 on a real salon process over loopback: a subscriber hears of a change,
and an account's keys come back from the database after a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import SalonProcess
from test_accounts_live import sasl_plain_login

CAPS = "draft/metadata-3 batch"


def test_metadata_over_a_real_connection_and_across_a_restart(tmp_path: Path, connect: Any) -> None:
    s = SalonProcess(tmp_path, accounts={"password_min_length": 4}).start()
    try:
        alice = connect(s.irc_port)
        alice.register("alice", CAPS)
        bob = connect(s.irc_port)
        bob.register("bob", CAPS)
        bob.send("METADATA * SUB display-name")
        bob.expect(r" 770 bob display-name")
        alice.send("REGISTER * * :sesame")
        alice.expect(r"REGISTER SUCCESS alice")
        alice.send("JOIN #m")
        alice.expect(r" 366 alice #m ")
        bob.send("JOIN #m")
        bob.expect(r" 366 bob #m ")
        alice.send("METADATA * SET display-name :Alice \u2764")
        alice.expect(r" 761 alice alice display-name \* :Alice \u2764")
        bob.expect(r" 761 bob alice display-name \* :Alice \u2764")
        alice.send("QUIT")
        s.stop()
        s.start()
        again = connect(s.irc_port)
        again.send("CAP LS 302")
        again.send(f"CAP REQ :{CAPS}")
        sasl_plain_login(again, "alice", "alice", "sesame")
        (line,) = [m for m in again.read_batch("metadata") if m.command == "761"]
        assert line.params == ("alice", "alice", "display-name", "*", "Alice \u2764")
    finally:
        s.stop()
