"""A DAG whose ``@task`` runs a dlt pipeline into DuckDB and emits one asset event per table it loaded
(``DLT_ASSETS_DUCKDB`` names the file). It lives in the dags folder because Airflow 3.3's ``dag.test()`` only
runs DAGs found there. dlt is imported inside the task, as it should be in a real DAG file."""

from __future__ import annotations

import os
import tempfile
from datetime import datetime
from typing import Any

from airflow_dbt_cloud_dlt.assets import dlt_asset_alias, dlt_load_asset_events

try:
    from airflow.sdk import DAG, task
except ImportError:  # Airflow 2
    from airflow import DAG  # type: ignore[no-redef,attr-defined,unused-ignore]
    from airflow.decorators import task  # type: ignore[no-redef,attr-defined,unused-ignore]

DUCKDB = os.environ.get("DLT_ASSETS_DUCKDB") or os.path.join(tempfile.gettempdir(), "dlt_assets_e2e.duckdb")

with DAG("dlt_assets_e2e", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dlt_assets_dag:

    @task(outlets=[dlt_asset_alias("raw_loads")])
    def load() -> list[str]:
        import dlt

        pipeline = dlt.pipeline(
            pipeline_name="dlt_assets_e2e",
            destination=dlt.destinations.duckdb(DUCKDB),
            dataset_name="raw",
            pipelines_dir=os.path.join(os.path.dirname(DUCKDB), "pipelines"),
        )
        rows: list[dict[str, Any]] = [{"order_id": 1, "amount": 5.0}, {"order_id": 2, "amount": 7.5}]
        info = pipeline.run([rows], table_name="orders")
        return [t.uri for t in dlt_load_asset_events(info, alias="raw_loads")]

    load()
