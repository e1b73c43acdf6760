"""The TUI's /upload cancel: a transfer under way (blocked on a file host that stopped
reading) is cut, and an upload still waiting for its token never starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from filehelpers import StallingHost
from textual.widgets import Static
from tuihelpers import SIZE, until, welcome_with_filehost

from salon.client import Session, Settings
from salon.tui.app import ChatApp
from salon.tui.config import ChatConfig

pytestmark = pytest.mark.asyncio


def said(session: Session, text: str) -> bool:
    """Whether the server buffer (where the upload's outcome is noted) shows ``text``."""
    return any(text in line.text for line in session.server.lines)


BIG = 64 << 20  # more than loopback's socket buffers hold: the transfer blocks


async def test_upload_cancel_in_the_tui(tmp_path: Path) -> None:
    host = StallingHost()
    big = tmp_path / "big.bin"
    with open(big, "wb") as fh:
        fh.truncate(BIG)
    session = Session(Settings(nick="ada"))
    app = ChatApp(session, None, ChatConfig(tmp_path / "chat.toml"))
    try:
        async with app.run_test(size=SIZE) as pilot:
            welcome_with_filehost(app, host.url)
            await pilot.pause()
            app.send("/upload cancel")
            await until(pilot, lambda: said(session, "upload: nothing to cancel"))
            # Cancelled while it waits for its token: the token, when it comes, is unused.
            session.data_to_send()
            app.send(f"/upload {big}")
            assert session.data_to_send() == b"TOKEN GENERATE FILEHOST\r\n"
            app.send("/upload cancel")
            await until(pilot, lambda: said(session, "upload cancelled"))
            app.feed(":s TOKEN GENERATE FILEHOST t0k3n")
            await pilot.pause(0.3)
            assert not host.started.is_set() and not app.uploading
            # Cancelled under way: the topic bar shows its progress, then no more.
            app.send(f"/upload {big}")
            app.feed(":s TOKEN GENERATE FILEHOST t0k3n")
            topic = app.query_one("#topic", Static)
            await until(pilot, lambda: "uploading big.bin" in str(topic.render()))
            assert host.started.wait(10)
            app.send("/upload cancel")
            await until(pilot, lambda: said(session, "upload: upload cancelled"))
            assert "uploading" not in str(topic.render()) and not app.uploading
            assert host.drain()
    finally:
        host.close()
