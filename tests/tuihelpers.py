"""The Textual app under test: one made for a port and a directory, and how to wait on it
and read it."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from salon.client import Session, Settings
from salon.tui.app import ChatApp, MessageLog
from salon.tui.config import ChatConfig
from salon.tui.connection import Target

SIZE = (110, 30)


async def until(pilot: Pilot[Any], check: Callable[[], object], timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {check}")
        await pilot.pause(0.05)


def log_text(app: ChatApp) -> str:
    log = app.query_one(MessageLog)
    return "\n".join(strip.text for strip in log.lines)


def app_with(port: int, tmp: Path, **settings: Any) -> ChatApp:
    session = Session(Settings(nick=settings.pop("nick", "ada"), **settings))
    return ChatApp(
        session,
        Target("127.0.0.1", port),
        ChatConfig(tmp / "chat.toml"),
        connection_options={"backoff": (0.1, 0.3), "connect_timeout": 2.0},
    )


def welcome_with_filehost(app: ChatApp, upload_url: str) -> None:
    """An offline app's session (no Target) welcomed by a server that hosts files at
    ``upload_url``, in #lobby."""
    app.session.connection_made(time.time())
    app.feed(":s CAP * LS :", ":s 001 ada :hi", f":s 005 ada soju.im/FILEHOST={upload_url} :ok")
    app.feed(":ada!a@h JOIN #lobby", ":s 366 ada #lobby :end")
