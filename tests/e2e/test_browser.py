"""IRC over WebSocket from a real browser: Debian's headless Chromium, driven by Playwright,
talks to a real server process with the browser's own WebSocket API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from conftest import free_port, irc_user

pytestmark = pytest.mark.timeout(60)

CHROMIUM = "/usr/bin/chromium"  # scripts/test-packages.txt: conftest.py checks it is there
SLOW = 20  # seconds to wait for what goes through the browser
# Chromium's own connections (updates, sync, lookups) are refused on a closed network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Runs in the page: opens the WebSocket, registers, joins #lobby, says hello, and keeps
# every line received in window.lines (decoded from ArrayBuffers for binary frames).
CLIENT_JS = """
([url, subprotocols, nick]) => new Promise((resolve, reject) => {
  const ws = new WebSocket(url, subprotocols);
  ws.binaryType = "arraybuffer";
  window.ws = ws;
  window.lines = [];
  window.kinds = new Set();
  ws.onerror = () => reject(new Error("websocket error"));
  ws.onopen = () => {
    ws.send(`NICK ${nick}`);
    ws.send(`USER ${nick} 0 * :in a browser`);
  };
  ws.onmessage = (event) => {
    const binary = typeof event.data !== "string";
    window.kinds.add(binary ? "binary" : "text");
    const line = binary ? new TextDecoder().decode(event.data) : event.data;
    window.lines.push(line);
    if (line.includes(" 376 ")) {
      ws.send("JOIN #lobby");
    } else if (line.includes(" 366 ")) {
      ws.send("PRIVMSG #lobby :bonjour depuis le navigateur ✓");
      resolve(ws.protocol);
    }
  };
})
"""


def chromium() -> Iterator[Any]:
    """Debian's headless Chromium under Playwright, for a module's tests."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


browser = pytest.fixture(scope="module", name="browser")(chromium)


@pytest.mark.parametrize(
    ("offered", "frames"),
    [(["text.ircv3.net"], "text"), (["binary.ircv3.net", "text.ircv3.net"], "binary")],
)
def test_a_browser_chats_with_an_irc_client(
    browser: Any, make_salon: Any, connect: Any, offered: list[str], frames: str
) -> None:
    s = make_salon(listen={"http_port": free_port()})
    port = s.http_port
    tcp = irc_user(connect, s.irc_port, "tcp", "#lobby")
    # The page is only an origin here: its Content-Security-Policy (no eval) would refuse
    # the polling of wait_for_function below.
    page = browser.new_page(bypass_csp=True)
    try:
        # The page the HTTP port serves, then the WebSocket from it (same origin).
        page.goto(f"http://127.0.0.1:{port}/")
        assert "test.salon" in page.title()
        protocol = page.evaluate(CLIENT_JS, [f"ws://127.0.0.1:{port}/", offered, "nav"])
        assert protocol == offered[0]
        # Generous waits: Chromium shares the two cores with the rest of the suite.
        tcp.expect(r"^:nav!\S+ JOIN #lobby", timeout=SLOW)
        tcp.expect(r"^:nav!\S+ PRIVMSG #lobby :bonjour depuis le navigateur ✓$", timeout=SLOW)
        tcp.send("PRIVMSG #lobby :salut, navigateur é")
        page.wait_for_function(
            "window.lines.some(l => l.endsWith('PRIVMSG #lobby :salut, navigateur é'))",
            timeout=SLOW * 1000,
        )
        assert page.evaluate("[...window.kinds]") == [frames]
        page.evaluate("window.ws.close(1000)")
        tcp.expect(r"^:nav!\S+ QUIT :", timeout=SLOW)
    finally:
        page.close()


# ---------------------------------------------------------------- the web client (salon/web)


def _login(page: Any, port: int, nick: str, channels: str = "#lobby") -> None:
    page.goto(f"http://127.0.0.1:{port}/")
    page.fill("#nick", nick)
    page.fill("#channels", channels)
    page.click("#connect")


def test_the_web_client_chats_with_an_irc_client(
    browser: Any, make_salon: Any, connect: Any
) -> None:
    s = make_salon(listen={"http_port": free_port()})
    tcp = irc_user(connect, s.irc_port, "tcp", "#lobby")
    tcp.send("PRIVMSG #lobby :said before the browser came")
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        _login(page, s.http_port, "webby")
        tcp.expect(r"^:webby!\S+ JOIN #lobby", timeout=SLOW)
        lobby = page.locator("#buffers button[data-name='#lobby']")
        lobby.wait_for(timeout=SLOW * 1000)
        assert "current" in (lobby.get_attribute("class") or "")
        # Scrollback: what was said before the browser joined (CHATHISTORY LATEST).
        page.locator("#log .line", has_text="said before the browser came").wait_for(
            timeout=SLOW * 1000
        )
        page.locator("#user-list button", has_text="tcp").wait_for(timeout=SLOW * 1000)
        # What the browser says reaches the IRC client, markup and all, as plain text.
        page.fill("#input", "hello <b>there</b> ✓")
        page.press("#input", "Enter")
        tcp.expect(r"^:webby!\S+ PRIVMSG #lobby :hello <b>there</b> ✓$", timeout=SLOW)
        page.locator("#log .line", has_text="hello <b>there</b> ✓").wait_for(
            timeout=SLOW * 1000
        )  # the echo (echo-message)
        # What the IRC client says is shown as text: markup is not HTML, URLs are links.
        tcp.send("PRIVMSG #lobby :see https://example.org/a?b=1 <img src=x onerror=alert(1)>")
        page.locator("#log .line", has_text="<img src=x onerror=alert(1)>").wait_for(
            timeout=SLOW * 1000
        )
        assert page.locator("#log img").count() == 0
        link = page.locator("#log a[href='https://example.org/a?b=1']")
        assert link.get_attribute("rel") == "noopener noreferrer"
        # A private message opens a conversation, marked unread until it is shown.
        tcp.send("PRIVMSG webby :psst, webby")
        query = page.locator("#buffers button[data-name='tcp']")
        query.wait_for(timeout=SLOW * 1000)
        assert query.locator(".count").inner_text() == "1"
        query.click()
        page.locator("#log .line", has_text="psst, webby").wait_for(timeout=SLOW * 1000)
        assert query.locator(".count").count() == 0
        page.fill("#input", "/me waves back")
        page.press("#input", "Enter")
        tcp.expect(r"^:webby!\S+ PRIVMSG tcp :\x01ACTION waves back\x01$", timeout=SLOW)
        # Commands: /join opens and shows the channel.
        page.fill("#input", "/join #second")
        page.press("#input", "Enter")
        second = page.locator("#buffers button.current[data-name='#second']")
        second.wait_for(timeout=SLOW * 1000)
        page.fill("#input", "/quit see you")
        page.press("#input", "Enter")
        tcp.expect(r"^:webby!\S+ QUIT :Quit: see you", timeout=SLOW)
        assert errors == []
    finally:
        page.close()


def test_the_web_login_proposes_the_servers_default_channel(
    browser: Any, make_salon: Any, connect: Any
) -> None:
    """server.default_channel reaches the login form (filled into the page by the server,
    no inline script): a user who only types a nickname meets the others there."""
    s = make_salon(server={"default_channel": "#meet"}, listen={"http_port": free_port()})
    tcp = irc_user(connect, s.irc_port, "tcp", "#meet")
    page = browser.new_page()  # a new context: nothing in localStorage
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        page.goto(f"http://127.0.0.1:{s.http_port}/")
        assert page.input_value("#channels") == "#meet"
        assert page.get_attribute("#channels", "placeholder") == "#meet"
        page.fill("#nick", "walkin")
        page.click("#connect")
        tcp.expect(r"^:walkin!\S+ JOIN #meet", timeout=SLOW)
        page.locator("#buffers button[data-name='#meet']").wait_for(timeout=SLOW * 1000)
        assert errors == []
    finally:
        page.close()


def test_the_web_client_reports_a_refused_nickname(browser: Any, make_salon: Any) -> None:
    s = make_salon(listen={"http_port": free_port()})
    page = browser.new_page()
    try:
        _login(page, s.http_port, "no!good")
        error = page.locator("#login-error:not(:empty)")
        error.wait_for(timeout=SLOW * 1000)  # (no wait_for_function: the page allows no eval)
        assert "no!good" in error.inner_text() or "nickname" in error.inner_text().lower()
        assert page.locator("#app").is_hidden()
        assert page.locator("#connect").is_enabled()
    finally:
        page.close()


def test_the_web_client_logs_in_to_an_account(browser: Any, make_salon: Any, connect: Any) -> None:
    s = make_salon(listen={"http_port": free_port()})
    watcher = irc_user(connect, s.irc_port, "watcher")
    owner = connect(s.irc_port)
    owner.register("ana")
    owner.send("REGISTER * * :correct horse")
    owner.expect(r" REGISTER SUCCESS ana ", timeout=SLOW)
    owner.send("PRIVMSG watcher :a word from an earlier session")
    watcher.expect(r"PRIVMSG watcher :a word from an earlier session", timeout=SLOW)
    owner.send("QUIT")
    page = browser.new_page()
    try:
        # A wrong password: SASL fails, the form says so and stays.
        page.goto(f"http://127.0.0.1:{s.http_port}/")
        page.fill("#nick", "ana")
        page.fill("#password", "wrong horse")
        page.fill("#channels", "#lobby")
        page.click("#connect")
        page.locator("#login-error", has_text="password").wait_for(timeout=SLOW * 1000)
        assert page.locator("#app").is_hidden()
        # The right one: logged in to the account (SASL PLAIN over the WebSocket).
        page.fill("#password", "correct horse")
        page.click("#connect")
        page.locator("#buffers button[data-name='#lobby']").wait_for(timeout=SLOW * 1000)
        watcher.send("WHOIS ana")
        watcher.expect(r" 330 watcher ana ana :", timeout=SLOW)
        # The account's private conversations come back (CHATHISTORY TARGETS).
        earlier = page.locator("#buffers button[data-name='watcher']")
        earlier.wait_for(timeout=SLOW * 1000)
        earlier.click()
        page.locator("#log .line", has_text="a word from an earlier session").wait_for(
            timeout=SLOW * 1000
        )
    finally:
        page.close()


# The client's codec and splitting, run in the page (imported from its module, irc.js).
CODEC_JS = """
async () => {
  const { formatLine, parseLine, splitText } = await import("/irc.js");
  const enc = new TextEncoder();
  const bytes = (s) => enc.encode(s).length;
  const split = (text, limit) => {
    const pieces = splitText(text, limit);
    return {
      pieces: pieces.length,
      fits: pieces.every((p) => p.length > 0 && bytes(p) <= limit),
      whole: pieces.join(""),
    };
  };
  return {
    parsed: parseLine("@a=b\\\\sc\\\\:;d;e=x\\\\ :nick!u@h privmsg #c  :hello :world "),
    bare: parseLine("PING"),
    middle: parseLine(":srv 005 me CHANTYPES=# :are supported"),
    trailing: formatLine("PRIVMSG", ["#c", "a b"]),
    colon: formatLine("PRIVMSG", ["#c", ":)"]),
    empty: formatLine("TOPIC", ["#c", ""]),
    single: formatLine("PRIVMSG", ["#c", "word"]),
    crlf: formatLine("PRIVMSG", ["#c", "one\\r\\ntwo\\0three"]),
    accents: split("é".repeat(1000), 100),
    emoji: split("😀".repeat(50), 4),
    spaces: splitText("a".repeat(398) + " ", 398),
    words: splitText("one two three four five", 9),
    nothing: splitText("", 100),
  };
}
"""


def test_the_web_clients_codec(browser: Any, make_salon: Any) -> None:
    s = make_salon(listen={"http_port": free_port()})
    page = browser.new_page()
    try:
        page.goto(f"http://127.0.0.1:{s.http_port}/")
        r = page.evaluate(CODEC_JS)
    finally:
        page.close()
    assert r["parsed"] == {
        "tags": {"a": "b c;", "d": "", "e": "x"},
        "source": "nick!u@h",
        "command": "PRIVMSG",
        "params": ["#c", "hello :world "],
    }
    assert r["bare"]["command"] == "PING" and r["bare"]["params"] == []
    assert r["middle"]["params"] == ["me", "CHANTYPES=#", "are supported"]
    assert r["trailing"] == "PRIVMSG #c :a b"
    assert r["colon"] == "PRIVMSG #c ::)"
    assert r["empty"] == "TOPIC #c :"
    assert r["single"] == "PRIVMSG #c word"
    assert r["crlf"] == "PRIVMSG #c :one  two three"  # CR, LF and NUL cannot be sent
    assert r["accents"] == {"pieces": 20, "fits": True, "whole": "é" * 1000}
    assert r["emoji"] == {"pieces": 50, "fits": True, "whole": "😀" * 50}
    assert r["spaces"] == ["a" * 398]  # no empty message after the last space
    assert r["words"] == ["one two", "three", "four five"]
    assert r["nothing"] == []


def test_the_web_client_reconnects_after_a_restart(
    browser: Any, make_salon: Any, connect: Any
) -> None:
    s = make_salon(listen={"http_port": free_port()})
    page = browser.new_page()
    try:
        _login(page, s.http_port, "rita", "#a, #b")
        page.locator("#buffers button[data-name='#b']").click(timeout=SLOW * 1000)
        page.locator("#user-list button", has_text="rita").wait_for(timeout=SLOW * 1000)
        s.stop()
        page.locator("#user-list button").first.wait_for(state="detached", timeout=SLOW * 1000)
        # Typed while disconnected: said so, and kept in the input box.
        page.fill("#input", "typed while the server was down")
        page.press("#input", "Enter")
        page.locator("#log .line.error", has_text="Not connected").wait_for(timeout=SLOW * 1000)
        assert page.input_value("#input") == "typed while the server was down"
        s.start()
        # Back by itself (after 1, then 2 s...), in both channels again.
        page.locator("#user-list button", has_text="rita").wait_for(timeout=SLOW * 1000)
        tcp = irc_user(connect, s.irc_port, "tcp")
        tcp.send("JOIN #a,#b")
        tcp.expect(r" 353 tcp = #a :.*rita", timeout=SLOW)
        tcp.expect(r" 353 tcp = #b :.*rita", timeout=SLOW)
        page.press("#input", "Enter")
        tcp.expect(r"^:rita!\S+ PRIVMSG #b :typed while the server was down$", timeout=SLOW)
    finally:
        page.close()


def test_the_web_client_registers_an_account(browser: Any, make_salon: Any, connect: Any) -> None:
    s = make_salon(listen={"http_port": free_port()})
    watcher = irc_user(connect, s.irc_port, "watcher")
    page = browser.new_page()
    try:
        _login(page, s.http_port, "newbie")
        page.locator("#buffers button[data-name='#lobby']").wait_for(timeout=SLOW * 1000)
        page.fill("#input", "/register a long enough passphrase")
        page.press("#input", "Enter")
        page.locator("#buffers button", has_text="127.0.0.1").click()
        page.locator("#log .line", has_text="Account newbie registered").wait_for(
            timeout=SLOW * 1000
        )
        watcher.send("WHOIS newbie")
        watcher.expect(r" 330 watcher newbie newbie :", timeout=SLOW)
    finally:
        page.close()


def test_the_web_client_searches_history(browser: Any, make_salon: Any, connect: Any) -> None:
    s = make_salon(listen={"http_port": free_port()})
    tcp = irc_user(connect, s.irc_port, "tcp", "#lobby")
    tcp.send("PRIVMSG #lobby :the quick brown fox")
    tcp.send("PRIVMSG #lobby :something unrelated")
    page = browser.new_page()
    try:
        _login(page, s.http_port, "finder")
        page.locator("#log .line", has_text="something unrelated").wait_for(timeout=SLOW * 1000)
        page.fill("#input", "/search brown fox")
        page.press("#input", "Enter")
        found = page.locator("#log .line", has_text="[#lobby] the quick brown fox")
        found.wait_for(timeout=SLOW * 1000)
        assert page.locator("#buffers button.current").inner_text() == "Search"
        assert "Messages with: brown fox" in page.locator("#topic").inner_text()
        assert page.locator("#log .line", has_text="unrelated").count() == 0
        page.fill("#input", "/search zebra")
        page.press("#input", "Enter")
        page.locator("#log .line", has_text="No messages found.").wait_for(timeout=SLOW * 1000)
        assert page.locator("#log .line", has_text="brown fox").count() == 0
    finally:
        page.close()
