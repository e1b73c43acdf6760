"""IRC over WebSocket from a real browser: Debian's headless Chromium, driven by Playwright,
talks to a real server process with the browser's own WebSocket API."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import free_port, irc_user

pytestmark = pytest.mark.timeout(60)

CHROMIUM = "/usr/bin/chromium"
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


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: scripts/install-deps.sh installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


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
    page = browser.new_page()
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
