"""Fault injection: transient API failures never change an outcome, and never duplicate a run."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from conftest import TOKEN, task_states
from conftest import run_dag as conftest_run_dag

from airflow_dbt_cloud_dlt.testing import JobScript

pytestmark = pytest.mark.usefixtures("airflow_db", "airflow_conn")
FAULTS = ("500", "502", "503", "429", "reset", "stall")


def run_dag(dag_id: str, **kwargs: Any) -> dict[str, str]:
    """The operator DAG with immediate retries; the state of each task."""
    return task_states(conftest_run_dag("operator", dag_id=dag_id, retry_delay=0, **kwargs))


def test_fifty_deferred_runs_with_five_percent_faults_all_succeed_exactly_once(
    emulator: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    emulator.add_job(JobScript(job_id=1, account_id=1, run_seconds=0.2, serial=False))
    emulator.faults.set(rate=0.05, kinds=FAULTS, seed=7, retry_after=0.5, stall_seconds=2.0)
    states = run_dag("faults_50", job_id=1, tasks=50, deferrable=True, poll_interval=0.2, retries=3)
    served = [r.fault for r in emulator.requests if r.fault]
    emulator.faults.clear()

    assert set(states.values()) == {"success"}, states
    assert len(emulator.runs) == 50  # exactly one dbt Cloud run per task instance, across retries too
    assert {run["status"] for run in emulator.runs.values()} == {10}
    assert len(served) >= 3 and {"500", "502", "503"} & set(served)  # the faults really happened
    assert TOKEN not in capfd.readouterr().out


def test_a_failing_job_always_fails_its_task_under_faults(emulator: Any) -> None:
    emulator.add_job(JobScript(job_id=2, account_id=1, run_seconds=0.2, outcome="error", serial=False))
    emulator.faults.set(rate=0.05, kinds=FAULTS, seed=11, retry_after=0.5, stall_seconds=2.0)
    states = run_dag("faults_fail", job_id=2, tasks=10, deferrable=True, poll_interval=0.2, retries=0)
    emulator.faults.clear()
    assert set(states.values()) == {"failed"}, states


def test_a_5xx_on_the_trigger_post_is_sent_again_only_after_checking_no_run_started(emulator: Any) -> None:
    emulator.add_job(JobScript(job_id=3, account_id=1, run_seconds=0.1))
    emulator.faults.set(rate=1.0, kinds=("503",), methods=("POST",), max_faults=2)  # the first two POSTs fail
    states = run_dag("faults_post", job_id=3, deferrable=False, poll_interval=0.1, retries=0)
    emulator.faults.clear()
    posts = [r for r in emulator.requests if r.method == "POST"]
    assert states == {"dbt": "success"}
    assert [r.fault for r in posts] == ["503", "503", None] and len(emulator.runs) == 1
    for failed, resent in itertools.pairwise(posts):
        searches = [r for r in emulator.requests if r.method == "GET" and failed.time < r.time < resent.time]
        assert searches and searches[0].path.endswith("/runs/"), "a POST is resent only after a search"


def test_a_gateway_502_on_the_trigger_post_is_not_resent(emulator: Any) -> None:
    """Behind a 502 or 504 dbt Cloud may still be creating the run: only a later Airflow retry may look again."""
    emulator.add_job(JobScript(job_id=4, account_id=1, run_seconds=0.1))
    emulator.faults.set(rate=1.0, kinds=("502",), methods=("POST",), max_faults=1)
    states = run_dag("faults_502", job_id=4, poll_interval=0.1, retries=0)
    emulator.faults.clear()
    assert states == {"dbt": "failed"}
    assert [r.fault for r in emulator.requests if r.method == "POST"] == ["502"]
