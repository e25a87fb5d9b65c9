"""This project's side: ``airflow_dbt_cloud_dlt.triggers.DbtCloudRunTrigger`` on httpx."""

from __future__ import annotations

import os
import ssl

import httpx

# Warm-up outside the measured window: modules that the trigger imports lazily, which a long-lived
# triggerer has loaded long before.
import airflow_dbt_cloud_dlt.api.poller
import airflow_dbt_cloud_dlt.hooks  # noqa: F401
from airflow_dbt_cloud_dlt.triggers import DbtCloudRunTrigger

from ..config import ACCOUNT, CONN_ID


def make_trigger(run_id: int, poll: float, timeout: float) -> DbtCloudRunTrigger:
    return DbtCloudRunTrigger(CONN_ID, run_id, account_id=ACCOUNT, poll_interval=poll, timeout=timeout)


async def warm_up(host: str) -> None:
    """One https request with httpx (lazy imports of anyio and httpcore) to a control route of the emulator."""
    context = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
    async with httpx.AsyncClient(verify=context) as client:
        (await client.get(f"{host}/_emulator/health/")).raise_for_status()
