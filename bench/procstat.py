"""Readers for /proc: a server's CPU time and resident memory, the generator's own CPU time,
and what else ran on the CPUs they are pinned to."""

from __future__ import annotations

import os
import resource

CLK_TCK: int = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[bytes]:
    with open(f"/proc/{pid}/stat", "rb") as f:
        raw = f.read()
    # The command name (field 2) is in parentheses and may contain spaces: split after it.
    # fields[0] is then field 3 (state): field N is fields[N - 3].
    return raw[raw.rindex(b")") + 2 :].split()


def _ticks(fields: list[bytes]) -> int:
    # Fields 14 and 15: utime and stime of all the process's threads, in clock ticks.
    return int(fields[11]) + int(fields[12])


def _pids_where(index: int, value: int) -> list[int]:
    """The processes, other than ``value`` itself, whose stat field ``index`` (of
    _stat_fields) is ``value``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == value:
            continue
        try:
            if int(_stat_fields(int(entry))[index]) == value:
                found.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return found


def group_pids(pgid: int) -> list[int]:
    """The processes of a process group (field 5 of /proc/<pid>/stat), the leader first."""
    return [pgid, *_pids_where(2, pgid)]


def child_pids(pid: int) -> list[int]:
    """The processes whose parent (field 4 of /proc/<pid>/stat) is ``pid``. PostgreSQL's
    backends are the postmaster's children, each in a session of its own."""
    return _pids_where(1, pid)


def tree_cpu_seconds(pid: int) -> float:
    """utime + stime of a process and of its children, as they are now (a child that
    exited is not counted)."""
    total = 0
    for p in (pid, *child_pids(pid)):
        try:
            total += _ticks(_stat_fields(p))
        except (OSError, ValueError, IndexError):
            continue
    return total / CLK_TCK


def cpu_seconds(pid: int, group: bool = True) -> float:
    """utime + stime of a process, all threads, from /proc/<pid>/stat; with `group`, summed
    over its process group (the server is the leader of its own), should it fork workers."""
    total = _ticks(_stat_fields(pid))
    if group:
        for other in group_pids(pid)[1:]:
            try:
                total += _ticks(_stat_fields(other))
            except (OSError, ValueError, IndexError):
                continue
    return total / CLK_TCK


def _vmrss(pid: int) -> int:
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1])
    return 0


def rss_kib(pid: int, group: bool = True) -> int:
    """VmRSS in KiB from /proc/<pid>/status; with `group`, summed over its process group."""
    total = _vmrss(pid)
    if group:
        for other in group_pids(pid)[1:]:
            try:
                total += _vmrss(other)
            except OSError:
                continue
    return total


def run_delay_seconds(pid: int, group: bool = True) -> float:
    """Time the process's threads spent runnable but waiting for a CPU (field 2 of
    /proc/<pid>/task/<tid>/schedstat): high when other processes compete for its core."""
    total = 0
    for p in group_pids(pid) if group else [pid]:
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{p}/task/{tid}/schedstat", "rb") as f:
                    total += int(f.read().split()[1])
            except (OSError, ValueError, IndexError):
                continue
    return total / 1e9


def cpu_core_seconds(cpu: int) -> tuple[float, float]:
    """(busy, steal) seconds of one CPU since boot, from its ``cpuN`` line in /proc/stat.

    Busy is user + nice + system: whatever ran there, the server or not. Interrupt time
    is left out: with IRQ time accounting, a server's own softirq work (loopback network)
    is counted there and not in its process, and would look like someone else's.
    Steal is time the hypervisor gave this virtual CPU's turn to another machine: the
    guest's clock goes on, so a server's latency grows with it while its CPU time does not.
    (0.0, 0.0) when the line is missing (fewer CPUs, no /proc).
    """
    prefix = f"cpu{cpu} ".encode()
    try:
        with open("/proc/stat", "rb") as f:
            for line in f:
                if line.startswith(prefix):
                    v = [int(x) for x in line.split()[1:9]]
                    user, nice, system, _idle, _iowait, _irq, _softirq, steal = v
                    busy = user + nice + system
                    return busy / CLK_TCK, steal / CLK_TCK
    except (OSError, ValueError):
        pass
    return 0.0, 0.0


def self_cpu_seconds() -> float:
    """CPU time (user + system) used so far by this process: the load generator."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime
