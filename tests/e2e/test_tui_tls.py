"""TLS in the connection driver: verification, trust on first use with a pinned
fingerprint, --insecure, and a real session through a TLS proxy in front of salon."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from salon.client import Session, Settings
from salon.client.model import Event, Joined
from salon.tui.connection import Connection, Target, TrustError, fingerprint

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """A self-signed certificate for localhost: (cert, key, SHA-256 fingerprint)."""
    d = tmp_path_factory.mktemp("tls")
    crt, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            str(key),
            "-out",
            str(crt),
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )
    der = ssl.PEM_cert_to_DER_cert(crt.read_text())
    return crt, key, fingerprint(der)


async def tls_proxy(cert: tuple[Path, Path, str], upstream: int | None) -> asyncio.Server:
    """A TLS listener that forwards to ``upstream`` (or just holds the connection)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert[0]), str(cert[1]))

    async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        except (OSError, ssl.SSLError):
            pass
        finally:
            w.close()

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        if upstream is None:
            await r.read()
            w.close()
            return
        ur, uw = await asyncio.open_connection("127.0.0.1", upstream)
        await asyncio.gather(pipe(r, uw), pipe(ur, w))

    return await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)


@pytest_asyncio.fixture
async def proxy(cert: tuple[Path, Path, str]) -> AsyncIterator[int]:
    server = await tls_proxy(cert, None)
    yield server.sockets[0].getsockname()[1]
    server.close()


def connection(port: int, **kw: Any) -> tuple[Connection, list[Event]]:
    events: list[Event] = []
    insecure = kw.pop("insecure", False)
    conn = Connection(
        Session(Settings(nick="tls")),
        Target("localhost", port, tls=True, insecure=insecure),
        events.extend,
        connect_timeout=5,
        **kw,
    )
    return conn, events


async def test_untrusted_certificate_is_refused_with_its_fingerprint(proxy: int, cert: Any) -> None:
    conn, _ = connection(proxy)
    with pytest.raises(TrustError) as err:
        await conn._open()
    text = str(err.value)
    assert f"localhost:{proxy} has an untrusted certificate" in text
    assert cert[2] in text and "--insecure" in text and "\n" not in text


async def test_trust_on_first_use_pins_and_asks_once(proxy: int, cert: Any) -> None:
    asked: list[tuple[str, str]] = []
    saved: dict[str, str] = {}

    async def ask(where: str, fp: str, reason: str) -> bool:
        asked.append((where, fp))
        assert "self-signed" in reason or "verify" in reason
        return True

    pins: dict[str, str] = {}
    conn, _ = connection(proxy, pins=pins, ask_trust=ask, save_pin=saved.__setitem__)
    _, writer = await conn._open()
    writer.close()
    assert asked == [(f"localhost:{proxy}", cert[2])]
    assert saved == pins == {f"localhost:{proxy}": cert[2]}
    # Second time: the pin is enough, nobody is asked.
    conn2, _ = connection(proxy, pins=pins, ask_trust=ask)
    _, writer = await conn2._open()
    writer.close()
    assert len(asked) == 1


async def test_a_changed_certificate_is_refused(proxy: int) -> None:
    conn, _ = connection(proxy, pins={f"localhost:{proxy}": "00:11:22"})
    with pytest.raises(TrustError, match="has changed"):
        await conn._open()


async def test_insecure_skips_verification(proxy: int) -> None:
    async def ask(where: str, fp: str, reason: str) -> bool:
        raise AssertionError("not asked with --insecure")

    conn, _ = connection(proxy, insecure=True, ask_trust=ask)
    _, writer = await conn._open()
    assert writer.get_extra_info("ssl_object") is not None
    writer.close()


async def test_a_whole_session_over_tls(salon: Any, cert: Any) -> None:
    server = await tls_proxy(cert, salon.irc_port)
    port = server.sockets[0].getsockname()[1]
    try:
        conn, events = connection(port, pins={f"localhost:{port}": cert[2]})
        task = asyncio.create_task(conn.run())
        for _ in range(200):
            if any(isinstance(e, Joined) for e in events):
                break
            await asyncio.sleep(0.025)
        assert any(isinstance(e, Joined) for e in events)
        conn.quit()
        assert await asyncio.wait_for(task, 5) == ""
    finally:
        server.close()
