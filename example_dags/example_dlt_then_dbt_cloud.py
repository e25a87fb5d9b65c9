"""The data-aware chain: dlt loads into DuckDB, dbt Cloud rebuilds only what reads the load, models become Assets.

1. ``load_orders`` loads sample orders into ``raw.orders`` with dlt. It emits one asset event per table it wrote
   (through the alias ``dlt_loads``, named by the package's rule) and returns the tables' Asset URIs.
2. ``run_dbt_cloud_job`` runs the dbt Cloud job with ``select_from_load``: the job's latest ``manifest.json``
   says which dbt sources those tables are, and the run builds only ``source:raw.orders+``. It waits deferred,
   on the triggerer; when the run succeeds it emits one asset event per model, seed and snapshot it built,
   through the alias ``dbt_cloud_models``.
3. ``summarize`` prints the rows loaded and the run, with the command dbt Cloud ran.

Any DAG scheduled on a rebuilt model's Asset then starts; ``example_dbt_cloud_assets_consumer`` is scheduled on
``fct_orders`` (named by the same rule, in the same DuckDB file). ``make demo`` runs this DAG and shows the
scheduler starting that consumer.

Settings (env vars, read at parse time) as in ``example_dbt_cloud_deferred``, plus ``DEMO_DUCKDB_PATH``: the
DuckDB file (default ``warehouse.duckdb`` in the temp directory; its stem is the database name, as dbt-duckdb
names it). Needs the ``demo`` extra (dlt, DuckDB and ijson). dlt and duckdb are imported inside the tasks, so
parsing this file stays cheap.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import pendulum

from airflow_dbt_cloud_dlt.assets import dlt_asset_alias
from airflow_dbt_cloud_dlt.operators import RunDbtCloudJobOperator

try:  # Airflow 3
    from airflow.sdk import dag, task
except ImportError:  # Airflow 2.11
    from airflow.decorators import dag, task

CONN_ID = os.environ.get("DBT_CLOUD_CONN_ID", "dbt_cloud_default")
JOB_ID = int(os.environ.get("DBT_CLOUD_JOB_ID", "1"))
POLL_INTERVAL = float(os.environ.get("DBT_CLOUD_POLL_INTERVAL", "10"))
DUCKDB_PATH = os.environ.get("DEMO_DUCKDB_PATH") or os.path.join(tempfile.gettempdir(), "warehouse.duckdb")
DATASET = "raw"
#: The warehouse dbt Cloud builds in, as an OpenLineage namespace: here the DuckDB file dlt loads into.
NAMESPACE = "duckdb://" + DUCKDB_PATH


@dag(
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    params={"job_id": JOB_ID},
    tags=["dbt-cloud", "dlt", "assets", "example"],
)
def example_dlt_then_dbt_cloud() -> None:
    @task(outlets=[dlt_asset_alias()])
    def load_orders() -> list[str]:
        """Load a few sample orders into DuckDB with dlt; return the Asset URIs of the tables it wrote."""
        import dlt

        from airflow_dbt_cloud_dlt.assets import dlt_load_asset_events

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
        tables = dlt_load_asset_events(info)  # one asset event per table written, through the "dlt_loads" alias
        for table in tables:
            print(f"dlt loaded {table.rows} rows into {table.dataset_name}.{table.table}: {table.uri}")
        return [table.uri for table in tables]

    loaded = load_orders()
    run_dbt = RunDbtCloudJobOperator(
        task_id="run_dbt_cloud_job",
        dbt_cloud_conn_id=CONN_ID,
        job_id="{{ params.job_id }}",
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        select_from_load=loaded,  # only what reads the loaded tables; the whole job if the manifest is unreadable
        asset_alias="dbt_cloud_models",  # one asset event per model, seed and snapshot the run built
        asset_namespace=NAMESPACE,
    )

    @task
    def summarize(tables: list[str], ti: Any = None) -> dict[str, Any]:
        """Rows in DuckDB, and the dbt Cloud run as dbt Cloud reports it now."""
        import duckdb

        from airflow_dbt_cloud_dlt.hooks import DbtCloudHook

        with duckdb.connect(DUCKDB_PATH, read_only=True) as db:
            rows = db.execute(f"SELECT count(*) FROM {DATASET}.orders").fetchone()[0]
        run_id = ti.xcom_pull(task_ids="run_dbt_cloud_job", key="run_id")
        run_url = ti.xcom_pull(task_ids="run_dbt_cloud_job", key="run_url")
        run = DbtCloudHook(CONN_ID).get_dbt_cloud_run_status(run_id, wait_for_outcome=False)
        print(f"dlt loaded {rows} rows into {DATASET}.orders in DuckDB at {DUCKDB_PATH} ({len(tables)} table(s))")
        print(f"dbt Cloud run {run_id}: {run['status_humanized']} in {run.get('duration_humanized')} — {run_url}")
        return {"rows": rows, "run_id": run_id, "status": run["status_humanized"], "run_url": run_url}

    loaded >> run_dbt >> summarize(loaded)


example_dlt_then_dbt_cloud()
