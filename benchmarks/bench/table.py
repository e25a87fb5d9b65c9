"""Markdown formatting shared by the report's sections."""

from __future__ import annotations

from typing import Any

Target = tuple[str, bool, str]  # a row of the targets table: what, met, figures


def fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def ratio(official: float | None, ours: float | None, digits: int = 1) -> str:
    """``official / ours`` as ``12.3x``."""
    if official is None or ours is None:
        return "n/a"
    if ours == 0:
        return "∞" if official else "1.0x"
    return f"{official / ours:,.{digits}f}x"


def find(results: list[dict[str, Any]], side: str, n: int | None = None, faulty: bool = False) -> dict[str, Any] | None:
    """The first result of ``side`` (and of size ``n``, if given), with or without faults; never a stress one."""
    for r in results:
        if r["side"] == side and n in (None, r["n"]) and bool(r["fault_rate"]) == faulty and not r.get("stress"):
            return r
    return None


PAIR_ROWS = [  # title, key (None: events / runs), digits, with the official / ours ratio
    ("API requests seen by the emulator", "requests", 0, True),
    ("client CPU s, in the loop (triggers start → last event)", "cpu_loop", 2, True),
    ("client CPU s, whole process (incl. importing Airflow)", "cpu_total", 2, True),
    ("peak RSS MB (whole process)", "maxrss_mb", 0, True),
    ("RSS growth MB during the loop", "rss_growth_mb", 0, True),
    ("emulator CPU s while serving this client", "server_cpu", 2, True),
    ("other processes' CPU s meanwhile (noise on a shared machine)", "background_cpu", 2, False),
    ("detection delay s, median", "delay_median", 2, False),
    ("detection delay s, p90", "delay_p90", 2, False),
    ("detection delay s, max", "delay_max", 2, False),
    ("events received / runs", None, 0, False),
    ("wrong final statuses", "wrong", 0, False),
    ("loop wall time s", "loop_seconds", 1, False),
]


def pair_table(ours: dict[str, Any], official: dict[str, Any]) -> list[str]:
    """One scenario's figures, ours against the official trigger's."""
    lines = ["| metric | ours | official | official / ours |", "|---|---:|---:|---:|"]
    for title, key, digits, with_ratio in PAIR_ROWS:
        if key is None:
            a, b = f"{ours['events']} / {ours['n']}", f"{official['events']} / {official['n']}"
            lines.append(f"| {title} | {a} | {b} | |")
            continue
        shown = ratio(official[key], ours[key]) if with_ratio else ""
        if key == "delay_median":
            shown = f"Δ {official[key] - ours[key]:+.2f} s (official - ours)"
        lines.append(f"| {title} | {fmt(ours[key], digits)} | {fmt(official[key], digits)} | {shown} |")
    return lines
