"""Two third-party dbt Cloud clients work against the emulator unchanged: the official Airflow provider's
``DbtCloudHook`` (https only) and dlt's ``DBTCloudClientV2`` (plain http, URLs without trailing slashes)."""

from __future__ import annotations

import json
import os
import ssl
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

# Airflow reads its configuration on first import: give it a throw-away home first (setdefault: a conftest
# may already have chosen one).
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="airflow-home-"))
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

from airflow_dbt_cloud_dlt.testing import DbtCloudEmulator, JobScript, StepScript

TOKEN = "fidelity-token-123"
CONN_ID = "dbt_cloud_emulator"


@pytest.fixture
def tls_emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[DbtCloudEmulator]:
    """An https emulator, trusted through the environment, with an Airflow connection pointing at it."""
    import aiohttp.connector

    with DbtCloudEmulator(tls=True, accounts={1: TOKEN}) as emu:
        assert emu.ca_cert_path
        where = {"project_id": 7, "environment_id": 9, "project_name": "analytics", "environment_name": "prod"}
        timing = {"queue_seconds": 0.1, "start_seconds": 0.1, "run_seconds": 0.3}
        build = [StepScript("Invoke dbt with `dbt build`", "Done. PASS=3")]
        emu.add_job(JobScript(job_id=42, name="nightly", steps=build, **where, **timing))
        emu.add_job(JobScript(job_id=43, project_id=7, environment_id=9, name="hourly", run_seconds=60))
        connection = {"conn_type": "dbt_cloud", "host": emu.host, "login": "1", "password": TOKEN}
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(connection))
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", emu.ca_cert_path)
        monkeypatch.setenv("SSL_CERT_FILE", emu.ca_cert_path)
        # aiohttp builds its default verifying SSL context once, at import time, so SSL_CERT_FILE set now is
        # not seen by it: hand it an equivalent context that trusts the emulator's CA.
        context = ssl.create_default_context(cafile=emu.ca_cert_path)
        context.set_alpn_protocols(["http/1.1"])
        monkeypatch.setattr(aiohttp.connector, "_SSL_CONTEXT_VERIFIED", context, raising=False)
        yield emu


def _hook() -> Any:
    from airflow.providers.dbt.cloud.hooks.dbt import DbtCloudHook

    return DbtCloudHook(CONN_ID)


def test_airflow_dbt_cloud_hook(tls_emu: DbtCloudEmulator) -> None:
    from airflow.providers.dbt.cloud.hooks.dbt import DbtCloudJobRunException, DbtCloudJobRunStatus

    hook = _hook()
    run = hook.trigger_job_run(job_id=42, cause="fidelity").json()["data"]
    assert run["status"] == DbtCloudJobRunStatus.QUEUED.value and run["trigger"]["cause"] == "fidelity"
    run_id = run["id"]

    fetched = hook.get_job_run(run_id=run_id, include_related=["trigger", "job", "run_steps"]).json()["data"]
    assert fetched["id"] == run_id and fetched["job"]["name"] == "nightly" and fetched["trigger"]["id"]
    assert hook.get_job_run_status(run_id) in (1, 2, 3, 10)
    assert hook.wait_for_job_run_status(
        run_id, expected_statuses=DbtCloudJobRunStatus.SUCCESS.value, check_interval=0.05, timeout=10
    )
    assert hook.get_job_run_status(run_id) == DbtCloudJobRunStatus.SUCCESS.value

    other = hook.trigger_job_run(job_id=43, cause="to cancel").json()["data"]["id"]
    hook.cancel_job_run(other)
    assert hook.get_job_run_status(other) == DbtCloudJobRunStatus.CANCELLED.value
    with pytest.raises(DbtCloudJobRunException):
        hook.wait_for_job_run_status(other, check_interval=0.05, timeout=5)

    pages = hook.list_job_runs(job_definition_id=42, order_by="-id", include_related=["job"])
    assert [r["id"] for page in pages for r in page.json()["data"]] == [run_id]
    all_runs = [r["id"] for page in hook.list_job_runs() for r in page.json()["data"]]
    assert sorted(all_runs) == sorted([run_id, other])
    jobs = [j["id"] for page in hook.list_jobs(project_id=7) for j in page.json()["data"]]
    assert jobs == [42, 43]
    assert hook.get_job(job_id=43).json()["data"]["name"] == "hourly"  # no slash: follows the 308
    assert hook.get_account().json()["data"]["id"] == 1

    if hasattr(hook, "get_job_by_name"):  # newer providers only
        job = hook.get_job_by_name(project_name="analytics", environment_name="prod", job_name="nightly")
        assert job["id"] == 42

    requests_seen = {(r.method, r.status) for r in tls_emu.requests}
    assert ("GET", 308) in requests_seen and all(r.status in (200, 308) for r in tls_emu.requests)
    assert all(r.headers["Authorization"] == "REDACTED" for r in tls_emu.requests)


def test_airflow_hook_survives_connection_resets(tls_emu: DbtCloudEmulator) -> None:
    """The hook retries connection errors (its 5xx responses become AirflowException, which it does not retry)."""
    import tenacity
    from airflow.providers.dbt.cloud.hooks.dbt import DbtCloudHook

    fast = {"stop": tenacity.stop_after_attempt(3), "wait": tenacity.wait_fixed(0.01)}
    hook = DbtCloudHook(CONN_ID, retry_args=fast)
    run_id = hook.trigger_job_run(job_id=42, cause="retry").json()["data"]["id"]
    tls_emu.faults.set(rate=1.0, kinds=("reset",), max_faults=2, methods=("GET",))
    assert hook.get_job_run_status(run_id) in (1, 2, 3, 10)
    assert [(r.status, r.fault) for r in tls_emu.requests if r.method == "GET"] == [
        (0, "reset"),
        (0, "reset"),
        (200, None),
    ]


async def test_airflow_hook_async_status(tls_emu: DbtCloudEmulator) -> None:
    """``get_job_status`` (aiohttp) is what the provider's deferrable trigger polls."""
    hook = _hook()
    run_id = await _to_thread(lambda: hook.trigger_job_run(job_id=43, cause="async").json()["data"]["id"])
    assert await hook.get_job_status(run_id) == 3  # job 43 does not queue, then runs for a minute
    tls_emu.cancel_run(run_id)
    assert await hook.get_job_status(run_id, include_related=["job"]) == 30
    details = await hook.get_job_details(run_id, include_related=["trigger"])
    assert details["data"]["trigger"]["cause"] == "async"


async def _to_thread(function: Any) -> Any:
    import asyncio

    return await asyncio.to_thread(function)


def test_dlt_dbt_cloud_client() -> None:
    from dlt.helpers.dbt_cloud.client import DBTCloudClientV2

    with DbtCloudEmulator(accounts={1: TOKEN}) as emu:
        emu.add_job(JobScript(job_id=42, run_seconds=60))
        client = DBTCloudClientV2(api_token=TOKEN, account_id="1", base_api_url=emu.base_url + "/api")
        run_id = client.trigger_job_run(job_id=42, data={"cause": "from dlt"})
        status = client.get_run_status(run_id)
        assert status["id"] == run_id and status["in_progress"] is True and status["status"] in (1, 2, 3)
        emu.advance(120)
        assert client.get_run_status(run_id)["status"] == 10
        # dlt builds its URLs without the trailing slash (".../jobs/42/run", ".../runs/{id}"): the fidelity
        # point is that it works only because it follows dbt Cloud's 308 redirect, as in production.
        seen = [(r.method, r.path, r.status) for r in emu.requests]
        assert seen[:2] == [
            ("POST", "/api/v2/accounts/1/jobs/42/run", 308),
            ("POST", "/api/v2/accounts/1/jobs/42/run/", 200),
        ]
        assert ("GET", f"/api/v2/accounts/1/runs/{run_id}", 308) in seen
        assert ("GET", f"/api/v2/accounts/1/runs/{run_id}/", 200) in seen
        assert len(emu.runs) == 1
