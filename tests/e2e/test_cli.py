"""The ``salon`` command line: serve flags, check-config, hash-password, one-line errors."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import LineClient, free_port, wait_log, wait_port, write_config

pytestmark = pytest.mark.timeout(30)

EXAMPLE = Path(__file__).resolve().parents[2] / "src" / "salon" / "salon.example.toml"


def salon_cmd(*args: str) -> list[str]:
    if args[:1] == ("serve",):
        # Not the default 6697 and 8080: tests run side by side.
        for flag in ("--tls-port", "--http-port"):
            if flag not in args:
                args = (*args, flag, "0")
    return [sys.executable, "-m", "salon", *args]


def run_salon(*args: str, cwd: Path | None = None, timeout: float = 20.0) -> Any:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run(
        salon_cmd(*args), capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env
    )


def assert_one_line_error(result: Any) -> str:
    """Exit code 2, and exactly one line on stderr, never a traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    err = result.stderr.strip()
    assert err, "no error message"
    assert "\n" not in err, f"stderr is not one line: {result.stderr!r}"
    return err


class Served:
    """``salon serve`` with explicit flags, stopped (and checked) at the end."""

    def __init__(self, args: list[str], cwd: Path, n: int = 0) -> None:
        self.cwd = cwd
        # One file per server: a second server of a test must not truncate the first's log
        # while it still writes to it.
        self.stderr_path = cwd / (f"stderr{n}.log" if n else "stderr.log")
        self._err = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            salon_cmd("serve", *args), stdout=subprocess.DEVNULL, stderr=self._err, cwd=cwd
        )

    def log(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_log(self, text: str, timeout: float = 10.0) -> str:
        return wait_log(self.log, text, timeout)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._err.close()
        return self.proc.returncode


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    started: list[Served] = []

    def factory(*args: str, cwd: Path | None = None) -> Served:
        s = Served(list(args), cwd or tmp_path, len(started))
        started.append(s)
        return s

    yield factory
    for s in started:
        s.stop()


def register(port: int, nick: str) -> list[str]:
    c = LineClient(port)
    try:
        c.register(nick)
        return c.lines
    finally:
        c.close()


# ---------------------------------------------------------------------- serve


def test_serve_help_documents_flags_and_default_data_dir() -> None:
    result = run_salon("serve", "--help")
    assert result.returncode == 0
    out = result.stdout
    for flag in ("--host", "--irc-port", "--plain-port", "--data-dir", "--server-name", "--config"):
        assert flag in out
    assert "./salon-data" in out
    assert "0 = off" in out


def test_serve_flags_default_data_dir_and_database(serve: Any, tmp_path: Path) -> None:
    irc, plain = free_port(), free_port()
    s = serve(
        "--host",
        "127.0.0.1",
        "--irc-port",
        str(irc),
        "--plain-port",
        str(plain),
        "--server-name",
        "flags.example",
    )
    wait_port(irc, proc=s.proc)
    wait_port(plain, proc=s.proc)
    lines = register(irc, "alice")
    assert any(line.startswith(":flags.example 001 alice ") for line in lines), lines
    # No --data-dir: ./salon-data in the working directory, holding the SQLite database.
    data = tmp_path / "salon-data"
    assert data.is_dir()
    db = data / "salon.db"
    assert db.is_file()
    assert db.read_bytes()[:16] == b"SQLite format 3\x00"
    assert s.stop() == 0


def test_serve_data_dir_flag(serve: Any, tmp_path: Path) -> None:
    irc = free_port()
    data = tmp_path / "nested" / "state"
    s = serve("--irc-port", str(irc), "--plain-port", "0", "--data-dir", str(data))
    wait_port(irc, proc=s.proc)
    assert (data / "salon.db").is_file()
    assert not (tmp_path / "salon-data").exists()


def test_port_zero_turns_a_listener_off(serve: Any, tmp_path: Path) -> None:
    plain = free_port()
    data = tmp_path / "d"
    s = serve("--irc-port", "0", "--plain-port", str(plain), "--data-dir", str(data))
    wait_port(plain, proc=s.proc)
    c = LineClient(plain)
    try:
        c.expect("Your name:")
    finally:
        c.close()
    log = s.wait_log("listening for plain")
    assert "listening for irc" not in log

    irc = free_port()
    s2 = serve("--irc-port", str(irc), "--plain-port", "0", "--data-dir", str(data) + "2")
    wait_port(irc, proc=s2.proc)
    assert "listening for plain" not in s2.wait_log("listening for irc")


def test_config_file_and_flags_override_it(serve: Any, tmp_path: Path) -> None:
    irc = free_port()
    cfg = tmp_path / "salon.toml"
    write_config(
        cfg,
        {
            "server": {"name": "from.config", "data_dir": str(tmp_path / "cfgdata")},
            "listen": {"host": "127.0.0.1", "irc_port": free_port(), "plain_port": 0},
        },
    )
    s = serve("--config", str(cfg), "--irc-port", str(irc), "--server-name", "from.flag")
    wait_port(irc, proc=s.proc)
    lines = register(irc, "bob")
    assert any(line.startswith(":from.flag 001 bob ") for line in lines), lines
    assert (tmp_path / "cfgdata" / "salon.db").is_file()


def test_both_listeners_off_is_an_error(tmp_path: Path) -> None:
    result = run_salon("serve", "--irc-port", "0", "--plain-port", "0", cwd=tmp_path)
    err = assert_one_line_error(result)
    assert "listener" in err


@pytest.mark.parametrize(
    "args",
    [
        ["--bogus"],
        ["--irc-port", "99999"],
        ["--irc-port", "six"],
        ["--server-name", "no dots here"],
        ["--config", "does-not-exist.toml"],
        ["extra-positional"],
        ["--data-dir", ""],
        ["--server-name", "bad:name"],
    ],
)
def test_serve_bad_flag_one_line_exit_2(args: list[str], tmp_path: Path) -> None:
    assert_one_line_error(run_salon("serve", *args, cwd=tmp_path))


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[limits]\nsendq = "lots"\n', "limits.sendq"),
        ('[plain]\nleave_words = ["bye", "see you"]\n', "plain.leave_words: 'see you'"),
        ('[server]\ndefault_channel = "lobby"\n', "server.default_channel: 'lobby'"),
    ],
)
def test_serve_bad_config_one_line_exit_2(text: str, needle: str, tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    err = assert_one_line_error(run_salon("serve", "--config", str(cfg), cwd=tmp_path))
    assert needle in err


def test_serve_unreadable_motd_file_one_line_exit_2(tmp_path: Path) -> None:
    cfg = tmp_path / "motd.toml"
    write_config(
        cfg,
        {
            "server": {"motd_file": str(tmp_path / "missing-motd.txt")},
            "listen": {"irc_port": free_port(), "plain_port": 0},
        },
    )
    err = assert_one_line_error(run_salon("serve", "--config", str(cfg), cwd=tmp_path))
    assert "motd_file" in err


def test_serve_unusable_data_dir_one_line_exit_2(tmp_path: Path) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("not a directory")
    result = run_salon(
        "serve", "--irc-port", str(free_port()), "--plain-port", "0", "--data-dir", str(blocker)
    )
    err = assert_one_line_error(result)
    assert err.endswith(f"the data directory {blocker} is not a directory"), err


@pytest.mark.parametrize("which", ["irc", "plain"])
def test_serve_port_in_use_one_line_exit_2(which: str, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        other = free_port()
        irc, plain = (taken, other) if which == "irc" else (other, taken)
        result = run_salon(
            "serve", "--irc-port", str(irc), "--plain-port", str(plain), cwd=tmp_path
        )
    err = assert_one_line_error(result)
    assert str(taken) in err
    assert "in use" in err


def test_serve_bad_host_one_line_exit_2(tmp_path: Path) -> None:
    result = run_salon(
        "serve", "--host", "256.1.2.3", "--irc-port", str(free_port()), "--plain-port", "0",
        cwd=tmp_path,
    )  # fmt: skip
    assert_one_line_error(result)


# ---------------------------------------------------------------------- check-config


def test_check_config_example_ok() -> None:
    result = run_salon("check-config", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout
    assert result.stderr == ""


def test_check_config_minimal_ok(tmp_path: Path) -> None:
    cfg = tmp_path / "ok.toml"
    write_config(
        cfg,
        {
            "server": {"name": "chat.example.org"},
            "listen": {"irc_port": 6697, "tls_port": 6698, "plain_port": 0},
            "flood": {"exempt": ["10.0.0.0/8", "::1/128"]},
            "log": {"messages": True},
        },
    )
    result = run_salon("check-config", str(cfg))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[server\nname = 'x.y'\n", "TOML"),
        ("[server]\nname = \n", "TOML"),
        ("[server]\nnmae = 'x.y'\n", "server.nmae"),
        ("[nosuchsection]\n", "nosuchsection"),
        ("[limits]\nsendq = 'big'\n", "limits.sendq"),
        ("[limits]\nsendq = 10\n", "limits.sendq"),
        ("[listen]\nirc_port = 70000\n", "listen.irc_port"),
        ("[flood]\nexempt = ['not-a-net']\n", "flood.exempt"),
        ("[flood]\nenabled = 'yes'\n", "flood.enabled"),
        ("[log]\nlevel = 'loud'\n", "log.level"),
        ("[[oper]]\nname = 'a'\npassword = 'plaintext'\n", "oper[0].password"),
        ("server = 3\n", "server"),
        ('[server]\ndata_dir = "a\\u0000b"\n', "server.data_dir"),
        ("[server]\ndata_dir = ''\n", "server.data_dir"),
        ("[server]\nname = ':evil.name'\n", "server.name"),
        ('[server]\ndescription = "two\\r\\nlines"\n', "server.description"),
        ("[limits]\nping_interval = nan\n", "limits.ping_interval"),
        ("[limits]\nregistration_timeout = inf\n", "limits.registration_timeout"),
        ("[limits]\nping_timeout = -1\n", "limits.ping_timeout"),
        ("[listen]\nhost = ''\n", "listen.host"),
        ("[listen]\nhost = '  '\n", "listen.host"),
        ("[listen]\nplain_port = 6667\n", "port 6667 is also listen.irc_port"),
        ("[listen]\ntls_port = 7000\nplain_port = 7000\n", "listen.plain_port"),
        ("[tls]\ncert = '/nonexistent/c.pem'\nkey = '/nonexistent/k.pem'\n", "tls.cert"),
        ("[tls]\ncert = '/proc/version'\nkey = '/proc/version'\n", "tls: cannot load"),
        ("[listen]\nirc_port = 0\ntls_port = 0\nplain_port = 0\nhttp_port = 0\n", "all 0"),
        ("[plain]\nleave_words = 'bye'\n", "plain.leave_words: expected a list of words"),
        ("[plain]\nleave_words = ['bye', 3]\n", "plain.leave_words: expected a list of words"),
        ("[plain]\nleave_words = ['']\n", "plain.leave_words: '' must be 1 to 50"),
        ("[plain]\nleave_words = ['see you']\n", "must not contain spaces"),
        ("[plain]\nleave_words = [' bye']\n", "must not contain spaces"),
        ('[plain]\nleave_words = ["bye\\u0007"]\n', "'bye\\x07' must not contain"),
        ('[plain]\nleave_words = ["by\\u200be"]\n', "invisible characters"),
        ("[plain]\nleave_words = ['" + "o" * 51 + "']\n", "must be 1 to 50 characters"),
        ("[plain]\nleave = ['bye']\n", "plain.leave: unknown key"),
        ("[cluster]\n", "cluster.redis: '' must be a Redis URL"),
        ("[cluster]\nredis = 'http://x'\n", "cluster.redis"),
        ("[cluster]\nredis = 'redis://h'\nnode = 'a b'\n", "cluster.node"),
        ("[cluster]\nredis = 'redis://h'\nprefix = 'a b'\n", "cluster.prefix"),
        ("[cluster]\nredis = 'redis://h'\nnode_ttl = 0.1\n", "cluster.node_ttl"),
        ("[cluster]\nredis = 'redis://h'\nlog_maxlen = 5\n", "cluster.log_maxlen"),
        ("[cluster]\nredis = 'redis://h'\nredis_grace = 0\n", "cluster.redis_grace"),
        ("[cluster]\nredis = 'redis://h'\nmax_waiting = 5\n", "cluster.max_waiting"),
        ("[cluster]\nredis = 'redis://h'\nttl = 3\n", "cluster.ttl: unknown key"),
        ("[postgres]\n", "postgres: set either dsn or host"),
        ("[postgres]\ndsn = 'dbname=a'\nhost = 'b'\n", "postgres: set either dsn or host"),
        ("[postgres]\ndsn = 'dbname=a'\nport = 5433\n", "go with host, not with dsn"),
        ("[postgres]\nhost = 'db'\nport = 0\n", "postgres.port: 0 is out of range"),
        ("[postgres]\nhost = 'db'\nreaders = 0\n", "postgres.readers"),
        ("[postgres]\nhost = 'db'\nretry_for = -1\n", "postgres.retry_for"),
        ("[postgres]\nhost = 'db'\nretry_for = 'long'\n", "postgres.retry_for: expected"),
        ("[postgres]\nhost = 'db'\npassword_file = '/nonexistent'\n", "postgres.password_file"),
        ("[postgres]\nhost = 'db'\npassword_env = 'A-B'\n", "postgres.password_env"),
        (
            "[postgres]\nhost = 'db'\npassword_env = 'A'\npassword_file = '/etc/hostname'\n",
            "not both",
        ),
        ("[postgres]\nhost = 'db'\npool = 3\n", "postgres.pool: unknown key"),
        ("postgres = 1\n", "[postgres] must be a table"),
    ],
)
def test_check_config_bad_one_line_exit_2(text: str, needle: str, tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    err = assert_one_line_error(run_salon("check-config", str(cfg)))
    assert needle in err


def test_check_config_not_utf8(tmp_path: Path) -> None:
    cfg = tmp_path / "latin1.toml"
    cfg.write_bytes(b"[server]\n# caf\xe9\nname = 'a.b'\n")
    err = assert_one_line_error(run_salon("check-config", str(cfg)))
    assert "UTF-8" in err


def test_check_config_reads_the_motd_file(tmp_path: Path) -> None:
    cfg = tmp_path / "motd.toml"
    write_config(cfg, {"server": {"motd_file": str(tmp_path / "missing.txt")}})
    err = assert_one_line_error(run_salon("check-config", str(cfg)))
    assert "server.motd_file" in err
    (tmp_path / "missing.txt").write_bytes(b"\xff\xfe not utf-8")
    err = assert_one_line_error(run_salon("check-config", str(cfg)))
    assert "server.motd_file" in err
    (tmp_path / "missing.txt").write_text("Hello!\n")
    assert run_salon("check-config", str(cfg)).returncode == 0


def test_serve_without_a_reachable_redis_is_one_line_exit_2(tmp_path: Path) -> None:
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])  # closed again: nothing listens there
    port, irc = ports
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f"[server]\ndata_dir = '{tmp_path / 'data'}'\n[listen]\nhost = '127.0.0.1'\n"
        f"irc_port = {irc}\nplain_port = 0\n"
        f"[cluster]\nredis = 'redis://127.0.0.1:{port}/0'\n"
    )
    err = assert_one_line_error(run_salon("serve", "--config", str(cfg)))
    assert f"cannot use Redis at redis://127.0.0.1:{port}/0" in err


def test_cluster_status_needs_a_cluster_section(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[server]\nname = 'a.b'\n")
    err = assert_one_line_error(run_salon("cluster", "status", "--config", str(cfg)))
    assert err == (
        f"salon cluster status: {cfg} has no [cluster] section,"
        " and no salon serve --workers runs on salon-data"
    )


def test_check_config_missing_file(tmp_path: Path) -> None:
    assert_one_line_error(run_salon("check-config", str(tmp_path / "nope.toml")))


def test_check_config_needs_a_file() -> None:
    assert_one_line_error(run_salon("check-config"))


def test_bad_subcommand_and_no_subcommand() -> None:
    assert_one_line_error(run_salon("frobnicate"))
    result = run_salon()
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout


# ---------------------------------------------------------------------- hash-password


def test_hash_password_prints_argon2id() -> None:
    from argon2 import PasswordHasher

    result = run_salon("hash-password", "s3cret pw")
    assert result.returncode == 0, result.stderr
    hashed = result.stdout.strip()
    assert hashed.startswith("$argon2id$")
    assert "\n" not in hashed
    assert PasswordHasher().verify(hashed, "s3cret pw")


def test_hash_password_from_stdin_and_empty() -> None:
    from argon2 import PasswordHasher

    env = dict(os.environ)
    result = subprocess.run(
        salon_cmd("hash-password"), input="piped\n", capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    assert PasswordHasher().verify(result.stdout.strip(), "piped")
    empty = subprocess.run(
        salon_cmd("hash-password"), input="\n", capture_output=True, text=True, env=env
    )
    assert_one_line_error(empty)


def test_serve_stops_cleanly_on_sigterm_without_clients(serve: Any, tmp_path: Path) -> None:
    irc = free_port()
    s = serve("--irc-port", str(irc), "--plain-port", "0", "--data-dir", str(tmp_path / "x"))
    wait_port(irc, proc=s.proc)
    t0 = time.monotonic()
    assert s.stop() == 0
    assert time.monotonic() - t0 < 5
    assert "Traceback" not in s.log()


def test_server_log_records_connections_in_order(serve: Any, tmp_path: Path) -> None:
    """The server log (stderr) is written in batches, not per event: a registration shows
    up within a moment, and SIGTERM writes what is pending before it says it shuts down."""
    irc = free_port()
    s = serve("--irc-port", str(irc), "--plain-port", "0", "--data-dir", str(tmp_path / "x"))
    wait_port(irc, proc=s.proc)
    register(irc, "logged")
    deadline = time.monotonic() + 5
    while "nick=logged" not in s.log() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "register id=" in s.log() and "nick=logged" in s.log(), s.log()
    c = LineClient(irc)
    try:
        c.register("last")
        assert s.stop() == 0
    finally:
        c.close()
    log = s.log()
    assert log.index("nick=logged") < log.index("nick=last") < log.index("shutting down"), log
    assert "quit id=" in log[log.index("nick=last") :], log


def _ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_available(), reason="no IPv6 loopback")
def test_host_any_ipv6_also_accepts_ipv4(serve: Any, tmp_path: Path) -> None:
    """The example config says "::" accepts remote clients: IPv4 ones too."""
    irc = free_port()
    s = serve("--host", "::", "--irc-port", str(irc), "--plain-port", "0")
    wait_port(irc, proc=s.proc)
    lines = register(irc, "four")
    assert any(" 001 four " in line for line in lines), lines  # the host is cloaked
    six = socket.create_connection(("::1", irc), timeout=5)
    try:
        six.sendall(b"NICK six\r\nUSER six 0 * :six\r\n")
        data = b""
        while b" 376 " not in data and b" 422 " not in data:
            chunk = six.recv(65536)
            assert chunk
            data += chunk
    finally:
        six.close()
    assert b" 001 six " in data
    s.wait_log(f"[::]:{irc}")


def test_serve_corrupt_database_one_line_exit_2(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "salon.db").write_bytes(b"this is not a database\n" * 200)
    result = run_salon(
        "serve", "--irc-port", str(free_port()), "--plain-port", "0", "--data-dir", str(data)
    )
    err = assert_one_line_error(result)
    assert "database" in err


# ---------------------------------------------------------------------- arguments in any order


@pytest.mark.parametrize(
    "argv",
    [
        ["chat", "127.0.0.1:7000", "--tls", "--insecure", "#python", "--nick", "ada"],
        ["chat", "--tls", "#python", "127.0.0.1:7000", "--insecure", "-n", "ada"],
        ["chat", "#python", "--nick", "ada", "--tls", "--insecure", "127.0.0.1:7000"],
    ],
)
def test_chat_takes_positionals_and_options_in_any_order(argv: list[str]) -> None:
    from salon.cli import build_parser

    args = build_parser().parse_args(argv)
    assert sorted(args.where) == ["#python", "127.0.0.1:7000"]
    assert (args.nick, args.tls, args.insecure) == ("ada", True, True)


def test_account_takes_positionals_and_options_in_any_order() -> None:
    from salon.cli import build_parser

    args = build_parser().parse_args(["account", "create", "--data-dir", "d", "zed", "pw"])
    assert (args.name, args.password, args.data_dir) == ("zed", "pw", "d")
    args = build_parser().parse_args(["account", "create", "zed", "--data-dir", "d", "pw"])
    assert (args.name, args.password, args.data_dir) == ("zed", "pw", "d")


@pytest.mark.parametrize(
    ("argv", "prefix"),
    [
        (["chat", "--bogus"], "salon chat: unrecognized arguments: --bogus"),
        (["account", "create", "a", "b", "c"], "salon account create: unrecognized arguments: c"),
        (["hash-password", "a", "b"], "salon hash-password: unrecognized arguments: b"),
        (["--bogus"], "salon: unrecognized arguments: --bogus"),
    ],
)
def test_unknown_arguments_name_the_subcommand(argv: list[str], prefix: str) -> None:
    assert assert_one_line_error(run_salon(*argv)).startswith(prefix)


def test_errors_are_prefixed_with_the_subcommand(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[listen]\nirc_port = 'x'\n")
    err = assert_one_line_error(run_salon("account", "list", "--config", str(bad)))
    assert err.startswith("salon account: config error: ")
    err = assert_one_line_error(run_salon("check-config", str(bad)))
    assert err.startswith("salon check-config: config error: ")


# ---------------------------------------------------------------------- prompts at a terminal


def run_in_pty(
    argv: list[str], answers: list[tuple[str, bytes]], timeout: float = 20.0
) -> tuple[int, str]:
    """Run ``salon ARGV`` on a pseudo-terminal; for each (prompt, keys) wait for the
    prompt, then type the keys (b"\\x04" is Ctrl-D). Returns (exit code, all output)."""
    import pty
    import select

    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.execv(sys.executable, salon_cmd(*argv))
        finally:
            os._exit(127)
    out = b""
    deadline = time.monotonic() + timeout
    pending = list(answers)

    def read_some() -> bool:
        nonlocal out
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            try:
                data = os.read(fd, 4096)
            except OSError:
                return False
            if not data:
                return False
            out += data
        return True

    try:
        seen = 0
        while time.monotonic() < deadline:
            if pending and pending[0][0].encode() in out[seen:]:
                prompt, keys = pending.pop(0)
                seen = out.index(prompt.encode(), seen) + len(prompt)
                time.sleep(0.1)  # getpass has turned echo off by now
                os.write(fd, keys)
            if not read_some():
                break
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace").replace("\r\n", "\n")


def test_ctrl_d_at_the_hash_password_prompt_is_one_line() -> None:
    code, out = run_in_pty(["hash-password"], [("Password: ", b"\x04")])
    assert code == 2 and "Traceback" not in out, out
    assert out.strip().splitlines()[-1] == "salon hash-password: no password given (end of input)"


def test_ctrl_d_at_the_account_password_prompt_is_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    code, out = run_in_pty(
        ["account", "create", "zed", "--data-dir", str(data)], [("Password: ", b"\x04")]
    )
    assert code == 2 and "Traceback" not in out, out
    assert out.strip().splitlines()[-1] == "salon account: no password given (end of input)"
    assert not data.exists()


def test_ctrl_d_at_the_sasl_password_prompt_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # the pty child's too
    monkeypatch.delenv("SALON_SASL_PASSWORD", raising=False)
    code, out = run_in_pty(
        ["chat", "--plain", "--sasl", "bob", "--nick", "bob", f"127.0.0.1:{free_port()}"],
        [("SASL password for bob: ", b"\x04")],
    )
    assert code == 2 and "Traceback" not in out, out
    assert out.strip().splitlines()[-1] == "salon chat: no password given (end of input)"


def test_hash_password_asks_twice() -> None:
    from argon2 import PasswordHasher

    code, out = run_in_pty(
        ["hash-password"], [("Password: ", b"s3cret pw\n"), ("Again, to confirm: ", b"s3cret pw\n")]
    )
    assert code == 0, out
    assert PasswordHasher().verify(out.strip().splitlines()[-1], "s3cret pw")
    code, out = run_in_pty(
        ["hash-password"], [("Password: ", b"s3cret pw\n"), ("Again, to confirm: ", b"other\n")]
    )
    assert code == 2, out
    assert out.strip().splitlines()[-1] == "salon hash-password: the two passwords differ"


def test_account_create_asks_twice(tmp_path: Path) -> None:
    data = tmp_path / "data"
    code, out = run_in_pty(
        ["account", "create", "zed", "--data-dir", str(data)],
        [("Password: ", b"long enough\n"), ("Again, to confirm: ", b"long enuff\n")],
    )
    assert code == 2 and out.strip().endswith("salon account: the two passwords differ"), out
    assert not data.exists()
    code, out = run_in_pty(
        ["account", "create", "zed", "--data-dir", str(data)],
        [("Password: ", b"long enough\n"), ("Again, to confirm: ", b"long enough\n")],
    )
    assert code == 0 and "created account zed" in out, out


# ---------------------------------------------------------------------- salon account


def test_account_user_errors_exit_2_with_one_line(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    created = run_salon("account", "create", "zed", "long enough", "--data-dir", data)
    assert created.returncode == 0, created.stderr
    cases = [
        (("create", "ZED", "long enough"), "salon account: account 'zed' already exists"),
        (("delete", "nobody"), "salon account: no account 'nobody'"),
        (("create", "NickServ", "long enough"), "salon account: 'NickServ' is the name of a"),
        (("create", "chanserv", "long enough"), "salon account: 'chanserv' is the name of a"),
        (("create", "9lives", "long enough"), "salon account: '9lives' is not a valid nickname"),
        (("create", "amy", "short"), "salon account: Passwords must be at least 8"),
    ]
    for argv, start in cases:
        err = assert_one_line_error(run_salon("account", *argv, "--data-dir", data))
        assert err.startswith(start), (argv, err)
    listed = run_salon("account", "list", "--data-dir", data)
    assert listed.returncode == 0 and listed.stdout.startswith("zed\t"), listed
    deleted = run_salon("account", "delete", "Zed", "--data-dir", data)
    assert deleted.returncode == 0 and deleted.stdout == "deleted account zed\n", deleted


def test_account_commands_create_no_data_dir_unless_they_create_an_account(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    assert_one_line_error(run_salon("account", "create", "zed", "short", "--data-dir", str(data)))
    assert_one_line_error(run_salon("account", "create", "NickServ", "--data-dir", str(data)))
    assert_one_line_error(run_salon("account", "delete", "zed", "--data-dir", str(data)))
    listed = run_salon("account", "list", "--data-dir", str(data))
    assert listed.returncode == 0 and listed.stdout == ""
    assert listed.stderr == f"salon account: no accounts ({data} has no database yet)\n"
    assert not data.exists()
    # Without --data-dir: the default ./salon-data stays uncreated as well.
    assert_one_line_error(run_salon("account", "create", "zed", "short", cwd=tmp_path))
    assert run_salon("account", "list", cwd=tmp_path).returncode == 0
    assert not (tmp_path / "salon-data").exists()


def test_account_data_dir_that_is_a_file(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    for argv in (("list",), ("delete", "zed"), ("create", "zed", "long enough")):
        err = assert_one_line_error(run_salon("account", *argv, "--data-dir", str(afile)))
        assert err == f"salon account: the data directory {afile} is not a directory"
