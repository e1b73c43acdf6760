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
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = {"idle", "fanout", "fanout500", "dm", "churn"}
EXIT_NO_START = 3  # bench/cli.py: a server could not be started


def run_bench(out: Path, *args: str) -> tuple[list[dict[str, Any]], str, str]:
    """Run ``python -m bench`` against salon at scale 0.01 (skip if salon cannot start);
    return its JSON lines, its stdout and a report of the run for assertion messages."""
    cmd = [
        sys.executable,
        "-m",
        "bench",
        "--scale",
        "0.01",
        "--out",
        str(out),
        "--salon-cmd",
        shlex.join([sys.executable, "-m", "salon"]),
        # Other tests run alongside: let the scheduler place the server and the generator.
        "--no-pin",
        *args,
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=90)
    report = f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    if proc.returncode == EXIT_NO_START:
        pytest.skip(f"salon could not start:\n{report}")
    assert proc.returncode == 0, report
    results = [json.loads(line) for line in (out / "latest.jsonl").read_text().splitlines()]
    return results, proc.stdout, report


def test_bench_smoke(tmp_path: Path) -> None:
    chart = tmp_path / "bench.png"
    results, stdout, report = run_bench(
        tmp_path / "results", "--servers", "salon", "--duration", "1", "--chart", str(chart)
    )
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
    for r in results:  # pinned when this machine has two CPUs
        if r["other_pct"] is not None:
            assert r["other_pct"] >= 0 and r["steal_pct"] >= 0, r
    assert "| scenario" in stdout  # the table
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


def test_bench_rounds(tmp_path: Path) -> None:
    """``--repeat``: rounds alternate the servers' order; the table, the chart and the
    targets use each figure's median; the JSON lines keep every run and the medians."""
    results, stdout, report = run_bench(
        tmp_path / "results",
        *("--servers", "salon,salon-nohist", "--scenarios", "fanout", "--repeat", "2"),
        *("--duration", "0.5", "--no-chart"),
    )
    runs = [r for r in results if "aggregate" not in r]
    assert [(r["round"], r["server"]) for r in runs] == [
        (1, "salon"),
        (1, "salon-nohist"),
        (2, "salon-nohist"),
        (2, "salon"),
    ], report
    medians = [r for r in results if "aggregate" in r]
    assert [r["server"] for r in medians] == ["salon", "salon-nohist"], report
    for m in medians:
        mine = sorted(r["cpu_us_per_op"] for r in runs if r["server"] == m["server"])
        assert m["cpu_us_per_op"] == sum(mine) / 2, m  # the median of two
        assert m["cpu_us_per_op_range"] == mine, m
        assert m["rounds"] == 2 and m["ok"] is True and m["lost"] == 0, m
    assert "median of 2 rounds" in stdout, report
    assert "fanout history on/off" in stdout, report


def test_bench_medians_and_ratios() -> None:
    """report.medians and the history ratio target, on figures made up for the test."""
    from bench import report as rep

    def run(server: str, rnd: int, cpu: float, lost: int = 0) -> dict[str, object]:
        return {
            "scenario": "fanout",
            "server": server,
            "round": rnd,
            "op": "delivery",
            "cpu_us_per_op": cpu,
            "latency_p99_ms": cpu * 10,
            "lost": lost,
            "ok": lost == 0,
        }

    raw = [
        run("salon", 1, 0.30),
        run("salon-nohist", 1, 0.25),
        run("salon-nohist", 2, 0.40),
        run("salon", 2, 0.44),
        run("salon", 3, 0.90, lost=2),
        run("salon-nohist", 3, 0.50),
    ]
    shown = rep.medians(raw)
    salon = next(r for r in shown if r["server"] == "salon")
    assert salon["cpu_us_per_op"] == 0.44
    assert salon["cpu_us_per_op_range"] == [0.30, 0.90]
    assert salon["lost"] == 2 and salon["ok"] is False and "round" not in salon
    assert rep.paired_ratios(raw, "fanout", "salon", "salon-nohist") == pytest.approx(
        [1.2, 1.1, 1.8]
    )
    lines = rep.targets(shown, raw)
    assert any(line.startswith("ok") and "fanout history on/off: 1.20x" in line for line in lines)
    assert "0.44 /dlv [0.30-0.90]" in rep.table(shown)


def test_noisy_runs_are_told_by_what_else_ran() -> None:
    """A server waiting for its own threads is not noise; other work on its core, the
    generator waiting, or steal is (report.noisy, and the window's interference)."""
    from dataclasses import replace

    from bench import report as rep
    from bench.scenarios import Snap, interference

    base = {"server_wait_pct": 55.0, "gen_wait_pct": 0.0, "other_pct": 2.0, "steal_pct": 0.0}
    assert not rep.noisy(base)  # salon's storage thread waits for the event loop's
    assert rep.noisy({**base, "other_pct": 12.0})
    assert rep.noisy({**base, "steal_pct": 6.0})
    assert rep.noisy({**base, "gen_wait_pct": 11.0})
    assert rep.noisy({"server_wait_pct": 15.0, "gen_wait_pct": 0.0})  # older results
    s0 = Snap(0.0, 1.0, 0.0, 0, 0.0, 0.0, (10.0, 1.0), (5.0, 2.0), pinned=True)
    s1 = Snap(2.0, 2.5, 0.0, 0, 0.0, 0.0, (11.8, 1.1), (6.0, 2.3), pinned=True)
    # 1.8 s busy on the server's core, 1.5 s of it the server's; steal 0.1 and 0.3 s.
    assert interference(s0, s1, 1.5) == {"other_pct": 15.0, "steal_pct": 15.0}
    # Not pinned: the cores say nothing of the server, and noisy() uses the waits.
    loose = (replace(s0, pinned=False), replace(s1, pinned=False))
    assert interference(*loose, 1.5) == {"other_pct": None, "steal_pct": None}
    assert not rep.noisy({**base, "other_pct": None, "server_wait_pct": 5.0})
    assert rep.noisy({**base, "other_pct": None, "server_wait_pct": 15.0})
    row = {"scenario": "dm", "server": "salon", "ok": True, **base, "other_pct": 15.0}
    assert "15/0 (~)" in rep.table([row])


def test_noisy_runs_are_run_again(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """--retry-noisy N: a noisy run (steal here) is run again up to N times; the run kept
    records the ones dropped, and the other servers are not run again."""
    import asyncio

    from bench import cli

    steal = {"salon": [40.0, 30.0, 0.0], "ngircd": [0.0]}
    calls: list[str] = []

    async def run_one(*a: Any) -> dict[str, Any]:
        name, base = a[4], a[6]
        calls.append(name)
        return {**base, "ok": True, "other_pct": 0.0, "steal_pct": steal[name].pop(0)}

    monkeypatch.setattr(cli, "run_one", run_one)
    monkeypatch.setattr(cli.servers, "server_version", lambda name, cmd: "v")
    args = cli.parse_args(["--servers", "salon,ngircd", "--scenarios", "dm", "--retry-noisy", "5"])
    results = asyncio.run(cli.run_all(args, tmp_path, {}))
    assert calls == ["salon", "salon", "salon", "ngircd"]
    salon, ngircd = results
    assert salon["steal_pct"] == 0.0
    assert [d["steal_pct"] for d in salon["noisy_runs_dropped"]] == [40.0, 30.0]
    assert "noisy_runs_dropped" not in ngircd
    # At most N: with --retry-noisy 1 the second noisy run is kept, flagged as it is.
    steal["salon"] = [40.0, 30.0]
    steal["ngircd"] = [0.0]
    args.retry_noisy = 1
    kept = asyncio.run(cli.run_all(args, tmp_path, {}))[0]
    assert kept["steal_pct"] == 30.0 and len(kept["noisy_runs_dropped"]) == 1


def test_latency_never_negative_within_one_turn() -> None:
    """A message sent and received back within one turn of the generator's loop (whose
    receive clock is read once per turn) counts from the clock read when it arrives."""
    import asyncio
    import time

    from bench import loadgen

    async def main() -> list[int]:
        c = loadgen.Client("r", loadgen.Stats())
        c.mode = loadgen.MODE_COUNT
        c.latency = []
        c.data_received(b":a!a@h PRIVMSG #c :T%020d x\r\n" % time.monotonic_ns())
        # Same turn: the turn clock is already read; this one was sent after it.
        c.data_received(b":a!a@h PRIVMSG #c :T%020d x\r\n" % time.monotonic_ns())
        return c.latency

    latency = asyncio.run(main())
    assert len(latency) == 2 and min(latency) >= 0, latency
