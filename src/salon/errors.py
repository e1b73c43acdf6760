"""The one exception tree of salon.

Domain errors raised by command handlers (:class:`CommandError` and :class:`FailError`)
become IRC replies in exactly one place, :func:`salon.server.responsebuffer.answer`.
Any other exception escaping a handler is a bug: it is logged and never shown to clients.
"""

from __future__ import annotations


class SalonError(Exception):
    """Base class of every error salon raises on purpose."""


class ProtocolError(SalonError):
    """A line that is not a valid IRC message."""


class LineTooLong(ProtocolError):
    """A line over the 512-byte limit (or the tag limits of IRCv3 message-tags)."""


class ForbiddenCharacter(ProtocolError):
    """A NUL or CR inside a line (``args[0]``: the command, when it could be read)."""


class InvalidUTF8(ProtocolError):
    """A line that is not valid UTF-8 on a UTF8ONLY server."""


class SerializationError(SalonError):
    """A message that cannot be put on the wire (CR, LF or NUL in it, bad parameters)."""


class UsageError(SalonError):
    """A mistake of the user of the ``salon`` command: one line on stderr, exit code 2."""


class ConfigError(SalonError):
    """An invalid configuration: the message says which key and why."""


class QueryTooBroad(SalonError):
    """A history query that ran out of its budget before it found anything (``args[0]``:
    the command)."""


class CommandError(SalonError):
    """A handler's refusal, sent to the client as a numeric reply.

    ``params`` are the numeric's parameters after the client's nick; the last one is the
    human-readable text.
    """

    def __init__(self, numeric: str, *params: str) -> None:
        super().__init__(numeric, *params)
        self.numeric = numeric
        self.params = params


class FailError(SalonError):
    """A handler's refusal as an IRCv3 standard reply: ``FAIL <command> <code> [context] :text``."""

    def __init__(self, command: str, code: str, *context: str) -> None:
        super().__init__(command, code, *context)
        self.command = command
        self.code = code
        self.context = context
