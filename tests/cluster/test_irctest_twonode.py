"""Cross-node failures that irctest's two-node mode found (scripts/irctest.sh with
SALON_IRCTEST_NODES=2, docs/CONFORMANCE.md), each reproduced in process on the memory bus."""

from __future__ import annotations

from clusterhelpers import ClusterNet
from corehelpers import one


def test_lusers_max_counts_the_peak_of_users_on_the_other_node() -> None:
    """irctest lusers.py testLusersFull: bar on A, qux on B asks LUSERS with 2 users,
    quits, and bar's LUSERS must say max 2, not the 1 that A last counted itself."""
    net = ClusterNet(2)
    bar = net.register(0, "bar")
    qux = net.register(1, "qux")
    qux.send("QUIT")
    bar.send("LUSERS")
    msgs = bar.messages()
    assert one(msgs, "265").params[1:3] == ("1", "2")
    assert one(msgs, "266").params[1:3] == ("1", "2")
