"""DAG factory for the tests. It lives in the dags folder because Airflow 3.3's ``dag.test()`` only runs
DAGs whose file is inside ``[core] dags_folder``. Importing this file defines no DAG by itself."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow_dbt_cloud_dlt.operators import RunDbtCloudJobOperator
from airflow_dbt_cloud_dlt.sensors import DbtCloudRunSensor

try:
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG  # type: ignore[no-redef,attr-defined,unused-ignore]


class CrashAfterTrigger(RunDbtCloudJobOperator):
    """Dies right after the trigger POST on its first try: by exception (``crash="raise"``), or the way a
    killed worker does (``crash="exit"``: the process ends at once, with no cleanup)."""

    def __init__(self, *, crash: str = "raise", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.crash = crash

    def _attach_or_trigger(self, client: Any, context: Any, job_id: int) -> dict[str, Any]:
        run = super()._attach_or_trigger(client, context, job_id)
        if context["ti"].try_number == 1:
            if self.crash == "exit":
                import os

                os._exit(1)
            raise RuntimeError(f"simulated crash right after triggering run {run['id']}")
        return run


def operator_dag(dag_id: str, *, tasks: int = 1, crash: str | None = None, **operator_kwargs: Any) -> DAG:
    """``RunDbtCloudJobOperator`` tasks named ``dbt`` (``dbt_0``, ``dbt_1``, ... when ``tasks`` > 1)."""
    operator: Any = CrashAfterTrigger if crash else RunDbtCloudJobOperator
    extra = {"crash": crash} if crash else {}
    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        for index in range(tasks):
            operator(task_id="dbt" if tasks == 1 else f"dbt_{index}", **extra, **operator_kwargs)
    return dag


def sensor_dag(dag_id: str, **sensor_kwargs: Any) -> DAG:
    """One ``DbtCloudRunSensor`` task named ``wait``."""
    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        DbtCloudRunSensor(task_id="wait", **sensor_kwargs)
    return dag


def official_dag(dag_id: str, *, cls: str, **task_kwargs: Any) -> DAG:
    """One task named ``task`` of an official-named class (``cls``) of this package's operators or sensors."""
    from airflow_dbt_cloud_dlt import operators, sensors

    task_class = getattr(operators, cls, None) or getattr(sensors, cls)
    if task_kwargs.get("execution_timeout") is not None:  # JSON-safe seconds in the announcement
        task_kwargs["execution_timeout"] = timedelta(seconds=task_kwargs["execution_timeout"])
    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        task_class(task_id="task", **task_kwargs)
    return dag


def _from_environment() -> None:
    """Define the DAGs that a test announced in ``DBT_TEST_DAGS`` (JSON: dag_id -> [kind, kwargs]).

    ``dag.test()`` parses the dags folder and refuses DAGs it did not find there, so each test publishes
    the DAG it builds here too, with the same arguments.
    """
    import json
    import os

    factories = {"operator": operator_dag, "sensor": sensor_dag, "official": official_dag}
    for dag_id, (kind, kwargs) in json.loads(os.environ.get("DBT_TEST_DAGS", "{}")).items():
        globals()[dag_id] = factories[kind](dag_id, **kwargs)


_from_environment()
