"""``salon chat --plain``: /upload cancel stops a transfer under way (against a file host
that stopped reading: the transfer is blocked on its socket, and is cut at once)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from filehelpers import PASSWORD, StallingHost, account, files_salon
from test_chat_plain import chat, chat_env

pytestmark = pytest.mark.timeout(60)

BIG = 64 << 20  # more than loopback's socket buffers hold: the transfer blocks


def test_upload_cancel_in_plain(make_salon: Any, connect: Any, tmp_path: Path) -> None:
    host = StallingHost()
    try:
        s = files_salon(make_salon, files={"public_url": host.url})
        account(connect, s, "alice").send("QUIT")
        big = tmp_path / "big.bin"
        with open(big, "wb") as fh:
            fh.truncate(BIG)
        env = chat_env(tmp_path)
        env["SALON_SASL_PASSWORD"] = PASSWORD
        where = f"127.0.0.1:{s.irc_port}"
        args = ("--plain", "--nick", "alice", "--sasl", "alice", where, "#lobby")
        proc = subprocess.Popen(
            [sys.executable, "-m", "salon", "chat", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert proc.stdin is not None
        proc.stdin.write(f"/upload {big} never posted\n")
        proc.stdin.flush()
        assert host.started.wait(20), "the upload never started"
        time.sleep(0.3)  # blocked on the socket by now
        cancelled = time.monotonic()
        out, err = proc.communicate("/upload cancel\n", timeout=30)
        took = time.monotonic() - cancelled
        assert proc.returncode == 0, err
        assert "upload: upload cancelled" in out, out
        assert "uploaded" not in out and "never posted" not in out
        # Cut at once, not after the client's 60 s without progress.
        assert took < 20, took
        assert host.drain()
    finally:
        host.close()


def test_upload_cancel_with_nothing_under_way(salon: Any, tmp_path: Path) -> None:
    where = f"127.0.0.1:{salon.irc_port}"
    result = chat(tmp_path, "--plain", "--nick", "x", where, "#lobby", stdin="/upload cancel\n")
    assert result.returncode == 0, result.stderr
    assert "upload: nothing to cancel" in result.stdout, result.stdout
