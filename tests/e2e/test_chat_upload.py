"""``salon chat --plain`` with /upload (soju.im/FILEHOST) against a real server: Basic with
the SASL password, a token for a guest, and a server that hosts no files."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from conftest import irc_user
from filehelpers import PASSWORD, account, files_salon, path_of, request
from test_chat_plain import chat

pytestmark = pytest.mark.timeout(60)


def alice_types(s: Any, tmp_path: Path, stdin: str) -> Any:
    """``salon chat --plain`` as alice, logged in with SASL (the password: Basic)."""
    where = f"127.0.0.1:{s.irc_port}"
    args = ("--plain", "--nick", "alice", "--sasl", "alice", where, "#lobby")
    return chat(tmp_path, *args, stdin=stdin, sasl_password=PASSWORD)


def test_upload_with_the_sasl_password(make_salon: Any, connect: Any, tmp_path: Path) -> None:
    s = files_salon(make_salon)
    account(connect, s, "alice").send("QUIT")
    bob = irc_user(connect, s.irc_port, "bob", "#lobby")
    photo = tmp_path / "notes for bob.txt"
    photo.write_bytes(b"the plan, in plain text\n")
    result = alice_types(s, tmp_path, f'/upload "{photo}" here it is\nthanks\n')
    assert result.returncode == 0, result.stderr
    said = bob.expect(r":alice!\S+ PRIVMSG #lobby :here it is (http://\S+)")
    url = said.group(1)
    bob.expect(r":alice!\S+ PRIVMSG #lobby :?thanks")  # after the link, as typed
    assert request(s, "GET", path_of(url)).body == photo.read_bytes()  # public: #lobby
    assert f"uploaded notes for bob.txt (24 bytes): {url}" in result.stdout
    # The link shown with what it is and its name.
    assert re.search(r"<alice> here it is \[file\] notes for bob\.txt http://", result.stdout)


def test_a_guest_uploads_with_a_token(make_salon: Any, connect: Any, tmp_path: Path) -> None:
    s = files_salon(make_salon, files={"who": "everyone"})
    bob = irc_user(connect, s.irc_port, "bob", "#lobby")
    image = tmp_path / "dot.gif"
    image.write_bytes(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;")
    where = f"127.0.0.1:{s.irc_port}"
    result = chat(
        tmp_path, "--plain", "--nick", "guest", where, "#lobby", stdin=f"/upload {image}\n"
    )
    assert result.returncode == 0, result.stderr
    url = bob.expect(r":guest!\S+ PRIVMSG #lobby :?(http://\S+/dot\.gif)").group(1)
    assert request(s, "GET", path_of(url)).body == image.read_bytes()
    assert re.search(r"<guest> \[image\] dot\.gif http://", result.stdout)


def test_a_server_without_a_file_host(salon: Any, tmp_path: Path) -> None:
    where = f"127.0.0.1:{salon.irc_port}"
    result = chat(tmp_path, "--plain", "--nick", "x", where, "#lobby", stdin="/upload /etc/hosts\n")
    assert result.returncode == 0, result.stderr
    errors = [line for line in result.stdout.splitlines() if "FILEHOST" in line]
    assert len(errors) == 1 and "does not host files" in errors[0], result.stdout


def test_a_refused_upload_says_why(make_salon: Any, connect: Any, tmp_path: Path) -> None:
    s = files_salon(make_salon, files={"max_size": 10})
    account(connect, s, "alice").send("QUIT")
    big = tmp_path / "big.bin"
    big.write_bytes(b"\0" * (2 << 20))
    result = alice_types(s, tmp_path, f"/upload {big}\n/upload {tmp_path / 'missing.png'}\n")
    assert result.returncode == 0, result.stderr
    assert "upload: the file is over the server's limit of 0 MB" in result.stdout
    assert "upload: cannot read" in result.stdout and "Traceback" not in result.stderr
