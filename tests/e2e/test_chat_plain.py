"""``salon chat --plain`` through real pipes (subprocess) against a real server, and the
one-line errors of ``salon chat``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port, irc_user

STAMP = r"\[\d\d:\d\d\] "


def chat_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["XDG_CONFIG_HOME"] = str(tmp / "config")
    env.pop("SALON_PASSWORD", None)
    env.pop("SALON_SASL_PASSWORD", None)
    return env


def chat(
    tmp: Path, *args: str, stdin: str = "", timeout: float = 15, sasl_password: str = ""
) -> subprocess.CompletedProcess[str]:
    env = chat_env(tmp)
    if sasl_password:
        env["SALON_SASL_PASSWORD"] = sasl_password
    return subprocess.run(
        [sys.executable, "-m", "salon", "chat", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_pipe_sends_and_exits_0(salon: Any, connect: Any, tmp_path: Path) -> None:
    bob = irc_user(connect, salon.irc_port, "bob", "#lobby")
    where = f"127.0.0.1:{salon.irc_port}"
    result = chat(
        tmp_path, "--plain", "--nick", "bot", where, "#lobby", stdin="hello\nsecond line\n"
    )
    assert result.returncode == 0, result.stderr
    bob.expect(r":bot!\S+ JOIN #lobby")
    bob.expect(r":bot!\S+ PRIVMSG #lobby :?hello$")
    bob.expect(r":bot!\S+ PRIVMSG #lobby :second line")
    bob.expect(r":bot!\S+ QUIT")
    assert re.search(STAMP + r"<bot> hello$", result.stdout, re.M), result.stdout
    assert result.stderr == ""
    # --plain never saves a nick given on the command line.
    assert not (tmp_path / "config" / "salon" / "chat.toml").exists()


def test_with_no_channel_named_it_joins_the_servers_default(
    make_salon: Any, connect: Any, tmp_path: Path
) -> None:
    """No channel on the command line or in chat.toml: the server's meeting place
    (server.default_channel, advertised in ISUPPORT), where the plain-text port is too."""
    s = make_salon(server={"default_channel": "#meet"})
    bob = irc_user(connect, s.irc_port, "bob", "#meet")
    result = chat(tmp_path, "--plain", "--nick", "bot", f"127.0.0.1:{s.irc_port}", stdin="hi\n")
    assert result.returncode == 0, result.stderr
    bob.expect(r":bot!\S+ JOIN #meet")
    bob.expect(r":bot!\S+ PRIVMSG #meet :?hi$")


def test_interactive_receive_and_bye(salon: Any, connect: Any, tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "salon",
            "chat",
            "--plain",
            "-n",
            "carol",
            f"127.0.0.1:{salon.irc_port}",
            "#lobby",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=chat_env(tmp_path),
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert "You joined #lobby" in proc.stdout.readline()
        bob = connect(salon.irc_port)
        bob.register("bob")
        bob.send("JOIN #lobby")
        assert re.fullmatch(STAMP + r"→ bob joined \(bob@127\.0\.0\.1\)\n", proc.stdout.readline())
        bob.send("PRIVMSG #lobby :hi carol")
        assert re.fullmatch(STAMP + r"<bob> hi carol\n", proc.stdout.readline())
        bob.send("PRIVMSG carol :\x01ACTION whispers\x01")
        assert re.fullmatch(STAMP + r"bob \* bob whispers\n", proc.stdout.readline())
        proc.stdin.write("/me waves\nbye\n")
        proc.stdin.flush()
        assert proc.wait(10) == 0
        bob.expect(r"PRIVMSG #lobby :\x01ACTION waves\x01")
        bob.expect(r":carol!\S+ QUIT")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_unreachable_server_is_one_line(tmp_path: Path) -> None:
    port = free_port()
    result = chat(tmp_path, "--plain", "--nick", "bot", f"127.0.0.1:{port}", stdin="hi\n")
    assert result.returncode == 1
    assert result.stderr == (
        f"salon chat: cannot connect to 127.0.0.1:{port}: connection refused "
        "(is the server running?)\n"
    )


def test_refused_nick_is_one_line(salon: Any, tmp_path: Path) -> None:
    result = chat(
        tmp_path, "--plain", "--nick", "n" * 60, f"127.0.0.1:{salon.irc_port}", stdin="hi\n"
    )
    assert result.returncode == 1
    assert result.stderr.startswith("salon chat: the server refused the nick 'nnnn")
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--plain", "--nick", "9 lives"], "not a valid nick"),
        (["--plain", "-n", "bot", "host:notaport"], "not a port number"),
        (["--plain", "-n", "bot", "host:70000"], "not a port number"),
        (["--plain", "-n", "bot", "one", "two"], "two servers"),
        (["--plain", "-n", "bot", "#"], "not a channel name"),
        (["--plain"], "no nick: pass --nick NAME"),
        (["-n", "bot"], "use --plain"),
        (["--sasl-mechanism", "md5"], "invalid choice"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args: list[str], needle: str, tmp_path: Path) -> None:
    result = chat(tmp_path, *args, timeout=10)
    assert result.returncode == 2, result
    assert needle in result.stderr
    assert result.stderr.count("\n") == 1 and result.stdout == ""


def test_help_mentions_the_essentials(tmp_path: Path) -> None:
    result = chat(tmp_path, "--help")
    assert result.returncode == 0
    for word in ("HOST[:PORT]", "--plain", "--tls", "--insecure", "--sasl", "XDG_CONFIG_HOME"):
        assert word in result.stdout


def test_config_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from salon.tui import config

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    path = config.config_path()
    assert path == tmp_path / "xdg" / "salon" / "chat.toml"
    cfg = config.load()
    cfg.nick = 'ada "the first"'
    cfg.channels = ["#a", "#b"]
    cfg.hide_joins = True
    cfg.pins = {"example.org:6697": "AB:CD"}
    cfg.save()
    again = config.load()
    assert (again.nick, again.channels, again.hide_joins, again.pins) == (
        'ada "the first"',
        ["#a", "#b"],
        True,
        {"example.org:6697": "AB:CD"},
    )
    assert path.stat().st_mode & 0o777 == 0o600
    path.write_text("nick = 3\n")
    with pytest.raises(config.ConfigError, match="nick must be a str"):
        config.load()


def test_saved_nick_and_server_are_used(salon: Any, connect: Any, tmp_path: Path) -> None:
    cfg_dir = tmp_path / "config" / "salon"
    cfg_dir.mkdir(parents=True)
    (cfg_dir / "chat.toml").write_text(
        f'nick = "saved"\nserver = "127.0.0.1:{salon.irc_port}"\nchannels = ["#den"]\n'
    )
    bob = irc_user(connect, salon.irc_port, "bob", "#den")
    start = time.monotonic()
    result = chat(tmp_path, "--plain", stdin="from the config\n")
    assert result.returncode == 0, result.stderr
    bob.expect(r":saved!\S+ PRIVMSG #den :from the config")
    assert time.monotonic() - start < 10


# ---------------------------------------------------------------------- QA findings


class Interactive:
    """``salon chat --plain`` on pipes, its stdout read by a thread into a queue."""

    def __init__(self, tmp: Path, *args: str) -> None:
        import queue
        import threading

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "salon", "chat", "--plain", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=chat_env(tmp),
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []

        def pump() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.lines.put(line.rstrip("\n"))

        threading.Thread(target=pump, daemon=True).start()

    def expect(self, pattern: str, timeout: float = 10.0) -> str:
        import queue

        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r}; saw {self.seen}") from None
            self.seen.append(line)
            if re.search(pattern, line):
                return line

    def type(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def test_channels_and_options_in_any_order(salon: Any, connect: Any, tmp_path: Path) -> None:
    """The README's form: HOST, then options, then a channel, then more options."""
    bob = irc_user(connect, salon.irc_port, "bob", "#ops")
    where = f"127.0.0.1:{salon.irc_port}"
    result = chat(tmp_path, where, "--plain", "#ops", "--nick", "bot", stdin="deploy done\n")
    assert result.returncode == 0, result.stderr
    bob.expect(r":bot!\S+ PRIVMSG #ops :deploy done")


def test_failed_sasl_sends_nothing_and_exits_1(salon: Any, connect: Any, tmp_path: Path) -> None:
    bob = irc_user(connect, salon.irc_port, "watcher", "#pipe")
    where = f"127.0.0.1:{salon.irc_port}"
    result = chat(
        tmp_path, "--plain", "--sasl", "bob", "--nick", "bob2", where, "#pipe",
        stdin="hi\n", sasl_password="wrong",
    )  # fmt: skip
    assert result.returncode == 1, result
    assert result.stderr == "salon chat: SASL login as bob failed: wrong account or password\n"
    assert "hi" not in result.stdout and "joined" not in result.stdout, result.stdout
    bob.send("PING :end")
    bob.expect(r"PONG .*end")
    assert not any("bob2" in line for line in bob.lines), bob.lines


def test_sasl_without_nick_uses_the_account_name(salon: Any, connect: Any, tmp_path: Path) -> None:
    owner = connect(salon.irc_port)
    owner.register("carol")
    owner.send("REGISTER * * :long-password-1")
    owner.expect(r"REGISTER SUCCESS carol")
    owner.send("QUIT")
    owner.expect(r"^ERROR ")  # gone: the nick is free for the account's next session
    bob = irc_user(connect, salon.irc_port, "watcher", "#pipe")
    where = f"127.0.0.1:{salon.irc_port}"
    result = chat(
        tmp_path, "--plain", "--sasl", "carol", where, "#pipe",
        stdin="hello\n", sasl_password="long-password-1",
    )  # fmt: skip
    assert result.returncode == 0, result
    bob.expect(r":carol!\S+ PRIVMSG #pipe :?hello$")


def test_the_plain_text_port_is_not_irc(salon: Any, tmp_path: Path) -> None:
    start = time.monotonic()
    result = chat(tmp_path, "--plain", "--nick", "x", f"127.0.0.1:{salon.plain_port}", stdin="hi\n")
    assert result.returncode == 1, result
    assert result.stderr == (
        f"salon chat: 127.0.0.1:{salon.plain_port} does not speak IRC: "
        "it said 'Welcome to salon on test.salon.'\n"
    )
    assert time.monotonic() - start < 10


def test_tls_to_a_port_without_tls_is_one_clear_line(salon: Any, tmp_path: Path) -> None:
    result = chat(tmp_path, "--plain", "--tls", "--nick", "x", f"127.0.0.1:{salon.irc_port}")
    assert result.returncode == 1, result
    assert result.stderr == (
        f"salon chat: cannot connect to 127.0.0.1:{salon.irc_port}: TLS handshake failed: "
        "does the server speak TLS on that port? (try without --tls)\n"
    )


def test_a_server_that_closes_without_a_word(tmp_path: Path) -> None:
    """What a TLS port does to a client that speaks plain text (salon's, for one)."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        conn.recv(100)
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        result = chat(tmp_path, "--plain", "--nick", "x", f"127.0.0.1:{port}")
    finally:
        listener.close()
    assert result.returncode == 1, result
    assert result.stderr == (
        f"salon chat: 127.0.0.1:{port} closed the connection without a word "
        "(a TLS port? try --tls)\n"
    )


def test_join_switches_where_lines_go_and_help_is_for_plain(
    salon: Any, connect: Any, tmp_path: Path
) -> None:
    bob = irc_user(connect, salon.irc_port, "bob", "#lobby", "#second")
    carol = Interactive(tmp_path, "-n", "carol", f"127.0.0.1:{salon.irc_port}", "#lobby")
    try:
        carol.expect("You joined #lobby")
        carol.type("in the lobby")
        bob.expect(r":carol!\S+ PRIVMSG #lobby :in the lobby")
        carol.type("/join #second")
        carol.expect(STAMP + r"- Now talking in #second$")
        carol.type("in the second")
        bob.expect(r":carol!\S+ PRIVMSG #second :in the second")
        carol.type("/help")
        carol.expect(r"/join #channel \[key\]")
        last = carol.expect(r"Ctrl-D")
        assert "Now talking in" in last
        assert not any("Alt+" in line for line in carol.seen), carol.seen
        carol.type("/part")
        carol.expect(r"- Now talking in #lobby$")
        carol.type("back in the lobby")
        bob.expect(r":carol!\S+ PRIVMSG #lobby :back in the lobby")
        carol.type("bye")
        assert carol.proc.wait(10) == 0
    finally:
        carol.close()


def test_tabs_and_formatting_codes(salon: Any, connect: Any, tmp_path: Path) -> None:
    carol = Interactive(tmp_path, "-n", "carol", f"127.0.0.1:{salon.irc_port}", "#lobby")
    try:
        carol.expect("You joined #lobby")
        bob = irc_user(connect, salon.irc_port, "tabby", "#lobby")
        bob.send("PRIVMSG #lobby one\ttwo")  # a middle parameter: no colon, a tab
        assert carol.expect(r"<tabby>").endswith("<tabby> one\ttwo")
        bob.send("PRIVMSG #lobby :\x0304red\x03 and \x02bold\x02 \x0312,01blue\x0f done")
        assert carol.expect(r"<tabby>").endswith("<tabby> red and bold blue done")
        carol.type("bye")
        assert carol.proc.wait(10) == 0
    finally:
        carol.close()


def test_a_pipe_follows_join_and_part(salon: Any, connect: Any, tmp_path: Path) -> None:
    """In a pipe the next line is already there when /join is sent: it waits for the join."""
    bob = irc_user(connect, salon.irc_port, "bob", "#lobby", "#second")
    script = "in the lobby\n/join #second\nin second\n/part\nback in the lobby\n"
    result = chat(
        tmp_path, "--plain", "-n", "bot", f"127.0.0.1:{salon.irc_port}", "#lobby", stdin=script
    )
    assert result.returncode == 0, result.stderr
    bob.expect(r":bot!\S+ PRIVMSG #lobby :in the lobby")
    bob.expect(r":bot!\S+ PRIVMSG #second :in second")
    bob.expect(r":bot!\S+ PART #second")
    bob.expect(r":bot!\S+ PRIVMSG #lobby :back in the lobby")
    assert re.search(STAMP + r"- Now talking in #second$", result.stdout, re.M), result.stdout
    assert re.search(STAMP + r"- Now talking in #lobby$", result.stdout, re.M), result.stdout
    assert "Closing Link" not in result.stdout  # the goodbye is noise in a pipe
