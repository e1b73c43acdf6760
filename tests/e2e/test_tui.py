"""The Textual app driven by Pilot against a real salon server on loopback."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from textual import events
from textual.pilot import Pilot
from tuihelpers import SIZE, app_with, log_text, until

from salon.client import Session, Settings
from salon.tui.app import (
    ChatApp,
    ChatInput,
    NameScreen,
    Sidebar,
)
from salon.tui.config import ChatConfig
from salon.tui.config import load as load_config
from salon.tui.connection import Target

pytestmark = pytest.mark.asyncio


def make_app(port: int, tmp: Path, nick: str = "ada", **kw: Any) -> ChatApp:
    session = Session(Settings(nick=nick, channels=kw.pop("channels", ("#lobby",))))
    config = ChatConfig(tmp / "chat.toml")
    return ChatApp(
        session,
        Target("127.0.0.1", port),
        config,
        connection_options={"backoff": (0.1, 0.3), "connect_timeout": 2.0},
        **kw,
    )


async def expect(pilot: Pilot[Any], client: Any, pattern: str, timeout: float = 8.0) -> None:
    """Like LineClient.expect, but lets the app run while waiting."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.expect(pattern, timeout=0.02)
            return
        except TimeoutError:
            if time.monotonic() > deadline:
                raise
            await pilot.pause(0.05)


def in_lobby(app: ChatApp) -> bool:
    buf = app.session.buffer("#lobby")
    return buf is not None and buf.joined and app.current is buf


async def type_line(pilot: Pilot[Any], text: str) -> None:
    box = pilot.app.query_one(ChatInput)
    box.value = text
    box.cursor_position = len(text)
    await pilot.press("enter")


async def test_join_send_and_receive(salon: Any, connect: Any, tmp_path: Path) -> None:
    app = make_app(salon.irc_port, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: in_lobby(app))
        assert "You joined #lobby" in log_text(app)
        bob = connect(salon.irc_port)
        bob.register("bob")
        bob.send("JOIN #lobby")
        await expect(pilot, bob, r" 366 ")
        await until(pilot, lambda: "bob joined" in log_text(app))
        assert app.query_one("#nicks").option_count == 2
        bob.send("PRIVMSG #lobby :hello ada, welcome")
        await until(pilot, lambda: "<bob> hello ada, welcome" in log_text(app))
        await type_line(pilot, "thanks bob")
        await expect(pilot, bob, r":ada!\S+ PRIVMSG #lobby :thanks bob")
        await until(pilot, lambda: "<ada> thanks bob" in log_text(app))
        await type_line(pilot, "/me waves")
        await expect(pilot, bob, r"PRIVMSG #lobby :\x01ACTION waves\x01")
        await until(pilot, lambda: "* ada waves" in log_text(app))


async def test_switch_buffers_by_keys_and_mouse(salon: Any, connect: Any, tmp_path: Path) -> None:
    app = make_app(salon.irc_port, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: in_lobby(app))
        bob = connect(salon.irc_port)
        bob.register("bob")
        bob.send("PRIVMSG ada :psst, a secret")
        await until(pilot, lambda: app.session.buffer("bob") is not None)
        query = app.session.buffer("bob")
        assert query is not None and query.mentions == 1 and query.unread == 1
        assert app.current.name == "#lobby"
        sidebar = app.query_one(Sidebar)
        assert "bob 1 !1" in str(sidebar.get_option_at_index(2).prompt)
        await pilot.press("alt+3")
        assert app.current is query and query.mentions == 0
        assert "<bob> psst, a secret" in log_text(app)
        await pilot.press("ctrl+p")
        assert app.current.name == "#lobby"
        await pilot.press("ctrl+n", "ctrl+n")
        assert app.current is app.session.server
        # The window list is clickable: the third row is the private chat.
        await pilot.click(Sidebar, offset=(5, 2))
        assert app.current is query
        await type_line(pilot, "/join #second")
        await until(pilot, lambda: app.current.name == "#second")
        assert [b.name for b in app.session.buffers.values()][-1] == "#second"


async def test_tab_completion_and_history(salon: Any, connect: Any, tmp_path: Path) -> None:
    app = make_app(salon.irc_port, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: in_lobby(app))
        bob = connect(salon.irc_port)
        bob.register("bobby")
        bob.send("JOIN #lobby")
        await until(pilot, lambda: "bobby" in app.current.members)
        box = app.query_one(ChatInput)
        await pilot.press("b", "o", "tab")
        assert box.value == "bobby: "
        box.value = ""
        await pilot.press("slash", "j", "o", "tab")
        assert box.value == "/join "
        await pilot.press("number_sign", "l", "o", "tab")
        assert box.value == "/join #lobby "
        box.value = ""
        await type_line(pilot, "first line")
        await type_line(pilot, "second line")
        await pilot.press("up")
        assert box.value == "second line"
        await pilot.press("up", "up")
        assert box.value == "first line"
        await pilot.press("down", "down")
        assert box.value == ""


async def test_multiline_paste_is_sent(salon: Any, connect: Any, tmp_path: Path) -> None:
    app = make_app(salon.irc_port, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: in_lobby(app))
        bob = connect(salon.irc_port)
        bob.register("bob")
        bob.send("JOIN #lobby")
        await expect(pilot, bob, r" 366 ")
        app.query_one(ChatInput).post_message(events.Paste("roses are red\nviolets are blue"))
        await expect(pilot, bob, r"PRIVMSG #lobby :roses are red")
        await expect(pilot, bob, r"PRIVMSG #lobby :violets are blue")


async def test_reconnects_after_a_server_restart(salon: Any, tmp_path: Path) -> None:
    app = make_app(salon.irc_port, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: in_lobby(app))
        salon.stop()
        await until(pilot, lambda: "Disconnected" in log_text(app))
        lobby = app.session.buffer("#lobby")
        assert lobby is not None and not lobby.joined
        salon.start()
        await until(pilot, lambda: lobby.joined, timeout=15)
        assert log_text(app).count("You joined #lobby") == 2
        assert app.current is lobby


async def test_reconnects_after_the_link_drops(salon: Any, connect: Any, tmp_path: Path) -> None:
    app = make_app(salon.irc_port, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: in_lobby(app))
        assert app.connection is not None
        app.connection.drop()
        await until(pilot, lambda: log_text(app).count("You joined #lobby") == 2)
        bob = connect(salon.irc_port)
        bob.register("bob")
        bob.send("JOIN #lobby")
        bob.send("PRIVMSG #lobby :still there?")
        await until(pilot, lambda: "still there?" in log_text(app))


async def test_first_start_asks_for_a_name_and_saves_it(salon: Any, tmp_path: Path) -> None:
    app = make_app(salon.irc_port, tmp_path, nick="")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, NameScreen))
        await pilot.press("g", "r", "a", "c", "e", "enter")
        await until(pilot, lambda: in_lobby(app))
        assert app.session.nick == "grace"
    assert load_config(tmp_path / "chat.toml").nick == "grace"


async def test_quit_words_leave(salon: Any, tmp_path: Path) -> None:
    app = make_app(salon.irc_port, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: in_lobby(app))
        await type_line(pilot, "bye")
        await until(pilot, lambda: app.return_code is not None)
    assert app.return_code == 0 and app.fatal == ""


async def test_unreachable_server_is_one_clear_line(tmp_path: Path) -> None:
    from conftest import free_port

    app = make_app(free_port(), tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.return_code is not None)
    assert app.return_code == 1
    assert "cannot connect to 127.0.0.1:" in app.fatal and "refused" in app.fatal
    assert "\n" not in app.fatal


async def test_server_errors_in_plain_words(salon: Any, tmp_path: Path) -> None:
    app = make_app(salon.irc_port, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: in_lobby(app))
        await type_line(pilot, "/msg nobody-here hi")
        await until(pilot, lambda: "There is no one called nobody-here here" in log_text(app))
        await type_line(pilot, "/help")
        await until(pilot, lambda: "/join #channel [key]" in log_text(app))
        await type_line(pilot, "/joins hide")
        assert app.hide_joins and "You joined" not in log_text(app)


# ---------------------------------------------------------------------- QA findings


async def test_failed_sasl_shows_why_and_never_joins(
    salon: Any, connect: Any, tmp_path: Path
) -> None:
    watcher = connect(salon.irc_port)
    watcher.register("watcher")
    watcher.send("JOIN #lobby")
    watcher.expect(r" 366 ")
    app = app_with(salon.irc_port, tmp_path, sasl_account="bob", sasl_password="wrong")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.return_code is not None)
    assert app.return_code == 1
    assert app.fatal == "SASL login as bob failed: wrong account or password"
    watcher.send("PING :end")
    watcher.expect(r"PONG .*end")
    assert not any("JOIN" in line and "ada" in line for line in watcher.lines), watcher.lines


async def test_disconnect_shows_the_servers_reason(make_salon: Any, tmp_path: Path) -> None:
    from conftest import LineClient

    from salon.passwords import hash_password

    s = make_salon(opers=[{"name": "boss", "password": hash_password("pw")}])
    app = make_app(s.irc_port, tmp_path)
    oper = LineClient(s.irc_port)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: in_lobby(app))
            oper.register("boss")
            oper.send("OPER boss pw")
            await expect(pilot, oper, r" 381 ")
            oper.send("KILL ada :spamming")
            await until(pilot, lambda: "Disconnected" in log_text(app))
            text = log_text(app)
            assert "Disconnected: the server closed the connection: Closing Link:" in text
            assert "(Killed (boss (spamming)))" in text
            await until(pilot, lambda: log_text(app).count("You joined #lobby") == 2)
    finally:
        oper.close()


async def test_display_names_from_a_real_server(salon: Any, connect: Any, tmp_path: Path) -> None:
    """draft/metadata-3: bob's display name reaches salon chat as bob joins (the app
    subscribed to display-name), and again when he changes it."""
    app = make_app(salon.irc_port, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: in_lobby(app))
        bob = connect(salon.irc_port)
        bob.register("bob", "draft/metadata-3 batch")
        bob.send("METADATA * SET display-name :Bob Builder")
        await expect(pilot, bob, r" 761 bob bob display-name")
        bob.send("JOIN #lobby")
        await expect(pilot, bob, r" 366 ")
        bob.send("PRIVMSG #lobby :hello")
        await until(pilot, lambda: "<Bob Builder (bob)> hello" in log_text(app))
        bob.send("METADATA * SET display-name :The Builder")
        bob.send("PRIVMSG #lobby :renamed")
        await until(pilot, lambda: "<The Builder (bob)> renamed" in log_text(app))
