"""Issue 12, part 3 (security and bad input), in the API layer: each test failed before its fix.

Hostile answers come from a tiny stdlib HTTP server on loopback (no mocks of the client).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import tenacity
from conftest import ACCOUNT_ID, TOKEN

from airflow_dbt_cloud_dlt.api import core
from airflow_dbt_cloud_dlt.api.aio import AsyncDbtCloudClient
from airflow_dbt_cloud_dlt.api.client import DbtCloudClient
from airflow_dbt_cloud_dlt.api.core import RetryPolicy
from airflow_dbt_cloud_dlt.api.credentials import credentials_from_mapping
from airflow_dbt_cloud_dlt.api.errors import (
    DbtCloudBadResponseError,
    DbtCloudConfigError,
    DbtCloudConnectionError,
    DbtCloudError,
    DbtCloudServerError,
)
from airflow_dbt_cloud_dlt.api.waiting import wait_for_run

#: What the hostile server answers: (status, body bytes, seconds between bytes or 0).
Answer = tuple[int, bytes, float]
NO_WAIT = RetryPolicy(max_attempts=3, initial_wait=0.01, max_wait=0.01)


class Hostile:
    """A loopback HTTP server whose every answer comes from ``answer(path)``; it counts requests."""

    def __init__(self, answer: Callable[[str], Answer]) -> None:
        self.answer, self.paths = answer, []
        self.chunked_body = b""
        hostile = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                hostile.paths.append(self.path)
                if hostile.chunked_body:  # no Content-Length: the client learns the size only by reading
                    self.send_response(200)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for start in range(0, len(hostile.chunked_body), 16384):
                        piece = hostile.chunked_body[start : start + 16384]
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    self.wfile.write(b"0\r\n\r\n")
                    return
                status, body, drip = hostile.answer(self.path)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not drip:
                    self.wfile.write(body)
                    return
                for byte in body:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(drip)

            do_POST = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda request, address: None  # type: ignore[method-assign]
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def credentials(self) -> dict[str, Any]:
        port = self.server.server_address[1]
        return {"api_token": TOKEN, "account_id": ACCOUNT_ID, "base_url": f"http://127.0.0.1:{port}", "timeout": 5}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hostile() -> Iterator[Callable[[Callable[[str], Answer]], Hostile]]:
    servers: list[Hostile] = []

    def start(answer: Callable[[str], Answer]) -> Hostile:
        servers.append(Hostile(answer))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _json(value: Any, status: int = 200) -> Callable[[str], Answer]:
    body = value if isinstance(value, bytes) else json.dumps(value).encode()
    return lambda path: (status, body, 0.0)


DEEP = b"[" * 100_000 + b"]" * 100_000

# --- 2. malformed answers raise typed errors, and are retried where safe ------------------------------

MALFORMED_RUNS: dict[str, Any] = {
    "data null": {"data": None},
    "data list": {"data": [1, 2]},
    "data string": {"data": "run"},
    "data number": {"data": 7},
    "id 7.9": {"data": {"id": 7.9, "status": 10}},
    "id true": {"data": {"id": True, "status": 10}},
    "run_steps a string": {"data": {"id": 7, "status": 10, "run_steps": "steps"}},
    "run_steps of numbers": {"data": {"id": 7, "status": 10, "run_steps": [1, 2]}},
    "extra a list": {"data": {"id": 7, "status": 10}, "extra": []},
    "deeply nested": DEEP,
}


@pytest.mark.parametrize("body", MALFORMED_RUNS.values(), ids=MALFORMED_RUNS.keys())
def test_malformed_run_is_a_typed_error_and_retried(hostile: Any, body: Any) -> None:
    server = hostile(_json(body))
    with DbtCloudClient(server.credentials, retry=NO_WAIT) as client, pytest.raises(DbtCloudBadResponseError) as caught:
        client.get_run(7)
    assert "malformed" in str(caught.value) or "JSON envelope" in str(caught.value)
    assert len(server.paths) == 3  # a GET: retried like a 5xx


@pytest.mark.parametrize("body", MALFORMED_RUNS.values(), ids=MALFORMED_RUNS.keys())
def test_malformed_run_is_a_typed_error_async(hostile: Any, body: Any) -> None:
    server = hostile(_json(body))

    async def read() -> None:
        await AsyncDbtCloudClient(server.credentials, retry=NO_WAIT).get_run(7)

    with pytest.raises(DbtCloudBadResponseError):
        asyncio.run(read())


MALFORMED_LISTS: dict[str, Any] = {
    "total_count not a number": {"data": [{"id": 1}], "extra": {"pagination": {"total_count": "many"}}},
    "extra a string": {"data": [{"id": 1}], "extra": "x"},
    "pagination a list": {"data": [{"id": 1}], "extra": {"pagination": []}},
    "items not objects": {"data": [1, "two"]},
    "item id 7.9": {"data": [{"id": 7.9}]},
    "data an object": {"data": {"id": 1}},
}


@pytest.mark.parametrize("body", MALFORMED_LISTS.values(), ids=MALFORMED_LISTS.keys())
def test_malformed_list_is_a_typed_error(hostile: Any, body: Any) -> None:
    server = hostile(_json(body))
    with DbtCloudClient(server.credentials, retry=NO_WAIT) as client:
        with pytest.raises(DbtCloudBadResponseError):
            client.list_jobs()
        with pytest.raises(DbtCloudBadResponseError):
            client.list_runs(job_definition_id=1)


def test_deeply_nested_500_is_a_retried_server_error(hostile: Any) -> None:
    server = hostile(_json(DEEP, status=500))
    with DbtCloudClient(server.credentials, retry=NO_WAIT) as client, pytest.raises(DbtCloudServerError):
        client.get_run(7)
    assert len(server.paths) == 3


def test_malformed_trigger_answer_is_typed_and_not_retried(hostile: Any) -> None:
    server = hostile(_json({"data": {"id": True}}))
    with DbtCloudClient(server.credentials, retry=NO_WAIT) as client, pytest.raises(DbtCloudBadResponseError):
        client.trigger_job_run(1, {})
    assert len(server.paths) == 1  # a trigger may have started a run: never sent twice


# --- 3. pagination ends ------------------------------------------------------------------------------


def _full_pages(lying_total: bool = False, fresh_ids: bool = True) -> Callable[[str], Answer]:
    counter = iter(range(1, 10**9))

    def answer(path: str) -> Answer:
        ids = [next(counter) if fresh_ids else n for n in range(1, 101)]
        extra = {"pagination": {"total_count": 10**9 if lying_total else None, "count": 100}}
        return 200, json.dumps({"data": [{"id": i, "name": f"j{i}"} for i in ids], "extra": extra}).encode(), 0.0

    return answer


def test_pagination_stops_on_repeated_ids(hostile: Any) -> None:
    server = hostile(_full_pages(fresh_ids=False))
    with DbtCloudClient(server.credentials, retry=NO_WAIT) as client:
        jobs = client.list_jobs()
    assert len(jobs) == 100 and len(server.paths) == 2


def test_pagination_stops_at_the_page_cap(hostile: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core, "MAX_PAGES", 5)
    server = hostile(_full_pages(lying_total=True))
    stopped = "kept answering full pages of jobs: the listing stopped"
    with (
        DbtCloudClient(server.credentials, retry=NO_WAIT) as client,
        pytest.raises(DbtCloudBadResponseError, match=stopped),
    ):
        client.list_jobs()
    assert len(server.paths) == 5


def test_official_hook_listing_stops_at_the_page_cap(hostile: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The official-style ``DbtCloudHook.list_jobs`` (one Response per page) ends like every other listing."""
    from airflow_dbt_cloud_dlt.hooks import DbtCloudHook

    monkeypatch.setattr(core, "MAX_PAGES", 5)
    server = hostile(_full_pages(lying_total=True))
    conn = {
        "conn_type": "dbtclouddlt",
        "host": server.credentials["base_url"],
        "login": str(ACCOUNT_ID),
        "password": TOKEN,
    }
    monkeypatch.setenv("AIRFLOW_CONN_HOSTILE_PAGES", json.dumps(conn))
    with pytest.raises(DbtCloudBadResponseError, match="kept answering full pages"):
        DbtCloudHook("hostile_pages", retry_args={"stop": tenacity.stop_after_attempt(1)}).list_jobs()
    assert len(server.paths) == 5


def test_default_page_cap_is_finite() -> None:
    walk = core.PageWalk("jobs")
    assert core.MAX_PAGES == 1000
    for page in range(999):
        walk.take({"data": [{"id": page * 100 + i} for i in range(100)]})
    with pytest.raises(DbtCloudBadResponseError, match="after 1000 pages"):
        walk.take({"data": [{"id": 10**6 + i} for i in range(100)]})


def test_pagination_stops_on_a_short_page(hostile: Any) -> None:
    body = {"data": [{"id": i} for i in range(1, 31)], "extra": {"pagination": {"total_count": 10**6}}}
    server = hostile(_json(body))
    with DbtCloudClient(server.credentials, retry=NO_WAIT) as client:
        assert len(client.list_jobs()) == 30
    assert len(server.paths) == 1


def test_async_paginate_stops(hostile: Any) -> None:
    from airflow_dbt_cloud_dlt.api._base import apaginate

    server = hostile(_full_pages(fresh_ids=False))

    async def listing() -> list[Any]:
        client = AsyncDbtCloudClient(server.credentials, retry=NO_WAIT)
        return [
            item
            async for item in apaginate(lambda offset: client.send(core.list_jobs(ACCOUNT_ID, offset=offset)), "jobs")
        ]

    assert len(asyncio.run(listing())) == 100


# --- 5. verify and timeout ---------------------------------------------------------------------------

BASE = {"api_token": TOKEN, "account_id": 1}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        ("true", True),
        ("FALSE", False),
        ("1", True),
        ("0", False),
        ("yes", True),
        ("no", False),
        ("on", True),
        ("off", False),
        ("", True),
        (None, True),
    ],
)
def test_verify_words(value: Any, expected: bool) -> None:
    assert credentials_from_mapping({**BASE, "verify": value}).verify is expected


def test_verify_empty_env_means_the_same_in_both_transports(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_dbt_cloud_dlt.api import aio
    from airflow_dbt_cloud_dlt.api.credentials import credentials_from_environment

    monkeypatch.setenv("DBT_CLOUD__API_TOKEN", TOKEN)
    monkeypatch.setenv("DBT_CLOUD__VERIFY", "")
    creds = credentials_from_environment()
    assert creds.verify is True  # requests verifies on True; httpx gets a verifying context
    assert aio._ssl_context(creds.verify) is not False


def test_verify_ca_bundle_path(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("x")
    assert credentials_from_mapping({**BASE, "verify": str(bundle)}).verify == str(bundle)


@pytest.mark.parametrize("value", [0, 0.0, [], 1, "maybe", "/no/such/ca.pem", "."])
def test_verify_rejects_the_rest(value: Any) -> None:
    with pytest.raises(DbtCloudConfigError, match=r"Invalid verify .*true or false"):
        credentials_from_mapping({**BASE, "verify": value})


@pytest.mark.parametrize("value", ["inf", float("inf"), float("nan"), "nan", -1, "-5", 0, "0", "soon", True])
def test_timeout_must_be_finite_and_positive(value: Any) -> None:
    with pytest.raises(DbtCloudConfigError, match="Invalid timeout"):
        credentials_from_mapping({**BASE, "timeout": value})


def test_timeout_default_and_values() -> None:
    assert credentials_from_mapping({**BASE, "timeout": ""}).timeout == 30.0
    assert credentials_from_mapping({**BASE, "timeout": "2.5"}).timeout == 2.5


# --- 10. a poll interval of 0 is clamped -------------------------------------------------------------


def test_zero_poll_interval_is_clamped(hostile: Any) -> None:
    server = hostile(_json({"data": {"id": 7, "status": 3}}))
    with DbtCloudClient(server.credentials, retry=NO_WAIT) as client, pytest.raises(DbtCloudError):
        wait_for_run(client, 7, poll_interval=0, timeout=1.0)
    assert len(server.paths) <= 1.0 / core.MIN_POLL_INTERVAL + 2


def test_poll_interval_must_be_finite() -> None:
    with pytest.raises(DbtCloudConfigError, match="Invalid poll interval"):
        core.clamp_poll_interval(float("nan"))


# --- 11. a non-ASCII token ---------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["dbtc_tokén-secret", "dbtc_\u200bsecret", "dbtc_\x00secret"])
def test_non_ascii_token_is_rejected_without_echo(token: str) -> None:
    with pytest.raises(DbtCloudConfigError, match="not printable ASCII") as caught:
        credentials_from_mapping({**BASE, "api_token": token})
    assert "secret" not in str(caught.value) and "secret" not in repr(caught.value.args)


# --- 12. repr hides proxy passwords ------------------------------------------------------------------


def test_repr_hides_proxy_password_and_token() -> None:
    creds = credentials_from_mapping(
        {**BASE, "proxies": {"https": "http://user:s3cr3t-pw@proxy:3128", "http": "http://proxy:3128"}}
    )
    shown = repr(creds)
    assert "s3cr3t-pw" not in shown and TOKEN not in shown
    assert "http://user:***@proxy:3128" in shown and "http://proxy:3128" in shown
    assert creds.proxies == {"https": "http://user:s3cr3t-pw@proxy:3128", "http": "http://proxy:3128"}


# --- 7. Python 3.11 is what the package needs (tomllib, TimeoutError) ---------------------------------


def test_declares_python_311() -> None:
    import tomllib

    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    assert project["project"]["requires-python"] == ">=3.11"
    assert project["tool"]["ruff"]["target-version"] == "py311"


# --- 4. every answer is bounded in size and in time --------------------------------------------------

ONE_TRY = RetryPolicy(max_attempts=1)


def test_sync_body_is_capped(hostile: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core, "MAX_JSON_BYTES", 100_000)
    server = hostile(_json({"data": {"id": 7, "pad": "x" * 200_000}}))
    with (
        DbtCloudClient(server.credentials, retry=ONE_TRY) as client,
        pytest.raises(DbtCloudBadResponseError, match=r"larger than 0 MiB \(200,0\d\d bytes announced\)"),
    ):
        client.get_run(7)


def test_sync_body_is_capped_while_streaming(monkeypatch: pytest.MonkeyPatch, hostile: Any) -> None:
    monkeypatch.setattr(core, "MAX_JSON_BYTES", 100_000)
    server = hostile(lambda path: (200, b"", 0.0))
    server.chunked_body = b"x" * 300_000
    with (
        DbtCloudClient(server.credentials, retry=ONE_TRY) as client,
        pytest.raises(DbtCloudBadResponseError, match="larger than 0 MiB, the most this package reads"),
    ):
        client.get_run(7)


def test_async_body_is_capped(hostile: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core, "MAX_JSON_BYTES", 100_000)
    server = hostile(lambda path: (200, b"", 0.0))
    server.chunked_body = b"x" * 300_000

    async def read() -> None:
        await AsyncDbtCloudClient(server.credentials, retry=ONE_TRY).get_run(7)

    with pytest.raises(DbtCloudBadResponseError, match="larger than 0 MiB, the most this package reads"):
        asyncio.run(read())


def _drip(path: str) -> Answer:
    return 200, json.dumps({"data": {"id": 7, "status": 10}}).encode(), 0.5


def test_sync_whole_answer_has_a_deadline(hostile: Any) -> None:
    server = hostile(_drip)
    started = time.monotonic()
    with (
        DbtCloudClient({**server.credentials, "timeout": 2}, retry=ONE_TRY) as client,
        pytest.raises(DbtCloudConnectionError, match="the whole answer took longer than 2 s"),
    ):
        client.get_run(7)
    assert time.monotonic() - started < 4


def test_async_whole_answer_has_a_deadline(hostile: Any) -> None:
    server = hostile(_drip)

    async def read() -> None:
        await AsyncDbtCloudClient({**server.credentials, "timeout": 2}, retry=ONE_TRY).get_run(7)

    started = time.monotonic()
    with pytest.raises(DbtCloudConnectionError, match="the whole answer took longer than 2 s"):
        asyncio.run(read())
    assert time.monotonic() - started < 4


# --- 9. what is shown is scrubbed of the token and bounded --------------------------------------------


def _failed_run_server(path: str) -> Answer:
    if "run_results.json" in path:
        results = {
            "results": [
                {"unique_id": "model.p.leaky", "status": "error", "message": f"auth failed with token {TOKEN} " * 3},
                {"unique_id": "model.p.long", "status": "error", "message": "y" * 50_000},
            ]
        }
        return 200, json.dumps(results).encode(), 0.0
    steps = [{"index": i, "name": f"step {i}", "status": 10, "logs": ""} for i in range(1, 5000)]
    steps.append({"index": 5000, "name": "Invoke dbt with `dbt build`", "status": 20, "logs": "z" * 100_000})
    run = {"id": 7, "status": 20, "status_humanized": "Error", "status_message": "m" * 100_000, "run_steps": steps}
    return 200, json.dumps({"data": run}).encode(), 0.0


def test_failure_report_scrubs_artifact_text_and_caps_server_text(hostile: Any) -> None:
    from airflow_dbt_cloud_dlt.api.reporting import failure_report

    server = hostile(_failed_run_server)
    with DbtCloudClient(server.credentials, retry=ONE_TRY) as client:
        report = failure_report(client, 7)
    assert TOKEN not in report and "auth failed with token ***" in report
    assert len(report) < 20_000
    assert "more characters cut]" in report


def test_run_summary_caps_text_and_steps() -> None:
    from airflow_dbt_cloud_dlt.api.models import MAX_SUMMARY_STEPS, run_summary

    steps = [{"index": i, "name": "n" * 10_000, "status": 10} for i in range(3000)]
    summary = run_summary({"id": 7, "status": 20, "status_message": "m" * 100_000, "run_steps": steps})
    assert len(json.dumps(summary)) < 300_000
    assert summary["steps_cut"] == 3000 - MAX_SUMMARY_STEPS and len(summary["steps"]) == MAX_SUMMARY_STEPS
    assert summary["status_message"].endswith("more characters cut]")


def test_progress_line_is_bounded() -> None:
    from airflow_dbt_cloud_dlt.api.reporting import progress_line

    run = {"id": 7, "status": 3, "status_humanized": "R" * 10_000, "href": "h" * 10_000, "duration": "d" * 10_000}
    run["run_steps"] = [{"index": 1, "name": "s" * 10_000, "status": 3}]
    assert len(progress_line(run)) < 2_000


def test_failed_nodes_survive_deep_json() -> None:
    from airflow_dbt_cloud_dlt.api.reporting import failed_nodes

    assert failed_nodes(DEEP) == []
    assert failed_nodes(b'{"results": 5}') == []


# --- 8. only dbt Cloud links reach the UI ----------------------------------------------------------------


def test_run_url_keeps_href_only_on_the_configured_host() -> None:
    from airflow_dbt_cloud_dlt.api.reporting import run_url

    base = "https://ab123.us1.dbt.com"
    ids = {"id": 3, "account_id": 1, "project_id": 2}
    built = f"{base}/deploy/1/projects/2/runs/3/"
    same_host = f"{base}/#/accounts/1/projects/2/runs/3/"
    assert run_url({**ids, "href": same_host}, base) == same_host
    for href in (
        "https://ab123.us1.dbt.com.phish.example/x",
        "https://ab123.us1.dbt.com:444/x",
        "http://ab123.us1.dbt.com/x",
        "https://user:pw@ab123.us1.dbt.com/x",
        "https://ab123.us1.dbt.com/x y",
        "javascript:alert(1)",
        12,
        None,
    ):
        assert run_url({**ids, "href": href}, base) == built, href
    hostile_ids = {"id": "3/../../x?y#z", "account_id": 1, "project_id": None}
    assert run_url(hostile_ids, base) == f"{base}/deploy/1/projects/None/runs/3%2F..%2F..%2Fx%3Fy%23z/"


# --- 2. the triggerer's poller logs a malformed answer once per run, then a count -----------------------


@pytest.mark.parametrize("body", [{"data": "run"}, {"data": [1, 2]}, DEEP], ids=["data-string", "items", "deep"])
def test_poller_logs_a_malformed_answer_once_then_a_count(
    hostile: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, body: Any
) -> None:
    import dataclasses
    import logging

    from airflow_dbt_cloud_dlt.api import poller

    monkeypatch.setattr(poller, "POLL_RETRY", dataclasses.replace(poller.POLL_RETRY, initial_wait=0.01, max_wait=0.01))
    server = hostile(_json(body))
    credentials = credentials_from_mapping(server.credentials)

    async def wait_for_both() -> None:
        waits = (poller.wait_for_run_async(credentials, run_id, poll_interval=0.1, timeout=3.0) for run_id in (7, 8))
        results = await asyncio.gather(*waits, return_exceptions=True)
        assert all(isinstance(result, TimeoutError) for result in results), results

    caplog.set_level(logging.INFO, logger="airflow_dbt_cloud_dlt")
    asyncio.run(wait_for_both())
    ticks = sum(1 for path in server.paths if "pk__in" in path)
    logged = [record for record in caplog.records if record.name == "airflow_dbt_cloud_dlt"]
    assert ticks >= 10, ticks
    assert not any(record.exc_info for record in logged)  # no traceback
    assert len(logged) <= 3, [record.getMessage() for record in logged]  # not one (or three) per tick
    assert "runs 7, 8 (dbt Cloud answered the runs with HTTP 200" in logged[0].getMessage()


def test_poller_logs_an_unexpected_tick_failure_with_its_traceback_once(caplog: pytest.LogCaptureFixture) -> None:
    from airflow_dbt_cloud_dlt.api.poller import _Trouble

    trouble = _Trouble()
    for _ in range(25):
        try:
            raise KeyError("id")
        except KeyError:
            trouble.crashed()
    records = [record for record in caplog.records if record.name == "airflow_dbt_cloud_dlt"]
    assert [bool(record.exc_info) for record in records] == [True, False]  # the traceback once, then a count
    assert "failed 10 times so far" in records[1].getMessage()


class HeaderDrip:
    """A raw loopback server that reads a request, then sends its status line and headers one byte at a time
    (every ``gap`` seconds): each socket read gets a byte well within any per-read timeout."""

    def __init__(self, gap: float = 0.3) -> None:
        import socket

        self.gap, self.stop = gap, threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def credentials(self) -> dict[str, Any]:
        port = self.sock.getsockname()[1]
        return {"api_token": TOKEN, "account_id": ACCOUNT_ID, "base_url": f"http://127.0.0.1:{port}", "timeout": 2}

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: Any) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Slow: " + b"x" * 200 + b"\r\n"
        with conn:
            try:
                conn.recv(65536)
                for byte in head:
                    if self.stop.is_set():
                        return
                    conn.sendall(bytes([byte]))
                    time.sleep(self.gap)
            except OSError:
                return

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


def test_sync_deadline_bounds_slowly_dripped_headers() -> None:
    """The whole-request deadline covers the status line and headers too, not only the body."""
    server = HeaderDrip()
    started = time.monotonic()
    try:
        with (
            DbtCloudClient(server.credentials, retry=ONE_TRY) as client,
            pytest.raises(DbtCloudConnectionError, match="the whole answer took longer than 2 s"),
        ):
            client.get_run(7)
    finally:
        server.close()
    assert time.monotonic() - started < 4


def test_readme_security_section_says_what_is_protected_and_how() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("### Security\n", 1)[1].split("\n## ", 1)[0]
    for words in (
        "**The token**",
        "secret masker",
        "**The run marker**",
        "marker_secret",
        "It protects against",
        "It does not protect against",
        "**The emulator**",
        "DBT_CLOUD_EMULATOR_TOKEN",
        "**Links.**",
    ):
        assert words in section, words
