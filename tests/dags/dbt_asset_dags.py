"""DAGs for the asset-event tests: a dbt Cloud task with an ``asset_alias`` and, after it, a follow-up task that
announces the events a failed run left in XCom (``dbt_assets.emit_recorded_events``). It lives in the dags folder
because Airflow 3.3's ``dag.test()`` only runs DAGs found there; tests announce theirs in ``DBT_ASSET_DAGS``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow_dbt_cloud_dlt.assets import asset_alias
from airflow_dbt_cloud_dlt.operators import RunDbtCloudJobOperator

try:
    from airflow.sdk import DAG, task
except ImportError:  # Airflow 2
    from airflow import DAG  # type: ignore[no-redef,attr-defined,unused-ignore]
    from airflow.decorators import task  # type: ignore[no-redef,attr-defined,unused-ignore]


def follow_up_dag(dag_id: str, *, alias: str, **operator_kwargs: Any) -> DAG:
    """``dbt`` (RunDbtCloudJobOperator with ``asset_alias=alias``), then ``announce``, which runs only when
    ``dbt`` failed and emits the events of the nodes that succeeded through the same alias."""
    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        dbt = RunDbtCloudJobOperator(task_id="dbt", asset_alias=alias, **operator_kwargs)

        @task(outlets=[asset_alias(alias)], trigger_rule="all_failed")
        def announce(ti: Any = None) -> int:
            from airflow_dbt_cloud_dlt.dbt_assets import FAILED_RUN_XCOM_KEY, emit_recorded_events

            return emit_recorded_events(ti.xcom_pull(task_ids="dbt", key=FAILED_RUN_XCOM_KEY), alias)

        dbt >> announce()
    return dag


def _from_environment() -> None:
    import json
    import os

    for dag_id, kwargs in json.loads(os.environ.get("DBT_ASSET_DAGS", "{}")).items():
        globals()[dag_id] = follow_up_dag(dag_id, **kwargs)


_from_environment()
