"""The slash commands of ``salon chat``: their names, usage and help text."""

from __future__ import annotations

# A line of just one of these leaves, as on the server's plain-text port ("over" ends a
# conversation in the classic line chats salon grew from).
QUIT_WORDS = frozenset({"bye", "quit", "exit", "over"})

# name -> (usage, what it does). Order is the order /help lists them.
COMMANDS: dict[str, tuple[str, str]] = {
    "join": ("/join #channel [key]", "join a channel (several: #a,#b)"),
    "part": ("/part [#channel] [reason]", "leave a channel (the current one by default)"),
    "msg": ("/msg nick|#channel text", "send a message without switching to it"),
    "query": ("/query nick [text]", "open a private chat with someone"),
    "me": ("/me text", "an action: * you text"),
    "notice": ("/notice target text", "send a notice"),
    "nick": ("/nick newnick", "change your nick"),
    "topic": ("/topic [text]", "show or set the channel topic"),
    "names": ("/names [#channel]", "list who is in a channel"),
    "whois": ("/whois nick", "who is that?"),
    "away": ("/away [message]", "mark yourself away; /away alone comes back"),
    "invite": ("/invite nick [#channel]", "invite someone to a channel"),
    "kick": ("/kick nick [reason]", "remove someone from the current channel"),
    "mode": ("/mode [target] modes [args]", "show or change channel or user modes"),
    "register": ("/register [email] password", "create an account (where the server offers it)"),
    "close": ("/close", "close the current private chat, or leave the channel"),
    "joins": ("/joins [show|hide]", "show or hide join, part and quit lines"),
    "quote": ("/quote RAW LINE", "send a raw IRC line (unknown /commands are sent raw too)"),
    "say": ("/say text", "send text as it is, even if it starts with / or is 'bye'"),
    "quit": ("/quit [message]", "leave (so do the words bye, quit, exit and over)"),
    "help": ("/help [command]", "this list"),
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
            usage, what = COMMANDS[key]
            return [f"{usage}: {what}"]
        return [f"There is no command /{name.lstrip('/')}; /help lists them"]
    width = max(len(usage) for usage, _ in COMMANDS.values())
    lines = ["Commands:"]
    lines += [f"  {usage:<{width}}  {what}" for usage, what in COMMANDS.values()]
    if keys:
        lines.append(keys)
    return lines


def completions(word: str, candidates: list[str]) -> list[str]:
    """The candidates that start with ``word`` (case-insensitively), in the given order."""
    low = word.lower()
    return [c for c in candidates if c.lower().startswith(low)]


def command_names() -> list[str]:
    return ["/" + name for name in COMMANDS]
