"""Connection registration: CAP, PASS, NICK, USER, plus PING, PONG and QUIT."""

from __future__ import annotations

import hmac

from salon.errors import CommandError
from salon.proto import numerics as n
from salon.proto.casemap import casefold
from salon.proto.message import Message
from salon.server import accounts, caps, history
from salon.server.client import Client
from salon.server.core import Server
from salon.server.responsebuffer import ResponseBuffer

_SPECIAL = set("[]\\`_^{|}")
_NICK_FIRST = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") | _SPECIAL
_NICK_REST = _NICK_FIRST | set("0123456789-")
_USER_OK = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


def valid_nick(nick: str, maxlen: int) -> bool:
    """RFC 2812 2.3.1: ``nickname = ( letter / special ) *8( letter / digit / special / "-" )``
    (salon allows up to NICKLEN characters)."""
    return (
        0 < len(nick) <= maxlen and nick[0] in _NICK_FIRST and all(ch in _NICK_REST for ch in nick)
    )


HISTORY_CAPS = frozenset(
    {
        "draft/chathistory",
        "draft/event-playback",
        "draft/message-redaction",
        "soju.im/search",
    }
)


def cap_list(server: Server, version: int) -> list[str]:
    hist = server.config.history
    values = {
        "draft/multiline": f"max-bytes={hist.multiline_max_bytes},max-lines={hist.multiline_max_lines}",
    }
    values.update(server.accounts.cap_values())
    names = []
    for name in caps.CAPABILITIES:
        if name in HISTORY_CAPS and not hist.enabled:
            continue
        if name in server.accounts.hidden_caps:
            continue
        value = values.get(name, "")
        names.append(f"{name}={value}" if value and version >= 302 else name)
    return names


def sts_value(server: Server, client: Client) -> str | None:
    """IRCv3 STS: the policy a client learns from CAP LS 302 (None: not advertised).
    Over plain text only the port to upgrade to; over TLS only the duration."""
    if server.sts is None:
        return None
    port, duration = server.sts
    return f"duration={duration}" if client.tls else f"port={port}"


def cmd_cap(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    sub = msg.params[0].upper()
    target = client.nick
    if sub == "LS":
        if not client.registered:
            client.cap_negotiating = True
        version = 0
        if len(msg.params) > 1 and msg.params[1].isdigit():
            version = int(msg.params[1])
        if version >= 302:
            client.cap_version = max(client.cap_version, version)
            # CAP 3.2: "clients that send CAP LS 302 ... implicitly enable cap-notify".
            client.capmask |= caps.CAP_NOTIFY
        names = cap_list(server, version)
        sts = sts_value(server, client) if version >= 302 else None
        if sts is not None:
            # Not in CAPABILITIES: "sts" cannot be requested (a CAP REQ for it gets NAK).
            names.append(f"sts={sts}")
        # Split long lists; with 302, every line but the last carries "*".
        lines: list[list[str]] = [[]]
        length = 0
        for name in names:
            if length + len(name) + 1 > 400:
                lines.append([])
                length = 0
            lines[-1].append(name)
            length += len(name) + 1
        if version < 302:
            # CAP 3.1 clients get exactly one line: the stable capabilities first.
            names.sort(key=lambda name: ("/" in name, name))
            first: list[str] = []
            size = 0
            for name in names:
                if size + len(name) + 1 > 400:
                    break
                first.append(name)
                size += len(name) + 1
            lines = [first]
        for i, chunk in enumerate(lines):
            if i < len(lines) - 1 and version >= 302:
                rb.add(Message("CAP", (target, "LS", "*", " ".join(chunk)), server.name))
            else:
                rb.add(Message("CAP", (target, "LS", " ".join(chunk)), server.name))
    elif sub == "LIST":
        enabled = [name for name, bit in caps.CAPABILITIES.items() if client.capmask & bit]
        rb.add(Message("CAP", (target, "LIST", " ".join(enabled)), server.name))
    elif sub == "REQ":
        if not client.registered:
            client.cap_negotiating = True
        requested = msg.params[1] if len(msg.params) > 1 else ""
        add = 0
        remove = 0
        ok = bool(requested.strip())
        for item in requested.split():
            name = item[1:] if item.startswith("-") else item
            bit = caps.CAPABILITIES.get(name)
            if bit is None:
                ok = False
                break
            if item.startswith("-"):
                if bit == caps.CAP_NOTIFY and client.cap_version >= 302:
                    # CAP 3.2: servers "MUST NOT" let a 302 client disable cap-notify.
                    ok = False
                    break
                remove |= bit
            else:
                add |= bit
        if ok:
            client.capmask = (client.capmask | add) & ~remove
            client.variant = client.capmask & caps.VARIANT_MASK if client.variant >= 0 else -1
            rb.add(Message("CAP", (target, "ACK", requested.strip()), server.name))
        else:
            rb.add(Message("CAP", (target, "NAK", requested.strip()), server.name))
    elif sub == "END":
        if not client.registered:
            client.cap_negotiating = False
            try_register(server, client, rb)
    else:
        raise CommandError(n.ERR_INVALIDCAPCMD, sub, "Invalid CAP command")


def cmd_pass(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    if client.registered:
        raise CommandError(n.ERR_ALREADYREGISTERED, "You may not reregister")
    client.pass_given = msg.params[0]


def try_register(server: Server, client: Client, rb: ResponseBuffer) -> None:
    if client.registered or client.cap_negotiating or not client.nick_cf or not client.user:
        return
    password = server.config.server.password
    if password and not hmac.compare_digest((client.pass_given or "").encode(), password.encode()):
        rb.numeric(n.ERR_PASSWDMISMATCH, "Password incorrect")
        rb.flush()
        server.drop(client, "Bad password")
        return
    if not accounts.admit(server, client, rb):
        return
    server.welcome(client, rb)
    accounts.welcomed(server, client, rb)


def cmd_nick(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    if not msg.params or not msg.params[0]:
        raise CommandError(n.ERR_NONICKNAMEGIVEN, "No nickname given")
    nick = msg.params[0]
    if not valid_nick(nick, server.config.limits.nicklen):
        raise CommandError(n.ERR_ERRONEUSNICKNAME, nick, "Erroneous nickname")
    if not client.registered:
        accounts.auth_state(client).wanted_nick = nick  # REGISTER * uses it, taken or not
    change_nick(server, client, nick, rb)
    if not client.registered:
        try_register(server, client, rb)
    else:
        server.accounts.check_nick(client, rb)


def second_session_nick(server: Server, client: Client, holder: Client, nick: str) -> str | None:
    """A free variant of ``nick`` for a client registering while another session of the
    same account holds it (a second device): ``nick_``, ``nick__``, ``nick2``..."""
    if client.registered or client.account is None or holder.account is None:
        return None
    if casefold(holder.account) != casefold(client.account):
        return None
    maxlen = server.config.limits.nicklen
    for suffix in ("_", "__", *(str(i) for i in range(2, 10))):
        candidate = nick[: maxlen - len(suffix)] + suffix
        if casefold(candidate) not in server.nicks:
            return candidate
    return None


def change_nick(server: Server, client: Client, nick: str, rb: ResponseBuffer) -> None:
    cf = casefold(nick)
    holder = server.nicks.get(cf)
    if holder is not None and holder is not client:
        variant = second_session_nick(server, client, holder, nick)
        if variant is None:
            raise CommandError(n.ERR_NICKNAMEINUSE, nick, "Nickname is already in use")
        rb.notice(
            f"{nick} is in use by another session of your account {client.account};"
            f" this session is {variant}"
        )
        nick, cf = variant, casefold(variant)
    if nick == client.nick:
        return
    old_cf = client.nick_cf
    if not client.registered:
        if old_cf and server.nicks.get(old_cf) is client:
            del server.nicks[old_cf]
        server.nicks[cf] = client
        client.set_nick(nick, cf, server.now)
        return
    change = Message("NICK", (nick,), client.prefix, server.user_tags(client))
    server.remember_whowas(client)
    recipients = server.common_channel_members(client)
    recipients.discard(client)
    renamed = old_cf != cf  # a change of case only is not a new nick for MONITOR
    if renamed:
        server.notify_monitors(client, online=False)
        del server.nicks[old_cf]
        server.nicks[cf] = client
    client.set_nick(nick, cf, server.now)
    rb.add(change)
    server.deliver(recipients, change)
    history.user_event(server, client, change)
    if renamed:
        server.notify_monitors(client, online=True)


def cmd_user(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    if client.registered:
        raise CommandError(n.ERR_ALREADYREGISTERED, "You may not reregister")
    username, realname = msg.params[0], msg.params[3]
    if not username or not realname:
        raise CommandError(n.ERR_NEEDMOREPARAMS, "USER", "Not enough parameters")
    lim = server.config.limits
    cleaned = "".join(ch for ch in username if ch in _USER_OK)[: lim.userlen]
    if not cleaned:
        cleaned = "user"
    client.user = cleaned
    client.realname = realname[: lim.realnamelen] or cleaned
    try_register(server, client, rb)


def cmd_ping(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    rb.add(Message("PONG", (server.name, msg.params[0]), server.name))


def cmd_pong(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    client.ping_sent = 0.0


def cmd_quit(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    reason = msg.params[0] if msg.params else ""
    rb.flush()
    if client.registered:
        server.drop(client, f"Quit: {reason}" if reason else "Quit: ")
    else:
        server.drop(client, "Quit")
