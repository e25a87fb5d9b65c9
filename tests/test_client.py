"""The sync client and the wait loop against the emulator, over real loopback HTTP(S)."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import certifi
import pytest
import requests
from conftest import ACCOUNT_ID, TOKEN

from airflow_dbt_cloud_dlt.api import DbtCloudClient, RetryPolicy, wait_for_run
from airflow_dbt_cloud_dlt.api.errors import (
    DbtCloudAuthError,
    DbtCloudConfigError,
    DbtCloudConnectionError,
    DbtCloudNotFoundError,
    DbtCloudPermissionError,
    DbtCloudRunTimeoutError,
    DbtCloudServerError,
    DbtCloudValidationError,
)
from airflow_dbt_cloud_dlt.testing import DbtCloudEmulator, JobScript, StepScript

FAST = RetryPolicy(max_attempts=4, initial_wait=0.01, max_wait=0.05)
RUN_RESULTS = {"results": [{"unique_id": "model.p.orders", "status": "error", "message": "boom"}], "args": {}}


@pytest.fixture
def client(credentials: dict[str, Any]) -> Iterator[DbtCloudClient]:
    with DbtCloudClient(credentials, retry=FAST) as c:
        yield c


def trigger_raw(emu: DbtCloudEmulator, job_id: int, count: int) -> list[int]:
    """Start runs with plain requests (test set-up that bypasses the client and its rate budget)."""
    with requests.Session() as session:
        session.headers["Authorization"] = f"Token {TOKEN}"
        url = f"{emu.base_url}/api/v2/accounts/{ACCOUNT_ID}/jobs/{job_id}/run/"
        return [session.post(url, json={"cause": "set-up"}).json()["data"]["id"] for _ in range(count)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _retry_logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "Retrying in" in r.getMessage()]


# --- runs -----------------------------------------------------------------------------------------------


def test_trigger_get_cancel(emulator: DbtCloudEmulator, client: DbtCloudClient) -> None:
    emulator.add_job(JobScript(job_id=5, run_seconds=5))
    run = client.trigger_job_run(5, {"cause": "mine", "threads_override": 8, "git_branch": None})
    assert (run["job_definition_id"], run["in_progress"]) == (5, True)
    assert emulator.requests[0].body == {"cause": "mine", "threads_override": 8}
    fetched = client.get_run(run["id"], include_related=["trigger", "run_steps"])
    assert fetched["id"] == run["id"] and fetched["trigger"]["cause"] == "mine"
    assert fetched["run_steps"][0]["name"] == "Invoke dbt with `dbt build`"
    assert emulator.requests[-1].query == {"include_related": ["trigger,run_steps"]}
    cancelled = client.cancel_run(run["id"])
    assert (cancelled["status"], cancelled["is_cancelled"]) == (30, True)
    assert client.get_run(run["id"])["status_humanized"] == "Cancelled"
    assert emulator.get_run(run["id"])["status"] == 30


def test_list_runs_pages_across_100(emulator: DbtCloudEmulator, client: DbtCloudClient) -> None:
    emulator.add_job(JobScript(job_id=9, run_seconds=30, serial=False))
    ids = trigger_raw(emulator, 9, 105)
    emulator.clear_requests()
    runs = client.list_runs(job_definition_id=9)
    assert [r["id"] for r in runs] == sorted(ids, reverse=True)
    lists = [r for r in emulator.requests if r.path == "/api/v2/accounts/1/runs/"]
    assert len(lists) == len(emulator.requests) == 2
    assert [(r.query["limit"], r.query["offset"], r.query["order_by"]) for r in lists] == [
        (["100"], ["0"], ["-id"]),
        (["100"], ["100"], ["-id"]),
    ]
    assert all(r.query["job_definition_id"] == ["9"] for r in lists)
    emulator.clear_requests()
    newest = client.list_runs(job_definition_id=9, limit=5, order_by="id")
    assert [r["id"] for r in newest] == sorted(ids)[:5]
    assert emulator.request_count() == 1 and emulator.requests[0].query["limit"] == ["5"]
    picked = client.list_runs(pk__in=ids[:3], status__in=[1, 2, 3])
    assert sorted(r["id"] for r in picked) == sorted(ids[:3])
    assert emulator.requests[-1].query["pk__in"] == [str(i) for i in ids[:3]]


def test_rerun_from_failure(emulator: DbtCloudEmulator, client: DbtCloudClient) -> None:
    emulator.add_job(JobScript(job_id=6, run_seconds=0.2, outcome_sequence=["error"], run_results=RUN_RESULTS))
    failed = client.trigger_job_run(6, {"cause": "first"})
    time.sleep(0.35)
    assert client.get_run(failed["id"])["is_error"] is True
    rerun = client.rerun_job(6)
    assert rerun["id"] != failed["id"]
    assert rerun["retrying_run_id"] == failed["id"]
    assert rerun["trigger"]["cause"] == f"Rerun of run {failed['id']} from point of failure"
    assert emulator.requests[-1].path == "/api/v2/accounts/1/jobs/6/rerun/"


def test_artifacts(emulator: DbtCloudEmulator, client: DbtCloudClient) -> None:
    emulator.add_job(JobScript(job_id=7, run_seconds=0.2, run_results=RUN_RESULTS))
    run = client.trigger_job_run(7, {"cause": "x"})
    assert client.list_run_artifacts(run["id"]) == []  # still running: no artifacts yet
    time.sleep(0.35)
    assert client.list_run_artifacts(run["id"]) == ["manifest.json", "run_results.json"]
    assert json.loads(client.get_run_artifact(run["id"], "run_results.json")) == RUN_RESULTS
    assert json.loads(client.get_run_artifact(run["id"], "run_results.json", step=1)) == RUN_RESULTS
    with pytest.raises(DbtCloudNotFoundError, match=r"artifact nope\.json of run"):
        client.get_run_artifact(run["id"], "nope.json")


# --- jobs, account ----------------------------------------------------------------------------------


@pytest.fixture
def jobs(emulator: DbtCloudEmulator) -> DbtCloudEmulator:
    emulator.add_job(JobScript(job_id=1, name="daily build", project_name="analytics", environment_name="prod"))
    emulator.add_job(JobScript(job_id=2, name="daily build v2", project_name="analytics", environment_name="prod"))
    emulator.add_job(
        JobScript(
            job_id=3,
            name="daily build",
            project_id=2,
            environment_id=2,
            project_name="marketing",
            environment_name="staging",
        )
    )
    return emulator


def test_get_job_list_jobs_account(jobs: DbtCloudEmulator, client: DbtCloudClient) -> None:
    assert client.get_job(2)["name"] == "daily build v2"
    assert [j["id"] for j in client.list_jobs()] == [1, 2, 3]
    assert [j["id"] for j in client.list_jobs(project_id=2)] == [3]
    account = client.get_account()
    assert (account["id"], account["name"]) == (1, "Emulated account 1")
    assert [p["name"] for p in client.list_projects()] == ["analytics", "marketing"]
    assert [e["name"] for e in client.list_environments(2)] == ["staging"]


def test_find_job_exact_name(jobs: DbtCloudEmulator, client: DbtCloudClient) -> None:
    assert client.find_job("analytics", "prod", "daily build")["id"] == 1
    assert client.find_job("analytics", "prod", "daily build v2")["id"] == 2
    assert client.find_job("marketing", "staging", "daily build")["id"] == 3
    with pytest.raises(DbtCloudConfigError, match="No dbt Cloud job named exactly 'hourly'"):
        client.find_job("analytics", "prod", "hourly")
    with pytest.raises(DbtCloudConfigError, match="No dbt Cloud project named exactly 'analytic'"):
        client.find_job("analytic", "prod", "daily build")
    with pytest.raises(DbtCloudConfigError, match="No dbt Cloud environment named exactly 'staging'"):
        client.find_job("analytics", "staging", "daily build")
    jobs.add_job(JobScript(job_id=4, name="daily build", project_name="analytics", environment_name="prod"))
    with pytest.raises(DbtCloudConfigError, match="2 dbt Cloud job named exactly 'daily build'") as info:
        client.find_job("analytics", "prod", "daily build")
    assert "daily build v2" in str(info.value)


def test_headers_and_trailing_slashes(jobs: DbtCloudEmulator, client: DbtCloudClient) -> None:
    run = client.trigger_job_run(1, {"cause": "x"})
    client.get_run(run["id"])
    client.list_runs(limit=3)
    client.cancel_run(run["id"])
    client.list_run_artifacts(run["id"])
    client.get_job(1)
    client.list_jobs()
    client.get_account()
    client.find_job("analytics", "prod", "daily build")
    records = jobs.requests
    assert len(records) == 11
    for record in records:
        assert record.headers["User-Agent"].startswith("airflow-dbt-cloud-dlt/")
        assert record.headers["Authorization"] == "REDACTED"
        assert record.path.endswith("/")
        assert record.status == 200
    assert {r.path.split("/")[2] for r in records} == {"v2", "v3"}


# --- errors -----------------------------------------------------------------------------------------


def test_401_403_404_map_to_typed_errors(emulator: DbtCloudEmulator, credentials: dict[str, Any]) -> None:
    emulator.add_job(JobScript(job_id=5))
    with (
        DbtCloudClient({**credentials, "api_token": "wrong-token"}, retry=FAST) as wrong,
        pytest.raises(DbtCloudAuthError, match="HTTP 401") as auth,
    ):
        wrong.get_job(5)
    assert "wrong-token" not in str(auth.value) and "access URL" not in str(auth.value)
    with (
        DbtCloudClient({**credentials, "account_id": 2}, retry=FAST) as other,
        pytest.raises(DbtCloudPermissionError, match=r"account 2 \(HTTP 403"),
    ):
        other.get_job(5)
    with DbtCloudClient(credentials, retry=FAST) as good:
        with pytest.raises(DbtCloudNotFoundError, match="job 999 was not found"):
            good.get_job(999)
        with pytest.raises(DbtCloudNotFoundError, match="job 999 was not found in account 1"):
            good.trigger_job_run(999, {"cause": "x"})
        with pytest.raises(DbtCloudValidationError) as invalid:
            good.trigger_job_run(5, {"cause": "x", "bogus_field": 1})
    assert "bogus_field" in str(invalid.value)
    assert [r.status for r in emulator.requests] == [401, 403, 404, 404, 400]  # none retried
    assert emulator.runs == {}


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.get_run("../1"),
        lambda c: c.get_run("abc"),
        lambda c: c.cancel_run(0),
        lambda c: c.trigger_job_run("../1", {"cause": "x"}),
        lambda c: c.trigger_job_run(5, {"threads_override": "4"}),
        lambda c: c.get_run_artifact(1, "../../etc/passwd"),
        lambda c: c.list_runs(pk__in=["1", "x"]),
    ],
)
def test_bad_input_raises_before_any_request(emulator: DbtCloudEmulator, client: DbtCloudClient, call: Any) -> None:
    with pytest.raises(DbtCloudConfigError):
        call(client)
    assert emulator.request_count() == 0


def test_missing_account_and_plain_http_refused_before_any_request(emulator: DbtCloudEmulator) -> None:
    with pytest.raises(DbtCloudConfigError, match="No dbt Cloud account id"):
        DbtCloudClient({"api_token": TOKEN, "base_url": emulator.base_url})
    with pytest.raises(DbtCloudConfigError, match="plain http"):
        DbtCloudClient({"api_token": TOKEN, "account_id": 1, "base_url": "http://example.com"})
    assert emulator.request_count() == 0


# --- retries ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "status"), [("500", 500), ("502", 502), ("503", 503), ("429", 429), ("reset", 0)])
def test_get_retried_through_faults(emulator: DbtCloudEmulator, client: DbtCloudClient, kind: str, status: int) -> None:
    emulator.add_job(JobScript(job_id=5))
    run = client.trigger_job_run(5, {"cause": "x"})
    emulator.clear_requests()
    emulator.faults.set(rate=1.0, kinds=(kind,), methods=("GET",), retry_after=0, max_faults=3)
    assert client.get_run(run["id"])["id"] == run["id"]
    assert [(r.status, r.fault) for r in emulator.requests] == [(status, kind)] * 3 + [(200, None)]


def test_get_gives_up_after_max_attempts(
    emulator: DbtCloudEmulator, client: DbtCloudClient, caplog: pytest.LogCaptureFixture
) -> None:
    emulator.faults.set(rate=1.0, kinds=("503",), methods=("GET",))
    with pytest.raises(DbtCloudServerError, match="HTTP 503"):
        client.get_account()
    assert emulator.request_count("GET") == 4
    assert len(_retry_logs(caplog)) == 3


def test_429_retry_after_is_honoured(emulator: DbtCloudEmulator, client: DbtCloudClient) -> None:
    emulator.faults.set(rate=1.0, kinds=("429",), methods=("GET",), retry_after=1, max_faults=1)
    started = time.monotonic()
    client.get_account()
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 2.0
    first, second = emulator.requests
    assert (first.status, second.status) == (429, 200)
    assert second.time - first.time >= 0.9
    started = time.monotonic()
    client.get_account()  # the account's pause is over
    assert time.monotonic() - started < 0.5


@pytest.mark.parametrize(
    ("kind", "error", "runs"),
    [
        ("503", DbtCloudServerError, 0),
        ("500", DbtCloudServerError, 0),
        ("reset", DbtCloudConnectionError, 0),
        ("reset_after", DbtCloudConnectionError, 1),
    ],
)
def test_trigger_not_retried_when_it_may_have_started_a_run(
    emulator: DbtCloudEmulator, client: DbtCloudClient, kind: str, error: type[Exception], runs: int
) -> None:
    emulator.add_job(JobScript(job_id=5))
    emulator.faults.set(rate=1.0, kinds=(kind,), methods=("POST",))
    with pytest.raises(error) as info:
        client.trigger_job_run(5, {"cause": "x"})
    assert emulator.request_count("POST") == 1
    assert len(emulator.runs) == runs
    if isinstance(info.value, DbtCloudConnectionError):
        assert info.value.request_sent is True
        assert "may have reached dbt Cloud" in str(info.value)


def test_trigger_retried_on_429_creates_one_run(emulator: DbtCloudEmulator, client: DbtCloudClient) -> None:
    emulator.add_job(JobScript(job_id=5))
    emulator.faults.set(rate=1.0, kinds=("429",), methods=("POST",), retry_after=0, max_faults=2)
    run = client.trigger_job_run(5, {"cause": "x"})
    assert [r.status for r in emulator.requests] == [429, 429, 200]
    assert list(emulator.runs) == [run["id"]]


def test_trigger_retried_when_connection_refused(caplog: pytest.LogCaptureFixture) -> None:
    creds = {"api_token": TOKEN, "account_id": 1, "base_url": f"http://127.0.0.1:{free_port()}"}
    with DbtCloudClient(creds, retry=FAST) as client, pytest.raises(DbtCloudConnectionError) as info:
        client.trigger_job_run(5, {"cause": "x"})
    assert info.value.request_sent is False and info.value.transient is True
    assert "No answer from dbt Cloud at http://127.0.0.1" in str(info.value)
    assert len(_retry_logs(caplog)) == 3  # max_attempts=4: the POST certainly never reached a server


def test_stall_longer_than_timeout(emulator: DbtCloudEmulator, credentials: dict[str, Any]) -> None:
    emulator.faults.set(rate=1.0, kinds=("stall",), methods=("GET",), stall_seconds=2, max_faults=1)
    with DbtCloudClient({**credentials, "timeout": 0.5}, retry=RetryPolicy(max_attempts=1)) as client:
        started = time.monotonic()
        with pytest.raises(DbtCloudConnectionError, match="Timeout") as info:
            client.get_account()
        assert time.monotonic() - started < 1.5
        assert info.value.request_sent is True and info.value.transient is True
        assert client.get_account()["id"] == 1  # fault cap reached: the next GET is answered


def test_stall_retried_then_answered(emulator: DbtCloudEmulator, credentials: dict[str, Any]) -> None:
    emulator.faults.set(rate=1.0, kinds=("stall",), methods=("GET",), stall_seconds=2, max_faults=1)
    with DbtCloudClient({**credentials, "timeout": 0.5}, retry=FAST) as client:
        started = time.monotonic()
        assert client.get_account()["id"] == 1
        assert time.monotonic() - started < 1.5
    assert emulator.faults.injected == 1


@pytest.fixture
def tls_emulator() -> Iterator[DbtCloudEmulator]:
    with DbtCloudEmulator(tls=True, accounts={ACCOUNT_ID: TOKEN}) as emu:
        yield emu


def _tls_credentials(emu: DbtCloudEmulator, **extra: Any) -> dict[str, Any]:
    assert emu.base_url.startswith("https://127.0.0.1:")
    return {"api_token": TOKEN, "account_id": ACCOUNT_ID, "base_url": emu.base_url, **extra}


def test_https_with_ca_bundle(tls_emulator: DbtCloudEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):  # they must not override verify
        monkeypatch.delenv(name, raising=False)
    with DbtCloudClient(_tls_credentials(tls_emulator, verify=tls_emulator.ca_cert_path), retry=FAST) as client:
        assert client.get_account()["id"] == ACCOUNT_ID
    assert tls_emulator.request_count() == 1


def test_https_default_verify_fails_for_private_ca(
    tls_emulator: DbtCloudEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        DbtCloudClient(_tls_credentials(tls_emulator), retry=FAST) as client,
        pytest.raises(DbtCloudConnectionError) as info,
    ):
        client.get_account()
    assert info.value.transient is False and info.value.request_sent is False
    assert "TLS" in str(info.value) and "CERTIFICATE_VERIFY_FAILED" in str(info.value)
    assert tls_emulator.request_count() == 0  # the handshake failed: no request, and no retry
    assert _retry_logs(caplog) == []


@pytest.mark.parametrize("verify", ["ca", False])
def test_https_verify_setting_wins_over_ca_bundle_env(
    tls_emulator: DbtCloudEmulator, monkeypatch: pytest.MonkeyPatch, verify: object
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())  # common in containers and corporate networks
    setting = tls_emulator.ca_cert_path if verify == "ca" else verify
    with DbtCloudClient(_tls_credentials(tls_emulator, verify=setting), retry=FAST) as client:
        assert client.get_account()["id"] == ACCOUNT_ID


def test_proxies_setting_used(emulator: DbtCloudEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    # The emulator doubles as the configured forward proxy (it answers absolute-URI requests).
    creds = {
        "api_token": TOKEN,
        "account_id": 1,
        "base_url": f"http://127.0.0.2:{emulator.port}",
        "proxies": {"http": emulator.base_url},
    }
    with DbtCloudClient(creds, retry=RetryPolicy(max_attempts=1)) as client:
        assert client.get_account()["id"] == 1
    assert emulator.requests[0].path == "/api/v2/accounts/1/"


def test_proxies_setting_wins_over_proxy_env(emulator: DbtCloudEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NO_PROXY", "no_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")  # a proxy that is not there
    # The emulator doubles as the configured forward proxy (it answers absolute-URI requests).
    creds = {
        "api_token": TOKEN,
        "account_id": 1,
        "base_url": f"http://127.0.0.2:{emulator.port}",
        "proxies": {"http": emulator.base_url},
    }
    with DbtCloudClient(creds, retry=RetryPolicy(max_attempts=1)) as client:
        assert client.get_account()["id"] == 1


# --- waiting ----------------------------------------------------------------------------------------


def test_wait_for_run_returns_terminal_run(emulator: DbtCloudEmulator, client: DbtCloudClient) -> None:
    emulator.add_job(JobScript(job_id=5, run_seconds=0.3, outcome="error", steps=[StepScript("Invoke dbt with `x`")]))
    run = client.trigger_job_run(5, {"cause": "x"})
    seen: list[int] = []
    final = wait_for_run(client, run["id"], poll_interval=0.05, on_poll=lambda r: seen.append(r["status"]))
    assert (final["id"], final["status"], final["is_error"]) == (run["id"], 20, True)
    assert seen[-1] == 20 and seen[0] == 3 and len(seen) >= 3


def test_wait_for_run_tolerates_transient_faults(emulator: DbtCloudEmulator, credentials: dict[str, Any]) -> None:
    emulator.add_job(JobScript(job_id=5, run_seconds=1.5))
    emulator.faults.set(rate=0.3, kinds=("500", "502", "503", "429", "reset"), methods=("GET",), seed=3, retry_after=0)
    with DbtCloudClient(credentials, retry=RetryPolicy(max_attempts=1)) as client:
        run = client.trigger_job_run(5, {"cause": "x"})
        final = wait_for_run(client, run["id"], poll_interval=0.02, timeout=10)
    assert final["status"] == 10
    assert emulator.faults.injected >= 3
    assert any(r.status in (0, 429, 500, 502, 503) for r in emulator.requests)


def test_wait_for_run_timeout(emulator: DbtCloudEmulator, client: DbtCloudClient) -> None:
    emulator.add_job(JobScript(job_id=5, run_seconds=30))
    run = client.trigger_job_run(5, {"cause": "x"})
    started = time.monotonic()
    with pytest.raises(DbtCloudRunTimeoutError) as info:
        wait_for_run(client, run["id"], poll_interval=0.05, timeout=0.3)
    assert 0.25 <= time.monotonic() - started < 1.0
    assert info.value.run_id == run["id"] and info.value.run is not None and info.value.run["status"] == 3
    assert "did not finish within 0.3 s (last status: Running)" in str(info.value)
    assert isinstance(info.value, TimeoutError)


def test_wait_for_run_raises_on_404_at_once(emulator: DbtCloudEmulator, client: DbtCloudClient) -> None:
    with pytest.raises(DbtCloudNotFoundError, match="run 12345 was not found"):
        wait_for_run(client, 12345, poll_interval=0.05, timeout=5)
    assert emulator.request_count() == 1


def test_retry_warnings_never_show_token(
    emulator: DbtCloudEmulator, client: DbtCloudClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    emulator.faults.set(rate=1.0, kinds=("502",), methods=("GET",), max_faults=2)
    client.get_account()
    assert len(_retry_logs(caplog)) == 2
    assert TOKEN not in caplog.text


@pytest.fixture
def truncating_server() -> Iterator[tuple[str, list[int]]]:
    """A real HTTP server on loopback that promises 500 bytes and hangs up after 29 (a proxy dropping mid-body)."""
    listener = socket.create_server(("127.0.0.1", 0))
    hits: list[int] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                hits.append(1)
                conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{"status": {"code": 200}, "da')

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", hits
    listener.close()


def test_body_cut_short_is_a_retried_connection_error(truncating_server: tuple[str, list[int]]) -> None:
    base_url, hits = truncating_server
    with (
        DbtCloudClient({"api_token": TOKEN, "account_id": 1, "base_url": base_url}, retry=FAST) as client,
        pytest.raises(DbtCloudConnectionError, match="No answer from dbt Cloud"),
    ):
        client.get_account()
    assert len(hits) == 4


def test_retry_after_capped_by_policy(emulator: DbtCloudEmulator, credentials: dict[str, Any]) -> None:
    emulator.faults.set(rate=1.0, kinds=("429",), methods=("GET",), retry_after=1, max_faults=1)
    policy = RetryPolicy(max_attempts=3, initial_wait=0.01, max_wait=0.05, max_retry_after=0.05)
    with DbtCloudClient(credentials, retry=policy) as client:
        started = time.monotonic()
        client.get_account()
        assert time.monotonic() - started < 0.5  # the policy allows waiting 0.05 s at most
