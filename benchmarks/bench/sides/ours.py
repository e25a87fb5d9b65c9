"""This project's side: ``airflow_dbt_cloud_dlt.triggers.DbtCloudRunTrigger`` on httpx, as the official-named
``DbtCloudRunJobOperator`` and ``DbtCloudJobRunSensor`` hand it to the triggerer when they defer."""

from __future__ import annotations

import os
import ssl
from typing import Any

import httpx

try:
    from airflow.sdk.exceptions import TaskDeferred
except ImportError:  # Airflow 2.11
    from airflow.exceptions import TaskDeferred  # type: ignore[no-redef,attr-defined,unused-ignore]

# Warm-up outside the measured window: modules that the trigger imports lazily, which a long-lived
# triggerer has loaded long before.
import airflow_dbt_cloud_dlt.api.poller
import airflow_dbt_cloud_dlt.hooks  # noqa: F401
from airflow_dbt_cloud_dlt.operators import DbtCloudRunJobOperator
from airflow_dbt_cloud_dlt.sensors import DbtCloudJobRunSensor
from airflow_dbt_cloud_dlt.triggers import DbtCloudRunTrigger

from ..config import ACCOUNT, CONN_ID


def make_trigger(run_id: int, poll: float, timeout: float) -> DbtCloudRunTrigger:
    """The trigger that a deferring official-named task hands over: the operator for even run ids, the
    sensor for odd ones (``defer_wait`` is the step of their ``execute`` that defers)."""
    common: dict[str, Any] = {"dbt_cloud_conn_id": CONN_ID, "account_id": ACCOUNT, "deferrable": True}
    task: Any
    if run_id % 2 == 0:
        task = DbtCloudRunJobOperator(task_id=f"run_{run_id}", job_id=1, check_interval=poll, **common)
    else:
        task = DbtCloudJobRunSensor(task_id=f"wait_{run_id}", run_id=run_id, poke_interval=poll, **common)
    try:
        task.defer_wait(run_id, poll_interval=poll, timeout=timeout)
    except TaskDeferred as deferred:
        assert isinstance(deferred.trigger, DbtCloudRunTrigger)
        return deferred.trigger
    raise AssertionError("the task did not defer")


async def warm_up(host: str) -> None:
    """One https request with httpx (lazy imports of anyio and httpcore) to a control route of the emulator."""
    context = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
    async with httpx.AsyncClient(verify=context) as client:
        (await client.get(f"{host}/_emulator/health/")).raise_for_status()
