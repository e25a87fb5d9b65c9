"""A dbt Cloud run announces the models it built as Assets, and a second DAG runs when one of them is rebuilt.

``example_dbt_cloud_assets`` runs the job (deferred) with ``asset_alias``: when the run succeeds, the task reads
its ``run_results.json`` and ``manifest.json`` and emits one asset event per model, seed and snapshot built,
through the alias, so this DAG never lists the models. ``example_dbt_cloud_assets_consumer`` is scheduled on one
model's Asset, ``fct_orders``, named by the same rule (``table_asset_uri``): it starts when, and only when, a run
rebuilt that model, and prints what the event carries (run id and URL, rows, tests).

Settings (env vars, read at parse time) as in ``example_dbt_cloud_deferred``, plus
``DBT_CLOUD_ASSET_NAMESPACE``: the warehouse, as an OpenLineage namespace such as ``snowflake://org-account``
(default: the emulator's example project, a DuckDB file ``warehouse.duckdb`` in the temp directory). Leave
``asset_namespace`` out of the operator to use the connection's ``asset_namespace`` extra instead. Needs the
``assets`` extra (ijson).
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import pendulum

from airflow_dbt_cloud_dlt.assets import asset, table_asset_uri
from airflow_dbt_cloud_dlt.operators import RunDbtCloudJobOperator

try:  # Airflow 3
    from airflow.sdk import dag, task
except ImportError:  # Airflow 2.11
    from airflow.decorators import dag, task

CONN_ID = os.environ.get("DBT_CLOUD_CONN_ID", "dbt_cloud_default")
JOB_ID = int(os.environ.get("DBT_CLOUD_JOB_ID", "1"))
POLL_INTERVAL = float(os.environ.get("DBT_CLOUD_POLL_INTERVAL", "10"))
NAMESPACE = os.environ.get("DBT_CLOUD_ASSET_NAMESPACE") or "duckdb://" + os.path.join(
    tempfile.gettempdir(), "warehouse.duckdb"
)
ALIAS = "dbt_cloud_models"
#: The Asset of one model: database, schema and table as the manifest names them.
FCT_ORDERS = asset(table_asset_uri(NAMESPACE, "warehouse", "analytics", "fct_orders"))


@dag(
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    params={"job_id": JOB_ID},
    tags=["dbt-cloud", "assets", "example"],
)
def example_dbt_cloud_assets() -> None:
    RunDbtCloudJobOperator(
        task_id="run_dbt_cloud_job",
        dbt_cloud_conn_id=CONN_ID,
        job_id="{{ params.job_id }}",
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        asset_alias=ALIAS,  # adds AssetAlias("dbt_cloud_models") to the task's outlets
        asset_namespace=NAMESPACE,
    )


@dag(
    schedule=[FCT_ORDERS],
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["dbt-cloud", "assets", "example"],
)
def example_dbt_cloud_assets_consumer() -> None:
    @task
    def report(**context: Any) -> list[dict[str, Any]]:
        """The events that started this run: which dbt Cloud run rebuilt fct_orders, and how it went."""
        events = context.get("triggering_asset_events") or context.get("triggering_dataset_events") or {}
        extras = [dict(event.extra) for updates in events.values() for event in updates]
        for extra in extras:
            print(
                f"{extra.get('unique_id')} rebuilt by dbt Cloud run {extra.get('dbt_cloud_run_id')}: "
                f"{extra.get('rows_affected')} rows, tests passed/warned/failed "
                f"{extra.get('tests_passed')}/{extra.get('tests_warned')}/{extra.get('tests_failed')} "
                f"({extra.get('dbt_cloud_run_url')})"
            )
        return extras

    report()


example_dbt_cloud_assets()
example_dbt_cloud_assets_consumer()
