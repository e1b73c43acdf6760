"""Account commands: REGISTER and VERIFY (IRCv3 draft/account-registration), ACCEPT (who
may message a +R user), and the NickServ and ChanServ aliases (NS, CS, NICKSERV,
CHANSERV). AUTHENTICATE (SASL) is in :mod:`salon.server.handlers.sasl`.

draft/account-registration: "REGISTER <account> {<email> | "*"} <password>"; "If
<account> is *, then this value is the user's current nickname"; the reply is
``REGISTER SUCCESS <account> <message>`` or ``REGISTER VERIFICATION_REQUIRED <account>
<message>``, refusals are ``FAIL REGISTER <code> <account> <message>``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from salon.errors import CommandError, FailError
from salon.proto import numerics as n
from salon.proto.casemap import casefold
from salon.proto.message import Message
from salon.server.accounts import Pending, auth_state
from salon.server.client import Client
from salon.server.responsebuffer import ResponseBuffer, safe_middle
from salon.server.services import MAX_ACCEPTED
from salon.store.base import AccountRecord

if TYPE_CHECKING:
    from salon.server.core import Server


def cmd_register(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    account, email, password = msg.params[0], msg.params[1], msg.params[2]
    cfg = server.config.accounts
    state = auth_state(client)
    shown = safe_middle(account)
    if not cfg.enabled or not cfg.registration:
        raise FailError("REGISTER", "DISALLOWED", shown, "Account registration is disabled")
    if client.registered:
        nick = client.nick
    else:
        if not cfg.registration_before_connect:
            raise FailError(
                "REGISTER",
                "COMPLETE_CONNECTION_REQUIRED",
                shown,
                "You must complete the connection before registering an account",
            )
        nick = state.wanted_nick or (client.nick if client.nick_cf else "")
        if not nick:
            raise FailError("REGISTER", "NEED_NICK", shown, "Send NICK before REGISTER")
    if account == "*":
        account = nick
    elif casefold(account) != casefold(nick):
        raise FailError(
            "REGISTER",
            "ACCOUNT_NAME_MUST_BE_NICK",
            shown,
            "Your account name must be your current nickname",
        )
    shown = safe_middle(account)
    if state.register_sent:
        raise FailError(
            "REGISTER", "ALREADY_AUTHENTICATED", shown, "You have already registered an account"
        )
    refusal = server.accounts.registration_refusal(client, account, email, password)
    if refusal is not None:
        raise FailError("REGISTER", refusal[0], shown, refusal[1])
    state.register_sent = True

    def done(record: AccountRecord | None, pending: Pending | None, out: ResponseBuffer) -> None:
        if record is not None:
            out.add(
                Message(
                    "REGISTER",
                    ("SUCCESS", record.name, "Account successfully registered"),
                    server.name,
                )
            )
            server.accounts.login(client, record, out)
        elif pending is not None:
            out.add(
                Message(
                    "REGISTER",
                    (
                        "VERIFICATION_REQUIRED",
                        pending.record.name,
                        "Account created, pending verification: ask the network's "
                        "administrators for your code, then send VERIFY <account> <code>",
                    ),
                    server.name,
                )
            )
        else:
            state.register_sent = False
            out.fail(
                "REGISTER", "TEMPORARILY_UNAVAILABLE", shown, "Could not register; try again later"
            )

    server.accounts.register(client, account, email, password, rb, done)  # done() answers


def cmd_verify(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    account, code = msg.params[0], msg.params[1]
    cfg = server.config.accounts
    shown = safe_middle(account)
    if not cfg.enabled or not cfg.registration:
        raise FailError("VERIFY", "DISALLOWED", shown, "Account registration is disabled")
    if not client.registered and not cfg.registration_before_connect:
        raise FailError(
            "VERIFY",
            "COMPLETE_CONNECTION_REQUIRED",
            shown,
            "You must complete the connection before verifying an account",
        )
    if client.account is not None:
        raise FailError("VERIFY", "ALREADY_AUTHENTICATED", shown, "You are already logged in")

    def done(record: AccountRecord | None, out: ResponseBuffer) -> None:
        if record is None:
            out.fail("VERIFY", "TEMPORARILY_UNAVAILABLE", shown, "Could not verify; try again")
            return
        out.add(
            Message(
                "VERIFY", ("SUCCESS", record.name, "Account successfully verified"), server.name
            )
        )
        server.accounts.login(client, record, out)

    if not server.accounts.verify(client, account, code, rb, done):
        raise FailError("VERIFY", "INVALID_CODE", shown, "Invalid verification code")


def cmd_accept(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    """``ACCEPT nick[,nick...]``, ``ACCEPT -nick`` and ``ACCEPT *`` (list): who may send
    private messages despite user mode +R (ergo's, after ratbox's CALLERID ACCEPT)."""
    state = auth_state(client)
    if not msg.params:
        raise CommandError(n.ERR_NEEDMOREPARAMS, "ACCEPT", "Not enough parameters")
    for item in msg.params[0].split(","):
        if not item:
            continue
        if item == "*":
            for nick in sorted(state.accepted):
                rb.numeric(n.RPL_ACCEPTLIST, nick)
            rb.numeric(n.RPL_ENDOFACCEPT, "End of /ACCEPT list")
            continue
        remove = item.startswith("-")
        nick = item[1:] if remove else item
        cf = casefold(nick)
        if remove:
            if cf not in state.accepted:
                rb.numeric(n.ERR_ACCEPTNOT, nick, "is not on your accept list")
                continue
            state.accepted.discard(cf)
            rb.notice(f"{nick} was removed from your accept list")
            continue
        target = server.nicks.get(cf)
        if target is None or not target.registered:
            rb.numeric(n.ERR_NOSUCHNICK, nick, "No such nick/channel")
            continue
        if cf in state.accepted:
            rb.numeric(n.ERR_ACCEPTEXIST, target.nick, "is already on your accept list")
            continue
        if len(state.accepted) >= MAX_ACCEPTED:
            rb.numeric(n.ERR_ACCEPTFULL, "Accept list is full")
            continue
        state.accepted.add(cf)
        rb.notice(f"{target.nick} was added to your accept list")


def cmd_nickserv(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    """``NS <command> ...`` and ``NICKSERV <command> ...``: the same as a PRIVMSG to
    NickServ."""
    server.services.nickserv.handle(client, " ".join(msg.params), rb)


def cmd_chanserv(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    server.services.chanserv.handle(client, " ".join(msg.params), rb)
