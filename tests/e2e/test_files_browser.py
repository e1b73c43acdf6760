"""What Debian's Chromium makes of the file host's answers: uploaded SVG, HTML, HTML sent
as image/png and a GIF/HTML polyglot run no script; an image renders; a <video> seeks."""

from __future__ import annotations

import io
import struct
import wave
import zlib
from typing import Any

import pytest
import test_browser
from filehelpers import account, basic, files_salon, upload

pytestmark = pytest.mark.timeout(90)
# Debian's Chromium, launched once for the module (the fixture of test_browser.py).
chromium = pytest.fixture(scope="module", name="chromium")(test_browser.chromium)

SCRIPT = b"<script>document.title='PWNED';fetch('/pwned')</script>"
ACTIVE = {
    "svg": (
        b'<svg xmlns="http://www.w3.org/2000/svg" onload="document.title=\'PWNED\'">'
        + SCRIPT
        + b"</svg>",
        "drawing.svg",
        "image/svg+xml",
    ),
    "html": (b"<!doctype html><html><body>" + SCRIPT + b"</body></html>", "page.html", "text/html"),
    "html-as-png": (b"<html>" + SCRIPT + b"</html>", "photo.png", "image/png"),
}


def png(width: int = 3, height: int = 2) -> bytes:
    """A small valid PNG (red pixels), made with zlib."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\0" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def wav(seconds: int = 10, rate: int = 8000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(rate)
        w.writeframes(bytes(128 + (i % 40) for i in range(rate * seconds)))
    return out.getvalue()


def _server(make_salon: Any, connect: Any) -> Any:
    # Every link readable, so the browser needs no login: what is tested is the answer.
    s = files_salon(make_salon, files={"link_access": "anyone"})
    account(connect, s, "alice")
    return s


@pytest.mark.parametrize("name", sorted(ACTIVE))
def test_active_content_is_a_download_and_runs_nothing(
    chromium: Any, make_salon: Any, connect: Any, name: str
) -> None:
    s = _server(make_salon, connect)
    data, filename, claimed = ACTIVE[name]
    up = upload(s, data, filename, basic("alice"), content_type=claimed)
    assert up.status == 201
    url = up.header("Location")
    context = chromium.new_context(accept_downloads=True)
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    try:
        with page.expect_download() as download:
            try:
                page.goto(url)
            except Exception as exc:  # "Download is starting": no document at all
                assert "Download" in str(exc) or "ERR_ABORTED" in str(exc), exc
        assert download.value.suggested_filename.endswith(".bin")
        assert page.title() != "PWNED"
        assert not any(u.endswith("/pwned") for u in requests)
    finally:
        context.close()
    log = s.log()
    assert "/pwned" not in log and "Traceback" not in log


def test_a_gif_html_polyglot_is_an_image(chromium: Any, make_salon: Any, connect: Any) -> None:
    s = _server(make_salon, connect)
    polyglot = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;<html>" + SCRIPT + b"</html>"
    up = upload(s, polyglot, "x.html", basic("alice"), content_type="text/html")
    assert up.status == 201
    page = chromium.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    try:
        response = page.goto(up.header("Location"))
        assert response is not None and response.headers["content-type"] == "image/gif"
        page.wait_for_timeout(300)
        assert page.title() != "PWNED"
        assert not any(u.endswith("/pwned") for u in requests)
    finally:
        page.close()


def test_an_image_renders(chromium: Any, make_salon: Any, connect: Any) -> None:
    s = _server(make_salon, connect)
    up = upload(s, png(), "red.png", basic("alice"), content_type="application/octet-stream")
    assert up.status == 201
    page = chromium.new_page()
    try:
        page.goto(up.header("Location"))
        width = page.evaluate(
            "() => new Promise(ok => { const img = document.images[0];"
            " img.complete ? ok(img.naturalWidth) : (img.onload = () => ok(img.naturalWidth)); })"
        )
        assert width == 3
    finally:
        page.close()


def test_a_video_element_seeks(chromium: Any, make_salon: Any, connect: Any) -> None:
    """No video encoder is at hand (no ffmpeg), so the medium is a 10 s WAV: a <video>
    element plays audio-only media, and seeking it goes through Range requests."""
    s = _server(make_salon, connect)
    up = upload(s, wav(), "tone.wav", basic("alice"))
    assert up.status == 201
    url = up.header("Location")
    page = chromium.new_page()
    ranges: list[str] = []
    page.on("request", lambda r: ranges.append(r.headers.get("range", "")))
    try:
        page.set_content("<video preload=auto></video>")
        seeked = page.evaluate(
            """(url) => new Promise((ok, fail) => {
                 const v = document.querySelector('video');
                 v.onerror = () => fail(new Error('media error ' + v.error.code));
                 v.onloadedmetadata = () => { v.currentTime = 5; };
                 v.onseeked = () => ok([v.currentTime, v.duration, v.seekable.end(0)]);
                 v.src = url;
               })""",
            url,
        )
        now, duration, seekable = seeked
        assert abs(now - 5) < 0.1 and abs(duration - 10) < 0.1 and seekable >= 9.9
        assert any(r.startswith("bytes=") for r in ranges), ranges
    finally:
        page.close()


@pytest.fixture
def other_origins() -> Any:
    """Two web servers on other loopback ports (other origins), each serving an empty
    page: where a third-party client like gamja would be hosted."""
    import http.server
    import threading

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<!doctype html><title>elsewhere</title>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page) for _ in range(2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield [f"http://127.0.0.1:{server.server_address[1]}" for server in servers]
    for server in servers:
        server.shutdown()
        server.server_close()


GAMJA_UPLOAD = """async ([url, auth]) => {
  try {
    const response = await fetch(url, {
      method: "POST",
      body: new Blob(["from another origin\\n"]),
      headers: {
        "Authorization": auth,
        "Content-Disposition": "attachment; filename*=UTF-8''caf%C3%A9.txt",
      },
      credentials: "include",
    });
    return [response.status, response.headers.get("Location")];
  } catch (error) {
    return ["refused", String(error)];
  }
}"""


def test_a_page_on_another_origin_uploads_like_gamja(
    chromium: Any, make_salon: Any, connect: Any, other_origins: list[str]
) -> None:
    from filehelpers import file_rows

    allowed, other = other_origins
    s = files_salon(make_salon, files={"allowed_origins": [allowed]})
    account(connect, s, "alice")
    upload_url = f"http://127.0.0.1:{s.http_port}/upload"
    auth = basic("alice")["Authorization"]
    page = chromium.new_page()
    try:
        page.goto(allowed)
        status, location = page.evaluate(GAMJA_UPLOAD, [upload_url, auth])
        assert status == 201 and location.endswith("/caf%C3%A9.txt"), (status, location)
        page.goto(other)
        status, why = page.evaluate(GAMJA_UPLOAD, [upload_url, auth])
        assert status == "refused" and "Failed to fetch" in why
    finally:
        page.close()
    assert file_rows(s) == 1  # the refused preflight kept the POST from being sent
