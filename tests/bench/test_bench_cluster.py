"""Smoke test of the cluster's cost benchmark (``python -m bench.cluster``, issue 19, point
10): one salon process against two nodes and their redis-server, every scenario, with
counts small enough for a test. No figure is asserted: CPU over runs this short is a few
clock ticks (a side may even measure none, which the benchmark says instead of a ratio).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import postgres_bindir

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = ("fanout", "dm", "churn")
SIDE = re.compile(
    r"^(\w+) +(one|two) +µs/op +[\d.]+ +runs [\d., ]+ +per process [\d. ]+ +lost \[(.*)\]$"
)
RATIO = re.compile(r"^(\w+) +ratio \(this tree\): (\d+\.\d\d|n/a \(no CPU measured for one\))$")


@pytest.mark.parametrize(
    ("store", "scenarios"),
    # PostgreSQL (one server both nodes share) costs a start of its own: one scenario.
    [("off", SCENARIOS), ("postgres", ("fanout",))],
)
def test_cluster_bench_smoke(store: str, scenarios: tuple[str, ...]) -> None:
    if store == "postgres":
        postgres_bindir()  # installed, or a failure (CI) or a skip
    cmd = [
        sys.executable,
        "-m",
        "bench.cluster",
        *("--members", "6", "--messages", "100", "--churn", "10", "--repeat", "1"),
        *("--store", store, "--scenarios", ",".join(scenarios)),
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=90)
    report = f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, report
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"store {store}; load average before: "), report
    assert lines[-1].startswith("load average after: "), report
    sides = [m.groups() for m in map(SIDE.match, lines) if m]
    assert [(name, side) for name, side, _lost in sides] == [
        (name, side) for name in scenarios for side in ("one", "two")
    ], report
    assert all(lost == "0" for _n, _s, lost in sides), report  # one run each: nothing lost
    ratios = [m.group(1) for m in map(RATIO.match, lines) if m]
    assert ratios == list(scenarios), report
    assert len(lines) == 2 + 3 * len(scenarios), report  # nothing else printed
