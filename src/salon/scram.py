"""The server side of SCRAM-SHA-256 (RFC 5802, RFC 7677), sans-I/O, standard library only.

The server keeps :class:`~salon.store.base.ScramCredentials` (salt, iteration count,
StoredKey, ServerKey), never the password. Deriving them costs ``iterations`` rounds of
PBKDF2 and runs off the event loop; verifying a client's proof costs two HMACs and a hash.

RFC 5802 section 3::

    SaltedPassword  := Hi(Normalize(password), salt, i)
    ClientKey       := HMAC(SaltedPassword, "Client Key")
    StoredKey       := H(ClientKey)
    AuthMessage     := client-first-message-bare + "," +
                       server-first-message + "," +
                       client-final-message-without-proof
    ClientSignature := HMAC(StoredKey, AuthMessage)
    ClientProof     := ClientKey XOR ClientSignature
    ServerKey       := HMAC(SaltedPassword, "Server Key")
    ServerSignature := HMAC(ServerKey, AuthMessage)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import stringprep
import unicodedata
from collections.abc import Callable

from salon.store.base import ScramCredentials

MECHANISM = "SCRAM-SHA-256"
# RFC 7677: "the hash iteration-count announced by a server SHOULD be at least 4096".
DEFAULT_ITERATIONS = 4096
MIN_ITERATIONS = 4096
SALT_BYTES = 16
NONCE_BYTES = 18


class ScramError(Exception):
    """The client's message is malformed or its proof is wrong (``args[0]`` says why)."""


def saslprep(text: str) -> str:
    """RFC 4013 SASLprep (stored strings profile); raises ValueError on prohibited input."""
    mapped = []
    for ch in text:
        if stringprep.in_table_b1(ch):
            continue  # commonly mapped to nothing
        mapped.append(" " if stringprep.in_table_c12(ch) else ch)
    out = unicodedata.normalize("NFKC", "".join(mapped))
    if not out:
        return out
    prohibited = (
        stringprep.in_table_c12,
        stringprep.in_table_c21,
        stringprep.in_table_c22,
        stringprep.in_table_c3,
        stringprep.in_table_c4,
        stringprep.in_table_c5,
        stringprep.in_table_c6,
        stringprep.in_table_c7,
        stringprep.in_table_c8,
        stringprep.in_table_c9,
        stringprep.in_table_a1,
    )
    for ch in out:
        if any(test(ch) for test in prohibited):
            raise ValueError("prohibited character")
    # RFC 3454 section 6: bidirectional text.
    if any(stringprep.in_table_d1(ch) for ch in out):
        if any(stringprep.in_table_d2(ch) for ch in out):
            raise ValueError("mixed bidirectional text")
        if not (stringprep.in_table_d1(out[0]) and stringprep.in_table_d1(out[-1])):
            raise ValueError("bidirectional text must start and end with RandALCat")
    return out


def normalize_password(password: str) -> bytes:
    """The bytes SCRAM hashes: SASLprep'd when possible, else the raw UTF-8 (as many
    implementations do, so that such passwords still work with clients that skip it)."""
    try:
        return saslprep(password).encode("utf-8")
    except ValueError:
        return password.encode("utf-8")


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


def make_credentials(
    password: str, iterations: int = DEFAULT_ITERATIONS, salt: bytes | None = None
) -> ScramCredentials:
    """Derive what the server stores for ``password`` (slow: run it off the event loop)."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", normalize_password(password), salt, iterations)
    client_key = _hmac(salted, b"Client Key")
    return ScramCredentials(
        salt=salt,
        iterations=iterations,
        stored_key=hashlib.sha256(client_key).digest(),
        server_key=_hmac(salted, b"Server Key"),
    )


def fake_credentials(secret: bytes, username: str, iterations: int) -> ScramCredentials:
    """Stable, unverifiable credentials for an unknown user, so that the exchange looks
    the same whether or not the account exists (no enumeration by SCRAM)."""
    seed = _hmac(secret, username.encode("utf-8", "surrogateescape"))
    return ScramCredentials(
        salt=seed[:SALT_BYTES],
        iterations=iterations,
        stored_key=_hmac(seed, b"stored"),
        server_key=_hmac(seed, b"server"),
    )


def _decode_saslname(name: str) -> str:
    """RFC 5802: ',' and '=' in names are sent as '=2C' and '=3D'; any other '=' is bad."""
    out = []
    i = 0
    while i < len(name):
        ch = name[i]
        if ch == "=":
            code = name[i : i + 3]
            if code == "=2C":
                out.append(",")
            elif code == "=3D":
                out.append("=")
            else:
                raise ScramError("invalid username encoding")
            i += 3
            continue
        if ch == ",":
            raise ScramError("invalid username encoding")
        out.append(ch)
        i += 1
    return "".join(out)


def _attributes(message: str) -> list[tuple[str, str]]:
    out = []
    for item in message.split(","):
        key, eq, value = item.partition("=")
        if not eq or len(key) != 1:
            raise ScramError("malformed attribute")
        out.append((key, value))
    return out


class ScramServer:
    """One SCRAM-SHA-256 exchange. Feed the client's two messages in turn.

    ``lookup(username)`` returns the stored credentials, or None for an unknown user
    (the exchange then continues with :func:`fake_credentials` and fails at the proof).
    """

    def __init__(
        self,
        lookup: Callable[[str], ScramCredentials | None],
        secret: bytes,
        fake_iterations: int = DEFAULT_ITERATIONS,
    ) -> None:
        self._lookup = lookup
        self._secret = secret
        self._fake_iterations = fake_iterations
        self.username = ""
        self.authzid = ""
        self.known = False
        self._creds: ScramCredentials | None = None
        self._nonce = ""
        self._gs2_header = ""
        self._client_first_bare = ""
        self._server_first = ""

    def first(self, data: bytes) -> bytes:
        """Take client-first-message, return server-first-message."""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ScramError("not UTF-8") from None
        if "\0" in text:
            raise ScramError("NUL in message")
        # gs2-header = gs2-cbind-flag "," [ authzid ] ","
        parts = text.split(",", 2)
        if len(parts) != 3:
            raise ScramError("malformed client-first-message")
        cbind, authz, bare = parts
        if cbind.startswith("p="):
            raise ScramError("channel binding is not supported")
        if cbind not in ("n", "y"):
            raise ScramError("malformed channel binding flag")
        if authz:
            if not authz.startswith("a="):
                raise ScramError("malformed authzid")
            self.authzid = _decode_saslname(authz[2:])
        attrs = _attributes(bare)
        if len(attrs) < 2 or attrs[0][0] != "n" or attrs[1][0] != "r":
            # "m" (mandatory extension) first would also land here: not supported.
            raise ScramError("malformed client-first-message")
        username = _decode_saslname(attrs[0][1])
        client_nonce = attrs[1][1]
        if not username or not client_nonce:
            raise ScramError("empty username or nonce")
        if any(ord(ch) < 0x21 or ord(ch) > 0x7E or ch == "," for ch in client_nonce):
            raise ScramError("invalid nonce")
        self.username = username
        creds = self._lookup(username)
        self.known = creds is not None
        if creds is None:
            creds = fake_credentials(self._secret, username, self._fake_iterations)
        self._creds = creds
        self._gs2_header = f"{cbind},{authz},"
        self._client_first_bare = bare
        self._nonce = client_nonce + base64.b64encode(secrets.token_bytes(NONCE_BYTES)).decode()
        salt = base64.b64encode(creds.salt).decode()
        self._server_first = f"r={self._nonce},s={salt},i={creds.iterations}"
        return self._server_first.encode()

    def final(self, data: bytes) -> bytes:
        """Take client-final-message; return server-final-message when the proof is right,
        else raise :class:`ScramError`."""
        creds = self._creds
        if creds is None:
            raise ScramError("out of order")
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError:
            raise ScramError("not ASCII") from None
        without_proof, sep, proof_attr = text.rpartition(",p=")
        if not sep or not without_proof:
            raise ScramError("malformed client-final-message")
        attrs = dict(_attributes(without_proof))
        expected_cbind = base64.b64encode(self._gs2_header.encode()).decode()
        if attrs.get("c") != expected_cbind:
            raise ScramError("channel binding mismatch")
        if attrs.get("r") != self._nonce:
            raise ScramError("nonce mismatch")
        try:
            proof = base64.b64decode(proof_attr, validate=True)
        except (binascii.Error, ValueError):
            raise ScramError("malformed proof") from None
        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}".encode()
        signature = _hmac(creds.stored_key, auth_message)
        if len(proof) != len(signature):
            raise ScramError("wrong proof")
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        ok = hmac.compare_digest(hashlib.sha256(client_key).digest(), creds.stored_key)
        if not ok or not self.known:
            raise ScramError("wrong proof")
        server_signature = _hmac(creds.server_key, auth_message)
        return b"v=" + base64.b64encode(server_signature)
