"""Error messages a new user meets: one sentence that says what is wrong and what to do, with no chain of
internal causes, never cut mid-word; and the hint for an https request that meets a plain-http server."""

from __future__ import annotations

import asyncio
import re
import socket
import traceback
from typing import Any

import pytest
from conftest import ACCOUNT_ID, TOKEN

from airflow_dbt_cloud_dlt import run_dbt_cloud_job
from airflow_dbt_cloud_dlt.api import core
from airflow_dbt_cloud_dlt.api.aio import AsyncDbtCloudClient
from airflow_dbt_cloud_dlt.api.client import DbtCloudClient
from airflow_dbt_cloud_dlt.api.core import RetryPolicy
from airflow_dbt_cloud_dlt.api.credentials import resolve_credentials
from airflow_dbt_cloud_dlt.api.errors import (
    DbtCloudAuthError,
    DbtCloudConnectionError,
    DbtCloudError,
    DbtCloudNotFoundError,
    DbtCloudPermissionError,
)

FAST = RetryPolicy(max_attempts=3, initial_wait=0.01, max_wait=0.02)
_QUOTED = re.compile(r'"[^"]*"')


def assert_one_sentence(message: str) -> None:
    """One line, capitalised or starting with "dbt Cloud", ending in one full stop; dbt Cloud's own quoted
    words may hold sentences of their own."""
    assert "\n" not in message and message.endswith("."), message
    assert message[0].isupper() or message.startswith("dbt Cloud"), message
    own_words = _QUOTED.sub('"…"', message)
    assert own_words.count(". ") == 0 and own_words.count(";") == 1, message  # what is wrong; what to do


def assert_no_chain(error: BaseException) -> None:
    assert error.__cause__ is None and error.__suppress_context__ is True
    shown = "".join(traceback.format_exception(error))
    assert "During handling of the above exception" not in shown
    assert "The above exception was the direct cause" not in shown


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unknown_job_reads_as_one_sentence_without_a_chain(credentials: dict[str, Any]) -> None:
    with pytest.raises(DbtCloudNotFoundError) as info:
        run_dbt_cloud_job(credentials, 99, wait_for_outcome=False)
    message = str(info.value)
    assert message.startswith("dbt Cloud job 99 was not found in account 1 (HTTP 404: ")
    assert "check the job id, the account id (the connection's login) and the host" in message
    assert "trigger of job" not in message
    assert_one_sentence(message)
    assert_no_chain(info.value)


def test_bad_token_reads_as_one_sentence_without_a_chain(credentials: dict[str, Any]) -> None:
    with pytest.raises(DbtCloudAuthError) as info:
        run_dbt_cloud_job({**credentials, "api_token": "not-the-token"}, 1, wait_for_outcome=False)
    assert str(info.value) == (
        'dbt Cloud refused the API token (HTTP 401: "Invalid token.") for the request to trigger job 1; check '
        "the token (the connection's password): it may be mistyped, revoked or expired."
    )
    assert_one_sentence(str(info.value))
    assert_no_chain(info.value)


def test_403_on_the_account_names_the_account_once(credentials: dict[str, Any]) -> None:
    with (
        DbtCloudClient({**credentials, "account_id": 999}, retry=FAST) as client,
        pytest.raises(DbtCloudPermissionError) as info,
    ):
        client.get_account()
    message = str(info.value)
    assert message.startswith("dbt Cloud denied the API token permission to read account 999 (HTTP 403: ")
    assert message.count("account 999") == 1, message
    assert_one_sentence(message)
    assert_no_chain(info.value)


def test_403_on_a_job_names_job_and_account(credentials: dict[str, Any]) -> None:
    with pytest.raises(DbtCloudPermissionError) as info:
        run_dbt_cloud_job({**credentials, "account_id": 2}, 1, wait_for_outcome=False)
    assert str(info.value).startswith("dbt Cloud denied the API token permission to trigger job 1 in account 2 ")
    assert_one_sentence(str(info.value))


def test_no_answer_keeps_the_reason_and_is_not_cut_mid_word() -> None:
    creds = {"api_token": TOKEN, "account_id": ACCOUNT_ID, "base_url": f"http://127.0.0.1:{free_port()}"}
    with DbtCloudClient(creds, retry=FAST) as client, pytest.raises(DbtCloudConnectionError) as info:
        client.get_account()
    message = str(info.value)
    # requests' own text is a 250-character wrapper; the message quotes its innermost reason instead
    assert "(ConnectionError: [Errno 111] Connection refused); check the host '127.0.0.1'" in message, message
    assert "object at 0x" not in message and "Max retries exceeded" not in message
    assert_one_sentence(message)
    assert_no_chain(info.value)


def test_a_long_reason_is_bounded_at_a_word_boundary() -> None:
    creds = resolve_credentials({"api_token": TOKEN, "account_id": 1, "base_url": "ab123.us1.dbt.com"})
    reason = "the network path reported an unusually verbose failure " * 10
    error = core.connection_error(core.get_run(1, 5), creds, OSError(reason), sent=True)
    detail = error.message.split("(OSError: ", 1)[1].split(")", 1)[0]
    assert detail.endswith("…") and len(detail) <= core.MAX_DETAIL_LENGTH + 1
    kept = detail.removesuffix("…")
    assert reason.startswith(kept) and reason[len(kept)] == " ", detail  # it ends where a word ends
    assert_one_sentence(error.message)


def test_bare_host_against_plain_http_says_so_sync(emulator: Any) -> None:
    bare = emulator.base_url.removeprefix("http://")  # "127.0.0.1:PORT": https is added
    with (
        DbtCloudClient({"api_token": TOKEN, "account_id": 1, "base_url": bare}, retry=FAST) as client,
        pytest.raises(DbtCloudConnectionError) as info,
    ):
        client.get_account()
    assert str(info.value) == (
        f"The server at https://{bare} answered plain http, not https, to the request to read account 1; use "
        f"'http://{bare}' as the host."
    )
    assert "CA bundle" not in str(info.value)
    assert info.value.transient is False and info.value.request_sent is False
    assert_no_chain(info.value)
    with DbtCloudClient({"api_token": TOKEN, "account_id": 1, "base_url": f"http://{bare}"}) as client:
        assert client.get_account()["id"] == 1  # the advice works


def test_bare_host_against_plain_http_says_so_async(emulator: Any) -> None:
    bare = emulator.base_url.removeprefix("http://")

    async def read() -> DbtCloudError:
        client = AsyncDbtCloudClient({"api_token": TOKEN, "account_id": 1, "base_url": bare}, retry=FAST)
        with pytest.raises(DbtCloudConnectionError) as info:
            await client.get_account()
        return info.value

    error = asyncio.run(read())
    assert str(error) == (
        f"The server at https://{bare} answered plain http, not https, to the request to read account 1; use "
        f"'http://{bare}' as the host."
    )
    assert error.transient is False  # not sent again: asking again gets the same answer
    plain_http_attempts = [r for r in emulator.requests if r.path.startswith("/api/")]
    assert plain_http_attempts == []  # the TLS handshake failed: no request reached the API


def test_plain_http_from_a_remote_host_does_not_suggest_http() -> None:
    creds = resolve_credentials({"api_token": TOKEN, "account_id": 1, "base_url": "ab123.us1.dbt.com:8080"})
    ssl_error = OSError("[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)")
    error = core.connection_error(core.get_account(1), creds, ssl_error, sent=False, transient=False)
    assert error.message.startswith("The server at https://ab123.us1.dbt.com:8080 answered plain http")
    assert "check the host and port" in error.message and "unencrypted" in error.message
    assert_one_sentence(error.message)
