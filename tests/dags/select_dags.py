"""DAGs for the ``select_from_load`` tests: a task standing in for a dlt load returns the tables it wrote (Asset
URIs, through XCom), and a dbt Cloud task runs only what reads them. It lives in the dags folder because Airflow
3.3's ``dag.test()`` only runs DAGs found there; tests announce theirs in ``SELECT_DAGS``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow_dbt_cloud_dlt import operators

try:
    from airflow.sdk import DAG, task
except ImportError:  # Airflow 2
    from airflow import DAG  # type: ignore[no-redef,attr-defined,unused-ignore]
    from airflow.decorators import task  # type: ignore[no-redef,attr-defined,unused-ignore]


def load_then_dbt_dag(
    dag_id: str, *, tables: list[str], cls: str = "RunDbtCloudJobOperator", template: bool = False, **op_kwargs: Any
) -> DAG:
    """``load`` (returns ``tables``), then ``dbt`` with ``select_from_load`` set to its XCom: the ``XComArg``, or
    with ``template`` a Jinja template that renders the XCom to a string."""
    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:

        @task
        def load() -> list[str]:
            return tables

        loaded = load()
        select = "{{ ti.xcom_pull(task_ids='load') }}" if template else loaded
        dbt = getattr(operators, cls)(task_id="dbt", select_from_load=select, **op_kwargs)
        loaded >> dbt
    return dag


def _from_environment() -> None:
    import json
    import os

    for dag_id, kwargs in json.loads(os.environ.get("SELECT_DAGS", "{}")).items():
        globals()[dag_id] = load_then_dbt_dag(dag_id, **kwargs)


_from_environment()
