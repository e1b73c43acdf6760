"""The Textual app on its own, no server process: history paging, timeouts, Ctrl+C,
formatting codes and fingerprints."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from textual.widgets import Static
from tuihelpers import SIZE, app_with, log_text, until, welcome_with_filehost

from salon.client import Session, Settings
from salon.tui.app import (
    ChatApp,
    ChatInput,
    TrustScreen,
    wrap_fingerprint,
)
from salon.tui.config import ChatConfig
from salon.tui.format import plain, render

pytestmark = pytest.mark.asyncio


async def test_scrolling_up_fetches_older_history(tmp_path: Path) -> None:
    """Offline: a server offering draft/chathistory, fed by hand."""
    session = Session(Settings(nick="ada"))
    app = ChatApp(session, None, ChatConfig(tmp_path / "chat.toml"))
    caps = "batch server-time message-tags draft/chathistory"
    async with app.run_test(size=SIZE) as pilot:
        session.connection_made(time.time())
        app.feed(f":s CAP * LS :{caps}", f":s CAP ada ACK :{caps}", ":s 001 ada :hi")
        app.feed(":ada!a@h JOIN #lobby", ":s 366 ada #lobby :end")
        session.data_to_send()
        app.feed(
            "BATCH +b chathistory #lobby",
            "@batch=b;time=2026-01-01T10:00:00.000Z;msgid=m9 :bob!b@h PRIVMSG #lobby :recent",
            "BATCH -b",
        )
        await pilot.pause()
        assert app.current.name == "#lobby" and "<bob> recent" in log_text(app)
        await pilot.press("pageup")
        assert session.data_to_send() == b"CHATHISTORY BEFORE #lobby msgid=m9 50\r\n"
        app.feed(
            "BATCH +c chathistory #lobby",
            "@batch=c;time=2026-01-01T09:00:00.000Z;msgid=m1 :bob!b@h PRIVMSG #lobby :older",
            "BATCH -c",
        )
        await pilot.pause()
        text = log_text(app)
        assert text.index("<bob> older") < text.index("<bob> recent")
        await pilot.press("pageup")  # the page was short: the start of history
        assert session.data_to_send() == b""


async def test_a_silent_server_times_out(tmp_path: Path) -> None:
    import socket

    with socket.socket() as silent:  # the kernel completes the handshake; nobody answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        app = app_with(port, tmp_path, register_timeout=1.0)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.return_code is not None)
    assert app.return_code == 1
    assert app.fatal == (
        f"127.0.0.1:{port} did not welcome us within 1 s: is it an IRC server, and the right port?"
    )


async def test_ctrl_c_asks_then_quits(tmp_path: Path) -> None:
    app = ChatApp(Session(Settings(nick="ada")), None, ChatConfig(tmp_path / "chat.toml"))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+c")
        await pilot.pause()
        assert app.return_code is None
        shown = [n.message for n in app._notifications]  # what the toasts show
        assert shown == ["Press Ctrl+C again, or Ctrl+Q, to quit"]
        await pilot.press("ctrl+c")
        await until(pilot, lambda: app.return_code is not None)
    assert app.return_code == 0


async def test_ctrl_c_with_a_selection_copies(tmp_path: Path) -> None:
    app = ChatApp(Session(Settings(nick="ada")), None, ChatConfig(tmp_path / "chat.toml"))
    async with app.run_test(size=SIZE) as pilot:
        box = app.query_one(ChatInput)
        box.value = "copy me"
        box.select_all()
        await pilot.press("ctrl+c", "ctrl+c")
        await pilot.pause()
        assert app.return_code is None and app.clipboard == "copy me"


async def test_formatting_codes_are_rendered_not_shown(tmp_path: Path) -> None:
    session = Session(Settings(nick="ada"))
    app = ChatApp(session, None, ChatConfig(tmp_path / "chat.toml"))
    async with app.run_test(size=SIZE) as pilot:
        session.connection_made(time.time())
        app.feed(":s 001 ada :hi", ":ada!a@h JOIN #lobby", ":s 366 ada #lobby :end")
        app.feed(":s 332 ada #lobby :\x02Topic\x02 in \x0303green")
        app.feed(":bob!b@h PRIVMSG #lobby :\x0304red\x03 \x02bold\x0f \x1ditalic\x1d end")
        await pilot.pause()
        text = log_text(app)
        assert "<bob> red bold italic end" in text
        assert "04red" not in text and "\x03" not in text and "\x02" not in text
        topic = app.query_one("#topic", Static).render()
        assert "Topic in green" in str(topic) and "\x03" not in str(topic)
    line = render(session.buffers["#lobby"].lines[-1])
    styles = {line.plain[span.start : span.end]: str(span.style) for span in line.spans}
    assert styles["red"] == "#ff0000" and styles["bold"] == "bold"
    assert styles["italic"] == "italic"


async def test_certificate_fingerprint_wraps_between_bytes(tmp_path: Path) -> None:
    fp = ":".join(f"{i * 7 % 256:02X}" for i in range(32))
    assert wrap_fingerprint(fp).split("\n") == [
        ":".join(fp.split(":")[:16]),
        ":".join(fp.split(":")[16:]),
    ]
    app = ChatApp(Session(Settings(nick="ada")), None, ChatConfig(tmp_path / "chat.toml"))
    async with app.run_test(size=SIZE) as pilot:
        app.push_screen(TrustScreen("example.org:6697", fp, "self-signed certificate"))
        await pilot.pause()
        shown = [
            strip.text.strip(" │╭╮╰╯─")
            for strip in app.screen.query_one(Static)._render_cache.lines  # type: ignore[attr-defined]
        ]
        hex_lines = [s for s in shown if re.fullmatch(r"[0-9A-F:]{20,}", s)]
        assert hex_lines == wrap_fingerprint(fp).split("\n"), shown


async def test_display_names_are_shown_next_to_nicks(tmp_path: Path) -> None:
    """draft/metadata-3: the client subscribes to display-name before registering (the
    server offers before-connect) and shows "Display Name (nick)"."""
    session = Session(Settings(nick="ada"))
    app = ChatApp(session, None, ChatConfig(tmp_path / "chat.toml"))
    caps = "batch server-time draft/metadata-3"
    async with app.run_test(size=SIZE) as pilot:
        session.connection_made(time.time())
        session.data_to_send()
        app.feed(":s CAP * LS :batch server-time draft/metadata-3=before-connect,max-subs=5")
        app.feed(f":s CAP ada ACK :{caps}")
        assert b"METADATA * SUB display-name\r\n" in session.data_to_send()
        app.feed(":s 001 ada :hi", ":ada!a@h JOIN #lobby", ":s 366 ada #lobby :end")
        app.feed(
            "BATCH +m metadata #lobby",
            "@batch=m :s 761 ada bob display-name * :Bob Builder",
            "BATCH -m",
        )
        app.feed(":bob!b@h PRIVMSG #lobby :hello")
        app.feed(":carol!c@h PRIVMSG #lobby :no name")
        app.feed(":s 766 ada bob display-name :key not set")
        app.feed(":bob!b@h PRIVMSG #lobby :plain again")
        await pilot.pause()
        text = log_text(app)
        assert "<Bob Builder (bob)> hello" in text
        assert "<carol> no name" in text
        assert "<bob> plain again" in text
    named = session.buffers["#lobby"].lines[-3]
    line = render(named)
    styles = {line.plain[span.start : span.end]: str(span.style) for span in line.spans}
    assert styles["Bob Builder"].startswith("bold")
    # --plain shows it the same way.
    assert plain(named).endswith("<Bob Builder (bob)> hello")
    assert "\x1b[" in plain(named, colour=True)


async def test_upload_shows_progress_and_leaves_the_link_in_the_input(tmp_path: Path) -> None:
    """Offline, with a file host of our own on loopback (it answers a second after the
    body is in, so the progress is seen): /upload asks for a token, sends the file with it,
    and leaves the text and the link in the input line."""
    import http.server
    import threading

    got: list[tuple[str, bytes]] = []

    class Host(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append((self.headers["Authorization"], body))
            time.sleep(1.0)
            self.send_response(201)
            self.send_header("Location", "http://files.test/f/abcdefghijklmnopqrstuvwxyz/f.bin")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Host)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    upload_url = f"http://127.0.0.1:{server.server_address[1]}/upload"
    data = tmp_path / "f.bin"
    data.write_bytes(b"\0" * 300_000)
    session = Session(Settings(nick="ada"))
    app = ChatApp(session, None, ChatConfig(tmp_path / "chat.toml"))
    try:
        async with app.run_test(size=SIZE) as pilot:
            welcome_with_filehost(app, upload_url)
            await pilot.pause()
            session.data_to_send()
            app.send(f"/upload {data} have a look")
            assert session.data_to_send() == b"TOKEN GENERATE FILEHOST\r\n"
            app.feed(":s TOKEN GENERATE FILEHOST t0k3n")
            topic = app.query_one("#topic", Static)
            await until(
                pilot, lambda: "uploading f.bin: 100% (293 kB of 293 kB)" in str(topic.render())
            )
            box = app.query_one(ChatInput)
            await until(pilot, lambda: box.value.endswith("/f.bin"))
            assert box.value == "have a look http://files.test/f/abcdefghijklmnopqrstuvwxyz/f.bin"
            assert got == [("Bearer t0k3n", data.read_bytes())]
            assert "uploading" not in str(topic.render())
    finally:
        server.shutdown()
        server.server_close()
