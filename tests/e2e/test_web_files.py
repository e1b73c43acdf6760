"""File sharing in the web client (issue 20, point 10; issue 21, point 6), in Debian's
Chromium against a real server: uploads from the attach button, a drop and a paste, with a
progress bar and cancel; refusals in plain words; previews of this server's files; an
avatar uploaded from the settings."""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port
from filehelpers import (
    PASSWORD,
    account,
    basic,
    file_rows,
    files_salon,
    path_of,
    request,
    stored_blobs,
)
from test_browser import SLOW, chromium
from test_files_browser import png
from test_web_client import DESKTOP, PHONE, axe_problems, line, overflow, watch

pytestmark = pytest.mark.timeout(120)
browser = pytest.fixture(scope="module", name="browser")(chromium)


def owner(connect: Any, s: Any, nick: str) -> None:
    """An account named nick (password PASSWORD), its registering connection gone."""
    c = account(connect, s, nick)
    c.send("QUIT")
    c.expect("ERROR")


def log_in(page: Any, s: Any, nick: str, password: str = "", channels: str = "#lobby") -> None:
    page.goto(f"http://127.0.0.1:{s.http_port}/")
    page.fill("#nick", nick)
    page.fill("#password", password)
    page.fill("#channels", channels)
    page.click("#connect")
    page.locator(f"#buffers button[data-name='{channels}']").wait_for(
        state="attached", timeout=SLOW * 1000
    )


@contextlib.contextmanager
def uploader(browser: Any, make_salon: Any, connect: Any, **files: Any) -> Iterator[Any]:
    """A server with files, and a desktop page logged in to the account "ana" that may
    upload: (server, page, the page's errors)."""
    s = files_salon(make_salon, files=files)
    owner(connect, s, "ana")
    context = browser.new_context(**DESKTOP)
    page = context.new_page()
    errors = watch(page)
    try:
        log_in(page, s, "ana", PASSWORD)
        page.locator("#attach").wait_for(state="visible", timeout=SLOW * 1000)
        yield s, page, errors
    finally:
        context.close()


def sent_url(page: Any) -> str:
    """The file URL an upload added to the input."""
    page.wait_for_function(
        "() => /\\/f\\/[a-z2-7]{26}\\//.test(document.getElementById('input').value)",
        timeout=SLOW * 1000,
    )
    value: str = page.input_value("#input")
    return value.split()[-1]


def test_a_png_uploaded_posted_seen_and_downloaded(
    browser: Any, make_salon: Any, connect: Any
) -> None:
    """Browser A (a phone) uploads a PNG with the attach button and posts it; browser B (a guest)
    shows the picture; a TCP client downloads the same bytes. No console or CSP error."""
    s = files_salon(make_salon)
    owner(connect, s, "ana")
    picture = png(40, 30)
    a_context = browser.new_context(**PHONE)
    b_context = browser.new_context(**DESKTOP)
    a, b = a_context.new_page(), b_context.new_page()
    errors = watch(a)
    b_errors = watch(b)
    try:
        log_in(a, s, "ana", PASSWORD)
        log_in(b, s, "bob")
        a.locator("#attach").wait_for(state="visible", timeout=SLOW * 1000)
        assert b.locator("#attach").is_hidden()  # a guest may not upload (who = "accounts")
        with a.expect_file_chooser() as chooser:
            a.click("#attach")
        chooser.value.set_files([{"name": "red.png", "mimeType": "image/png", "buffer": picture}])
        url = sent_url(a)
        assert url.startswith(f"http://127.0.0.1:{s.http_port}/f/") and url.endswith("/red.png")
        a.fill("#input", f"look {url}")
        a.press("#input", "Enter")
        seen = line(b, "look").locator(".preview img")
        seen.wait_for(timeout=SLOW * 1000)
        b.wait_for_function(
            "() => document.querySelector('#log .preview img')?.naturalWidth === 40",
            timeout=SLOW * 1000,
        )
        assert line(a, "look").locator(".preview img").count() == 1
        assert overflow(a) == []  # (a phone, with the paperclip and a preview)
        got = request(s, "GET", path_of(url))
        assert got.status == 200
        assert hashlib.sha256(got.body).hexdigest() == hashlib.sha256(picture).hexdigest()
        assert errors == [] and b_errors == []
    finally:
        a_context.close()
        b_context.close()


def test_only_this_servers_files_preview(browser: Any, make_salon: Any, connect: Any) -> None:
    """Another host's picture, a file of this server under another path, and a name that
    is not a picture stay plain links; what is shown is text (no markup from a name)."""
    s = files_salon(make_salon)
    base = f"http://127.0.0.1:{s.http_port}"
    alice = account(connect, s, "alice", "#lobby")
    context = browser.new_context(**DESKTOP)
    page = context.new_page()
    errors = watch(page)
    try:
        log_in(page, s, "web")
        fake = "a" * 26
        alice.send(
            f"PRIVMSG #lobby :links https://example.org/f/{fake}/x.png "
            f"{base}/app.js {base}/f/{fake}/x.png.bin {base}/f/{fake}/x.png?y=1"
        )
        said = line(page, "links")
        said.wait_for(timeout=SLOW * 1000)
        assert said.locator("a").count() == 4
        assert said.locator(".preview").count() == 0
        # A file of this server that is gone: the preview goes, the link stays.
        alice.send(f"PRIVMSG #lobby :gone {base}/f/{fake}/gone.png")
        gone = line(page, "gone")
        gone.wait_for(timeout=SLOW * 1000)
        page.wait_for_function(
            "() => !document.querySelector('#log .line:last-child .preview')", timeout=SLOW * 1000
        )
        assert gone.locator("a").count() == 1
        # (the HEAD of the unknown file is a 404 in the console: nothing else)
        assert [e for e in errors if "404" not in e] == []
    finally:
        context.close()


def test_drop_and_paste_upload(browser: Any, make_salon: Any, connect: Any) -> None:
    with uploader(browser, make_salon, connect) as (s, page, errors):
        # A drop on the conversation (a DataTransfer with a file, as a drag from the desktop).
        page.evaluate(
            """(bytes) => {
              const data = new DataTransfer();
              data.items.add(new File([new Uint8Array(bytes)], "dropped.png", {type: "image/png"}));
              const chat = document.getElementById("chat");
              const over = new DragEvent("dragover", {dataTransfer: data, bubbles: true, cancelable: true});
              chat.dispatchEvent(over);
              if (!over.defaultPrevented) throw new Error("dragover not taken");
              chat.dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true, cancelable: true}));
            }""",
            list(png(5, 5)),
        )
        dropped = sent_url(page)
        assert dropped.endswith("/dropped.png")
        # A paste of a picture into the input.
        page.fill("#input", "")
        page.evaluate(
            """(bytes) => {
              const data = new DataTransfer();
              data.items.add(new File([new Uint8Array(bytes)], "image.png", {type: "image/png"}));
              const input = document.getElementById("input");
              const paste = new ClipboardEvent("paste", {clipboardData: data, bubbles: true, cancelable: true});
              input.dispatchEvent(paste);
              if (!paste.defaultPrevented) throw new Error("paste not taken");
            }""",
            list(png(6, 6)),
        )
        pasted = sent_url(page)
        assert pasted.endswith("/image.png") and pasted != dropped
        # A paste of text is left to the input.
        page.evaluate(
            """() => {
              const data = new DataTransfer();
              data.setData("text/plain", "words");
              const paste = new ClipboardEvent("paste", {clipboardData: data, bubbles: true, cancelable: true});
              document.getElementById("input").dispatchEvent(paste);
              window.pastedText = !paste.defaultPrevented;
            }"""
        )
        assert page.evaluate("window.pastedText")
        assert file_rows(s) == 2
        assert errors == []


def test_progress_and_cancel(browser: Any, make_salon: Any, connect: Any) -> None:
    """A slow upload shows its progress; cancel stops it, and the server keeps nothing."""
    with uploader(browser, make_salon, connect) as (s, page, errors):
        cdp = page.context.new_cdp_session(page)
        cdp.send("Network.enable")
        cdp.send(
            "Network.emulateNetworkConditions",
            {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 65536},
        )
        with page.expect_file_chooser() as chooser:
            page.click("#attach")
        big = bytes(range(256)) * 8192  # 2 MiB: half a minute at this rate
        chooser.value.set_files([{"name": "big.bin", "mimeType": "", "buffer": big}])
        item = page.locator("#uploads .upload", has_text="big.bin")
        item.wait_for(timeout=SLOW * 1000)
        page.wait_for_function(
            "() => document.querySelector('#uploads progress')?.value > 0", timeout=SLOW * 1000
        )
        assert " of 2 MB" in item.locator(".upload-state").inner_text()
        item.get_by_role("button", name="Cancel sending big.bin").click()
        assert page.locator("#uploads").is_hidden()
        time.sleep(1)
        assert page.input_value("#input") == ""
        assert file_rows(s) == 0
        assert stored_blobs(s) == []  # (nothing left in tmp/ either)
        assert errors == []


def test_refusals_in_plain_words(
    browser: Any, make_salon: Any, connect: Any, tmp_path: Path
) -> None:
    """Over the size limit (said before a byte is sent), over the quota (the server's
    507), and a guest: plain words, and the item can be dismissed."""
    limits = {"max_size": 50 * 1048576, "quota": 3072}
    with uploader(browser, make_salon, connect, **limits) as (s, page, errors):
        sent: list[str] = []
        page.on("request", lambda r: sent.append(r.method) if "/upload" in r.url else None)
        huge = tmp_path / "huge.iso"
        with huge.open("wb") as f:
            f.truncate(50 * 1048576 + 1)  # (sparse)
        page.set_input_files("#file", str(huge))
        refused = page.locator("#uploads .upload.failed", has_text="huge.iso")
        refused.wait_for(timeout=SLOW * 1000)
        assert "huge.iso is over 50 MB" in refused.inner_text()
        assert "POST" not in sent  # (said from the server's Upload-Limit, before sending)
        assert page.get_by_role("alert").filter(has_text="over 50 MB").count() == 1
        refused.get_by_role("button").click()
        assert page.locator("#uploads").is_hidden()
        page.set_input_files("#file", [{"name": "four.bin", "mimeType": "", "buffer": b"x" * 4096}])
        over = page.locator("#uploads .upload.failed", has_text="four.bin")
        over.wait_for(timeout=SLOW * 1000)
        assert "quota: 0 bytes of 3 kB used" in over.inner_text(), over.inner_text()
        assert file_rows(s) == 0
        problems = axe_problems(page, "a refused upload")
        assert problems == []
        assert [e for e in errors if "507" not in e] == []


def test_an_avatar_uploaded_from_the_settings(browser: Any, make_salon: Any, connect: Any) -> None:
    """issue 21, point 6: the settings upload a picture through the file host, and it
    becomes the avatar others see."""
    s = files_salon(make_salon)
    owner(connect, s, "ana")
    context = browser.new_context(**DESKTOP)
    watcher = browser.new_context(**DESKTOP)
    page, other = context.new_page(), watcher.new_page()
    errors = watch(page)
    other_errors = watch(other)
    try:
        log_in(page, s, "ana", PASSWORD)
        log_in(other, s, "bob")
        page.locator("#attach").wait_for(state="visible", timeout=SLOW * 1000)
        page.click("#open-settings")
        assert page.locator("#avatar-upload").is_visible()
        with page.expect_file_chooser() as chooser:
            page.click("#avatar-upload")
        chooser.value.set_files(
            [{"name": "me.png", "mimeType": "image/png", "buffer": png(16, 16)}]
        )
        page.locator("#profile-state", has_text="Saved").wait_for(timeout=SLOW * 1000)
        assert axe_problems(page, "settings with an uploaded avatar") == []
        url = page.input_value("#avatar-url")
        assert "/f/" in url and url.endswith("/me.png")
        # Its owner's avatar: readable with the link alone (it was never posted).
        assert request(s, "GET", path_of(url)).status == 200
        page.click("#close-settings")
        page.fill("#input", "with a face")
        page.press("#input", "Enter")
        said = line(other, "with a face")
        line(page, "with a face").wait_for(timeout=SLOW * 1000)
        said.wait_for(timeout=SLOW * 1000)
        other.wait_for_function(
            "() => [...document.querySelectorAll('#log img.avatar')].some((i) => i.naturalWidth === 16)",
            timeout=SLOW * 1000,
        )
        assert errors == [] and other_errors == []
    finally:
        context.close()
        watcher.close()


def test_the_page_stays_lean_with_files(make_salon: Any) -> None:
    """files.js is served (a module of the page) and cached by the service worker."""
    s = make_salon(listen={"http_port": free_port()})
    got = request(s, "GET", "/files.js")
    assert got.status == 200 and b"export function upload" in got.body
    assert b'"/files.js"' in request(s, "GET", "/sw.js").body


def test_a_picture_in_a_page_gets_no_login_prompt(make_salon: Any, connect: Any) -> None:
    """A restricted file asked for by an <img> or <video> of another page answers 401
    without the Basic challenge (a browser's login prompt would stop that page); a page
    opened on it, or a client without Sec-Fetch headers, gets the challenge."""
    s = files_salon(make_salon)
    alice = account(connect, s, "alice")
    alice.send("TOKEN GENERATE FILEHOST")
    token = alice.expect(r"TOKEN GENERATE FILEHOST (\S+)").group(1)
    up = request(s, "POST", "/upload", png(), {"Authorization": f"Bearer {token}"})
    assert up.status == 201
    where = path_of(up.header("Location"))
    picture = request(
        s, "GET", where, headers={"Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"}
    )
    assert picture.status == 401 and picture.header("WWW-Authenticate") == ""
    opened = request(s, "GET", where, headers={"Sec-Fetch-Mode": "navigate"})
    assert opened.status == 401 and opened.header("WWW-Authenticate").startswith("Basic")
    assert request(s, "GET", where).header("WWW-Authenticate").startswith("Basic")


def test_a_restricted_picture_previews_with_a_token(
    browser: Any, make_salon: Any, connect: Any
) -> None:
    """A picture sent in a private message: the recipient's page fetches it with its token
    and shows it from a blob: URL; no 401 reaches its console."""
    s = files_salon(make_salon)
    owner(connect, s, "cy")
    alice = account(connect, s, "alice")
    alice.send("TOKEN GENERATE FILEHOST")
    token = alice.expect(r"TOKEN GENERATE FILEHOST (\S+)").group(1)
    up = request(s, "POST", "/upload", png(7, 5), {"Authorization": f"Bearer {token}"})
    url = up.header("Location")
    context = browser.new_context(**DESKTOP)
    page = context.new_page()
    errors = watch(page)
    try:
        log_in(page, s, "cy", PASSWORD)
        alice.send(f"PRIVMSG cy :secret {url}")
        assert request(s, "GET", path_of(url)).status == 401  # (not public)
        page.locator("#buffers button[data-name='alice']").click()
        shown = line(page, "secret").locator(".preview img")
        shown.wait_for(timeout=SLOW * 1000)
        page.wait_for_function(
            "() => document.querySelector('#log .preview img')?.naturalWidth === 7",
            timeout=SLOW * 1000,
        )
        assert (shown.get_attribute("src") or "").startswith("blob:")
        assert errors == []
    finally:
        context.close()


def test_only_its_owners_avatar_makes_a_file_public(make_salon: Any, connect: Any) -> None:
    s = files_salon(make_salon)
    users = {}
    for nick in ("alice", "mallory"):
        c = connect(s.irc_port)
        c.register(nick, "draft/metadata-3")
        c.send(f"REGISTER * * :{PASSWORD}")
        c.expect(rf"REGISTER SUCCESS {nick}")
        users[nick] = c
    alice, mallory = users["alice"], users["mallory"]
    alice.send("TOKEN GENERATE FILEHOST")
    token = alice.expect(r"TOKEN GENERATE FILEHOST (\S+)").group(1)
    url = request(s, "POST", "/upload", png(), {"Authorization": f"Bearer {token}"}).header(
        "Location"
    )
    mallory.send(f"METADATA * SET avatar :{url}")
    mallory.expect(r" 761 mallory mallory avatar ")
    assert request(s, "GET", path_of(url)).status == 401
    alice.send(f"METADATA * SET avatar :{url}")
    alice.expect(r" 761 alice alice avatar ")
    assert request(s, "GET", path_of(url)).status == 200
    alice.send("METADATA * SET avatar")
    alice.expect(r" 766 alice alice avatar | 761 alice alice avatar")
    assert request(s, "GET", path_of(url)).status == 401


def test_a_file_host_on_another_origin_is_in_the_pages_policy(make_salon: Any) -> None:
    """files.public_url on another host: the page may upload there and preview from there
    (connect-src, img-src, media-src), and nothing else changes."""
    from salon import web

    s = files_salon(make_salon, files={"public_url": "https://files.example.org"})
    csp = request(s, "GET", "/").header("Content-Security-Policy")
    assert "connect-src 'self' https://files.example.org;" in csp
    assert "img-src 'self' https://files.example.org data: blob: https:;" in csp
    assert "media-src 'self' https://files.example.org blob:;" in csp
    assert csp.replace(" https://files.example.org", "") == web.CONTENT_SECURITY_POLICY


def test_a_secret_channels_picture_previews_for_members_only(
    browser: Any, make_salon: Any, connect: Any
) -> None:
    """A picture posted in a +s channel: a member's page shows it from a blob: URL (fetched
    with its token); a non-member who sees the link (pasted into a public channel by someone
    who may not read it) gets no preview, and the file stays closed to the link alone."""
    s = files_salon(make_salon)
    owner(connect, s, "cy")
    owner(connect, s, "dee")
    alice = account(connect, s, "alice", "#secret")
    alice.send("MODE #secret +s")
    alice.expect(r"MODE #secret \+s")
    mallory = account(connect, s, "mallory", "#lobby")
    alice.send("TOKEN GENERATE FILEHOST")
    token = alice.expect(r"TOKEN GENERATE FILEHOST (\S+)").group(1)
    up = request(s, "POST", "/upload", png(9, 4), {"Authorization": f"Bearer {token}"})
    url = up.header("Location")
    member = browser.new_context(**DESKTOP)
    stranger = browser.new_context(**DESKTOP)
    try:
        page = member.new_page()
        errors = watch(page)
        log_in(page, s, "cy", PASSWORD, channels="#secret")
        other = stranger.new_page()
        other_errors = watch(other)
        answers: list[int] = []
        other.on("response", lambda r: answers.append(r.status) if r.url == url else None)
        log_in(other, s, "dee", PASSWORD)
        alice.send(f"PRIVMSG #secret :plans {url}")
        shown = line(page, "plans").locator(".preview img")
        shown.wait_for(timeout=SLOW * 1000)
        page.wait_for_function(
            "() => document.querySelector('#log .preview img')?.naturalWidth === 9",
            timeout=SLOW * 1000,
        )
        assert (shown.get_attribute("src") or "").startswith("blob:")
        assert errors == []
        mallory.send(f"PRIVMSG #lobby :leaked {url}")
        link = line(other, "leaked").locator(f".text a[href='{url}']")
        link.wait_for(timeout=SLOW * 1000)
        # Its page asks (HEAD, with its token), is refused, and shows no preview.
        deadline = time.monotonic() + SLOW
        while 403 not in answers and time.monotonic() < deadline:
            other.wait_for_timeout(50)
        assert answers == [403]
        other.wait_for_function(
            "() => !document.querySelector('#log .preview')", timeout=SLOW * 1000
        )
        assert request(s, "GET", path_of(url)).status == 401
        assert request(s, "GET", path_of(url), headers=basic("dee")).status == 403
        # Only the refusal of that HEAD, which the browser itself logs.
        assert all("403" in e for e in other_errors), other_errors
    finally:
        member.close()
        stranger.close()
