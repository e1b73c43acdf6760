"""A snapshot of the main screen (pytest-textual-snapshot), from canned server lines.

The app runs offline with a fixed clock and UTC, so the picture only changes when the UI
does. After an intended change: ``pytest tests/tui/test_tui_snapshot.py --snapshot-update``.
``python tests/tui/test_tui_snapshot.py docs/chat.svg`` writes the README screenshot.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from salon.client import Session, Settings
from salon.tui.app import ChatApp
from salon.tui.config import ChatConfig

NOW = datetime(2026, 1, 15, 12, 7, tzinfo=UTC).timestamp()
SIZE = (110, 28)


def t(minute: int) -> str:
    return f"@time=2026-01-15T12:{minute:02d}:00.000Z"


DEMO = [
    ":salon.local CAP * LS :server-time message-tags batch echo-message multi-prefix",
    ":salon.local CAP ada ACK :server-time message-tags batch echo-message multi-prefix",
    ":salon.local 001 ada :Welcome to the salon IRC Network ada",
    ":salon.local 005 ada PREFIX=(ov)@+ CHANTYPES=# NETWORK=salon :are supported",
    ":salon.local 372 ada :- Welcome to salon. Be kind.",
    f"{t(0)} :ada!ada@127.0.0.1 JOIN #lobby",
    ":salon.local 332 ada #lobby :Welcome to the lobby · be kind · salon 0.1 is out",
    ":salon.local 353 ada = #lobby :@grace +linus ada bob margaret",
    ":salon.local 366 ada #lobby :End of /NAMES list",
    f"{t(1)} :grace!g@127.0.0.1 PRIVMSG #lobby :morning all",
    f"{t(1)} :linus!l@127.0.0.1 PRIVMSG #lobby :morning grace",
    f"{t(2)} :bob!b@127.0.0.1 JOIN #lobby",
    f"{t(2)} :margaret!m@127.0.0.1 PRIVMSG #lobby :\x01ACTION brings coffee\x01",
    f"{t(3)} :bob!b@127.0.0.1 PRIVMSG #lobby :ada: did the release go out?",
    f"{t(4)} :ada!ada@127.0.0.1 PRIVMSG #lobby :it did, with the new terminal client",
    f"{t(4)} :grace!g@127.0.0.1 MODE #lobby +v bob",
    f"{t(5)} :linus!l@127.0.0.1 PRIVMSG #lobby :nice. tab completion works for nicks too",
    f"{t(5)} :dennis!d@127.0.0.1 QUIT :Ping timeout",
    f"{t(6)} :ada!ada@127.0.0.1 JOIN #python",
    ":salon.local 366 ada #python :End of /NAMES list",
    f"{t(6)} :grace!g@127.0.0.1 PRIVMSG #python :anyone tried 3.14 yet?",
    f"{t(6)} :grace!g@127.0.0.1 PRIVMSG #python :ada, you said you had",
    f"{t(7)} :bob!b@127.0.0.1 PRIVMSG ada :lunch later?",
]


def demo_app() -> ChatApp:
    session = Session(Settings(nick="ada", server_name="localhost"))
    app = ChatApp(session, None, ChatConfig(Path("/nonexistent/chat.toml")), tz=UTC)
    app.clock = lambda: NOW
    return app


async def show_demo(app: ChatApp) -> None:
    app.feed(*DEMO)
    app.action_goto(1)  # #lobby


def test_main_screen(snap_compare: Any) -> None:
    async def run_before(pilot: Any) -> None:
        await show_demo(pilot.app)
        pilot.app.query_one("#input").value = "bob: see you at noon"
        await pilot.pause()

    assert snap_compare(demo_app(), terminal_size=SIZE, run_before=run_before)


def test_demo_state() -> None:
    """What the snapshot shows, checked directly (a readable failure before the SVG diff)."""

    async def go() -> None:
        app = demo_app()
        async with app.run_test(size=SIZE) as pilot:
            await show_demo(app)
            await pilot.pause()
            assert app.current.name == "#lobby"
            sidebar = [
                str(app.query_one("#buffers").get_option_at_index(i).prompt) for i in range(4)
            ]
            assert sidebar == [" 1 localhost", " 2 #lobby", " 3 #python 2 !1", " 4 bob 1 !1"]
            nicks = [str(o.prompt) for o in app.query_one("#nicks").options]
            assert nicks == ["@grace", "+bob", "+linus", " ada", " margaret"]

    asyncio.run(go())


if __name__ == "__main__":

    async def save(path: str) -> None:
        app = demo_app()
        async with app.run_test(size=SIZE) as pilot:
            await show_demo(app)
            app.query_one("#input").value = "bob: see you at noon"
            await pilot.pause()
            app.save_screenshot(filename=Path(path).name, path=str(Path(path).parent))

    asyncio.run(save(sys.argv[1]))
