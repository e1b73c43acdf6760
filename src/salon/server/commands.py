"""The command table: every command salon understands, declared in one place.

Modelled on ergo's irc/commands.go. ``prereg``: usable before registration; ``min_params``:
fewer parameters get ERR_NEEDMOREPARAMS; ``oper``: operators only; ``idle``: counts as
activity for WHOIS idle time; ``fenced``: a query of the network's state, which in a cluster
runs once every node has applied what the network ordered before it (a read fence, see
salon.server.cluster), so it sees what another node already answered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from salon.errors import (
    CommandError,
    FailError,
    ForbiddenCharacter,
    InvalidUTF8,
    LineTooLong,
    ProtocolError,
)
from salon.proto import numerics as n
from salon.server.handlers import (
    accounts,
    bans,
    batch,
    channels,
    history,
    messaging,
    metadata,
    modes,
    oper,
    queries,
    registration,
    sasl,
    tokens,
)

if TYPE_CHECKING:
    from salon.proto.message import Message
    from salon.server.client import Client
    from salon.server.core import Server
    from salon.server.responsebuffer import ResponseBuffer

Handler = Callable[["Server", "Client", "Message", "ResponseBuffer"], None]


@dataclass(frozen=True, slots=True)
class Command:
    handler: Handler
    min_params: int = 0
    prereg: bool = False
    oper: bool = False
    idle: bool = False
    fenced: bool = False


# The fast path of a plain "PRIVMSG target :text" line (see messaging.relay_line).
FAST_LINE: Callable[[Server, Client, bytes], bool] = messaging.relay_line
# A line tagged ``batch`` while the client has a draft/multiline batch open.
BATCHED_LINE: Callable[[Server, Client, Message, ResponseBuffer], bool] = batch.batched_line

COMMANDS: dict[str, Command] = {
    # Registration and connection
    "CAP": Command(registration.cmd_cap, 1, prereg=True),
    "PASS": Command(registration.cmd_pass, 1, prereg=True),
    "NICK": Command(registration.cmd_nick, 0, prereg=True),
    "USER": Command(registration.cmd_user, 4, prereg=True),
    "PING": Command(registration.cmd_ping, 1, prereg=True),
    "PONG": Command(registration.cmd_pong, 0, prereg=True),
    "QUIT": Command(registration.cmd_quit, 0, prereg=True),
    # Accounts (SASL, draft/account-registration) and services
    "AUTHENTICATE": Command(sasl.cmd_authenticate, 1, prereg=True),
    "TOKEN": Command(tokens.cmd_token, 1),
    "REGISTER": Command(accounts.cmd_register, 3, prereg=True),
    "VERIFY": Command(accounts.cmd_verify, 2, prereg=True),
    "ACCEPT": Command(accounts.cmd_accept, 1),
    "NS": Command(accounts.cmd_nickserv, 0),
    "NICKSERV": Command(accounts.cmd_nickserv, 0),
    "CS": Command(accounts.cmd_chanserv, 0),
    "CHANSERV": Command(accounts.cmd_chanserv, 0),
    # Channels
    "JOIN": Command(channels.cmd_join, 1),
    "PART": Command(channels.cmd_part, 1),
    "KICK": Command(channels.cmd_kick, 2),
    "INVITE": Command(channels.cmd_invite, 0),
    "TOPIC": Command(channels.cmd_topic, 1),
    "NAMES": Command(channels.cmd_names, 0, fenced=True),
    "LIST": Command(channels.cmd_list, 0, fenced=True),
    "MODE": Command(modes.cmd_mode, 1),
    # Messages
    # (messages to NickServ/ChanServ are answered by the services, the rest relayed)
    "PRIVMSG": Command(messaging.cmd_privmsg, 0, idle=True),
    "NOTICE": Command(messaging.cmd_privmsg, 0, idle=True),
    "TAGMSG": Command(messaging.cmd_tagmsg, 1),
    "AWAY": Command(messaging.cmd_away, 0),
    "SETNAME": Command(messaging.cmd_setname, 1),
    # draft/metadata-3 (before registration too: the before-connect token)
    "METADATA": Command(metadata.cmd_metadata, 0, prereg=True),
    # History (draft/chathistory and friends)
    "CHATHISTORY": Command(history.cmd_chathistory, 1),
    "MARKREAD": Command(history.cmd_markread, 0),
    "REDACT": Command(history.cmd_redact, 0),
    "SEARCH": Command(history.cmd_search, 0),
    "RENAME": Command(history.cmd_rename, 2),
    "BATCH": Command(batch.cmd_batch, 1),
    # Queries
    "LUSERS": Command(queries.cmd_lusers, fenced=True),
    "MOTD": Command(queries.cmd_motd),
    "TIME": Command(queries.cmd_time),
    "VERSION": Command(queries.cmd_version),
    "INFO": Command(queries.cmd_info),
    "ADMIN": Command(queries.cmd_admin),
    "HELP": Command(queries.cmd_help),
    "HELPOP": Command(queries.cmd_help),
    "LINKS": Command(queries.cmd_links),
    "USERHOST": Command(queries.cmd_userhost, 1, fenced=True),
    "ISON": Command(queries.cmd_ison, 1, fenced=True),
    "WHO": Command(queries.cmd_who, 0, fenced=True),
    "WHOIS": Command(queries.cmd_whois, 1, fenced=True),
    "WHOWAS": Command(queries.cmd_whowas, 1, fenced=True),
    "MONITOR": Command(queries.cmd_monitor, 1, fenced=True),
    # Operators
    "OPER": Command(oper.cmd_oper, 2),
    "KILL": Command(oper.cmd_kill, 2, oper=True),
    "WALLOPS": Command(oper.cmd_wallops, 1, oper=True),
    "KLINE": Command(bans.cmd_kline, 1, oper=True),
    "UNKLINE": Command(bans.cmd_unkline, 1, oper=True),
    "DLINE": Command(bans.cmd_dline, 1, oper=True),
    "UNDLINE": Command(bans.cmd_undline, 1, oper=True),
}


# Lines that could not be parsed, answered through dispatch like any command (as ergo's
# invalidUtf8Command); the stand-in message's command is the line's command word, or "*".
# Other parse failures (an empty command) get no reply.


def _line_too_long(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    raise CommandError(n.ERR_INPUTTOOLONG, "Input line too long")


def _invalid_utf8(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    # UTF8ONLY: "the server MUST NOT relay content ... containing invalid UTF-8".
    raise FailError(msg.command, "INVALID_UTF8", "Message rejected: your client must use UTF-8")


def _forbidden_character(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    # Not silently dropped: the sender learns why nothing happened.
    raise CommandError(n.ERR_UNKNOWNERROR, msg.command, "Line contains a NUL or CR")


PARSE_FAILURES: dict[type[ProtocolError], Command] = {
    LineTooLong: Command(_line_too_long, prereg=True),
    InvalidUTF8: Command(_invalid_utf8, prereg=True),
    ForbiddenCharacter: Command(_forbidden_character, prereg=True),
}
