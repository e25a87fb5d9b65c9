"""Process measurement from ``/proc`` and ``getrusage`` (Linux; standard library only: clients import it)."""

from __future__ import annotations

import contextlib
import os
import resource
from pathlib import Path


def rusage() -> dict[str, float]:
    """CPU seconds (user + system) and peak RSS of this process."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu": usage.ru_utime + usage.ru_stime, "maxrss_mb": usage.ru_maxrss / 1024}  # Linux: KiB


def stat_cpu_seconds(stat: Path) -> float:
    """utime + stime from a ``/proc/.../stat`` file."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """CPU seconds that process ``pid`` has used."""
    return stat_cpu_seconds(Path(f"/proc/{pid}/stat"))


def threads_cpu_seconds() -> dict[str, float]:
    """CPU seconds per thread of this process, keyed ``"<tid> <name>"``."""
    threads = {}
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError):
            threads[f"{task.name} {(task / 'comm').read_text().strip()}"] = stat_cpu_seconds(task / "stat")
    return threads


def machine_cpu_seconds() -> float:
    """CPU seconds that all processes of the machine have used (``/proc/stat``; not idle, iowait, guest)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
