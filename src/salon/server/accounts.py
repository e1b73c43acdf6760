"""Accounts: the registry, who is logged in where, nick ownership, and the throttles.

Sans-I/O like the rest of the core. Records live in memory (loaded at start from the
store); every change is written back with a store call. Password hashing (argon2id for
PLAIN and the NickServ commands, PBKDF2 for the SCRAM credentials) is slow on purpose and
always runs off the event loop as an :class:`~salon.server.effects.Offload`.

Nick ownership follows ergo's "timeout" enforcement: a registered nick (an account's
name) may be used by anyone, but a client that is not logged in to that account is told
so and, unless it logs in or changes nick within ``nick_enforce_timeout`` seconds, is
renamed to a guest nick.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any

from salon import scram
from salon.errors import CommandError
from salon.passwords import hash_password, verify_nothing, verify_password
from salon.proto import numerics as n
from salon.proto.casemap import casefold
from salon.proto.message import Message
from salon.server import caps, monitor
from salon.server.channels import join
from salon.server.client import Client
from salon.server.effects import Offload
from salon.server.events import Account
from salon.server.nicks import change_nick, valid_nick
from salon.server.responsebuffer import ResponseBuffer
from salon.store.base import AccountRecord, AccountStore, ScramCredentials

if TYPE_CHECKING:
    from salon.server.core import Server

log = logging.getLogger("salon.accounts")

# The SASL mechanisms AUTHENTICATE offers (salon.server.handlers.sasl), advertised in CAP LS.
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "EXTERNAL")


def mechanisms_value() -> str:
    return ",".join(MECHANISMS)


# Longest password accepted, in UTF-8 bytes. Hashing cost does not grow with it (argon2
# pre-hashes, HMAC hashes long keys once); the bound keeps lines and payloads sane.
MAX_PASSWORD_BYTES = 600
GUEST_DIGITS = 5
_EMAIL = re.compile(r"[^@\s,:*]+@[^@\s,:*]+\.[^@\s,:*]+")
_CERTFP = re.compile(r"[0-9a-f]{64}")


class Window:
    """Sliding-window counter per key: at most ``limit`` hits per ``period`` seconds."""

    __slots__ = ("hits", "limit", "period")

    def __init__(self, limit: int, period: float) -> None:
        self.limit = limit
        self.period = period
        self.hits: dict[str, deque[float]] = {}

    def wait(self, key: str, now: float) -> float:
        """Seconds until ``key`` may go again (0 when it may go now)."""
        if self.limit <= 0:
            return 0.0
        q = self.hits.get(key)
        if q is None:
            return 0.0
        while q and q[0] <= now - self.period:
            q.popleft()
        if not q:
            del self.hits[key]
            return 0.0
        if len(q) < self.limit:
            return 0.0
        return max(q[0] + self.period - now, 0.001)

    def hit(self, key: str, now: float) -> None:
        if self.limit <= 0:
            return
        q = self.hits.setdefault(key, deque())
        q.append(now)
        while len(q) > self.limit:
            q.popleft()

    def prune(self, now: float) -> None:
        cutoff = now - self.period
        for key in [k for k, q in self.hits.items() if not q or q[-1] <= cutoff]:
            del self.hits[key]


@dataclass(slots=True)
class Pending:
    """A registration that waits for VERIFY (email required)."""

    record: AccountRecord
    code: str
    expires: float


@dataclass(slots=True)
class AuthState:
    """Per-connection account state (``client.auth``)."""

    sasl: Any = None  # salon.server.handlers.sasl.Session while an AUTHENTICATE exchange runs
    wanted_nick: str = ""  # the last nick asked for before registration, taken or not
    register_sent: bool = False
    # Nicks (casefolded) allowed to send private messages despite user mode +R.
    accepted: set[str] = field(default_factory=set)


def auth_state(client: Client) -> AuthState:
    state: AuthState | None = client.auth
    if state is None:
        state = AuthState()
        client.auth = state
    return state


def hash_credentials(password: str, iterations: int) -> tuple[str, ScramCredentials]:
    """argon2id hash and SCRAM credentials of a password (slow: run it off the loop)."""
    return hash_password(password), scram.make_credentials(password, iterations)


def check_password_shape(password: str, min_length: int) -> tuple[str, str] | None:
    """A FAIL code and reason when ``password`` cannot be used, else None."""
    if len(password) < min_length:
        return "WEAK_PASSWORD", f"Passwords must be at least {min_length} characters long"
    if len(password.encode("utf-8", "surrogateescape")) > MAX_PASSWORD_BYTES:
        return "UNACCEPTABLE_PASSWORD", f"Passwords may be at most {MAX_PASSWORD_BYTES} bytes"
    if any(ord(ch) < 32 for ch in password):
        return "UNACCEPTABLE_PASSWORD", "Passwords must not contain control characters"
    return None


def valid_email(email: str) -> bool:
    return len(email) <= 254 and _EMAIL.fullmatch(email) is not None


def normalize_certfp(text: str) -> str | None:
    """A SHA-256 fingerprint as 64 lowercase hex digits (colons allowed), or None."""
    fp = text.replace(":", "").lower()
    return fp if _CERTFP.fullmatch(fp) else None


class Accounts:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.config = server.config.accounts
        cfg = self.config
        self.records: dict[str, AccountRecord] = {}
        self.by_certfp: dict[str, str] = {}
        # account (casefolded) -> the connections logged in to it
        self.sessions: dict[str, set[Client]] = {}
        self.pending: dict[str, Pending] = {}
        # names whose registration is being hashed right now
        self.reserved: set[str] = set()
        # client -> when it gets renamed for holding somebody else's nick
        self.enforcing: dict[Client, float] = {}
        self.fail_account = Window(cfg.login_failures_per_account, cfg.login_throttle_period)
        self.fail_ip = Window(cfg.login_failures_per_ip, cfg.login_throttle_period)
        self.registrations = Window(cfg.registration_throttle, cfg.registration_throttle_period)
        # Keys unknown-user SCRAM exchanges (see scram.fake_credentials).
        self.secret = secrets.token_bytes(32)
        self._last_prune = server.now
        self.hidden_caps: frozenset[str] = frozenset()
        if not cfg.enabled:
            self.hidden_caps = frozenset({"sasl", "draft/account-registration"})
        elif not cfg.registration:
            self.hidden_caps = frozenset({"draft/account-registration"})

    def cap_values(self) -> dict[str, str]:
        """CAP LS 302 values: the SASL mechanisms (sasl-3.2) and the registration flags
        (draft/account-registration)."""
        flags = []
        if self.config.registration_before_connect:
            flags.append("before-connect")
        if self.config.registration_requires_email:
            flags.append("email-required")
        return {"sasl": mechanisms_value(), "draft/account-registration": ",".join(flags)}

    # ------------------------------------------------------------------ records

    def load(self, store: AccountStore) -> None:
        for record in store.load_accounts():
            self._index(record)
        log.debug("loaded %d accounts", len(self.records))

    def _index(self, record: AccountRecord) -> None:
        cf = casefold(record.name)
        old = self.records.get(cf)
        if old is not None:
            for fp in old.certfps:
                if self.by_certfp.get(fp) == cf:
                    del self.by_certfp[fp]
        self.records[cf] = record
        for fp in record.certfps:
            self.by_certfp[fp] = cf

    def get(self, name: str) -> AccountRecord | None:
        return self.records.get(casefold(name))

    def __contains__(self, name: object) -> bool:
        """``"nick" in server.accounts``: an account of that (casefolded) name exists."""
        return isinstance(name, str) and casefold(name) in self.records

    def taken(self, name: str) -> bool:
        """Registered, waiting for verification, or being registered right now."""
        cf = casefold(name)
        return cf in self.records or cf in self.pending or cf in self.reserved

    def save(self, record: AccountRecord, client: Client | None = None) -> None:
        """Keep ``record`` and write it to the store."""
        self._index(record)
        if self.server.cluster is not None:
            self.server.cluster.submit_account(record)
        self.server.store(lambda store: store.save_account(record), None, client, idempotent=True)

    def save_call(self, record: AccountRecord) -> Callable[[Any], Any]:
        """Keep ``record``; return the store call that writes it (True once written), for
        :meth:`Server.defer` when the reply must wait for the write."""
        self._index(record)
        if self.server.cluster is not None:
            self.server.cluster.submit_account(record)

        def call(store: AccountStore) -> bool:
            store.save_account(record)
            return True

        return call

    def delete(self, name: str) -> None:
        cf = casefold(name)
        record = self.records.pop(cf, None)
        if record is None:
            return
        for fp in record.certfps:
            if self.by_certfp.get(fp) == cf:
                del self.by_certfp[fp]
        for client in list(self.sessions.get(cf, ())):
            self.logout(client, "Your account was dropped")
        self.sessions.pop(cf, None)
        stored_name = record.name
        cluster = self.server.cluster
        if cluster is not None and not cluster.applying_account:
            cluster.submit_account_gone(stored_name)
        self.server.store(lambda store: store.delete_account(stored_name), idempotent=True)
        self.server.services.account_dropped(record.name)
        self.server.files.account_dropped(cf)
        # Whoever holds the nick now holds an unregistered one.
        holder = self.server.nicks.get(cf)
        if holder is not None:
            self.enforcing.pop(holder, None)

    def scram_lookup(self, name: str) -> ScramCredentials | None:
        record = self.get(name)
        return record.scram if record is not None else None

    # ------------------------------------------------------------------ throttles

    def login_wait(self, name: str, ip: str) -> float:
        now = self.server.now
        return max(self.fail_account.wait(casefold(name), now), self.fail_ip.wait(ip, now))

    def login_failed(self, name: str, ip: str) -> None:
        now = self.server.now
        self.fail_account.hit(casefold(name), now)
        self.fail_ip.hit(ip, now)
        log.warning("failed login account=%s ip=%s", name, ip)

    def verify_work(self, name: str, password: str) -> Callable[[], bool]:
        """The Offload work that checks a password (the same cost for unknown accounts)."""
        record = self.get(name)
        if record is None:
            return partial(verify_nothing, password)
        return partial(_verify, record.password_hash, password, True)

    # ------------------------------------------------------------------ sessions

    def login(self, client: Client, record: AccountRecord, rb: ResponseBuffer) -> None:
        """Log ``client`` in: 900, ACCOUNT to those who follow it, nick enforcement off."""
        cf = casefold(record.name)
        prefix = f"{client.nick}!{client.user or '*'}@{client.host}"
        again = client.account is not None and casefold(client.account) == cf
        if client.registered:
            self.server.emit(Account(client.id, record.name), rb)
        else:
            # Before registration the account is this process's, as the nick is: the
            # Intro event carries it to the network.
            set_account(self, client, record.name)
        rb.numeric(n.RPL_LOGGEDIN, prefix, record.name, f"You are now logged in as {record.name}")
        log.info("login id=%d nick=%s account=%s", client.id, client.nick, record.name)
        if client.registered and not again:
            self.check_nick(client, rb)
            self.server.files.advertise(client, rb)

    def logout(
        self,
        client: Client,
        reason: str = "",
        rb: ResponseBuffer | None = None,
        *,
        check_nick: bool = True,
    ) -> None:
        if client.account is None:
            return
        server = self.server
        out = rb if rb is not None else ResponseBuffer(server, client, None)
        if client.registered:
            server.emit(Account(client.id, None), out)
        else:
            set_account(self, client, None)
        if reason:
            out.notice(reason)
        prefix = f"{client.nick}!{client.user or '*'}@{client.host}"
        out.numeric(n.RPL_LOGGEDOUT, prefix, "You are now logged out")
        if client.registered and check_nick:
            self.check_nick(client, out)
        if rb is None:
            out.flush()

    def leave_session(self, client: Client) -> None:
        """``client`` is no longer one of its account's sessions."""
        if client.account is None:
            return
        cf = casefold(client.account)
        group = self.sessions.get(cf)
        if group is not None:
            group.discard(client)
            if not group:
                del self.sessions[cf]

    def notify(self, client: Client, account: str) -> None:
        """account-notify: ``ACCOUNT <name>`` (``*`` on logout) to those who share a channel
        with ``client``, and to its extended-monitor watchers."""
        server = self.server
        msg = Message("ACCOUNT", (account,), client.prefix)
        recipients = [
            m for m in server.common_channel_members(client) if m.capmask & caps.ACCOUNT_NOTIFY
        ]
        server.deliver(recipients, msg, skip=client)
        monitor.notify_extended(server, client, msg)

    def rejoin(self, client: Client) -> None:
        """Put a returning account holder back in its channels (when no other session of
        the account is connected); a channel it may no longer join is skipped quietly."""
        server = self.server
        account = casefold(client.account or "")
        names = server.rejoin.pop(account, None)
        if not names:
            return
        server.store(lambda store: store.set_rejoin(account, ()), idempotent=True)
        others = [
            c
            for c in server.clients.values()
            if c is not client and c.registered and c.account == client.account
        ]
        if others:
            return
        for name in names:
            try:
                join(server, client, name, None, None)
            except CommandError:
                continue

    def client_gone(self, client: Client) -> None:
        self.leave_session(client)
        self.enforcing.pop(client, None)

    # ------------------------------------------------------------------ nick ownership

    def owner_of(self, nick_cf: str) -> str | None:
        """The account that owns a nick (the account of that name), if any. A registration
        waiting for VERIFY owns no nick yet (its name cannot be registered by others)."""
        record = self.records.get(nick_cf)
        return record.name if record is not None else None

    def may_hold(self, client: Client, nick_cf: str) -> bool:
        owner = self.owner_of(nick_cf)
        return owner is None or (client.account is not None and casefold(client.account) == nick_cf)

    def check_nick(self, client: Client, rb: ResponseBuffer | None = None) -> None:
        """Start (or stop) nick enforcement for a registered client's current nick;
        notices go to ``rb`` when given (after what it holds), else straight out."""
        if not client.registered or client.closed or client.id < 0:
            return
        if not self.config.enabled or self.may_hold(client, client.nick_cf):
            self.enforcing.pop(client, None)
            return
        if client in self.enforcing:
            return
        timeout = self.config.nick_enforce_timeout
        services = self.server.services
        if timeout <= 0:
            self.rename_guest(client, "This nickname is registered to another account", rb)
            return
        self.enforcing[client] = self.server.now + timeout
        services.nickserv_notice(
            client,
            f"The nickname {client.nick} is registered to an account. Log in with "
            f"/msg NickServ IDENTIFY <password> (or SASL), or change your nick; "
            f"otherwise you will be renamed in {timeout:g} seconds.",
            rb,
        )

    def rename_guest(self, client: Client, why: str, rb: ResponseBuffer | None = None) -> None:
        server = self.server
        self.enforcing.pop(client, None)
        prefix = self.config.guest_prefix
        maxlen = server.config.limits.nicklen
        digits = max(1, min(GUEST_DIGITS, maxlen - len(prefix)))
        for _ in range(100):
            guest = f"{prefix}{secrets.randbelow(10**digits):0{digits}d}"[:maxlen]
            if casefold(guest) not in server.nicks and self.owner_of(casefold(guest)) is None:
                break
        else:  # pragma: no cover - a full guest space is not a realistic case
            server.drop(client, "Nickname enforcement")
            return
        out = rb if rb is not None else ResponseBuffer(server, client, None)
        server.services.nickserv_notice(client, f"{why}; you are now known as {guest}.", out)
        old = client.nick
        change_nick(server, client, guest, out)
        if rb is None:
            out.flush()
        log.info("nick enforcement id=%d %s -> %s", client.id, old, guest)

    def tick(self, now: float) -> None:
        """Rename the clients whose grace period ran out; prune the throttles."""
        if self.enforcing:
            due = [c for c, when in self.enforcing.items() if when <= now]
            for client in due:
                self.enforcing.pop(client, None)
                if client.closed or self.may_hold(client, client.nick_cf):
                    continue
                self.rename_guest(client, "You did not log in to the account of your nickname")
        if self.pending:
            for cf in [cf for cf, p in self.pending.items() if p.expires <= now]:
                del self.pending[cf]
        if now - self._last_prune >= 60:
            self._last_prune = now
            self.fail_account.prune(now)
            self.fail_ip.prune(now)
            self.registrations.prune(now)

    # ------------------------------------------------------------------ registration

    def registration_refusal(
        self, client: Client, name: str, email: str, password: str
    ) -> tuple[str, str] | None:
        """Why ``client`` may not register ``name`` now: a FAIL code and reason, or None."""
        cfg = self.config
        if not cfg.enabled or not cfg.registration:
            return "DISALLOWED", "Account registration is disabled"
        if client.account is not None:
            return "ALREADY_AUTHENTICATED", "You are already logged in to an account"
        if not valid_nick(name, self.server.config.limits.nicklen):
            return "BAD_ACCOUNT_NAME", "Account names must be valid nicknames"
        cf = casefold(name)
        holder = self.server.nicks.get(cf)
        if self.taken(name) or (holder is not None and holder is not client):
            return "ACCOUNT_EXISTS", "That account name is registered or in use"
        if cfg.registration_requires_email and not valid_email(email):
            return "INVALID_EMAIL", "A valid e-mail address is required"
        if email and email != "*" and not valid_email(email):
            return "INVALID_EMAIL", "That e-mail address is not valid"
        shape = check_password_shape(password, cfg.password_min_length)
        if shape is not None:
            return shape
        wait = self.registrations.wait(client.ip, self.server.now)
        if wait:
            return (
                "TEMPORARILY_UNAVAILABLE",
                f"Too many account registrations from your address; try again in "
                f"{int(wait) + 1} seconds",
            )
        return None

    def register(
        self,
        client: Client,
        name: str,
        email: str,
        password: str,
        rb: ResponseBuffer,
        done: Callable[[AccountRecord | None, Pending | None, ResponseBuffer], None],
    ) -> None:
        """Hash off the loop, then create the account (or the pending registration when an
        e-mail must be verified) and call ``done(record, pending, rb)``; ``record`` only
        once it is written to the store. ``rb``'s label and replies wait for ``done``. Call
        :meth:`registration_refusal` first."""
        server = self.server
        cf = casefold(name)
        self.registrations.hit(client.ip, server.now)
        self.reserved.add(cf)
        email = "" if email == "*" else email

        def hashed(result: Any, rb: ResponseBuffer) -> None:
            self.reserved.discard(cf)
            if result is None:
                done(None, None, rb)
                return
            password_hash, scram_creds = result
            verified = not self.config.registration_requires_email
            record = AccountRecord(
                name=name,
                password_hash=password_hash,
                scram=scram_creds,
                email=email,
                verified=verified,
                created=server.now,
            )
            if not verified:
                code = secrets.token_urlsafe(12)
                pending = Pending(record, code, server.now + self.config.verify_timeout)
                self.pending[cf] = pending
                # salon has no mailer: the operator delivers the code (see the config).
                log.warning("verification code for account %s <%s>: %s", name, email or "-", code)
                done(None, pending, rb)
                return
            self._store_new(client, record, rb, done)

        work = partial(hash_credentials, password, self.config.scram_iterations)
        server.offload(Offload(client, work, hashed, rb.detach(replies=False)))

    def _store_new(
        self,
        client: Client,
        record: AccountRecord,
        rb: ResponseBuffer,
        done: Callable[[AccountRecord | None, Pending | None, ResponseBuffer], None],
    ) -> None:
        call = self.save_call(record)
        log.info("account registered name=%s ip=%s", record.name, client.ip)

        def written(result: Any, out: ResponseBuffer) -> None:
            if not result:
                log.error("could not store account %s", record.name)
                self.records.pop(casefold(record.name), None)
                done(None, None, out)
                return
            done(record, None, out)

        self.server.defer(rb, call, written)

    def verify(
        self,
        client: Client,
        name: str,
        code: str,
        rb: ResponseBuffer,
        done: Callable[[AccountRecord | None, ResponseBuffer], None],
    ) -> bool:
        """Complete a pending registration; False when the code is wrong or unknown."""
        import hmac

        cf = casefold(name)
        pending = self.pending.get(cf)
        if pending is None or not hmac.compare_digest(pending.code.encode(), code.encode()):
            return False
        del self.pending[cf]
        record = replace(pending.record, verified=True)
        self._store_new(client, record, rb, lambda rec, _p, out: done(rec, out))
        return True


def _verify(hashed: str, password: str, known: bool) -> bool:
    ok = verify_password(hashed, password)
    return ok and known


# ---------------------------------------------------------------------- connection hooks


def admit(server: Server, client: Client, rb: ResponseBuffer) -> bool:
    """Just before the welcome burst: abort an unfinished SASL exchange (sasl-3.1), and
    refuse a K-lined user. False when the client must not be welcomed."""
    state: AuthState | None = client.auth
    if state is not None and state.sasl is not None:
        state.sasl = None
        rb.numeric(n.ERR_SASLABORTED, "SASL authentication aborted")
    return server.abuse.admit(client, rb)


def welcomed(server: Server, client: Client, rb: ResponseBuffer) -> None:
    """Just after the welcome burst (in ``rb``)."""
    server.accounts.check_nick(client, rb)
    server.files.advertise(client, rb)


def set_account(accounts: Accounts, client: Client, name: str | None) -> bool:
    """Log ``client`` in to ``name`` (None: out) and keep the account's sessions; True when
    it was already logged in to that account (a login again changes nothing others see).
    Called by the Account event's apply, and before registration (a local fact until the
    Intro event)."""
    again = (
        client.account is not None
        and name is not None
        and casefold(client.account) == casefold(name)
    )
    if client.account is not None and not again:
        accounts.leave_session(client)
    client.account = name
    if name is not None:
        accounts.sessions.setdefault(casefold(name), set()).add(client)
    return again
