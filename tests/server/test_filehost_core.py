"""The file host's rules in the core (salon.server.files), in process: references made at
commit, who may read, and the lifecycle (redaction, retention, a private channel's end,
expiry, a dropped account)."""

from __future__ import annotations

from accounthelpers import accounts_net, register_account
from corehelpers import Conn, Net

from salon.server.files import Access, Principal
from salon.store.base import FileRecord

PW = "correct horse"


def new_file(net: Net, owner: str, file_id: str = "a" * 26, blob: str = "b" * 64) -> FileRecord:
    record = FileRecord(file_id, blob, 10, "text/plain; charset=utf-8", "x.txt", owner, net.now)
    net.server.files.add(record)
    net.collect_effects()
    return record


def url(record: FileRecord) -> str:
    return f"https://files.example/f/{record.id}/x.txt"


def access(net: Net, record: FileRecord, account: str | None) -> Access:
    who = Principal(account) if account is not None else None
    return net.server.files.access(net.server.files.records[record.id], who)


def people(net: Net) -> tuple[Conn, Conn, Conn]:
    alice = register_account(net, "alice", PW)
    bob = register_account(net, "bob", PW)
    carol = register_account(net, "carol", PW)
    for conn, chans in ((alice, "#secret,#lobby"), (bob, "#secret,#lobby"), (carol, "#lobby")):
        conn.send(f"JOIN {chans}")
    alice.send("MODE #secret +s")
    for conn in (alice, bob, carol):
        conn.lines()
    return alice, bob, carol


def test_references_follow_what_the_sender_may_read() -> None:
    net = accounts_net()
    alice, bob, carol = people(net)
    record = new_file(net, "alice")
    assert access(net, record, None) is Access.LOGIN
    assert access(net, record, "alice") is Access.ALLOWED
    assert access(net, record, "bob") is Access.FORBIDDEN
    alice.send(f"PRIVMSG #secret :{url(record)}")
    assert [r.target for r in net.store.file_refs] == ["#secret"]
    assert access(net, record, "bob") is Access.ALLOWED
    assert access(net, record, "carol") is Access.FORBIDDEN
    # carol cannot read it, so her posting it in #lobby is no reference.
    carol.send(f"PRIVMSG #lobby :{url(record)}")
    assert access(net, record, None) is Access.LOGIN
    bob.send("PART #secret")
    assert access(net, record, "bob") is Access.FORBIDDEN
    bob.send(f"PRIVMSG #lobby :{url(record)}")
    assert access(net, record, None) is Access.LOGIN
    alice.send(f"NOTICE #lobby :see {url(record)} and {url(record)}")
    assert access(net, record, None) is Access.ALLOWED
    assert [r.target for r in net.store.file_refs] == ["#secret", "#lobby"]


def test_redaction_of_the_only_reference_deletes_the_file() -> None:
    net = accounts_net()
    alice, _, _ = people(net)
    record = new_file(net, "alice")
    alice.send(f"PRIVMSG #lobby :{url(record)}")
    msgid = net.store.file_refs[0].msgid
    alice.send(f"REDACT #lobby {msgid}")
    gone = net.server.files.records[record.id]
    assert gone.deleted and net.store.files[record.id].deleted
    assert net.store.file_refs == []
    assert net.server.files.take_unlinks() == [record.blob]


def test_a_private_channel_that_ends_takes_its_files() -> None:
    net = accounts_net()
    alice = register_account(net, "alice", PW)
    alice.send("JOIN #hide")
    alice.send("MODE #hide +s")
    record = new_file(net, "alice")
    alice.send(f"PRIVMSG #hide :{url(record)}")
    assert net.store.file_refs
    alice.send("PART #hide")
    net.collect_effects()
    assert net.server.files.records[record.id].deleted
    assert net.store.file_refs == []


def test_retention_takes_references_and_their_files() -> None:
    net = accounts_net(history={"retention_days": 1})
    alice, _, _ = people(net)
    old = new_file(net, "alice")
    alice.send(f"PRIVMSG #lobby :{url(old)}")
    net.check_timeouts(2 * 86400)
    young = new_file(net, "alice", "c" * 26, "d" * 64)
    alice.send(f"PRIVMSG #lobby :{url(young)}")
    net.check_timeouts(3601)
    files = net.server.files.records
    assert files[old.id].deleted and not files[young.id].deleted


def test_unposted_uploads_expire_and_posted_ones_stay() -> None:
    net = accounts_net(files={"unclaimed_hours": 1.0})
    alice, _, _ = people(net)
    lonely = new_file(net, "alice")
    posted = new_file(net, "alice", "c" * 26, "d" * 64)
    alice.send(f"PRIVMSG #lobby :{url(posted)}")
    net.check_timeouts(1800)
    assert lonely.id in net.server.files.records
    net.check_timeouts(1900)
    assert lonely.id not in net.server.files.records and lonely.id not in net.store.files
    assert posted.id in net.server.files.records
    assert net.server.files.take_unlinks() == [lonely.blob]
    assert net.server.files.usage["alice"] == posted.size


def test_dropping_an_account_deletes_its_files() -> None:
    net = accounts_net()
    alice = register_account(net, "alice", PW)
    record = new_file(net, "alice")
    alice.send(f"NS DROP {PW}")
    net.run_offloads()
    assert net.server.files.records[record.id].deleted
    assert net.server.files.usage.get("alice", 0) == 0


def test_shared_bytes_are_unlinked_with_their_last_file() -> None:
    net = accounts_net()
    register_account(net, "alice", PW)
    first = new_file(net, "alice")
    second = new_file(net, "alice", "c" * 26)
    files = net.server.files
    files.delete(files.records[first.id], net.now)
    assert files.take_unlinks() == [] and files.blob_in_use(first.blob)
    files.delete(files.records[second.id], net.now)
    assert files.take_unlinks() == [first.blob]


def test_tokens() -> None:
    net = accounts_net()
    alice = register_account(net, "alice", PW)
    guest = net.register("guest", caps=["batch"])
    alice.send("TOKEN GENERATE FILEHOST")
    token = alice.lines()[-1].split()[-1]
    files = net.server.files
    assert files.use_token(token, net.now) == Principal("alice")
    guest.send("TOKEN GENERATE FILEHOST")
    assert "FAIL TOKEN ACCOUNT_REQUIRED" in guest.lines()[-1]
    assert files.use_token(token, net.now + 601) is None
    alice.send("TOKEN GENERATE FILEHOST")
    token = alice.lines()[-1].split()[-1]
    for _ in range(20):
        assert files.use_token(token, net.now) is not None
    assert files.use_token(token, net.now) is None
    other = net.server.files.new_token(alice.client)
    alice.send("QUIT")
    net.collect_effects()
    assert files.use_token(other, net.now) is None


def test_a_guests_upload_is_its_own_whatever_the_case_of_its_nick() -> None:
    net = accounts_net(files={"who": "everyone"})
    guest = net.register("Visitor")
    files = net.server.files
    who = files.principal_of(guest.client)
    record = FileRecord(
        "a" * 26, "b" * 64, 1, "text/plain", "x.txt", "", net.now, owner_nick=who.nick
    )
    files.add(record)
    net.collect_effects()
    assert files.access(record, who) is Access.ALLOWED
    assert files.access(record, Principal(None, 999, "other")) is Access.FORBIDDEN
