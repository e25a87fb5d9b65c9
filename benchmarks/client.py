#!/usr/bin/env python
"""Client process of the benchmark: one "triggerer" that waits for N runs with N triggers in one event loop.

Started by the driver (``run.py``), never by hand. It imports its side (``bench/sides/``) and does the
one-time warm-ups, signals "ready", waits for the run ids, builds one trigger per run, awaits each first
event and writes the event times and statuses and its own CPU and memory figures as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib
import json
import os
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from airflow.providers.common.compat.connection import get_async_connection
from bench.config import CONN_ID, SIDES
from bench.measure import rusage, threads_cpu_seconds


async def warm_up(side: Any) -> None:
    """The first connection lookup (Task SDK supervisor, secrets backends), then the side's own warm-up."""
    conn = await get_async_connection(CONN_ID)
    await side.warm_up(str(conn.host))


def wait_for_run_ids(ready: Path, ids_file: Path) -> list[int]:
    """Tell the driver that this "triggerer" is up, then wait for the runs to watch (started by then)."""
    ready.write_text(str(os.getpid()))
    while not ids_file.exists():
        time.sleep(0.005)
    return list(json.loads(ids_file.read_text()))


def profiled(run: Callable[[], None], out: str) -> None:
    """Run ``run`` under cProfile; write the profile and a text summary next to it."""
    profiler = cProfile.Profile()
    profiler.enable()
    run()
    profiler.disable()
    profiler.dump_stats(out)
    with open(out + ".txt", "w") as text:
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(60)
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(40)


def watch(args: argparse.Namespace, make: Callable[[int], Any], run_ids: list[int]) -> dict[str, Any]:
    """Build the triggers in one event loop, await each first event; return the events and CPU figures."""
    events: dict[int, dict[str, Any]] = {}
    cpu_at_last_event: list[float] = []

    async def wait_one(trigger: Any, run_id: int) -> None:
        started = time.time()
        event = await trigger.run().__anext__()
        payload = dict(event.payload)
        events[run_id] = {
            "time": time.time(),
            "started": started,
            "status": payload.get("status"),
            "message": str(payload.get("message", ""))[:300],
        }

    async def main() -> None:
        triggers = [(make(run_id), run_id) for run_id in run_ids]
        await asyncio.gather(*(wait_one(trigger, run_id) for trigger, run_id in triggers))
        cpu_at_last_event.append(time.process_time())

    before = rusage()
    loop_started, cpu_started = time.time(), time.process_time()
    if args.profile_out:
        profiled(lambda: asyncio.run(main()), args.profile_out)
    else:
        asyncio.run(main())
    cpu_loop = cpu_at_last_event[0] - cpu_started  # not counting the loop's shutdown
    cpu_shutdown = time.process_time() - cpu_at_last_event[0]
    loop_ended = time.time()
    after = rusage()
    return {
        "loop_started": loop_started,
        "loop_ended": loop_ended,
        "cpu_total": after["cpu"],
        "cpu_before_loop": before["cpu"],
        "cpu_loop": cpu_loop,
        "cpu_loop_shutdown": cpu_shutdown,
        "maxrss_mb": after["maxrss_mb"],
        "maxrss_before_loop_mb": before["maxrss_mb"],
        "events": {str(run_id): event for run_id, event in events.items()},
    }


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--side", choices=SIDES, required=True)
    parser.add_argument("--run-ids", required=True, help="JSON list of run ids; the client waits for this file")
    parser.add_argument("--ready", required=True, help="file the client writes once it is up")
    parser.add_argument("--result", required=True, help="JSON figures out")
    parser.add_argument("--poll", type=float, default=5.0)
    parser.add_argument("--trigger-timeout", type=float, default=600.0)
    parser.add_argument("--profile-out", help="cProfile the loop into this file")
    parser.add_argument("--prime", action="store_true", help="stop after the warm-ups (fills the bytecode cache)")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    # Only this side's modules: importing the other side would change this process's CPU and memory.
    side = importlib.import_module(f"bench.sides.{args.side}")
    asyncio.run(warm_up(side))
    if args.prime:
        return 0
    run_ids = wait_for_run_ids(Path(args.ready), Path(args.run_ids))
    figures = watch(args, lambda run_id: side.make_trigger(run_id, args.poll, args.trigger_timeout), run_ids)
    # CPU seconds per thread, to see where in-loop CPU goes besides the event loop.
    result = {"threads_cpu": threads_cpu_seconds(), "side": args.side, "n": len(run_ids), **figures}
    Path(args.result).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
