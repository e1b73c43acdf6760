"""Real IRC clients from Debian against a real salon: irssi in tmux, and weechat-headless.

Each test drives one client through the core flow of issue 2 (connect, join, chat both ways,
/msg, see another user part, rejoin and quit, then /quit), with a :class:`LineClient` as the
other party. irssi is read off its screen (``tmux capture-pane``); WeeChat through its logger
files and driven through its FIFO. Both run with throwaway home directories.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import LineClient, SalonProcess

pytestmark = pytest.mark.timeout(60)

BOT = "bot"
# irssi, tmux and WeeChat with its plugins are in scripts/test-packages.txt: conftest.py
# stops the run before any test when one of them is missing.


def poll(what: str, probe: Callable[[], str | None], timeout: float = 10.0) -> str:
    """Call ``probe`` until it returns a string; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def wait_registered(bot: LineClient, nick: str, timeout: float = 10.0) -> str:
    """WHOIS ``nick`` until the server knows it; return the 311 line."""

    def probe() -> str | None:
        bot.send(f"WHOIS {nick}")
        lines: list[str] = []
        while not re.search(rf" 318 {BOT} {nick} ", lines[-1] if lines else ""):
            lines.append(bot.readline())
        return next((x for x in lines if f" 311 {BOT} {nick} " in x), None)

    return poll(f"{nick} to register", probe, timeout)


def wait_log(salon: SalonProcess, pattern: str, timeout: float = 10.0) -> str:
    def probe() -> str | None:
        m = re.search(pattern, salon.log())
        return m.group(0) if m else None

    return poll(f"{pattern!r} in the server log", probe, timeout)


def bot_joins(salon: SalonProcess, connect: Callable[..., LineClient]) -> LineClient:
    bot: LineClient = connect(salon.irc_port)
    bot.register(BOT)
    return bot


# --------------------------------------------------------------------------- irssi in tmux


class Tmux:
    """A private tmux server (own socket) with one fixed-size detached session."""

    def __init__(self) -> None:
        self.socket = f"salon-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.env = dict(os.environ, TERM=os.environ.get("TERM") or "xterm-256color")
        self.socket_path = ""

    def run(self, *args: str, check: bool = True) -> str:
        proc = subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", *args],
            capture_output=True,
            text=True,
            timeout=10,
            env=self.env,
            check=False,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"tmux {args[0]} failed: {proc.stderr.strip()}")
        return proc.stdout

    def start(self, command: list[str], width: int = 120, height: int = 50) -> None:
        self.run("new-session", "-d", "-s", "main", "-x", str(width), "-y", str(height), *command)
        self.socket_path = self.run("display-message", "-p", "#{socket_path}").strip()

    def type(self, text: str) -> None:
        self.run("send-keys", "-t", "main", "-l", text)
        self.run("send-keys", "-t", "main", "Enter")

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "main", check=False)

    def alive(self) -> bool:
        return bool(self.run("list-sessions", check=False).strip())

    def wait_screen(self, pattern: str, timeout: float = 10.0) -> str:
        rx = re.compile(pattern, re.M)
        last = [""]

        def probe() -> str | None:
            last[0] = self.screen()
            return last[0] if rx.search(last[0]) else None

        try:
            return poll(f"{pattern!r} on the screen", probe, timeout)
        except AssertionError as e:
            raise AssertionError(f"{e}; screen:\n{last[0]}") from None

    def kill(self) -> None:
        self.run("kill-server", check=False)
        if self.socket_path:  # tmux leaves its socket file behind
            Path(self.socket_path).unlink(missing_ok=True)


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    t = Tmux()
    try:
        yield t
    finally:
        t.kill()


# irssi's own flood protection lets 5 commands out at once and then one per 2.2 s, and its
# registration (CAP LS, the CAP-probing "JOIN :", CAP REQ, CAP END, NICK, USER, MODE +i) already
# uses that burst: with the defaults, /join goes out ~5 s late and each line after it ~2.5 s
# late. That pacing is the client's, not the server's, so raise the burst to keep the test fast.
IRSSI_CONFIG = """\
settings = {
  core = { real_name = "irssi tester"; user_name = "itest"; nick = "itest"; };
  "irc/core" = { cmds_max_at_once = "50"; };
  "fe-common/core" = { autolog = "no"; };
};
"""


def test_irssi_in_tmux(
    salon: SalonProcess, connect: Callable[..., LineClient], tmux: Tmux, tmp_path: Path
) -> None:
    home = tmp_path / "irssi"
    home.mkdir()
    (home / "config").write_text(IRSSI_CONFIG)
    bot = bot_joins(salon, connect)
    bot.send("JOIN #test")
    bot.expect(rf" 366 {BOT} #test ")

    tmux.start(
        ["irssi", f"--home={home}", "-c", "127.0.0.1", "-p", str(salon.irc_port), "-n", "itest"]
    )
    assert "irssi tester" in wait_registered(bot, "itest")
    tmux.wait_screen(r"End of /MOTD command")

    tmux.type("/join #test")
    bot.expect(r"^:itest!itest@127\.0\.0\.1 JOIN #test$")
    tmux.wait_screen(r"itest \[itest@127\.0\.0\.1\] has joined #test")

    bot.send("PRIVMSG #test :hello from bot")
    tmux.wait_screen(rf"<.{BOT}> hello from bot")

    tmux.type("hello from irssi")
    bot.expect(r"^:itest!\S+ PRIVMSG #test :hello from irssi$")

    tmux.type(f"/msg {BOT} private hi")
    bot.expect(rf"^:itest!\S+ PRIVMSG {BOT} :private hi$")
    tmux.type("/window goto #test")  # /msg may open a query window; look at the channel

    bot.send("PART #test :bye for now")
    bot.expect(rf"^:{BOT}!\S+ PART #test")
    tmux.wait_screen(rf"{BOT} \[{BOT}@127\.0\.0\.1\] has left #test \[bye for now\]")
    bot.send("JOIN #test")
    bot.expect(rf" 366 {BOT} #test ")
    tmux.wait_screen(rf"{BOT} \[{BOT}@127\.0\.0\.1\] has joined #test")
    bot.send("QUIT :gone fishing")
    bot.expect(r"^ERROR ")
    screen = tmux.wait_screen(rf"{BOT} \[{BOT}@127\.0\.0\.1\] has quit \[Quit: gone fishing\]")
    (tmp_path / "irssi-screen.txt").write_text(screen)

    tmux.type("/quit irssi signing off")
    wait_log(salon, r"quit id=\d+ nick=itest reason=Quit: irssi signing off")
    poll("irssi to exit", lambda: None if tmux.alive() else "gone", 10)


# ----------------------------------------------------------------------- weechat-headless


class Weechat:
    """weechat-headless with its own --dir, commanded through its FIFO, read through logs."""

    def __init__(self, home: Path, port: int, nick: str) -> None:
        self.home = home
        setup = [
            "/set logger.file.flush_delay 0",
            f"/server add salon 127.0.0.1/{port}",
            # the option is "ssl" in WeeChat < 4.0 and "tls" after; one of them is unknown
            "/set irc.server.salon.ssl off",
            "/set irc.server.salon.tls off",
            # WeeChat's own anti-flood queue sends a user's lines 2 s apart; not our concern here
            # (the option is split in two before WeeChat 4.0, one in milliseconds after)
            "/set irc.server.salon.anti_flood_prio_high 0",
            "/set irc.server.salon.anti_flood 0",
            f"/set irc.server.salon.nicks {nick}",
            f"/set irc.server.salon.username {nick}",
            "/set irc.server.salon.realname weechat tester",
            "/connect salon",
        ]
        self.out = open(home / "stdout.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                *("weechat-headless", "--dir", str(home), "--stdout"),
                *("-P", "irc,logger,fifo", "-r", ";".join(setup)),
            ],
            stdin=subprocess.DEVNULL,
            stdout=self.out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.fifo = home / f"weechat_fifo_{self.proc.pid}"
        try:
            poll("the weechat FIFO", lambda: "ok" if self.fifo.exists() else self._died(), 10)
        except BaseException:
            self.stop()
            raise

    def _died(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"weechat exited {self.proc.returncode}: {self.stdout()}")

    def stdout(self) -> str:
        return (self.home / "stdout.log").read_text(errors="replace")

    def command(self, buffer: str, text: str) -> None:
        """Send ``text`` (a /command or a message) to ``buffer``, e.g. ``irc.salon.#test``."""
        self._died()
        fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(fd, f"{buffer} *{text}\n".encode())
        finally:
            os.close(fd)

    def log(self, name: str) -> str:
        path = self.home / "logs" / f"{name}.weechatlog"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_log(self, name: str, pattern: str, timeout: float = 10.0) -> str:
        rx = re.compile(pattern, re.M)

        def probe() -> str | None:
            text = self.log(name)
            return text if rx.search(text) else None

        try:
            return poll(f"{pattern!r} in weechat log {name}", probe, timeout)
        except AssertionError as e:
            raise AssertionError(f"{e}; log:\n{self.log(name)}") from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()


def test_weechat_headless(
    salon: SalonProcess, connect: Callable[..., LineClient], tmp_path: Path
) -> None:
    home = tmp_path / "weechat"
    home.mkdir()
    bot = bot_joins(salon, connect)
    bot.send("JOIN #test")
    bot.expect(rf" 366 {BOT} #test ")

    wee = Weechat(home, salon.irc_port, "wtest")
    try:
        assert "weechat tester" in wait_registered(bot, "wtest")
        server_log = "irc.server.salon"
        wee.wait_log(server_log, r"End of /MOTD command")

        wee.command("irc.server.salon", "/join #test")
        bot.expect(r"^:wtest!wtest@127\.0\.0\.1 JOIN #test$")
        chan_log = "irc.salon.#test"
        wee.wait_log(chan_log, r"-->\twtest .*has joined #test")
        wee.wait_log(chan_log, r"Channel #test: 2 nicks")

        bot.send("PRIVMSG #test :hello from bot")
        wee.wait_log(chan_log, rf"\t@{BOT}\thello from bot$")

        wee.command("irc.salon.#test", "hello from weechat")
        bot.expect(r"^:wtest!\S+ PRIVMSG #test :hello from weechat$")

        wee.command("irc.server.salon", f"/msg {BOT} private hi")
        bot.expect(rf"^:wtest!\S+ PRIVMSG {BOT} :private hi$")
        bot.send("PRIVMSG wtest :private hello back")
        wee.wait_log(f"irc.salon.{BOT}", rf"\t{BOT}\tprivate hello back$")

        bot.send("PART #test :bye for now")
        bot.expect(rf"^:{BOT}!\S+ PART #test")
        wee.wait_log(chan_log, rf"<--\t{BOT} \({BOT}@127\.0\.0\.1\) has left #test \(bye for now\)")
        bot.send("JOIN #test")
        bot.expect(rf" 366 {BOT} #test ")
        wee.wait_log(chan_log, rf"-->\t{BOT} .*\({BOT}@127\.0\.0\.1\) has joined #test")
        bot.send("QUIT :gone fishing")
        bot.expect(r"^ERROR ")
        wee.wait_log(
            chan_log, rf"<--\t{BOT} \({BOT}@127\.0\.0\.1\) has quit \(Quit: gone fishing\)"
        )

        wee.command("irc.server.salon", "/quit weechat signing off")
        wait_log(salon, r"quit id=\d+ nick=wtest reason=Quit: weechat signing off")
        wee.proc.wait(10)
    finally:
        wee.stop()
