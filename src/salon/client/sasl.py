"""SASL mechanisms for the IRCv3 ``sasl`` capability: PLAIN (RFC 4616) and SCRAM-SHA-256
(RFC 5802, RFC 7677), plus the 400-byte AUTHENTICATE chunking of the IRCv3 sasl-3.1 spec.

Pure functions and small state objects; nothing here touches the network.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable

CHUNK = 400  # sasl-3.1: "the client MUST split the payload into chunks of 400 bytes"


class SaslError(Exception):
    """The server's answer does not fit the mechanism (or fails verification)."""


def plain_payload(account: str, password: str, authzid: str = "") -> bytes:
    """RFC 4616: ``[authzid] NUL authcid NUL passwd``."""
    return f"{authzid}\0{account}\0{password}".encode()


def encode_chunks(payload: bytes) -> list[str]:
    """The AUTHENTICATE arguments that carry ``payload``: base64 in 400-byte pieces; ``+`` for
    an empty payload and after a last piece of exactly 400 bytes."""
    text = base64.b64encode(payload).decode("ascii")
    if not text:
        return ["+"]
    chunks = [text[i : i + CHUNK] for i in range(0, len(text), CHUNK)]
    if len(chunks[-1]) == CHUNK:
        chunks.append("+")
    return chunks


class ChunkReader:
    """Reassembles a server payload sent in 400-byte AUTHENTICATE pieces."""

    def __init__(self) -> None:
        self._parts: list[str] = []

    def feed(self, arg: str) -> bytes | None:
        """The decoded payload once complete, else None (more pieces to come)."""
        if arg != "+":
            self._parts.append(arg)
            if len(arg) == CHUNK:
                return None
        text = "".join(self._parts)
        self._parts = []
        try:
            return base64.b64decode(text, validate=True) if text else b""
        except ValueError as exc:
            raise SaslError(f"bad base64 from server: {exc}") from None


def _saslname(name: str) -> str:
    return name.replace("=", "=3D").replace(",", "=2C")


def _attributes(message: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in message.split(","):
        key, eq, value = item.partition("=")
        if eq and len(key) == 1:
            out[key] = value
    return out


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


class ScramSha256:
    """The client side of SCRAM-SHA-256 without channel binding (gs2 header ``n,,``)."""

    name = "SCRAM-SHA-256"

    def __init__(self, account: str, password: str, nonce: Callable[[], str] | None = None) -> None:
        self.account = account
        self.password = password
        self.nonce = (nonce or (lambda: secrets.token_urlsafe(18)))()
        self._first_bare = f"n={_saslname(account)},r={self.nonce}"
        self._server_signature = b""
        self.nonce_sent = False  # client-first-message sent
        self.final_sent = False  # client-final-message sent
        self.done = False  # the server's signature checked out

    def client_first(self) -> bytes:
        return ("n,," + self._first_bare).encode()

    def client_final(self, server_first: bytes) -> bytes:
        text = server_first.decode("utf-8", "replace")
        attrs = _attributes(text)
        if "e" in attrs:
            raise SaslError(f"server error: {attrs['e']}")
        try:
            nonce, salt_b64, iterations = attrs["r"], attrs["s"], int(attrs["i"])
            salt = base64.b64decode(salt_b64, validate=True)
        except (KeyError, ValueError):
            raise SaslError("malformed server-first-message") from None
        if not nonce.startswith(self.nonce) or len(nonce) == len(self.nonce):
            raise SaslError("server nonce does not extend ours")
        if iterations < 1:
            raise SaslError("bad iteration count")
        salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(), salt, iterations)
        client_key = _hmac(salted, b"Client Key")
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c=biws,r={nonce}"
        auth_message = f"{self._first_bare},{text},{without_proof}".encode()
        signature = _hmac(stored_key, auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        self._server_signature = _hmac(_hmac(salted, b"Server Key"), auth_message)
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify_server_final(self, server_final: bytes) -> None:
        attrs = _attributes(server_final.decode("utf-8", "replace"))
        if "e" in attrs:
            raise SaslError(f"server error: {attrs['e']}")
        try:
            got = base64.b64decode(attrs["v"], validate=True)
        except (KeyError, ValueError):
            raise SaslError("malformed server-final-message") from None
        if not self._server_signature or not hmac.compare_digest(got, self._server_signature):
            raise SaslError("the server's signature does not match: it may not know the password")
        self.done = True
