"""Connection pools of both transports against the emulator over real loopback HTTP(S): one pool per
process (sync) or event loop (async) and endpoint settings, closed at shutdown, fork-safe, one CA load."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from conftest import ACCOUNT_ID, REPO, TOKEN

from airflow_dbt_cloud_dlt.api import aio
from airflow_dbt_cloud_dlt.api.aio import AsyncDbtCloudClient, hold_http_client, release_http_client
from airflow_dbt_cloud_dlt.api.client import DbtCloudClient, close_shared_sessions, shared_session
from airflow_dbt_cloud_dlt.api.core import RetryPolicy
from airflow_dbt_cloud_dlt.api.credentials import resolve_credentials
from airflow_dbt_cloud_dlt.testing import DbtCloudEmulator

ONCE = RetryPolicy(max_attempts=1)


def client_ports(emu: DbtCloudEmulator) -> list[int]:
    """Start noting, server side, the client port of every request: one port is one TCP connection."""
    server: Any = emu._server
    ports: list[int] = []
    dispatch: Callable[[Any], None] = server.dispatch

    def noting(handler: Any) -> None:
        ports.append(int(handler.client_address[1]))
        dispatch(handler)

    server.dispatch = noting
    return ports


@pytest.fixture
def tls_emulator() -> Iterator[DbtCloudEmulator]:
    with DbtCloudEmulator(tls=True, accounts={ACCOUNT_ID: TOKEN}) as emu:
        yield emu


# --- sync ---------------------------------------------------------------------------------------------


def test_sync_clients_share_one_session_and_connection(emulator: DbtCloudEmulator, credentials: dict[str, Any]) -> None:
    ports = client_ports(emulator)
    first, second = DbtCloudClient(credentials, retry=ONCE), DbtCloudClient(resolve_credentials(credentials))
    for client in (first, second, first, second):
        with client:  # closing a client leaves the process's pool open for the others
            assert client.get_account()["id"] == ACCOUNT_ID
    assert len(ports) == 4 and len(set(ports)) == 1  # four requests, two clients, one keep-alive connection
    session = shared_session(first.credentials)
    assert shared_session(second.credentials) is session
    assert shared_session(resolve_credentials({**credentials, "api_token": "other"})) is session  # no token inside
    assert shared_session(resolve_credentials({**credentials, "timeout": 3})) is session
    assert shared_session(resolve_credentials({**credentials, "proxies": {"http": emulator.base_url}})) is not session
    assert "Authorization" not in session.headers
    close_shared_sessions()
    assert shared_session(first.credentials) is not session


def test_sync_sessions_closed_at_exit(emulator: DbtCloudEmulator, credentials: dict[str, Any]) -> None:
    script = f"""
import requests
from airflow_dbt_cloud_dlt.api.client import DbtCloudClient
close = requests.Session.close
def noisy_close(self):
    print("session closed", flush=True)
    close(self)
requests.Session.close = noisy_close
with DbtCloudClient({json.dumps(credentials)}) as client:
    client.get_account()
print("exiting", flush=True)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["exiting", "session closed"]
    assert emulator.request_count() == 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_sync_child_after_fork_opens_its_own_connection(
    emulator: DbtCloudEmulator, credentials: dict[str, Any]
) -> None:
    ports = client_ports(emulator)
    with DbtCloudClient(credentials, retry=ONCE) as client:
        client.get_account()
        parent_session = shared_session(client.credentials)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report, then leave without running the parent's test machinery
            try:
                with DbtCloudClient(credentials, retry=ONCE) as child:
                    ok = child.get_account()["id"] == ACCOUNT_ID
                    fresh = shared_session(child.credentials) is not parent_session
                close_shared_sessions()  # as at the child's exit: the parent's inherited session stays open
                os.write(write, json.dumps([ok, fresh]).encode())
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read) as pipe:
            report = pipe.read()
        os.waitpid(pid, 0)
        assert json.loads(report) == [True, True]
        client.get_account()  # the parent's pooled connection still works
    assert len(ports) == 3
    assert ports[0] == ports[2] != ports[1]  # the child opened a connection of its own


# --- async --------------------------------------------------------------------------------------------


async def test_async_pool_per_loop_closed_when_last_holder_leaves(
    emulator: DbtCloudEmulator, credentials: dict[str, Any]
) -> None:
    creds = resolve_credentials(credentials)
    first, second = object(), object()
    http = hold_http_client(creds, first)
    assert hold_http_client(creds, second) is http is aio.shared_http_client(creds)
    await release_http_client(creds, first)
    await release_http_client(creds, first)  # a second release by the same holder counts once
    assert not http.is_closed
    emulator.faults.set(rate=1.0, kinds=("stall",), methods=("GET",), stall_seconds=0.3, max_faults=1)
    in_flight = asyncio.create_task(AsyncDbtCloudClient(creds, retry=ONCE).get_account())
    await asyncio.sleep(0.1)
    await release_http_client(creds, second)  # the last holder leaves while a request is in flight
    assert not http.is_closed
    assert (await in_flight)["id"] == ACCOUNT_ID
    assert http.is_closed  # closed once the last request on it was done
    assert aio.shared_http_client(creds) is not http
    await aio.close_shared_clients()


def test_async_pools_closed_when_the_loop_shuts_down(emulator: DbtCloudEmulator, credentials: dict[str, Any]) -> None:
    seen: list[Any] = []

    async def main() -> None:
        client = AsyncDbtCloudClient(credentials, retry=ONCE)
        assert (await client.get_account())["id"] == ACCOUNT_ID
        seen.append(aio.shared_http_client(client.credentials))
        assert (await client.get_account())["id"] == ACCOUNT_ID

    ports = client_ports(emulator)
    asyncio.run(main())
    asyncio.run(main())
    first, second = seen
    assert first is not second  # one pool per event loop
    assert first.is_closed and second.is_closed  # nobody closed them but the loops' shutdown
    assert len(ports) == 4 and ports[0] == ports[1] != ports[2] == ports[3]


def test_async_clients_load_a_ca_bundle_once(tls_emulator: DbtCloudEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    ca = tls_emulator.ca_cert_path
    loads: list[Any] = []
    load = ssl.SSLContext.load_verify_locations

    def counting(self: ssl.SSLContext, cafile: Any = None, *args: Any, **kwargs: Any) -> None:
        if cafile == ca:
            loads.append(cafile)
        load(self, cafile, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counting)
    aio._ssl_context.cache_clear()
    credentials = {"api_token": TOKEN, "account_id": ACCOUNT_ID, "base_url": tls_emulator.base_url, "verify": ca}

    async def main() -> None:
        for _ in range(3):
            assert (await AsyncDbtCloudClient(credentials, retry=ONCE).get_account())["id"] == ACCOUNT_ID
        proxied = {**credentials, "proxies": {"http": "http://127.0.0.1:9"}}  # another pool, same TLS setting
        assert (await AsyncDbtCloudClient(proxied, retry=ONCE).get_account())["id"] == ACCOUNT_ID

    for _ in range(3):  # three event loops, so three pools and more
        asyncio.run(main())
    assert tls_emulator.request_count() == 12
    assert loads == [ca]


@pytest.fixture
def cookie_server() -> Iterator[tuple[str, list[str | None]]]:
    """A loopback server that answers every request with an envelope and a Set-Cookie; notes the Cookie sent."""
    cookies: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            cookies.append(self.headers.get("Cookie"))
            body = json.dumps({"status": {"code": 200}, "data": {"id": ACCOUNT_ID}}).encode()
            self.send_response(200)
            self.send_header("Set-Cookie", "session=account-1-secret; Path=/")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", cookies
    server.shutdown()
    server.server_close()


def test_shared_pools_keep_no_cookies(cookie_server: tuple[str, list[str | None]]) -> None:
    base_url, cookies = cookie_server
    one = {"api_token": TOKEN, "account_id": ACCOUNT_ID, "base_url": base_url}
    other = {**one, "api_token": "another-token"}  # the same pool: one token's cookies must not reach the other
    DbtCloudClient(one, retry=ONCE).get_account()
    DbtCloudClient(other, retry=ONCE).get_account()

    async def main() -> None:
        await AsyncDbtCloudClient(one, retry=ONCE).get_account()
        await AsyncDbtCloudClient(other, retry=ONCE).get_account()

    asyncio.run(main())
    assert cookies == [None] * 4
