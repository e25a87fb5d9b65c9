"""The orphaned-run reconciler's decisions (``orphans``), against the emulator and a real Airflow metadata DB.

The real-process cases (a triggerer that is down when the task is marked failed) are in test_e2e_triggerer.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import ACCOUNT_ID, run_task, start_run

from airflow_dbt_cloud_dlt.testing import JobScript

SECRET = "orphans-test-secret"


@pytest.fixture(autouse=True)
def marker_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBT_CLOUD__MARKER_SECRET", SECRET)


def cause_of(emulator: Any, run_id: int) -> str:
    return str(emulator.get_run(run_id)["trigger"]["cause"])


def listed(emulator: Any, *run_ids: int) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """The runs as the reconciler lists them (with their trigger), under one connection."""
    return {("dbt_cloud_default", ACCOUNT_ID): [emulator.get_run(run_id) for run_id in run_ids]}


@pytest.mark.usefixtures("airflow_db", "airflow_conn")
def test_only_runs_a_task_started_and_waited_for_carry_the_waited_token(emulator: Any) -> None:
    emulator.add_job(JobScript(job_id=51, account_id=ACCOUNT_ID, run_seconds=0.2, serial=False))
    waited = run_task("operator", job_id=51, poll_interval=0.1)
    fire_and_forget = run_task("operator", job_id=51, wait_for_termination=False)
    opted_out = run_task("operator", job_id=51, poll_interval=0.1, cancel_on_kill=False)
    assert {waited.state, fire_and_forget.state, opted_out.state} == {"success"}
    causes = [run["trigger"]["cause"] for run in sorted(emulator.runs.values(), key=lambda run: run["id"])]
    assert ["[afw:" in cause for cause in causes] == [True, False, False], causes
    assert all("[af:" in cause and len(cause) <= 255 for cause in causes)


def test_find_orphans_cancels_only_this_deployments_waited_runs_whose_task_is_gone(
    emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_dbt_cloud_dlt.markers import marker_for_task, waited_marker_of, waited_suffix
    from airflow_dbt_cloud_dlt.orphans import find_orphans

    ours = marker_for_task("dag", "dbt", "manual_1", -1, 0)
    waiting = marker_for_task("dag", "dbt", "manual_2", -1, 0)
    unwaited = marker_for_task("dag", "dbt", "manual_3", -1, 0)
    runs = {
        "orphan": start_run(emulator, 61, cause=f"x {ours} {waited_suffix(ours, 61)}", run_seconds=60, serial=False),
        "waiting": start_run(emulator, 61, cause=f"x {waiting} {waited_suffix(waiting, 61)}", run_seconds=60),
        "not waited": start_run(emulator, 61, cause=f"x {unwaited}", run_seconds=60),
        "by hand": start_run(emulator, 61, cause="started by hand", run_seconds=60),
        # the token of job 61 copied onto a run of another job: it does not check out there
        "other job": start_run(emulator, 62, cause=f"x {ours} {waited_suffix(ours, 61)}", run_seconds=60),
        "forged token": start_run(emulator, 61, cause=f"x {ours} [afw:0123456789abcdef]", run_seconds=60),
    }
    monkeypatch.setenv("DBT_CLOUD__MARKER_SECRET", "another-airflow")
    theirs = marker_for_task("dag", "dbt", "manual_1", -1, 0)
    runs["another airflow"] = start_run(emulator, 61, cause=f"x {theirs} {waited_suffix(theirs, 61)}", run_seconds=60)
    monkeypatch.setenv("DBT_CLOUD__MARKER_SECRET", SECRET)

    orphans = find_orphans(listed(emulator, *runs.values()), waited_marker_of, {waiting})
    assert [orphan.run_id for orphan in orphans] == [runs["orphan"]]
    assert (orphans[0].job_id, orphans[0].marker) == (61, ours)


@pytest.mark.usefixtures("airflow_db", "airflow_conn")
def test_waiting_markers_come_from_task_instances_that_still_wait(emulator: Any) -> None:
    """A finished task's run is not waited for; the marker the reconciler computes is the one the task sent."""
    from airflow.utils.session import create_session

    from airflow_dbt_cloud_dlt.markers import marker_for_task, waited_marker_of
    from airflow_dbt_cloud_dlt.orphans import describe, waiting_markers

    emulator.add_job(JobScript(job_id=71, account_id=ACCOUNT_ID, run_seconds=0.1))
    ti = run_task("operator", job_id=71, poll_interval=0.1)
    (run,) = emulator.runs.values()
    marker = waited_marker_of(run["trigger"]["cause"], 71)
    assert marker is not None
    with create_session() as session:
        assert marker not in waiting_markers(session, marker_for_task)  # the task succeeded: nobody waits
        assert describe(session, marker, marker_for_task) == f"task {ti.dag_id}.dbt of {ti.run_id} is success"


def test_no_cancels_without_a_marker_secret(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """With Airflow's public fallback key, markers cannot tell deployments apart: the reconciler does nothing."""
    from airflow_dbt_cloud_dlt import markers
    from airflow_dbt_cloud_dlt.orphans import Reconciler

    monkeypatch.delenv("DBT_CLOUD__MARKER_SECRET")
    monkeypatch.setattr(markers, "marker_key", lambda: (markers.UNBOUND_KEY, "none"))
    reconciler = Reconciler(job=object(), interval=1)
    assert reconciler.run_once() == [] and reconciler.run_once() == []
    assert caplog.text.count("Orphaned dbt Cloud runs are not cancelled: no marker secret") == 1


async def test_a_sensors_trigger_never_cancels_on_kill(emulator: Any, airflow_conn: str) -> None:
    from airflow_dbt_cloud_dlt.triggers import DbtCloudRunTrigger

    run_id = start_run(emulator, 81, run_seconds=30)
    trigger = DbtCloudRunTrigger(airflow_conn, run_id, poll_interval=0.1)  # as a sensor defers: no cancel_on_kill
    await trigger.on_kill()
    await asyncio.sleep(0.1)
    assert emulator.get_run(run_id)["status"] == 3


@pytest.mark.parametrize(
    ("task", "expected"),
    [("sensor", False), ("operator", True), ("operator opted out", False)],
)
def test_deferring_hands_the_trigger_whether_to_cancel_on_kill(task: str, expected: bool) -> None:
    from airflow_dbt_cloud_dlt._compat import AIRFLOW_3
    from airflow_dbt_cloud_dlt.operators import RunDbtCloudJobOperator
    from airflow_dbt_cloud_dlt.sensors import DbtCloudRunSensor

    if AIRFLOW_3:
        from airflow.sdk.exceptions import TaskDeferred
    else:
        from airflow.exceptions import TaskDeferred  # type: ignore[no-redef,attr-defined,unused-ignore]

    waiter: Any = {
        "sensor": DbtCloudRunSensor(task_id="s", run_id=5),
        "operator": RunDbtCloudJobOperator(task_id="o", job_id=5),
        "operator opted out": RunDbtCloudJobOperator(task_id="o", job_id=5, cancel_on_kill=False),
    }[task]
    with pytest.raises(TaskDeferred) as deferred:
        waiter.defer_wait(5, poll_interval=1.0, timeout=None)
    assert deferred.value.trigger.serialize()[1]["cancel_on_kill"] is expected
