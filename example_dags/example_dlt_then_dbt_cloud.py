"""Load data with dlt into DuckDB, then run a dbt Cloud job on it (deferred), then print a summary.

``DEMO_DUCKDB_PATH`` sets the DuckDB file (default: ``airflow_dbt_cloud_dlt_demo.duckdb`` in the temp
directory). dlt and duckdb are imported inside the tasks, so parsing this file stays cheap.
Other settings as in ``example_dbt_cloud_deferred``.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import pendulum

from airflow_dbt_cloud_dlt.operators import RunDbtCloudJobOperator

try:  # Airflow 3
    from airflow.sdk import dag, task
except ImportError:  # Airflow 2.11
    from airflow.decorators import dag, task

CONN_ID = os.environ.get("DBT_CLOUD_CONN_ID", "dbt_cloud_default")
JOB_ID = int(os.environ.get("DBT_CLOUD_JOB_ID", "1"))
POLL_INTERVAL = float(os.environ.get("DBT_CLOUD_POLL_INTERVAL", "10"))
DUCKDB_PATH = os.environ.get("DEMO_DUCKDB_PATH") or os.path.join(
    tempfile.gettempdir(), "airflow_dbt_cloud_dlt_demo.duckdb"
)
DATASET = "raw"


@dag(
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    params={"job_id": JOB_ID},
    tags=["dbt-cloud", "dlt", "example"],
)
def example_dlt_then_dbt_cloud() -> None:
    @task
    def load_orders() -> dict[str, Any]:
        """Load a few sample orders into DuckDB with dlt; dbt Cloud would then model them."""
        import dlt

        @dlt.resource(name="orders", write_disposition="replace", primary_key="order_id")
        def orders() -> Any:
            yield [
                {"order_id": 1, "customer": "alice", "amount": 19.99, "status": "shipped"},
                {"order_id": 2, "customer": "bob", "amount": 5.00, "status": "pending"},
                {"order_id": 3, "customer": "carol", "amount": 42.50, "status": "shipped"},
                {"order_id": 4, "customer": "alice", "amount": 7.25, "status": "returned"},
            ]

        pipeline = dlt.pipeline(
            pipeline_name="orders_to_duckdb",
            destination=dlt.destinations.duckdb(DUCKDB_PATH),
            dataset_name=DATASET,
        )
        info = pipeline.run(orders())
        print(info)
        return {"duckdb_path": DUCKDB_PATH, "table": f"{DATASET}.orders", "load_id": info.loads_ids[-1]}

    run_dbt = RunDbtCloudJobOperator(
        task_id="run_dbt_cloud_job",
        dbt_cloud_conn_id=CONN_ID,
        job_id="{{ params.job_id }}",
        deferrable=True,
        poll_interval=POLL_INTERVAL,
    )

    @task
    def summarize(loaded: dict[str, Any], ti: Any = None) -> dict[str, Any]:
        """Rows in DuckDB, and the dbt Cloud run as dbt Cloud reports it now."""
        import duckdb

        from airflow_dbt_cloud_dlt.hooks import DbtCloudHook

        with duckdb.connect(loaded["duckdb_path"], read_only=True) as db:
            rows = db.execute(f"SELECT count(*) FROM {loaded['table']}").fetchone()[0]
        run_id = ti.xcom_pull(task_ids="run_dbt_cloud_job", key="run_id")
        run_url = ti.xcom_pull(task_ids="run_dbt_cloud_job", key="run_url")
        run = DbtCloudHook(CONN_ID).get_dbt_cloud_run_status(run_id, wait_for_outcome=False)
        print(f"dlt loaded {rows} rows into {loaded['table']} in DuckDB at {loaded['duckdb_path']}")
        print(f"dbt Cloud run {run_id}: {run['status_humanized']} in {run.get('duration_humanized')} — {run_url}")
        return {"rows": rows, "run_id": run_id, "status": run["status_humanized"], "run_url": run_url}

    loaded = load_orders()
    loaded >> run_dbt >> summarize(loaded)


example_dlt_then_dbt_cloud()
