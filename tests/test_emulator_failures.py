"""A failed run looks like a real dbt Cloud failed run, over real loopback HTTP: dbt's error in the failing
step's log, a ``run_results.json`` (schema v6) naming the failed node, and a failure report that names it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from conftest import ACCOUNT_ID, TOKEN

from airflow_dbt_cloud_dlt.api import DbtCloudClient
from airflow_dbt_cloud_dlt.api.reporting import failure_report
from airflow_dbt_cloud_dlt.testing import DbtCloudEmulator, JobScript, StepScript

A = f"/api/v2/accounts/{ACCOUNT_ID}"
RESULT_KEYS = {"unique_id", "status", "message", "execution_time", "adapter_response", "timing", "thread_id"}
RESULT_KEYS |= {"failures", "relation_name"}
REVENUE_ERROR = "Database Error in model revenue (models/marts/revenue.sql)"


@pytest.fixture
def emu() -> Iterator[DbtCloudEmulator]:
    with DbtCloudEmulator(accounts={ACCOUNT_ID: TOKEN}) as emulator:
        yield emulator


@pytest.fixture
def api() -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Token {TOKEN}"
    return session


def failed_run(emu: DbtCloudEmulator, api: requests.Session, **script: Any) -> int:
    """Trigger a job scripted to fail (over HTTP) and move the clock past its end."""
    emu.add_job(JobScript(job_id=5, account_id=ACCOUNT_ID, outcome="error", run_seconds=10, **script))
    response = api.post(f"{emu.base_url}{A}/jobs/5/run/", json={"cause": "test"})
    assert response.status_code == 200, response.text
    emu.advance(60)
    run_id: int = response.json()["data"]["id"]
    return run_id


def run_results(emu: DbtCloudEmulator, api: requests.Session, run_id: int, **params: Any) -> dict[str, Any]:
    response = api.get(f"{emu.base_url}{A}/runs/{run_id}/artifacts/run_results.json", params=params)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def test_failing_step_log_shows_the_dbt_error(emu: DbtCloudEmulator, api: requests.Session) -> None:
    run_id = failed_run(emu, api)  # the default step logs "Running with dbt=1.9.0\nDone. PASS=1" when it passes
    run = api.get(f"{emu.base_url}{A}/runs/{run_id}/", params={"include_related": "run_steps"}).json()["data"]
    assert run["status"] == 20
    (step,) = run["run_steps"]
    logs = step["logs"]
    assert step["status"] == 20 and logs == step["truncated_debug_logs"]
    assert "Database Error in model my_model (models/my_model.sql)" in logs
    assert "ERROR creating sql table model prod.my_model" in logs
    assert logs.splitlines()[-1] == "Done. PASS=2 WARN=0 ERROR=1 SKIP=1 TOTAL=4"
    assert "Done. PASS=1" not in logs


def test_failed_run_serves_run_results_with_the_failed_node(emu: DbtCloudEmulator, api: requests.Session) -> None:
    run_id = failed_run(emu, api, status_message=REVENUE_ERROR)
    listed = api.get(f"{emu.base_url}{A}/runs/{run_id}/artifacts/").json()["data"]
    assert listed == ["manifest.json", "run_results.json"]
    results = run_results(emu, api, run_id)
    assert results["metadata"]["dbt_schema_version"] == "https://schemas.getdbt.com/dbt/run-results/v6.json"
    assert {"metadata", "results", "args", "elapsed_time"} <= set(results)
    by_id = {r["unique_id"]: r for r in results["results"]}
    assert all(set(r) >= RESULT_KEYS for r in results["results"])
    failed = by_id["model.analytics.revenue"]
    assert failed["status"] == "error" and failed["message"].startswith(REVENUE_ERROR)
    assert failed["relation_name"] == '"analytics"."prod"."revenue"'
    assert [r["status"] for r in results["results"]] == ["success", "success", "error", "skipped"]
    assert run_results(emu, api, run_id, step=1) == results  # the failing step's artifacts, as the report asks
    job_latest = api.get(f"{emu.base_url}{A}/jobs/5/artifacts/run_results.json").json()
    assert job_latest == results
    run = api.get(f"{emu.base_url}{A}/runs/{run_id}/").json()["data"]
    assert run["artifacts_saved"] is True and run["can_retry"] is True


def test_failure_outside_dbt_has_no_run_results(emu: DbtCloudEmulator, api: requests.Session) -> None:
    clone = StepScript("Clone git repository", "fatal: repository not found", outcome="error")
    run_id = failed_run(emu, api, steps=[clone, StepScript("Invoke dbt with `dbt build`")])
    assert api.get(f"{emu.base_url}{A}/runs/{run_id}/artifacts/").json()["data"] is None
    run = api.get(f"{emu.base_url}{A}/runs/{run_id}/", params={"include_related": "run_steps"}).json()["data"]
    assert run["run_steps"][0]["logs"] == "fatal: repository not found"
    assert run["can_retry"] is False and run["retry_not_supported_reason"] == "RETRY_NO_RUN_RESULTS"


def test_failure_report_names_the_failed_node(emu: DbtCloudEmulator, api: requests.Session) -> None:
    steps = [StepScript("Invoke dbt with `dbt deps`", "Done."), StepScript("Invoke dbt with `dbt build`")]
    run_id = failed_run(emu, api, status_message=REVENUE_ERROR, steps=steps)
    credentials = {"api_token": TOKEN, "account_id": ACCOUNT_ID, "base_url": emu.base_url}
    with DbtCloudClient(credentials) as client:
        report = failure_report(client, run_id)
    assert "Failed step 2 of 2: Invoke dbt with `dbt build`" in report
    assert "ERROR=1" in report  # the step log's tail
    nodes = report.split("Failed nodes:\n", 1)[1]
    assert nodes.startswith(f"  - model.analytics.revenue: {REVENUE_ERROR}\n    compiled code at ")
    assert "stg_orders" not in nodes and "fct_orders" not in nodes  # only the failed node
    assert TOKEN not in report
    requested = [(r.path, r.query) for r in emu.requests if r.path.endswith("run_results.json")]
    assert requested == [(f"{A}/runs/{run_id}/artifacts/run_results.json", {"step": ["2"]})]
