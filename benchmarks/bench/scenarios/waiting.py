"""N runs waited for by N triggers in one client process, each side in turn: requests, CPU, memory, delay."""

from __future__ import annotations

import time
from typing import Any

from ..analysis import analyse
from ..clients import Client
from ..config import FAULT_KINDS, FAULT_SEED, SIDES
from ..context import Bench
from ..table import Target, find, fmt, pair_table, ratio


def run_one(bench: Bench, side: str, n: int, fault_rate: float = 0.0) -> dict[str, Any]:
    """One side waits for N runs; with ``fault_rate``, that share of the GET responses fail."""
    emulator, args = bench.emulator, bench.args
    label = f"{side} N={n}" + (f" faults={fault_rate:.0%}" if fault_rate else "")
    print(f"[bench] {label}: starting the client ...", flush=True)
    emulator.reset(args.run_seconds)
    client = Client(emulator, side, label, args, bench.workdir)

    # Start the runs, spread evenly over one poll interval so that run ends fall on every phase of the poll
    # clock (else one lucky or unlucky tick phase would decide the median delay of a whole scenario).
    run_ids: list[int] = []
    t0 = time.monotonic()
    for i in range(n):
        delay = t0 + args.poll * i / n - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        run_ids.append(emulator.trigger_nth(i))
    triggered_in = time.monotonic() - t0

    # From here on every API request that the emulator sees comes from the client.
    emulator.control("DELETE", "requests/")
    if fault_rate:
        faults = {"rate": fault_rate, "kinds": FAULT_KINDS, "seed": FAULT_SEED, "retry_after": 1.0}
        emulator.control("POST", "faults/", {**faults, "methods": ["GET"]})
    client.go(run_ids)
    print(f"[bench] {label}: runs started in {triggered_in:.1f}s; the client waits for them ...", flush=True)
    figures = client.wait(timeout=args.run_seconds + args.trigger_timeout + 120)
    summary = emulator.control("GET", "requests/?summary=1")
    records = emulator.control("GET", "requests/")
    emulator.control("POST", "faults/", {})
    return analyse(
        side,
        n,
        fault_rate,
        run_ids,
        figures,
        emulator.runs(),
        summary,
        records,
        args.poll,
        client_wall=client.wall,
        server_cpu=client.server_cpu,
        triggered_in=triggered_in,
        machine_cpu=client.machine_cpu,
        driver_cpu=client.driver_cpu,
    )


def run(bench: Bench) -> None:
    """Every N of ``--sizes``, ours first, then the official trigger."""
    for n in bench.args.sizes:
        for side in SIDES:
            bench.add(run_one(bench, side, n))


def targets(results: list[dict[str, Any]], target_n: int) -> list[Target]:
    """Requests, in-loop CPU and median delay at N = ``target_n``."""
    ours, official = find(results, "ours", target_n), find(results, "official", target_n)
    if not (ours and official):
        return []
    requests = official["requests"] / max(ours["requests"], 1)
    cpu = official["cpu_loop"] / max(ours["cpu_loop"], 1e-9)
    total = official["cpu_total"] / max(ours["cpu_total"], 1e-9)
    return [
        (
            "≥ 20x fewer API requests",
            requests >= 20,
            f"{official['requests']:,} / {ours['requests']:,} = {requests:.1f}x",
        ),
        (
            "≥ 10x less client CPU (in-loop CPU: the waiting work)",
            cpu >= 10,
            f"{official['cpu_loop']:.2f} s / {ours['cpu_loop']:.2f} s = {cpu:.1f}x "
            f"(whole process incl. imports: {official['cpu_total']:.2f} s / {ours['cpu_total']:.2f} s = {total:.1f}x)",
        ),
        (
            "median detection delay ≤ official + 1 s",
            ours["delay_median"] <= official["delay_median"] + 1.0,
            f"{ours['delay_median']:.2f} s vs {official['delay_median']:.2f} s + 1 s",
        ),
    ]


def pairs(results: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any], dict[str, Any]]]:
    """(N, ours, official) for every N that both sides ran without faults."""
    out = []
    for n in sorted({r["n"] for r in results if not r["fault_rate"]}):
        ours, official = find(results, "ours", n), find(results, "official", n)
        if ours and official:
            out.append((n, ours, official))
    return out


def render(results: list[dict[str, Any]]) -> list[str]:
    """The summary table, then one section per N."""
    lines = [
        "",
        "## Summary",
        "",
        "| N | requests ours / official (ratio) | in-loop CPU s ours / official (ratio) "
        "| process CPU s ours / official | peak RSS MB ours / official | median delay s ours / official "
        "| max delay s ours / official | wrong statuses ours / official |",
        "|---:|---|---|---|---|---|---|---|",
    ]
    for n, a, b in pairs(results):
        lines.append(
            f"| {n:,} | {a['requests']:,} / {b['requests']:,} ({ratio(b['requests'], a['requests'])}) "
            f"| {a['cpu_loop']:.2f} / {b['cpu_loop']:.2f} ({ratio(b['cpu_loop'], a['cpu_loop'])}) "
            f"| {a['cpu_total']:.2f} / {b['cpu_total']:.2f} ({ratio(b['cpu_total'], a['cpu_total'])}) "
            f"| {a['maxrss_mb']:.0f} / {b['maxrss_mb']:.0f} ({ratio(b['maxrss_mb'], a['maxrss_mb'], 2)}) "
            f"| {a['delay_median']:.2f} / {b['delay_median']:.2f} | {a['delay_max']:.2f} / {b['delay_max']:.2f} "
            f"| {a['wrong'] + a['missing']} / {b['wrong'] + b['missing']} |"
        )
    for n, a, b in pairs(results):
        lines += ["", f"## N = {n:,} concurrent triggers", "", *pair_table(a, b), ""]
        lines.append(
            f"Requests by route: ours {a['requests_by_route']}; official {b['requests_by_route']}. "
            f"Ours polled in {a['cost'].get('ticks')} ticks, {a['cost'].get('requests_per_full_tick')} requests per tick "
            f"while all {n:,} runs were in flight (batches of up to {a['cost'].get('max_batch')} run ids); the official "
            f"trigger made {fmt(b['cost'].get('polls_per_run'), 1)} requests per run, "
            f"{fmt(b['cost'].get('requests_per_run_per_poll'), 3)} per run per poll interval in steady state."
        )
    return lines
