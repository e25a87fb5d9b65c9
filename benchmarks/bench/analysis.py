"""Turning one scenario's raw figures (client JSON, request log, runs) into its result."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from datetime import datetime
from typing import Any

from .config import EXPECTED_EVENT


def parse_dbt_time(value: str) -> float:
    """dbt's run timestamps: ``2026-01-01 00:00:00.000000+00:00``."""
    return datetime.fromisoformat(value).timestamp()


def api_requests(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The API requests of the emulator's request log (not its control routes)."""
    return [r for r in records if r["path"].startswith("/api/")]


def ticks(batched: list[dict[str, Any]]) -> list[list[int]]:
    """Group our batched requests (in log order) into poll ticks.

    The poller sends its chunks of sorted run ids one after the other, so the first run id of each request
    grows within a tick; a request whose first id is not larger than the previous one starts a new tick.
    (A retried chunk would also start one: use this on runs without faults.)
    """
    out: list[list[int]] = []
    previous = math.inf
    for index, record in enumerate(batched):
        first = min(int(v) for v in record["query"]["pk__in"])
        if first <= previous:
            out.append([])
        out[-1].append(index)
        previous = first
    return out


def ours_cost(api: list[dict[str, Any]], n: int) -> dict[str, Any]:
    """Our batched reads: ticks, and requests per tick while all N runs were in flight."""
    batched = [r for r in api if r["path"].endswith("/runs/") and "pk__in" in r["query"]]
    batch_sizes = [len(r["query"]["pk__in"]) for r in batched]
    grouped = ticks(batched)
    # Ticks in which every one of the N runs was still being asked for (all N runs in flight).
    full = [len(t) for t in grouped if sum(batch_sizes[i] for i in t) == n]
    return {
        "ticks": len(grouped),
        "full_ticks": len(full),
        "requests_per_full_tick": statistics.median(full) if full else None,
        "max_batch": max(batch_sizes, default=0),
        "batched_requests": len(batched),
        "other_requests": len(api) - len(batched),
    }


def official_cost(api: list[dict[str, Any]], poll: float) -> dict[str, Any]:
    """The official trigger's one GET per run per poll: requests per run, and per run per poll interval."""
    per_run: dict[int, list[float]] = {}
    for r in api:
        parts = r["path"].rstrip("/").split("/")
        if r["method"] == "GET" and len(parts) >= 2 and parts[-2] == "runs" and parts[-1].isdigit():
            per_run.setdefault(int(parts[-1]), []).append(r["time"])
    # Steady state: requests after a run's first poll, per poll interval of elapsed time.
    rates = [
        (len(ts) - 1) / (max(ts) - min(ts)) * poll for ts in per_run.values() if len(ts) >= 3 and max(ts) > min(ts)
    ]
    return {
        "requests_per_run_per_poll": statistics.mean(rates) if rates else None,
        "polls_per_run": statistics.mean(len(ts) for ts in per_run.values()) if per_run else None,
    }


def analyse(
    side: str,
    n: int,
    fault_rate: float,
    run_ids: list[int],
    client: dict[str, Any],
    runs: dict[int, dict[str, Any]],
    summary: dict[str, Any],
    records: list[dict[str, Any]],
    poll: float,
    **extra: float,
) -> dict[str, Any]:
    """One scenario's result: requests, CPU, memory, detection delays and wrong statuses."""
    events = {int(k): v for k, v in client["events"].items()}
    delays: list[float] = []
    wrong_examples: list[str] = []
    wrong = missing = 0
    wrong_kinds: Counter[str] = Counter()
    for run_id in run_ids:
        run, event = runs[run_id], events.get(run_id)
        expected = EXPECTED_EVENT.get(int(run["status"]), "not terminal")
        if event is None:
            missing += 1
            continue
        if event["status"] != expected:
            wrong += 1
            wrong_kinds[f"{expected} reported as {event['status']}"] += 1
            if len(wrong_examples) < 3:
                wrong_examples.append(f"run {run_id}: {expected} reported as {event['status']}: {event['message']}")
        elif run.get("finished_at"):  # delay of the runs reported right (a wrong event may come before the end)
            delays.append(event["time"] - parse_dbt_time(run["finished_at"]))
    api = api_requests(records)
    faults = Counter(r["fault"] for r in api if r["fault"])
    # Requests per poll, measured from the request log (only meaningful without faults).
    cost = ours_cost(api, n) if side == "ours" else official_cost(api, poll)
    return {
        "side": side,
        "n": n,
        "fault_rate": fault_rate,
        "requests": int(summary["total"]),
        "requests_by_route": summary["by_method_path_template"],
        "faults_injected": dict(faults),
        "cpu_total": client["cpu_total"],
        "cpu_loop": client["cpu_loop"],
        "cpu_before_loop": client["cpu_before_loop"],
        "maxrss_mb": client["maxrss_mb"],
        "rss_growth_mb": client["maxrss_mb"] - client["maxrss_before_loop_mb"],
        "loop_seconds": client["loop_ended"] - client["loop_started"],
        "events": len(events),
        "missing": missing,
        "wrong": wrong,
        "wrong_kinds": dict(wrong_kinds),
        "wrong_examples": wrong_examples,
        "delay_median": statistics.median(delays) if delays else None,
        "delay_p90": statistics.quantiles(delays, n=10)[-1] if len(delays) >= 2 else None,
        "delay_max": max(delays) if delays else None,
        "delay_min": min(delays) if delays else None,
        "cost": cost,
        **extra,
        # CPU that other processes used while this client ran: a noise indicator (the machine is shared).
        "background_cpu": extra["machine_cpu"]
        - (client["cpu_total"] - client["cpu_before_loop"])
        - extra["server_cpu"]
        - extra["driver_cpu"],
    }
