"""Connection registration: CAP, PASS, NICK, USER, plus PING, PONG and QUIT."""

from __future__ import annotations

import hmac
from functools import partial
from typing import TYPE_CHECKING

from salon.errors import CommandError
from salon.proto import numerics as n
from salon.proto.message import Message
from salon.server import accounts, caps, metadata
from salon.server.client import Client
from salon.server.nicks import change_nick, valid_nick
from salon.server.responsebuffer import ResponseBuffer

_USER_OK = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


HISTORY_CAPS = frozenset(
    {
        "draft/chathistory",
        "draft/event-playback",
        "draft/message-redaction",
        "soju.im/search",
    }
)

if TYPE_CHECKING:
    from salon.server.core import Server


def cap_list(server: Server, version: int) -> list[str]:
    hist = server.config.history
    values = {
        "draft/multiline": f"max-bytes={hist.multiline_max_bytes},max-lines={hist.multiline_max_lines}",
    }
    values.update(server.accounts.cap_values())
    values["draft/metadata-3"] = metadata.cap_value(server.config)
    names = []
    for name in caps.CAPABILITIES:
        if name in HISTORY_CAPS and not hist.enabled:
            continue
        if name == "draft/metadata-3" and not server.config.metadata.enabled:
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
            if bit is None or (bit == caps.METADATA and not server.config.metadata.enabled):
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
    server.welcome(client, rb, partial(accounts.welcomed, server, client))


def cmd_nick(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    if not msg.params or not msg.params[0]:
        raise CommandError(n.ERR_NONICKNAMEGIVEN, "No nickname given")
    nick = msg.params[0]
    if not valid_nick(nick, server.config.limits.nicklen):
        raise CommandError(n.ERR_ERRONEUSNICKNAME, nick, "Erroneous nickname")
    if not client.registered:
        accounts.auth_state(client).wanted_nick = nick  # REGISTER * uses it, taken or not
    if not client.registered:
        change_nick(server, client, nick, rb)
        try_register(server, client, rb)
    else:
        change_nick(server, client, nick, rb, partial(_check_nick, server, client))


def _check_nick(server: Server, client: Client, out: ResponseBuffer | None) -> None:
    server.accounts.check_nick(client, out)


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
    if server.cluster is not None:
        server.cluster.fence(rb)


def cmd_pong(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    client.ping_sent = 0.0


def cmd_quit(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    reason = msg.params[0] if msg.params else ""
    rb.flush()
    if client.registered:
        server.drop(client, f"Quit: {reason}" if reason else "Quit: ")
    else:
        server.drop(client, "Quit")
