"""The classic line chat, for ``nc`` and telnet on the plain-text port.

It asks for a name, refuses names that are taken (nicks are shared with IRC), puts the
person in the default channel, and turns what they type into IRC commands. What IRC
produces for them is rendered as short text lines: ``name: text``, ``* bob joined #lobby``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from salon.errors import CommandError
from salon.proto import numerics as n
from salon.proto.casemap import casefold
from salon.proto.message import Message
from salon.server.client import Client
from salon.server.core import Server
from salon.server.responsebuffer import ResponseBuffer

log = logging.getLogger("salon.server")

HELP = [
    "Type a line and press Enter to talk to the room.",
    "/msg <name> <text>   a private message",
    "/join #room          go to another room (it is created if needed)",
    "/who                 who is in the room",
    "/me <action>         an action, like: * you wave",
    "/nick <name>         change your name",
    "/help                this text",
    "bye, quit or exit    leave",
]
_LEAVE_WORDS = {"bye", "quit", "exit", "/quit", "/bye", "/exit"}
# Numerics that carry nothing a plain-text user needs.
_SILENT = {
    n.RPL_TOPICWHOTIME,
    n.RPL_ENDOFNAMES,
    n.RPL_ENDOFWHO,
    n.RPL_ENDOFWHOIS,
    n.RPL_CREATIONTIME,
}


@dataclass(slots=True)
class PlainState:
    room: str = ""


def _line(text: str) -> bytes:
    return (text.replace("\r", " ").replace("\n", " ") + "\r\n").encode("utf-8", "replace")


def start(server: Server, client: Client) -> None:
    client.plain = PlainState()
    server.write(client, _line(f"Welcome to {server.config.server.network} on {server.name}."))
    server.write(client, _line("Your name:"))


def handle_line(server: Server, client: Client, raw: bytes) -> None:
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        server.write(client, _line("* That line was not valid UTF-8; it was not sent."))
        return
    if "\0" in text:
        server.write(client, _line("* That line had a NUL byte; it was not sent."))
        return
    client.last_active = server.now
    state: PlainState = client.plain
    if not client.registered:
        _choose_name(server, client, state, text)
        return
    if not text:
        return
    word = text.lower()
    if word in _LEAVE_WORDS:
        server.write(client, _line("Bye!"))
        server.drop(client, "Quit: bye", error="")
        return
    if text.startswith("/") and not text.startswith("//"):
        _command(server, client, state, text)
        return
    if text.startswith("//"):
        text = text[1:]
    if not state.room:
        server.write(client, _line("* You are in no room. /join #room first."))
        return
    _irc(server, client, "PRIVMSG", state.room, text)


def _irc(server: Server, client: Client, command: str, *params: str) -> None:
    server.dispatch(client, Message(command, params))


def _choose_name(server: Server, client: Client, state: PlainState, name: str) -> None:
    from salon.server.handlers.channels import join
    from salon.server.handlers.registration import valid_nick

    maxlen = server.config.limits.nicklen
    if not name:
        server.write(client, _line("Your name:"))
        return
    if not valid_nick(name, maxlen):
        server.write(
            client,
            _line(
                f"* {name!r} can't be used: up to {maxlen} letters, digits or -_[]{{}}|^`, "
                "not starting with a digit or -. Your name:"
            ),
        )
        return
    cf = casefold(name)
    if cf in server.nicks:
        server.write(client, _line(f"* The name {name} is taken. Try another. Your name:"))
        return
    server.nicks[cf] = client
    client.set_nick(name, cf, server.now)
    client.user = "plain"
    client.realname = f"{name} (plain-text port)"
    client.registered = True
    server.unregistered -= 1
    client.update_prefix()
    if server.noting:
        server.note(f"register id={client.id} nick={name} ip={client.ip} kind=plain")
    server.notify_monitors(client, online=True)
    server.write(client, _line(f"Hello {name}! Type /help for help, bye to leave."))
    room = server.config.server.default_channel
    rb = ResponseBuffer(server, client, None)
    try:
        if join(server, client, room, None, rb) is not None:
            state.room = casefold(room)
    except CommandError as exc:
        server.write(client, _line(f"* You could not join {room}: {exc.params[-1]}"))
    finally:
        rb.flush()


def _command(server: Server, client: Client, state: PlainState, text: str) -> None:
    from salon.server.handlers.channels import send_names

    verb, _, rest = text[1:].partition(" ")
    verb = verb.lower()
    rest = rest.strip()
    if verb == "help":
        for line in HELP:
            server.write(client, _line(line))
    elif verb in ("msg", "query", "tell"):
        target, _, body = rest.partition(" ")
        if not target or not body:
            server.write(client, _line("* Usage: /msg <name> <text>"))
            return
        _irc(server, client, "PRIVMSG", target, body)
    elif verb == "join":
        if not rest:
            server.write(client, _line("* Usage: /join #room"))
            return
        room = rest.split()[0]
        if not room.startswith("#"):
            room = "#" + room
        _irc(server, client, "JOIN", room)
        if casefold(room) in client.channels:
            state.room = casefold(room)
    elif verb == "part":
        room = rest.split()[0] if rest else state.room
        if room:
            _irc(server, client, "PART", room)
        if state.room not in client.channels:
            state.room = next(iter(client.channels), "")
    elif verb == "who":
        chan = client.channels.get(state.room)
        if chan is None:
            server.write(client, _line("* You are in no room."))
            return
        rb = ResponseBuffer(server, client, None)
        send_names(server, client, chan, rb)
        rb.flush()
    elif verb == "me":
        if state.room and rest:
            _irc(server, client, "PRIVMSG", state.room, f"\x01ACTION {rest}\x01")
    elif verb == "nick":
        if rest:
            _irc(server, client, "NICK", rest.split()[0])
    else:
        server.write(client, _line(f"* Unknown command /{verb}. Type /help."))


def _room_label(client: Client, channel: str) -> str:
    state: PlainState = client.plain
    return "" if casefold(channel) == state.room else f"[{channel}] "


def render(server: Server, client: Client, msg: Message) -> bytes | None:
    """How an IRC message reads on the plain-text port; None when it is not shown."""
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
                return _line(f"{where}* {nick} {text[8:-1]}")
            return _line(f"{where}{nick}: {text}")
        if "!" not in (msg.source or "!"):
            return _line(f"* {text}")
        if action:
            return _line(f"(private) * {nick} {text[8:-1]}")
        return _line(f"(private) {nick}: {text}")
    if cmd == "JOIN" and p:
        if me:
            return _line(f"* You are now in {p[0]}")
        return _line(f"* {nick} joined {_room_label(client, p[0]) or p[0]}".rstrip())
    if cmd == "PART" and p:
        reason = f" ({p[1]})" if len(p) > 1 and p[1] else ""
        who = "You" if me else nick
        return _line(f"* {who} left {p[0]}{reason}")
    if cmd == "QUIT":
        reason = f" ({p[0]})" if p and p[0] else ""
        return _line(f"* {nick} left{reason}")
    if cmd == "NICK" and p:
        who = "You are" if p[0] == client.nick else f"{nick} is"
        return _line(f"* {who} now known as {p[0]}")
    if cmd == "KICK" and len(p) >= 2:
        reason = f" ({p[2]})" if len(p) > 2 else ""
        return _line(f"* {p[1]} was kicked from {p[0]} by {nick}{reason}")
    if cmd == "TOPIC" and len(p) >= 2:
        return _line(f"* {nick} set the topic of {p[0]}: {p[1]}")
    if cmd == "MODE" and len(p) >= 2:
        return _line(f"* {nick} sets mode {' '.join(p[1:])} on {p[0]}")
    if cmd == "INVITE" and len(p) >= 2:
        return _line(f"* {nick} invites you to {p[1]} (type /join {p[1]})")
    if cmd == "FAIL" and p:
        return _line(f"* {p[-1]}")
    if cmd.isdigit():
        if cmd in _SILENT:
            return None
        if cmd == n.RPL_TOPIC and len(p) >= 3:
            return _line(f"* Topic of {p[1]}: {p[2]}")
        if cmd == n.RPL_NAMREPLY and len(p) >= 4:
            return _line(f"* In {p[2]}: {', '.join(p[3].split())}")
        args = p[1:]
        if not args:
            return None
        text = args[-1]
        subject = " ".join(args[:-1])
        return _line(f"* {text}: {subject}" if subject else f"* {text}")
    return None
