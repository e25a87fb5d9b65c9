#!/usr/bin/env python
"""Side-by-side benchmark: this project's DbtCloudRunTrigger against the official provider's DbtCloudRunJobTrigger.

Run ``python benchmarks/run.py`` (or ``make bench``) from the repository root to regenerate
``benchmarks/RESULTS.md`` and ``RESULTS.json``; ``--only SCENARIO`` runs some scenarios alone. One emulator
process over https serves every scenario; each side runs its triggers in its own client process
(``client.py``), one side after the other. See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.clients import prime
from bench.config import REPO
from bench.context import Bench
from bench.emulator import Emulator
from bench.report import machine, render
from bench.scenarios import artifact, capacity, faults, imports, orphans, scale, selective, waiting

#: In run order. The capacity section has no run of its own: it is derived from the waiting scenario.
SCENARIOS: dict[str, Callable[[Bench], None]] = {
    "waiting": waiting.run,
    "faults": faults.run,
    "stress": faults.run_stress,
    "scale": scale.run,
    "imports": imports.run,
    "artifact": artifact.run,
    "selective": selective.run,
    "orphans": orphans.run,  # a real Airflow stack, ~15 min; with --quick only when named in --only
}
ONLY_OUT = Path(tempfile.gettempdir()) / "dbt-cloud-bench" / "RESULTS.md"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,500,1000", help="comma-separated N (concurrent triggers)")
    parser.add_argument("--run-seconds", type=float, default=30.0, help="how long every dbt Cloud run lasts")
    parser.add_argument("--poll", type=float, default=5.0, help="poll interval of both triggers, seconds")
    parser.add_argument(
        "--fault-rate", type=float, default=None, help="share of failing GETs (default 0.05, 0.2 with --quick); 0 skips"
    )
    parser.add_argument("--fault-n", type=int, default=500, help="N of the fault scenario")
    parser.add_argument("--target-n", type=int, default=500, help="the N whose results are checked against targets")
    parser.add_argument(
        "--out",
        default=None,
        help=f"Markdown report, JSON next to it (default benchmarks/RESULTS.md; {ONLY_OUT} with --only)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke mode: N=20, 3 s runs, 1 s poll")
    parser.add_argument(
        "--only", default="", help=f"comma-separated scenarios to run alone, of: {', '.join(SCENARIOS)}"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile every client (files in the work dir)")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (client logs, JSON); --profile keeps it")
    parser.add_argument(
        "--stress-fault-rate", type=float, default=0.3, help="extra fault scenario for ours only; 0 skips"
    )
    parser.add_argument(
        "--scale",
        type=int,
        default=20800,
        help="live check: ours with this many runs in ONE client process under a 5,000/min limiter; 0 skips",
    )
    parser.add_argument("--scale-window", type=float, default=100.0, help="seconds of steady polling in --scale")
    parser.add_argument("--trigger-timeout", type=float, default=600.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = [a for a in argv if a]  # for the "regenerate" line
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(args.only) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    if args.out is None:  # a partial run never overwrites the committed results
        args.out = str(ONLY_OUT) if args.only else "benchmarks/RESULTS.md"
    if args.quick:
        args.sizes, args.run_seconds, args.poll, args.fault_n, args.target_n = "20", 3.0, 1.0, 20, 20
        args.scale, args.stress_fault_rate = 0, 0.0
        args.trigger_timeout = min(args.trigger_timeout, 60.0)
        # A handful of batched polls at 5 % would often see no fault at all: fail more of them.
        args.fault_rate = 0.2 if args.fault_rate is None else args.fault_rate
    args.fault_rate = 0.05 if args.fault_rate is None else args.fault_rate
    args.sizes = [int(s) for s in str(args.sizes).split(",") if s.strip()]
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    started, t0 = time.time(), time.monotonic()
    out = Path(args.out)
    if not out.is_absolute():
        out = REPO / out
    workdir = Path(tempfile.mkdtemp(prefix="dbt-cloud-bench-"))
    print(f"[bench] work dir {workdir}", flush=True)
    bench = Bench(Emulator(workdir), args, workdir)
    try:
        prime(bench.emulator, workdir)
        for name, run in SCENARIOS.items():
            if not args.only or name in args.only:
                run(bench)
    finally:
        bench.emulator.stop()
        if not (args.keep or args.profile):
            shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - t0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(bench.results, bench.scale, args, started, elapsed, bench.extra or None))
    data = {
        "args": vars(args),
        "machine": machine(),
        "elapsed": elapsed,
        "results": bench.results,
        "max_concurrency": capacity.max_concurrency(bench.results),
        "scale_check": bench.scale,
        **({"extra": bench.extra} if bench.extra else {}),
    }
    out.with_suffix(".json").write_text(json.dumps(data, indent=1, default=str))
    print(f"[bench] wrote {out} and {out.with_suffix('.json')} in {elapsed / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
