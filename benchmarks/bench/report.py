"""RESULTS.md: the header, the targets, then each scenario's sections, then the notes."""

from __future__ import annotations

import argparse
import os
import platform
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

from .scenarios import artifact, capacity, faults, imports, orphans, scale, selective, waiting
from .table import Target


def machine() -> dict[str, str]:
    """CPUs, OS and the versions of what is compared."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "os": platform.platform(),
        "python": platform.python_version(),
        "airflow": version("apache-airflow"),
        "official": version("apache-airflow-providers-dbt-cloud"),
        "ours": version("airflow-dbt-cloud-dlt"),
        "aiohttp": version("aiohttp"),
        "httpx": version("httpx"),
    }


def targets(
    results: list[dict[str, Any]],
    conc: dict[str, Any],
    live: dict[str, Any] | None,
    target_n: int,
    extra: dict[str, Any] | None = None,
) -> list[Target]:
    extra = extra or {}
    return [
        *waiting.targets(results, target_n),
        *capacity.targets(conc),
        *scale.targets(live),
        faults.target(results),
        *imports.targets(extra.get("imports")),
        *artifact.targets(extra.get("artifact")),
        *orphans.targets(extra.get("orphans")),
    ]


def header(args: argparse.Namespace, info: dict[str, str], started: float, elapsed: float) -> list[str]:
    command = "python benchmarks/run.py " + " ".join(args.argv)
    return [
        "# Benchmark: DbtCloudRunTrigger vs the official DbtCloudRunJobTrigger",
        "",
        f"- Date: {datetime.fromtimestamp(started, timezone.utc):%Y-%m-%d %H:%M UTC}; the whole benchmark took "
        f"{elapsed / 60:.1f} min.",
        f"- Machine: {info['nproc']} CPUs ({info['cpu']}), {info['os']}; Python {info['python']}.",
        f"- Versions: apache-airflow {info['airflow']}, apache-airflow-providers-dbt-cloud {info['official']}, "
        f"airflow-dbt-cloud-dlt {info['ours']}, aiohttp {info['aiohttp']}, httpx {info['httpx']}.",
        f"- Regenerate: `{command.strip()}` (from the repository root, with `.venv/bin/python`; `make bench` runs "
        "the defaults).",
        f"- Setup: every run lasts {args.run_seconds:g} s, poll interval {args.poll:g} s; the emulator "
        "(`python -m airflow_dbt_cloud_dlt.testing --tls`) serves https with a self-signed CA that both clients "
        "trust; N triggers per client process, all in one asyncio event loop; 80 % of the runs succeed and 20 % "
        "fail; run starts are spread evenly over one poll interval. The two sides run one after the other "
        "against the same emulator process, never at the same time. See `benchmarks/README.md` for the method.",
        '- "ours" = `airflow_dbt_cloud_dlt.triggers.DbtCloudRunTrigger`; "official" = '
        "`airflow.providers.dbt.cloud.triggers.dbt.DbtCloudRunJobTrigger` with its default hook settings.",
    ]


def notes(info: dict[str, str]) -> list[str]:
    return [
        "",
        "## Notes",
        "",
        "- In-loop CPU is `time.process_time()` from just before the triggers are built to the last event; whole-process "
        "CPU is `getrusage(RUSAGE_SELF)` user + system at exit and includes starting Python and importing Airflow "
        "(about the same for both sides). The CPU target is judged on the in-loop figure, the waiting work that grows "
        "with N. One-time warm-ups (our lazy imports; the official hook's ProvidersManager lookup) run before the loop.",
        "- Detection delay = the client's `time.time()` at the event - the run's `finished_at` from the emulator "
        "(same machine, same clock).",
        f"- The machine has {info['nproc']} CPUs and the emulator shares them with the client; the official trigger "
        'opens a new TLS connection for every poll, which also loads the emulator (see "emulator CPU").',
    ]


def render(
    results: list[dict[str, Any]],
    live: dict[str, Any] | None,
    args: argparse.Namespace,
    started: float,
    elapsed: float,
    extra: dict[str, Any] | None = None,
) -> str:
    """The whole Markdown report; ``extra`` holds the figures of the imports and artifact scenarios."""
    conc = capacity.max_concurrency(results)
    info = machine()
    lines = header(args, info, started, elapsed)
    lines += ["", f"## Targets (N = {args.target_n}, measured in this run)", ""]
    lines += ["| target | result | figures |", "|---|---|---|"]
    for name, ok, detail in targets(results, conc, live, args.target_n, extra):
        lines.append(f"| {name} | {'PASS' if ok else 'FAIL'} | {detail} |")
    lines += waiting.render(results)
    lines += faults.render(results)
    lines += faults.render_stress(results)
    lines += capacity.render(conc)
    lines += scale.render(live)
    lines += imports.render((extra or {}).get("imports"))
    lines += artifact.render((extra or {}).get("artifact"))
    lines += orphans.render((extra or {}).get("orphans"))
    lines += capacity.FOOTNOTE
    lines += selective.render((extra or {}).get("selective"))
    lines += notes(info)
    return "\n".join(lines) + "\n"
