"""SASL over loopback to a real salon process."""

from __future__ import annotations

import base64
from typing import Any

from accounthelpers import (
    b64,
)

from salon.client.sasl import ScramSha256


def test_sasl_over_loopback(make_salon: Any, connect: Any) -> None:
    s = make_salon(accounts={"password_min_length": 4})
    reg = connect(s.irc_port)
    reg.register("jilles")
    reg.send("REGISTER * * :sesame")
    reg.expect(r"REGISTER SUCCESS jilles")
    reg.send("QUIT")

    c = connect(s.irc_port)
    c.send("CAP LS 302")
    c.expect(r"sasl=PLAIN,SCRAM-SHA-256,EXTERNAL")
    c.send("CAP REQ :sasl")
    c.expect(r"ACK :?sasl")
    # A single over-long chunk: the line is refused whole (417) or the chunk (905).
    c.send("AUTHENTICATE PLAIN")
    c.expect(r"AUTHENTICATE \+")
    c.send("AUTHENTICATE " + "A" * 500)
    c.expect(r" (417|905) \* ")
    c.send("AUTHENTICATE *")
    c.expect(r" 906 \* ")
    # NUL inside the password: refused.
    c.send("AUTHENTICATE PLAIN")
    c.expect(r"AUTHENTICATE \+")
    c.send("AUTHENTICATE " + b64(b"\0jilles\0sesa\0me"))
    c.expect(r" 904 \* ")
    # SCRAM-SHA-256, checking the server's signature.
    client = ScramSha256("jilles", "sesame")
    c.send("AUTHENTICATE SCRAM-SHA-256")
    c.expect(r"AUTHENTICATE \+")
    c.send("AUTHENTICATE " + b64(client.client_first()))
    first = c.expect(r"AUTHENTICATE (\S+)").group(1)
    c.send("AUTHENTICATE " + b64(client.client_final(base64.b64decode(first))))
    final = c.expect(r"AUTHENTICATE (\S+)").group(1)
    client.verify_server_final(base64.b64decode(final))
    c.send("AUTHENTICATE +")
    c.expect(r" 900 \* \S+ jilles :")
    c.expect(r" 903 ")
    c.send("NICK bar")
    c.send("USER bar 0 * :bar")
    c.send("CAP END")
    c.expect(r" 001 bar ")
