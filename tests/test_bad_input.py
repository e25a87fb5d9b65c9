"""Bad input gets one exact, clear error, and never the token. Config errors send no request at all."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import ACCOUNT_ID, TOKEN

from airflow_dbt_cloud_dlt import run_dbt_cloud_job
from airflow_dbt_cloud_dlt.api.errors import (
    DbtCloudAuthError,
    DbtCloudConfigError,
    DbtCloudError,
    DbtCloudNotFoundError,
    DbtCloudPermissionError,
)
from airflow_dbt_cloud_dlt.testing import JobScript

CASES: dict[str, tuple[dict[str, Any], dict[str, Any], type[DbtCloudError], str]] = {
    "wrong token": (
        {"api_token": "not-the-token"},
        {},
        DbtCloudAuthError,
        'dbt Cloud refused the API token (HTTP 401: "Invalid token.") for the request to trigger job 1; check the '
        "token (the connection's password): it may be mistyped, revoked or expired.",
    ),
    "wrong account": (
        {"account_id": 2},
        {},
        DbtCloudPermissionError,
        'dbt Cloud denied the API token permission to trigger job 1 in account 2 (HTTP 403: "Access denied: Token '
        "is not scoped to account.\"); check that the account id is right (the connection's login, the number "
        "after /deploy/ in dbt Cloud URLs) and that the token's permission set allows this (Job Admin or Job "
        "Runner to trigger runs).",
    ),
    "unknown job": (
        {},
        {"job_id": 404},
        DbtCloudNotFoundError,
        'dbt Cloud job 404 was not found in account 1 (HTTP 404: "The requested resource was not found. Please '
        "check that you have the proper permissions.\"); check the job id, the account id (the connection's "
        "login) and the host, and that the token may see this job.",
    ),
    "path in an id": (
        {},
        {"job_id": "../1"},
        DbtCloudConfigError,
        "Invalid dbt Cloud job_id '../1': it must be a positive whole number, such as 12345 (the number that "
        "follows /jobs/ in dbt Cloud URLs).",
    ),
    "malformed host": (
        {"base_url": "https://dbt cloud.com"},
        {},
        DbtCloudConfigError,
        "Malformed dbt Cloud host 'https://dbt cloud.com'. Use a host such as 'ab123.us1.dbt.com' or a URL such as "
        "'https://ab123.us1.dbt.com'.",
    ),
    "plain http to a remote host": (
        {"base_url": "http://ab123.us1.dbt.com"},
        {},
        DbtCloudConfigError,
        "Refusing plain http to 'ab123.us1.dbt.com': the API token would travel unencrypted. Use https (plain http "
        "is allowed only to loopback addresses such as the local emulator).",
    ),
    "data key of the wrong type": (
        {},
        {"data": {"threads_override": "eight"}},
        DbtCloudConfigError,
        "Invalid trigger field 'threads_override': got str 'eight', expected an integer.",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gives_one_exact_error(emulator: Any, credentials: dict[str, Any], case: str) -> None:
    emulator.add_job(JobScript(job_id=1, account_id=ACCOUNT_ID, run_seconds=0.1))
    overrides, kwargs, error_type, message = CASES[case]
    with pytest.raises(error_type) as raised:
        run_dbt_cloud_job({**credentials, **overrides}, **{"job_id": 1, **kwargs})
    assert str(raised.value) == message
    assert TOKEN not in repr(raised.value) and TOKEN not in str(raised.value.__cause__ or "")
    if error_type is DbtCloudConfigError:
        assert emulator.requests == []  # rejected before anything was sent
    assert emulator.runs == {}
