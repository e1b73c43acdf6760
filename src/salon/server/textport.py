"""The text port: the classic line chat, for ``nc`` and telnet.

(Its config section and command-line flag keep the name users know: ``[plain]`` and
``--plain-port``.) It is a personality of the client (:class:`Textport`): how a line is
read, how what is sent to the user is rendered, how the connection is closed.

It asks for the server password when one is set, then for a name, refuses names that are
taken (nicks are shared with IRC) or that belong to a registered account, puts the person
in the default channel, and turns what they type into IRC commands. What IRC produces for
them is rendered as short text lines: ``name: text``, ``* bob joined #lobby``; whatever
anyone else wrote reaches their terminal with its control characters made visible. A line
of just a leave word (``[plain] leave_words``: bye, quit, exit, over) leaves.
"""

from __future__ import annotations

import hmac
import logging
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from salon.errors import CommandError
from salon.proto import numerics as n
from salon.proto.casemap import casefold
from salon.proto.formatting import shown_controls, strip_formatting
from salon.proto.limits import MAX_LINE
from salon.proto.message import Message
from salon.server.apply import intro
from salon.server.channel import Channel
from salon.server.channels import join, send_names
from salon.server.client import Client
from salon.server.history import event_message
from salon.server.nicks import valid_nick
from salon.server.personality import Personality
from salon.server.responsebuffer import ResponseBuffer
from salon.store.base import HistoryEvent

if TYPE_CHECKING:
    from salon.server.core import Server

log = logging.getLogger("salon.server")

HELP = [
    "Type a line and press Enter to talk to the room.",
    "/msg <name> <text>   a private message",
    "/join #room [key]    go to another room (it is created if needed)",
    "/who                 who is in the room",
    "/me <action>         an action, like: * you wave",
    "/nick <name>         change your name",
    "/help                this text",
]
# Commands that leave (with a reason after them), whatever [plain] leave_words says.
_QUIT_COMMANDS = ("quit", "bye", "exit")
# Numerics that carry nothing a plain-text user needs.
_SILENT = {
    n.RPL_TOPICWHOTIME,
    n.RPL_ENDOFNAMES,
    n.RPL_ENDOFWHO,
    n.RPL_ENDOFWHOIS,
    n.RPL_CREATIONTIME,
}
PASSWORD_PROMPT = "Server password:"
NAME_PROMPT = "Your name:"
NAME_RULE = (
    "Names have up to {maxlen} letters (a-z), digits or - _ [ ] {{ }} | ^ ` \\, "
    "and don't start with a digit or -."
)
# What is typed is trimmed of spaces and tabs only: str.strip() would also take the
# formatting codes \x1c-\x1f (underline is \x1f) off the ends of a message.
_BLANKS = " \t"

# Formatting codes mean nothing to a terminal: they are taken out. Other control
# characters are shown (proto.formatting); a tab, CR or LF becomes a space.
_CONTROLS = shown_controls() | {ord("\t"): " ", ord("\r"): " ", ord("\n"): " "}


@dataclass(slots=True)
class TextportState:
    room: str = ""
    # The server password was given (or none is set): the name prompt comes next.
    admitted: bool = False


def visible(text: str) -> str:
    """``text`` safe for a terminal: formatting codes out, control characters shown."""
    return strip_formatting(text).translate(_CONTROLS)


def _line(text: str) -> bytes:
    return (visible(text) + "\r\n").encode("utf-8", "replace")


def _listed(words: Sequence[str], conjunction: str) -> str:
    """``bye, quit, exit or over``."""
    if len(words) < 2:
        return "".join(words)
    return f"{', '.join(words[:-1])} {conjunction} {words[-1]}"


def _help_lines(server: Server) -> list[str]:
    """/help: the commands, and the leave words of [plain] leave_words."""
    words = server.config.plain.leave_words
    also = f" (so do {_listed(words, 'and')} on a line of their own)" if words else ""
    return [*HELP, f"/quit [reason]       leave{also}"]


def _greeting(server: Server, name: str) -> str:
    words = server.config.plain.leave_words
    leave = _listed(words, "or") if words else "/quit"
    return f"Hello {name}! Type /help for help, and {leave} to leave."


def _leaves(server: Server, text: str) -> bool:
    """The line is a leave word, or a leave command without a reason (``/quit``)."""
    word = text.lower()
    words = server.config.plain.leave_words
    if word in words:
        return True
    return word.startswith("/") and (word[1:] in _QUIT_COMMANDS or word[1:] in words)


class Textport(Personality):
    __slots__ = ()

    variant = -1  # every message rendered as text, per recipient (its current room)

    def start(self, server: Server, client: Client) -> None:
        start(server, client)

    def on_line(self, server: Server, client: Client, line: bytes) -> None:
        handle_line(server, client, line)

    def render(
        self, server: Server, client: Client, msg: Message, wire: bytes | None = None
    ) -> bytes | None:
        return render(server, client, msg)

    def closing_line(self, client: Client, reason: str, error: str | None) -> bytes | None:
        if error == "":
            return None  # said already ("Bye!")
        return f"* Disconnected: {error or reason}\r\n".encode()

    def keepalive(self, server: Server, client: Client) -> None:
        client.last_active = server.now  # a terminal has no PING to answer: never idle

    def replay(
        self, server: Server, client: Client, chan: Channel, events: list[HistoryEvent]
    ) -> bool:
        replay(server, client, chan, events)
        return True


def start(server: Server, client: Client) -> None:
    state = client.textport = TextportState()
    # Like PASS on the IRC port, [server] password is asked for before anything else.
    state.admitted = not server.config.server.password
    server.write(client, _line(f"Welcome to {server.config.server.network} on {server.name}."))
    server.write(client, _line(NAME_PROMPT if state.admitted else PASSWORD_PROMPT))


def _prompt(client: Client) -> str:
    state: TextportState = client.textport
    return NAME_PROMPT if state.admitted else PASSWORD_PROMPT


def _not_sent(server: Server, client: Client, why: str) -> None:
    """Refuse a line; before the name is chosen, ask again for what was being asked."""
    if client.registered:
        server.write(client, _line(f"* {why}; it was not sent."))
    else:
        server.write(client, _line(f"* {why}. {_prompt(client)}"))


def handle_line(server: Server, client: Client, raw: bytes) -> None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        _not_sent(server, client, "That line was not valid UTF-8")
        return
    # RFC 1459 2.3.1: a parameter is a "sequence of octets not including NUL or CR or LF",
    # so a NUL or a bare CR inside the line can't be relayed: the line is refused (the core
    # split the input at LF and took off the CR of a CR LF ending; more CRs there go too).
    if "\0" in text:
        _not_sent(server, client, "That line had a NUL byte")
        return
    text = text.rstrip("\r")
    if "\r" in text:
        _not_sent(server, client, "That line had a CR byte")
        return
    client.last_active = server.now
    state: TextportState = client.textport
    if not state.admitted:
        _check_password(server, client, state, text)
        return
    text = text.strip(_BLANKS)
    if _leaves(server, text):
        server.write(client, _line("Bye!"))
        server.drop(client, "Quit: bye", error="")
        return
    if not client.registered:
        _choose_name(server, client, state, text)
        return
    if not text:
        return
    if text.startswith("/") and not text.startswith("//"):
        _command(server, client, state, text)
        return
    if text.startswith("//"):
        text = text[1:]
    if state.room and state.room not in client.channels:
        # Kicked (or parted by other means) from the room being talked to: another one
        # of the person's rooms takes its place, and they are told before anything goes.
        gone, state.room = state.room, next(iter(client.channels), "")
        where = f"now in {client.channels[state.room].name}" if state.room else "in no room"
        server.write(client, _line(f"* You are no longer in {gone}; you are {where}."))
        return
    if not state.room:
        server.write(client, _line("* You are in no room. /join #room first."))
        return
    _say(server, client, state.room, text)


def _irc(server: Server, client: Client, command: str, *params: str) -> None:
    server.dispatch(client, Message(command, params))


def _check_password(server: Server, client: Client, state: TextportState, text: str) -> None:
    """As try_register does for PASS: a wrong password is refused and disconnected."""
    if not text:
        server.write(client, _line(PASSWORD_PROMPT))
        return
    password = server.config.server.password
    if not hmac.compare_digest(text.encode(), password.encode()):
        server.write(client, _line("* Wrong server password. Bye."))
        server.drop(client, "Bad password", error="")
        return
    state.admitted = True
    server.write(client, _line(NAME_PROMPT))


def _too_long_by(client: Client, target: str, text: str) -> int:
    """How many characters of ``text`` are too many to relay: RFC 1459 2.3 lines are at
    most 512 bytes "counting all characters including the trailing CR-LF", and the line
    relayed is ``:nick!user@host PRIVMSG target :text``."""
    over = len(f":{client.prefix} PRIVMSG {target} :{text}\r\n".encode()) - MAX_LINE
    cut = 0
    for ch in reversed(text):
        if over <= 0:
            break
        over -= len(ch.encode())
        cut += 1
    return cut


def _say(server: Server, client: Client, target: str, text: str) -> None:
    """Send ``text`` to ``target`` (a room or a name), unless it is too long to relay."""
    cut = _too_long_by(client, target, text)
    if cut:
        server.write(
            client,
            _line(
                f"* That line is {cut} characters too long; it was not sent. "
                "Split it into shorter lines."
            ),
        )
        return
    _irc(server, client, "PRIVMSG", target, text)


def _describe(ch: str) -> str:
    """A character in words, for telling why a name can't be used."""
    if ch == " ":
        return "a space"
    if ch.isprintable():
        return f'"{ch}"'
    name = unicodedata.name(ch, "")
    return f"an invisible character ({name.lower()})" if name else "a control character"


def name_problem(name: str, maxlen: int) -> str | None:
    """Why ``name`` can't be a nick, in words; None when it can."""
    if valid_nick(name, maxlen):
        return None
    for ch in name:
        if not valid_nick("a" + ch, 2):  # ch may not appear in a nick at all
            return f"it contains {_describe(ch)}"
    if len(name) > maxlen:
        return f"it is {len(name)} characters long"
    return "it starts with a digit" if name[0].isdigit() else "it starts with -"


def _invalid_name(server: Server, name: str) -> str | None:
    """Why ``name`` can't be a nick at all, as a sentence; None when it can."""
    maxlen = server.config.limits.nicklen
    problem = name_problem(name, maxlen)
    if problem is None:
        return None
    return f"That name can't be used: {problem}. {NAME_RULE.format(maxlen=maxlen)}"


def _owned(server: Server, client: Client, name: str) -> bool:
    """Nick ownership (accounts.check_nick): an IRC client not logged in to the account of
    its nick is renamed to a guest after a grace period. ``name`` belongs to an account
    that ``client`` is not logged in to."""
    accounts = server.accounts
    return accounts.config.enabled and not accounts.may_hold(client, casefold(name))


def _choose_name(server: Server, client: Client, state: TextportState, name: str) -> None:
    if not name:
        server.write(client, _line(NAME_PROMPT))
        return
    invalid = _invalid_name(server, name)
    if invalid is not None:
        server.write(client, _line(f"* {invalid} {NAME_PROMPT}"))
        return
    if _owned(server, client, name):
        # A plain-text user cannot log in before choosing a name: the name is refused
        # rather than taken away after the grace period.
        server.write(
            client,
            _line(
                f"* The name {name} belongs to a registered account. Log in with an IRC "
                f"client, or choose another. {NAME_PROMPT}"
            ),
        )
        return
    cf = casefold(name)
    if cf in server.nicks:
        server.write(client, _line(f"* The name {name} is taken. Try another. {NAME_PROMPT}"))
        return
    client.user = "plain"
    rb = ResponseBuffer(server, client, None)
    # As at IRC registration (accounts.admit): a K-lined user is refused and dropped.
    if not server.abuse.admit(client, rb):
        return
    client.set_nick(name, cf, server.now)
    client.realname = f"{name} (plain-text port)"
    server.emit(intro(client))
    if server.noting:
        server.note(f"register id={client.id} nick={name} ip={client.ip} kind=plain")
    server.write(client, _line(_greeting(server, name)))
    room = server.config.server.default_channel
    try:
        join(server, client, room, None, rb)
        # (In a cluster the join is done when its event has its turn: the room is set now.)
        state.room = casefold(room)
    except CommandError as exc:
        server.write(client, _line(f"* You could not join {room}: {exc.params[-1]}"))
    finally:
        rb.flush()


def _command(server: Server, client: Client, state: TextportState, text: str) -> None:
    verb, _, rest = text[1:].partition(" ")
    verb = verb.lower()
    rest = rest.strip(_BLANKS)
    if verb == "help":
        for line in _help_lines(server):
            server.write(client, _line(line))
    elif verb in ("msg", "query", "tell"):
        target, _, body = rest.partition(" ")
        if not target or not body:
            server.write(client, _line("* Usage: /msg <name> <text>"))
            return
        _say(server, client, target, body)
    elif verb == "join":
        if not rest:
            server.write(client, _line("* Usage: /join #room [key]"))
            return
        room, *key = rest.split()[:2]
        if not room.startswith("#"):
            room = "#" + room
        chan = client.channels.get(casefold(room))
        if chan is not None:
            # Already in it (a JOIN would be silent): it becomes the room to talk to.
            state.room = chan.cf
            server.write(client, _line(f"* You are now in {chan.name}"))
            return
        # The key of a room with one (channel mode +k) goes with the JOIN.
        _irc(server, client, "JOIN", room, *key)
        if casefold(room) in client.channels:
            state.room = casefold(room)
    elif verb == "part":
        room = rest.split()[0] if rest else state.room
        if not room:
            server.write(client, _line("* You are in no room."))
            return
        _irc(server, client, "PART", room)
        if state.room not in client.channels:
            state.room = next(iter(client.channels), "")
    elif verb in _QUIT_COMMANDS or verb in server.config.plain.leave_words:
        server.write(client, _line("Bye!"))
        server.drop(client, f"Quit: {rest}" if rest else "Quit: bye", error="")
    elif verb == "who":
        chan = client.channels.get(casefold(rest.split()[0]) if rest else state.room)
        if chan is None:
            server.write(
                client, _line(f"* You are not in {rest}." if rest else "* You are in no room.")
            )
            return
        rb = ResponseBuffer(server, client, None)
        send_names(server, client, chan, rb)
        rb.flush()
    elif verb == "me":
        if not rest:
            server.write(client, _line("* Usage: /me <action>"))
        elif not state.room:
            server.write(client, _line("* You are in no room. /join #room first."))
        else:
            _say(server, client, state.room, f"\x01ACTION {rest}\x01")
    elif verb == "nick":
        if not rest:
            server.write(client, _line("* Usage: /nick <name>"))
            return
        name = rest.split()[0]
        invalid = _invalid_name(server, name)
        if invalid is not None:
            server.write(client, _line(f"* {invalid}"))
            return
        if _owned(server, client, name):
            server.write(
                client,
                _line(
                    f"* The name {name} belongs to a registered account; if it is yours, "
                    f"log in first: /msg NickServ IDENTIFY {name} <password>"
                ),
            )
            return
        _irc(server, client, "NICK", name)
    else:
        server.write(client, _line(f"* Unknown command /{verb}. Type /help."))


def _room_label(client: Client, channel: str) -> str:
    state: TextportState = client.textport
    return "" if casefold(channel) == state.room else f"[{channel}] "


def render(server: Server, client: Client, msg: Message) -> bytes | None:
    """How an IRC message reads on the plain-text port; None when it is not shown."""
    text = _render_text(client, msg)
    return None if text is None else _line(text)


def _render_text(client: Client, msg: Message) -> str | None:
    cmd = msg.command
    p = msg.params
    nick = (msg.source or "").split("!", 1)[0]
    me = nick == client.nick
    if cmd in ("PRIVMSG", "NOTICE") and len(p) >= 2:
        text = p[1]
        action = text.startswith("\x01ACTION ") and text.endswith("\x01")
        if text.startswith("\x01") and not action:
            return None
        if p[0].startswith("#") or (p[0][:1] in "@+" and p[0][1:2] == "#"):
            where = _room_label(client, p[0].lstrip("@+"))
            if action:
                return f"{where}* {nick} {text[8:-1]}"
            return f"{where}{nick}: {text}"
        if "!" not in (msg.source or "!"):
            return f"* {text}"
        if action:
            return f"(private) * {nick} {text[8:-1]}"
        return f"(private) {nick}: {text}"
    if cmd == "JOIN" and p:
        if me:
            return f"* You are now in {p[0]}"
        return f"* {nick} joined {_room_label(client, p[0]) or p[0]}".rstrip()
    if cmd == "PART" and p:
        reason = f" ({p[1]})" if len(p) > 1 and p[1] else ""
        who = "You" if me else nick
        return f"* {who} left {p[0]}{reason}"
    if cmd == "QUIT":
        reason = f" ({p[0]})" if p and p[0] else ""
        return f"* {nick} left{reason}"
    if cmd == "NICK" and p:
        who = "You are" if p[0] == client.nick else f"{nick} is"
        return f"* {who} now known as {p[0]}"
    if cmd == "KICK" and len(p) >= 2:
        reason = f" ({p[2]})" if len(p) > 2 else ""
        return f"* {p[1]} was kicked from {p[0]} by {nick}{reason}"
    if cmd == "TOPIC" and len(p) >= 2:
        return f"* {nick} set the topic of {p[0]}: {p[1]}"
    if cmd == "MODE" and len(p) >= 2:
        return f"* {nick} sets mode {' '.join(p[1:])} on {p[0]}"
    if cmd == "INVITE" and len(p) >= 2:
        return f"* {nick} invites you to {p[1]} (type /join {p[1]})"
    if cmd == "FAIL" and p:
        return f"* {p[-1]}"
    if cmd.isdigit():
        return _numeric_text(cmd, p)
    return None


def _numeric_text(cmd: str, p: Sequence[str]) -> str | None:
    """A numeric reply as a line: its text, then what it is about (the parameters
    between the nick and the text), with a few said in plain words."""
    if cmd in _SILENT:
        return None
    if cmd == n.RPL_TOPIC and len(p) >= 3:
        return f"* Topic of {p[1]}: {p[2]}"
    if cmd == n.RPL_NAMREPLY and len(p) >= 4:
        return f"* In {p[2]}: {', '.join(p[3].split())}"
    if cmd == n.ERR_INPUTTOOLONG:
        return "* That line is too long; it was not sent. Split it into shorter lines."
    if cmd == n.RPL_AWAY and len(p) >= 3:
        return f"* {p[1]} is away: {p[2]}"
    if cmd == n.RPL_LOGGEDIN and len(p) >= 4:
        return f"* {p[3]}"  # "You are now logged in as X"
    if cmd == n.ERR_BADCHANNELKEY and len(p) >= 2:
        return f"* {p[1]} needs a key (a password): /join {p[1]} <key>"
    args = p[1:]
    if not args:
        return None
    text = args[-1]
    subject = " ".join(args[:-1])
    return f"* {text}: {subject}" if subject else f"* {text}"


def _stamp(now: float, when: float) -> str:
    """``14:02`` for a time today (UTC), ``2026-11-20 14:02`` for an earlier one."""
    day = time.strftime("%Y-%m-%d", time.gmtime(when))
    clock = time.strftime("%H:%M", time.gmtime(when))
    return clock if day == time.strftime("%Y-%m-%d", time.gmtime(now)) else f"{day} {clock}"


def replay(server: Server, client: Client, chan: Channel, events: list[HistoryEvent]) -> None:
    """The last lines of a room on joining it, as IRC clients without chathistory get
    them (history.replay_on_join, ``[history] replay_lines``), each with its time."""
    lines = []
    for event in events:
        text = _render_text(client, event_message(event, None))
        if text is not None:
            lines.append(_line(f"[{_stamp(server.now, event.time)}] {text}"))
    if lines:
        server.write(client, _line(f"* Recent messages in {chan.name} (times in UTC):"))
        server.write(client, b"".join(lines))


TEXTPORT = Textport()
