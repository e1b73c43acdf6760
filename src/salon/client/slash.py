"""What each slash command of ``salon chat`` does.

:data:`salon.client.commands.COMMANDS` names one of these functions for every command; the
session looks the command up there and calls it with a :class:`Call`. A handler reaches the
session's model and link through the session itself, as ergo's handlers reach the server.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from salon.client.model import (
    Buffer,
    Focus,
    LocalCommand,
    UploadCancelRequested,
    UploadRequested,
)
from salon.proto import Message

if TYPE_CHECKING:
    from salon.client.session import Session

# /upload cancel stops the uploads under way (a file of that name: /upload ./cancel).
UPLOAD_CANCEL = "cancel"


@dataclass(frozen=True, slots=True)
class Call:
    """One slash command as typed: ``/name args`` in ``buf`` at ``now``."""

    name: str
    args: str
    buf: Buffer
    now: float
    usage: str = ""  # the command's usage line, for "Usage: ..." errors

    @property
    def words(self) -> list[str]:
        return self.args.split()

    @property
    def channel(self) -> str:
        """The channel the command was typed in, or ""."""
        return self.buf.name if self.buf.kind == "channel" else ""


def _usage(s: Session, c: Call) -> None:
    s._error("Usage: " + c.usage, c.now)


def help_(s: Session, c: Call) -> None:
    s._help(c.words[0] if c.words else "", c.now)


def quit_(s: Session, c: Call) -> None:
    s._quit(c.args, c.now)


def joins(s: Session, c: Call) -> None:
    # Handled by the front end (it owns what is shown); the session only says so.
    s._emit(LocalCommand(c.name, c.args))


def close(s: Session, c: Call) -> None:
    buf = c.buf
    if buf.kind == "query":
        s._remove_buffer(buf)
    elif buf.kind == "channel":
        if buf.joined and s.registered:
            s._send("PART", buf.name)
        else:
            s._remove_buffer(buf)


def query(s: Session, c: Call) -> None:
    if not c.words:
        _usage(s, c)
        return
    target = c.words[0]
    qbuf = s._add_buffer(target, "channel" if s.is_channel(target) else "query")
    s._emit(Focus(qbuf))
    text = c.args[len(target) :].strip()
    if text:
        s._say(qbuf, text, c.now)


def say(s: Session, c: Call) -> None:
    s._say(c.buf, c.args, c.now)


def join(s: Session, c: Call) -> None:
    words = c.words
    if not words:
        _usage(s, c)
        return
    s._join(words[0].split(","), c.now, key=words[1] if len(words) > 1 else "")


def part(s: Session, c: Call) -> None:
    words = c.words
    target, reason = c.channel, c.args
    if words and s.is_channel(words[0]):
        target, reason = words[0], c.args[len(words[0]) :].strip()
    if not target:
        if c.buf.kind == "query":
            s._remove_buffer(c.buf)
        else:
            s._error("Which channel? /part #channel", c.now)
        return
    s._send("PART", target, *([reason] if reason else []))


def msg(s: Session, c: Call) -> None:
    words = c.words
    if len(words) < 2:
        _usage(s, c)
        return
    target = words[0]
    text = c.args[len(target) :].strip()
    s._send_text(target, text, c.now, kind="notice" if c.name == "notice" else "message")


def me(s: Session, c: Call) -> None:
    if c.buf.kind == "server":
        s._error("/me works in a channel or a private chat", c.now)
    elif c.args:
        s._say(c.buf, c.args, c.now, kind="action")


def nick(s: Session, c: Call) -> None:
    if not c.words:
        s._info(f"You are {s.nick}", c.now)
    else:
        s._send("NICK", c.words[0])


def topic(s: Session, c: Call) -> None:
    words, channel, args = c.words, c.channel, c.args
    if words and s.is_channel(words[0]):
        channel, args = words[0], args[len(words[0]) :].strip()
    if not channel:
        s._error("Which channel? /topic #channel [text]", c.now)
    elif args:
        s._send("TOPIC", channel, args)
    else:
        s._send("TOPIC", channel)


def names(s: Session, c: Call) -> None:
    target = c.words[0] if c.words else c.channel
    if not target:
        s._error("Which channel? /names #channel", c.now)
        return
    s._names_show.add(s._key(target))
    s._send("NAMES", target)


def whois(s: Session, c: Call) -> None:
    if not c.words:
        _usage(s, c)
        return
    s._send("WHOIS", c.words[0])


def away(s: Session, c: Call) -> None:
    s._send("AWAY", *([c.args] if c.args else []))


def invite(s: Session, c: Call) -> None:
    words = c.words
    target = words[1] if len(words) > 1 else c.channel
    if not words or not target:
        _usage(s, c)
        return
    s._send("INVITE", words[0], target)


def kick(s: Session, c: Call) -> None:
    words, channel, args = c.words, c.channel, c.args
    if words and s.is_channel(words[0]):
        channel, words = words[0], words[1:]
        args = args.split(None, 1)[1] if len(args.split(None, 1)) > 1 else ""
    if not words or not channel:
        _usage(s, c)
        return
    reason = args[len(words[0]) :].strip()
    s._send("KICK", channel, words[0], *([reason] if reason else []))


def mode(s: Session, c: Call) -> None:
    words, channel = c.words, c.channel
    if not words or (words[0][:1] in "+-" and channel):
        target = channel or s.nick
    else:
        target, words = words[0], words[1:]
    s._send("MODE", target, *words)


def register(s: Session, c: Call) -> None:
    if "draft/account-registration" not in s.offered:
        s._error("This server does not offer account registration", c.now)
        return
    words = c.words
    if not words or len(words) > 2:
        _usage(s, c)
        return
    email = words[0] if len(words) == 2 else "*"
    s._send("REGISTER", "*", email, words[-1])


def displayname(s: Session, c: Call) -> None:
    if "draft/metadata-3" not in s.caps:
        s._error("This server does not offer display names (draft/metadata-3)", c.now)
        return
    s._display_pending = True
    s._send("METADATA", "*", "SET", "display-name", *([c.args] if c.args else []))


def upload(s: Session, c: Call) -> None:
    """soju.im/FILEHOST: the front end uploads (salon.tui.upload), with a token from
    ``TOKEN GENERATE FILEHOST`` (draft/authtoken), or Basic with the SASL password when the
    session logged in with one (servers without tokens, like soju)."""
    args = c.args.strip()
    if args == UPLOAD_CANCEL:
        waiting = len(s.uploads_waiting)
        s.uploads_waiting.clear()  # their token, when it comes, goes unused
        s._emit(UploadCancelRequested(waiting))
        return
    quote = args[:1]
    if quote in ("'", '"') and args.find(quote, 1) > 0:  # a path with spaces, quoted
        end = args.find(quote, 1)
        path, text = args[1:end], args[end + 1 :]
    else:
        path, _, text = args.partition(" ")
    if not path:
        _usage(s, c)
        return
    url = s.isupport.get("soju.im/FILEHOST") or s.isupport.get("draft/FILEHOST") or ""
    if not url:
        s._error("This server does not host files (it advertises no FILEHOST)", c.now)
        return
    if s.tls and not url.startswith("https://"):
        s._error(f"Not uploading over TLS-less {url}: this connection is TLS", c.now)
        return
    if c.buf.kind == "server":
        s._error("Upload from a channel or a private chat: the link is posted there", c.now)
        return
    request = UploadRequested(path, text.strip(), url, c.buf.name, "")
    settings = s.settings
    if settings.sasl_account and settings.sasl_password:
        creds = f"{settings.sasl_account}:{settings.sasl_password}".encode()
        s._emit(replace(request, authorization="Basic " + base64.b64encode(creds).decode()))
        return
    s.uploads_waiting.append(request)
    s._send("TOKEN", "GENERATE", "FILEHOST")


def on_token(s: Session, msg: Message, now: float) -> None:
    """``TOKEN GENERATE FILEHOST <token>``: the upload waiting for it can go."""
    params = msg.params
    if len(params) >= 3 and params[0] == "GENERATE" and s.uploads_waiting:
        request = s.uploads_waiting.pop(0)
        s._emit(replace(request, authorization="Bearer " + params[-1]))


def quote(s: Session, c: Call) -> None:
    if c.args:
        s._send_raw(c.args)


def unknown(s: Session, c: Call) -> None:
    """Unknown commands go to the server as they are, like /quote."""
    s._send_raw(c.name.upper() + (" " + c.args if c.args else ""))
