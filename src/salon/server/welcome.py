"""The welcome burst: 001 to 005 (ISUPPORT), LUSERS and the MOTD, sent when a client
completes registration, and the LUSERS and MOTD replies on their own.

ISUPPORT tokens are built once from the configuration, as ergo's irc/isupport builds its
list once. The burst is most of what a registration costs, so when no label asks for a
labeled response it is written from byte templates made once (:func:`_templates`), with
the LUSERS counts (:func:`lusers`, the one text of those lines) filled in.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from salon import __version__
from salon.config import Config
from salon.proto import numerics as n
from salon.proto.casemap import NAME as CASEMAPPING
from salon.proto.isupport import DEFAULT_CHANNEL, escape_value
from salon.proto.message import Message
from salon.server import metadata
from salon.server.apply import intro
from salon.server.channel import (
    FLAG_MODES,
    LIST_MODES,
    PARAM_MODES,
    PREFIX_CHARS,
    PREFIX_MODES,
    SET_PARAM_MODES,
)
from salon.server.client import Client, Kind
from salon.server.events import Metadata
from salon.server.responsebuffer import ResponseBuffer

if TYPE_CHECKING:
    from salon.server.core import Server

USER_MODES = "BiowR"


def isupport(config: Config) -> list[tuple[str, ...]]:
    """The RPL_ISUPPORT lines: the tokens, sorted, twelve a line."""
    lim = config.limits
    tokens = [
        "ACCOUNTEXTBAN=a",
        f"AWAYLEN={lim.awaylen}",
        "BOT=B",
        f"CASEMAPPING={CASEMAPPING}",
        f"CHANLIMIT=#:{lim.max_channels}",
        f"CHANMODES={LIST_MODES},{PARAM_MODES},{SET_PARAM_MODES},{FLAG_MODES}",
        f"CHANNELLEN={lim.channellen}",
        "CHANTYPES=#",
        "ELIST=CMNTU",
        "EXCEPTS=e",
        "EXTBAN=$,am",
        f"HOSTLEN={64}",
        "INVEX=I",
        f"KICKLEN={lim.kicklen}",
        f"MAXLIST=beI:{lim.max_list_entries}",
        f"MAXTARGETS={lim.max_targets}",
        "MODES=4",
        f"MONITOR={lim.monitor}",
        f"NETWORK={config.server.network}",
        f"NICKLEN={lim.nicklen}",
        f"PREFIX=({PREFIX_MODES}){PREFIX_CHARS}",
        "SAFELIST",
        f"STATUSMSG={PREFIX_CHARS}",
        f"TARGMAX=NAMES:{lim.max_targets},LIST:1,KICK:{lim.max_targets},WHOIS:1,USERHOST:5,"
        f"PRIVMSG:{lim.max_targets},"
        f"TAGMSG:{lim.max_targets},NOTICE:{lim.max_targets},MONITOR:",
        f"TOPICLEN={lim.topiclen}",
        f"USERLEN={lim.userlen}",
        "UTF8ONLY",
        "WHOX",
        f"{DEFAULT_CHANNEL}={escape_value(config.server.default_channel)}",
    ]
    if config.history.enabled:
        tokens += [
            f"CHATHISTORY={config.history.chathistory_limit}",
            "MSGREFTYPES=msgid,timestamp",
        ]
    tokens.sort()
    lines = []
    for i in range(0, len(tokens), 12):
        lines.append((*tokens[i : i + 12], "are supported by this server"))
    return lines


def lusers(server: Server) -> list[tuple[str, tuple[str, ...]]]:
    """The LUSERS replies: (numeric, parameters after the nick), counts as of now."""
    users = server.user_count()
    invisible = len(server.invisible)
    server.max_local = most = max(server.max_local, users)
    unknown = server.unregistered
    if server.cluster is not None:
        unknown += server.cluster.unregistered_elsewhere()
    return [
        (
            n.RPL_LUSERCLIENT,
            (f"There are {users - invisible} users and {invisible} invisible on 1 servers",),
        ),
        (n.RPL_LUSEROP, (str(len(server.opers)), "IRC Operators online")),
        (n.RPL_LUSERUNKNOWN, (str(unknown), "unknown connection(s)")),
        (n.RPL_LUSERCHANNELS, (str(len(server.channels)), "channels formed")),
        (n.RPL_LUSERME, (f"I have {users} clients and 0 servers",)),
        (
            n.RPL_LOCALUSERS,
            (str(users), str(most), f"Current local users {users}, max {most}"),
        ),
        (
            n.RPL_GLOBALUSERS,
            (str(users), str(most), f"Current global users {users}, max {most}"),
        ),
    ]


def send_lusers(server: Server, rb: ResponseBuffer) -> None:
    for numeric, params in lusers(server):
        rb.numeric(numeric, *params)


def send_motd(server: Server, rb: ResponseBuffer) -> None:
    if not server.motd:
        rb.numeric(n.ERR_NOMOTD, "MOTD File is missing")
        return
    rb.numeric(n.RPL_MOTDSTART, f"- {server.name} Message of the day - ")
    for line in server.motd:
        rb.numeric(n.RPL_MOTD, f"- {line}")
    rb.numeric(n.RPL_ENDOFMOTD, "End of /MOTD command.")


def _templates(server: Server) -> tuple[list[bytes], list[bytes]]:
    """002 to 005, and the MOTD, as byte templates (built once): ``nick.join(pieces)``
    gives the lines, each naming the nick once."""
    placeholder = "Nplaceholder0"
    dummy = Client(0, Kind.IRC, "0.0.0.0", 0, server.now)
    dummy.nick = placeholder
    statics = ResponseBuffer(server, dummy, None)
    _static(server, placeholder, statics)
    motd = ResponseBuffer(server, dummy, None)
    send_motd(server, motd)

    def pieces(rb: ResponseBuffer) -> list[bytes]:
        # The nick is each line's first parameter: split there only (the placeholder
        # could also be in a MOTD line's text, which must stay as it is).
        out = [b""]
        for msg in rb.messages:
            head, found, tail = msg.serialize().partition(placeholder.encode())
            assert found, msg
            out[-1] += head
            out.append(tail)
        return out

    return pieces(statics), pieces(motd)


def _static(server: Server, nick: str, rb: ResponseBuffer) -> None:
    """002 to 005: what does not change while the server runs."""
    name = server.name

    def numeric(num: str, *params: str) -> None:
        rb.messages.append(Message(num, (nick, *params), name))

    numeric(n.RPL_YOURHOST, f"Your host is {name}, running version salon-{__version__}")
    created = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(server.started))
    numeric(n.RPL_CREATED, f"This server was created {created}")
    numeric(
        n.RPL_MYINFO,
        name,
        f"salon-{__version__}",
        USER_MODES,
        "".join(sorted(LIST_MODES + PARAM_MODES + SET_PARAM_MODES + FLAG_MODES + PREFIX_MODES)),
        "".join(sorted(LIST_MODES + PARAM_MODES + SET_PARAM_MODES + PREFIX_MODES)),
    )
    for line in server.isupport_lines:
        numeric(n.RPL_ISUPPORT, *line)


def welcome(
    server: Server,
    client: Client,
    rb: ResponseBuffer,
    then: Callable[[ResponseBuffer], None] | None = None,
) -> None:
    """Complete registration: 001 to 005, LUSERS and MOTD (the client's draft/metadata-3
    keys in a batch before the MOTD), then ``then(rb)``. (In a cluster, once the Intro
    event had its turn: a nick claimed on two nodes at once is the first one's.)"""
    server.emit(intro(client), rb, partial(_welcome, server, client, rb, then))


def _welcome(
    server: Server,
    client: Client,
    rb: ResponseBuffer,
    then: Callable[[ResponseBuffer], None] | None,
    out: ResponseBuffer | None,
) -> None:
    if out is not None:
        rb = out
    keys = metadata.registered(server, client)
    for key, value in keys.items():
        server.emit(Metadata(client.id, None, key, value))
    # From ``keys``, not the client: in a cluster the Metadata events above apply later.
    _burst(server, client, rb, metadata.own_batch(server, client, keys))
    if then is not None:
        then(rb)


def _burst(server: Server, client: Client, rb: ResponseBuffer, own: list[Message]) -> None:
    client.last_active = server.now
    client.token_time = server.now  # the flood budget refills from registration on
    nick = client.nick
    text = f"Welcome to the {server.config.server.network} IRC Network {client.prefix}"
    if rb.label is None and client.variant >= 0:
        # The fast path: ready bytes around the nick (nicks are validated words).
        rb.flush()
        if server._templates is None:
            server._templates = _templates(server)
        statics, motd = server._templates
        name = server.name
        counts = "".join(
            f":{name} {num} {nick} {''.join(p + ' ' for p in params[:-1])}:{params[-1]}\r\n"
            for num, params in lusers(server)
        )
        nick_bytes = nick.encode()
        burst = (
            f":{name} 001 {nick} :{text}\r\n".encode(),
            nick_bytes.join(statics),
            counts.encode(),
            *(client.personality.render(server, client, msg) or b"" for msg in own),
            nick_bytes.join(motd),
        )
        server.write(client, b"".join(burst))
        _after(server, client)
        return
    rb.numeric(n.RPL_WELCOME, text)
    _static(server, nick, rb)
    send_lusers(server, rb)
    rb.messages += own
    send_motd(server, rb)
    _after(server, client, rb)


def _after(server: Server, client: Client, rb: ResponseBuffer | None = None) -> None:
    nick = client.nick
    if client.modes:
        mode = Message("MODE", (nick, "+" + "".join(sorted(client.modes))), client.prefix)
        if rb is not None:
            rb.add(mode)
        else:
            server.send(client, mode)
    if server.noting:
        server.note(f"register id={client.id} nick={nick} ip={client.ip}")
    if client.account is not None and server.config.accounts.rejoin:
        server.accounts.rejoin(client)
