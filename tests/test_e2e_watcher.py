"""End to end on Airflow 3.3: real ``airflow dag-processor``, ``scheduler`` and ``triggerer`` processes on SQLite,
and the emulator. A DAG scheduled on an Asset whose ``AssetWatcher`` is a ``DbtCloudJobRunWatcher`` is started
by the scheduler when a run of the job, started outside Airflow, finishes. Then the triggerer is SIGKILLed, a run
finishes while it is down, and the restarted triggerer emits that run, and only that one (the cursor is in the
asset state store, in the metadata DB).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from conftest import AIRFLOW_2, TOKEN, start_run
from test_e2e_triggerer import AIRFLOW, Stack, wait_until

from airflow_dbt_cloud_dlt.testing import DbtCloudEmulator

pytestmark = pytest.mark.skipif(AIRFLOW_2, reason="AssetWatcher and SQLite with LocalExecutor need Airflow 3")
JOB_ID = 201
DAG_ID = "on_dbt_cloud_job_201"

DAG_FILE = f"""
from airflow.sdk import DAG, Asset, AssetWatcher, task

from airflow_dbt_cloud_dlt.triggers import DbtCloudJobRunWatcher

watcher = DbtCloudJobRunWatcher("dbt_cloud_default", {JOB_ID}, poll_interval=1, look_back=600)
job_runs = Asset("dbt_cloud_job_{JOB_ID}", watchers=[AssetWatcher(name="job_{JOB_ID}_runs", trigger=watcher)])

with DAG(dag_id="{DAG_ID}", schedule=[job_runs], catchup=False):

    @task
    def noop():
        pass

    noop()
"""


class WatchStack(Stack):
    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.home / "airflow.db") as db:
            return db.execute(sql, args).fetchall()

    def asset_events(self) -> list[dict[str, Any]]:
        rows = self.query("select extra from asset_event order by id")
        return [json.loads(extra)["payload"] for (extra,) in rows if json.loads(extra).get("from_trigger")]

    def dag_runs(self) -> int:
        return len(self.query("select id from dag_run where dag_id = ? and run_type = 'asset_triggered'", DAG_ID))

    def listings(self) -> int:
        """The watcher's listings (the orphaned-run reconciler, also on the triggerer, lists active runs)."""
        return sum(1 for r in self.emulator.requests if r.query.get("order_by") == ["-finished_at"])


StackT = TypeVar("StackT", bound=Stack)


@contextlib.contextmanager
def scheduler_stack(cls: type[StackT], name: str, dag_file: str, **env: str) -> Iterator[StackT]:
    """A ``cls`` stack with the emulator, a metadata DB migrated, and a dags folder holding ``dag_file``, for the
    dag-processor and scheduler with short intervals; on exit its processes are stopped, all at once."""
    home = Path(tempfile.mkdtemp(prefix=f"airflow-e2e-{name}-"))
    dags = home / "dags"
    dags.mkdir()
    (dags / f"{name}.py").write_text(textwrap.dedent(dag_file))
    with DbtCloudEmulator(accounts={1: TOKEN}) as emulator:
        st = cls(home, emulator)
        st.env |= {
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            **env,
        }
        subprocess.run([*AIRFLOW, "db", "migrate"], env=st.env, check=True, capture_output=True, timeout=180)
        try:
            yield st
        finally:
            for process in st.processes.values():  # all at once: each may take seconds to end its workers
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
            for process_name in list(st.processes):
                st.stop(process_name)


@pytest.fixture(scope="module")
def stack() -> Iterator[WatchStack]:
    with scheduler_stack(WatchStack, "watch", DAG_FILE) as st:
        yield st


def test_a_job_run_started_outside_airflow_starts_the_asset_scheduled_dag(stack: WatchStack) -> None:
    history = start_run(stack.emulator, JOB_ID, run_seconds=0.1)  # finished before the watcher's first look
    wait_until(lambda: stack.emulator.get_run(history)["status"] == 10, 30, "the earlier run to finish")
    for name in ("dag-processor", "scheduler", "triggerer"):
        stack.start(name, name)
    wait_until(
        lambda: stack.query("select id from trigger where classpath like '%DbtCloudJobRunWatcher'"),
        180,
        "the dag-processor to register the watcher",
    )
    wait_until(lambda: stack.listings() >= 2, 120, "the triggerer to run the watcher")
    wait_until(lambda: stack.query("select value from asset_state_store"), 30, "the watcher's first cursor")

    run_id = start_run(stack.emulator, JOB_ID, cause="dbt Cloud scheduler", run_seconds=1)
    wait_until(lambda: stack.dag_runs() >= 1, 120, "the scheduler to start the DAG")
    events = stack.asset_events()
    assert [e["run_id"] for e in events] == [run_id]
    run = stack.emulator.get_run(run_id)
    assert events[0] == {
        "run_id": run_id,
        "job_id": JOB_ID,
        "account_id": 1,
        "status": "success",
        "status_code": 10,
        "finished_at": run["finished_at"],
        "run_url": run["href"],
    }
    assert TOKEN not in json.dumps(events)


def test_a_run_that_finished_while_the_triggerer_was_killed_is_emitted_once_after_restart(stack: WatchStack) -> None:
    before = [e["run_id"] for e in stack.asset_events()]
    assert len(before) == 1, "runs after the first test"
    stack.stop("triggerer", signal.SIGKILL)
    listings = stack.listings()
    while_down = start_run(stack.emulator, JOB_ID, run_seconds=0.5)
    wait_until(lambda: stack.emulator.get_run(while_down)["status"] == 10, 30, "the run to finish")
    time.sleep(2)
    assert stack.listings() == listings, "nobody watches while the triggerer is down"

    stack.start("triggerer", "triggerer")
    wait_until(lambda: len(stack.asset_events()) >= 2, 180, "the restarted triggerer to emit the missed run")
    wait_until(lambda: stack.dag_runs() >= 2, 120, "the scheduler to start the DAG again")
    polled = stack.listings()
    wait_until(lambda: stack.listings() >= polled + 5, 60, "five more ticks of the restarted watcher")
    assert [e["run_id"] for e in stack.asset_events()] == [*before, while_down]  # the first run not again
    assert stack.dag_runs() == 2
