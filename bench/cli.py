"""``python -m bench``: start each server in turn, run the scenarios, report."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import importlib.metadata
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from bench import report, scenarios, servers
from bench.loadgen import Generator

EXIT_OK = 0
EXIT_FAILED = 1  # a scenario lost messages, disconnected clients or failed registrations
EXIT_NO_START = 3  # a server could not be started


def add_run_options(ap: argparse.ArgumentParser) -> None:
    """The options of every benchmark here (this one and bench.history): where the
    results go, how salon is run, pinning, and the run directories."""
    ap.add_argument(
        "--out",
        type=Path,
        default=servers.REPO / "bench" / "results",
        help="directory for the JSON lines results (default: bench/results)",
    )
    ap.add_argument(
        "--salon-cmd",
        default=shlex.join(servers.default_salon_cmd()),
        help="command that runs salon, 'serve --config FILE' is appended (default: %(default)s)",
    )
    ap.add_argument("--no-pin", action="store_true", help="do not pin servers and generator")
    ap.add_argument("--keep", action="store_true", help="keep the servers' run directories")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark salon against ngIRCd and InspIRCd (servers on CPU 0, "
        "load generator on CPU 1). See docs/BENCHMARKS.md.",
    )
    ap.add_argument(
        "--servers",
        default=",".join(servers.SERVER_NAMES),
        help="comma-separated servers to run (default: %(default)s; also salon-nohist: "
        "salon with its message history off)",
    )
    ap.add_argument(
        "--scenarios",
        default=",".join(scenarios.SCENARIOS),
        help="comma-separated scenarios (default: %(default)s)",
    )
    ap.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="shrink client counts and the measurement window by this factor, e.g. 0.02 "
        "for a smoke run (default: %(default)s)",
    )
    ap.add_argument(
        "--duration",
        type=float,
        default=10.0,
        help="measurement window per scenario in seconds at scale 1 (default: %(default)s)",
    )
    ap.add_argument(
        "--chart",
        type=Path,
        default=servers.REPO / "docs" / "bench.png",
        help="PNG chart to write (default: docs/bench.png)",
    )
    ap.add_argument("--no-chart", action="store_true", help="do not draw the chart")
    ap.add_argument(
        "--window",
        type=int,
        default=scenarios.Params.window,
        help="max-rate senders keep at most this many messages in flight (default: %(default)s)",
    )
    ap.add_argument(
        "--batch",
        type=int,
        default=scenarios.Params.batch,
        help="max-rate senders refill their window in bursts of at least this many "
        "messages (default: %(default)s)",
    )
    ap.add_argument(
        "--size",
        type=int,
        default=scenarios.Params.size,
        help="bytes per sent PRIVMSG line (default: %(default)s)",
    )
    ap.add_argument(
        "--concurrency",
        type=int,
        default=0,
        help="connections set up at once (and churn loops); default: per server, "
        + ", ".join(f"{k} {v}" for k, v in servers.CONNECT_CONCURRENCY.items()),
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds per scenario: the servers take turns (in reverse order every other "
        "round), the table shows each figure's median and range, and the targets are "
        "checked against the medians (default: %(default)s)",
    )
    ap.add_argument(
        "--retry-noisy",
        type=int,
        default=0,
        metavar="N",
        help="run a server's scenario again, up to N times, when its run was noisy (other "
        "work or steal on the pinned CPUs, see the (~) flag); the JSON line of the run kept "
        "says how many were dropped (default: %(default)s)",
    )
    add_run_options(ap)
    args = ap.parse_args(argv)
    args.server_list = [s.strip() for s in args.servers.split(",") if s.strip()]
    args.scenario_list = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    known = servers.SERVER_NAMES + servers.EXTRA_SERVERS
    for s in args.server_list:
        if s not in known:
            ap.error(f"unknown server {s!r}; choose from {', '.join(known)}")
    for s in args.scenario_list:
        if s not in scenarios.SCENARIOS:
            ap.error(f"unknown scenario {s!r}; choose from {', '.join(scenarios.SCENARIOS)}")
    if args.scale <= 0 or args.duration <= 0:
        ap.error("--scale and --duration must be positive")
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    if args.retry_noisy < 0:
        ap.error("--retry-noisy must not be negative")
    return args


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def summary(r: dict[str, Any]) -> str:
    if "cpu_us_per_op" not in r:
        return f"error: {r.get('error')}"
    parts = [f"{report.fmt(r['cpu_us_per_op'])} µs/{r.get('op')}"]
    if r.get("rss_kib_per_conn") is not None:
        parts.append(f"{r['rss_kib_per_conn']} KiB/conn, {report.fmt(r.get('conn_per_s'))} conn/s")
    else:
        parts.append(f"{report.fmt(r.get('ops_per_s'))} ops/s")
    if r.get("latency_p99_ms") is not None:
        parts.append(f"p50 {r['latency_p50_ms']} ms p99 {r['latency_p99_ms']} ms")
    parts.append(f"gen {r.get('gen_cpu_pct')}%")
    if not r.get("ok"):
        parts.append(
            f"FAIL lost={r.get('lost')} disc={r.get('unexpected_disconnects')} "
            f"failed={r.get('failed_registrations')} {r.get('errors', [])[:3]}"
        )
    return ", ".join(parts)


async def run_all(args: argparse.Namespace, workdir: Path, meta: dict[str, Any]) -> list[Any]:
    params = scenarios.Params(
        scale=args.scale,
        duration=args.duration,
        window=args.window,
        batch=args.batch,
        size=args.size,
        concurrency=args.concurrency,
    )
    salon_cmd = shlex.split(args.salon_cmd)
    versions = {s: servers.server_version(s, salon_cmd) for s in args.server_list}
    results: list[dict[str, Any]] = []
    no_start: dict[str, str] = {}
    # Scenario-major order: the servers' figures for one scenario are taken close in time.
    # Rounds alternate the order, so that a drift of the machine's speed during a scenario
    # does not always favour the same server.
    rounds = [
        (scenario, rnd, name)
        for scenario in args.scenario_list
        for rnd in range(1, args.repeat + 1)
        for name in (args.server_list if rnd % 2 else args.server_list[::-1])
    ]
    for scenario, rnd, name in rounds:
        base: dict[str, Any] = {"server": name, "scenario": scenario, **meta}
        base["version"] = versions.get(name, "")
        label = f"{scenario} / {name}"
        if args.repeat > 1:
            base["round"] = rnd
            label += f" (round {rnd})"
        if name in no_start:
            results.append({**base, "ok": False, "start_error": True, "error": no_start[name]})
            continue
        full = await run_one(args, workdir, params, salon_cmd, name, scenario, base, label)
        dropped: list[dict[str, Any]] = []
        while len(dropped) < args.retry_noisy and full.get("ok") and report.noisy(full):
            dropped.append({k: full.get(k) for k in NOISE_KEYS})
            log(f"{label}: noisy ({noise(full)}), run again ({len(dropped)}/{args.retry_noisy})")
            full = await run_one(args, workdir, params, salon_cmd, name, scenario, base, label)
        if dropped:
            full["noisy_runs_dropped"] = dropped
        if full.get("start_error"):
            no_start[name] = full["error"]
        results.append(full)
    return results


# What a noisy run's JSON line keeps of the runs dropped before it (--retry-noisy).
NOISE_KEYS = ("other_pct", "steal_pct", "gen_wait_pct", "cpu_us_per_op", "latency_p99_ms")


def noise(r: dict[str, Any]) -> str:
    return (
        f"other {r.get('other_pct')}%, steal {r.get('steal_pct')}%, "
        f"generator waited {r.get('gen_wait_pct')}%"
    )


async def run_one(
    args: argparse.Namespace,
    workdir: Path,
    params: scenarios.Params,
    salon_cmd: list[str],
    name: str,
    scenario: str,
    base: dict[str, Any],
    label: str,
) -> dict[str, Any]:
    """Start one server, run one scenario against it, stop it: the result's JSON line."""
    try:
        server = await servers.start(
            name, workdir, salon_cmd, pin=args.pin, settle=0.3 if args.scale >= 0.1 else 0.1
        )
    except servers.ServerStartError as e:
        log(f"{label}: cannot start: {e}")
        error = str(e).splitlines()[0] if str(e) else "cannot start"
        return {**base, "ok": False, "start_error": True, "error": error}
    server.version = base.get("version", "")
    gen = Generator("127.0.0.1", server.port, scenario[0])
    log(f"{label}: started pid {server.pid} on port {server.port}")
    # No cyclic GC pauses in the generator while it measures (it makes few cycles).
    gc.collect()
    gc.disable()
    try:
        res = await scenarios.run(scenario, server, gen, params)
    except Exception as e:
        log(f"{label}: error {e!r}")
        res = {"ok": False, "error": repr(e)}
    finally:
        gc.enable()
        gen.close_all()
        await asyncio.sleep(0.05)
        server.stop()
    full = {**base, **res}
    log(f"{label}: {summary(full)}")
    if not args.keep:
        shutil.rmtree(server.rundir, ignore_errors=True)
    # A quiet disk for the next server: what this one wrote (salon's database) is
    # flushed now, not by the kernel's writeback in the middle of the next window.
    await asyncio.to_thread(os.sync)
    await asyncio.sleep(0.2 if args.scale >= 0.1 else 0.05)  # settle between servers
    return full


def run_async(coro: Coroutine[Any, Any, list[Any]]) -> list[Any]:
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:
        log("uvloop is not installed: using the default asyncio loop (slower generator)")
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


def git_commit() -> str:
    """The repository's commit (salon's code under test), "+dirty" with local changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=servers.REPO,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "src"],
            cwd=servers.REPO,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return head + ("+dirty" if dirty and head else "")


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def setup(args: argparse.Namespace, say: Callable[[str], None]) -> None:
    """Pin this process (the generator) unless ``--no-pin``, and set ``args.pin`` to
    whether it is; SIGTERM and SIGHUP become KeyboardInterrupt, whose handling stops the
    servers."""
    args.pin = False
    if not args.no_pin:
        args.pin = servers.pin_generator()
        if not args.pin:
            say("fewer than 2 CPUs available: servers and generator are not pinned")
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup(args, log)
    nofile = servers.raise_nofile(20000)
    started = dt.datetime.now(dt.UTC)
    try:
        loop_name = f"uvloop {importlib.metadata.version('uvloop')}"
    except importlib.metadata.PackageNotFoundError:
        loop_name = "asyncio"
    meta: dict[str, Any] = {
        "date": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "pinned": args.pin,
        "scale": args.scale,
        "duration": args.duration,
        "generator": f"python {platform.python_version()}, {loop_name}",
        "commit": git_commit(),
    }
    log(
        f"servers {args.server_list}, scenarios {args.scenario_list}, scale {args.scale}, "
        f"pinned={args.pin}, RLIMIT_NOFILE={nofile}"
    )
    workdir = Path(tempfile.mkdtemp(prefix="salon-bench-"))
    results: list[dict[str, Any]] = []
    interrupted = False
    try:
        results = run_async(run_all(args, workdir, meta))
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted")
    finally:
        servers.kill_all()
        if args.keep:
            log(f"run directories kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if interrupted:
        return 130
    # With several rounds, what is shown (and charted, and checked) is each figure's median.
    shown = report.medians(results) if args.repeat > 1 else results
    stamp = started.strftime("%Y%m%d-%H%M%S")
    out = args.out / f"bench-{stamp}.jsonl"
    everything = results + shown if args.repeat > 1 else results
    report.save(everything, out, "latest.jsonl")
    print()
    print(
        f"salon benchmark, {meta['date']}, commit {meta['commit'] or '?'}, "
        f"scale {args.scale}, host {meta['host']}"
        + (f", median of {args.repeat} rounds (range in brackets)" if args.repeat > 1 else "")
    )
    print(report.table(shown))
    lines = report.targets(shown, results)
    if lines:
        print("\nsalon targets:")
        for line in lines:
            print("  " + line)
    if any(r.get("gen_saturated") for r in shown):
        print("\n(!) the load generator used >= 90% of its core: that server was not saturated")
    if any(r.get("behind") for r in shown):
        print("\n(<) fewer than 95% of the fixed rate's deliveries per second arrived")
    if any(report.noisy(r) for r in shown):
        print(
            f"\n(~) something else took the machine: other work on the server's core or the"
            f" generator waiting for its CPU over {report.NOISY_OTHER_PCT:.0f}% of the window, or"
            f" the hypervisor's steal over {report.NOISY_STEAL_PCT:.0f}%: noisy figures"
        )
    print(f"\nresults: {out}")
    if not args.no_chart:
        title = f"salon benchmark {meta['date'][:10]}, commit {meta['commit'] or '?'}"
        if args.scale != 1.0:
            title += f", scale {args.scale}"
        if args.repeat > 1:
            title += f", median of {args.repeat} rounds"
        why_not = report.chart(shown, args.chart, title)
        print(f"chart: {args.chart}" if why_not is None else f"chart: skipped ({why_not})")
    if any(r.get("start_error") for r in results):
        return EXIT_NO_START
    if any(not r.get("ok") for r in results):
        return EXIT_FAILED
    return EXIT_OK
