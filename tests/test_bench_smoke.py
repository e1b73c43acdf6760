"""Smoke test of the benchmark (bench/, `make bench`): a tiny run against salon only.

It checks that every scenario runs to completion with nothing lost, no unexpected disconnect
and no failed registration, and that the results come out as JSON lines. No timing assertion:
the figures of a run this small mean nothing.
"""

from __future__ import annotations

import importlib.util
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = {"idle", "fanout", "fanout500", "dm", "churn"}
EXIT_NO_START = 3  # bench/cli.py: a server could not be started


def test_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "results"
    chart = tmp_path / "bench.png"
    cmd = [
        sys.executable,
        "-m",
        "bench",
        "--servers",
        "salon",
        "--scale",
        "0.01",
        "--duration",
        "1",
        "--out",
        str(out),
        "--chart",
        str(chart),
        "--salon-cmd",
        shlex.join([sys.executable, "-m", "salon"]),
        # Other tests run alongside: let the scheduler place the server and the generator.
        "--no-pin",
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=90)
    report = f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    if proc.returncode == EXIT_NO_START:
        pytest.skip(f"salon could not start:\n{report}")
    assert proc.returncode == 0, report

    results = [json.loads(line) for line in (out / "latest.jsonl").read_text().splitlines()]
    assert {r["scenario"] for r in results} == SCENARIOS, report
    for r in results:
        where = f"{r['scenario']}: {r}"
        assert r["server"] == "salon", where
        assert r["ok"] is True, where
        assert r["lost"] == 0, where
        assert r["unexpected_disconnects"] == 0, where
        assert r["failed_registrations"] == 0, where
        assert r["cpu_us_per_op"] is not None, where
    by_scenario = {r["scenario"]: r for r in results}
    assert by_scenario["idle"]["registered"] == by_scenario["idle"]["clients"]
    assert by_scenario["idle"]["rss_kib_per_conn"] is not None
    for name in ("fanout", "fanout500", "dm"):
        assert by_scenario[name]["received"] == by_scenario[name]["expected"] > 0
        assert by_scenario[name]["latency_samples"] > 0
    assert by_scenario["churn"]["registrations"] > 0
    assert "| scenario" in proc.stdout  # the table
    if importlib.util.find_spec("matplotlib") is not None:
        assert chart.stat().st_size > 0


@pytest.mark.parametrize("store", ["null", "sqlite"])
def test_inproc_bench_smoke(store: str) -> None:
    """``python -m bench.inproc``: the core alone, both scenarios, history on and off."""
    cmd = [sys.executable, "-m", "bench.inproc", "--seconds", "0.05", "--store", store]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["fanout", "dm"], proc.stdout
    for line in lines:
        assert "history off" in line and "history on" in line and f"store {store}" in line
