"""DbtCloudRunTrigger run directly in an event loop (as the triggerer does) against the emulator."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from conftest import TOKEN, connection_json, start_run

from airflow_dbt_cloud_dlt.api.events import RunEvent
from airflow_dbt_cloud_dlt.triggers import DbtCloudRunTrigger

pytestmark = pytest.mark.usefixtures("airflow_conn")


async def first_event(trigger: DbtCloudRunTrigger) -> dict[str, Any]:
    return (await trigger.run().__anext__()).payload  # type: ignore[no-any-return]


def test_serialize_round_trips_and_holds_no_secret(emulator: Any) -> None:
    trigger = DbtCloudRunTrigger("dbt_cloud_default", 123, account_id=1, poll_interval=5, timeout=60)
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_dbt_cloud_dlt.triggers.DbtCloudRunTrigger"
    assert TOKEN not in json.dumps(kwargs)
    assert kwargs["end_time"] == pytest.approx(time.time() + 60, abs=2)
    rebuilt = DbtCloudRunTrigger(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)  # a restart keeps the same deadline


@pytest.mark.parametrize(
    ("outcome", "status"), [("success", "success"), ("error", "error"), ("cancelled", "cancelled")]
)
async def test_event_carries_the_final_status(emulator: Any, outcome: str, status: str) -> None:
    run_id = start_run(emulator, 5, run_seconds=0.3, outcome=outcome)
    event = await first_event(DbtCloudRunTrigger("dbt_cloud_default", run_id, poll_interval=0.1))
    assert event["status"] == status and event["run_id"] == run_id and event["observed"] is True
    assert event["run_status"] == {"success": 10, "error": 20}.get(outcome, 30)
    assert RunEvent.from_payload(event).to_payload() == event
    assert len(repr(event)) < 300, "Airflow logs the whole event: it must stay small"
    json.dumps(event)  # JSON-safe


async def test_timeout_event(emulator: Any) -> None:
    run_id = start_run(emulator, 6, run_seconds=30)
    started = time.monotonic()
    event = await first_event(DbtCloudRunTrigger("dbt_cloud_default", run_id, poll_interval=0.1, timeout=0.5))
    assert event["status"] == "timeout" and "did not finish within the timeout" in event["message"]
    assert time.monotonic() - started < 3
    assert emulator.get_run(run_id)["in_progress"] is True  # the trigger itself never cancels on timeout


async def test_transient_errors_never_become_events(emulator: Any) -> None:
    run_id = start_run(emulator, 7, run_seconds=2.0)
    emulator.faults.set(rate=0.5, kinds=("500", "502", "503", "429", "reset"), seed=3, retry_after=0.2)
    event = await first_event(DbtCloudRunTrigger("dbt_cloud_default", run_id, poll_interval=0.1))
    emulator.faults.clear()
    assert event["status"] == "success"
    assert any(r.fault for r in emulator.requests)  # faults really were served


async def test_bad_token_is_reported_as_not_observed(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = start_run(emulator, 8, run_seconds=5)
    monkeypatch.setenv("AIRFLOW_CONN_DBT_CLOUD_DEFAULT", connection_json(emulator.base_url, token="wrong-token"))
    event = await first_event(DbtCloudRunTrigger("dbt_cloud_default", run_id, poll_interval=0.1))
    assert event["status"] == "error" and event["observed"] is False
    assert "refused the API token" in event["message"] and "was not changed" in event["message"]


async def test_on_kill_cancels_the_run(emulator: Any) -> None:
    run_id = start_run(emulator, 9, run_seconds=30)
    trigger = DbtCloudRunTrigger("dbt_cloud_default", run_id, poll_interval=0.1, cancel_on_kill=True)  # operator's
    task = asyncio.create_task(first_event(trigger))
    await asyncio.sleep(0.3)
    task.cancel()  # what the triggerer does first when a user kills the task
    with pytest.raises(asyncio.CancelledError):
        await task
    await trigger.on_kill()
    assert emulator.get_run(run_id)["status"] == 30


async def test_many_triggers_share_one_poller(emulator: Any) -> None:
    run_ids = [start_run(emulator, 10, run_seconds=0.5, serial=False) for _ in range(60)]
    emulator.clear_requests()
    events = await asyncio.gather(
        *(first_event(DbtCloudRunTrigger("dbt_cloud_default", run_id, poll_interval=0.2)) for run_id in run_ids)
    )
    assert sorted(e["run_id"] for e in events) == sorted(run_ids)
    assert {e["status"] for e in events} == {"success"}
    gets = [r for r in emulator.requests if r.method == "GET"]
    assert all(r.path.endswith("/runs/") and "pk__in" in r.query for r in gets)
    assert len(gets) <= 10  # ~4 ticks of one batched request, not 60 runs x ticks


async def test_triggers_of_one_connection_share_one_lookup(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_dbt_cloud_dlt.hooks import DbtCloudHook

    lookups: list[str] = []
    read = DbtCloudHook._read_credentials

    async def counting(self: DbtCloudHook) -> Any:
        lookups.append(self.dbt_cloud_conn_id)
        return await read(self)

    monkeypatch.setattr(DbtCloudHook, "_read_credentials", counting)
    run_ids = [start_run(emulator, 20, run_seconds=0.3, serial=False) for _ in range(20)]
    events = await asyncio.gather(
        *(first_event(DbtCloudRunTrigger("dbt_cloud_default", run_id, poll_interval=0.1)) for run_id in run_ids)
    )
    assert {e["status"] for e in events} == {"success"}
    assert lookups == ["dbt_cloud_default"]
