"""TLS for the IRC listener: the server context, a self-signed certificate when none is
configured, and client certificates for SASL EXTERNAL (``Client.certfp``).

Client certificates
-------------------
IRC uses client certificates as keys, not as proofs of identity from a CA: any
certificate, self-signed ones above all, must be accepted, and its SHA-256 fingerprint
is what identifies the user (NickServ CERT ADD, SASL EXTERNAL). Python's :mod:`ssl`
cannot do that by itself: with ``CERT_OPTIONAL`` a server asks for a certificate but
then verifies whatever it gets against its trust store and aborts the handshake when
that fails (every self-signed certificate), and it has no verify callback
(python/cpython#75425, open since 2017); ``CERT_NONE`` does not even ask for one.

So we do what a verify callback returning 1 does in C: after setting ``CERT_OPTIONAL``
through the public API, we give OpenSSL's ``SSL_CTX_set_verify`` of the context that
callback with :mod:`ctypes`. The ``SSL_CTX *`` is the first field after the object
header of CPython's ``PySSLContext`` (``Modules/_ssl.c``); the functions come from the
libssl that ``_ssl`` itself is linked with. Before touching anything we check that the
pointer really is that context: OpenSSL must report the same options and verify mode as
Python does, for two different values of each. If any check fails (another Python
implementation, a statically linked OpenSSL, a layout change), salon logs a warning and
simply does not ask for client certificates: TLS works, SASL EXTERNAL does not.

Python and uvloop keep the callback: CPython re-reads it (``SSL_CTX_get_verify_callback``)
whenever it sets a verify mode, and uvloop's TLS transport uses the same ``SSL_CTX``
through :meth:`ssl.SSLContext.wrap_bio`. The certificate is then read with
``getpeercert(binary_form=True)``, which returns it whatever its verification result.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import hashlib
import logging
import os
import ssl
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger("salon.net")

SELF_SIGNED_CERT = "tls-cert.pem"
SELF_SIGNED_KEY = "tls-key.pem"
SELF_SIGNED_DAYS = 3650

_VERIFY_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)


def _accept_any(preverify_ok: int, store_ctx: int | None) -> int:
    # Called by OpenSSL for each certificate of the client's chain: accept it. The
    # fingerprint, not the chain, is what identifies the user.
    return 1


# Kept referenced for the life of the process: OpenSSL holds a pointer to it.
_ACCEPT_ANY = _VERIFY_CALLBACK(_accept_any)


class TlsError(Exception):
    """A certificate, key or secret cannot be used: one line for the user."""


def fingerprint(der: bytes) -> str:
    """SHA-256 of a DER certificate: 64 lowercase hex digits (``Client.certfp``)."""
    return hashlib.sha256(der).hexdigest()


def colon_fingerprint(der: bytes) -> str:
    """The same, as colon-separated upper-case pairs (what ``salon chat`` shows)."""
    digest = fingerprint(der).upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def pem_to_der(path: Path) -> bytes:
    """The DER of the first certificate of a PEM file."""
    text = path.read_text(encoding="ascii", errors="replace")
    begin = text.find("-----BEGIN CERTIFICATE-----")
    end = text.find("-----END CERTIFICATE-----", begin)
    if begin < 0 or end < 0:
        raise TlsError(f"{path}: no PEM certificate in it")
    return ssl.PEM_cert_to_DER_cert(text[begin : end + len("-----END CERTIFICATE-----")])


# ----------------------------------------------------------------- the verify callback


def _libssl() -> Any:
    import _ssl

    lib = ctypes.CDLL(_ssl.__file__)
    lib.SSL_CTX_set_verify.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    lib.SSL_CTX_set_verify.restype = None
    lib.SSL_CTX_get_verify_mode.argtypes = [ctypes.c_void_p]
    lib.SSL_CTX_get_verify_mode.restype = ctypes.c_int
    lib.SSL_CTX_get_options.argtypes = [ctypes.c_void_p]
    lib.SSL_CTX_get_options.restype = ctypes.c_uint64
    return lib


def _ssl_ctx_pointer(context: ssl.SSLContext, lib: Any) -> int | None:
    """The ``SSL_CTX *`` of ``context``, or None when it cannot be found for certain."""
    if sys.implementation.name != "cpython":
        return None
    pointer = ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value
    if not pointer or pointer % ctypes.alignment(ctypes.c_void_p):
        return None
    # The candidate must follow what Python changes: two option sets, two verify modes.
    saved_options, saved_mode = context.options, context.verify_mode
    try:
        for extra in (0, ssl.OP_NO_TICKET):
            context.options = saved_options | extra
            if lib.SSL_CTX_get_options(pointer) != int(context.options):
                return None
        for mode in (ssl.CERT_NONE, ssl.CERT_OPTIONAL):
            context.verify_mode = mode
            if lib.SSL_CTX_get_verify_mode(pointer) != int(mode):
                return None
    finally:
        context.options = saved_options
        context.verify_mode = saved_mode
    return pointer


def request_any_client_cert(context: ssl.SSLContext) -> bool:
    """Ask clients for a certificate and accept any (see the module docstring).

    Returns False, with ``context`` left not asking for one, when that is not possible.
    """
    try:
        lib = _libssl()
        pointer = _ssl_ctx_pointer(context, lib)
    except (OSError, AttributeError, ValueError):
        pointer = None
    if pointer is None:
        context.verify_mode = ssl.CERT_NONE
        return False
    context.verify_mode = ssl.CERT_OPTIONAL
    # SSL_VERIFY_PEER (== CERT_OPTIONAL) without SSL_VERIFY_FAIL_IF_NO_PEER_CERT.
    lib.SSL_CTX_set_verify(
        pointer, int(ssl.CERT_OPTIONAL), ctypes.cast(_ACCEPT_ANY, ctypes.c_void_p)
    )
    return True


# ----------------------------------------------------------------- certificates


def self_signed(data_dir: Path, name: str) -> tuple[Path, Path, bool]:
    """The self-signed certificate and key in ``data_dir``, made on first use.

    Returns (cert, key, created). The key is written 0600 and the certificate only once
    the key is in place, so an interrupted start never leaves a certificate without key.
    """
    cert_path = data_dir / SELF_SIGNED_CERT
    key_path = data_dir / SELF_SIGNED_KEY
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path, False
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=SELF_SIGNED_DAYS))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_private(key_path, key_pem)
    tmp = cert_path.with_suffix(".tmp")
    tmp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    tmp.replace(cert_path)
    return cert_path, key_path, True


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file only its owner may read (replacing ``path``)."""
    tmp = path.with_suffix(".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """The listener's context: TLS 1.2 or later, client certificates asked for."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert), str(key))
    except FileNotFoundError as exc:
        raise TlsError(f"{exc.filename or cert}: no such file") from None
    except PermissionError as exc:
        raise TlsError(f"{exc.filename or cert}: permission denied") from None
    except (ssl.SSLError, OSError) as exc:
        raise TlsError(f"cannot load {cert} with {key}: {exc}") from None
    if not request_any_client_cert(context):
        log.warning(
            "TLS client certificates are not available with this Python and OpenSSL: "
            "SASL EXTERNAL will not work"
        )
    return context


def load_secret(path: Path, size: int = 32) -> bytes:
    """A random secret kept in ``path`` (hex, mode 0600), made on first use."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        secret = os.urandom(size)
        _write_private(path, secret.hex().encode() + b"\n")
        return secret
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        raise TlsError(f"{path}: not a hex secret (delete it to make a new one)") from None
    if len(secret) < 16:
        raise TlsError(f"{path}: the secret is too short (delete it to make a new one)")
    if os.name == "posix" and path.stat().st_mode & 0o077:
        log.warning("%s can be read by other users: chmod 600 it", path)
    return secret
