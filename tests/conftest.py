"""Test settings: a throw-away AIRFLOW_HOME with SQLite, set before anything imports Airflow,
and a real dbt Cloud emulator on loopback."""

from __future__ import annotations

import itertools
import json
import os
import tempfile
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).parent
REPO = TESTS.parent
AIRFLOW_HOME = tempfile.mkdtemp(prefix="airflow-home-")
TOKEN = "dbtc_test-token-Zq8mX3"  # a distinctive token, so that leak checks can look for it
ACCOUNT_ID = 1

os.environ["AIRFLOW_HOME"] = AIRFLOW_HOME
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(TESTS / "dags")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{AIRFLOW_HOME}/airflow.db"
if version("apache-airflow").startswith("2."):
    os.environ["AIRFLOW__CORE__EXECUTOR"] = "SequentialExecutor"
for name in list(os.environ):
    if name.startswith("DBT_CLOUD__"):  # the developer's own dbt Cloud settings must not leak into tests
        del os.environ[name]

AIRFLOW_2 = version("apache-airflow").startswith("2.")


def connection_json(base_url: str, token: str = TOKEN, account_id: int = ACCOUNT_ID, **extra: object) -> str:
    """An Airflow connection in JSON form, for AIRFLOW_CONN_* env vars."""
    return json.dumps(
        {"conn_type": "dbt_cloud_dlt", "host": base_url, "login": str(account_id), "password": token, "extra": extra}
    )


def start_run(emulator: Any, job_id: int, cause: str = "started elsewhere", **script: Any) -> int:
    """Add a job to the emulator and start a run of it straight through the API, as another tool would."""
    import requests

    from airflow_dbt_cloud_dlt.testing import JobScript

    emulator.add_job(JobScript(job_id=job_id, account_id=ACCOUNT_ID, **script))
    response = requests.post(
        f"{emulator.base_url}/api/v2/accounts/{ACCOUNT_ID}/jobs/{job_id}/run/",
        json={"cause": cause},
        headers={"Authorization": f"Token {TOKEN}"},
        timeout=5,
    )
    response.raise_for_status()
    return int(response.json()["data"]["id"])


@pytest.fixture
def emulator() -> Iterator[object]:
    """A fresh emulator on plain http, with account 1 and the test token."""
    from airflow_dbt_cloud_dlt.testing import DbtCloudEmulator

    with DbtCloudEmulator(accounts={ACCOUNT_ID: TOKEN}) as emu:
        yield emu


@pytest.fixture
def credentials(emulator: object) -> dict[str, object]:
    return {"api_token": TOKEN, "account_id": ACCOUNT_ID, "base_url": emulator.base_url}  # type: ignore[attr-defined]


@pytest.fixture
def airflow_conn(emulator: object, monkeypatch: pytest.MonkeyPatch) -> str:
    """``dbt_cloud_default`` pointing at the emulator, as an env-var connection."""
    monkeypatch.setenv("AIRFLOW_CONN_DBT_CLOUD_DEFAULT", connection_json(emulator.base_url))  # type: ignore[attr-defined]
    return "dbt_cloud_default"


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """Create the metadata DB once, for tests that run DAGs."""
    from airflow.utils import db

    db.resetdb()


_dag_ids = itertools.count()


def run_dag(kind: str = "operator", *, dag_id: str | None = None, **kwargs: Any) -> Any:
    """Run a DAG of ``dbt_test_dags`` (``kind`` "operator" or "sensor") with ``dag.test()``; return its DagRun.

    The DAG is announced in ``DBT_TEST_DAGS`` with the same arguments, because ``dag.test()`` (and any
    worker) parses the dags folder and runs only DAGs it finds there. Arguments must be JSON-safe: give
    ``retry_delay`` in seconds.
    """
    from dbt_test_dags import operator_dag, sensor_dag

    dag_id = dag_id or f"{kind}_{next(_dag_ids)}"
    factory = {"operator": operator_dag, "sensor": sensor_dag}[kind]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DBT_TEST_DAGS", json.dumps({dag_id: [kind, kwargs]}))
        return factory(dag_id, **kwargs).test()


def run_task(kind: str = "operator", **kwargs: Any) -> Any:
    """:func:`run_dag` for a one-task DAG; return that task's instance."""
    (ti,) = run_dag(kind, **kwargs).get_task_instances()
    return ti


def task_states(dag_run: Any) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in dag_run.get_task_instances()}


def xcom(ti: Any, key: str) -> Any:
    """An XCom value of the task instance, read from the metadata DB."""
    if hasattr(ti, "xcom_pull"):  # Airflow 2
        return ti.xcom_pull(task_ids=ti.task_id, key=key)
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    query = XComModel.get_many(dag_ids=ti.dag_id, task_ids=ti.task_id, run_id=ti.run_id, key=key)
    with create_session() as session:
        rows = session.scalars(query).all()
        return XComModel.deserialize_value(rows[0]) if rows else None


def output(capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> str:
    """Everything a task logged: Airflow 3 logs to stdout through structlog, Airflow 2 to logging."""
    out, err = capfd.readouterr()
    return out + err + caplog.text
