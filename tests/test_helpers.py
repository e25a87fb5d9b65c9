"""The dlt-compatible helpers, against the emulator (and next to dlt's own helper)."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import dlt.helpers.dbt_cloud as dlt_dbt_cloud
import pytest
from conftest import REPO, TOKEN
from dlt.helpers.dbt_cloud.client import DBTCloudClientV2
from dlt.helpers.dbt_cloud.configuration import DBTCloudConfiguration

import airflow_dbt_cloud_dlt
from airflow_dbt_cloud_dlt.api.errors import DbtCloudConfigError, DbtCloudNotFoundError, DbtCloudRunTimeoutError
from airflow_dbt_cloud_dlt.helpers import get_dbt_cloud_run_status, run_dbt_cloud_job
from airflow_dbt_cloud_dlt.testing import DbtCloudEmulator, JobScript

DATA = {"steps_override": ["dbt run"], "threads_override": 8, "cause": "mine"}


def trigger_bodies(emu: DbtCloudEmulator) -> list[dict[str, Any] | None]:
    return [r.body for r in emu.requests if r.method == "POST" and r.path.endswith("/run/") and r.status == 200]


def test_package_exports_the_helpers() -> None:
    assert airflow_dbt_cloud_dlt.run_dbt_cloud_job is run_dbt_cloud_job
    assert airflow_dbt_cloud_dlt.get_dbt_cloud_run_status is get_dbt_cloud_run_status
    with pytest.raises(AttributeError):
        _ = airflow_dbt_cloud_dlt.no_such_name  # type: ignore[attr-defined]


def test_data_reaches_the_api(emulator: DbtCloudEmulator, credentials: dict[str, Any]) -> None:
    emulator.add_job(JobScript(job_id=5, run_seconds=0.2))
    run = run_dbt_cloud_job({**credentials, "git_branch": "main"}, job_id=5, data=DATA, wait_seconds=0.05)
    assert trigger_bodies(emulator) == [{**DATA, "git_branch": "main"}]
    assert (run["status"], run["in_progress"], run["is_success"]) == (10, False, True)
    assert run["id"] == next(iter(emulator.runs))
    assert emulator.get_run(run["id"])["run_steps"][0]["name"] == "Invoke dbt with `dbt run`"


def test_same_shape_as_dlt_which_drops_data(
    emulator: DbtCloudEmulator, credentials: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.add_job(JobScript(job_id=5, run_seconds=0.2))
    monkeypatch.setenv("PROVIDERS__ENABLE_AIRFLOW_SECRETS", "false")  # else dlt imports Airflow and reads its DB
    # dlt's helper hard-codes https://cloud.getdbt.com; point its client class at the emulator instead.
    monkeypatch.setattr(
        dlt_dbt_cloud, "DBTCloudClientV2", functools.partial(DBTCloudClientV2, base_api_url=emulator.base_url + "/api")
    )
    config = DBTCloudConfiguration()
    config.api_token, config.account_id, config.job_id = TOKEN, "1", "5"
    theirs = dlt_dbt_cloud.run_dbt_cloud_job(credentials=config, data=DATA, wait_seconds=0.05)  # type: ignore[arg-type]
    ours = run_dbt_cloud_job({**credentials, "job_id": 5}, data=DATA, wait_seconds=0.05)
    assert trigger_bodies(emulator) == [{"cause": "Triggered via API"}, DATA]  # dlt's bug: data is dropped
    assert set(ours) == set(theirs)
    assert (theirs["status"], theirs["in_progress"]) == (ours["status"], ours["in_progress"]) == (10, False)


def test_job_id_argument_wins(emulator: DbtCloudEmulator, credentials: dict[str, Any]) -> None:
    emulator.add_job(JobScript(job_id=5, run_seconds=0.1))
    emulator.add_job(JobScript(job_id=6, run_seconds=0.1))
    run = run_dbt_cloud_job({**credentials, "job_id": 5}, job_id="6", wait_seconds=0.05)
    assert run["job_definition_id"] == 6
    run = run_dbt_cloud_job({**credentials, "job_id": 5}, wait_seconds=0.05)
    assert run["job_definition_id"] == 5
    assert [r.path for r in emulator.requests if r.method == "POST"] == [
        "/api/v2/accounts/1/jobs/6/run/",
        "/api/v2/accounts/1/jobs/5/run/",
    ]


def test_run_id_argument_wins(emulator: DbtCloudEmulator, credentials: dict[str, Any]) -> None:
    emulator.add_job(JobScript(job_id=5, run_seconds=0.2))
    run = run_dbt_cloud_job(credentials, job_id=5, wait_for_outcome=False)
    status = get_dbt_cloud_run_status({**credentials, "run_id": 999}, run_id=str(run["id"]), wait_seconds=0.05)
    assert (status["id"], status["status"]) == (run["id"], 10)
    with pytest.raises(DbtCloudNotFoundError, match="run 999"):
        get_dbt_cloud_run_status({**credentials, "run_id": 999}, wait_for_outcome=False)


def test_missing_or_bad_ids_fail_before_any_request(emulator: DbtCloudEmulator, credentials: dict[str, Any]) -> None:
    with pytest.raises(DbtCloudConfigError, match="No dbt Cloud job_id"):
        run_dbt_cloud_job(credentials)
    with pytest.raises(DbtCloudConfigError, match="No dbt Cloud run_id"):
        get_dbt_cloud_run_status(credentials)
    with pytest.raises(DbtCloudConfigError, match="job_id"):
        run_dbt_cloud_job(credentials, job_id="../1")
    with pytest.raises(DbtCloudConfigError, match="threads_override"):
        run_dbt_cloud_job(credentials, job_id=5, data={"threads_override": "8"})
    assert emulator.request_count() == 0


def test_no_wait_returns_a_running_run(emulator: DbtCloudEmulator, credentials: dict[str, Any]) -> None:
    emulator.add_job(JobScript(job_id=5, run_seconds=5))
    started = time.monotonic()
    run = run_dbt_cloud_job(credentials, job_id=5, wait_for_outcome=False)
    assert time.monotonic() - started < 1.0
    assert run["in_progress"] is True and run["status"] in (1, 2, 3)
    assert [r.method for r in emulator.requests] == ["POST", "GET"]
    status = get_dbt_cloud_run_status(credentials, run_id=run["id"], wait_for_outcome=False)
    assert status["id"] == run["id"] and status["in_progress"] is True


def test_failed_run_is_returned_not_raised(emulator: DbtCloudEmulator, credentials: dict[str, Any]) -> None:
    emulator.add_job(JobScript(job_id=5, run_seconds=0.2, outcome="error", status_message="Database Error in orders"))
    run = run_dbt_cloud_job(credentials, job_id=5, wait_seconds=0.05)
    assert (run["status"], run["is_error"], run["is_success"], run["in_progress"]) == (20, True, False, False)
    assert run["status_message"] == "Database Error in orders"


def test_timeout_raises(emulator: DbtCloudEmulator, credentials: dict[str, Any]) -> None:
    emulator.add_job(JobScript(job_id=5, run_seconds=30))
    started = time.monotonic()
    with pytest.raises(DbtCloudRunTimeoutError) as info:
        run_dbt_cloud_job(credentials, job_id=5, wait_seconds=0.05, timeout=0.3)
    assert time.monotonic() - started < 1.5
    assert info.value.run_id == next(iter(emulator.runs))
    with pytest.raises(DbtCloudRunTimeoutError):
        get_dbt_cloud_run_status(credentials, run_id=info.value.run_id, wait_seconds=0.05, timeout=0.2)


def test_get_status_waits_for_the_end(emulator: DbtCloudEmulator, credentials: dict[str, Any]) -> None:
    emulator.add_job(JobScript(job_id=5, run_seconds=0.4))
    run = run_dbt_cloud_job(credentials, job_id=5, wait_for_outcome=False)
    status = get_dbt_cloud_run_status(credentials, run_id=run["id"], wait_seconds=0.05)
    assert (status["id"], status["status"], status["in_progress"]) == (run["id"], 10, False)
    assert emulator.request_count("GET") >= 3


def test_credentials_from_env_vars(emulator: DbtCloudEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .dlt/ here
    emulator.add_job(JobScript(job_id=5, run_seconds=0.2))
    monkeypatch.setenv("DBT_CLOUD__API_TOKEN", TOKEN)
    monkeypatch.setenv("DBT_CLOUD__ACCOUNT_ID", "1")
    monkeypatch.setenv("DBT_CLOUD__JOB_ID", "5")
    monkeypatch.setenv("DBT_CLOUD__BASE_URL", emulator.base_url)
    monkeypatch.setenv("DBT_CLOUD__CAUSE", "from env")
    run = run_dbt_cloud_job(wait_seconds=0.05)
    assert run["status"] == 10 and trigger_bodies(emulator) == [{"cause": "from env"}]
    monkeypatch.setenv("DBT_CLOUD__RUN_ID", str(run["id"]))
    assert get_dbt_cloud_run_status(wait_for_outcome=False)["id"] == run["id"]


def test_credentials_from_dlt_toml_files(
    emulator: DbtCloudEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    emulator.add_job(JobScript(job_id=5, run_seconds=0.1))
    (tmp_path / ".dlt").mkdir()
    (tmp_path / ".dlt" / "config.toml").write_text(f'[dbt_cloud]\naccount_id = 1\nbase_url = "{emulator.base_url}"\n')
    (tmp_path / ".dlt" / "secrets.toml").write_text(f'[dbt_cloud]\napi_token = "{TOKEN}"\n')
    run = run_dbt_cloud_job(job_id=5, wait_seconds=0.05)
    assert (run["status"], run["job_definition_id"]) == (10, 5)


def test_helpers_never_import_airflow(emulator: DbtCloudEmulator) -> None:
    emulator.add_job(JobScript(job_id=5, run_seconds=0.1))
    script = textwrap.dedent(
        f"""
        import json, sys
        import airflow_dbt_cloud_dlt
        from airflow_dbt_cloud_dlt import get_dbt_cloud_run_status, run_dbt_cloud_job
        creds = {{"api_token": {TOKEN!r}, "account_id": 1, "base_url": {emulator.base_url!r}}}
        run = run_dbt_cloud_job(creds, job_id=5, data={{"cause": "subprocess"}}, wait_seconds=0.05)
        status = get_dbt_cloud_run_status(creds, run_id=run["id"])
        airflow = sorted(m for m in sys.modules if m == "airflow" or m.startswith("airflow."))
        print(json.dumps({{"status": status["status"], "airflow": airflow}}))
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBT_CLOUD__")}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, env=env, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"status": 10, "airflow": []}
    assert trigger_bodies(emulator) == [{"cause": "subprocess"}]
