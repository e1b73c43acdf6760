"""salon serve on PostgreSQL ([postgres]): real server processes on a real PostgreSQL
(bench/pgserver.py), over real IRC connections."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from accounthelpers import sasl_plain_login
from conftest import LineClient, SalonProcess, free_port
from historyhelpers import SEARCH, texts

PASSWORD = "sesame-pg"
HISTORY = "batch draft/chathistory server-time message-tags"


def pg_salon(tmp: Path, dsn: str, **overrides: Any) -> SalonProcess:
    tmp.mkdir(exist_ok=True)
    sections: dict[str, Any] = {
        "postgres": {"dsn": dsn, "retry_for": 5.0},
        "accounts": {"password_min_length": 4},
    }
    for section, values in overrides.items():
        sections.setdefault(section, {}).update(values)
    return SalonProcess(tmp, **sections)


def sasl_plain(conn: LineClient, nick: str, account: str, password: str, caps: str = "") -> None:
    sasl_plain_login(conn, nick, account, password, caps)
    conn.expect(r" 376 ")


def test_register_message_history_search_and_restart(
    tmp_path: Path, postgres_dsn: str, connect: Any
) -> None:
    import psycopg

    s = pg_salon(tmp_path, postgres_dsn).start()
    try:
        s.wait_log("store: PostgreSQL")
        alice = connect(s.irc_port)
        alice.register("alice", " ".join(SEARCH))
        alice.send(f"REGISTER * * :{PASSWORD}")
        alice.expect(r"REGISTER SUCCESS alice")
        bob = connect(s.irc_port)
        bob.register("bob", " ".join(SEARCH))
        for c, nick in ((alice, "alice"), (bob, "bob")):
            c.send("JOIN #pg")
            c.expect(rf" 366 {nick} #pg ")
        said = [f"the walrus number {i} sings" for i in range(5)] + ["a quiet heron"]
        for text in said:
            alice.send(f"PRIVMSG #pg :{text}")
        for text in said:
            bob.expect(re.escape(text))
        alice.send("PRIVMSG bob :walrus in private")
        bob.expect("walrus in private")

        bob.send("CHATHISTORY LATEST #pg * 10")
        assert texts(bob.read_batch("chathistory")) == said
        bob.send("SEARCH :text=walr")
        found = texts(bob.read_batch("soju.im/search"))
        assert found == [*said[:5], "walrus in private"]
        bob.send("SEARCH :text=heron;in=#pg")
        assert texts(bob.read_batch("soju.im/search")) == ["a quiet heron"]

        # The store is the database: nothing in the data directory but its lock.
        assert not (s.data_dir / "salon.db").exists()
        with psycopg.connect(postgres_dsn) as conn:
            rows = conn.execute(
                "SELECT count(*) FROM history WHERE target = '#pg' AND command = 'PRIVMSG'"
            ).fetchone()
            assert rows == (len(said),)
            assert conn.execute("SELECT name FROM accounts").fetchall() == [("alice",)]

        alice.send("QUIT")
        bob.send("QUIT")
        assert s.stop() == 0
        s.start()
        carol = connect(s.irc_port)
        sasl_plain(carol, "carol", "alice", PASSWORD, " ".join(SEARCH))
        carol.send("CHATHISTORY LATEST #pg * 10")
        # carol is not in #pg: a channel without +s is readable, and has only these.
        assert texts(carol.read_batch("chathistory")) == said
        carol.send("SEARCH :text=walrus private")
        assert texts(carol.read_batch("soju.im/search")) == ["walrus in private"]
    finally:
        s.stop()


def cloaked_host(port: int, nick: str) -> str:
    c = LineClient(port)
    try:
        c.register(nick)
        c.send(f"WHOIS {nick}")
        return c.expect(rf" 311 {nick} {nick} \S+ (\S+) ").group(1)
    finally:
        c.close()


def fake_salt(port: int, account: str) -> str:
    """The salt a server gives in a SCRAM exchange for an account that does not exist:
    made of the server's account secret (scram.fake_credentials)."""
    c = LineClient(port)
    try:
        c.send("CAP LS 302")
        c.send("CAP REQ :sasl")
        c.send("NICK probe")
        c.send("USER probe 0 * :probe")
        c.send("AUTHENTICATE SCRAM-SHA-256")
        c.expect(r"AUTHENTICATE \+")
        first = f"n,,n={account},r=clientnonce0123456789"
        c.send("AUTHENTICATE " + base64.b64encode(first.encode()).decode())
        reply = c.expect(r"AUTHENTICATE (\S+)").group(1)
        server_first = base64.b64decode(reply).decode()
        return dict(part.split("=", 1) for part in server_first.split(","))["s"]
    finally:
        c.close()


def test_two_servers_on_one_database_share_the_cloak_and_the_account_secret(
    tmp_path: Path, postgres_dsn: str, postgres_server: Any, connect: Any
) -> None:
    other_db = postgres_server.dsn(postgres_server.create_database())
    cloak = {"cloak": {"enabled": True}}
    a = pg_salon(tmp_path / "a", postgres_dsn, **cloak).start()
    servers = [a]
    try:
        c = connect(a.irc_port)
        c.register("alice")
        c.send(f"REGISTER * * :{PASSWORD}")
        c.expect(r"REGISTER SUCCESS alice")
        b = pg_salon(tmp_path / "b", postgres_dsn, **cloak).start()
        servers.append(b)
        # A database of its own: secrets of its own (the comparison can tell).
        other = pg_salon(tmp_path / "other", other_db, **cloak).start()
        servers.append(other)
        host_a, host_b = cloaked_host(a.irc_port, "u1"), cloaked_host(b.irc_port, "u2")
        assert host_a == host_b and "127.0.0.1" not in host_a
        assert cloaked_host(other.irc_port, "u3") != host_a
        salt_a, salt_b = fake_salt(a.irc_port, "nobody"), fake_salt(b.irc_port, "nobody")
        assert salt_a == salt_b
        assert fake_salt(other.irc_port, "nobody") != salt_a
        # The account registered on a logs in on b (b loaded it at start).
        d = connect(b.irc_port)
        sasl_plain(d, "alice2", "alice", PASSWORD)
    finally:
        for s in servers:
            s.stop()


def serve_once(tmp_path: Path, postgres: str) -> subprocess.CompletedProcess[str]:
    conf = tmp_path / "salon.toml"
    conf.write_text(
        f'[server]\ndata_dir = "{tmp_path / "data"}"\n'
        f"[listen]\nirc_port = {free_port()}\nplain_port = 0\ntls_port = 0\nhttp_port = 0\n"
        f"[postgres]\n{postgres}\n"
    )
    return subprocess.run(
        [sys.executable, "-m", "salon", "serve", "--config", str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("postgres", "needle"),
    [
        ("host = '127.0.0.1'\nport = {port}\nconnect_timeout = 2", "cannot use PostgreSQL"),
        ("dsn = 'nonsense'", "postgres.dsn: "),
        ("dsn = 'host=127.0.0.1 bogus=1'", "postgres.dsn: "),
        (
            "host = '127.0.0.1'\npassword_env = 'SALON_TEST_UNSET_PG'",
            "SALON_TEST_UNSET_PG is not set",
        ),
        ("dsn = '{dsn}'\nuser = 'nobody'", "go with host"),
    ],
)
def test_a_database_that_cannot_be_used_is_one_line_and_exit_2(
    tmp_path: Path, postgres_dsn: str, postgres: str, needle: str
) -> None:
    done = serve_once(tmp_path, postgres.format(port=free_port(), dsn=postgres_dsn))
    assert done.returncode == 2, done.stderr
    err = done.stderr.strip()
    assert "Traceback" not in err and "\n" not in err, err
    assert needle in err, err


def test_a_role_the_database_refuses_is_one_line_and_exit_2(
    tmp_path: Path, postgres_dsn: str
) -> None:
    done = serve_once(tmp_path, f"dsn = '{postgres_dsn} user=nosuchrole'")
    assert done.returncode == 2, done.stderr
    err = done.stderr.strip()
    assert err.startswith("salon serve: cannot use PostgreSQL: ") and "\n" not in err, err
    assert "nosuchrole" in err


# ---------------------------------------------------------------------------- lost connections


def stored_texts(dsn: str, target: str) -> list[str]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT params[array_length(params, 1)] FROM history"
            " WHERE target = %s AND command = 'PRIVMSG' ORDER BY time, id",
            (target,),
        ).fetchall()
    return [str(r[0]) for r in rows]


def sender_and_receiver(connect: Any, port: int) -> tuple[LineClient, LineClient]:
    """alice (with echo-message) and bob in #r."""
    alice, bob = connect(port), connect(port)
    alice.register("alice", "echo-message")
    # With draft/chathistory: no replay on join, which may hold what is said in the join's
    # millisecond, and is delivered live too.
    bob.register("bob", HISTORY)
    for c, nick in ((alice, "alice"), (bob, "bob")):
        c.send("JOIN #r")
        c.expect(rf" 366 {nick} #r ")
    return alice, bob


def sent_and_seen(
    sender: LineClient, receiver: LineClient, channel: str
) -> tuple[list[str], list[str], list[str]]:
    """What ``sender`` saw echoed and refused (MESSAGE_NOT_STORED, by the text's number:
    the FAIL names no message), and what ``receiver`` got, once both are quiet."""
    echoed, refused, got = [], [], []
    for line in sender.read_all(quiet=3.0):
        if f" PRIVMSG {channel} :" in line:
            echoed.append(line.split(f" PRIVMSG {channel} :", 1)[1])
        elif "MESSAGE_NOT_STORED" in line:
            refused.append(line)
    for line in receiver.read_all(quiet=1.0):
        if f" PRIVMSG {channel} :" in line:
            got.append(line.split(f" PRIVMSG {channel} :", 1)[1])
    return echoed, refused, got


def test_postgresql_restarted_under_traffic_loses_and_doubles_nothing(
    tmp_path: Path, own_postgres: Any, connect: Any
) -> None:
    dsn = own_postgres.dsn(own_postgres.create_database())
    s = pg_salon(tmp_path / "salon", dsn, postgres={"retry_for": 20.0}).start()
    try:
        alice, bob = sender_and_receiver(connect, s.irc_port)
        restart = threading.Thread(target=own_postgres.restart, kwargs={"down": 1.0})
        count = 300
        for i in range(count):
            if i == count // 4:
                restart.start()
            alice.send(f"PRIVMSG #r :message {i}")
            time.sleep(0.01)
        restart.join()
        echoed, refused, got = sent_and_seen(alice, bob, "#r")
        sent = [f"message {i}" for i in range(count)]
        # Every message waited for the database and went out once, in order.
        assert refused == []
        assert got == echoed == sent
        assert stored_texts(dsn, "#r") == sent
        # The outage was real: the writer lost its connection and found it again.
        log = s.wait_log("storage recovered after")
        assert "storage failing" in log
        # The readers find the database again too.
        bob.send("CHATHISTORY LATEST #r * 3")
        assert texts(bob.read_batch("chathistory")) == sent[-3:]
    finally:
        s.stop()


def test_messages_are_refused_when_postgresql_stays_away_past_retry_for(
    tmp_path: Path, own_postgres: Any, connect: Any
) -> None:
    dsn = own_postgres.dsn(own_postgres.create_database())
    s = pg_salon(tmp_path / "salon", dsn, postgres={"retry_for": 1.0}).start()
    try:
        alice, bob = sender_and_receiver(connect, s.irc_port)
        alice.send("PRIVMSG #r :said before")
        bob.expect(r":said before$")
        alice.expect(r":said before$")
        own_postgres.halt()
        for i in range(5):
            alice.send(f"PRIVMSG #r :away {i}")
        echoed, refused, got = sent_and_seen(alice, bob, "#r")
        assert echoed == got == []
        assert refused and all(
            re.search(r" FAIL PRIVMSG MESSAGE_NOT_STORED ", line) for line in refused
        ), refused
        own_postgres.start(own_postgres.port)
        alice.send("PRIVMSG #r :said after")
        bob.expect(r":said after$", timeout=10)
        assert stored_texts(dsn, "#r") == ["said before", "said after"]
    finally:
        s.stop()


def test_account_commands_refuse_a_postgresql_store(tmp_path: Path) -> None:
    conf = tmp_path / "salon.toml"
    conf.write_text(f'[server]\ndata_dir = "{tmp_path / "data"}"\n[postgres]\nhost = "db"\n')
    for action in (["list"], ["create", "alice", "sesame-long"], ["delete", "alice"]):
        done = subprocess.run(
            [sys.executable, "-m", "salon", "account", *action, "--config", str(conf)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, done.stderr
        err = done.stderr.strip()
        assert "\n" not in err and "the store is PostgreSQL" in err, err
    assert not (tmp_path / "data").exists()  # nothing made in the data directory
