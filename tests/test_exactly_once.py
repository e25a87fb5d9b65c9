"""Exactly-once triggering across Airflow retries and ambiguous trigger failures (``dag.test()``)."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from conftest import TOKEN, run_task

from airflow_dbt_cloud_dlt.testing import JobScript

pytestmark = pytest.mark.usefixtures("airflow_db", "airflow_conn")


def run_dag(**kwargs: Any) -> Any:
    """One operator task with one immediate retry by default; its task instance."""
    return run_task("operator", **{"retries": 1, "poll_interval": 0.1, "retry_delay": 0, **kwargs})


def runs_of(emulator: Any, job_id: int) -> list[dict[str, Any]]:
    return sorted((r for r in emulator.runs.values() if r["job_definition_id"] == job_id), key=lambda r: r["id"])


@pytest.mark.parametrize("deferrable", [False, True], ids=["blocking", "deferred"])
def test_retry_after_a_crash_attaches_to_the_running_run(emulator: Any, deferrable: bool) -> None:
    emulator.add_job(JobScript(job_id=1, account_id=1, run_seconds=1.0))
    ti = run_dag(job_id=1, crash="raise", deferrable=deferrable)
    assert ti.state == "success" and ti.try_number == 2
    (run,) = runs_of(emulator, 1)
    assert run["status"] == 10


def test_retry_accepts_a_run_that_already_succeeded(emulator: Any) -> None:
    emulator.add_job(JobScript(job_id=2, account_id=1, run_seconds=0.0))
    ti = run_dag(job_id=2, crash="raise", wait_for_termination=False)
    assert ti.state == "success"
    assert len(runs_of(emulator, 2)) == 1


def test_retry_after_a_failed_run_starts_a_new_run(emulator: Any) -> None:
    emulator.add_job(JobScript(job_id=3, account_id=1, run_seconds=0.2, outcome_sequence=["error", "success"]))
    ti = run_dag(job_id=3, steps_override=["dbt build -s orders"])
    assert ti.state == "success" and ti.try_number == 2
    first, second = runs_of(emulator, 3)
    assert (first["status"], second["status"]) == (20, 10)
    assert second["trigger"]["steps_override"] == ["dbt build -s orders"]


def test_retry_from_failure_reruns_this_tasks_own_run_with_its_overrides(emulator: Any) -> None:
    emulator.add_job(JobScript(job_id=4, account_id=1, run_seconds=0.2, outcome_sequence=["error", "success"]))
    ti = run_dag(job_id=4, retry_from_failure=True, steps_override=["dbt build -s orders"])
    assert ti.state == "success"
    first, rerun = runs_of(emulator, 4)
    assert rerun["trigger"]["cause_category"] == "rerun" and rerun["retrying_run_id"] == first["id"]
    assert rerun["trigger"]["steps_override"] == ["dbt build -s orders"]
    assert [r.path.rsplit("/", 2)[-2] for r in emulator.requests if r.method == "POST"] == ["run", "rerun"]


def test_never_attaches_to_a_run_started_by_someone_else(emulator: Any) -> None:
    emulator.add_job(JobScript(job_id=5, account_id=1, run_seconds=0.5, serial=False))
    requests.post(  # a scheduled run of the same job, already in progress
        f"{emulator.base_url}/api/v2/accounts/1/jobs/5/run/",
        json={"cause": "Triggered by schedule"},
        headers={"Authorization": f"Token {TOKEN}"},
        timeout=5,
    ).raise_for_status()
    ti = run_dag(job_id=5, crash="raise")
    assert ti.state == "success"
    other, ours = runs_of(emulator, 5)
    assert "[af:" not in other["trigger"]["cause"] and "[af:" in ours["trigger"]["cause"]


def test_ambiguous_trigger_failure_finds_the_run_instead_of_triggering_again(emulator: Any) -> None:
    emulator.add_job(JobScript(job_id=6, account_id=1, run_seconds=0.2))
    emulator.faults.set(rate=1.0, kinds=("reset_after",), methods=("POST",), seed=1)
    ti = run_dag(job_id=6, retries=0)
    emulator.faults.clear()
    assert ti.state == "success"
    (run,) = runs_of(emulator, 6)
    assert run["status"] == 10
    assert sum(1 for r in emulator.requests if r.method == "POST") == 1  # never sent twice


def test_marker_search_reads_runs_whose_list_entry_lacks_the_trigger(emulator: Any, credentials: Any) -> None:
    """Some servers leave ``trigger`` out of list answers: the search must then read those runs one by one."""
    from airflow_dbt_cloud_dlt.api.client import DbtCloudClient
    from airflow_dbt_cloud_dlt.api.idempotency import find_marked_run

    emulator.add_job(JobScript(job_id=7, account_id=1, run_seconds=30, serial=False))
    with DbtCloudClient(credentials) as client:
        mine = client.trigger_job_run(7, {"cause": "mine [af:0123456789abcdef]"})
        client.trigger_job_run(7, {"cause": "someone else's"})
        original = client.list_runs

        def list_without_trigger(**kwargs: Any) -> list[dict[str, Any]]:
            return [{**run, "trigger": None} for run in original(**kwargs)]

        client.list_runs = list_without_trigger  # type: ignore[method-assign]
        found = find_marked_run(client, 7, "[af:0123456789abcdef]")
    assert found is not None and found["id"] == mine["id"]


def test_a_clear_starts_a_new_run_while_a_retry_accepts_the_series_run(emulator: Any, airflow_conn: str) -> None:
    """Airflow raises try_number on a clear too; only a retry (a try after the series' first) may reuse a run."""
    from types import SimpleNamespace

    from airflow_dbt_cloud_dlt.operators import RunDbtCloudJobOperator

    emulator.add_job(JobScript(job_id=8, account_id=1, run_seconds=0.0))
    operator = RunDbtCloudJobOperator(task_id="dbt", job_id=8, retries=1, wait_for_termination=False)

    def execute(try_number: int, max_tries: int) -> int:
        ti = SimpleNamespace(
            dag_id="d",
            task_id="dbt",
            run_id="r",
            map_index=-1,
            try_number=try_number,
            max_tries=max_tries,
            xcom_push=lambda **_: None,
        )
        return operator.execute({"ti": ti})  # type: ignore[arg-type]

    first = execute(try_number=1, max_tries=1)
    assert execute(try_number=2, max_tries=1) == first  # a retry: the series' run succeeded, no new run
    cleared = execute(try_number=3, max_tries=3)  # cleared after try 2: a new series (tries 3 and 4)
    assert cleared != first and len(runs_of(emulator, 8)) == 2
