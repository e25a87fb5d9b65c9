"""Test settings: a throw-away AIRFLOW_HOME with SQLite, set before anything imports Airflow,
and a real dbt Cloud emulator on loopback."""

from __future__ import annotations

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
