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
from conftest import free_port

STAMP = r"\[\d\d:\d\d\] "


def chat_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["XDG_CONFIG_HOME"] = str(tmp / "config")
    env.pop("SALON_PASSWORD", None)
    env.pop("SALON_SASL_PASSWORD", None)
    return env


def chat(
    tmp: Path, *args: str, stdin: str = "", timeout: float = 15
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "salon", "chat", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=chat_env(tmp),
    )


def test_pipe_sends_and_exits_0(salon: Any, connect: Any, tmp_path: Path) -> None:
    bob = connect(salon.irc_port)
    bob.register("bob")
    bob.send("JOIN #lobby")
    bob.expect(r" 366 ")
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
    bob = connect(salon.irc_port)
    bob.register("bob")
    bob.send("JOIN #den")
    bob.expect(r" 366 ")
    start = time.monotonic()
    result = chat(tmp_path, "--plain", stdin="from the config\n")
    assert result.returncode == 0, result.stderr
    bob.expect(r":saved!\S+ PRIVMSG #den :from the config")
    assert time.monotonic() - start < 10
