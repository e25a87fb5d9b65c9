"""Trigger a dbt Cloud job without waiting, then wait for the run with a deferrable sensor.

Useful when something else should happen between the trigger and the wait, or when the run is started
elsewhere and only its id reaches this DAG. Settings as in ``example_dbt_cloud_deferred``.
"""

from __future__ import annotations

import os

import pendulum

from airflow_dbt_cloud_dlt.operators import RunDbtCloudJobOperator
from airflow_dbt_cloud_dlt.sensors import DbtCloudRunSensor

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
def example_dbt_cloud_sensor() -> None:
    trigger = RunDbtCloudJobOperator(
        task_id="trigger",
        dbt_cloud_conn_id=CONN_ID,
        job_id="{{ params.job_id }}",
        wait_for_termination=False,  # push run_id and run_url to XCom, then succeed
    )
    wait = DbtCloudRunSensor(
        task_id="wait_for_run",
        dbt_cloud_conn_id=CONN_ID,
        run_id="{{ ti.xcom_pull(task_ids='trigger', key='run_id') }}",
        deferrable=True,
        poke_interval=POLL_INTERVAL,
        timeout=6 * 60 * 60,  # seconds; then the sensor fails
    )
    trigger >> wait


example_dbt_cloud_sensor()
