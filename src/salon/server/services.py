"""Built-in services: NickServ (accounts for clients without SASL or REGISTER) and
ChanServ (registered channels), as pseudo-users that answer PRIVMSG and the NS/CS
aliases. Modelled on ergo's nickserv.go and chanserv.go; the code is our own.

The pseudo-users hold their nicks in ``server.nicks`` (so nobody else can take them, and
WHOIS shows them) but are not connections: they are never in ``server.clients``.
Messages to them never reach the relay, so passwords are neither logged nor kept in
history.

A registered channel keeps its topic, modes, lists and access list across restarts: the
core keeps its :class:`~salon.server.channel.Channel` even when empty, and every change
is written to the store as a :class:`~salon.store.base.ChannelRecord`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any

from salon.errors import CommandError
from salon.proto import numerics as n
from salon.proto.casemap import casefold
from salon.proto.message import Message
from salon.server import caps
from salon.server.accounts import (
    auth_state,
    check_password_shape,
    hash_credentials,
    normalize_certfp,
    valid_email,
)
from salon.server.channel import Channel, ListEntry
from salon.server.client import Client, Kind
from salon.server.effects import Offload
from salon.server.events import ChannelAccess, ChannelMode, ChannelReg, TopicLock
from salon.server.nicks import change_nick
from salon.server.responsebuffer import ResponseBuffer
from salon.store.base import AccountRecord, ChannelRecord, ListRecord, Store, list_records

if TYPE_CHECKING:
    from salon.server.core import Server

log = logging.getLogger("salon.services")

MAX_CERTFPS = 5
MAX_CHANNELS_PER_ACCOUNT = 20
MAX_ACCESS_ENTRIES = 100
MAX_ACCEPTED = 100  # nicks a +R user accepts (ACCEPT, or by writing to them first)


def _date(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


class Bot:
    """A pseudo-user that answers commands sent to it as notices."""

    nick = ""
    realname = ""
    help_lines: tuple[str, ...] = ()

    def __init__(self, server: Server, cid: int) -> None:
        self.server = server
        client = Client(cid, Kind.IRC, "127.0.0.1", 0, server.now)
        client.user = self.nick
        client.host = server.config.accounts.services_server or server.name
        client.realname = self.realname
        client.set_nick(self.nick, casefold(self.nick), server.now)
        client.registered = True
        client.modes = {"B"}
        self.client = client
        self.commands: dict[str, Callable[[Client, list[str], ResponseBuffer], None]] = {}

    @property
    def prefix(self) -> str:
        return self.client.prefix

    def say(self, rb: ResponseBuffer, text: str) -> None:
        rb.add(Message("NOTICE", (rb.client.nick, text), self.client.prefix))

    def saying(self, text: str) -> Callable[[ResponseBuffer | None], None]:
        """An event's ``then`` that says ``text`` once the event had its turn."""

        def then(out: ResponseBuffer | None) -> None:
            if out is not None:
                self.say(out, text)

        return then

    def handle(self, client: Client, text: str, rb: ResponseBuffer) -> None:
        if text.startswith("\x01"):
            return  # CTCP: services do not answer
        words = text.split()
        if not words:
            self.say(rb, f"Try /msg {self.nick} HELP")
            return
        name = words[0].upper()
        handler = self.commands.get(name)
        if handler is None:
            self.say(rb, f"Unknown command {words[0]!r}. Try /msg {self.nick} HELP")
            return
        if not self.server.config.accounts.enabled:
            self.say(rb, "Accounts are disabled on this server")
            return
        try:
            handler(client, words[1:], rb)
        except CommandError as exc:
            self.say(rb, exc.params[-1] if exc.params else "Error")

    def cmd_help(self, client: Client, args: list[str], rb: ResponseBuffer) -> None:
        for line in self.help_lines:
            self.say(rb, line)


# ---------------------------------------------------------------------------------- NickServ


class NickServ(Bot):
    nick = "NickServ"
    realname = "Nickname services"
    help_lines = (
        "NickServ keeps accounts. Your account name is the nick you register.",
        "REGISTER <password> [email]      register your current nick as an account",
        "VERIFY <account> <code>          complete a registration that needs verification",
        "IDENTIFY [account] <password>    log in (without arguments: by TLS certificate)",
        "LOGOUT                           log out",
        "GHOST <nick>                     disconnect a client using your nick",
        "REGAIN <nick>                    GHOST, then take the nick",
        "DROP <password>                  delete your account",
        "SET PASSWORD <current> <new>     change your password",
        "INFO [account]                   show an account",
        "CERT ADD [fingerprint] | DEL <fingerprint> | LIST    TLS certificates for EXTERNAL",
    )

    def __init__(self, server: Server, cid: int) -> None:
        super().__init__(server, cid)
        self.commands = {
            "HELP": self.cmd_help,
            "REGISTER": self.cmd_register,
            "VERIFY": self.cmd_verify,
            "IDENTIFY": self.cmd_identify,
            "LOGIN": self.cmd_identify,
            "LOGOUT": self.cmd_logout,
            "GHOST": self.cmd_ghost,
            "REGAIN": self.cmd_regain,
            "RECOVER": self.cmd_regain,
            "DROP": self.cmd_drop,
            "SET": self.cmd_set,
            "INFO": self.cmd_info,
            "CERT": self.cmd_cert,
        }

    def _need_login(self, client: Client) -> AccountRecord:
        record = self.server.accounts.get(client.account) if client.account else None
        if record is None:
            raise CommandError(n.ERR_NEEDREGGEDNICK, "You are not logged in to an account")
        return record

    def cmd_register(self, client: Client, args: list[str], rb: ResponseBuffer) -> None:
        if not args:
            self.say(rb, "Syntax: REGISTER <password> [email]")
            return
        accounts = self.server.accounts
        password = args[0]
        email = args[1] if len(args) > 1 else "*"
        state = auth_state(client)
        if state.register_sent:
            self.say(rb, "You have already registered an account")
            return
        refusal = accounts.registration_refusal(client, client.nick, email, password)
        if refusal is not None:
            self.say(rb, refusal[1])
            return
        state.register_sent = True
        name = client.nick

        def done(record: AccountRecord | None, pending: Any, out: ResponseBuffer) -> None:
            if record is not None:
                self.say(out, "Account created")
                accounts.login(client, record, out)
            elif pending is not None:
                self.say(
                    out,
                    f"Account {name} created, pending verification: ask the network's "
                    f"administrators for your code, then /msg NickServ VERIFY {name} <code>",
                )
            else:
                state.register_sent = False
                self.say(out, "Could not register; try again later")

        accounts.register(client, name, email, password, rb, done)

    def cmd_verify(self, client: Client, args: list[str], rb: ResponseBuffer) -> None:
        if len(args) != 2:
            self.say(rb, "Syntax: VERIFY <account> <code>")
            return
        if client.account is not None:
            self.say(rb, f"You are already logged in as {client.account}")
            return
        accounts = self.server.accounts

        def done(record: AccountRecord | None, out: ResponseBuffer) -> None:
            if record is None:
                self.say(out, "Could not verify; try again later")
                return
            self.say(out, f"Account {record.name} verified")
            accounts.login(client, record, out)

        if not accounts.verify(client, args[0], args[1], rb, done):
            self.say(rb, "Invalid verification code")

    def cmd_identify(self, client: Client, args: list[str], rb: ResponseBuffer) -> None:
        accounts = self.server.accounts
        if client.account is not None:
            self.say(rb, f"You are already logged in as {client.account}")
            return
        if not args:
            cf = accounts.by_certfp.get(client.certfp or "")
            if cf is None:
                self.say(rb, "Syntax: IDENTIFY [account] <password>")
                return
            accounts.login(client, accounts.records[cf], rb)
            self.say(rb, f"You are now logged in as {client.account} (TLS certificate)")
            return
        if len(args) == 1:
            name, password = client.nick, args[0]
        else:
            name, password = args[0], " ".join(args[1:])
        if self._throttled(client, name, rb):
            return

        def done(ok: Any, out: ResponseBuffer) -> None:
            record = accounts.get(name)
            if not ok or record is None:
                accounts.login_failed(name, client.ip)
                self.say(out, "Invalid account credentials")
                return
            accounts.login(client, record, out)
            self.say(out, f"You are now logged in as {record.name}")

        self.server.offload(
            Offload(client, accounts.verify_work(name, password), done, rb.detach(replies=False))
        )

    def _throttled(self, client: Client, name: str, rb: ResponseBuffer) -> bool:
        """Password checks share the login throttles (per account and per IP)."""
        wait = self.server.accounts.login_wait(name, client.ip)
        if wait:
            self.say(rb, f"Too many failed login attempts; try again in {int(wait) + 1} seconds")
            return True
        return False

    def cmd_logout(self, client: Client, args: list[str], rb: ResponseBuffer) -> None:
        if client.account is None:
            self.say(rb, "You are not logged in")
            return
        self.say(rb, "You are now logged out")
        self.server.accounts.logout(client, "", rb)

    def _ghost_target(self, client: Client, nick: str) -> Client:
        record = self._need_login(client)
        target = self.server.nicks.get(casefold(nick))
        if target is None or target.id < 0 or not target.registered:
            raise CommandError(n.ERR_NOSUCHNICK, f"{nick} is not online")
        if target is client:
            raise CommandError(n.ERR_NOSUCHNICK, "That is you")
        mine = casefold(record.name)
        owner = self.server.accounts.owner_of(target.nick_cf)
        same_account = target.account is not None and casefold(target.account) == mine
        if not same_account and (owner is None or casefold(owner) != mine):
            raise CommandError(n.ERR_NOPRIVILEGES, f"{target.nick} is not your nick")
        return target

    def cmd_ghost(self, client: Client, args: list[str], rb: ResponseBuffer) -> None:
        if not args:
            self.say(rb, "Syntax: GHOST <nick>")
            return
        target = self._ghost_target(client, args[0])
        nick = target.nick
        self.server.drop(target, f"GHOST command used by {client.nick}")
        self.server.settle()
        self.say(rb, f"{nick} has been disconnected")

    def cmd_regain(self, client: Client, args: list[str], rb: ResponseBuffer) -> None:
        if not args:
            self.say(rb, "Syntax: REGAIN <nick>")
            return
        nick = args[0]
        if casefold(nick) in self.server.nicks:
            target = self._ghost_target(client, nick)
            nick = target.nick
            self.server.drop(target, f"REGAIN command used by {client.nick}")
            self.server.settle()
        else:
            self._need_login(client)
        change_nick(self.server, client, nick, rb)
        self.server.accounts.check_nick(client, rb)

    def cmd_drop(self, client: Client, args: list[str], rb: ResponseBuffer) -> None:
        record = self._need_login(client)
        if not args:
            self.say(rb, "Syntax: DROP <password> (this deletes your account)")
            return
        accounts = self.server.accounts
        name = record.name
        if self._throttled(client, name, rb):
            return

        def done(ok: Any, out: ResponseBuffer) -> None:
            if not ok:
                accounts.login_failed(name, client.ip)
                self.say(out, "Invalid password")
                return
            self.say(out, f"Account {name} has been dropped")
            # No nick check on this logout: the account is about to go, and its nick with
            # it (checked, the user was warned the nick was registered and would be taken).
            accounts.logout(client, "", out, check_nick=False)
            accounts.delete(name)
            log.info("account dropped name=%s by=%s", name, client.nick)

        self.server.offload(
            Offload(
                client, accounts.verify_work(name, " ".join(args)), done, rb.detach(replies=False)
            )
        )

    def cmd_set(self, client: Client, args: list[str], rb: ResponseBuffer) -> None:
        if len(args) < 3 or args[0].upper() != "PASSWORD":
            self.say(rb, "Syntax: SET PASSWORD <current> <new>")
            return
        record = self._need_login(client)
        accounts = self.server.accounts
        current, new = args[1], " ".join(args[2:])
        shape = check_password_shape(new, accounts.config.password_min_length)
        if shape is not None:
            self.say(rb, shape[1])
            return
        name = record.name
        server = self.server
        if self._throttled(client, name, rb):
            return

        def hashed(result: Any, out: ResponseBuffer) -> None:
            latest = accounts.get(name)
            if result is None or latest is None:
                self.say(out, "Could not change the password; try again")
                return
            password_hash, scram_creds = result
            updated = replace(latest, password_hash=password_hash, scram=scram_creds)

            def written(ok: Any, out2: ResponseBuffer) -> None:
                self.say(out2, "Password changed" if ok else "Could not store the new password")

            server.defer(out, accounts.save_call(updated), written)
            log.info("password changed account=%s", name)

        def checked(ok: Any, out: ResponseBuffer) -> None:
            if not ok:
                accounts.login_failed(name, client.ip)
                self.say(out, "Your current password is not correct")
                return
            work = partial(hash_credentials, new, accounts.config.scram_iterations)
            server.offload(Offload(client, work, hashed, out.detach(replies=False)))

        server.offload(
            Offload(client, accounts.verify_work(name, current), checked, rb.detach(replies=False))
        )

    def cmd_info(self, client: Client, args: list[str], rb: ResponseBuffer) -> None:
        accounts = self.server.accounts
        name = args[0] if args else (client.account or client.nick)
        record = accounts.get(name)
        if record is None:
            self.say(rb, f"{name} is not a registered account")
            return
        self.say(rb, f"Account {record.name}, registered {_date(record.created)}")
        own = client.account is not None and casefold(client.account) == casefold(record.name)
        if own or client.oper is not None:
            if record.email:
                self.say(rb, f"E-mail: {record.email}")
            self.say(rb, f"TLS certificates: {len(record.certfps)}")
        online = len(accounts.sessions.get(casefold(record.name), ()))
        self.say(rb, f"Logged in from {online} connection(s)")

    def cmd_cert(self, client: Client, args: list[str], rb: ResponseBuffer) -> None:
        record = self._need_login(client)
        accounts = self.server.accounts
        sub = args[0].upper() if args else "LIST"
        if sub == "LIST":
            if not record.certfps:
                self.say(rb, "No certificate fingerprints on your account")
            for known in record.certfps:
                self.say(rb, known)
            return
        if sub == "ADD":
            raw = args[1] if len(args) > 1 else (client.certfp or "")
            fp = normalize_certfp(raw)
            if fp is None:
                self.say(
                    rb,
                    "Give a SHA-256 fingerprint (64 hex digits), or connect with a TLS "
                    "client certificate",
                )
                return
            owner = accounts.by_certfp.get(fp)
            if owner is not None:
                self.say(rb, "That fingerprint is already on an account")
                return
            if len(record.certfps) >= MAX_CERTFPS:
                self.say(rb, f"At most {MAX_CERTFPS} fingerprints per account")
                return
            accounts.save(replace(record, certfps=(*record.certfps, fp)))
            self.say(rb, f"Added certificate fingerprint {fp}")
            return
        if sub in ("DEL", "DELETE", "REMOVE") and len(args) > 1:
            gone = normalize_certfp(args[1])
            if gone is None or gone not in record.certfps:
                self.say(rb, "That fingerprint is not on your account")
                return
            accounts.save(replace(record, certfps=tuple(f for f in record.certfps if f != gone)))
            self.say(rb, f"Removed certificate fingerprint {gone}")
            return
        self.say(rb, "Syntax: CERT ADD [fingerprint] | CERT DEL <fingerprint> | CERT LIST")


# ---------------------------------------------------------------------------------- ChanServ


@dataclass(slots=True)
class ChanReg:
    """What ChanServ knows of a registered channel besides its Channel object."""

    name: str
    founder: str
    created: float
    access: dict[str, str] = field(default_factory=dict)  # account cf -> "o" | "v"
    topiclock: bool = False


class ChanServ(Bot):
    nick = "ChanServ"
    realname = "Channel services"
    help_lines = (
        "ChanServ keeps registered channels: topic, modes, bans and access survive restarts.",
        "REGISTER <#channel>                  register a channel you are an operator of",
        "DROP <#channel>                      unregister it (founder)",
        "INFO <#channel>                      show a registration",
        "OP|DEOP|VOICE|DEVOICE <#channel> [nick]   change modes (access o)",
        "AMODE <#channel> [+o|-o|+v|-v <account>] show or change the access list",
        "TOPICLOCK <#channel> ON|OFF          only access o may change the topic",
    )

    def __init__(self, server: Server, cid: int) -> None:
        super().__init__(server, cid)
        self.regs: dict[str, ChanReg] = {}
        self.commands = {
            "HELP": self.cmd_help,
            "REGISTER": self.cmd_register,
            "DROP": self.cmd_drop,
            "INFO": self.cmd_info,
            "OP": partial(self.cmd_prefix, "+", "o"),
            "DEOP": partial(self.cmd_prefix, "-", "o"),
            "VOICE": partial(self.cmd_prefix, "+", "v"),
            "DEVOICE": partial(self.cmd_prefix, "-", "v"),
            "AMODE": self.cmd_amode,
            "ACCESS": self.cmd_amode,
            "TOPICLOCK": self.cmd_topiclock,
        }

    # -------------------------------------------------------------- state

    def level(self, reg: ChanReg, client: Client) -> str:
        """ "F" (founder), "o", "v" or "" for a client in a registered channel."""
        if client.account is None:
            return ""
        cf = casefold(client.account)
        if cf == casefold(reg.founder):
            return "F"
        return reg.access.get(cf, "")

    def record(self, chan: Channel, reg: ChanReg) -> ChannelRecord:
        def entries(items: list[ListEntry]) -> tuple[ListRecord, ...]:
            return list_records((e.mask, e.setter, e.time) for e in items)

        return ChannelRecord(
            name=chan.name,
            founder=reg.founder,
            created=reg.created,
            topic=chan.topic,
            topic_by=chan.topic_by,
            topic_time=chan.topic_time,
            modes="".join(sorted(chan.modes)),
            key=chan.key,
            limit=chan.limit,
            bans=entries(chan.bans),
            excepts=entries(chan.excepts),
            invex=entries(chan.invex),
            access=tuple(sorted(reg.access.items())),
            topiclock=reg.topiclock,
            metadata=tuple(sorted(chan.metadata.items())),
        )

    def save(self, chan: Channel) -> None:
        reg = self.regs.get(chan.cf)
        if reg is None:
            return
        record = self.record(chan, reg)
        self.server.store(lambda store: store.save_channel(record), idempotent=True)

    def load(self, store: Store) -> None:
        # At start, the registered channels as they were saved: the state this process
        # starts from, not a change of it, so no events (nobody is connected to be told,
        # and every node of a network loads the same records from the shared store).
        for rec in store.load_channels():
            self.hold(rec)
        if self.regs:
            log.debug("loaded %d registered channels", len(self.regs))

    def hold(self, rec: ChannelRecord) -> Channel:
        """Keep the registration ``rec``, its channel made if missing. A channel without
        members takes the record's topic, modes and lists; one with members keeps its own
        (what they saw; in a cluster, what the nodes restated: salon.server.cluster)."""
        server = self.server
        cf = casefold(rec.name)
        chan = server.channels.get(cf)
        if chan is None:
            chan = Channel(rec.name, cf, rec.created)
            server.channels[cf] = chan
        if not chan.members:
            chan.topic, chan.topic_by, chan.topic_time = rec.topic, rec.topic_by, rec.topic_time
            chan.modes = set(rec.modes)
            chan.key, chan.limit = rec.key, rec.limit
            chan.bans = [ListEntry(e.mask, e.setter, e.time) for e in rec.bans]
            chan.excepts = [ListEntry(e.mask, e.setter, e.time) for e in rec.excepts]
            chan.invex = [ListEntry(e.mask, e.setter, e.time) for e in rec.invex]
            chan.metadata = dict(rec.metadata)
        self.regs[cf] = ChanReg(rec.name, rec.founder, rec.created, dict(rec.access), rec.topiclock)
        return chan

    def _reg(self, client: Client, name: str) -> tuple[Channel, ChanReg]:
        cf = casefold(name)
        reg = self.regs.get(cf)
        chan = self.server.channels.get(cf)
        if reg is None or chan is None:
            raise CommandError(n.ERR_NOSUCHCHANNEL, f"{name} is not registered")
        return chan, reg

    def _need(self, client: Client, reg: ChanReg, levels: str) -> str:
        level = self.level(reg, client)
        if level not in levels or not level:
            raise CommandError(
                n.ERR_CHANOPRIVSNEEDED, f"You do not have enough access to {reg.name}"
            )
        return level

    def set_prefix(
        self,
        chan: Channel,
        target: Client,
        mode: str,
        on: bool,
        out: ResponseBuffer | None = None,
    ) -> None:
        """Give or take +o/+v as ChanServ, telling the channel (``target``'s own copy
        goes to ``out`` when given, to keep it after its JOIN): a ChannelMode event by
        ChanServ, as a user's MODE is."""
        if target not in chan.members or (mode in chan.members[target]) == on:
            return
        change = ChannelMode(self.client.id, chan.name, ((on, mode, target.nick),), self.server.now)
        self.server.emit(change, out)

    def apply_access(
        self, chan: Channel, client: Client, out: ResponseBuffer | None = None
    ) -> None:
        reg = self.regs.get(chan.cf)
        if reg is None or client not in chan.members:
            return
        level = self.level(reg, client)
        if level in ("F", "o"):
            self.set_prefix(chan, client, "o", True, out)
        elif level == "v":
            self.set_prefix(chan, client, "v", True, out)

    # -------------------------------------------------------------- commands

    def cmd_register(self, client: Client, args: list[str], rb: ResponseBuffer) -> None:
        if not args:
            self.say(rb, "Syntax: REGISTER <#channel>")
            return
        if client.account is None:
            self.say(rb, "You must be logged in to an account to register a channel")
            return
        cf = casefold(args[0])
        chan = self.server.channels.get(cf)
        if chan is None or not chan.is_op(client):
            self.say(rb, f"You must be a channel operator in {args[0]} to register it")
            return
        if cf in self.regs:
            self.say(rb, f"{chan.name} is already registered")
            return
        mine = casefold(client.account)
        owned = sum(1 for r in self.regs.values() if casefold(r.founder) == mine)
        if owned >= MAX_CHANNELS_PER_ACCOUNT:
            self.say(rb, f"You may register at most {MAX_CHANNELS_PER_ACCOUNT} channels")
            return
        account = client.account
        registering = ChannelReg(client.id, chan.name, account, self.server.now)
        self.server.emit(registering, rb, partial(self._registered, cf, account))

    def _registered(self, cf: str, account: str, out: ResponseBuffer | None) -> None:
        """After the ChannelReg's turn: whether this REGISTER made it (in a cluster, another
        node's REGISTER of the channel may have come first)."""
        if out is None:
            return
        reg = self.regs.get(cf)
        if reg is None or casefold(reg.founder) != casefold(account):
            self.say(out, "That channel is already registered" if reg else "No such channel")
            return
        self.say(out, f"Channel {reg.name} is now registered to {reg.founder}")

    # -------------------------------------------------------------- events (salon.server.apply)

    def register(self, name: str, founder: str, created: float) -> None:
        cf = casefold(name)
        chan = self.server.channels.get(cf)
        if chan is None or cf in self.regs:
            return
        self.regs[cf] = ChanReg(chan.name, founder, created)
        self.save(chan)
        log.info("channel registered %s founder=%s", chan.name, founder)

    def set_access(self, name: str, account: str, level: str) -> None:
        cf = casefold(name)
        reg, chan = self.regs.get(cf), self.server.channels.get(cf)
        if reg is None or chan is None:
            return
        if level:
            reg.access[casefold(account)] = level
        else:
            reg.access.pop(casefold(account), None)
        self.save(chan)

    def set_topiclock(self, name: str, on: bool) -> None:
        cf = casefold(name)
        reg, chan = self.regs.get(cf), self.server.channels.get(cf)
        if reg is None or chan is None:
            return
        reg.topiclock = on
        self.save(chan)

    def unregister(self, cf: str) -> None:
        reg = self.regs.pop(cf, None)
        if reg is None:
            return
        name = reg.name
        self.server.store(lambda store: store.delete_channel(name), idempotent=True)
        chan = self.server.channels.get(cf)
        if chan is not None and not chan.members:
            self.server.remove_channel(chan)

    def cmd_drop(self, client: Client, args: list[str], rb: ResponseBuffer) -> None:
        if not args:
            self.say(rb, "Syntax: DROP <#channel>")
            return
        chan, reg = self._reg(client, args[0])
        if client.oper is None:
            self._need(client, reg, "F")
        log.info("channel dropped %s by=%s", chan.name, client.nick)
        name = chan.name
        dropping = ChannelReg(client.id, name, None, self.server.now)
        self.server.emit(dropping, rb, self.saying(f"Channel {name} is no longer registered"))

    def cmd_info(self, client: Client, args: list[str], rb: ResponseBuffer) -> None:
        if not args:
            self.say(rb, "Syntax: INFO <#channel>")
            return
        chan, reg = self._reg(client, args[0])
        self.say(rb, f"Channel {chan.name}, founder {reg.founder}, registered {_date(reg.created)}")
        self.say(rb, f"Topic lock: {'on' if reg.topiclock else 'off'}")

    def cmd_prefix(
        self, sign: str, mode: str, client: Client, args: list[str], rb: ResponseBuffer
    ) -> None:
        if not args:
            self.say(rb, "Syntax: OP|DEOP|VOICE|DEVOICE <#channel> [nick]")
            return
        chan, reg = self._reg(client, args[0])
        self._need(client, reg, "Fo")
        target = client
        if len(args) > 1:
            found = self.server.nicks.get(casefold(args[1]))
            if found is None or found.id < 0 or found not in chan.members:
                self.say(rb, f"{args[1]} is not in {chan.name}")
                return
            target = found
        if target not in chan.members:
            self.say(rb, f"You are not in {chan.name}")
            return
        self.set_prefix(chan, target, mode, sign == "+")

    def cmd_amode(self, client: Client, args: list[str], rb: ResponseBuffer) -> None:
        if not args:
            self.say(rb, "Syntax: AMODE <#channel> [+o|-o|+v|-v <account>]")
            return
        chan, reg = self._reg(client, args[0])
        level = self._need(client, reg, "Fov")
        if len(args) < 3:
            self.say(rb, f"Access list of {chan.name} (founder {reg.founder}):")
            for account, mode in sorted(reg.access.items()):
                self.say(rb, f"  +{mode} {account}")
            self.say(rb, "End of access list")
            return
        change, name = args[1], args[2]
        if len(change) != 2 or change[0] not in "+-" or change[1] not in "ov":
            self.say(rb, "The change must be +o, -o, +v or -v")
            return
        # Founders manage operators; operators manage voices.
        if level != "F" and (change[1] == "o" or level != "o"):
            self._need(client, reg, "F")
        accounts = self.server.accounts
        record = accounts.get(name)
        if record is None:
            self.say(rb, f"{name} is not a registered account")
            return
        acf = casefold(record.name)
        if acf == casefold(reg.founder):
            self.say(rb, "The founder always has full access")
            return
        if change[0] == "+":
            if acf not in reg.access and len(reg.access) >= MAX_ACCESS_ENTRIES:
                self.say(rb, f"The access list is full ({MAX_ACCESS_ENTRIES} entries)")
                return
        elif reg.access.get(acf) != change[1]:
            self.say(rb, f"{record.name} does not have +{change[1]} in {chan.name}")
            return
        level = change[1] if change[0] == "+" else ""
        amode = ChannelAccess(client.id, chan.name, record.name, level)
        self.server.emit(amode, rb, partial(self._access_changed, chan, change, record.name))

    def _access_changed(
        self, chan: Channel, change: str, account: str, out: ResponseBuffer | None
    ) -> None:
        """After the ChannelAccess's turn: tell the asker; the account's sessions in the
        channel get or lose the mode."""
        if out is not None:
            self.say(out, f"{chan.name}: {change} {account}")
        for session in list(self.server.accounts.sessions.get(casefold(account), ())):
            if session in chan.members:
                if change[0] == "+":
                    self.apply_access(chan, session)
                else:
                    self.set_prefix(chan, session, change[1], False)

    def cmd_topiclock(self, client: Client, args: list[str], rb: ResponseBuffer) -> None:
        if len(args) < 2 or args[1].upper() not in ("ON", "OFF"):
            self.say(rb, "Syntax: TOPICLOCK <#channel> ON|OFF")
            return
        chan, reg = self._reg(client, args[0])
        self._need(client, reg, "Fo")
        on = args[1].upper() == "ON"
        name = chan.name
        said = f"Topic lock for {name} is {'on' if on else 'off'}"
        self.server.emit(TopicLock(client.id, name, on), rb, self.saying(said))


# ---------------------------------------------------------------------------------- glue


class Services:
    """NickServ and ChanServ, and the hooks the rest of the core calls."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.nickserv = NickServ(server, -1)
        self.chanserv = ChanServ(server, -2)
        self.bots: dict[str, Bot] = {
            bot.client.nick_cf: bot for bot in (self.nickserv, self.chanserv)
        }
        # The pseudo-users by id: ChanServ is the user of its own mode changes' events.
        self.by_id: dict[int, Client] = {bot.client.id: bot.client for bot in self.bots.values()}
        for cf, bot in self.bots.items():
            server.nicks[cf] = bot.client

    def load(self, store: Store) -> None:
        self.chanserv.load(store)

    def add(self, bot: Bot) -> None:
        """Another service (FileServ), answered like NickServ and ChanServ."""
        self.bots[bot.client.nick_cf] = bot
        self.by_id[bot.client.id] = bot.client
        self.server.nicks[bot.client.nick_cf] = bot.client

    def nickserv_notice(self, client: Client, text: str, rb: ResponseBuffer | None = None) -> None:
        out = rb if rb is not None else ResponseBuffer(self.server, client, None)
        self.nickserv.say(out, text)
        if rb is None:
            out.flush()

    # -------------------------------------------------------------- core hooks

    def keeps(self, chan: Channel) -> bool:
        """Registered channels stay when their last member leaves."""
        return chan.cf in self.chanserv.regs

    def channel_changed(self, chan: Channel) -> None:
        """Topic, modes or lists changed: write a registered channel back."""
        if chan.cf in self.chanserv.regs:
            self.chanserv.save(chan)

    def on_join(self, chan: Channel, client: Client, out: ResponseBuffer) -> None:
        """Give a joining member the modes of its access level (AMODE)."""
        if chan.cf in self.chanserv.regs:
            self.chanserv.apply_access(chan, client, out)

    def check_topic(self, chan: Channel, client: Client) -> None:
        """TOPICLOCK: only founders and access-o members may change the topic."""
        reg = self.chanserv.regs.get(chan.cf)
        if reg is not None and reg.topiclock and self.chanserv.level(reg, client) not in ("F", "o"):
            raise CommandError(
                n.ERR_CHANOPRIVSNEEDED, chan.name, "The topic is locked (ChanServ TOPICLOCK)"
            )

    def account_dropped(self, name: str) -> None:
        """An account was deleted: its channels are unregistered, its access removed."""
        cf = casefold(name)
        chanserv = self.chanserv
        for chan_cf, reg in list(chanserv.regs.items()):
            if casefold(reg.founder) == cf:
                chanserv.unregister(chan_cf)
            elif cf in reg.access:
                del reg.access[cf]
                chan = self.server.channels.get(chan_cf)
                if chan is not None:
                    chanserv.save(chan)

    def to_services(self, client: Client, msg: Message, rb: ResponseBuffer) -> Message | None:
        """PRIVMSG/NOTICE: the part addressed to services is answered here and never
        relayed; returns the message for the other targets (None when there are none)."""
        params = msg.params
        targets = params[0].split(",")
        rest = [t for t in targets if casefold(t) not in self.bots]
        if len(rest) == len(targets):
            return msg
        echo = client.capmask & caps.ECHO_MESSAGE
        for target in targets:
            bot = self.bots.get(casefold(target))
            if bot is None:
                continue
            if echo:
                rb.add(Message(msg.command, (bot.nick, params[1]), client.prefix))
            if msg.command == "PRIVMSG":
                bot.handle(client, params[1], rb)
        if not rest:
            return None
        return Message(msg.command, (",".join(rest), *params[1:]), msg.source, msg.tags)


def check_private_message(server: Server, sender: Client, target: Client) -> None:
    """User mode +R: only logged-in users (and those on the ACCEPT list, and operators)
    may send ``target`` private messages. Sending one accepts the recipient's replies."""
    if sender.account is None and "R" in target.modes and sender.oper is None:
        state = target.auth
        if state is None or sender.nick_cf not in state.accepted:
            raise CommandError(
                n.ERR_NEEDREGGEDNICK,
                target.nick,
                "You must be logged in to an account to message this user (+R)",
            )
    if "R" in sender.modes:
        accepted = auth_state(sender).accepted
        if len(accepted) < MAX_ACCEPTED:
            accepted.add(target.nick_cf)


__all__ = ["ChanServ", "NickServ", "Services", "check_private_message", "valid_email"]
