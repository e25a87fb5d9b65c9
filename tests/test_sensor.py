"""DbtCloudRunSensor in real Airflow (``dag.test()``), poking and deferred."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import AIRFLOW_2, run_task, start_run, xcom

from airflow_dbt_cloud_dlt.links import DbtCloudRunLink
from airflow_dbt_cloud_dlt.sensors import DbtCloudRunSensor

pytestmark = pytest.mark.usefixtures("airflow_db", "airflow_conn")


def run_sensor(**kwargs: Any) -> str:
    """The sensor's one-task DAG, run; the state of its ``wait`` task."""
    return str(run_task("sensor", **kwargs).state)


@pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferred"])
def test_waits_for_success(emulator: Any, deferrable: bool) -> None:
    run_id = start_run(emulator, 1, run_seconds=0.6)
    assert run_sensor(run_id=str(run_id), deferrable=deferrable, poke_interval=0.2) == "success"
    assert emulator.get_run(run_id)["status"] == 10


@pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferred"])
def test_fails_on_error_and_skips_with_soft_fail(emulator: Any, deferrable: bool) -> None:
    run_id = start_run(emulator, 2, run_seconds=0.2, outcome="error")
    assert run_sensor(run_id=run_id, deferrable=deferrable, poke_interval=0.1, retries=0) == "failed"
    assert run_sensor(run_id=run_id, deferrable=deferrable, poke_interval=0.1, soft_fail=True) == "skipped"


@pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferred"])
def test_sensor_timeout(emulator: Any, deferrable: bool) -> None:
    run_id = start_run(emulator, 3, run_seconds=60)
    assert run_sensor(run_id=run_id, deferrable=deferrable, poke_interval=0.1, timeout=1, retries=0) == "failed"
    assert emulator.get_run(run_id)["in_progress"] is True  # a sensor watches; it never cancels


@pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferred"])
def test_sensor_has_the_dbt_cloud_run_link(emulator: Any, deferrable: bool) -> None:
    run_id = start_run(emulator, 4, run_seconds=0.3)
    ti = run_task("sensor", run_id=run_id, deferrable=deferrable, poke_interval=0.1)
    url = f"{emulator.base_url}/deploy/1/projects/"
    assert ti.state == "success"
    assert str(xcom(ti, "run_url")).startswith(url) and str(xcom(ti, "run_url")).endswith(f"/runs/{run_id}/")
    if AIRFLOW_2:  # the webserver's copy of the task reads the link from XCom
        link = DbtCloudRunLink().get_link(DbtCloudRunSensor(task_id="wait", run_id=run_id), ti_key=ti.key)
    else:  # Airflow 3 computes the link in the worker and stores it
        link = xcom(ti, DbtCloudRunLink().xcom_key)
    assert link == xcom(ti, "run_url")
