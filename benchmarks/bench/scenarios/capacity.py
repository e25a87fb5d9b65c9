"""Rate-limit capacity: the most concurrent runs under 5,000 requests/minute at a 5 s poll.

Derived from the request costs that the waiting scenario measured; it runs nothing of its own.
"""

from __future__ import annotations

import math
from typing import Any

from ..config import ACCOUNT_LIMIT_PER_MINUTE, OUR_DEFAULT_SHARE, REFERENCE_POLL
from ..table import Target

FOOTNOTE = [
    "",
    "These figures count polling requests only, derived from the measured cost per poll tick; the budget "
    "does not include what other tools spend on the same account.",
]


def max_concurrency(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Largest number of concurrent runs under 5,000 requests/minute at a 5 s poll, from measured costs."""
    ticks_per_minute = 60.0 / REFERENCE_POLL
    clean = [r for r in results if not r["fault_rate"]]
    out: dict[str, Any] = {"ticks_per_minute": ticks_per_minute}

    official = [r for r in clean if r["side"] == "official" and r["cost"].get("requests_per_run_per_poll")]
    if official:
        measured = max(r["cost"]["requests_per_run_per_poll"] for r in official)  # the most requests per poll
        out["official"] = {
            "measured_requests_per_run_per_poll": {r["n"]: r["cost"]["requests_per_run_per_poll"] for r in official},
            "nominal": math.floor(ACCOUNT_LIMIT_PER_MINUTE / ticks_per_minute / 1.0),
            "from_measured": math.floor(ACCOUNT_LIMIT_PER_MINUTE / ticks_per_minute / measured),
        }
    ours = [r for r in clean if r["side"] == "ours" and r["cost"].get("requests_per_full_tick")]
    if ours:
        largest = max(ours, key=lambda r: r["n"])
        batch = largest["cost"]["max_batch"]
        batches = math.ceil(largest["n"] / batch)
        per_batch = largest["cost"]["requests_per_full_tick"] / batches  # requests per full batch per tick
        out["ours"] = {
            "measured_requests_per_tick": {r["n"]: r["cost"]["requests_per_full_tick"] for r in ours},
            "batch": batch,
            "requests_per_batch_per_tick": per_batch,
            "basis_n": largest["n"],
            "full_limit": batch * math.floor(ACCOUNT_LIMIT_PER_MINUTE / ticks_per_minute / per_batch),
            "default_budget": batch
            * math.floor(ACCOUNT_LIMIT_PER_MINUTE * OUR_DEFAULT_SHARE / ticks_per_minute / per_batch),
        }
    return out


def targets(conc: dict[str, Any]) -> list[Target]:
    """≥ 20,000 runs within our default budget."""
    if "ours" not in conc:
        return []
    figure = conc["ours"]["default_budget"]
    detail = (
        f"{figure:,} within the default 50 % budget ({conc['ours']['full_limit']:,} with the whole limit), "
        f"derived from the measured requests per tick; official: {conc.get('official', {}).get('nominal', 'n/a')}"
    )
    return [("≥ 20,000 concurrent runs under 5,000 req/min at a 5 s poll (request budget)", figure >= 20_000, detail)]


def per_n(figures: dict[int, float], spec: str) -> str:
    """``N=100: 1, N=500: 5`` with each value formatted by ``spec``."""
    return ", ".join(f"N={n:,}: {v:{spec}}" for n, v in figures.items())


def render(conc: dict[str, Any]) -> list[str]:
    """The table of how each side's figure is derived."""
    lines = ["", "## Largest number of concurrent runs under 5,000 requests per minute at a 5 s poll", ""]
    lines += ["| side | how it is derived | concurrent runs |", "|---|---|---:|"]
    if "official" in conc:
        c = conc["official"]
        lines.append(
            f"| official | one GET per run per poll: 5,000 / (60 s / 5 s) = 5,000 / 12 (measured requests per run per "
            f"poll interval in steady state: {per_n(c['measured_requests_per_run_per_poll'], '.3f')}; at the highest measured rate: {c['from_measured']:,}) "
            f"| {c['nominal']:,} |"
        )
    if "ours" in conc:
        c = conc["ours"]
        lines.append(
            f"| ours, whole account limit | measured requests per tick ({per_n(c['measured_requests_per_tick'], 'g')}) = "
            f"{c['requests_per_batch_per_tick']:g} per batch of {c['batch']} runs (basis N={c['basis_n']:,}) → "
            f"{c['batch']} x ⌊5,000 / 12 / {c['requests_per_batch_per_tick']:g}⌋ | {c['full_limit']:,} |"
        )
        lines.append(
            f"| ours, default 50 % budget (`DBT_CLOUD_RATE_LIMIT_SHARE`) | {c['batch']} x "
            f"⌊2,500 / 12 / {c['requests_per_batch_per_tick']:g}⌋ | {c['default_budget']:,} |"
        )
    return lines
