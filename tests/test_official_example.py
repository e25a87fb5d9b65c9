"""The official provider's own example DAG, with only its imports changed (example_dags/example_official_dbt_cloud.py),
runs end to end with ``airflow dags test`` in a fresh Airflow home (SQLite) against the emulator: every task
green, on the Airflow of the venv that runs the test (3.3 and 2.11 in ``make test``)."""

from __future__ import annotations

import ast
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import REPO, TOKEN

from airflow_dbt_cloud_dlt.testing import DbtCloudEmulator, JobScript

EXAMPLE = REPO / "example_dags" / "example_official_dbt_cloud.py"
DAG_ID = "example_dbt_cloud"
TASKS = {
    "begin",
    "end",
    "trigger_job_run1",
    "trigger_job_run2",
    "trigger_job_run3",
    "get_run_results_artifact",
    "job_run_sensor",
    "job_run_sensor_deferred",
    "list_dbt_jobs",
    "list_dbt_job_runs",
}
RUN_RESULTS = {"metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/run-results/v6.json"}, "results": []}
_SCRUBBED_PREFIXES = ("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_", "DBT_CLOUD")


def test_only_the_import_lines_differ_from_the_official_example() -> None:
    """Beyond its imports and the system-test harness lines, the file is the official example's code."""
    tree = ast.parse(EXAMPLE.read_text())
    imports = [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    modules = {node.module for node in imports}
    assert "airflow.providers.dbt.cloud.operators.dbt" not in modules
    assert {"airflow_dbt_cloud_dlt.operators", "airflow_dbt_cloud_dlt.sensors"} <= modules
    text = EXAMPLE.read_text()
    for line in (
        'default_args={"dbt_cloud_conn_id": "dbt", "account_id": 39151},',
        'additional_run_config={"threads_override": 8},',
        'task_id="job_run_sensor_deferred", run_id=trigger_job_run2.output, timeout=20, deferrable=True',
        'list_dbt_jobs = DbtCloudListJobsOperator(task_id="list_dbt_jobs", account_id=106277, project_id=160645)',
    ):
        assert line in text


def _emulator_for_the_example(emulator: DbtCloudEmulator) -> dict[str, int]:
    """The objects the example names: job 48617 and "my_dbt_project"/"prod"/"my_dbt_job" in account 39151,
    project 160645 with 102 jobs (two pages) and job 160645 with an earlier run in account 106277."""
    quick = {"run_seconds": 0.3, "serial": False, "run_results": RUN_RESULTS}
    emulator.add_job(JobScript(job_id=48617, account_id=39151, project_id=11, **quick))  # type: ignore[arg-type]
    emulator.add_job(
        JobScript(
            job_id=48618,
            account_id=39151,
            project_id=12,
            project_name="my_dbt_project",
            environment_id=13,
            name="my_dbt_job",
            **quick,  # type: ignore[arg-type]
        )
    )
    for n in range(102):
        emulator.add_job(
            JobScript(job_id=160645 + n, account_id=106277, project_id=160645, environment_id=20, name=f"job {n}")
        )
    earlier = requests.post(
        f"{emulator.base_url}/api/v2/accounts/106277/jobs/160645/run/",
        json={"cause": "an earlier run"},
        headers={"Authorization": f"Token {TOKEN}"},
        timeout=5,
    )
    earlier.raise_for_status()
    return {"earlier_run": int(earlier.json()["data"]["id"])}


def _airflow_env(home: Path, base_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES) and k != "AIRFLOW_HOME"}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__DAGS_FOLDER": str(EXAMPLE.parent),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # a connection of the official provider's type, as its users have it; the host is the emulator
            "AIRFLOW_CONN_DBT": json.dumps(
                {"conn_type": "dbt_cloud", "host": base_url, "login": "39151", "password": TOKEN}
            ),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _task_states(db: Path) -> dict[str, str]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT task_id, state FROM task_instance WHERE dag_id = ?", (DAG_ID,)).fetchall()
    return {str(task): str(state) for task, state in rows}


def _xcoms(db: Path) -> dict[tuple[str, str], Any]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT task_id, key, value FROM xcom WHERE dag_id = ?", (DAG_ID,)).fetchall()
    values = {}
    for task, key, value in rows:
        raw = value.decode() if isinstance(value, bytes) else value
        try:
            values[(str(task), str(key))] = json.loads(raw)
        except (TypeError, ValueError):
            values[(str(task), str(key))] = raw
    return values


@pytest.mark.timeout(400)
def test_the_official_example_runs_green_with_airflow_dags_test(tmp_path: Path) -> None:
    with DbtCloudEmulator(accounts={39151: TOKEN, 106277: TOKEN}) as emulator:
        seeded = _emulator_for_the_example(emulator)
        home = tmp_path / "airflow"
        env = _airflow_env(home, emulator.base_url)
        airflow = [sys.executable, "-m", "airflow"]
        migrate = subprocess.run([*airflow, "db", "migrate"], env=env, capture_output=True, text=True, timeout=300)
        assert migrate.returncode == 0, migrate.stdout[-2000:] + migrate.stderr[-2000:]
        done = subprocess.run(
            [*airflow, "dags", "test", DAG_ID], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
        )
        log = done.stdout + done.stderr
        runs = {run["id"]: run for run in emulator.runs.values()}

    assert done.returncode == 0, log[-6000:]
    states = _task_states(home / "airflow.db")
    assert states == dict.fromkeys(TASKS, "success"), log[-6000:]
    assert TOKEN not in log

    xcoms = _xcoms(home / "airflow.db")
    run1, run2, run3 = (xcoms[(f"trigger_job_run{n}", "return_value")] for n in (1, 2, 3))
    assert [runs[r]["job_definition_id"] for r in (run1, run2, run3)] == [48617, 48617, 48618]
    assert all(runs[r]["status"] == 10 for r in (run1, run2, run3))
    assert xcoms[("trigger_job_run1", "job_run_id")] == run1
    assert xcoms[("trigger_job_run1", "job_run_url")] == runs[run1]["href"]
    assert "Triggered via Apache Airflow by task 'trigger_job_run1' in the example_dbt_cloud DAG." in str(
        runs[run1]["trigger"]["cause"]
    )
    assert runs[run2]["trigger"]["threads_override"] == 8

    artifact = tmp_path / f"{run1}_run_results.json"
    assert xcoms[("get_run_results_artifact", "return_value")] == artifact.name
    assert json.loads(artifact.read_text()) == RUN_RESULTS

    assert xcoms[("list_dbt_jobs", "return_value")] == [160645 + n for n in range(102)]  # both pages
    listed = xcoms[("list_dbt_job_runs", "return_value")]
    assert [run["id"] for run in listed] == [seeded["earlier_run"]]
    assert xcoms.get(("job_run_sensor_deferred", "return_value")) in (None, run2)  # None when it did not defer
