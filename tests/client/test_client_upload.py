"""/upload in the session (sans-I/O): where it goes, with which credentials, and the
file links' labels."""

from __future__ import annotations

import base64

from test_client_session import SERVER, Wire, registered

from salon.client.model import LineAdded, UploadRequested
from salon.client.text import file_links

URL = "https://files.test/upload"
FILEHOST = f":{SERVER} 005 me soju.im/FILEHOST={URL} :are supported"


def requests(events: list[object]) -> list[UploadRequested]:
    return [e for e in events if isinstance(e, UploadRequested)]


def test_without_filehost_it_says_so() -> None:
    w = registered()
    events = w.input("/upload cat.png")
    assert not requests(events) and not w.sent()
    said = [e.line.text for e in events if isinstance(e, LineAdded)]
    assert said == ["This server does not host files (it advertises no FILEHOST)"]


def logged_in_with_sasl() -> Wire:
    w = registered()
    w.s.settings.sasl_account, w.s.settings.sasl_password = "me", "pw"
    return w


def test_with_the_sasl_password_it_is_basic() -> None:
    w = logged_in_with_sasl()
    w.recv(FILEHOST)
    (request,) = requests(w.input('/upload "my cat.png" look at her'))
    assert request.path == "my cat.png" and request.text == "look at her"
    assert request.url == URL and request.target == "#lobby"
    assert request.authorization == "Basic " + base64.b64encode(b"me:pw").decode()


def test_otherwise_it_asks_for_a_token() -> None:
    w = registered()
    w.recv(FILEHOST)
    assert not requests(w.input("/upload ~/cat.png"))
    assert w.sent() == ["TOKEN GENERATE FILEHOST"]
    (request,) = requests(w.recv(f":{SERVER} TOKEN GENERATE FILEHOST s3cr3t"))
    assert request.authorization == "Bearer s3cr3t" and request.path == "~/cat.png"
    # Refused: the waiting upload is dropped, and the refusal shown.
    w.input("/upload dog.png")
    events = w.recv(f":{SERVER} FAIL TOKEN ACCOUNT_REQUIRED FILEHOST :Log in to share files")
    assert any(isinstance(e, LineAdded) and "Log in" in e.line.text for e in events)
    assert not requests(w.recv(f":{SERVER} TOKEN GENERATE FILEHOST late"))


def test_a_tls_session_refuses_an_http_file_host() -> None:
    w = logged_in_with_sasl()
    w.s.tls = True
    w.recv(f":{SERVER} 005 me draft/FILEHOST=http://files.test/upload :are supported")
    assert not requests(w.input("/upload cat.png"))


def test_file_links_say_what_they_are() -> None:
    link = "https://chat.example/f/abcdefghijklmnopqrstuvwxyz/caf%C3%A9.jpg"
    assert file_links(f"look {link}!") == f"look [image] café.jpg {link}!"
    other = "https://chat.example/f/abcdefghijklmnopqrstuvwxyz/notes.pdf.bin"
    assert file_links(other) == f"[file] notes.pdf.bin {other}"
    assert file_links("https://example.org/f/short/x.png") == "https://example.org/f/short/x.png"
