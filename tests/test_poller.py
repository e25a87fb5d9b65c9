"""The async client and the shared per-account poller, against the emulator on one event loop."""

from __future__ import annotations

import asyncio
import math
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import requests
from conftest import ACCOUNT_ID, TOKEN

from airflow_dbt_cloud_dlt.api import aio, poller
from airflow_dbt_cloud_dlt.api.aio import AsyncDbtCloudClient, shared_http_client
from airflow_dbt_cloud_dlt.api.core import RetryPolicy
from airflow_dbt_cloud_dlt.api.credentials import DbtCloudCredentials, resolve_credentials
from airflow_dbt_cloud_dlt.api.errors import DbtCloudConnectionError, DbtCloudNotFoundError
from airflow_dbt_cloud_dlt.api.poller import wait_for_run_async
from airflow_dbt_cloud_dlt.testing import DbtCloudEmulator, JobScript, RequestRecord

FAST = RetryPolicy(max_attempts=4, initial_wait=0.01, max_wait=0.05)
RUN_PATH = re.compile(r"/api/v2/accounts/1/runs/\d+/")
LIST_PATH = "/api/v2/accounts/1/runs/"


@pytest.fixture(autouse=True)
async def _clean_loop_state() -> AsyncIterator[None]:
    yield
    await aio.close_shared_clients()
    poller._POLLERS.pop(asyncio.get_running_loop(), None)


@pytest.fixture
def creds(credentials: dict[str, Any]) -> DbtCloudCredentials:
    return resolve_credentials(credentials)


def trigger_raw(emu: DbtCloudEmulator, job_id: int, count: int) -> list[int]:
    """Start runs with plain requests (test set-up that bypasses the client and its rate budget)."""
    with requests.Session() as session:
        session.headers["Authorization"] = f"Token {TOKEN}"
        url = f"{emu.base_url}/api/v2/accounts/{ACCOUNT_ID}/jobs/{job_id}/run/"
        return [session.post(url, json={"cause": "set-up"}).json()["data"]["id"] for _ in range(count)]


def lists_with_pk_in(emu: DbtCloudEmulator) -> list[RequestRecord]:
    return [r for r in emu.requests if r.path == LIST_PATH and "pk__in" in r.query]


def per_run_gets(emu: DbtCloudEmulator) -> list[RequestRecord]:
    return [r for r in emu.requests if r.method == "GET" and RUN_PATH.fullmatch(r.path)]


def this_loops_pollers() -> list[Any]:
    return list(poller._POLLERS.get(asyncio.get_running_loop(), {}))


# --- the async client -----------------------------------------------------------------------------------


async def test_async_client_get_list_cancel(emulator: DbtCloudEmulator, creds: DbtCloudCredentials) -> None:
    emulator.add_job(JobScript(job_id=5, run_seconds=30, serial=False))
    ids = trigger_raw(emulator, 5, 3)
    client = AsyncDbtCloudClient(creds, retry=FAST)
    run = await client.get_run(ids[0], include_related=["trigger"])
    assert (run["id"], run["status"], run["trigger"]["cause"]) == (ids[0], 3, "set-up")
    page = await client.list_runs_page(pk__in=ids[:2], order_by="id")
    assert [r["id"] for r in page] == ids[:2]
    cancelled = await client.cancel_run(ids[2])
    assert cancelled["status"] == 30 and emulator.get_run(ids[2])["is_cancelled"] is True
    assert (await client.get_account())["id"] == ACCOUNT_ID
    assert [(r.method, r.path) for r in emulator.requests[-4:]] == [
        ("GET", f"{LIST_PATH}{ids[0]}/"),
        ("GET", LIST_PATH),
        ("POST", f"{LIST_PATH}{ids[2]}/cancel/"),
        ("GET", "/api/v2/accounts/1/"),
    ]
    assert emulator.requests[-3].query["pk__in"] == [str(i) for i in ids[:2]]
    for record in emulator.requests[-4:]:
        assert record.headers["User-Agent"].startswith("airflow-dbt-cloud-dlt/")
        assert record.headers["Authorization"] == "REDACTED"
    with pytest.raises(DbtCloudNotFoundError):
        await client.get_run(999)


async def test_shared_http_client_and_connection_reused(emulator: DbtCloudEmulator, creds: DbtCloudCredentials) -> None:
    first, second = AsyncDbtCloudClient(creds, retry=FAST), AsyncDbtCloudClient(_as_mapping(creds))
    http = shared_http_client(first.credentials)
    assert shared_http_client(second.credentials) is http
    local_ports: list[int] = []

    async def note_port(response: httpx.Response) -> None:
        local_ports.append(response.extensions["network_stream"].get_extra_info("client_addr")[1])

    http.event_hooks = {"request": [], "response": [note_port]}
    for client in (first, second, first, second, first):
        assert (await client.get_account())["id"] == ACCOUNT_ID
    assert shared_http_client(creds) is http and not http.is_closed
    assert emulator.request_count() == 5 and len(local_ports) == 5
    assert len(set(local_ports)) == 1  # five requests from two clients over one keep-alive TCP connection
    await aio.close_shared_clients()
    assert http.is_closed and shared_http_client(creds) is not http


def _as_mapping(creds: DbtCloudCredentials) -> dict[str, Any]:
    return {"api_token": creds.api_token, "account_id": creds.account_id, "base_url": creds.base_url}


@pytest.fixture
def tls_emulator() -> Iterator[DbtCloudEmulator]:
    with DbtCloudEmulator(tls=True, accounts={ACCOUNT_ID: TOKEN}) as emu:
        yield emu


async def test_async_https(tls_emulator: DbtCloudEmulator) -> None:
    base = {"api_token": TOKEN, "account_id": ACCOUNT_ID, "base_url": tls_emulator.base_url}
    trusted = AsyncDbtCloudClient({**base, "verify": tls_emulator.ca_cert_path}, retry=FAST)
    assert (await trusted.get_account())["id"] == ACCOUNT_ID
    with pytest.raises(DbtCloudConnectionError) as info:
        await AsyncDbtCloudClient(base, retry=FAST).get_account()
    assert info.value.transient is False and "TLS" in str(info.value)
    assert tls_emulator.request_count() == 1


async def test_async_body_cut_short_is_a_retried_connection_error() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    hits: list[int] = []

    def serve() -> None:  # a real server that promises 500 bytes and hangs up after 29
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
    base_url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        with pytest.raises(DbtCloudConnectionError, match="RemoteProtocolError") as info:
            await AsyncDbtCloudClient(
                {"api_token": TOKEN, "account_id": 1, "base_url": base_url}, retry=FAST
            ).get_account()
    finally:
        listener.close()
    assert info.value.request_sent is True and info.value.transient is True
    assert len(hits) == 4


# --- the shared poller ------------------------------------------------------------------------------


async def test_many_waiters_share_few_requests(emulator: DbtCloudEmulator, creds: DbtCloudCredentials) -> None:
    emulator.add_job(JobScript(job_id=1, run_seconds=1.0, serial=False))
    emulator.add_job(JobScript(job_id=2, run_seconds=1.0, serial=False, outcome="error"))
    good, bad = trigger_raw(emulator, 1, 125), trigger_raw(emulator, 2, 125)
    emulator.clear_requests()
    started = time.monotonic()
    results = await asyncio.gather(
        *(wait_for_run_async(creds, run_id, poll_interval=0.2, timeout=20) for run_id in good + bad)
    )
    elapsed = time.monotonic() - started
    assert [r["id"] for r in results] == good + bad
    assert [r["status"] for r in results] == [10] * 125 + [20] * 125
    assert all(r["is_error"] for r in results[125:]) and not any(r["in_progress"] for r in results)
    assert per_run_gets(emulator) == []
    lists = lists_with_pk_in(emulator)
    assert len(lists) == emulator.request_count()
    assert [len(r.query["pk__in"]) for r in lists[:3]] == [100, 100, 50]  # first tick: every run, 100 a page
    assert all(len(r.query["pk__in"]) <= 100 and r.query["limit"] == ["100"] for r in lists)
    ticks = math.ceil(elapsed / 0.2) + 1
    assert len(lists) <= 3 * ticks
    assert len(lists) < 60  # against 250 waiters x ~6 polls each
    assert this_loops_pollers() == []


async def test_unknown_run_fails_only_its_waiter(emulator: DbtCloudEmulator, creds: DbtCloudCredentials) -> None:
    emulator.add_job(JobScript(job_id=1, run_seconds=0.3, serial=False))
    ids = trigger_raw(emulator, 1, 3)
    emulator.clear_requests()
    results = await asyncio.gather(
        *(wait_for_run_async(creds, run_id, poll_interval=0.1, timeout=10) for run_id in [*ids, 424242]),
        return_exceptions=True,
    )
    assert [r["status"] for r in results[:3]] == [10, 10, 10]  # type: ignore[index]
    assert isinstance(results[3], DbtCloudNotFoundError)
    assert "run 424242 was not found" in str(results[3])
    fallback = {(r.path, r.status) for r in per_run_gets(emulator)}
    assert fallback == {(f"{LIST_PATH}424242/", 404)}  # only the missing run is read on its own, and not retried
    assert 1 <= len(per_run_gets(emulator)) <= 2  # 2 when a slow first tick runs straight into the next one


class NoPkInEmulator(DbtCloudEmulator):
    """An emulator whose list endpoint rejects ``pk__in`` with a 400, as an API version without it would.

    (The emulator has no switch for this; renaming the parameter makes its own query validation answer 400.)
    """

    def _answer(self, h: Any, url: Any, query: dict[str, list[str]], body: bytes, rec: Any) -> Any:
        if "pk__in" in query:
            query = {("pk__in_unsupported" if k == "pk__in" else k): v for k, v in query.items()}
        return super()._answer(h, url, query, body, rec)


async def test_pk_in_rejected_falls_back_to_gets() -> None:
    with NoPkInEmulator(accounts={ACCOUNT_ID: TOKEN}) as emu:
        emu.add_job(
            JobScript(job_id=1, run_seconds=1.5, serial=False)
        )  # long enough for several ticks on a busy machine
        ids = trigger_raw(emu, 1, 4)
        emu.clear_requests()
        creds = resolve_credentials({"api_token": TOKEN, "account_id": ACCOUNT_ID, "base_url": emu.base_url})
        results = await asyncio.gather(*(wait_for_run_async(creds, i, poll_interval=0.1, timeout=10) for i in ids))
        assert [r["status"] for r in results] == [10] * 4
        rejected = lists_with_pk_in(emu)
        assert [r.status for r in rejected] == [400]  # asked once, then never again
        gets = per_run_gets(emu)
        assert {r.path for r in gets} == {f"{LIST_PATH}{i}/" for i in ids}
        assert len(gets) >= 8  # every run read one by one on each tick until it finished


async def test_cancelled_waiters_unregister_and_poller_stops(
    emulator: DbtCloudEmulator, creds: DbtCloudCredentials
) -> None:
    emulator.add_job(JobScript(job_id=1, run_seconds=30, serial=False))
    ids = trigger_raw(emulator, 1, 3)
    tasks = [asyncio.create_task(wait_for_run_async(creds, i, poll_interval=0.1)) for i in ids]
    await asyncio.sleep(0.3)
    (key,) = this_loops_pollers()
    shared = poller._POLLERS[asyncio.get_running_loop()][key]
    assert shared.run_ids == set(ids)
    task = shared._task
    assert task is not None and not task.done()
    tasks[0].cancel()
    await asyncio.sleep(0.05)
    assert shared.run_ids == set(ids[1:]) and this_loops_pollers() == [key]
    for waiting in tasks[1:]:
        waiting.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(0.05)
    assert this_loops_pollers() == [] and shared.run_ids == set()
    assert task.done()
    assert shared._http.is_closed  # the poller's pooled HTTP client is closed with it
    polls = len(lists_with_pk_in(emulator))
    await asyncio.sleep(0.3)
    assert len(lists_with_pk_in(emulator)) == polls  # nothing polls any more
    assert all(emulator.get_run(i)["status"] == 3 for i in ids)  # cancelling a wait does not cancel the run


async def test_timeout_raises_timeout_error(emulator: DbtCloudEmulator, creds: DbtCloudCredentials) -> None:
    emulator.add_job(JobScript(job_id=1, run_seconds=30))
    (run_id,) = trigger_raw(emulator, 1, 1)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await wait_for_run_async(creds, run_id, poll_interval=0.1, timeout=0.3)
    assert 0.25 <= time.monotonic() - started < 1.0
    await asyncio.sleep(0)
    assert this_loops_pollers() == []


async def test_waiters_get_right_status_through_faults(emulator: DbtCloudEmulator, creds: DbtCloudCredentials) -> None:
    emulator.add_job(JobScript(job_id=1, run_seconds=0.5, serial=False))
    emulator.add_job(JobScript(job_id=2, run_seconds=0.8, serial=False, outcome="error"))
    emulator.add_job(JobScript(job_id=3, run_seconds=0.6, serial=False, outcome="cancelled"))
    ids = {10: trigger_raw(emulator, 1, 60), 20: trigger_raw(emulator, 2, 60), 30: trigger_raw(emulator, 3, 30)}
    emulator.clear_requests()
    # seed 113: the first tick's first page meets a 503 and then a reset (and a 500 follows later)
    emulator.faults.set(
        rate=0.1, kinds=("500", "502", "503", "429", "reset"), methods=("GET",), seed=113, retry_after=0
    )
    order = [(status, run_id) for status, run_ids in ids.items() for run_id in run_ids]
    results = await asyncio.gather(
        *(wait_for_run_async(creds, run_id, poll_interval=0.1, timeout=30) for _, run_id in order)
    )
    assert [(r["status"], r["id"]) for r in results] == order
    assert emulator.faults.injected >= 2
    assert [r.status for r in emulator.requests[:3]] == [503, 0, 200]


async def test_waiter_joining_as_last_waiter_leaves(emulator: DbtCloudEmulator, creds: DbtCloudCredentials) -> None:
    emulator.add_job(JobScript(job_id=1, run_seconds=30, serial=False))
    emulator.add_job(JobScript(job_id=2, run_seconds=0.1, serial=False))
    (slow,) = trigger_raw(emulator, 1, 1)
    (done,) = trigger_raw(emulator, 2, 1)
    leaving = asyncio.create_task(wait_for_run_async(creds, slow, poll_interval=0.1))
    await asyncio.sleep(0.3)
    # In one loop step: a trigger starts waiting (with a timeout, as DbtCloudRunTrigger does) and the account's
    # only other waiter goes away (its task was killed, or its run finished).
    joining = asyncio.create_task(wait_for_run_async(creds, done, poll_interval=0.1, timeout=1.0))
    leaving.cancel()
    run = await joining  # the run is long finished: one tick must be enough
    assert run["status"] == 10


async def test_on_change_sees_each_status_once_and_costs_no_request(
    emulator: DbtCloudEmulator, creds: DbtCloudCredentials
) -> None:
    emulator.add_job(JobScript(job_id=61, account_id=ACCOUNT_ID, queue_seconds=0.4, run_seconds=0.6))
    (run_id,) = trigger_raw(emulator, 61, 1)
    seen: list[int] = []
    run = await wait_for_run_async(creds, run_id, poll_interval=0.1, on_change=lambda r: seen.append(r["status"]))
    assert run["status"] == 10
    assert seen[-1] == 10 and 3 in seen and len(seen) == len(set(seen)), seen  # one call per status, in order
    assert seen == sorted(seen)
    polls = lists_with_pk_in(emulator) + per_run_gets(emulator)
    assert len(polls) > len(seen)  # polled more often than the status changed: calls follow changes, not polls
    assert len(emulator.requests) == len(polls) + 1  # the trigger POST; on_change made no request of its own
