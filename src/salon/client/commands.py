"""The slash commands of ``salon chat``: their names, usage, help text and handlers
(:mod:`salon.client.slash`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from salon.client import slash

if TYPE_CHECKING:
    from salon.client.session import Session

# A line of just one of these leaves, as on the server's plain-text port ("over" ends a
# conversation in the classic line chats salon grew from).
QUIT_WORDS = frozenset({"bye", "quit", "exit", "over"})


class Command(NamedTuple):
    usage: str
    help: str  # what it does, for /help
    run: Callable[[Session, slash.Call], None]
    # Sent to the server, so refused (and kept in the input line) while not registered.
    link: bool = True


# name -> what /name does. Order is the order /help lists them.
COMMANDS: dict[str, Command] = {
    "join": Command(
        "/join #channel [key]",
        "join a channel (several: #a,#b)",
        slash.join,
    ),
    "part": Command(
        "/part [#channel] [reason]",
        "leave a channel (the current one by default)",
        slash.part,
    ),
    "msg": Command(
        "/msg nick|#channel text",
        "send a message without switching to it",
        slash.msg,
    ),
    "query": Command(
        "/query nick [text]",
        "open a private chat with someone",
        slash.query,
        link=False,
    ),
    "me": Command(
        "/me text",
        "an action: * you text",
        slash.me,
    ),
    "notice": Command(
        "/notice target text",
        "send a notice",
        slash.msg,
    ),
    "nick": Command(
        "/nick newnick",
        "change your nick",
        slash.nick,
    ),
    "topic": Command(
        "/topic [text]",
        "show or set the channel topic",
        slash.topic,
    ),
    "names": Command(
        "/names [#channel]",
        "list who is in a channel",
        slash.names,
    ),
    "whois": Command(
        "/whois nick",
        "who is that?",
        slash.whois,
    ),
    "away": Command(
        "/away [message]",
        "mark yourself away; /away alone comes back",
        slash.away,
    ),
    "invite": Command(
        "/invite nick [#channel]",
        "invite someone to a channel",
        slash.invite,
    ),
    "kick": Command(
        "/kick nick [reason]",
        "remove someone from the current channel",
        slash.kick,
    ),
    "mode": Command(
        "/mode [target] modes [args]",
        "show or change channel or user modes",
        slash.mode,
    ),
    "displayname": Command(
        "/displayname [name]",
        "the name shown next to your nick (where the server offers it); alone: none",
        slash.displayname,
    ),
    "register": Command(
        "/register [email] password",
        "create an account (where the server offers it)",
        slash.register,
    ),
    "upload": Command(
        "/upload PATH [text] | cancel",
        "share a file: upload it to the server and post its link (and the text);"
        ' quote a path with spaces: /upload "my file.png"; /upload cancel stops the uploads'
        " under way",
        slash.upload,
    ),
    "close": Command(
        "/close",
        "close the current private chat, or leave the channel",
        slash.close,
        link=False,
    ),
    "joins": Command(
        "/joins [show|hide]",
        "show or hide join, part and quit lines",
        slash.joins,
        link=False,
    ),
    "quote": Command(
        "/quote RAW LINE",
        "send a raw IRC line (unknown /commands are sent raw too)",
        slash.quote,
    ),
    "say": Command(
        "/say text",
        "send text as it is, even if it starts with / or is 'bye'",
        slash.say,
        link=False,
    ),
    "quit": Command(
        "/quit [message]",
        "leave (so do the words bye, quit, exit and over)",
        slash.quit_,
        link=False,
    ),
    "help": Command(
        "/help [command]",
        "this list",
        slash.help_,
        link=False,
    ),
}

ALIASES: dict[str, str] = {
    "j": "join",
    "leave": "part",
    "m": "msg",
    "q": "query",
    "raw": "quote",
    "exit": "quit",
    "bye": "quit",
    "over": "quit",
    "wc": "close",
    "h": "help",
}


def split_command(text: str) -> tuple[str, str] | None:
    """``/join #a`` -> ("join", "#a"); None for text that is not a command.

    ``//text`` is not a command: it sends ``/text``.
    """
    if not text.startswith("/") or text.startswith("//") or len(text) < 2:
        return None
    name, _, rest = text[1:].partition(" ")
    name = name.lower()
    return ALIASES.get(name, name), rest.strip()


TUI_KEYS = "Keys: Alt+1..9 or Ctrl+N/Ctrl+P switch windows, Tab completes, Up/Down history."
PLAIN_KEYS = (
    "What you type goes to the channel or person of the last /join or /query (said as "
    "'Now talking in ...'); bye (or quit, exit, over), or the end of input (Ctrl-D), leaves."
)


def help_lines(name: str = "", *, keys: str = TUI_KEYS) -> list[str]:
    if name:
        key = ALIASES.get(name.lstrip("/").lower(), name.lstrip("/").lower())
        if key in COMMANDS:
            command = COMMANDS[key]
            return [f"{command.usage}: {command.help}"]
        return [f"There is no command /{name.lstrip('/')}; /help lists them"]
    width = max(len(c.usage) for c in COMMANDS.values())
    lines = ["Commands:"]
    lines += [f"  {c.usage:<{width}}  {c.help}" for c in COMMANDS.values()]
    if keys:
        lines.append(keys)
    return lines


def completions(word: str, candidates: list[str]) -> list[str]:
    """The candidates that start with ``word`` (case-insensitively), in the given order."""
    low = word.lower()
    return [c for c in candidates if c.lower().startswith(low)]


def command_names() -> list[str]:
    return ["/" + name for name in COMMANDS]
