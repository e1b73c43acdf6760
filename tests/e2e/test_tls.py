"""The TLS listener against a real server: handshakes (Python's ssl and openssl s_client),
TLS 1.1 refused, client certificates (certfp, WHOIS 276, SASL EXTERNAL), WHOIS 671, the
self-signed certificate made once and reused, STS only with a configured certificate."""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port, irc_user
from nethelpers import NetClient, client_context, make_cert, server_certfp

from salon.passwords import hash_password

pytestmark = pytest.mark.timeout(60)


def tls_salon(make_salon: Any, **overrides: Any) -> Any:
    port = free_port()
    listen = {"tls_port": port, **overrides.pop("listen", {})}
    s = make_salon(listen=listen, **overrides)
    s.tls_port = s.sections["listen"]["tls_port"]  # picked again if a parallel test took it
    return s


def test_tls_handshake_register_and_whois_secure(make_salon: Any, connect: Any) -> None:
    s = tls_salon(make_salon)
    c = NetClient(s.tls_port, context=client_context())
    assert isinstance(c.sock, ssl.SSLSocket)
    assert c.sock.version() in ("TLSv1.2", "TLSv1.3")
    c.register("secure")
    c.send("WHOIS secure")
    lines = c.read_all()
    assert any(" 671 secure secure :is using a secure connection" in line for line in lines), lines
    assert not any(" 276 " in line for line in lines), lines  # no client certificate
    # A plain-text client sees the TLS user's 671, and has none itself.
    plain = connect(s.irc_port)
    plain.register("plain")
    plain.send("WHOIS secure")
    plain.expect(r" 671 plain secure ")
    plain.send("WHOIS plain")
    assert not any(" 671 " in line for line in plain.read_all())
    c.close()


def test_tls_1_2_accepted_1_1_refused(make_salon: Any) -> None:
    s = tls_salon(make_salon)
    ok = NetClient(s.tls_port, context=client_context(maximum=ssl.TLSVersion.TLSv1_2))
    assert ok.sock.version() == "TLSv1.2"  # type: ignore[attr-defined]
    ok.register("twelve")
    ok.close()
    with pytest.raises(ssl.SSLError):
        NetClient(s.tls_port, context=client_context(maximum=ssl.TLSVersion.TLSv1_1))
    # The server is still fine afterwards.
    again = NetClient(s.tls_port, context=client_context())
    again.register("again")
    again.close()


def test_client_certificate_sets_certfp(make_salon: Any, connect: Any, tmp_path: Path) -> None:
    crt, key, fp = make_cert(tmp_path / "certs", "alice")
    s = tls_salon(make_salon, opers=[{"name": "boss", "password": hash_password("pw")}])
    alice = NetClient(s.tls_port, context=client_context((crt, key)))
    alice.register("alice")
    alice.send("WHOIS alice")
    m = alice.expect(r" 276 alice alice :has client certificate fingerprint ([0-9a-f]+)")
    assert m.group(1) == fp
    # Others do not see it; an operator does.
    bob = connect(s.irc_port)
    bob.register("bob")
    bob.send("WHOIS alice")
    lines = bob.read_all()
    assert any(" 671 bob alice " in line for line in lines), lines
    assert not any(" 276 " in line or fp in line for line in lines), lines
    bob.send("OPER boss pw")
    bob.expect(r" 381 ")
    bob.send("WHOIS alice")
    bob.expect(rf" 276 bob alice :.*{fp}")
    alice.close()


def test_sasl_external_with_the_client_certificate(make_salon: Any, tmp_path: Path) -> None:
    """End to end: register, add the certificate to the account, log in with EXTERNAL."""
    crt, key, fp = make_cert(tmp_path / "certs", "carol")
    s = tls_salon(make_salon)
    ctx = client_context((crt, key))
    c = NetClient(s.tls_port, context=ctx)
    c.register("carol")
    c.send("REGISTER * * :correct horse battery")
    c.expect(r"REGISTER SUCCESS")
    c.send("PRIVMSG NickServ :CERT ADD")
    c.expect(f"Added certificate fingerprint {fp}")
    c.send("QUIT")
    c.close()
    d = NetClient(s.tls_port, context=ctx)
    d.send("CAP LS 302")
    d.send("NICK carol2")
    d.send("USER carol 0 * :carol")
    d.send("CAP REQ :sasl")
    d.expect(r"CAP \S+ ACK :?sasl")
    d.send("AUTHENTICATE EXTERNAL")
    d.expect(r"AUTHENTICATE \+")
    d.send("AUTHENTICATE +")
    d.expect(r" 903 ")
    d.send("CAP END")
    d.expect(r" 001 ")
    d.close()


def test_openssl_s_client(make_salon: Any, tmp_path: Path) -> None:
    crt, key, fp = make_cert(tmp_path / "certs", "dave")
    s = tls_salon(make_salon)

    def s_client(*args: str, text: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{s.tls_port}", "-ign_eof", *args],
            input=text,
            capture_output=True,
            text=True,
            timeout=20,
        )

    talk = "NICK dave\r\nUSER dave 0 * :dave\r\nWHOIS dave\r\nQUIT :bye\r\n"
    res = s_client("-cert", str(crt), "-key", str(key), text=talk)
    assert " 001 dave " in res.stdout, res.stdout + res.stderr
    assert " 671 dave dave " in res.stdout
    assert f"fingerprint {fp}" in res.stdout
    assert re.search(r"Protocol\s*:\s*TLSv1\.[23]", res.stdout), res.stdout
    # No certificate: still fine, and no 276.
    res = s_client(text=talk.replace("dave", "eve"))
    assert " 001 eve " in res.stdout, res.stdout + res.stderr
    assert " 276 " not in res.stdout
    # TLS 1.1: refused by the server (the client's security level lowered so that it
    # would offer it at all).
    res = s_client("-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0", text=talk)
    assert " 001 " not in res.stdout
    assert res.returncode != 0


def test_self_signed_made_once_reused_and_logged(make_salon: Any) -> None:
    s = tls_salon(make_salon)
    log = s.wait_log("TLS certificate (self-signed) SHA-256 fingerprint")
    assert "made a self-signed TLS certificate" in log
    m = re.search(r"TLS certificate \(self-signed\) SHA-256 fingerprint ([0-9A-F:]{95})", log)
    assert m, log
    logged = m.group(1).replace(":", "").lower()
    assert server_certfp(s.tls_port) == logged
    key = s.data_dir / "tls-key.pem"
    assert key.stat().st_mode & 0o777 == 0o600
    cert_bytes = (s.data_dir / "tls-cert.pem").read_bytes()
    assert s.stop() == 0
    s.start()
    log = s.wait_log("TLS certificate (self-signed) SHA-256 fingerprint")
    assert "made a self-signed" not in log
    assert f"fingerprint {m.group(1)}" in log
    assert server_certfp(s.tls_port) == logged
    assert (s.data_dir / "tls-cert.pem").read_bytes() == cert_bytes


def cap_ls(client: NetClient, version: str = " 302") -> str:
    client.send(f"CAP LS{version}")
    caps = []
    while True:
        m = client.expect(r"CAP \* LS (\* )?:?(.*)")
        caps.append(m.group(2))
        if not m.group(1):
            return " ".join(caps)


def test_sts_only_with_a_configured_certificate(
    make_salon: Any, connect: Any, tmp_path: Path
) -> None:
    crt, key, _ = make_cert(tmp_path / "certs", "localhost")
    s = tls_salon(make_salon, tls={"cert": str(crt), "key": str(key), "sts_duration": 86400})
    assert "made a self-signed" not in s.wait_log("TLS certificate (configured)")
    plain = connect(s.irc_port)
    caps = cap_ls(plain).split()
    assert f"sts=port={s.tls_port}" in caps
    plain.send("CAP REQ :sts")
    plain.expect(r"CAP \* NAK :?sts")
    assert "sts" not in cap_ls(plain, "").split()  # no values without 302: not listed
    secure = NetClient(s.tls_port, context=client_context())
    assert "sts=duration=86400" in cap_ls(secure).split()
    secure.close()
    # Self-signed: no STS anywhere.
    other = tls_salon(make_salon)
    plain = connect(other.irc_port)
    assert not any(c.startswith("sts") for c in cap_ls(plain).split())
    secure = NetClient(other.tls_port, context=client_context())
    assert not any(c.startswith("sts") for c in cap_ls(secure).split())
    secure.close()
    # And a configured certificate with sts = false: none either.
    third = tls_salon(make_salon, tls={"cert": str(crt), "key": str(key), "sts": False})
    plain = connect(third.irc_port)
    assert not any(c.startswith("sts") for c in cap_ls(plain).split())


def run_serve(tmp_path: Path, *lines: str) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("\n".join(lines) + "\n")
    return subprocess.run(
        [sys.executable, "-m", "salon", "serve", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=20,
        cwd=tmp_path,
    )


@pytest.mark.parametrize(
    ("tls_lines", "needle"),
    [
        (['cert = "missing.crt"', 'key = "missing.key"'], "missing.crt"),
        (['cert = "only.crt"'], "tls"),
    ],
)
def test_bad_tls_config_is_one_line(tmp_path: Path, tls_lines: list[str], needle: str) -> None:
    res = run_serve(
        tmp_path,
        "[server]",
        f'data_dir = "{tmp_path / "data"}"',
        "[listen]",
        f"irc_port = {free_port()}",
        f"tls_port = {free_port()}",
        "plain_port = 0",
        "http_port = 0",
        "[tls]",
        *tls_lines,
    )
    assert res.returncode == 2, res.stderr
    err = res.stderr.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert needle in err


def test_garbage_on_the_tls_port_is_harmless(make_salon: Any) -> None:
    s = tls_salon(make_salon)
    raw = NetClient(s.tls_port)
    raw.send("NICK plaintext")
    with pytest.raises((ConnectionError, TimeoutError, OSError)):
        raw.readline(3)
    raw.close()
    ok = NetClient(s.tls_port, context=client_context())
    ok.register("fine")
    ok.close()
    assert "Traceback" not in s.log()


def test_a_forged_tls_record_reads_as_words_in_the_quit_line(make_salon: Any, connect: Any) -> None:
    s = tls_salon(make_salon)
    bob = irc_user(connect, s.irc_port, "bob", "#lobby")
    # TLS over a socket of our own (a memory BIO), so that raw bytes can follow the handshake.
    raw = socket.create_connection(("127.0.0.1", s.tls_port), timeout=5)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = client_context().wrap_bio(incoming, outgoing)
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            raw.sendall(outgoing.read())
            incoming.write(raw.recv(65536))
    raw.sendall(outgoing.read())
    tls.write(b"NICK alice\r\nUSER a 0 * :a\r\nJOIN #lobby\r\n")
    raw.sendall(outgoing.read())
    bob.expect(r"^:alice!\S+ JOIN #lobby")
    # An application-data record whose MAC cannot check out.
    raw.sendall(b"\x17\x03\x03\x00\x40" + bytes(64))
    bob.expect(r"^:alice!\S+ QUIT :Read error: TLS error \([a-z ]+\)$")
    raw.close()
    assert "Traceback" not in s.log()


def test_client_cert_callback_installed_or_cleanly_absent(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from salon.net import tls

    crt, key, _ = make_cert(tmp_path, "localhost")
    ctx = tls.server_context(crt, key)
    assert ctx.verify_mode == ssl.CERT_OPTIONAL  # CPython + a shared libssl: installed
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    # Where the SSL_CTX cannot be found for certain: no client certificates, TLS still on.
    monkeypatch.setattr(tls, "_ssl_ctx_pointer", lambda context, lib: None)
    ctx = tls.server_context(crt, key)
    assert ctx.verify_mode == ssl.CERT_NONE
