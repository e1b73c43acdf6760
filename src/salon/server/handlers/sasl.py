"""SASL for IRC (IRCv3 sasl-3.1 and 3.2): the AUTHENTICATE exchange, server side.

Mechanisms: PLAIN (RFC 4616, the password checked against its argon2id hash off the
event loop), SCRAM-SHA-256 (RFC 7677, against stored credentials; see :mod:`salon.scram`)
and EXTERNAL (RFC 4422 appendix A: the TLS client certificate's fingerprint, which the
shell puts in ``client.certfp``).

sasl-3.1: "The response is encoded in Base64 (RFC 4648), then split to 400-byte chunks,
and each chunk is sent as a separate AUTHENTICATE command. ... If the last chunk was
exactly 400 bytes long, it must also be followed by AUTHENTICATE + to signal end of
response." A longer chunk gets 905; the whole response is capped at
:data:`MAX_RESPONSE` bytes of base64 (904 beyond that). ``AUTHENTICATE *`` aborts (906).

sasl-3.2: "Servers SHOULD allow a client, authenticated or otherwise, to reauthenticate
by sending a new AUTHENTICATE message at any time": after registration a logged-in client
may log in again (to the same or another account); a failed attempt leaves it as it was.
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from salon import scram
from salon.proto import numerics as n
from salon.proto.casemap import casefold
from salon.proto.message import Message
from salon.server import caps
from salon.server.accounts import MECHANISMS, auth_state, mechanisms_value
from salon.server.client import Client
from salon.server.effects import Offload
from salon.server.responsebuffer import ResponseBuffer

if TYPE_CHECKING:
    from salon.server.core import Server

log = logging.getLogger("salon.accounts")

CHUNK = 400
# A PLAIN response with a 600-byte password and two 64-byte names is ~1,100 bytes of base64.
MAX_RESPONSE = 4096


@dataclass(slots=True)
class Session:
    mechanism: str
    chunks: list[str] = field(default_factory=list)
    size: int = 0
    step: int = 0
    scram: scram.ScramServer | None = None
    account: str = ""  # SCRAM: the account whose proof checked out


def _fail(client: Client, rb: ResponseBuffer, text: str = "SASL authentication failed") -> None:
    auth_state(client).sasl = None
    rb.numeric(n.ERR_SASLFAIL, text)


def _send_payload(server: Server, rb: ResponseBuffer, payload: bytes) -> None:
    text = base64.b64encode(payload).decode("ascii")
    if not text:
        rb.add(Message("AUTHENTICATE", ("+",), server.name))
        return
    for i in range(0, len(text), CHUNK):
        rb.add(Message("AUTHENTICATE", (text[i : i + CHUNK],), server.name))
    if len(text) % CHUNK == 0:
        rb.add(Message("AUTHENTICATE", ("+",), server.name))


def cmd_authenticate(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    arg = msg.params[0]
    state = auth_state(client)
    session: Session | None = state.sasl
    if arg == "*":
        state.sasl = None
        rb.numeric(n.ERR_SASLABORTED, "SASL authentication aborted")
        return
    if not server.config.accounts.enabled:
        rb.numeric(n.ERR_SASLFAIL, "SASL authentication is disabled")
        return
    if not client.capmask & caps.SASL:
        rb.numeric(n.ERR_SASLFAIL, "Request the sasl capability before AUTHENTICATE")
        return
    if client.account is not None and not client.registered:
        # sasl-3.2 lets a client re-authenticate; before registration there is no reason to.
        state.sasl = None
        rb.numeric(n.ERR_SASLALREADY, "You have already authenticated using SASL")
        return
    if session is None:
        mechanism = arg.upper()
        if mechanism not in MECHANISMS:
            rb.numeric(n.RPL_SASLMECHS, mechanisms_value(), "are available SASL mechanisms")
            rb.numeric(n.ERR_SASLFAIL, "SASL authentication failed: unknown mechanism")
            return
        state.sasl = Session(mechanism)
        rb.add(Message("AUTHENTICATE", ("+",), server.name))
        return
    if len(arg) > CHUNK:
        state.sasl = None
        rb.numeric(n.ERR_SASLTOOLONG, "SASL message too long")
        return
    if arg != "+":
        session.chunks.append(arg)
        session.size += len(arg)
        if session.size > MAX_RESPONSE:
            _fail(client, rb, "SASL authentication failed: response too long")
            return
        if len(arg) == CHUNK:
            return  # more to come
    text = "".join(session.chunks)
    session.chunks = []
    session.size = 0
    try:
        payload = base64.b64decode(text, validate=True) if text else b""
    except (binascii.Error, ValueError):
        _fail(client, rb, "SASL authentication failed: invalid base64")
        return
    if session.mechanism == "PLAIN":
        _plain(server, client, session, payload, rb)
    elif session.mechanism == "SCRAM-SHA-256":
        _scram(server, client, session, payload, rb)
    else:
        _external(server, client, payload, rb)


def _throttled(server: Server, client: Client, name: str, rb: ResponseBuffer) -> bool:
    wait = server.accounts.login_wait(name, client.ip)
    if wait:
        _fail(
            client,
            rb,
            f"SASL authentication failed: too many failed attempts; try again in "
            f"{int(wait) + 1} seconds",
        )
        return True
    return False


def _succeed(server: Server, client: Client, name: str, rb: ResponseBuffer) -> bool:
    auth_state(client).sasl = None
    record = server.accounts.get(name)
    if record is None:
        rb.numeric(n.ERR_SASLFAIL, "SASL authentication failed")
        return False
    server.accounts.login(client, record, rb)
    rb.numeric(n.RPL_SASLSUCCESS, "SASL authentication successful")
    return True


def _plain(
    server: Server, client: Client, session: Session, payload: bytes, rb: ResponseBuffer
) -> None:
    # RFC 4616: message = [authzid] UTF8NUL authcid UTF8NUL passwd; none of them has NUL.
    parts = payload.split(b"\0")
    if len(parts) != 3:
        _fail(client, rb)
        return
    try:
        authzid, authcid, password = (p.decode("utf-8") for p in parts)
    except UnicodeDecodeError:
        _fail(client, rb)
        return
    if not authcid or not password:
        _fail(client, rb)
        return
    # Nobody may act as another account (no authorization identities besides one's own).
    if authzid and casefold(authzid) != casefold(authcid):
        _fail(client, rb)
        return
    if _throttled(server, client, authcid, rb):
        return
    accounts = server.accounts
    work = accounts.verify_work(authcid, password)
    session.step = 1

    def done(ok: Any, out: ResponseBuffer) -> None:
        state = auth_state(client)
        if state.sasl is not session:
            return  # aborted meanwhile (cannot happen while input is blocked; be safe)
        if not ok:
            accounts.login_failed(authcid, client.ip)
            _fail(client, out)
            return
        _succeed(server, client, authcid, out)

    server.offload(Offload(client, work, done, rb.detach(replies=False)))  # done() answers, labeled


def _scram(
    server: Server, client: Client, session: Session, payload: bytes, rb: ResponseBuffer
) -> None:
    accounts = server.accounts
    if session.step == 0:
        session.scram = scram.ScramServer(
            accounts.scram_lookup, accounts.secret, server.config.accounts.scram_iterations
        )
        try:
            server_first = session.scram.first(payload)
        except scram.ScramError:
            _fail(client, rb)
            return
        if _throttled(server, client, session.scram.username, rb):
            return
        authzid = session.scram.authzid
        if authzid and casefold(authzid) != casefold(session.scram.username):
            _fail(client, rb)
            return
        session.step = 1
        _send_payload(server, rb, server_first)
        return
    if session.step == 1 and session.scram is not None:
        username = session.scram.username
        try:
            server_final = session.scram.final(payload)
        except scram.ScramError:
            accounts.login_failed(username, client.ip)
            _fail(client, rb)
            return
        session.step = 2
        session.account = username
        _send_payload(server, rb, server_final)
        return
    # step 2: the client acknowledges the server's signature with an empty response.
    if payload:
        _fail(client, rb)
        return
    _succeed(server, client, session.account, rb)


def _external(server: Server, client: Client, payload: bytes, rb: ResponseBuffer) -> None:
    certfp = client.certfp
    if not certfp:
        _fail(client, rb, "SASL authentication failed: no client certificate")
        return
    cf = server.accounts.by_certfp.get(certfp)
    if cf is None:
        _fail(client, rb, "SASL authentication failed: certificate not registered")
        return
    try:
        authzid = payload.decode("utf-8")
    except UnicodeDecodeError:
        _fail(client, rb)
        return
    if "\0" in authzid or (authzid and casefold(authzid) != cf):
        _fail(client, rb)
        return
    record = server.accounts.records[cf]
    _succeed(server, client, record.name, rb)
