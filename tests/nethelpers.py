"""Helpers for the network-edge tests: clients from other loopback addresses, over TLS,
and certificates made with ``cryptography``."""

from __future__ import annotations

import hashlib
import socket
import ssl
import time
import warnings
from pathlib import Path

from conftest import LineClient

from salon.net import tls


class NetClient(LineClient):
    """A :class:`LineClient` from a chosen loopback source address, optionally over TLS."""

    def __init__(
        self,
        port: int,
        *,
        source: str | None = None,
        context: ssl.SSLContext | None = None,
        timeout: float = 5.0,
    ) -> None:
        sock = socket.create_connection(
            ("127.0.0.1", port),
            timeout=timeout,
            source_address=(source, 0) if source else None,
        )
        if context is not None:
            try:
                sock = context.wrap_socket(sock, server_hostname="localhost")
            except BaseException:
                sock.close()
                raise
        self.sock = sock
        self.timeout = timeout
        self.buf = b""
        self.lines = []

    def error_line(self, timeout: float = 5.0) -> str:
        """Read until the server closes; return its ERROR line."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.readline(deadline - time.monotonic())
            except ConnectionError:
                break
            except OSError:
                break
            if line.startswith("ERROR "):
                return line
        raise AssertionError(f"no ERROR line; got {self.lines}")


def client_context(
    cert: tuple[Path, Path] | None = None,
    *,
    maximum: ssl.TLSVersion | None = None,
    minimum: ssl.TLSVersion | None = None,
) -> ssl.SSLContext:
    """A client context that does not verify the server (tests use self-signed ones)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if minimum is not None or maximum is not None:
        # OpenSSL 3 refuses TLS 1.0/1.1 at its default security level, in the client
        # too: lower it so that only the server's minimum decides.
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = minimum or ssl.TLSVersion.MINIMUM_SUPPORTED
    if maximum is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLSv1_1, on purpose
            ctx.maximum_version = maximum
    if cert is not None:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx


def make_cert(directory: Path, name: str) -> tuple[Path, Path, str]:
    """A self-signed certificate and key for ``name`` (made the way the server makes its
    own), in a folder of its own under ``directory``: (cert, key, certfp)."""
    (directory / name).mkdir(parents=True, exist_ok=True)
    cert, key, _ = tls.self_signed(directory / name, name)
    return cert, key, tls.fingerprint(tls.pem_to_der(cert))


def server_certfp(port: int) -> str:
    """The SHA-256 fingerprint of the certificate the TLS listener presents."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    with client_context().wrap_socket(raw, server_hostname="localhost") as tls:
        der = tls.getpeercert(binary_form=True)
    assert der
    return hashlib.sha256(der).hexdigest()
