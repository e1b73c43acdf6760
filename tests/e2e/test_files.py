"""The file host (soju.im/FILEHOST) of a real server process, over real sockets: uploads,
who may read what, limits, and serving (docs/files.md)."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from accounthelpers import b64
from conftest import irc_user
from filehelpers import (
    PASSWORD,
    URL,
    account,
    basic,
    file_rows,
    files_salon,
    path_of,
    request,
    stored_blobs,
    upload,
)

pytestmark = pytest.mark.timeout(90)


def test_upload_answers_201_and_stores_by_content(make_salon: Any, connect: Any) -> None:
    s = files_salon(make_salon)
    account(connect, s, "alice")
    account(connect, s, "bob")
    data = b"hello, files\n"
    up = upload(s, data, "note.txt", basic("alice"))
    assert up.status == 201, up.body
    url = up.header("Location")
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/f/[a-z2-7]{26}/note\.txt", url), url
    assert "alice" not in url
    # Content-addressed: data/files/<aa>/<bb>/<sha256>, 0600; and a row in salon.db.
    sha = hashlib.sha256(data).hexdigest()
    blob = Path(s.data_dir) / "files" / sha[:2] / sha[2:4] / sha
    assert blob.read_bytes() == data
    assert stat.S_IMODE(blob.stat().st_mode) == 0o600
    assert file_rows(s) == 1
    # Unposted: its owner only. 401 asks for a login, 403 is for another account.
    path = path_of(url)
    anonymous = request(s, "GET", path)
    assert anonymous.status == 401
    assert anonymous.header("WWW-Authenticate").startswith("Basic ")
    assert request(s, "GET", path, headers=basic("bob")).status == 403
    mine = request(s, "GET", path, headers=basic("alice"))
    assert mine.status == 200 and mine.body == data
    # The same bytes again: one blob, two files.
    again = upload(s, data, "copy.txt", basic("alice"))
    assert again.status == 201 and again.header("Location") != url
    assert stored_blobs(s) == [blob]
    # Wrong password, no credentials: 401 and nothing stored.
    assert upload(s, b"x", "x", basic("alice", "wrong")).status == 401
    assert upload(s, b"x", "x").status == 401
    assert stored_blobs(s) == [blob] and file_rows(s) == 2
    options = request(s, "OPTIONS", "/upload")
    assert options.status == 204
    assert "POST" in options.header("Allow")
    assert options.header("Accept-Post") == "*/*"
    assert options.header("Upload-Limit") == f"maxsize={50 << 20}"
    assert "Traceback" not in s.log()


def test_filehost_is_advertised_to_accounts(make_salon: Any, connect: Any) -> None:
    s = files_salon(make_salon)
    alice = account(connect, s, "alice")
    upload_url = f"http://127.0.0.1:{s.http_port}/upload"
    alice.expect(rf" 005 alice soju\.im/FILEHOST={re.escape(upload_url)} draft/FILEHOST=")
    alice.send("QUIT")
    # A guest is not told; logging in later (sasl-3.2) brings a new 005.
    guest = connect(s.irc_port)
    guest.register("visitor", caps="sasl")
    lines = guest.read_all()
    assert not any("FILEHOST" in line for line in guest.lines + lines)
    guest.send("AUTHENTICATE PLAIN")
    guest.expect(r"AUTHENTICATE \+")
    guest.send("AUTHENTICATE " + b64(f"\0alice\0{PASSWORD}".encode()))
    guest.expect(r" 900 ")
    guest.expect(rf" 005 visitor soju\.im/FILEHOST={re.escape(upload_url)} ")


def test_a_tls_connection_is_never_given_an_http_url(make_salon: Any, tmp_path: Path) -> None:
    from conftest import free_port
    from nethelpers import NetClient, client_context

    s = files_salon(make_salon, listen={"tls_port": free_port()})
    tls_port = int(s.sections["listen"]["tls_port"])
    plain = NetClient(s.irc_port)
    secure = NetClient(tls_port, context=client_context())
    try:
        for c, nick in ((plain, "plainuser"), (secure, "tlsuser")):
            c.register(nick)
            c.send(f"REGISTER * * :{PASSWORD}")
            c.expect(rf"REGISTER SUCCESS {nick}")
        plain.expect(r" 005 plainuser soju\.im/FILEHOST=http://")
        assert not any("FILEHOST" in line for line in secure.lines + secure.read_all())
    finally:
        plain.close()
        secure.close()


def test_token_uploads(make_salon: Any, connect: Any) -> None:
    s = files_salon(make_salon)
    alice = account(connect, s, "alice")
    alice.send("TOKEN GENERATE FILEHOST")
    token = alice.expect(r"TOKEN GENERATE FILEHOST (\S+)").group(1)
    bearer = {"Authorization": f"Bearer {token}"}
    up = upload(s, b"by token\n", "t.txt", bearer)
    assert up.status == 201, up.body
    assert request(s, "GET", path_of(up.header("Location")), headers=bearer).status == 200
    assert upload(s, b"x", "x", {"Authorization": "Bearer nope"}).status == 401
    # A guest (who = "accounts") gets none.
    guest = irc_user(connect, s.irc_port, "guest")
    guest.send("TOKEN GENERATE FILEHOST")
    guest.expect(r"FAIL TOKEN ACCOUNT_REQUIRED")
    # The token dies with its connection.
    alice.send("QUIT")
    alice.read_all()
    time.sleep(0.2)
    assert upload(s, b"late\n", "late.txt", bearer).status == 401


def test_basic_failures_count_with_sasl(make_salon: Any, connect: Any) -> None:
    s = files_salon(make_salon, accounts={"login_failures_per_ip": 3})
    account(connect, s, "alice")
    for _ in range(3):
        assert upload(s, b"x", "x", basic("alice", "wrong")).status == 401
    throttled = upload(s, b"x", "x", basic("alice"))
    assert throttled.status == 429 and int(throttled.header("Retry-After")) > 0
    # The same counters as SASL: this address's IRC logins wait too.
    c = connect(s.irc_port)
    c.send("CAP REQ :sasl")
    c.send("AUTHENTICATE PLAIN")
    c.expect(r"AUTHENTICATE \+")
    c.send("AUTHENTICATE " + b64(f"\0alice\0{PASSWORD}".encode()))
    c.expect(r" 904 .*too many failed attempts")


def test_files_follow_history(make_salon: Any, connect: Any) -> None:
    s = files_salon(make_salon)
    alice = account(connect, s, "alice", "#secret", "#lobby")
    alice.send("MODE #secret +s")
    alice.expect(r"MODE #secret \+s")
    bob = account(connect, s, "bob", "#secret", "#lobby")
    carol = account(connect, s, "carol", "#lobby")
    url = upload(s, b"secret plans\n", "plans.txt", basic("alice")).header("Location")
    path = path_of(url)
    alice.send(f"PRIVMSG #secret :look {url}")
    bob.expect(re.escape(url))
    assert request(s, "GET", path).status == 401
    assert request(s, "GET", path, headers=basic("carol")).status == 403
    assert request(s, "GET", path, headers=basic("bob")).body == b"secret plans\n"
    # Membership is checked at each request.
    bob.send("PART #secret")
    bob.expect(r"PART #secret")
    assert request(s, "GET", path, headers=basic("bob")).status == 403
    # An ex-member posting the link in a public channel makes nothing public...
    bob.send(f"PRIVMSG #lobby :{url}")
    carol.expect(re.escape(url))
    assert request(s, "GET", path).status == 401
    # ...a member doing so does.
    alice.send(f"PRIVMSG #lobby :{url}")
    carol.expect(re.escape(url))
    public = request(s, "GET", path)
    assert public.status == 200 and public.header("Cache-Control").startswith("public")
    # A private message: its two sides only.
    url2 = upload(s, b"for bob\n", "dm.txt", basic("alice")).header("Location")
    alice.send(f"PRIVMSG bob :{url2}")
    bob.expect(re.escape(url2))
    path2 = path_of(url2)
    assert request(s, "GET", path2, headers=basic("bob")).status == 200
    assert request(s, "GET", path2, headers=basic("carol")).status == 403
    assert request(s, "GET", path2).status == 401


def test_link_is_enough_when_configured(make_salon: Any, connect: Any) -> None:
    s = files_salon(make_salon, files={"link_access": "anyone"})
    account(connect, s, "alice")
    url = upload(s, b"open\n", "open.txt", basic("alice")).header("Location")
    assert request(s, "GET", path_of(url)).body == b"open\n"


def _leftovers(s: Any, before: list[Path]) -> list[Path]:
    return [p for p in stored_blobs(s) if p not in before]


def test_refusals_leave_nothing(make_salon: Any, connect: Any) -> None:
    s = files_salon(make_salon, files={"max_size": 1000, "quota": 2000, "uploads_per_hour": 4})
    account(connect, s, "alice")
    auth = basic("alice")
    assert upload(s, b"a" * 900, "a.bin", auth).status == 201
    before, rows = stored_blobs(s), file_rows(s)
    # Over max_size by Content-Length: 413 from the head alone, the body never sent.
    with socket.create_connection(("127.0.0.1", s.http_port), timeout=5) as sock:
        head = (
            "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 104857600\r\n"
            f"Authorization: {auth['Authorization']}\r\n\r\n"
        )
        sock.sendall(head.encode())
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413 "), answer
    assert b"Upload-Limit: maxsize=1000" in answer
    # Chunked, over the limit: 413 mid-stream.
    chunks = (b"b" * 400 for _ in range(5))
    chunked = request(s, "POST", "/upload", chunks, auth)  # no length: http.client chunks it
    assert chunked.status == 413
    assert upload(s, b"c" * 900, "c.bin", auth).status == 201
    # The quota: 1800 bytes used of 2000.
    over = upload(s, b"d" * 300, "d.bin", auth)
    assert over.status == 507 and over.body == b"Over quota: 1.8 kB of 2 kB used\n"
    # The rate: 4 uploads an hour.
    assert upload(s, b"e", "e.bin", auth).status == 201
    assert upload(s, b"f", "f.bin", auth).status == 201
    late = upload(s, b"g", "g.bin", auth)
    assert late.status == 429 and int(late.header("Retry-After")) > 0
    assert len(_leftovers(s, before)) == 3 and file_rows(s) == rows + 3
    assert not list((Path(s.data_dir) / "files" / "tmp").iterdir())


def test_min_free_disk_refuses(make_salon: Any, connect: Any) -> None:
    s = files_salon(make_salon, files={"min_free": 1 << 50})
    account(connect, s, "alice")
    refused = upload(s, b"x" * 100, "x.bin", basic("alice"))
    assert refused.status == 507
    assert stored_blobs(s) == [] and file_rows(s) == 0


def _public_file(s: Any, connect: Any, data: bytes, name: str) -> str:
    """Upload as alice and post the URL in #lobby: a path anyone may GET."""
    alice = account(connect, s, "alice", "#lobby")
    url = upload(s, data, name, basic("alice")).header("Location")
    alice.send(f"PRIVMSG #lobby :{url}")
    alice.send("PING :posted")
    alice.expect("PONG .*posted")
    return path_of(url)


def test_ranges_and_conditional_requests(make_salon: Any, connect: Any) -> None:
    s = files_salon(make_salon)
    data = bytes(range(256)) * 4  # 1024 bytes
    path = _public_file(s, connect, data, "bytes.bin")
    full = request(s, "GET", path)
    assert full.status == 200 and full.body == data
    etag = full.header("ETag")
    assert etag == f'"{hashlib.sha256(data).hexdigest()}"'
    part = request(s, "GET", path, headers={"Range": "bytes=0-99"})
    assert part.status == 206 and part.body == data[:100]
    assert part.header("Content-Range") == "bytes 0-99/1024"
    tail = request(s, "GET", path, headers={"Range": "bytes=-100"})
    assert tail.status == 206 and tail.body == data[-100:]
    beyond = request(s, "GET", path, headers={"Range": "bytes=2000-"})
    assert beyond.status == 416 and beyond.header("Content-Range") == "bytes */1024"
    several = request(s, "GET", path, headers={"Range": "bytes=0-1,5-6"})
    assert several.status == 200 and several.body == data
    stale = request(s, "GET", path, headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert stale.status == 200 and len(stale.body) == 1024
    fresh = request(s, "GET", path, headers={"Range": "bytes=0-9", "If-Range": etag})
    assert fresh.status == 206 and fresh.body == data[:10]
    assert request(s, "GET", path, headers={"If-None-Match": etag}).status == 304
    head = request(s, "HEAD", path)
    assert head.status == 200 and head.body == b""
    skip = {"date"}
    assert [(k, v) for k, v in head.headers.items() if k.lower() not in skip] == [
        (k, v) for k, v in full.headers.items() if k.lower() not in skip
    ]


@pytest.mark.parametrize(
    "target",
    [
        "/f/..%2f..%2fsalon.db",
        "/f/%2e%2e/x",
        "/f/{id}/../../salon.db",
        "/f/{id}/a/b",
        "/f/{id}%00",
        "/f/../salon.db",
    ],
)
def test_path_traversal_is_not_found(make_salon: Any, connect: Any, target: str) -> None:
    s = files_salon(make_salon)
    path = _public_file(s, connect, b"fine\n", "fine.txt")
    file_id = path.split("/")[2]
    assert request(s, "GET", path).status == 200
    with socket.create_connection(("127.0.0.1", s.http_port), timeout=5) as sock:
        line = f"GET {target.format(id=file_id)} HTTP/1.1\r\nHost: x\r\n\r\n"
        sock.sendall(line.encode())
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 404 "), answer


@pytest.mark.parametrize(
    "name", ["../../x", 'a"b', "x\r\nSet-Cookie: y", "é" * 150 + ".txt", "\u202etxt.exe"]
)
def test_hostile_names_give_well_formed_headers(make_salon: Any, connect: Any, name: str) -> None:
    s = files_salon(make_salon)
    account(connect, s, "alice")
    up = upload(s, b"harmless text\n", name, basic("alice"))
    assert up.status == 201, up.body
    url = up.header("Location")
    assert URL.fullmatch(url), url
    assert "Set-Cookie" not in up.headers
    got = request(s, "GET", path_of(url), headers=basic("alice"))
    disposition = got.header("Content-Disposition")
    assert re.fullmatch(
        r"inline; filename=\"[ -~]+\"; filename\*=UTF-8''[A-Za-z0-9%!#$&+.^_`|~-]+", disposition
    ), disposition
    assert "Set-Cookie" not in got.headers and got.headers.get_all("Content-Disposition") == [
        disposition
    ]
    stored = got.header("Content-Disposition").split("filename*=UTF-8''")[1]
    assert "/" not in stored and len(stored.encode()) <= 3 * 200


def test_owner_deletes_then_410(make_salon: Any, connect: Any) -> None:
    s = files_salon(make_salon)
    path = _public_file(s, connect, b"short-lived\n", "gone.txt")
    account(connect, s, "bob")
    assert request(s, "DELETE", path).status == 401
    assert request(s, "DELETE", path, headers=basic("bob")).status == 403
    assert request(s, "DELETE", path, headers=basic("alice")).status == 204
    assert request(s, "GET", path).status == 410
    deadline = time.monotonic() + 5
    while stored_blobs(s) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stored_blobs(s) == []


def _vm(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(key)


def test_a_100_mib_upload_streams(make_salon: Any, connect: Any) -> None:
    size = 100 << 20
    s = files_salon(make_salon, files={"max_size": size, "quota": size * 2})
    account(connect, s, "alice")
    pid = s.proc.pid
    before = _vm(pid, "VmHWM")
    piece = os.urandom(1 << 20)
    sent = hashlib.sha256()

    def body() -> Any:
        for i in range(100):
            chunk = bytes([i]) + piece[1:]
            sent.update(chunk)
            yield chunk

    headers = {**basic("alice"), "Content-Length": str(size)}
    up = request(s, "POST", "/upload", body(), headers)
    assert up.status == 201, up.body
    got = hashlib.sha256()
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", s.http_port, timeout=60)
    conn.request("GET", path_of(up.header("Location")), headers=basic("alice"))
    response = conn.getresponse()
    assert response.status == 200
    while chunk := response.read(1 << 20):
        got.update(chunk)
    conn.close()
    assert got.hexdigest() == sent.hexdigest()
    growth = _vm(pid, "VmHWM") - before
    assert growth < 32 << 20, f"the server's peak RSS grew by {growth >> 20} MiB"


def test_unposted_uploads_expire_with_their_blob(make_salon: Any, connect: Any) -> None:
    s = files_salon(make_salon, files={"unclaimed_hours": 0.001})  # 3.6 s
    account(connect, s, "alice")
    up = upload(s, b"nobody posts me\n", "lonely.txt", basic("alice"))
    assert up.status == 201 and stored_blobs(s) and file_rows(s) == 1
    deadline = time.monotonic() + 15
    while (stored_blobs(s) or file_rows(s)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert stored_blobs(s) == [] and file_rows(s) == 0
    assert request(s, "GET", path_of(up.header("Location")), headers=basic("alice")).status == 404


def test_fileserv_lists_and_deletes(make_salon: Any, connect: Any) -> None:
    s = files_salon(make_salon, files={"quota": 1 << 20})
    alice = account(connect, s, "alice")
    bob = account(connect, s, "bob")
    url = upload(s, b"\0" * 2048, "two.bin", basic("alice")).header("Location")
    file_id = path_of(url).split("/")[2]
    alice.send("PRIVMSG FileServ :LIST")
    alice.expect(rf"NOTICE alice :{file_id}  two\.bin  2 kB  not posted")
    alice.send("PRIVMSG FileServ :QUOTA")
    alice.expect(r"NOTICE alice :Quota: 2 kB of 1 MB used, in 1 files")
    bob.send(f"PRIVMSG FileServ :DELETE {file_id}")
    bob.expect(rf"NOTICE bob :No file {file_id} of yours")
    alice.send(f"PRIVMSG FileServ :INFO {file_id}")
    alice.expect(r"NOTICE alice :Not posted yet")
    alice.send(f"PRIVMSG FileServ :DELETE {file_id}")
    alice.expect(rf"NOTICE alice :Deleted two\.bin \({file_id}\)")
    assert request(s, "GET", path_of(url), headers=basic("alice")).status == 410


def _cli(s: Any, *args: str) -> Any:
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "salon", "files", *args, "--config", str(s.config_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_files_cli(make_salon: Any, connect: Any) -> None:
    s = files_salon(make_salon)
    account(connect, s, "alice")
    kept = upload(s, b"kept\n", "kept.txt", basic("alice")).header("Location")
    doomed = upload(s, b"doomed\n", "doomed.txt", basic("alice")).header("Location")
    kept_id, doomed_id = path_of(kept).split("/")[2], path_of(doomed).split("/")[2]
    assert "stop the server" in _cli(s, "gc").stderr
    s.stop()
    listing = _cli(s, "list")
    assert listing.returncode == 0 and kept_id in listing.stdout and doomed_id in listing.stdout
    assert _cli(s, "verify").stdout.strip() == "2 of 2 files verified"
    assert _cli(s, "rm", doomed_id).returncode == 0
    assert _cli(s, "rm", "nosuchfile").returncode == 2
    root = Path(s.data_dir) / "files"
    orphan = root / "ab" / "cd" / ("abcd" + "0" * 60)
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"nobody's")
    (root / "tmp" / "half-an-upload").write_bytes(b"half")
    assert _cli(s, "gc").stdout.strip() == "removed 1 unused blobs"
    assert [p.name for p in stored_blobs(s)] == [hashlib.sha256(b"kept\n").hexdigest()]
    stored_blobs(s)[0].write_bytes(b"tampered\n")
    bad = _cli(s, "verify")
    assert bad.returncode == 1 and f"{kept_id}: changed" in bad.stdout
    s.start()
    assert request(s, "GET", path_of(doomed), headers=basic("alice")).status == 410


def test_photos_lose_their_gps_but_not_their_orientation(make_salon: Any, connect: Any) -> None:
    from imagehelpers import SCAN, SECRET, jpeg

    s = files_salon(make_salon)
    account(connect, s, "alice")
    up = upload(s, jpeg(6), "holiday.jpg", basic("alice"))
    assert up.status == 201
    got = request(s, "GET", path_of(up.header("Location")), headers=basic("alice"))
    assert got.header("Content-Type") == "image/jpeg"
    assert SECRET not in got.body and got.body.endswith(SCAN + b"\xff\xd9")
    assert b"Exif\0\0MM\0*" in got.body  # the minimal Exif with the orientation
    # The stored hash is the served bytes': ETag, and the blob's name.
    sha = hashlib.sha256(got.body).hexdigest()
    assert got.header("ETag") == f'"{sha}"'
    assert [p.name for p in stored_blobs(s)] == [sha]
    assert stat.S_IMODE(stored_blobs(s)[0].stat().st_mode) == 0o600


def test_cors_for_allowed_origins_only(make_salon: Any, connect: Any) -> None:
    good, bad = "https://gamja.example", "https://evil.example"
    s = files_salon(make_salon, files={"allowed_origins": [good]})
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-disposition",
    }
    ok = request(s, "OPTIONS", "/upload", headers={"Origin": good, **preflight})
    assert ok.status == 204
    assert ok.header("Access-Control-Allow-Origin") == good
    assert ok.header("Access-Control-Allow-Credentials") == "true"
    assert "POST" in ok.header("Access-Control-Allow-Methods")
    assert "Content-Disposition" in ok.header("Access-Control-Allow-Headers")
    refused = request(s, "OPTIONS", "/upload", headers={"Origin": bad, **preflight})
    assert "Access-Control-Allow-Origin" not in refused.headers
    account(connect, s, "alice")
    up = upload(s, b"x\n", "x.txt", {**basic("alice"), "Origin": good})
    assert up.status == 201 and "Location" in up.header("Access-Control-Expose-Headers")


def test_even_a_refusal_on_a_file_url_is_inert(make_salon: Any, connect: Any) -> None:
    s = files_salon(
        make_salon,
        listen={"http_request_burst": 1, "http_request_rate": 0.01},
        connections={"exempt": []},
    )
    assert request(s, "GET", "/f/" + "a" * 26).status == 404
    refused = request(s, "GET", "/f/" + "a" * 26)
    assert refused.status == 429
    assert refused.header("X-Content-Type-Options") == "nosniff"
    assert "sandbox" in refused.header("Content-Security-Policy")
