"""Issue 12, part 3, item 13: the emulator warns on a non-loopback bind, guards its control routes with the
token, reads the token from an environment variable, and caps request bodies."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest
import requests
from conftest import TOKEN

from airflow_dbt_cloud_dlt.testing import DbtCloudEmulator
from airflow_dbt_cloud_dlt.testing._http import MAX_REQUEST_BODY


@pytest.fixture
def emu() -> Iterator[DbtCloudEmulator]:
    with DbtCloudEmulator(accounts={1: TOKEN}) as emulator:
        yield emulator


@pytest.mark.parametrize("route", ["runs/", "requests/?summary=1"])
def test_control_routes_need_the_token(emu: DbtCloudEmulator, route: str) -> None:
    url = f"{emu.base_url}/_emulator/{route}"
    assert requests.get(url, timeout=5).status_code == 401
    assert requests.get(url, headers={"Authorization": "Token wrong"}, timeout=5).status_code == 401
    assert requests.get(url, headers={"Authorization": f"Token {TOKEN}"}, timeout=5).status_code == 200


def test_control_writes_need_the_token(emu: DbtCloudEmulator) -> None:
    reset = f"{emu.base_url}/_emulator/reset/"
    answer = requests.post(reset, timeout=5)
    assert answer.status_code == 401 and "DBT_CLOUD_EMULATOR_TOKEN" in answer.json()["detail"]
    assert requests.post(reset, headers={"Authorization": f"Token {TOKEN}"}, timeout=5).status_code == 200


def test_health_stays_open_and_python_api_needs_no_http(emu: DbtCloudEmulator) -> None:
    assert requests.get(f"{emu.base_url}/_emulator/health/", timeout=5).status_code == 200
    emu.reset()  # the in-process API is the caller's own
    assert emu.runs == {}


def test_request_bodies_are_capped(emu: DbtCloudEmulator) -> None:
    url = f"{emu.base_url}/api/v2/accounts/1/jobs/1/run/"
    headers = {"Authorization": f"Token {TOKEN}", "Content-Type": "application/json"}
    answer = requests.post(url, data=b"x" * (MAX_REQUEST_BODY + 1), headers=headers, timeout=10)
    assert answer.status_code == 413

    def chunks() -> Iterator[bytes]:
        for _ in range(MAX_REQUEST_BODY // 65536 + 2):
            yield b"x" * 65536

    assert requests.post(url, data=chunks(), headers=headers, timeout=10).status_code == 413


def test_announced_huge_body_is_refused_unread(emu: DbtCloudEmulator) -> None:
    with socket.create_connection(("127.0.0.1", emu.port), timeout=5) as sock:
        sock.sendall(
            b"POST /_emulator/jobs/ HTTP/1.1\r\nHost: x\r\nContent-Length: 400000000\r\n"
            + f"Authorization: Token {TOKEN}\r\n\r\n".encode()
        )
        assert sock.recv(100).startswith(b"HTTP/1.1 413")


def test_non_loopback_bind_warns() -> None:
    with pytest.warns(UserWarning, match="not a loopback address"):
        DbtCloudEmulator(host="0.0.0.0")


def _cli(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "airflow_dbt_cloud_dlt.testing", "--port", "0", *args]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **env}
    )


def test_cli_reads_the_token_from_the_environment_and_warns_on_a_public_bind() -> None:
    process = _cli("--host", "0.0.0.0", env={"DBT_CLOUD_EMULATOR_TOKEN": "env-token-123", "PYTHONUNBUFFERED": "1"})
    try:
        assert process.stdout is not None and process.stderr is not None
        line = process.stdout.readline().strip()
        port = line.split("://", 1)[1].split(" ", 1)[0].rsplit(":", 1)[1]
        warning = process.stderr.readline()
        assert "WARNING" in warning and "not a loopback address" in warning and "well-known" not in warning
        url = f"http://127.0.0.1:{port}/api/v2/accounts/1/"
        assert requests.get(url, headers={"Authorization": "Token env-token-123"}, timeout=5).status_code == 200
        assert requests.get(url, headers={"Authorization": "Token emulator-token"}, timeout=5).status_code == 401
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


def test_cli_warns_about_the_well_known_token() -> None:
    process = _cli("--host", "0.0.0.0", env={"PYTHONUNBUFFERED": "1"})
    try:
        assert process.stderr is not None and process.stdout is not None
        assert "well-known token 'emulator-token'" in process.stderr.readline()
        assert "listening on" in process.stdout.readline()  # serving, so SIGTERM meets its handler
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
