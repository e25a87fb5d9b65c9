"""``selective``: how many nodes a ``select_from_load`` run rebuilds against a full run of the same job, on the
emulator's example dbt project (3 dlt-loaded sources, a seed, 5 models, a snapshot, 7 tests).

The job runs ``dbt deps`` then ``dbt build``. One full run first gives the job its latest ``manifest.json``; then,
for each set of changed tables (as a dlt load would report them), ours plans the run exactly as the operator does
(:func:`airflow_dbt_cloud_dlt.selection.plan_selection`: the manifest through the "get job artifact" endpoint, the
sources matched by database, schema and identifier) and triggers it with the planned ``steps_override``. The
figures are counted from each run's ``run_results.json``. Ours only: the official provider has no equivalent
(there the whole job runs after every load).
"""

from __future__ import annotations

import json
import time
from typing import Any

from ..config import ACCOUNT, TOKEN
from ..context import Bench

SELECT_JOB = 104
RAW = "duckdb:/data/warehouse.duckdb/warehouse/raw"
#: What a load changed -> its tables' Asset URIs (``events`` is a table no dbt source reads).
CASES: dict[str, list[str]] = {
    "raw.orders": [f"{RAW}/orders"],
    "raw.customers": [f"{RAW}/customers"],
    "raw.payments": [f"{RAW}/payments"],
    "raw.orders + raw.customers": [f"{RAW}/orders", f"{RAW}/customers"],
    "raw.events (read by nothing)": [f"{RAW}/events"],
}


def _wait(bench: Bench, run_id: int) -> None:
    deadline = time.monotonic() + 60
    while bench.emulator.runs()[run_id]["status"] not in (10, 20, 30):
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {run_id} did not finish")
        time.sleep(0.1)


def _counts(client: Any, run_id: int) -> dict[str, int]:
    """Built nodes (models, seeds, snapshots) and tests of the run's ``dbt build`` step (the 2nd)."""
    results = json.loads(client.get_run_artifact(run_id, "run_results.json", step=2))["results"]
    tests = sum(1 for r in results if r["unique_id"].startswith("test."))
    models = sum(1 for r in results if r["unique_id"].startswith("model."))
    return {"nodes": len(results) - tests, "models": models, "tests": tests}


def run(bench: Bench) -> None:
    from airflow_dbt_cloud_dlt.api.client import DbtCloudClient
    from airflow_dbt_cloud_dlt.selection import changed_tables, plan_selection

    emulator = bench.emulator
    emulator.control("POST", "reset/")
    steps = [{"name": "Invoke dbt with `dbt deps`"}, {"name": "Invoke dbt with `dbt build`"}]
    job = {"job_id": SELECT_JOB, "account_id": ACCOUNT, "name": "bench selective", "run_seconds": 0.0}
    emulator.control("POST", "jobs/", {**job, "steps": steps, "project": True, "serial": False})
    credentials = {"api_token": TOKEN, "account_id": ACCOUNT, "base_url": emulator.base_url}
    figures: dict[str, Any] = {"cases": []}
    with DbtCloudClient({**credentials, "verify": emulator.ca_cert}) as client:
        full = emulator.trigger(SELECT_JOB)
        _wait(bench, full)
        figures["full"] = _counts(client, full)
        print(f"[bench]   selective full run: {figures['full']}", flush=True)
        for label, uris in CASES.items():
            plan = plan_selection(client, SELECT_JOB, changed_tables(uris))
            case: dict[str, Any] = {"changed": label, "select": " ".join(plan.selectors) or "-", "skipped": plan.skip}
            if plan.skip:
                case |= {"nodes": 0, "models": 0, "tests": 0}
            else:
                body = {"cause": "benchmark: select_from_load", "steps_override": plan.steps}
                response = emulator.session.post(
                    f"{emulator.base_url}/api/v2/accounts/{ACCOUNT}/jobs/{SELECT_JOB}/run/", json=body, timeout=30
                )
                response.raise_for_status()
                run_id = int(response.json()["data"]["id"])
                _wait(bench, run_id)
                case |= _counts(client, run_id)
            figures["cases"].append(case)
            print(f"[bench]   selective {label}: {case}", flush=True)
    bench.extra["selective"] = figures


def render(figures: dict[str, Any] | None) -> list[str]:
    if not figures:
        return []
    full = figures["full"]
    lines = ["", "## Running only what dlt changed (`select_from_load`, the emulator's example project)", ""]
    lines += [
        f"A full run of the job (`dbt deps`, `dbt build`) builds {full['nodes']} nodes ({full['models']} models) "
        f"and runs {full['tests']} tests. Each row is one load's changed tables and the run `select_from_load` "
        "starts for them.",
        "",
        "| tables the load changed | selection | models rebuilt | nodes built | tests run | share of the full run's nodes |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for case in figures["cases"]:
        shown = "skipped (no run)" if case["skipped"] else f"`{case['select']}`"
        share = f"{case['nodes'] / full['nodes']:.0%}" if full["nodes"] else "n/a"
        lines.append(
            f"| {case['changed']} | {shown} | {case['models']} / {full['models']} | {case['nodes']} / {full['nodes']} "
            f"| {case['tests']} / {full['tests']} | {share} |"
        )
    return lines
