"""DbtCloudHook: connection mapping, connection test, masking, and the wrapped helpers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import TOKEN, connection_json

from airflow_dbt_cloud_dlt.hooks import DbtCloudHook, connection_to_credentials
from airflow_dbt_cloud_dlt.testing import JobScript


def conn(**fields: Any) -> SimpleNamespace:
    base = {"host": None, "port": None, "login": None, "password": None}
    return SimpleNamespace(**{**base, **fields})


def test_official_provider_connection_format_works_unchanged() -> None:
    creds = connection_to_credentials(
        conn(host="ab123.us1.dbt.com", login="70403103936332", password="tok"),
        {"proxies": {"https": "http://proxy:3128"}},
    )
    assert creds.base_url == "https://ab123.us1.dbt.com" and creds.account_id == 70403103936332
    assert creds.api_token == "tok" and creds.proxies == {"https": "http://proxy:3128"}


def test_extras_and_defaults() -> None:
    creds = connection_to_credentials(
        conn(password="tok", login="5"),
        {
            "job_id": "42",
            "project_id": 7,
            "timeout": "12",
            "verify": "false",
            "extra__dbt_cloud_dlt__environment_id": 9,
        },
    )
    assert creds.base_url == "https://cloud.getdbt.com"
    assert (creds.job_id, creds.project_id, creds.environment_id) == (42, 7, 9)
    assert creds.timeout == 12.0 and creds.verify is False
    assert connection_to_credentials(conn(password="t", login="5"), {}, account_id=8).account_id == 8


def test_connection_test_answers_clearly(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    cases = {
        "good": (connection_json(emulator.base_url), True, "Connected to dbt Cloud account"),
        "bad_token": (connection_json(emulator.base_url, token="nope"), False, "refused the API token"),
        "wrong_account": (connection_json(emulator.base_url, account_id=2), False, "denied the API token permission"),
        "bad_host": (connection_json("http://127.0.0.1:1"), False, "No answer from dbt Cloud"),
        "malformed_host": (connection_json("https://exa mple.com"), False, "Malformed dbt Cloud host"),
    }
    for name, (conn_json, ok, text) in cases.items():
        monkeypatch.setenv(f"AIRFLOW_CONN_{name.upper()}", conn_json)
        result = DbtCloudHook(name).test_connection() if name != "malformed_host" else _safe_test(name)
        assert result[0] is ok and text in result[1], (name, result)
        assert TOKEN not in result[1]


def _safe_test(conn_id: str) -> tuple[bool, str]:
    from airflow_dbt_cloud_dlt.api.errors import DbtCloudConfigError

    try:
        return DbtCloudHook(conn_id).test_connection()
    except DbtCloudConfigError as error:
        return False, str(error)


PROXY_PASSWORD = "pr0xy-S3cret%2Fx"


def _redact(text: str) -> str:
    try:
        from airflow.sdk.log import redact  # type: ignore[attr-defined]
    except ImportError:
        from airflow.utils.log.secrets_masker import redact  # type: ignore[no-redef,attr-defined,unused-ignore]
    return str(redact(text))


def test_token_is_masked(airflow_conn: str) -> None:
    assert DbtCloudHook().credentials.api_token == TOKEN
    assert TOKEN not in _redact(f"Authorization: Token {TOKEN}")


@pytest.mark.parametrize("path", ["sync", "async"])
def test_proxy_password_is_masked(emulator: Any, monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    """Issue 12 part 3, finding 12: a proxy URL's password goes to Airflow's secret masker (both lookups)."""
    import asyncio

    password = f"{PROXY_PASSWORD}-{path}"
    proxy = f"http://user:{password}@proxy.example:3128"
    monkeypatch.setenv("AIRFLOW_CONN_PROXIED", connection_json(emulator.base_url, proxies={"https": proxy}))
    hook = DbtCloudHook("proxied")
    credentials = hook.credentials if path == "sync" else asyncio.run(hook.aget_credentials())
    assert credentials.proxies == {"https": proxy}
    shown = _redact(f"connecting through {proxy} ({password.replace('%2F', '/')})")
    assert password not in shown and password.replace("%2F", "/") not in shown, shown


def test_hook_wraps_the_helpers(emulator: Any, airflow_conn: str) -> None:
    emulator.add_job(JobScript(job_id=3, account_id=1, run_seconds=0.2))
    run = DbtCloudHook().run_dbt_cloud_job(3, data={"threads_override": 2}, wait_seconds=0.1)
    assert run["status"] == 10
    assert DbtCloudHook().get_dbt_cloud_run_status(run["id"], wait_for_outcome=False)["id"] == run["id"]
    (post,) = [r for r in emulator.requests if r.method == "POST"]
    assert post.body == {"cause": "Triggered via API", "threads_override": 2}


@pytest.mark.parametrize(
    ("token", "conn_type", "expected"),
    [(TOKEN, "dbtclouddlt", "Connection success!"), ("bad-token", "dbt_cloud_dlt", "refused the API token")],
    ids=["new type name", "old type name"],
)
def test_airflow_connections_test_cli(emulator: Any, token: str, conn_type: str, expected: str) -> None:
    conn_json = json.loads(connection_json(emulator.base_url, token=token))
    env = {
        **os.environ,
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
        "AIRFLOW_CONN_DBT_CLOUD_DEFAULT": json.dumps({**conn_json, "conn_type": conn_type}),
    }
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "connections", "test", "dbt_cloud_default"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert expected in output, output[-2000:]
    assert token not in output
    if conn_type == "dbtclouddlt":
        assert "shall not contain '_'" not in output


def test_unreachable_port_is_really_closed() -> None:
    with socket.socket() as sock:  # guards the "bad_host" case above: port 1 must refuse
        assert sock.connect_ex(("127.0.0.1", 1)) != 0
