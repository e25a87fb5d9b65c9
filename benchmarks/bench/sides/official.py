"""The official provider's side: ``DbtCloudRunJobTrigger`` with its default hook settings, on aiohttp."""

from __future__ import annotations

import time

import aiohttp
from airflow.providers.dbt.cloud.hooks.dbt import _get_provider_info
from airflow.providers.dbt.cloud.triggers.dbt import DbtCloudRunJobTrigger

from ..config import ACCOUNT, CONN_ID


def make_trigger(run_id: int, poll: float, timeout: float) -> DbtCloudRunJobTrigger:
    return DbtCloudRunJobTrigger(
        conn_id=CONN_ID, run_id=run_id, end_time=time.time() + timeout, poll_interval=poll, account_id=ACCOUNT
    )


async def warm_up(host: str) -> None:
    """The hook's ProvidersManager lookup, then one https request with aiohttp (its TLS setup).

    The hook builds its User-Agent from the ProvidersManager on every poll; its one-time discovery would
    otherwise land on the first poll. aiohttp trusts the emulator's CA through ``SSL_CERT_FILE``.
    """
    _get_provider_info()
    async with aiohttp.ClientSession() as session, session.get(f"https://{host}/_emulator/health/") as resp:
        resp.raise_for_status()
        await resp.read()
