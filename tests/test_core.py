"""The protocol core: request builders, trigger bodies, Retry-After, typed errors and the retry policy."""

from __future__ import annotations

import email.utils
import json
import os
import time
from collections.abc import Iterator

import pytest
from conftest import TOKEN

from airflow_dbt_cloud_dlt.api import core
from airflow_dbt_cloud_dlt.api.core import ApiRequest, RetryPolicy
from airflow_dbt_cloud_dlt.api.credentials import DbtCloudCredentials, resolve_credentials
from airflow_dbt_cloud_dlt.api.errors import (
    DbtCloudAuthError,
    DbtCloudBadResponseError,
    DbtCloudConfigError,
    DbtCloudConnectionError,
    DbtCloudError,
    DbtCloudNotFoundError,
    DbtCloudPermissionError,
    DbtCloudRateLimitError,
    DbtCloudServerError,
    DbtCloudValidationError,
)

LEGACY = resolve_credentials({"api_token": TOKEN, "account_id": 1})
CELL = resolve_credentials({"api_token": TOKEN, "account_id": 1, "base_url": "ab123.us1.dbt.com"})
GET_RUN = core.get_run(1, 5)
TRIGGER = core.trigger_job_run(1, 2, {"cause": "x"})


# --- trigger bodies -------------------------------------------------------------------------------


def test_build_trigger_body_defaults() -> None:
    assert core.build_trigger_body(DbtCloudCredentials(api_token=TOKEN)) == {"cause": "Triggered via API"}
    assert core.build_trigger_body(DbtCloudCredentials(api_token=TOKEN, cause="")) == {"cause": "Triggered via API"}


def test_build_trigger_body_git_sha_wins_and_data_merged_last() -> None:
    creds = DbtCloudCredentials(
        api_token=TOKEN, cause="nightly", git_sha="abc", git_branch="main", schema_override="dbt_ci"
    )
    assert core.build_trigger_body(creds) == {"cause": "nightly", "git_sha": "abc", "schema_override": "dbt_ci"}
    branch_only = DbtCloudCredentials(api_token=TOKEN, git_branch="main")
    assert core.build_trigger_body(branch_only) == {"cause": "Triggered via API", "git_branch": "main"}
    merged = core.build_trigger_body(creds, {"cause": "mine", "schema_override": "other", "threads_override": 8})
    assert merged == {"cause": "mine", "git_sha": "abc", "schema_override": "other", "threads_override": 8}


def test_validate_trigger_body_cuts_cause_and_drops_none() -> None:
    body = core.validate_trigger_body({"cause": "c" * 300, "git_branch": None, "steps_override": ["dbt run"]})
    assert body == {"cause": "c" * 255, "steps_override": ["dbt run"]}
    assert core.validate_trigger_body({"cause": None}) == {"cause": "Triggered via API"}
    assert core.validate_trigger_body({"cause": "x", "new_api_field": {"a": 1}})["new_api_field"] == {"a": 1}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("threads_override", "4"),
        ("threads_override", True),
        ("timeout_seconds_override", 1.5),
        ("steps_override", []),
        ("steps_override", "dbt run"),
        ("steps_override", ["dbt run", ""]),
        ("steps_override", ["dbt run", 3]),
        ("generate_docs_override", "yes"),
        ("generate_docs_override", 1),
        ("git_branch", ""),
        ("git_sha", 123),
        ("cause", "   "),
    ],
)
def test_validate_trigger_body_rejects_wrong_types(field: str, value: object) -> None:
    with pytest.raises(DbtCloudConfigError) as info:
        core.validate_trigger_body({"cause": "x", field: value})
    assert f"Invalid trigger field {field!r}" in str(info.value)
    assert repr(value) in str(info.value)


def test_trigger_request_is_validated_and_not_retry_safe() -> None:
    request = core.trigger_job_run(1, "2", {"cause": "x", "threads_override": 4, "schema_override": None})
    assert (request.method, request.path) == ("POST", "/api/v2/accounts/1/jobs/2/run/")
    assert request.body == {"cause": "x", "threads_override": 4}
    assert request.creates_run and not request.retry_safe
    with pytest.raises(DbtCloudConfigError, match="threads_override"):
        core.trigger_job_run(1, 2, {"threads_override": "4"})


# --- paths and query parameters ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "method", "path"),
    [
        (core.trigger_job_run(1, 2, {}), "POST", "/api/v2/accounts/1/jobs/2/run/"),
        (core.rerun_job(1, 2), "POST", "/api/v2/accounts/1/jobs/2/rerun/"),
        (core.get_run(1, 3), "GET", "/api/v2/accounts/1/runs/3/"),
        (core.list_runs(1), "GET", "/api/v2/accounts/1/runs/"),
        (core.cancel_run(1, 3), "POST", "/api/v2/accounts/1/runs/3/cancel/"),
        (core.list_run_artifacts(1, 3), "GET", "/api/v2/accounts/1/runs/3/artifacts/"),
        (
            core.get_run_artifact(1, 3, "run_results.json"),
            "GET",
            "/api/v2/accounts/1/runs/3/artifacts/run_results.json",
        ),
        (core.get_run_artifact(1, 3, "/target/x.json"), "GET", "/api/v2/accounts/1/runs/3/artifacts/target/x.json"),
        (core.get_job(1, 2), "GET", "/api/v2/accounts/1/jobs/2/"),
        (core.list_jobs(1), "GET", "/api/v2/accounts/1/jobs/"),
        (core.get_account(1), "GET", "/api/v2/accounts/1/"),
        (core.list_projects(1), "GET", "/api/v3/accounts/1/projects/"),
        (core.list_environments(1, 4), "GET", "/api/v3/accounts/1/projects/4/environments/"),
    ],
)
def test_request_paths(request_: ApiRequest, method: str, path: str) -> None:
    assert (request_.method, request_.path) == (method, path)
    assert request_.creates_run == path.endswith(("/run/", "/rerun/"))
    assert request_.raw == ("/artifacts/" in path and not path.endswith("/"))


def test_list_filters_are_repeated_keys() -> None:
    request = core.list_runs(
        1,
        pk__in=[5, "6"],
        status__in=[10, 20],
        job_definition_id="7",
        include_related=["trigger", "job"],
        has_docs_generated=False,
        limit=500,
        offset=200,
        environment_id=None,
    )
    assert request.params == (
        ("pk__in", "5"),
        ("pk__in", "6"),
        ("status__in", "10"),
        ("status__in", "20"),
        ("job_definition_id", "7"),
        ("has_docs_generated", "false"),
        ("include_related", "trigger,job"),
        ("order_by", "-id"),
        ("limit", "100"),
        ("offset", "200"),
    )
    assert core.get_run(1, 3, ["run_steps", "trigger"]).params == (("include_related", "run_steps,trigger"),)
    assert core.get_run(1, 3).params == ()
    assert core.list_run_artifacts(1, 3, step=2).params == (("step", "2"),)
    assert dict(core.list_jobs(1, limit=0).params)["limit"] == "1"


@pytest.mark.parametrize(
    "build",
    [
        lambda: core.get_run(1, "../1"),
        lambda: core.get_run("abc", 1),
        lambda: core.cancel_run(1, 0),
        lambda: core.get_job(1, "1.5"),
        lambda: core.list_runs(1, pk__in=[1, "x"]),
        lambda: core.list_runs(1, job_definition_id="../2"),
        lambda: core.get_run_artifact(1, 3, "../secrets"),
        lambda: core.get_run_artifact(1, 3, ""),
        lambda: core.list_environments(1, -4),
    ],
)
def test_builders_reject_bad_ids_and_paths(build: object) -> None:
    with pytest.raises(DbtCloudConfigError):
        build()  # type: ignore[operator]


def test_auth_headers() -> None:
    headers = core.auth_headers(TOKEN)
    assert headers["Authorization"] == f"Token {TOKEN}"
    assert headers["User-Agent"].startswith("airflow-dbt-cloud-dlt/")
    assert headers["Accept"] == "application/json"


# --- Retry-After ----------------------------------------------------------------------------------------


def test_retry_after_seconds() -> None:
    assert core.retry_after_seconds({"Retry-After": "5"}) == 5.0
    assert core.retry_after_seconds({"retry-after": "0.5"}) == 0.5
    assert core.retry_after_seconds({"Retry-After": "-3"}) == 0.0
    assert core.retry_after_seconds({"x-rate-limit-retry-after-seconds": "7"}) == 7.0
    assert core.retry_after_seconds({}) is None
    assert core.retry_after_seconds({"Retry-After": ""}) is None
    assert core.retry_after_seconds({"Retry-After": "soon, please"}) is None
    now = time.time()
    for text in (email.utils.formatdate(now + 10, usegmt=True), email.utils.formatdate(now + 10, localtime=True)):
        assert core.retry_after_seconds({"Retry-After": text}, now=now) == pytest.approx(10, abs=1.01)
    assert core.retry_after_seconds({"Retry-After": email.utils.formatdate(now - 60, usegmt=True)}, now=now) == 0.0


@pytest.fixture
def non_utc_timezone() -> Iterator[None]:
    old = os.environ.get("TZ")
    os.environ["TZ"] = "XXX+05"  # POSIX form: five hours west of UTC, needs no tz database
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


@pytest.mark.usefixtures("non_utc_timezone")
def test_retry_after_http_date_without_zone_is_utc() -> None:
    now = time.time()
    asctime = time.asctime(time.gmtime(now + 10))  # RFC 9110's obsolete asctime form, always in GMT
    assert core.retry_after_seconds({"Retry-After": asctime}, now=now) == pytest.approx(10, abs=1.01)
    unknown_zone = email.utils.formatdate(now + 10)  # "... -0000": UTC, local zone unknown
    assert core.retry_after_seconds({"Retry-After": unknown_zone}, now=now) == pytest.approx(10, abs=1.01)


# --- errors -----------------------------------------------------------------------------------------------


def _error(
    status: int,
    body: object = None,
    credentials: DbtCloudCredentials = CELL,
    request: ApiRequest = GET_RUN,
    headers: dict[str, str] | None = None,
) -> DbtCloudError:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None else b""
    with pytest.raises(DbtCloudError) as info:
        core.parse_response(request, status, headers or {}, raw, credentials)
    return info.value


def test_401_on_legacy_host_explains_access_url() -> None:
    error = _error(401, {"status": {"user_message": "Invalid token."}, "data": None}, credentials=LEGACY)
    assert type(error) is DbtCloudAuthError
    assert (error.status_code, error.path, error.transient) == (401, "/api/v2/accounts/1/runs/5/", False)
    assert 'HTTP 401: "Invalid token."' in error.message and "read run 5" in error.message
    assert "legacy host cloud.getdbt.com" in error.message
    assert "access URL" in error.message and "base_url" in error.message


def test_401_on_cell_host_has_no_legacy_hint() -> None:
    error = _error(401, {"status": {"user_message": "Invalid token."}, "data": None})
    assert type(error) is DbtCloudAuthError
    assert "check the token (the connection's password)" in error.message
    assert "access URL" not in error.message and "legacy" not in error.message


def test_403_404_400_messages() -> None:
    denied = _error(403, {"status": {"user_message": "Access denied"}, "data": None})
    assert type(denied) is DbtCloudPermissionError
    assert "permission to read run 5 in account 1 (HTTP 403" in denied.message and "account id" in denied.message
    missing = _error(404, {"status": {"user_message": "Not found"}, "data": None})
    assert type(missing) is DbtCloudNotFoundError
    assert 'dbt Cloud run 5 was not found in account 1 (HTTP 404: "Not found")' in missing.message
    fields = {"threads_override": "'4' is not of type 'integer'"}
    invalid = _error(400, {"status": {"user_message": "The request was invalid."}, "data": fields}, request=TRIGGER)
    assert isinstance(invalid, DbtCloudValidationError)
    assert invalid.field_errors == fields
    assert "request to trigger job 2 as invalid" in invalid.message and "threads_override" in invalid.message
    plain = _error(400, {"detail": "bad filter"})
    assert isinstance(plain, DbtCloudValidationError) and plain.field_errors == {"detail": "bad filter"}
    assert "bad filter" in plain.message


def test_429_and_5xx_and_redirect_messages() -> None:
    limited = _error(429, {"data": None}, headers={"Retry-After": "12"})
    assert isinstance(limited, DbtCloudRateLimitError)
    assert (limited.retry_after, limited.transient) == (12.0, True)
    assert "HTTP 429" in limited.message and "wait 12 s" in limited.message
    no_header = _error(429, {"data": None})
    assert no_header.retry_after is None and "cooldown" in no_header.message  # type: ignore[attr-defined]
    html = b"<html><head><title>502 Bad Gateway</title></head>\n<body>oops</body></html>"
    failed = _error(502, html)
    assert type(failed) is DbtCloudServerError and failed.transient
    assert "HTTP 502" in failed.message and "502 Bad Gateway" in failed.message
    moved = _error(308, b"", headers={"Location": "/api/v2/accounts/1/runs/5/"})
    assert isinstance(moved, DbtCloudBadResponseError) and "redirect (HTTP 308)" in moved.message
    teapot = _error(418, b"short and stout")
    assert type(teapot) is DbtCloudError and not teapot.transient and "HTTP 418" in teapot.message


def test_non_json_success_is_bad_response() -> None:
    for body in (b"<html>login page</html>", b'{"no": "envelope"}', b"[1, 2]"):
        error = _error(200, body)
        assert isinstance(error, DbtCloudBadResponseError) and error.transient
        assert "not with its JSON envelope" in error.message and "base_url" in error.message
    envelope = {"status": {"code": 200}, "data": {"id": 5}}
    assert core.parse_response(GET_RUN, 200, {}, json.dumps(envelope).encode(), CELL) == envelope
    artifact = core.get_run_artifact(1, 5, "run_results.json")
    assert core.parse_response(artifact, 200, {}, b"not json", CELL) == b"not json"


ECHO = f"Authorization: Token {TOKEN}"
ECHOING_BODIES = (
    json.dumps({"status": {"user_message": ECHO, "developer_message": TOKEN}, "data": {"token": TOKEN}}).encode(),
    f"<html>{ECHO}</html>".encode(),
    json.dumps({"detail": ECHO}).encode(),
)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 429, 500, 502, 418])
def test_token_echoed_by_server_never_in_message(status: int) -> None:
    for body in ECHOING_BODIES:
        error = _error(status, body, credentials=LEGACY)
        assert TOKEN not in error.message
        assert TOKEN not in str(error)
        assert TOKEN not in repr(error)


def test_token_echoed_in_200_without_envelope_not_in_message() -> None:
    error = _error(200, json.dumps({"echo": ECHO}).encode())  # e.g. a debugging proxy echoing the request
    assert isinstance(error, DbtCloudBadResponseError)
    assert TOKEN not in error.message


def test_token_cut_by_snippet_does_not_leak_a_prefix() -> None:
    body = ("x" * 190 + TOKEN).encode()
    error = _error(502, body)
    assert TOKEN[:10] not in error.message


def test_connection_error_message() -> None:
    error = core.connection_error(GET_RUN, CELL, ConnectionRefusedError(f"refused {TOKEN}"), sent=False)
    assert isinstance(error, DbtCloudConnectionError)
    assert (error.request_sent, error.transient) == (False, True)
    assert "No answer from dbt Cloud at https://ab123.us1.dbt.com" in error.message
    assert "ConnectionRefusedError" in error.message and TOKEN not in error.message
    tls = core.connection_error(GET_RUN, CELL, OSError("CERTIFICATE_VERIFY_FAILED"), sent=False, transient=False)
    assert not tls.transient and "TLS" in tls.message


# --- retry policy -----------------------------------------------------------------------------------


def _conn(sent: bool) -> DbtCloudConnectionError:
    return DbtCloudConnectionError("no answer", request_sent=sent)


def _tls() -> DbtCloudConnectionError:
    error = DbtCloudConnectionError("tls", request_sent=False)
    error.transient = False
    return error


@pytest.mark.parametrize(
    ("error", "get", "trigger"),
    [
        (DbtCloudServerError("500", status_code=500), True, False),
        (DbtCloudServerError("503", status_code=503), True, False),
        (DbtCloudRateLimitError("429", retry_after=1), True, True),
        (DbtCloudRateLimitError("429"), True, True),
        (_conn(sent=True), True, False),
        (_conn(sent=False), True, True),
        (DbtCloudBadResponseError("html"), True, False),
        (DbtCloudValidationError("400", status_code=400), False, False),
        (DbtCloudAuthError("401", status_code=401), False, False),
        (DbtCloudPermissionError("403", status_code=403), False, False),
        (DbtCloudNotFoundError("404", status_code=404), False, False),
        (DbtCloudError("418"), False, False),
        (_tls(), False, False),
        (ValueError("not ours"), False, False),
    ],
)
def test_should_retry_matrix(error: BaseException, get: bool, trigger: bool) -> None:
    policy = RetryPolicy()
    assert policy.should_retry(GET_RUN, error) is get
    assert policy.should_retry(core.cancel_run(1, 5), error) is get
    assert policy.should_retry(TRIGGER, error) is trigger
    assert policy.should_retry(core.rerun_job(1, 2), error) is trigger


def test_wait_seconds() -> None:
    policy = RetryPolicy(initial_wait=1.0, max_wait=4.0, max_retry_after=30.0)
    assert policy.wait_seconds(1, DbtCloudRateLimitError("429", retry_after=7)) == 7
    assert policy.wait_seconds(1, DbtCloudRateLimitError("429", retry_after=1000)) == 30
    for attempt in range(1, 8):
        wait = policy.wait_seconds(attempt, DbtCloudServerError("500"))
        assert min(2 ** (attempt - 1), 4.0) <= wait <= min(2 ** (attempt - 1) + 1.0, 4.0)
    assert 1.0 <= policy.wait_seconds(1, DbtCloudRateLimitError("429")) <= 2.0


def test_page_items_and_require_account() -> None:
    assert core.page_items({"data": [1, 2], "extra": {"pagination": {"total_count": 7}}}) == ([1, 2], 7)
    assert core.page_items({"data": None}) == ([], None)
    with pytest.raises(DbtCloudConfigError, match="No dbt Cloud account id"):
        core.require_account(DbtCloudCredentials(api_token=TOKEN))


def test_a_redirect_is_not_retried() -> None:
    from airflow_dbt_cloud_dlt.api import core
    from airflow_dbt_cloud_dlt.api.credentials import credentials_from_mapping

    creds = credentials_from_mapping({"api_token": "t", "account_id": 1})
    request = core.get_run(1, 2)
    error = core.error_for_status(request, 308, {"Location": "https://elsewhere/"}, b"", creds)
    assert "redirect" in str(error) and not core.RetryPolicy().should_retry(request, error)


def test_an_unknown_status_code_counts_as_still_running() -> None:
    from airflow_dbt_cloud_dlt.api.models import RunStatus, is_terminal, run_status, status_text

    assert run_status({"status": 99}) is RunStatus.RUNNING and not is_terminal({"status": 99})
    assert status_text({"status": 99}) == "Running (99)"
