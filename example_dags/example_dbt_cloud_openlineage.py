"""OpenLineage from a dbt Cloud run: the dlt tables become the inputs of the dbt models that read them.

Install the ``openlineage`` extra and configure a transport, for example in ``airflow.cfg``::

    [openlineage]
    transport = {"type": "file", "log_file_path": "/tmp/openlineage.jsonl", "append": true}

``run_dbt_cloud_job`` then reports, when its run succeeds, one OpenLineage job per model, snapshot and test the
run built (read from the run's artifacts by OpenLineage's own ``DbtCloudArtifactProcessor``, whose parent run is
this task), and the task's COMPLETE event lists the built models as outputs and the tables they read as inputs,
named by the package's rule under ``asset_namespace``: the same names as the ``dlt_loads`` Assets of a dlt task.
``openlineage_inject_parent_job_info=True`` also writes this task's OpenLineage parent run into the dbt Cloud
run's ``cause``, so the run links back to the task from dbt Cloud's side.

Settings (env vars, read at parse time) as in ``example_dbt_cloud_assets``. Without the OpenLineage provider the
DAG runs the same, with no lineage, and says so in the task log.
"""

from __future__ import annotations

import os
import tempfile

import pendulum

from airflow_dbt_cloud_dlt.operators import RunDbtCloudJobOperator

try:  # Airflow 3
    from airflow.sdk import dag
except ImportError:  # Airflow 2.11
    from airflow.decorators import dag

CONN_ID = os.environ.get("DBT_CLOUD_CONN_ID", "dbt_cloud_default")
JOB_ID = int(os.environ.get("DBT_CLOUD_JOB_ID", "1"))
POLL_INTERVAL = float(os.environ.get("DBT_CLOUD_POLL_INTERVAL", "10"))
NAMESPACE = os.environ.get("DBT_CLOUD_ASSET_NAMESPACE") or "duckdb://" + os.path.join(
    tempfile.gettempdir(), "warehouse.duckdb"
)


@dag(
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    params={"job_id": JOB_ID},
    tags=["dbt-cloud", "openlineage", "example"],
)
def example_dbt_cloud_openlineage() -> None:
    RunDbtCloudJobOperator(
        task_id="run_dbt_cloud_job",
        dbt_cloud_conn_id=CONN_ID,
        job_id="{{ params.job_id }}",
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        asset_namespace=NAMESPACE,  # lineage dataset names: the same rule, and namespace, as the Assets
        openlineage_inject_parent_job_info=True,  # the run's cause carries this task's OpenLineage parent run
    )


example_dbt_cloud_openlineage()
