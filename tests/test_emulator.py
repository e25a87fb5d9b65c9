"""Behaviour of the dbt Cloud emulator, exercised over real loopback HTTP(S)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_dbt_cloud_dlt.testing import DbtCloudEmulator, JobScript, StepScript

TOKEN = "tok-1"
A = "/api/v2/accounts/1"
STEPS = [
    StepScript("Invoke dbt with `dbt seed`", "seed line 1\nseed line 2"),
    StepScript("Invoke dbt with `dbt run`", "run line 1\nDatabase Error in model orders", outcome="error"),
    StepScript("Invoke dbt with `dbt test`", "test line 1"),
]


@pytest.fixture
def emu() -> Iterator[DbtCloudEmulator]:
    with DbtCloudEmulator(accounts={1: TOKEN, 2: ["tok-2", "tok-shared"], 3: "tok-shared"}) as emulator:
        yield emulator


@pytest.fixture
def api(emu: DbtCloudEmulator) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Token {TOKEN}"
    return session


def slow_job(job_id: int = 42, **kwargs: Any) -> JobScript:
    """A job whose phases last 10 s each: tests move the clock with ``emu.advance``."""
    defaults: dict[str, Any] = dict(
        project_id=7, environment_id=9, name="nightly", queue_seconds=10, start_seconds=10, run_seconds=30
    )
    return JobScript(job_id=job_id, **{**defaults, **kwargs})


def trigger(emu: DbtCloudEmulator, api: requests.Session, job_id: int = 42, **body: Any) -> dict[str, Any]:
    response = api.post(f"{emu.base_url}{A}/jobs/{job_id}/run/", json={"cause": "test", **body})
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def get_run(emu: DbtCloudEmulator, api: requests.Session, run_id: int, **params: Any) -> dict[str, Any]:
    response = api.get(f"{emu.base_url}{A}/runs/{run_id}/", params=params)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


# --------------------------------------------------------------------------- run lifecycle
def test_lifecycle_follows_the_clock(emu: DbtCloudEmulator, api: requests.Session) -> None:
    emu.add_job(JobScript(job_id=42, queue_seconds=0.4, start_seconds=0.4, run_seconds=0.4))
    run = trigger(emu, api)
    assert run["status"] == 1 and run["status_humanized"] == "Queued" and run["in_progress"]
    assert run["trigger"]["cause"] == "test" and run["trigger"]["cause_category"] == "api"
    assert run["job"]["id"] == 42  # the trigger response carries trigger and job (observed live)
    assert run["id"] >= 70403111615000
    seen: list[int] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (not seen or seen[-1] != 10):
        status = get_run(emu, api, run["id"])["status"]
        if not seen or seen[-1] != status:
            seen.append(status)
        time.sleep(0.02)
    assert seen == [1, 2, 3, 10]
    done = get_run(emu, api, run["id"])
    assert done["is_complete"] and done["is_success"] and not done["in_progress"]
    assert done["status_message"] is None
    assert done["finished_at"] and done["started_at"] and done["dequeued_at"]
    assert done["created_at"].endswith("+00:00") and " " in done["created_at"]
    assert done["duration"] == "00:00:01" and done["run_duration"] == "00:00:00"
    assert done["href"] == f"{emu.base_url}/deploy/1/projects/1/runs/{run['id']}/"
    assert done["trigger"] is None and done["job"] is None and done["run_steps"] == []


def test_phase_timestamps_and_durations(emu: DbtCloudEmulator, api: requests.Session) -> None:
    emu.add_job(slow_job())
    run_id = trigger(emu, api)["id"]
    emu.advance(15)
    run = get_run(emu, api, run_id)
    assert (run["status"], run["status_humanized"]) == (2, "Starting")
    assert run["dequeued_at"] and run["started_at"] is None
    emu.advance(10)
    run = get_run(emu, api, run_id)
    assert (run["status"], run["status_humanized"]) == (3, "Running")
    assert run["queued_duration"] == "00:00:20" and run["run_duration"] == "00:00:05"
    emu.advance(100)
    run = get_run(emu, api, run_id)
    assert run["status"] == 10 and run["duration"] == "00:00:50" and run["run_duration"] == "00:00:30"
    assert run["duration_humanized"] == "50 seconds"


@pytest.mark.parametrize(
    ("outcome", "status", "message", "flag"),
    [
        ("success", 10, None, "is_success"),
        ("error", 20, "Database Error in model my_model (models/my_model.sql)", "is_error"),
        ("cancelled", 30, "Cancelled by user.", "is_cancelled"),
        (
            "timeout",
            30,
            "This run timed out after running for 30 seconds, which exceeded the configured timeout of 30 seconds.",
            "is_cancelled",
        ),
    ],
)
def test_outcomes(
    emu: DbtCloudEmulator, api: requests.Session, outcome: str, status: int, message: str | None, flag: str
) -> None:
    emu.add_job(slow_job(outcome=outcome))
    run_id = trigger(emu, api)["id"]
    emu.advance(60)
    run = get_run(emu, api, run_id)
    assert run["status"] == status and run["status_message"] == message and run[flag] is True
    assert sum(run[f] for f in ("is_success", "is_error", "is_cancelled")) == 1
    assert run["can_retry"] is (outcome == "error")  # a run that failed in a dbt step has run_results.json


def test_timeout_message_uses_the_configured_timeout(emu: DbtCloudEmulator, api: requests.Session) -> None:
    emu.add_job(slow_job(outcome="timeout", timeout_seconds=20))
    run_id = trigger(emu, api, timeout_seconds_override=25)["id"]
    emu.advance(60)
    assert "configured timeout of 25 seconds" in get_run(emu, api, run_id)["status_message"]


def test_steps_progress_and_failing_step(emu: DbtCloudEmulator, api: requests.Session) -> None:
    emu.add_job(slow_job(outcome="error", steps=STEPS))
    run_id = trigger(emu, api)["id"]
    emu.advance(20)  # started, first step just began
    steps = get_run(emu, api, run_id, include_related="run_steps")["run_steps"]
    assert [(s["index"], s["status"]) for s in steps] == [(1, 3)]
    emu.advance(20)  # 20 s into a 30 s run split over the two steps up to the failing one
    steps = get_run(emu, api, run_id, include_related="run_steps")["run_steps"]
    assert [(s["index"], s["status"]) for s in steps] == [(1, 10), (2, 3)]
    assert steps[0]["logs"] == "seed line 1\nseed line 2" and steps[1]["logs"] == "run line 1"
    emu.advance(20)
    run = get_run(emu, api, run_id, include_related="run_steps")
    steps = run["run_steps"]
    assert run["status"] == 20
    assert [(s["name"], s["status"], s["status_humanized"]) for s in steps] == [
        ("Invoke dbt with `dbt seed`", 10, "Success"),
        ("Invoke dbt with `dbt run`", 20, "Error"),
    ]  # the third step never ran
    assert steps[1]["logs"].endswith("Database Error in model orders")
    assert (
        steps[1]["truncated_debug_logs"]
        and steps[1]["finished_at"]
        and steps[1]["run_step_command"] == {"run_step_id": steps[1]["id"], "dbt_command": "dbt run"}
    )
    assert run["can_retry"] is True  # it failed in a dbt step, so it has run_results.json: dbt retry works


def test_steps_override_replaces_the_steps(emu: DbtCloudEmulator, api: requests.Session) -> None:
    emu.add_job(slow_job())
    run_id = trigger(emu, api, steps_override=["dbt run -s a", "dbt test -s a"])["id"]
    emu.advance(60)
    run = get_run(emu, api, run_id, include_related="run_steps,trigger")
    assert [s["name"] for s in run["run_steps"]] == [
        "Invoke dbt with `dbt run -s a`",
        "Invoke dbt with `dbt test -s a`",
    ]
    assert run["trigger"]["steps_override"] == ["dbt run -s a", "dbt test -s a"]


def test_outcome_sequence(emu: DbtCloudEmulator, api: requests.Session) -> None:
    emu.add_job(slow_job(outcome_sequence=["error", "cancelled"], serial=False))
    ids = [trigger(emu, api)["id"] for _ in range(3)]
    emu.advance(60)
    assert [get_run(emu, api, i)["status"] for i in ids] == [20, 30, 10]


def test_serial_runs_are_blocked_by_the_previous_run(emu: DbtCloudEmulator, api: requests.Session) -> None:
    emu.add_job(slow_job(queue_seconds=0, start_seconds=0, run_seconds=10))
    first, second, third = (trigger(emu, api)["id"] for _ in range(3))
    assert get_run(emu, api, first)["status"] == 3
    blocked = get_run(emu, api, second)
    assert blocked["status"] == 1 and blocked["blocked_by"] == [first]
    assert get_run(emu, api, third)["blocked_by"] == [second]
    emu.advance(10.5)
    assert get_run(emu, api, first)["status"] == 10
    running = get_run(emu, api, second)
    assert running["status"] == 3 and running["blocked_by"] == []
    emu.advance(10)
    assert [get_run(emu, api, i)["status"] for i in (first, second, third)] == [10, 10, 3]


def test_non_serial_runs_run_concurrently(emu: DbtCloudEmulator, api: requests.Session) -> None:
    emu.add_job(slow_job(queue_seconds=0, start_seconds=0, run_seconds=10, serial=False))
    ids = [trigger(emu, api)["id"] for _ in range(20)]
    assert {get_run(emu, api, i)["status"] for i in ids} == {3}
    assert all(get_run(emu, api, i)["blocked_by"] == [] for i in ids)


# --------------------------------------------------------------------------- cancel and rerun
def test_cancel_non_terminal_then_terminal(emu: DbtCloudEmulator, api: requests.Session) -> None:
    emu.add_job(slow_job())
    first, second = trigger(emu, api)["id"], trigger(emu, api)["id"]
    response = api.post(f"{emu.base_url}{A}/runs/{second}/cancel/")  # queued and blocked
    assert response.status_code == 200
    cancelled = response.json()["data"]
    assert cancelled["status"] == 30 and cancelled["status_message"] == "Cancelled by user."
    assert cancelled["finished_at"] and cancelled["started_at"] is None and cancelled["blocked_by"] == []
    emu.advance(25)  # first is running
    cancelled = api.post(f"{emu.base_url}{A}/runs/{first}/cancel/").json()["data"]
    assert (cancelled["status"], cancelled["is_cancelled"], cancelled["started_at"] is not None) == (30, True, True)
    steps = get_run(emu, api, first, include_related=["run_steps"])["run_steps"]
    assert [s["status"] for s in steps] == [30]
    emu.advance(100)
    again = api.post(f"{emu.base_url}{A}/runs/{first}/cancel/").json()["data"]  # terminal: unchanged
    assert again["status"] == 30 and again["finished_at"] == cancelled["finished_at"]
    third = trigger(emu, api)["id"]
    emu.advance(100)
    assert api.post(f"{emu.base_url}{A}/runs/{third}/cancel/").json()["data"]["status"] == 10


def test_server_side_cancel_unblocks_the_next_run(emu: DbtCloudEmulator, api: requests.Session) -> None:
    emu.add_job(slow_job(queue_seconds=0, start_seconds=0))
    first, second = trigger(emu, api)["id"], trigger(emu, api)["id"]
    emu.advance(1)
    assert emu.cancel_run(first)["status"] == 30
    assert get_run(emu, api, second)["status"] == 3
    assert emu.get_run(first)["status_message"] == "Cancelled by user."


def test_rerun_after_error_and_after_success(emu: DbtCloudEmulator, api: requests.Session) -> None:
    emu.add_job(slow_job(outcome_sequence=["error"], run_results={"results": []}))
    failed = trigger(emu, api, schema_override="dbt_ci")["id"]
    emu.advance(60)
    assert get_run(emu, api, failed)["can_retry"] is True
    response = api.post(f"{emu.base_url}{A}/jobs/42/rerun/")
    assert response.status_code == 200
    rerun = response.json()["data"]
    assert rerun["trigger"]["cause_category"] == "rerun" and rerun["retrying_run_id"] == failed
    assert rerun["trigger"]["schema_override"] == "dbt_ci" and rerun["status"] == 1
    old = get_run(emu, api, failed)
    assert old["can_retry"] is False and old["retry_not_supported_reason"] == "RETRY_NOT_LATEST_RUN"
    emu.advance(60)
    assert get_run(emu, api, rerun["id"])["status"] == 10
    plain = api.post(f"{emu.base_url}{A}/jobs/42/rerun/").json()["data"]  # latest succeeded: plain trigger
    assert plain["trigger"]["cause_category"] == "api" and plain["trigger"]["cause"] == "API"
    assert plain["retrying_run_id"] is None


# --------------------------------------------------------------------------- routing and errors
def test_missing_trailing_slash_redirects_with_308(emu: DbtCloudEmulator, api: requests.Session) -> None:
    emu.add_job(slow_job())
    for method, path in [("GET", f"{A}/runs"), ("POST", f"{A}/jobs/42/run"), ("GET", f"{A}/jobs/42")]:
        response = api.request(method, emu.base_url + path, params={"x": "1"}, allow_redirects=False)
        assert response.status_code == 308 and response.headers["Location"] == f"{path}/?x=1"
    assert emu.runs == {}
    followed = api.post(f"{emu.base_url}{A}/jobs/42/run", json={"cause": "followed"})  # requests keeps POST on 308
    assert followed.status_code == 200 and len(emu.runs) == 1
    assert [r.status for r in emu.requests][-2:] == [308, 200]


def test_auth_errors(emu: DbtCloudEmulator) -> None:
    emu.add_job(slow_job())
    invalid = {
        "status": {"code": 401, "is_success": False, "user_message": "Invalid token.", "developer_message": None},
        "data": None,
    }
    for headers in ({}, {"Authorization": "Token nope"}, {"Authorization": TOKEN}, {"Authorization": "Basic x"}):
        response = requests.get(f"{emu.base_url}{A}/runs/", headers=headers)
        assert response.status_code == 401 and response.json() == invalid
    assert requests.get(f"{emu.base_url}{A}/runs/", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    response = requests.get(f"{emu.base_url}/api/v2/accounts/2/runs/", headers={"Authorization": f"Token {TOKEN}"})
    assert response.status_code == 403
    assert response.json() == {
        "status": {
            "code": 403,
            "is_success": False,
            "user_message": "Access denied: Token is not scoped to account.",
            "developer_message": None,
        },
        "data": None,
    }
    for account in (2, 3):  # one token may serve several accounts
        shared = {"Authorization": "Token tok-shared"}
        assert requests.get(f"{emu.base_url}/api/v2/accounts/{account}/", headers=shared).status_code == 200


def test_not_found_and_method_not_allowed(emu: DbtCloudEmulator, api: requests.Session) -> None:
    emu.add_job(slow_job())
    not_found = {
        "status": {
            "code": 404,
            "is_success": False,
            "user_message": "The requested resource was not found. Please check that you have the proper permissions.",
            "developer_message": "",
        },
        "data": None,
    }
    for method, path in [
        ("GET", f"{A}/runs/123/"),
        ("POST", f"{A}/jobs/999/run/"),
        ("POST", f"{A}/runs/123/cancel/"),
        ("GET", f"{A}/jobs/999/"),
        ("GET", "/api/v2/nothing/here/"),
    ]:
        response = api.request(method, emu.base_url + path, json={"cause": "x"})
        assert response.status_code == 404 and response.json() == not_found, path
        assert response.headers["Content-Type"] == "application/json"
    response = api.get(f"{emu.base_url}{A}/jobs/42/run/")
    assert response.status_code == 405 and response.json() == {"detail": 'Method "GET" not allowed.'}
    assert api.delete(f"{emu.base_url}{A}/runs/").status_code == 405


BAD_TRIGGERS: list[tuple[Any, str]] = [
    ({}, "cause"),
    ({"cause": ""}, "cause"),
    ({"cause": "x" * 256}, "cause"),
    ({"cause": 5}, "cause"),
    ({"cause": "x", "threads_override": "4"}, "threads_override"),
    ({"cause": "x", "threads_override": True}, "threads_override"),
    ({"cause": "x", "generate_docs_override": "yes"}, "generate_docs_override"),
    ({"cause": "x", "git_branch": ""}, "git_branch"),
    ({"cause": "x", "steps_override": []}, "steps_override"),
    ({"cause": "x", "steps_override": ["dbt run", ""]}, "steps_override"),
    ({"cause": "x", "steps_override": "dbt run"}, "steps_override"),
]


@pytest.mark.parametrize(("body", "field"), BAD_TRIGGERS)
def test_trigger_validation(emu: DbtCloudEmulator, api: requests.Session, body: Any, field: str) -> None:
    emu.add_job(slow_job())
    response = api.post(f"{emu.base_url}{A}/jobs/42/run/", json=body)
    assert response.status_code == 400
    payload = response.json()
    assert payload["status"] == {
        "code": 400,
        "is_success": False,
        "user_message": "The request was invalid. Please double check the provided data and try again.",
        "developer_message": "",
    }
    assert set(payload["data"]) == {field} and payload["extra"] == {} and payload["error_code"] is None
    assert emu.runs == {}


def test_trigger_unknown_field_and_accepted_edge_cases(emu: DbtCloudEmulator, api: requests.Session) -> None:
    emu.add_job(slow_job())
    response = api.post(f"{emu.base_url}{A}/jobs/42/run/", json={"cause": "x", "custom_branch_only": True})
    assert response.status_code == 400
    assert response.json()["data"] == "Additional properties are not allowed ('custom_branch_only' was unexpected)"
    assert api.post(f"{emu.base_url}{A}/jobs/42/run/", data="{not json").status_code == 400
    trigger(emu, api, cause="x" * 255)
    trigger(emu, api, steps_override=None, schema_override=None)  # what Airflow's hook sends
    form = api.post(
        f"{emu.base_url}{A}/jobs/42/run/",
        data={"cause": "form", "threads_override": "8", "steps_override": ["dbt run", "dbt test"]},
    )
    assert form.status_code == 200
    assert form.json()["data"]["trigger"]["threads_override"] == 8
    assert form.json()["data"]["trigger"]["steps_override"] == ["dbt run", "dbt test"]
    assert len(emu.runs) == 3


# --------------------------------------------------------------------------- query formats and lists
@pytest.mark.parametrize(
    "params",
    [
        "include_related=trigger,job,run_steps",
        'include_related=["trigger","job","run_steps"]',
        "include_related=['trigger', 'job', 'run_steps']",
        "include_related=trigger&include_related=job&include_related=run_steps",
    ],
)
def test_include_related_encodings(emu: DbtCloudEmulator, api: requests.Session, params: str) -> None:
    emu.add_job(slow_job())
    run_id = trigger(emu, api)["id"]
    emu.advance(60)
    run = api.get(f"{emu.base_url}{A}/runs/{run_id}/?{params}").json()["data"]
    assert run["trigger"]["cause"] == "test" and run["job"]["name"] == "nightly" and len(run["run_steps"]) == 1
    assert run["environment"] is None
    listed = api.get(f"{emu.base_url}{A}/runs/?{params}").json()["data"][0]
    assert listed["trigger"]["id"] == run["trigger_id"] and listed["job"]["id"] == 42


@pytest.mark.parametrize("encoding", ["repeated", "json"])
def test_pk_in_encodings(emu: DbtCloudEmulator, api: requests.Session, encoding: str) -> None:
    emu.add_job(slow_job(serial=False))
    ids = [trigger(emu, api)["id"] for _ in range(4)]
    wanted = [ids[0], ids[2], 12345]
    params: Any = {"pk__in": wanted} if encoding == "repeated" else {"pk__in": json.dumps(wanted)}
    response = api.get(f"{emu.base_url}{A}/runs/", params=params)
    assert response.status_code == 200
    assert [r["id"] for r in response.json()["data"]] == [ids[0], ids[2]]
    assert response.json()["extra"]["filters"]["pk__in"] == wanted


def test_status_filters(emu: DbtCloudEmulator, api: requests.Session) -> None:
    emu.add_job(slow_job(outcome_sequence=["error"], serial=False))
    failed, ok = trigger(emu, api)["id"], trigger(emu, api)["id"]
    emu.advance(60)
    running = trigger(emu, api)["id"]
    url = f"{emu.base_url}{A}/runs/"
    assert [r["id"] for r in api.get(url, params={"status": 20}).json()["data"]] == [failed]
    assert [r["id"] for r in api.get(url, params={"status__in": [10, 1]}).json()["data"]] == [ok, running]
    assert [r["id"] for r in api.get(url, params={"status__in": "[20, 10]"}).json()["data"]] == [failed, ok]
    bad = api.get(url, params={"status__in": "x"})
    assert bad.status_code == 400
    assert bad.json()["data"] == {"status__in": "'x' is not valid under any of the given schemas"}
    assert api.get(url, params={"status__in": 7}).status_code == 400
    by_finish = api.get(url, params={"order_by": "-finished_at"}).json()["data"]
    assert [r["id"] for r in by_finish] == [running, ok, failed]  # NULLS FIRST when descending
    assert api.get(url, params={"order_by": "name"}).status_code == 400


def test_list_runs_validation(emu: DbtCloudEmulator, api: requests.Session) -> None:
    url = f"{emu.base_url}{A}/runs/"
    too_many = api.get(url, params={"limit": 101})
    assert too_many.status_code == 400 and too_many.json()["data"] == {
        "limit": "Ensure this value is less than or equal to 100."
    }
    unknown = api.get(url, params={"created_at__gte": "2024-01-01"})
    assert unknown.status_code == 400
    assert unknown.json()["data"] == "Additional properties are not allowed ('created_at__gte' was unexpected)"
    assert api.get(url, params={"job_definition_id": "abc"}).status_code == 400
    assert api.get(url, params={"limit": 100, "offset": 0}).status_code == 200


def test_paging(emu: DbtCloudEmulator, api: requests.Session) -> None:
    emu.add_job(slow_job(serial=False))
    emu.add_job(slow_job(job_id=43, environment_id=10, serial=False))
    ids = [trigger(emu, api)["id"] for _ in range(5)]
    other = trigger(emu, api, job_id=43)["id"]
    url = f"{emu.base_url}{A}/runs/"
    pages = []
    offset = 0
    while True:
        params: dict[str, Any] = {"job_definition_id": 42, "limit": 2, "offset": offset, "order_by": "-id"}
        body = api.get(url, params=params).json()
        pages.append([r["id"] for r in body["data"]])
        assert body["extra"]["pagination"] == {"count": len(body["data"]), "total_count": 5}
        assert body["extra"]["order_by"] == "-id"
        assert body["extra"]["filters"] == {
            "limit": 2,
            "offset": offset,
            "state": "all",
            "account_id": 1,
            "job_definition_id": 42,
        }
        offset += body["extra"]["pagination"]["count"]
        if offset >= body["extra"]["pagination"]["total_count"]:
            break
    assert pages == [ids[:2:-1], ids[2:0:-1], ids[:1]]
    assert [r["id"] for r in api.get(url, params={"environment_id": 10}).json()["data"]] == [other]
    assert [r["id"] for r in api.get(url, params={"id__gt": ids[3]}).json()["data"]] == [ids[4], other]
    assert api.get(url, params={"project_id": 8}).json()["extra"]["pagination"]["total_count"] == 0


def test_jobs_account_projects_environments(emu: DbtCloudEmulator, api: requests.Session) -> None:
    emu.add_job(slow_job(project_name="analytics", environment_name="prod"))
    emu.add_job(slow_job(job_id=43, name="hourly", environment_id=10, environment_name="staging"))
    emu.add_job(slow_job(job_id=44, name="other", project_id=8, project_name="marketing", environment_id=11))
    base = emu.base_url
    jobs = api.get(f"{base}{A}/jobs/", params={"project_id": 7}).json()
    assert [j["id"] for j in jobs["data"]] == [42, 43] and jobs["extra"]["filters"]["state"] == "active"
    filters: dict[str, Any] = {"name__icontains": "HOUR", "environment_id": 10}
    named = api.get(f"{base}{A}/jobs/", params=filters).json()["data"]
    assert [j["id"] for j in named] == [43]
    job = api.get(f"{base}{A}/jobs/42/").json()["data"]
    assert job["project"] is None and job["execute_steps"] == ["dbt build"] and job["environment_id"] == 9
    job = api.get(f"{base}{A}/jobs/42/", params={"include_related": "project,environment"}).json()["data"]
    assert job["project"]["name"] == "analytics" and job["environment"]["name"] == "prod"
    account = api.get(f"{base}{A}/").json()["data"]
    assert account["id"] == 1 and account["state"] == 1 and account["locked"] is False and account["run_slots"] >= 1
    projects = api.get(f"{base}/api/v3/accounts/1/projects/").json()["data"]
    assert [(p["id"], p["name"]) for p in projects] == [(7, "analytics"), (8, "marketing")]
    found = api.get(f"{base}/api/v3/accounts/1/projects/", params={"name__icontains": "MARK"}).json()["data"]
    assert [p["id"] for p in found] == [8]
    envs = api.get(f"{base}/api/v3/accounts/1/projects/7/environments/").json()["data"]
    assert [(e["id"], e["name"], e["deployment_type"]) for e in envs] == [
        (9, "prod", "production"),
        (10, "staging", "staging"),
    ]
    by_name = api.get(f"{base}/api/v3/accounts/1/projects/7/environments/", params={"name": "staging"}).json()
    assert [e["id"] for e in by_name["data"]] == [10]
    assert api.get(f"{base}/api/v3/accounts/1/projects/99/environments/").status_code == 404
    assert api.get(f"{base}/api/v3/accounts/1/projects/", params={"bogus": 1}).status_code == 400


# --------------------------------------------------------------------------- artifacts
def test_artifacts(emu: DbtCloudEmulator, api: requests.Session) -> None:
    results = {"metadata": {"dbt_schema_version": "x"}, "results": [{"unique_id": "model.a.b", "status": "success"}]}
    emu.add_job(slow_job(run_results=results, steps=STEPS[:1]))
    emu.add_job(slow_job(job_id=43))
    run_id, bare = trigger(emu, api)["id"], trigger(emu, api, job_id=43)["id"]
    url = f"{emu.base_url}{A}/runs/{run_id}/artifacts/"
    assert api.get(url).json()["data"] is None
    assert api.get(url + "run_results.json").status_code == 404
    emu.advance(60)
    assert api.get(url).json()["data"] == ["manifest.json", "run_results.json"]
    assert get_run(emu, api, run_id)["artifacts_saved"] is True
    raw = api.get(url + "run_results.json", params={"step": 1})
    assert raw.status_code == 200 and raw.headers["Content-Type"] == "application/json"
    assert raw.json() == results  # the raw file, not enveloped
    assert "nodes" in api.get(url + "manifest.json").json()
    missing = api.get(url + "catalog.json")
    assert missing.status_code == 404 and missing.json()["status"]["code"] == 404
    assert api.get(url + "run_results.json", params={"step": 5}).status_code == 404
    assert api.get(f"{emu.base_url}{A}/jobs/42/artifacts/run_results.json").json() == results
    assert api.get(f"{emu.base_url}{A}/runs/{bare}/artifacts/").json()["data"] is None


# --------------------------------------------------------------------------- faults and rate limits
@pytest.mark.parametrize("kind", ["500", "502", "503"])
def test_fault_server_errors_are_html(emu: DbtCloudEmulator, api: requests.Session, kind: str) -> None:
    emu.add_job(slow_job())
    emu.faults.set(rate=1.0, kinds=(kind,), seed=1)
    response = api.post(f"{emu.base_url}{A}/jobs/42/run/", json={"cause": "x"})
    assert response.status_code == int(kind) and response.headers["Content-Type"] == "text/html"
    with pytest.raises(ValueError):
        response.json()
    assert emu.runs == {}  # decided before processing: no run
    assert emu.requests[-1].fault == kind and emu.requests[-1].status == int(kind)


def test_fault_429_has_retry_after(emu: DbtCloudEmulator, api: requests.Session) -> None:
    emu.add_job(slow_job())
    emu.faults.set(rate=1.0, kinds=("429",), retry_after=2.5)
    response = api.post(f"{emu.base_url}{A}/jobs/42/run/", json={"cause": "x"})
    assert response.status_code == 429 and response.headers["Retry-After"] == "3"
    assert response.json()["status"]["code"] == 429 and emu.runs == {}


def test_fault_reset_aborts_before_processing(emu: DbtCloudEmulator, api: requests.Session) -> None:
    emu.add_job(slow_job())
    emu.faults.set(rate=1.0, kinds=("reset",))
    with pytest.raises(requests.ConnectionError):
        api.post(f"{emu.base_url}{A}/jobs/42/run/", json={"cause": "x"})
    assert emu.runs == {} and emu.requests[-1].status == 0 and emu.requests[-1].fault == "reset"


def test_fault_reset_after_creates_the_run_but_never_answers(emu: DbtCloudEmulator, api: requests.Session) -> None:
    emu.add_job(slow_job())
    emu.faults.set(rate=1.0, kinds=("reset_after",))
    assert api.get(f"{emu.base_url}{A}/runs/").status_code == 200  # POST only
    with pytest.raises(requests.ConnectionError):
        api.post(f"{emu.base_url}{A}/jobs/42/run/", json={"cause": "ambiguous"})
    (run,) = emu.runs.values()
    assert run["trigger"]["cause"] == "ambiguous"


def test_fault_stall_delays_then_answers(emu: DbtCloudEmulator, api: requests.Session) -> None:
    emu.add_job(slow_job())
    emu.faults.set(rate=1.0, kinds=("stall",), stall_seconds=0.4)
    started = time.monotonic()
    assert api.get(f"{emu.base_url}{A}/jobs/42/").status_code == 200
    assert time.monotonic() - started >= 0.4
    with pytest.raises(requests.Timeout):
        api.get(f"{emu.base_url}{A}/jobs/42/", timeout=0.1)


def test_faults_are_seeded_filtered_and_capped(emu: DbtCloudEmulator, api: requests.Session) -> None:
    def sequence(seed: int) -> list[int]:
        emu.faults.set(rate=0.5, kinds=("500", "503"), seed=seed)
        return [api.get(f"{emu.base_url}{A}/").status_code for _ in range(20)]

    first = sequence(7)
    assert first == sequence(7) and {200, 500, 503} <= set(first)
    emu.faults.set(rate=1.0, kinds=("500",), methods=("POST",))
    assert api.get(f"{emu.base_url}{A}/").status_code == 200
    emu.faults.set(rate=1.0, kinds=("500",), paths=("/runs/",))
    assert api.get(f"{emu.base_url}{A}/").status_code == 200
    assert api.get(f"{emu.base_url}{A}/runs/").status_code == 500
    emu.faults.set(rate=1.0, kinds=("500",), max_faults=2)
    assert [api.get(f"{emu.base_url}{A}/").status_code for _ in range(3)] == [500, 500, 200]
    emu.faults.set(rate=1.0, kinds=("500",))
    assert api.get(f"{emu.base_url}/_emulator/runs").status_code == 200  # control routes never fault
    emu.faults.clear()
    assert api.get(f"{emu.base_url}{A}/").status_code == 200
    with pytest.raises(ValueError):
        emu.faults.set(kinds=("boom",))


def test_rate_limit_and_cooldown(emu: DbtCloudEmulator) -> None:
    emu.rate_limit(requests_per_minute=3, cooldown_seconds=0.6, retry_after=True)
    one, two = {"Authorization": f"Token {TOKEN}"}, {"Authorization": "Token tok-2"}
    codes = [requests.get(f"{emu.base_url}{A}/", headers=one).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    limited = requests.get(f"{emu.base_url}{A}/", headers=one)  # cooldown: still limited
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    assert limited.json()["status"]["code"] == 429
    assert requests.get(f"{emu.base_url}/api/v2/accounts/2/", headers=two).status_code == 200  # per account
    time.sleep(0.7)
    assert requests.get(f"{emu.base_url}{A}/", headers=one).status_code == 200
    emu.rate_limit(requests_per_minute=1, retry_after=False)
    requests.get(f"{emu.base_url}{A}/", headers=one)
    assert "Retry-After" not in requests.get(f"{emu.base_url}{A}/", headers=one).headers
    emu.rate_limit(None)
    assert all(requests.get(f"{emu.base_url}{A}/", headers=one).ok for _ in range(5))


# --------------------------------------------------------------------------- inspection, transport, control
def test_request_log(emu: DbtCloudEmulator, api: requests.Session) -> None:
    emu.add_job(slow_job())
    trigger(emu, api)
    api.get(f"{emu.base_url}{A}/runs/", params={"status__in": [1, 2]})
    first, second = emu.requests
    assert first.method == "POST" and first.body == {"cause": "test"} and first.account_id == 1
    assert first.headers["Authorization"] == "REDACTED" and TOKEN not in json.dumps(first.headers)
    assert second.query == {"status__in": ["1", "2"]} and second.status == 200 and second.fault is None
    assert emu.request_count() == 2 and emu.request_count("GET") == 1 and emu.request_count(path_contains="/jobs/") == 1
    emu.clear_requests()
    assert emu.requests == []


def test_keep_alive_reuses_one_connection(emu: DbtCloudEmulator) -> None:
    emu.add_job(slow_job())
    connection = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
    headers = {"Authorization": f"Token {TOKEN}", "Content-Type": "application/json"}
    for _ in range(3):
        connection.request("POST", f"{A}/jobs/42/run/", body=json.dumps({"cause": "k"}), headers=headers)
        response = connection.getresponse()
        assert response.status == 200 and int(response.headers["Content-Length"]) == len(response.read())
        connection.request("GET", f"{A}/jobs/42", headers=headers)  # 308 keeps the connection too
        response = connection.getresponse()
        assert response.status == 308 and response.read() == b""
    sock = connection.sock
    assert sock is not None and sock.fileno() != -1
    connection.close()
    assert len(emu.runs) == 3


def test_https_with_generated_certificate() -> None:
    with DbtCloudEmulator(tls=True, accounts={1: TOKEN}) as emu:
        assert emu.base_url.startswith("https://127.0.0.1:") and emu.ca_cert_path
        assert Path(emu.ca_cert_path).read_text().startswith("-----BEGIN CERTIFICATE-----")
        headers = {"Authorization": f"Token {TOKEN}"}
        assert requests.get(f"{emu.base_url}{A}/", headers=headers, verify=emu.ca_cert_path).status_code == 200
        localhost = f"https://localhost:{emu.port}{A}/"
        assert requests.get(localhost, headers=headers, verify=emu.ca_cert_path).status_code == 200
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{emu.base_url}{A}/", headers=headers, verify=True)
        cert_dir = Path(emu.ca_cert_path).parent
    assert not cert_dir.exists()  # temporary certificates are removed on stop


def test_stop_closes_the_port_and_runs_stay_readable(api: requests.Session) -> None:
    emu = DbtCloudEmulator(accounts={1: TOKEN}).start()
    emu.add_job(slow_job())
    run_id = trigger(emu, api)["id"]
    url = emu.base_url
    emu.stop()
    with pytest.raises(requests.ConnectionError):
        api.get(f"{url}{A}/", timeout=2)
    assert emu.get_run(run_id)["href"].startswith(url)


def test_control_routes(emu: DbtCloudEmulator, api: requests.Session) -> None:
    control = f"{emu.base_url}/_emulator"
    job = {"job_id": 77, "name": "ctl", "run_seconds": 30, "steps": [{"name": "Invoke dbt with `dbt run`"}]}
    assert api.post(f"{control}/jobs", json=job).json()["job_id"] == 77
    assert api.post(f"{control}/jobs", json={"job_id": 1, "bogus": 1}).status_code == 400
    run_id = trigger(emu, api, job_id=77)["id"]
    runs = api.get(f"{control}/runs").json()
    assert [r["id"] for r in runs] == [run_id] and runs[0]["job"]["name"] == "ctl"
    assert api.post(f"{control}/runs/{run_id}/cancel").json()["status"] == 30
    assert api.post(f"{control}/runs/123/cancel").status_code == 404
    summary = api.get(f"{control}/requests", params={"summary": 1}).json()
    assert summary == {"total": 1, "by_method_path_template": {"POST /api/v2/accounts/{account}/jobs/{job}/run/": 1}}
    assert len(api.get(f"{control}/requests").json()) == 1
    assert api.post(f"{control}/faults", json={"rate": 1.0, "kinds": ["503"]}).ok
    assert api.get(f"{emu.base_url}{A}/").status_code == 503
    assert api.post(f"{control}/faults", json={}).ok
    assert api.post(f"{control}/faults", json={"kinds": ["nope"]}).status_code == 400
    assert api.post(f"{control}/rate_limit", json={"requests_per_minute": 1}).ok
    assert [api.get(f"{emu.base_url}{A}/").status_code for _ in range(2)] == [200, 429]
    assert api.post(f"{control}/reset").ok
    assert emu.runs == {} and emu.requests == [] and api.get(f"{emu.base_url}{A}/").status_code == 200
    assert requests.get(f"{control}/health").json() == {"ok": True}
    assert api.get(f"{control}/nope").status_code == 404


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("tls", [False, True])
def test_cli(tmp_path: Path, tls: bool) -> None:
    port = _free_port()
    args = [sys.executable, "-m", "airflow_dbt_cloud_dlt.testing", "--port", str(port), "--token", "cli-token"]
    args += ["--tls", "--cert-dir", str(tmp_path)] if tls else ["--job", "42:error:0.2", "--job", "43"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        scheme = "https" if tls else "http"
        jobs = "1" if tls else "42, 43"
        assert line == f"dbt Cloud emulator listening on {scheme}://127.0.0.1:{port} (account 1, jobs: {jobs})"
        verify: str | bool = True
        if tls:
            assert process.stdout.readline().strip() == f"CA certificate: {tmp_path / 'ca.pem'}"
            verify = str(tmp_path / "ca.pem")
        headers = {"Authorization": "Token cli-token"}
        job = 1 if tls else 42
        url = f"{scheme}://127.0.0.1:{port}{A}/jobs/{job}/"
        response = requests.post(f"{url}run/", json={"cause": "cli"}, headers=headers, verify=verify)
        assert response.status_code == 200, response.text
        if tls:
            assert requests.get(url, headers=headers, verify=verify).json()["data"]["name"] == "daily build"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0, process.stderr.read() if process.stderr else ""


def test_other_routes(emu: DbtCloudEmulator, api: requests.Session) -> None:
    emu.add_job(slow_job())
    base = emu.base_url
    accounts = api.get(f"{base}/api/v2/accounts/").json()["data"]
    assert [a["id"] for a in accounts] == [1]  # only the token's accounts
    assert api.get(f"{base}/api/v3/accounts/1/projects/7/").json()["data"]["name"] == "analytics"
    assert api.get(f"{base}/api/v3/accounts/1/projects/7/environments/9/").json()["data"]["name"] == "prod"
    assert api.get(f"{base}/api/v3/accounts/1/projects/8/").status_code == 404
    assert api.get(f"{base}/api/v3/accounts/1/projects/8/environments/9/").status_code == 404
    assert emu.token == TOKEN
    control = f"{base}/_emulator"
    run_id = trigger(emu, api)["id"]
    assert api.post(f"{control}/advance", json={"seconds": 100}).ok
    assert get_run(emu, api, run_id)["status"] == 10
    assert api.delete(f"{control}/requests").ok and emu.requests == []


def test_concurrent_triggers_are_consistent(emu: DbtCloudEmulator) -> None:
    from concurrent.futures import ThreadPoolExecutor

    emu.add_job(slow_job(queue_seconds=0, start_seconds=0))

    def fire(i: int) -> int:
        response = requests.post(
            f"{emu.base_url}{A}/jobs/42/run/", json={"cause": f"c{i}"}, headers={"Authorization": f"Token {TOKEN}"}
        )
        return int(response.json()["data"]["id"])

    with ThreadPoolExecutor(16) as pool:
        ids = sorted(pool.map(fire, range(64)))
    assert len(set(ids)) == 64 and ids == list(range(ids[0], ids[0] + 64))
    runs = emu.runs
    assert runs[ids[0]]["status"] == 3
    assert all(runs[i]["blocked_by"] == [i - 1] and runs[i]["status"] == 1 for i in ids[1:])
    assert emu.request_count("POST") == 64


def test_independent_of_airflow_and_the_api_client() -> None:
    code = (
        "import sys, airflow_dbt_cloud_dlt.testing.__main__\n"
        "bad = [m for m in sys.modules if m == 'airflow' or m.startswith(('airflow.', 'airflow_dbt_cloud_dlt.api'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_certificate_can_name_extra_hosts(tmp_path: Path) -> None:
    from cryptography import x509

    from airflow_dbt_cloud_dlt.testing.tls import generate_certificates

    files = generate_certificates(tmp_path, hostnames=("dbt-cloud-emulator",))
    leaf = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost", "dbt-cloud-emulator"]
