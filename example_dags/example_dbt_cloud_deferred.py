"""Trigger a dbt Cloud job and wait for it on the triggerer: no worker slot is held while dbt runs.

Settings (env vars, read at parse time): ``DBT_CLOUD_CONN_ID`` (default ``dbt_cloud_default``),
``DBT_CLOUD_JOB_ID`` (default 1; also a DAG param, so "Trigger DAG w/ config" can pick another job) and
``DBT_CLOUD_POLL_INTERVAL`` (seconds between status checks, default 10).
"""

from __future__ import annotations

import os

import pendulum

from airflow_dbt_cloud_dlt.operators import RunDbtCloudJobOperator

try:  # Airflow 3
    from airflow.sdk import dag
except ImportError:  # Airflow 2.11
    from airflow.decorators import dag

CONN_ID = os.environ.get("DBT_CLOUD_CONN_ID", "dbt_cloud_default")
JOB_ID = int(os.environ.get("DBT_CLOUD_JOB_ID", "1"))
POLL_INTERVAL = float(os.environ.get("DBT_CLOUD_POLL_INTERVAL", "10"))


@dag(
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    params={"job_id": JOB_ID},
    tags=["dbt-cloud", "example"],
)
def example_dbt_cloud_deferred() -> None:
    RunDbtCloudJobOperator(
        task_id="run_dbt_cloud_job",
        dbt_cloud_conn_id=CONN_ID,
        job_id="{{ params.job_id }}",
        deferrable=True,  # wait on the triggerer, not on a worker
        poll_interval=POLL_INTERVAL,
    )


example_dbt_cloud_deferred()
