"""Output: a table on stdout, JSON lines, a PNG chart and salon's targets."""

from __future__ import annotations

import contextlib
import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

Result = dict[str, Any]

OP_SHORT = {"delivery": "dlv", "message": "msg", "registration": "reg", "connection": "conn"}


def fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


COLUMNS: list[tuple[str, str]] = [
    ("scenario", "scenario"),
    ("server", "server"),
    ("cpu_us_per_op", "server CPU µs/op"),
    ("ops_per_s", "ops/s"),
    ("latency_p50_ms", "p50 ms"),
    ("latency_p99_ms", "p99 ms"),
    ("rss_kib_per_conn", "KiB/conn"),
    ("conn_per_s", "conn/s"),
    ("server_cpu_pct", "server CPU %"),
    ("gen_cpu_pct", "gen CPU %"),
    ("server_wait_pct", "wait % srv/gen"),
    ("other_pct", "other/steal %"),
    ("lost", "lost"),
    ("unexpected_disconnects", "disc"),
    ("failed_registrations", "failed reg"),
]


NOISY_WAIT_PCT = 10.0
NOISY_OTHER_PCT = 10.0
NOISY_STEAL_PCT = 5.0


def noisy(r: Result) -> bool:
    """Something else took the machine in the window: other work on the server's core or
    the generator waiting for its own > 10% of it, or steal > 5% on either core.

    The server's own wait is not a sign of it: a server whose threads share its one core
    (salon's storage thread) waits for itself. Results from before other_pct was measured
    fall back to it, and so do runs without pinning (other_pct None).
    """
    if r.get("other_pct") is None:
        return max(r.get("server_wait_pct") or 0.0, r.get("gen_wait_pct") or 0.0) > NOISY_WAIT_PCT
    return (
        (r.get("other_pct") or 0.0) > NOISY_OTHER_PCT
        or (r.get("steal_pct") or 0.0) > NOISY_STEAL_PCT
        or (r.get("gen_wait_pct") or 0.0) > NOISY_WAIT_PCT
    )


def table(results: Sequence[Result]) -> str:
    """A Markdown pipe table (readable as plain text too), one row per server x scenario."""
    header = [title for _, title in COLUMNS]
    rows: list[list[str]] = []
    for r in results:
        if r.get("error") and "cpu_us_per_op" not in r:
            rows.append([r["scenario"], r["server"], "error: " + str(r["error"])[:60]])
            rows[-1] += [""] * (len(header) - len(rows[-1]))
            continue
        row = []
        for key, _ in COLUMNS:
            v = r.get(key)
            if key in RANGE_KEYS and r.get(key + "_range") and v is not None:
                low, high = r[key + "_range"]
                unit = (
                    f" /{OP_SHORT.get(r.get('op', ''), r.get('op', ''))}"
                    if key == "cpu_us_per_op"
                    else ""
                )
                row.append(f"{fmt(v)}{unit} [{fmt(low)}-{fmt(high)}]")
            elif key == "cpu_us_per_op" and v is not None:
                row.append(f"{fmt(v)} /{OP_SHORT.get(r.get('op', ''), r.get('op', ''))}")
            elif key == "gen_cpu_pct" and v is not None:
                row.append(fmt(v, 0) + (" (!)" if r.get("gen_saturated") else ""))
            elif key == "server_wait_pct" and v is not None:
                row.append(f"{v:.0f}/{r.get('gen_wait_pct', 0):.0f}")
            elif key == "other_pct":
                shown = f"{v:.0f}/{r.get('steal_pct') or 0:.0f}" if v is not None else "-"
                row.append(shown + (" (~)" if noisy(r) else ""))
            elif key in ("ops_per_s", "conn_per_s", "server_cpu_pct") and v is not None:
                behind = key == "ops_per_s" and r.get("behind")
                row.append(f"{v:,.0f}" + (" (<)" if behind else ""))
            else:
                row.append(fmt(v))
        if not r.get("ok", False):
            row[1] += " FAIL"
        rows.append(row)
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(row) for row in rows]
    return "\n".join(out)


# Figures whose median is shown over rounds; the counts of failures are summed instead.
MEDIAN_KEYS = (
    "cpu_us_per_op",
    "ops_per_s",
    "latency_p50_ms",
    "latency_p99_ms",
    "rss_kib_per_conn",
    "conn_per_s",
    "server_cpu_pct",
    "gen_cpu_pct",
    "server_wait_pct",
    "gen_wait_pct",
    "other_pct",
    "steal_pct",
)
SUM_KEYS = ("lost", "unexpected_disconnects", "failed_registrations")
RANGE_KEYS = ("cpu_us_per_op", "latency_p99_ms")


def medians(results: Sequence[Result]) -> list[Result]:
    """One row per scenario and server (in the order of the runs): the median of each
    figure over the rounds, the range of the headline ones, failures summed; a scenario
    that failed in any round is not ok."""
    groups: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        groups.setdefault((r["scenario"], r["server"]), []).append(r)
    out: list[Result] = []
    for runs in groups.values():
        measured = [r for r in runs if "cpu_us_per_op" in r]
        row: Result = {k: v for k, v in (measured or runs)[0].items() if k != "round"}
        if not measured:
            out.append(row)
            continue
        row["aggregate"] = f"median of {len(runs)} rounds"
        row["rounds"] = len(runs)
        for key in MEDIAN_KEYS:
            values = [float(r[key]) for r in measured if isinstance(r.get(key), int | float)]
            row[key] = statistics.median(values) if values else None
            if key in RANGE_KEYS and values:
                row[key + "_range"] = [min(values), max(values)]
        for key in SUM_KEYS:
            row[key] = sum(int(r.get(key) or 0) for r in measured)
        row["ok"] = all(r.get("ok") for r in runs)
        row["gen_saturated"] = any(r.get("gen_saturated") for r in measured)
        row["behind"] = any(r.get("behind") for r in measured)
        errors = [r["error"] for r in runs if r.get("error")]
        if errors:
            row["error"] = errors[0]
        out.append(row)
    return out


def paired_ratios(results: Sequence[Result], scenario: str, a: str, b: str) -> list[float]:
    """``a``'s figure over ``b``'s in each round of ``scenario`` (runs of one round are
    minutes apart at most, so their ratio is less noisy than the ratio of medians)."""
    by_round: dict[int, dict[str, float]] = {}
    for r in results:
        v = r.get("cpu_us_per_op")
        if r.get("scenario") == scenario and isinstance(v, int | float) and "aggregate" not in r:
            by_round.setdefault(int(r.get("round", 1)), {})[r["server"]] = float(v)
    return [f[a] / f[b] for f in by_round.values() if a in f and b in f and f[b] > 0]


def lookup(results: Sequence[Result], server: str, scenario: str, key: str) -> float | None:
    for r in results:
        if r.get("server") == server and r.get("scenario") == scenario:
            v = r.get(key)
            return float(v) if isinstance(v, int | float) else None
    return None


HISTORY_RATIO = 1.3  # fan-out with history on, against history off (same run)


def targets(results: Sequence[Result], raw: Sequence[Result] = ()) -> list[str]:
    """salon's acceptance targets, checked against this run's figures (where present).
    ``raw``: the single runs behind ``results`` when those are medians of rounds."""
    out: list[str] = []

    def get(server: str, scenario: str, key: str = "cpu_us_per_op") -> float | None:
        return lookup(results, server, scenario, key)

    def check(name: str, value: float | None, limit: float | None, unit: str) -> None:
        if value is None or limit is None:
            return
        verdict = "ok" if value <= limit else "MISSED"
        out.append(f"{verdict:6} {name}: salon {value:.2f} {unit} <= {limit:.2f}")

    check("fanout max rate <= ngIRCd", get("salon", "fanout"), get("ngircd", "fanout"), "µs")
    insp = get("inspircd", "fanout")
    check(
        "fanout max rate <= 1.5x InspIRCd",
        get("salon", "fanout"),
        None if insp is None else 1.5 * insp,
        "µs",
    )
    check("fanout 500 msg/s <= ngIRCd", get("salon", "fanout500"), get("ngircd", "fanout500"), "µs")
    check("fanout 500 msg/s p99", get("salon", "fanout500", "latency_p99_ms"), 2.0, "ms")
    check("dm <= ngIRCd", get("salon", "dm"), get("ngircd", "dm"), "µs")
    check("idle memory", get("salon", "idle", "rss_kib_per_conn"), 6.0, "KiB/conn")
    check("churn", get("salon", "churn"), 100.0, "µs/registration")
    for scenario in ("fanout", "fanout500"):
        ratios = paired_ratios(raw or results, scenario, "salon", "salon-nohist")
        if ratios:
            ratio = statistics.median(ratios)
            each = ", ".join(f"{x:.2f}" for x in ratios)
            verdict = "ok" if ratio <= HISTORY_RATIO else "MISSED"
            out.append(
                f"{verdict:6} {scenario} history on/off: {ratio:.2f}x <= {HISTORY_RATIO}x"
                + (f" (median of rounds: {each})" if len(ratios) > 1 else "")
            )
    return out


def write_jsonl(results: Sequence[Result], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for r in results:
            f.write(json.dumps(r, sort_keys=True) + "\n")


def save(results: Sequence[Result], path: Path, latest: str) -> None:
    """The results in ``path``, and again in ``latest`` beside it (best effort)."""
    write_jsonl(results, path)
    with contextlib.suppress(OSError):
        write_jsonl(results, path.parent / latest)


SERVER_COLORS = {
    "salon": "#d9822b",
    "salon-nohist": "#f0b878",
    "ngircd": "#4c72b0",
    "inspircd": "#55a868",
}
# (scenario, key, title, salon's absolute target or None)
PANELS: list[tuple[str, str, str, float | None]] = [
    ("fanout", "cpu_us_per_op", "fan-out, max rate\nserver CPU µs / delivery", None),
    ("fanout500", "cpu_us_per_op", "fan-out, 500 msg/s\nserver CPU µs / delivery", None),
    ("fanout500", "latency_p99_ms", "fan-out, 500 msg/s\nlatency p99, ms", 2.0),
    ("dm", "cpu_us_per_op", "private messages, max rate\nserver CPU µs / message", None),
    ("churn", "cpu_us_per_op", "connect-register-quit\nserver CPU µs / registration", 100.0),
    ("idle", "rss_kib_per_conn", "idle connections\nserver RSS KiB / connection", 6.0),
]


def chart(results: Sequence[Result], path: Path, title: str) -> str | None:
    """Grouped bars, one panel per headline figure; returns why it was not drawn, if not."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed"
    servers: list[str] = []
    for r in results:
        if r["server"] not in servers:
            servers.append(r["server"])
    panels = [
        pn for pn in PANELS if any(lookup(results, s, pn[0], pn[1]) is not None for s in servers)
    ]
    if not panels:
        return "no figures to draw"
    cols = 3
    nrows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.4 * nrows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    for ax, (scenario, key, label, target) in zip(axes.flat, panels, strict=False):
        values = [lookup(results, s, scenario, key) for s in servers]
        xs = list(range(len(servers)))
        heights = [v if v is not None else 0.0 for v in values]
        colors = [SERVER_COLORS.get(s, "#888888") for s in servers]
        bars = ax.bar(xs, heights, color=colors)
        for bar, v in zip(bars, values, strict=True):
            text = "n/a" if v is None else (f"{v:.2f}" if v < 100 else f"{v:.0f}")
            ax.annotate(
                text,
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=9,
            )
        if target is not None:
            ax.axhline(target, color="#d9822b", linestyle="--", linewidth=1)
            ax.annotate(
                "salon target",
                (len(servers) - 0.5, target),
                ha="right",
                va="bottom",
                fontsize=8,
                color="#d9822b",
            )
        present = [v for v in values if v is not None and v > 0]
        if key.startswith("latency") and present and max(present) > 20 * min(present):
            ax.set_yscale("log")
        ax.set_xticks(xs, servers)
        ax.set_title(label, fontsize=10)
        ax.margins(y=0.18)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title + "  (lower is better)", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return None
