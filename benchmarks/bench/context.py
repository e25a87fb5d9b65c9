"""What every scenario gets: the emulator, the options, the work dir, and where its results go."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .emulator import Emulator
from .table import fmt


@dataclass
class Bench:
    emulator: Emulator
    args: argparse.Namespace
    workdir: Path
    results: list[dict[str, Any]] = field(default_factory=list)  # one per side x scenario, in run order
    scale: dict[str, Any] | None = None  # the live large-N check
    extra: dict[str, Any] = field(default_factory=dict)  # further scenarios' figures, by name ("artifact", ...)

    def add(self, result: dict[str, Any]) -> None:
        self.results.append(result)
        print(
            f"[bench]   {result['side']:8} N={result['n']:<5} faults={result['fault_rate']:.0%} "
            f"requests={result['requests']:,} cpu_loop={result['cpu_loop']:.2f}s "
            f"cpu_total={result['cpu_total']:.2f}s rss={result['maxrss_mb']:.0f}MB "
            f"delay median={fmt(result['delay_median'])}s max={fmt(result['delay_max'])}s "
            f"wrong={result['wrong']} missing={result['missing']} server_cpu={result['server_cpu']:.2f}s",
            flush=True,
        )
