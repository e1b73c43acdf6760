"""Questions asked at the terminal by the ``salon`` commands (``hash-password``, ``account
create``, ``chat --sasl``)."""

from __future__ import annotations

import getpass
import sys

from salon.errors import UsageError


def read_password(prompt: str = "Password: ", *, confirm: bool = False) -> str:
    """A password typed at the terminal (not echoed; typed twice with ``confirm``), or the
    first line of stdin when stdin is not a terminal. End of input (Ctrl-D) at the prompt
    and two different passwords are a :class:`UsageError`."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    again = ""
    try:
        password = getpass.getpass(prompt)
        if confirm and password:
            again = getpass.getpass("Again, to confirm: ")
    except EOFError:
        print(file=sys.stderr)  # end the prompt's line
        raise UsageError("no password given (end of input)") from None
    if confirm and password and again != password:
        raise UsageError("the two passwords differ")
    return password
