"""End to end on Airflow 2.11: real ``airflow scheduler`` and ``airflow triggerer`` processes (SequentialExecutor
on SQLite) against the emulator. Airflow 2.11 has no ``Trigger.on_kill``: a deferred task that is marked failed
gets its dbt Cloud run cancelled only by the triggerer's orphaned-run reconciler (``orphans``).

The task is marked failed with ``set_state``, the function behind the 2.11 UI's "Mark failed" and its REST API
(a webserver process adds nothing to what is tested, and minutes to start).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import AIRFLOW_2, TOKEN, connection_json, start_run
from test_e2e_triggerer import AIRFLOW, Stack, runs_of, wait_until

from airflow_dbt_cloud_dlt.testing import DbtCloudEmulator

pytestmark = pytest.mark.skipif(not AIRFLOW_2, reason="the Airflow 2.11 stack; test_e2e_triggerer covers 3.3")

DAG_ID, JOB_ID = "e2e2_orphan", 201
MARK_FAILED = """
from airflow.api.common.mark_tasks import set_state
from airflow.models import DagBag
dag = DagBag(include_examples=False).get_dag({dag_id!r})
run_id = {run_id!r}
set_state(tasks=[dag.get_task("dbt")], run_id=run_id, state="failed", commit=True)
"""


@pytest.fixture(scope="module")
def stack2() -> Iterator[Stack]:
    home = Path(tempfile.mkdtemp(prefix="airflow2-e2e-"))
    with DbtCloudEmulator(accounts={1: TOKEN}) as emulator:
        st = Stack(home, emulator)
        st.env.update(
            {
                "AIRFLOW__CORE__EXECUTOR": "SequentialExecutor",  # it runs `airflow tasks run`: from this venv
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
                "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "5",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "4",
                "AIRFLOW_CONN_DBT_CLOUD_DEFAULT": connection_json(emulator.base_url),
                "DBT_TEST_DAGS": json.dumps(
                    {DAG_ID: ["operator", {"job_id": JOB_ID, "deferrable": True, "poll_interval": 2, "retries": 0}]}
                ),
            }
        )
        subprocess.run([*AIRFLOW, "db", "migrate"], env=st.env, check=True, capture_output=True, timeout=180)
        st.start("scheduler", "scheduler")
        st.start("triggerer", "triggerer")
        yield st
        for name in list(st.processes):
            st.stop(name)


def test_a_deferred_task_marked_failed_gets_its_run_cancelled_on_airflow_2(stack2: Stack) -> None:
    """The 2.11 triggerer only drops the trigger: the reconciler cancels the run, also when the task was marked
    while no triggerer ran. A run of the same job started by hand at the same time is left alone."""
    by_hand = start_run(stack2.emulator, JOB_ID, cause="started by hand", run_seconds=600, serial=False)
    wait_until(lambda: _dag_known(stack2), 120, "the scheduler to parse the DAG")
    subprocess.run([*AIRFLOW, "dags", "trigger", DAG_ID], env=stack2.env, check=True, capture_output=True, timeout=120)
    wait_until(lambda: stack2.ti_states(DAG_ID).get("dbt") == "deferred", 180, "the task to defer")
    (ours,) = [run for run in runs_of(stack2.emulator, JOB_ID) if run["id"] != by_hand]
    stack2.stop("triggerer")
    run_id = _dag_run_id(stack2)
    subprocess.run(
        [*AIRFLOW[:-2], "-c", MARK_FAILED.format(dag_id=DAG_ID, run_id=run_id)],
        env=stack2.env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    marked_at = time.monotonic()
    assert stack2.ti_states(DAG_ID)["dbt"] == "failed"
    time.sleep(3)
    assert stack2.emulator.get_run(ours["id"])["status"] != 30  # no triggerer: nothing cancelled it yet
    stack2.start("triggerer", "triggerer")
    wait_until(lambda: stack2.emulator.get_run(ours["id"])["status"] == 30, 60, "the orphaned run to be cancelled")
    assert time.monotonic() - marked_at <= 60
    assert stack2.emulator.get_run(by_hand)["status"] == 3  # not this deployment's run
    assert f"Cancelling dbt Cloud run {ours['id']}" in stack2.all_output()
    assert TOKEN not in stack2.all_output()


def _dag_known(stack: Stack) -> bool:
    import sqlite3

    with sqlite3.connect(stack.home / "airflow.db") as db:
        return db.execute("select 1 from dag where dag_id = ?", (DAG_ID,)).fetchone() is not None


def _dag_run_id(stack: Stack) -> str:
    import sqlite3

    with sqlite3.connect(stack.home / "airflow.db") as db:
        (run_id,) = db.execute("select run_id from dag_run where dag_id = ?", (DAG_ID,)).fetchone()
    return str(run_id)
