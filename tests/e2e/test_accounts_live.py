"""Accounts on a real salon process: what the database holds, restarts, the admin CLI and the log."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from accounthelpers import (
    plain_blob,
    sasl_plain_login,
)
from conftest import ROOT, LineClient


def test_database_holds_no_plaintext_password(make_salon: Any, connect: Any) -> None:
    secret = "Zebra-Quartz-7781-unique"
    s = make_salon()
    c = connect(s.irc_port)
    c.register("alice")
    c.send(f"PRIVMSG NickServ :REGISTER {secret}")
    c.expect(r"NOTICE alice :Account created")
    c.send("JOIN #secret")
    c.expect(r"JOIN #secret")
    c.send("CS REGISTER #secret")
    c.expect(r"now registered")
    c.send("QUIT")
    s.stop()
    files = list(s.data_dir.iterdir())
    assert any(f.name == "salon.db" for f in files)
    for f in files:
        data = f.read_bytes()
        assert secret.encode() not in data, f
        assert secret.encode("utf-16-le") not in data, f
    log = s.log()
    assert secret not in log
    # The argon2id hash is there instead.
    db = b"".join(f.read_bytes() for f in files)
    assert b"$argon2id$" in db


def test_accounts_and_channels_survive_a_real_restart(tmp_path: Path, connect: Any) -> None:
    from conftest import SalonProcess

    s = SalonProcess(tmp_path, accounts={"password_min_length": 4}).start()
    try:
        c = connect(s.irc_port)
        c.register("alice")
        c.send("REGISTER * * :sesame")
        c.expect(r"REGISTER SUCCESS alice")
        c.send("JOIN #keep")
        c.send("TOPIC #keep :kept topic")
        c.send("MODE #keep +b *!*@banned.example")
        c.send("CS REGISTER #keep")
        c.expect(r"now registered")
        c.send("QUIT")
        s.stop()
        s.start()
        d = connect(s.irc_port)
        sasl_plain_login(d, "bob", "alice", "sesame")
        d.expect(r" 001 ")
        d.send("JOIN #keep")
        d.expect(r" 332 bob #keep :kept topic")
        d.send("MODE #keep b")
        d.expect(r" 367 bob #keep \*!\*@banned.example")
        d.send("NAMES #keep")
        d.expect(r" 353 bob = #keep :?@bob")  # founder: opped on join by ChanServ
    finally:
        s.stop()


def test_admin_cli_creates_an_account_for_sasl(tmp_path: Path, connect: Any) -> None:
    from conftest import SalonProcess

    s = SalonProcess(tmp_path)
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "salon",
            "account",
            "create",
            "carol",
            "--config",
            str(s.config_path),
        ],
        input="long enough password\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert "created account carol" in res.stdout
    again = subprocess.run(
        [
            sys.executable,
            "-m",
            "salon",
            "account",
            "create",
            "carol",
            "pw123456",
            "--config",
            str(s.config_path),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert again.returncode == 2 and "already exists" in again.stderr
    s.start()
    try:
        c: LineClient = connect(s.irc_port)
        c.send("CAP REQ :sasl")
        c.send("AUTHENTICATE PLAIN")
        c.expect(r"AUTHENTICATE \+")
        c.send("AUTHENTICATE " + plain_blob("carol", "long enough password"))
        c.expect(r" 900 \* .* carol :")
        c.expect(r" 903 ")
    finally:
        s.stop()


def test_failed_logins_are_logged_without_the_password(make_salon: Any, connect: Any) -> None:
    s = make_salon()
    c = connect(s.irc_port)
    c.send("CAP REQ :sasl")
    c.send("AUTHENTICATE PLAIN")
    c.expect(r"AUTHENTICATE \+")
    c.send("AUTHENTICATE " + plain_blob("ghost", "Hunter2-guess"))
    c.expect(r" 904 ")
    time.sleep(0.2)
    log = s.log()
    assert "failed login account=ghost" in log
    assert "Hunter2-guess" not in log


def test_rejoin_survives_a_restart(tmp_path: Path, connect: Any) -> None:
    """accounts.rejoin: the channels of the account's last session are kept in the
    database, so a restart (here while the user is connected) does not forget them."""
    from conftest import SalonProcess

    s = SalonProcess(tmp_path, accounts={"password_min_length": 4}).start()
    try:
        c = connect(s.irc_port)
        c.register("alice")
        c.send("REGISTER * * :sesame")
        c.expect(r"REGISTER SUCCESS alice")
        c.send("JOIN #one,#two")
        c.expect(r" 366 alice #two ")
        s.stop(signal.SIGTERM)
        s.start()
        d = connect(s.irc_port)
        sasl_plain_login(d, "alice", "alice", "sesame")
        d.expect(r":alice!\S+ JOIN #one")
        d.expect(r":alice!\S+ JOIN #two")
    finally:
        s.stop()
