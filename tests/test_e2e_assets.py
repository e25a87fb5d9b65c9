"""End to end on Airflow 3.3 (issue 11): real ``airflow dag-processor``, ``scheduler``, ``triggerer`` and
``api-server`` processes on SQLite, the emulator serving its example dbt project, and no ``dags test``.

An upstream DAG, started through the REST API with a conf, stands in for a dlt load (its first task returns the
changed tables' Asset URIs through XCom), then runs the dbt Cloud job deferred with ``select_from_load`` and an
``asset_alias``: the scheduler runs it, the triggerer waits on the run, and the task emits one asset event per
node the run built. Two downstream DAGs are scheduled on model Assets: ``fct_orders`` (downstream of raw.orders)
and ``stg_customers`` (downstream of raw.customers only). A run for raw.orders and raw.customers starts both; a
selective run for raw.orders starts the fct_orders consumer again, and never the stg_customers one.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import AIRFLOW_2, TOKEN
from test_e2e_triggerer import _answers, wait_until
from test_e2e_watcher import WatchStack, scheduler_stack
from test_select_from_load import NAMESPACE, dbt_job, full_run

from airflow_dbt_cloud_dlt.assets import table_asset_uri

pytestmark = pytest.mark.skipif(AIRFLOW_2, reason="SQLite with LocalExecutor and a real scheduler need Airflow 3")
JOB_ID = 301
UPSTREAM = "e2e_load_then_dbt"
CONSUMERS = {"fct_orders": "e2e_on_fct_orders", "stg_customers": "e2e_on_stg_customers"}
ALIAS = "e2e_dbt_models"

DAG_FILE = f"""
from datetime import datetime

from airflow.sdk import DAG, task

from airflow_dbt_cloud_dlt.assets import asset, table_asset_uri
from airflow_dbt_cloud_dlt.operators import RunDbtCloudJobOperator

NAMESPACE = {NAMESPACE!r}
START = datetime(2026, 1, 1)

with DAG("{UPSTREAM}", schedule=None, start_date=START, catchup=False, params={{"tables": []}}):

    @task
    def load(params=None):
        # stands in for a dlt load: the tables it wrote, named by the rule
        return [table_asset_uri(NAMESPACE, "warehouse", "raw", table) for table in params["tables"]]

    loaded = load()
    loaded >> RunDbtCloudJobOperator(
        task_id="dbt",
        job_id={JOB_ID},
        deferrable=True,
        poll_interval=1,
        retries=0,
        select_from_load=loaded,
        asset_alias="{ALIAS}",
        asset_namespace=NAMESPACE,
    )

for model, dag_id in {CONSUMERS!r}.items():
    model_asset = asset(table_asset_uri(NAMESPACE, "warehouse", "analytics", model))
    with DAG(dag_id, schedule=[model_asset], start_date=START, catchup=False):

        @task
        def consume():
            pass

        consume()
"""


def model_uri(name: str) -> str:
    return table_asset_uri(NAMESPACE, "warehouse", "analytics", name)


def steps(run: dict[str, Any]) -> list[str]:
    """The commands of the run's steps, as the emulator ran them (the trigger's ``steps_override``)."""
    assert run["trigger"]["steps_override"] == [step["name"].split("`")[1] for step in run["run_steps"]]
    return list(run["trigger"]["steps_override"])


class AssetStack(WatchStack):
    def asset_runs(self, dag_id: str) -> int:
        return len(self.query("select id from dag_run where dag_id = ? and run_type = 'asset_triggered'", dag_id))

    def triggered_by(self, dag_id: str) -> list[set[int]]:
        """Per asset-triggered run of ``dag_id``, in order: the dbt Cloud runs of the events that started it."""
        rows = self.query(
            "select dag_run.id, asset_event.extra from dag_run "
            "join dagrun_asset_event on dagrun_asset_event.dag_run_id = dag_run.id "
            "join asset_event on asset_event.id = dagrun_asset_event.event_id "
            "where dag_run.dag_id = ? and dag_run.run_type = 'asset_triggered' order by dag_run.id",
            dag_id,
        )
        found: dict[int, set[int]] = {}
        for dag_run, extra in rows:
            found.setdefault(dag_run, set()).add(json.loads(extra)["dbt_cloud_run_id"])
        return list(found.values())

    def upstream_state(self, run_id: str) -> str | None:
        rows = self.query("select state from dag_run where dag_id = ? and run_id = ?", UPSTREAM, run_id)
        return rows[0][0] if rows and rows[0][0] in ("success", "failed") else None

    def events(self, run_id: str) -> dict[str, dict[str, Any]]:
        """The asset events that the upstream DAG run's tasks recorded: URI -> extra."""
        rows = self.query(
            "select asset.uri, asset_event.extra from asset_event join asset on asset.id = asset_event.asset_id "
            "where asset_event.source_dag_id = ? and asset_event.source_run_id = ?",
            UPSTREAM,
            run_id,
        )
        return {uri: json.loads(extra) for uri, extra in rows}

    def scheduler_heartbeat(self) -> str:
        rows = self.query("select max(latest_heartbeat) from job where job_type = 'SchedulerJob' and state = 'running'")
        return str(rows[0][0])

    def load_then_dbt(self, *tables: str) -> tuple[str, dict[str, Any]]:
        """Start the upstream DAG through the REST API, as a user would, and wait for it to end: its DAG run id
        and the dbt Cloud run it started."""
        before = set(self.emulator.runs)
        response = self.api(
            "POST", f"/dags/{UPSTREAM}/dagRuns", json={"logical_date": None, "conf": {"tables": tables}}
        )
        run_id = str(response.json()["dag_run_id"])
        assert wait_until(lambda: self.upstream_state(run_id), 240, f"the {UPSTREAM} run to end") == "success"
        (dbt_run,) = [run for run_key, run in self.emulator.runs.items() if run_key not in before]
        return run_id, dbt_run


@pytest.fixture(scope="module")
def stack() -> Iterator[AssetStack]:
    # Short worker heartbeats, and runs of 6 s: a trigger that fires before the worker's exit on defer() is
    # reported makes Airflow 3.3 fail the resumed task ("finished with state success, but the task instance's
    # state attribute is queued": a race inside Airflow); the supervisor notices that exit within
    # min_heartbeat_interval (5 s by default).
    with scheduler_stack(AssetStack, "assets", DAG_FILE, AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL="1") as st:
        # one full run, outside Airflow, so that the job has a latest manifest.json for select_from_load
        full_run(st.emulator, dataclasses.replace(dbt_job(JOB_ID), run_seconds=6))
        for name in ("api-server", "dag-processor", "scheduler", "triggerer"):
            st.start(name, name)
        wait_until(lambda: _answers(st.api_port), 120, "the api-server")
        wait_until(
            lambda: len(st.query("select dag_id from dag where is_stale = 0")) == 3, 180, "the three DAGs to be parsed"
        )
        yield st


def test_a_run_for_orders_and_customers_starts_both_downstream_dags(stack: AssetStack) -> None:
    run_id, dbt_run = stack.load_then_dbt("orders", "customers")
    assert dbt_run["status"] == 10
    assert steps(dbt_run) == ["dbt deps", "dbt build --select source:raw.orders+ source:raw.customers+"]
    events = stack.events(run_id)
    built = {"stg_orders", "fct_orders", "dim_customers", "stg_customers", "customers_snapshot"}  # not stg_payments
    assert set(events) == {model_uri(name) for name in built}
    assert {extra["dbt_cloud_run_id"] for extra in events.values()} == {dbt_run["id"]}
    for dag_id in CONSUMERS.values():
        wait_until(lambda dag_id=dag_id: stack.asset_runs(dag_id) == 1, 120, f"the scheduler to start {dag_id}")
        assert stack.triggered_by(dag_id) == [{dbt_run["id"]}]
    # the scheduler ran the dbt task, and the triggerer waited on the run
    assert list(stack.home.rglob(f"logs/dag_id={UPSTREAM}/**/task_id=dbt/*.log.trigger.*.log"))


def test_a_selective_run_for_orders_starts_only_the_fct_orders_consumer(stack: AssetStack) -> None:
    assert [stack.asset_runs(dag_id) for dag_id in CONSUMERS.values()] == [1, 1], "runs after the first test"
    run_id, dbt_run = stack.load_then_dbt("orders")
    assert dbt_run["status"] == 10
    assert steps(dbt_run) == ["dbt deps", "dbt build --select source:raw.orders+"]
    events = stack.events(run_id)
    assert set(events) == {model_uri(name) for name in ("stg_orders", "fct_orders", "dim_customers")}
    assert all(extra["dbt_cloud_run_id"] == dbt_run["id"] for extra in events.values())
    wait_until(lambda: stack.asset_runs(CONSUMERS["fct_orders"]) == 2, 120, "the fct_orders consumer's second run")
    assert stack.triggered_by(CONSUMERS["fct_orders"])[1] == {dbt_run["id"]}
    # a few more scheduler loops, in which it would have started the stg_customers consumer
    beats: set[str] = set()
    wait_until(lambda: beats.add(stack.scheduler_heartbeat()) or len(beats) > 5, 60, "five scheduler heartbeats")
    assert stack.asset_runs(CONSUMERS["stg_customers"]) == 1
    assert not stack.query("select * from asset_dag_run_queue where target_dag_id = ?", CONSUMERS["stg_customers"])
    assert TOKEN not in stack.all_output()
