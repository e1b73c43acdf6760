"""The cross-node behaviours of issue 19 (points 3 to 5) on real processes, written once
for every way of running two sides of one network: two ``salon serve`` nodes
(tests/cluster/test_loopback.py) and two workers of ``salon serve --workers``
(tests/cluster/test_workers.py). Each check gets ``connect(side, nick, caps)``, which
returns a client registered as ``nick`` on side 0 or 1 (not registered when ``nick`` is
None); the in-process versions with a memory bus are tests/clusterhelpers.py's."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from conftest import LineClient, SalonProcess

from salon.proto.message import parse

Connect = Callable[..., LineClient]


def on_nodes(*nodes: SalonProcess) -> Connect:
    """``connect`` for separate nodes: side i is ``nodes[i]``'s IRC port."""

    def connect(side: int, nick: str | None, caps: str = "") -> LineClient:
        c = LineClient(nodes[side].irc_port)
        if nick is not None:
            c.register(nick, caps)
        return c

    return connect


def quits_after(kill: Callable[[], None], watcher: LineClient, nicks: list[str]) -> float:
    """Call ``kill()`` (a node or a worker dies), then read ``watcher``'s lines until each
    of ``nicks`` has quit; how long the latest QUIT took."""
    watcher.read_all(0.2)
    kill()
    killed = time.monotonic()
    quits: dict[str, float] = {}
    # node_ttl (3 s) and the 0.5 s look for dead nodes make it about 3.5 s; how long it
    # takes is a figure for docs/BENCHMARKS.md (test_kill_9_under_traffic prints it), and
    # the deadline here only ends a test that would otherwise hang.
    while len(quits) < len(nicks) and time.monotonic() - killed < 30:
        try:
            line = watcher.readline(0.5)
        except TimeoutError:
            continue
        if " QUIT " in line:
            quits[line[1:].split("!")[0]] = time.monotonic() - killed
    assert sorted(quits) == sorted(nicks)
    return max(quits.values())


def opers() -> list[dict[str, Any]]:
    """The [[oper]] block :func:`modes_and_operators_across` logs in with."""
    from salon.passwords import hash_password

    return [{"name": "root", "password": hash_password("pw")}]


def nick_held_on_the_other_side_is_433(connect: Connect) -> None:
    alice = connect(0, "alice")
    c = connect(1, None)
    # Refused at once when b has read alice's Intro, else when c's own Intro has its turn.
    c.send("NICK alice")
    c.send("USER bob 0 * :Bob")
    c.expect(r" 433 \* alice ")
    c.send("NICK bob")
    c.expect(r" 001 bob ")
    c.send("NICK ALICE")
    c.expect(r" 433 bob ALICE ")
    alice.send("QUIT")
    # Once alice's QUIT had its turn, her nick is free on the other node too.
    deadline = time.monotonic() + 5
    while True:
        c.send("NICK alice")
        line = c.expect(r" 433 bob alice | NICK alice$").string
        if line.endswith("NICK alice") or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert line == ":bob!bob@127.0.0.1 NICK alice"


def join_and_messages_across(connect: Connect) -> None:
    caps = "message-tags server-time echo-message draft/chathistory batch labeled-response"
    alice = connect(0, "alice", caps)
    bob = connect(1, "bob", caps)
    alice.send("JOIN #c")
    alice.expect(r" 366 ")
    bob.send("JOIN #c")
    bob.expect(r" 353 bob = #c :@alice bob")
    alice.expect(r":bob!bob@127\.0\.0\.1 JOIN #c")
    alice.send("PRIVMSG #c :hello from a")
    got = bob.expect(r"^@(\S+) :alice!alice@127\.0\.0\.1 PRIVMSG #c :hello from a$")
    echo = alice.expect(r"^@(\S+) :alice!alice@127\.0\.0\.1 PRIVMSG #c :hello from a$")
    assert sorted(got.group(1).split(";")) == sorted(echo.group(1).split(";"))
    # In bob's node's history right after its delivery (each node has its own store).
    msgid = next(t for t in got.group(1).split(";") if t.startswith("msgid="))
    bob.send("CHATHISTORY LATEST #c * 10")
    replayed = [m for m in bob.read_batch("chathistory") if m.command == "PRIVMSG"]
    assert [("msgid=" + m.tags["msgid"], m.params) for m in replayed] == [
        (msgid, ("#c", "hello from a"))
    ]
    # labeled-response across nodes: the echo carries the label.
    alice.send("@label=L1 PRIVMSG #c :a labeled line")
    alice.expect(r"^@\S*label=L1\S* :alice!\S+ PRIVMSG #c :a labeled line$")
    bob.expect(r"PRIVMSG #c :a labeled line$")
    bob.send("PRIVMSG alice :psst, alice")
    alice.expect(r":bob!bob@127\.0\.0\.1 PRIVMSG alice :psst, alice$")
    bob.send("NAMES #c")
    names_b = bob.expect(r" 353 ").string.split(" ", 3)[3]
    alice.send("NAMES #c")
    names_a = alice.expect(r" 353 ").string.split(" ", 3)[3]
    assert names_a.replace("alice =", "X =") == names_b.replace("bob =", "X =")


def one_order(connect: Connect, seconds: float = 10.0) -> None:
    """Issue 19 point 4: three senders on each side flood one channel for ``seconds``;
    every recipient on both sides (the senders, by echo-message, and a reader on each
    side) gets the same msgid sequence, each sender's messages in order, none lost and
    none twice, and CHATHISTORY on each side returns that set."""
    import threading

    caps = "message-tags echo-message"
    senders = [connect(1 - i % 2, f"s{i}", caps) for i in range(6)]
    history = caps + " draft/chathistory batch"
    readers = [connect(0, "ra", history), connect(1, "rb", history)]
    everyone = senders + readers
    for c in everyone:
        c.send("JOIN #flood")
        c.expect(r" 366 ")
    time.sleep(0.3)
    for c in everyone:
        c.read_all(0.1)
    got: dict[str, list[tuple[str, str, str]]] = {}

    def read(c: LineClient, key: str) -> None:
        seen: list[tuple[str, str, str]] = []
        ended = 0  # (each sender's last message is "end")
        while ended < len(senders):
            line = c.readline(30)
            if " PRIVMSG #flood " not in line:
                continue
            tags, source, _cmd, _target, text = line.split(" ", 4)
            msgid = next(t for t in tags[1:].split(";") if t.startswith("msgid="))
            seen.append((msgid, source[1:].split("!")[0], text.lstrip(":")))
            ended += text == "end"
        got[key] = seen

    threads = [threading.Thread(target=read, args=(c, str(i))) for i, c in enumerate(everyone)]
    for t in threads:
        t.start()
    started = time.monotonic()
    count = 0
    while time.monotonic() - started < seconds:
        for s in senders:
            s.send(f"PRIVMSG #flood :{count}")
        count += 1
        time.sleep(0.01)
    for s in senders:
        s.send("PRIVMSG #flood end")
    for t in threads:
        t.join(120)
    total = (count + 1) * len(senders)
    took = time.monotonic() - started
    print(f"one order: {total} messages from 6 senders in {seconds:g} s, all read in {took:.1f} s")
    assert len(got) == len(everyone)
    first = [m for m, _s, _t in got["0"]]
    assert len(first) == len(set(first)) == total  # none lost, none twice
    for seen in got.values():
        assert [m for m, _s, _t in seen] == first
        for i in range(len(senders)):
            mine = [t for _m, s, t in seen if s == f"s{i}"]
            assert mine == [*(str(n) for n in range(count)), "end"]
    for reader in readers:
        assert sorted(stored_msgids(reader, "#flood")) == sorted(first)


def stored_msgids(reader: LineClient, target: str, page: int = 1000) -> list[str]:
    """Every message of ``target``'s history as ``msgid=...``, read back page by page
    (CHATHISTORY LATEST, then BEFORE the oldest of each page: a page is at most the
    server's limit)."""
    found: list[str] = []
    asking = f"LATEST {target} *"
    while True:
        reader.send(f"CHATHISTORY {asking} {page}")
        got = [m for m in reader.read_batch("chathistory") if m.command == "PRIVMSG"]
        if not got:
            return found
        found += ["msgid=" + m.tags["msgid"] for m in got]
        asking = f"BEFORE {target} msgid={got[0].tags['msgid']}"


def races(connect: Connect, rounds: int = 200) -> None:
    """Issue 19 point 5 between processes: four clients (two per node) claim one nick at
    once, exactly one wins; two nodes create one channel at once, exactly one founder, and
    NAMES of it is the same on both nodes. Afterwards the nodes' replicas agree: NAMES
    and WHO of a channel of all four, byte for byte but for the asker's nick."""
    clients = [connect(1 - i % 2, f"c{i}") for i in range(4)]
    for r in range(rounds):
        wanted = f"x{r}"
        for c in clients:
            c.send(f"NICK {wanted}")
        outcomes = [
            c.expect(rf" 433 c{i} {wanted} |^:c{i}!\S+ NICK {wanted}$").string
            for i, c in enumerate(clients)
        ]
        winners = [i for i, line in enumerate(outcomes) if " NICK " in line]
        assert len(winners) == 1, outcomes
        clients[winners[0]].send(f"NICK c{winners[0]}")
        clients[winners[0]].expect(rf" NICK c{winners[0]}$")
    first, second = clients[0], clients[1]  # on b and on a
    for r in range(rounds):
        name = f"#new{r}"
        first.send(f"JOIN {name}")
        second.send(f"JOIN {name}")
        names = [c.expect(rf" 353 \S+ = {name} :?(.*)$").group(1) for c in (first, second)]
        ops = {n for listed in names for n in listed.split() if n.startswith("@")}
        assert len(ops) == 1, names
        for c in (first, second):
            c.expect(rf" 366 \S+ {name} ")
        # (NAMES waits for every node to have applied both JOINs: the same on both)
        assert len({names_of(c, name) for c in (first, second)}) == 1
        for c in (first, second):
            c.send(f"PART {name}")
    for c in clients:
        c.send("JOIN #all")
        c.expect(r" 366 \S+ #all ")
    got = [names_of(c, "#all") for c in clients]
    assert len(set(got)) == 1, got
    assert len({who_of(c, "#all") for c in clients}) == 1
    print(f"races: {rounds} rounds of each")


def names_of(c: LineClient, chan: str) -> str:
    """The NAMES reply for ``chan``, each line without the asker's nick."""
    c.send(f"NAMES {chan}")
    lines = []
    while " 366 " not in (line := c.expect(r" 353 | 366 ").string):
        lines.append(line.split(" ", 3)[3])
    return "\n".join(lines)


def who_of(c: LineClient, mask: str) -> str:
    """The WHO reply for ``mask``, each line without the asker's nick."""
    c.send(f"WHO {mask}")
    lines = []
    while " 315 " not in (line := c.expect(r" 352 | 315 ").string):
        lines.append(line.split(" ", 3)[3])
    return "\n".join(sorted(lines))


def modes_and_operators_across(connect: Connect) -> None:
    """+l counts both nodes' members, +b blocks joining, +i yields to an INVITE from the
    other node; KILL and WALLOPS from an operator on A reach B. The servers have the
    operator block of :func:`opers`."""
    op = connect(0, "op")
    friend = connect(1, "friend")
    op.send("JOIN #m")
    op.expect(r" 366 ")
    op.send("MODE #m +l 2")
    op.expect(r" MODE #m \+l 2")
    friend.send("JOIN #m")
    friend.expect(r" 366 ")
    op.expect(r":friend!\S+ JOIN #m")
    third = connect(1, "third")
    third.send("JOIN #m")
    third.expect(r" 471 third #m ")
    op.send("MODE #m -l+i")
    op.expect(r" MODE #m -l\+i")
    friend.expect(r" MODE #m -l\+i")  # (applied on B: a node reads the order a bit later)
    third.send("JOIN #m")
    third.expect(r" 473 third #m ")
    op.send("INVITE third #m")
    third.expect(r":op!\S+ INVITE third #m")
    third.send("JOIN #m")
    third.expect(r" 366 ")
    op.send("MODE #m -i+b third!*@*")
    op.expect(r" MODE #m -i\+b third!\*@\*")
    friend.expect(r" MODE #m -i\+b third!\*@\*")
    third.send("PART #m")
    third.expect(r" PART #m")
    third.send("JOIN #m")
    third.expect(r" 474 third #m ")
    op.send("OPER root pw")
    op.expect(r" 381 ")
    friend.send("MODE friend +w")
    friend.expect(r" MODE friend \+w")
    op.send("WALLOPS :network notice")
    friend.expect(r"^:op!\S+ WALLOPS :network notice$")
    op.send("KILL third :enough")
    third.expect(r"^ERROR :Closing Link: test\.salon \(Killed \(op \(enough\)\)\)")
    # Gone once its QUIT had its turn: a watcher on B is told so.
    friend.send("MONITOR + third")
    friend.expect(r" 73[01] friend third")
    if " 730 " in friend.lines[-1]:
        friend.expect(r" 731 friend third", timeout=10)


def plain_irc_and_web_across(
    connect: Connect, plain: Callable[[int], LineClient], web: Callable[[int], Any]
) -> None:
    """A plain-text user on side 0 talks with an IRC user and a web-client user on side 1.
    ``plain(side)``: a client of the text port; ``web(side)``: a WebSocket client."""
    irc = connect(1, "ircuser")
    irc.send("JOIN #lobby")
    irc.expect(r" 366 ")
    with web(1) as ws:
        ws.send("NICK webuser")
        ws.send("USER webuser 0 * :web user")
        ws.send("JOIN #lobby")
        while " 366 " not in str(ws.recv(timeout=5)):
            pass
        pat = plain(0)
        pat.expect(r"Your name:")
        pat.send("pat")
        pat.expect(r"^\* In #lobby: ")
        irc.expect(r"^:pat!plain@127\.0\.0\.1 JOIN #lobby$")
        pat.send("hello from the plain port")
        irc.expect(r"^:pat!plain@\S+ PRIVMSG #lobby :hello from the plain port$")
        while "hello from the plain port" not in str(ws.recv(timeout=5)):
            pass
        irc.send("PRIVMSG #lobby :hi pat, from irc")
        pat.expect(r"^ircuser: hi pat, from irc$")
        ws.send("PRIVMSG #lobby :hi pat, from the web")
        pat.expect(r"^webuser: hi pat, from the web$")


def synced(c: LineClient) -> None:
    """Wait until ``c``'s node has applied everything the network ordered before now (its
    PONG waits for every node), reading what came before."""
    c.send("PING :sync")
    c.expect(r" PONG \S+ :?sync$")


def same_line(pattern: str, *clients: LineClient) -> str:
    """The line matching ``pattern`` that each of ``clients`` gets, which must be byte for
    byte the same for all of them (its tags, msgid and time included)."""
    lines = {c.expect(pattern).string for c in clients}
    assert len(lines) == 1, lines
    return lines.pop()


def users_across(connect: Connect) -> None:
    """Issue 19 point 3 between processes, beyond :func:`join_and_messages_across` and
    :func:`modes_and_operators_across`: NICK, KICK and PART made on one side and seen on
    the other, the same bytes everywhere; WHO; AWAY (away-notify, 301 to a private message
    and in WHOIS, G in WHO); WHOWAS of a user who quit on the other side; LUSERS counting
    both sides; TAGMSG with one msgid and time for every recipient and the echo; a private
    message's tags the same for its recipient and its echo; +b set on one side silencing
    a user of the other (404); a K-line set on side 0 dropping a user of side 1 and
    refusing a new one there (465, then ERROR). The servers have the operator block of
    :func:`opers`."""
    caps = "message-tags server-time echo-message away-notify"
    op = connect(0, "op", caps)
    carol = connect(0, "carol", caps)
    bob = connect(1, "bob", caps)
    dave = connect(1, "dave", caps)
    erin = connect(1, "erin", caps)
    everyone = [op, carol, bob, dave, erin]
    for c in everyone:
        c.send("JOIN #u")
        c.expect(r" 366 ")
    for c in everyone:
        synced(c)
    carol.send("NICK carol2")
    same_line(r":carol!\S+ NICK :?carol2$", op, carol, bob, dave, erin)
    op.send("KICK #u dave :out you go")
    same_line(r":op!\S+ KICK #u dave :out you go$", op, carol, bob, dave, erin)
    carol.send("PART #u :later")
    same_line(r":carol2!\S+ PART #u :?later$", op, carol, bob, erin)
    # AWAY on side 0, seen on side 1: away-notify, 301 to a message and in WHOIS, WHO's G.
    op.send("AWAY :at lunch")
    op.expect(r" 306 ")
    same_line(r":op!\S+ AWAY :at lunch$", bob, erin)
    bob.send("PRIVMSG op :are you there?")
    bob.expect(r" 301 bob op :at lunch$")
    bob.send("WHOIS op")
    bob.expect(r" 301 bob op :at lunch$")
    bob.expect(r" 318 bob op ")
    bob.send("WHO #u")
    who = {}
    while True:
        line = bob.expect(r" 352 | 315 ").string
        if " 315 " in line:
            break
        fields = line.split(" ")
        who[fields[7]] = fields[8]  # nick: flags
    assert who == {"op": "G@", "bob": "H", "erin": "H"}, who
    op.send("AWAY")
    op.expect(r" 305 ")
    same_line(r":op!\S+ AWAY$", bob, erin)
    # TAGMSG: one msgid and time for the recipients on both sides and the echo.
    bob.send("@+typing=active TAGMSG #u")
    tagmsg = [parse(c.expect(r" TAGMSG #u$").string) for c in (op, bob, erin)]
    assert len({(m.tags["msgid"], m.tags["time"], m.tags["+typing"]) for m in tagmsg}) == 1
    # A private message: the same tags for the recipient and the echo.
    op.send("PRIVMSG bob :just for you")
    got = bob.expect(r"^@(\S+) :op!\S+ PRIVMSG bob :just for you$").group(1)
    echoed = op.expect(r"^@(\S+) :op!\S+ PRIVMSG bob :just for you$").group(1)
    assert sorted(got.split(";")) == sorted(echoed.split(";")) and "msgid=" in got
    # +b set on side 0: bob, on side 1, cannot speak (he has no voice to get around it).
    op.send("MODE #u +b bob!*@*")
    same_line(r":op!\S+ MODE #u \+b bob!\*@\*$", op, bob, erin)
    bob.send("PRIVMSG #u :can anyone hear me?")
    bob.expect(r" 404 bob #u ")
    erin.send("PRIVMSG #u :erin can")
    op.expect(r":erin!\S+ PRIVMSG #u :erin can$")
    assert not [line for line in op.lines + erin.lines if "can anyone hear me" in line]
    # WHOWAS on side 1 of a user who quit on side 0.
    carol.send("QUIT :gone home")
    carol.expect(r"^ERROR ")
    synced(bob)
    bob.send("WHOWAS carol2")
    bob.expect(r" 314 bob carol2 carol 127\.0\.0\.1 \* :")
    bob.expect(r" 369 bob carol2 ")
    # LUSERS: every node counts the whole network (op, bob, dave, erin).
    for c in (op, bob):
        c.send("LUSERS")
        c.expect(r" 251 \S+ :There are 4 users ")
        c.expect(r" 266 \S+ 4 ")
    # A K-line set on side 0: a user of side 1 it matches is dropped, and a new one refused.
    op.send("OPER root pw")
    op.expect(r" 381 ")
    op.send("KLINE *dave@127.0.0.1 :no daves")
    dave.expect(r" 465 dave :You are banned from this server: no daves$")
    dave.expect(r"^ERROR :Closing Link: .*K-lined: no daves")
    for c in (op, bob):
        c.send("WHOIS dave")
        c.expect(r" 401 \S+ dave ")
    again = connect(1, None)
    again.send("NICK dave2")
    again.send("USER dave 0 * :dave again")
    again.expect(r" 465 dave2 :You are banned from this server: no daves$")
    again.expect(r"^ERROR :Closing Link: ")
    assert not [line for line in again.lines if " 001 " in line]
