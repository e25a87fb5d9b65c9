"""Fault tolerance: the waiting scenario with a share of the GET responses failing (500/502/503/429/reset)."""

from __future__ import annotations

from typing import Any

from ..config import FAULT_KINDS, SIDES
from ..context import Bench
from ..table import Target, find, fmt, pair_table
from .waiting import run_one


def run(bench: Bench) -> None:
    """Both sides at N = ``--fault-n`` with ``--fault-rate`` of the GETs failing; 0 skips."""
    if bench.args.fault_rate > 0:
        for side in SIDES:
            bench.add(run_one(bench, side, bench.args.fault_n, fault_rate=bench.args.fault_rate))


def run_stress(bench: Bench) -> None:
    """Ours only, with ``--stress-fault-rate``: at 5 % its few batched requests see only a handful of faults."""
    if bench.args.stress_fault_rate > 0:
        result = run_one(bench, "ours", bench.args.fault_n, bench.args.stress_fault_rate)
        result["stress"] = True
        bench.add(result)


def target(results: list[dict[str, Any]]) -> Target:
    """No wrong or missing status from ours in any scenario, and a fault scenario was run."""
    ours = [r for r in results if r["side"] == "ours"]
    bad = sum(r["wrong"] + r["missing"] for r in ours)
    faulty = [r for r in ours if r["fault_rate"]]

    def label(r: dict[str, Any]) -> str:
        faults = f" with {r['fault_rate']:.0%} faults" if r["fault_rate"] else ""
        return f"N={r['n']}{faults}: {r['wrong'] + r['missing']}"

    return (
        "no wrong final status, also with 5 % of polls failing" + ("" if faulty else " (fault scenario not run)"),
        bad == 0 and bool(faulty),
        ", ".join(label(r) for r in ours),
    )


def render(results: list[dict[str, Any]]) -> list[str]:
    """The fault scenario's pair table and the wrong statuses it caused."""
    a, b = find(results, "ours", faulty=True), find(results, "official", faulty=True)
    if not (a and b):
        return []
    lines = [
        "",
        f"## Faults: N = {a['n']:,}, {a['fault_rate']:.0%} of GET responses fail "
        f"({', '.join(FAULT_KINDS)}; 429 with Retry-After: 1)",
        "",
        *pair_table(a, b),
        "",
        f"Faults injected: ours {a['faults_injected']}; official {b['faults_injected']}.",
        "",
        f"Wrong statuses, ours: {a['wrong_kinds'] or 'none'}; official: {b['wrong_kinds'] or 'none'}.",
    ]
    lines += [f"- official, e.g. {example}" for example in b["wrong_examples"]]
    lines += [f"- ours, e.g. {example}" for example in a["wrong_examples"]]
    lines += [
        "",
        "The official hook retries nothing by default (`retry_limit=1`), and its trigger turns any exception "
        "into an `error` event, so a single failed poll reports a run that is still running (and later "
        "succeeds) as failed. Failed polls also end those triggers early, which is why their request count "
        "and delays are not comparable with the clean runs.",
    ]
    return lines


def render_stress(results: list[dict[str, Any]]) -> list[str]:
    """The ours-only stress scenario."""
    lines: list[str] = []
    for r in (r for r in results if r.get("stress")):
        lines += [
            "",
            f"## Stress (ours only): N = {r['n']:,}, {r['fault_rate']:.0%} of GET responses fail",
            "",
            f"At 5 % our few batched requests meet only a handful of faults, so this scenario fails "
            f"{r['fault_rate']:.0%} of them (same kinds, same seed).",
            "",
            "| metric | ours |",
            "|---|---:|",
            f"| API requests seen by the emulator | {r['requests']:,} |",
            f"| faults injected | {sum(r['faults_injected'].values())} {r['faults_injected']} |",
            f"| events received / runs | {r['events']} / {r['n']} |",
            f"| wrong final statuses | {r['wrong']} {r['wrong_kinds'] or ''} |",
            f"| detection delay s, median / p90 / max | {fmt(r['delay_median'])} / {fmt(r['delay_p90'])} / "
            f"{fmt(r['delay_max'])} |",
            f"| client CPU s, in the loop | {r['cpu_loop']:.2f} |",
        ]
        lines += [f"- e.g. {example}" for example in r["wrong_examples"]]
    return lines
