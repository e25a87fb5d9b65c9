"""``imports``: what importing each side's operators module costs beyond Airflow's own import.

Each measurement is a fresh process (the bytecode cache warm) that first imports what any operator module
needs from Airflow (``airflow.sdk``'s operator, sensor and hook bases on Airflow 3; their Airflow 2 homes
otherwise; the trigger base), then times one import of the side's operators module. The median of several
processes is reported.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from typing import Any

from ..clients import client_env
from ..config import REPO, SIDES
from ..context import Bench
from ..table import Target

MODULES = {"ours": "airflow_dbt_cloud_dlt.operators", "official": "airflow.providers.dbt.cloud.operators.dbt"}
LIMIT_MS = 20.0
_CODE = """
import importlib, json, time
try:
    import airflow.sdk
    from airflow.sdk import BaseHook, BaseOperator, BaseOperatorLink, BaseSensorOperator
except ImportError:
    from airflow.hooks.base import BaseHook
    from airflow.models.baseoperator import BaseOperator
    from airflow.sensors.base import BaseSensorOperator
import airflow.triggers.base
started = time.perf_counter()
importlib.import_module({module!r})
print(json.dumps({{"ms": (time.perf_counter() - started) * 1000}}))
"""


def run(bench: Bench) -> None:
    repeats = 3 if bench.args.quick else 7
    figures: dict[str, Any] = {}
    for side in SIDES:
        home = bench.workdir / f"imports_{side}"
        home.mkdir(parents=True, exist_ok=True)
        env = client_env(side, bench.emulator, home, bench.workdir / "pycache")
        code = _CODE.format(module=MODULES[side])
        times = []
        for _ in range(repeats + 1):  # the first fills the bytecode cache of the module
            done = subprocess.run(
                [sys.executable, "-c", code],
                env=env,
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(f"importing {MODULES[side]} failed:\n{done.stderr[-3000:]}")
            times.append(json.loads(done.stdout.strip().splitlines()[-1])["ms"])
        figures[side] = {"module": MODULES[side], "median_ms": statistics.median(times[1:]), "runs_ms": times[1:]}
        print(f"[bench]   imports {side:8} {MODULES[side]}: {figures[side]['median_ms']:.1f} ms", flush=True)
    bench.extra["imports"] = figures


def targets(figures: dict[str, Any] | None) -> list[Target]:
    if not figures or "ours" not in figures:
        return []
    ours = figures["ours"]["median_ms"]
    detail = f"ours {ours:.1f} ms, official {figures.get('official', {}).get('median_ms', float('nan')):.1f} ms"
    return [(f"importing the operators costs ≤ {LIMIT_MS:.0f} ms beyond Airflow's own", ours <= LIMIT_MS, detail)]


def render(figures: dict[str, Any] | None) -> list[str]:
    if not figures:
        return []
    lines = ["", "## Importing the operators module, beyond Airflow's own import (median of fresh processes)", ""]
    lines += ["| side | module | median | runs |", "|---|---|---:|---|"]
    for side in SIDES:
        if side in figures:
            f = figures[side]
            runs = ", ".join(f"{ms:.1f}" for ms in f["runs_ms"])
            lines.append(f"| {side} | `{f['module']}` | {f['median_ms']:.1f} ms | {runs} |")
    return lines
