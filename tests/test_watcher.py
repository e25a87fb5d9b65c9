"""DbtCloudJobRunWatcher (Airflow 3's AssetWatcher trigger) run in an event loop against the emulator, a real
HTTP server: runs started outside Airflow are emitted once each, the failed-only variant, no duplicates from a
new instance after a restart, and the look-back bound. The triggerer and scheduler end to end: test_e2e_watcher.py.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import AIRFLOW_2, TOKEN, connection_json, output, start_run

from airflow_dbt_cloud_dlt import triggers

POLL = 0.1


def test_importing_triggers_works_and_the_watcher_refuses_airflow_2_clearly() -> None:
    if not AIRFLOW_2:
        pytest.skip("Airflow 2 only")
    with pytest.raises(RuntimeError, match="needs Airflow 3"):
        triggers.DbtCloudJobRunWatcher("dbt_cloud_default", 42)


pytestmark_3 = pytest.mark.skipif(AIRFLOW_2, reason="BaseEventTrigger and AssetWatcher are Airflow 3 only")


@pytest.fixture(autouse=True)
def _fresh_memory_cursors() -> Iterator[None]:
    triggers._MEMORY_CURSORS.clear()
    yield
    triggers._MEMORY_CURSORS.clear()


def watcher(job_id: int, **kwargs: Any) -> triggers.DbtCloudJobRunWatcher:
    return triggers.DbtCloudJobRunWatcher("dbt_cloud_default", job_id, poll_interval=POLL, **kwargs)


class Collector:
    """Runs a watcher in the background, as the triggerer does, and keeps its events' payloads."""

    def __init__(self, trigger: triggers.DbtCloudJobRunWatcher) -> None:
        self.trigger = trigger
        self.events: list[dict[str, Any]] = []
        self.task = asyncio.create_task(self._consume())

    async def _consume(self) -> None:
        async for event in self.trigger.run():
            self.events.append(event.payload)

    async def started(self, emulator: Any) -> Collector:
        """Wait for the watcher's first look (its baseline) at the runs."""
        await until(lambda: any("status__in" in r.query for r in emulator.requests), "the first listing")
        await asyncio.sleep(3 * POLL)
        return self

    async def stop(self) -> None:
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task

    def run_ids(self) -> list[int]:
        return [event["run_id"] for event in self.events]


async def until(condition: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def finished(emulator: Any, *run_ids: int) -> None:
    await until(lambda: all(emulator.get_run(r)["status"] >= 10 for r in run_ids), f"runs {run_ids} to finish")


@pytestmark_3
def test_serialize_is_deterministic_small_and_holds_no_secret() -> None:
    trigger = triggers.DbtCloudJobRunWatcher("dbt_cloud_default", "42", statuses=[20, "Cancelled"], look_back=60)
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_dbt_cloud_dlt.triggers.DbtCloudJobRunWatcher"
    assert kwargs == {
        "conn_id": "dbt_cloud_default",
        "job_id": 42,
        "account_id": None,
        "statuses": ["cancelled", "error"],
        "poll_interval": 30.0,
        "look_back": 60.0,
    }
    assert TOKEN not in json.dumps(kwargs)
    assert triggers.DbtCloudJobRunWatcher(**kwargs).serialize() == (classpath, kwargs)  # same hash on every parse
    from airflow.triggers.base import BaseEventTrigger

    assert isinstance(trigger, BaseEventTrigger) and trigger.shared_stream_key() is None


@pytestmark_3
@pytest.mark.parametrize("statuses", [["running"], ["failed"], [], [3]])
def test_unknown_or_unfinished_statuses_are_refused(statuses: list[Any]) -> None:
    with pytest.raises(ValueError, match="success, error, cancelled"):
        triggers.DbtCloudJobRunWatcher("dbt_cloud_default", 42, statuses=statuses)


@pytestmark_3
def test_the_watcher_can_be_an_asset_watcher() -> None:
    from airflow.sdk import Asset, AssetWatcher

    trigger = triggers.DbtCloudJobRunWatcher("dbt_cloud_default", 42)
    asset = Asset("dbt_cloud_job_42", watchers=[AssetWatcher(name="job_42", trigger=trigger)])
    assert asset.watchers[0].trigger is trigger


@pytestmark_3
@pytest.mark.usefixtures("airflow_conn")
async def test_runs_started_outside_airflow_are_emitted_once_each(emulator: Any) -> None:
    before = start_run(emulator, 31, run_seconds=0.1, serial=False)  # history: finished before the watcher
    await finished(emulator, before)
    collector = await Collector(watcher(31)).started(emulator)
    runs = [start_run(emulator, 31, cause="dbt Cloud scheduler", run_seconds=0.2, serial=False) for _ in range(3)]
    other_job = start_run(emulator, 32, run_seconds=0.1)
    await finished(emulator, *runs, other_job)
    await until(lambda: len(collector.events) >= 3, "three events")
    await asyncio.sleep(10 * POLL)  # many more ticks see the same runs
    await collector.stop()
    assert sorted(collector.run_ids()) == sorted(runs)
    event = collector.events[0]
    run = emulator.get_run(event["run_id"])
    assert event == {
        "run_id": run["id"],
        "job_id": 31,
        "account_id": 1,
        "status": "success",
        "status_code": 10,
        "finished_at": run["finished_at"],
        "run_url": run["href"],
    }
    assert len(json.dumps(event)) < 400 and TOKEN not in json.dumps(collector.events)


@pytestmark_3
@pytest.mark.usefixtures("airflow_conn")
async def test_failed_only_variant_emits_failed_runs_only(emulator: Any) -> None:
    failures = watcher(33, statuses=["error", "cancelled"])
    everything = watcher(33)
    failed, every = Collector(failures), Collector(everything)
    await failed.started(emulator)
    outcomes = ["success", "error", "success", "timeout"]
    runs = [start_run(emulator, 33, run_seconds=0.1, serial=False, outcome=outcome) for outcome in outcomes]
    await finished(emulator, *runs)
    await until(lambda: len(every.events) >= 4, "every run")
    await asyncio.sleep(5 * POLL)
    await failed.stop()
    await every.stop()
    assert sorted(every.run_ids()) == sorted(runs)
    assert sorted(failed.run_ids()) == [runs[1], runs[3]]
    assert {e["status"] for e in failed.events} == {"error", "cancelled"}  # dbt Cloud ends timeouts as cancelled


@pytestmark_3
@pytest.mark.usefixtures("airflow_conn")
async def test_a_new_instance_after_a_restart_emits_what_finished_while_down_and_nothing_twice(emulator: Any) -> None:
    first = await Collector(watcher(34)).started(emulator)
    seen = start_run(emulator, 34, run_seconds=0.1)
    await until(lambda: first.run_ids() == [seen], "the first run")
    await first.stop()  # the triggerer goes down
    while_down = [start_run(emulator, 34, run_seconds=0.1, serial=False) for _ in range(2)]
    await finished(emulator, *while_down)

    second = Collector(watcher(34))  # a new instance with the same kwargs, as after a restart
    await until(lambda: len(second.events) >= 2, "the runs that finished while down")
    later = start_run(emulator, 34, run_seconds=0.1)
    await until(lambda: len(second.events) >= 3, "a run after the restart")
    await asyncio.sleep(5 * POLL)
    await second.stop()
    assert second.run_ids() == [*while_down, later]  # oldest first, none of them twice, `seen` not again


@pytestmark_3
@pytest.mark.usefixtures("airflow_conn")
async def test_catching_up_pages_back_past_the_first_hundred_runs(emulator: Any) -> None:
    first = await Collector(watcher(39)).started(emulator)
    await first.stop()
    while_down = [start_run(emulator, 39, run_seconds=0.05, serial=False) for _ in range(150)]
    await finished(emulator, *while_down)
    emulator.clear_requests()
    second = Collector(watcher(39))
    await until(lambda: len(second.events) >= 150, "all 150 runs", timeout=20)
    await asyncio.sleep(5 * POLL)
    await second.stop()
    assert sorted(second.run_ids()) == sorted(while_down)
    offsets = [r.query.get("offset") for r in emulator.requests if "status__in" in r.query]
    assert any("100" in str(offset) for offset in offsets), offsets  # the second page was read


@pytestmark_3
@pytest.mark.usefixtures("airflow_conn")
@pytest.mark.parametrize("others", [[61], [61, 63]], ids=["another-job-only", "first-page-only"])
async def test_a_watcher_joining_during_a_listing_made_for_others_waits_for_its_own(
    emulator: Any, others: list[int]
) -> None:
    """A restarted watcher that joins while the feed lists for other watchers (one other job: filtered on that
    job; two: only the newest page) must not take that listing as all there is: runs older than its settle
    window would be lost."""
    first = await Collector(watcher(62)).started(emulator)
    await first.stop()
    while_down = [start_run(emulator, 62, run_seconds=0.05, serial=False) for _ in range(150)]
    await finished(emulator, *while_down)
    emulator.advance(600)  # the next run finishes 10 minutes after those, beyond the settle window
    newest = start_run(emulator, 61, run_seconds=0.05)
    await finished(emulator, newest)
    emulator.faults.set(rate=1.0, kinds=("stall",), stall_seconds=1.0)
    first_looks = [Collector(watcher(job)) for job in others]  # one page is enough for them
    await asyncio.sleep(0.3)  # that listing is in flight
    restarted = Collector(watcher(62))
    await asyncio.sleep(1.5)
    emulator.faults.clear()
    await until(lambda: len(restarted.events) >= 150, "all 150 runs", timeout=20)
    await asyncio.sleep(5 * POLL)
    for other in first_looks:
        await other.stop()
        assert other.events == []  # their first look: history
    await restarted.stop()
    assert sorted(restarted.run_ids()) == sorted(while_down)


@pytestmark_3
@pytest.mark.usefixtures("airflow_conn")
async def test_runs_older_than_the_look_back_are_not_caught_up(
    emulator: Any, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    first = await Collector(watcher(35, look_back=2.0)).started(emulator)
    await first.stop()
    too_old = start_run(emulator, 35, run_seconds=0.1)
    await finished(emulator, too_old)
    await asyncio.sleep(2.5)  # it finished more than look_back before the restart
    recent = start_run(emulator, 35, run_seconds=0.1)
    await finished(emulator, recent)

    second = Collector(watcher(35, look_back=2.0))
    await until(lambda: len(second.events) >= 1, "the recent run")
    await asyncio.sleep(5 * POLL)
    await second.stop()
    assert second.run_ids() == [recent]
    assert f"Not emitting runs [{too_old}]" in output(capfd, caplog)


@pytestmark_3
@pytest.mark.usefixtures("airflow_conn")
async def test_many_watchers_of_one_account_share_one_listing_per_tick(emulator: Any) -> None:
    jobs = list(range(40, 60))
    collectors = [Collector(watcher(job)) for job in jobs]
    await collectors[0].started(emulator)
    runs = {job: start_run(emulator, job, run_seconds=0.1) for job in jobs}
    await finished(emulator, *runs.values())
    emulator.clear_requests()
    await until(lambda: all(c.events for c in collectors), "an event for every watcher")
    await asyncio.sleep(5 * POLL)
    for collector in collectors:
        await collector.stop()
    assert {job: c.run_ids() for job, c in zip(jobs, collectors, strict=True)} == {j: [r] for j, r in runs.items()}
    listings = [r for r in emulator.requests if r.method == "GET"]
    assert all(r.path.endswith("/runs/") and "job_definition_id" not in r.query for r in listings)
    assert len(listings) <= 12, len(listings)  # about one per tick for 20 watchers, not 20 per tick


def test_importing_triggers_does_not_need_airflow_3() -> None:
    """The module imports on either Airflow version (the 2.11 venv runs this too)."""
    code = "import airflow_dbt_cloud_dlt.triggers as t; print(t.DbtCloudJobRunWatcher.__name__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip().splitlines()[-1] == "DbtCloudJobRunWatcher"


@pytestmark_3
@pytest.mark.usefixtures("airflow_conn")
async def test_transient_api_errors_are_waited_out_and_lose_no_run(emulator: Any) -> None:
    collector = await Collector(watcher(37)).started(emulator)
    emulator.faults.set(rate=0.5, kinds=("500", "502", "503", "429", "reset"), seed=5, retry_after=0.1)
    runs = [start_run(emulator, 37, run_seconds=0.2, serial=False) for _ in range(3)]
    await finished(emulator, *runs)
    await until(lambda: len(collector.events) >= 3, "every run despite the faults", timeout=20)
    await asyncio.sleep(5 * POLL)
    emulator.faults.clear()
    await collector.stop()
    assert any(r.fault for r in emulator.requests)  # faults really were served
    assert sorted(collector.run_ids()) == sorted(runs)


@pytestmark_3
async def test_a_refused_token_is_logged_and_retried_with_backoff_until_the_connection_is_fixed(
    emulator: Any, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """A watcher that raised would be restarted by the triggerer at once, again and again: it waits instead."""
    from airflow_dbt_cloud_dlt import hooks

    monkeypatch.setattr(hooks, "CREDENTIALS_TTL", 0.05)  # the connection is read afresh on each retry
    monkeypatch.setenv("AIRFLOW_CONN_DBT_CLOUD_DEFAULT", connection_json(emulator.base_url, token="wrong-token"))
    collector = Collector(watcher(38))
    await asyncio.sleep(1.6)  # waits of 0.2, 0.4, 0.8 s after each refusal
    refused = [r for r in emulator.requests if "status__in" in r.query]
    assert 2 <= len(refused) <= 4, len(refused)  # backoff, not a request per triggerer loop
    assert not collector.task.done()
    logged = output(capfd, caplog)
    assert "Could not watch dbt Cloud job 38" in logged and "refused the API token" in logged
    assert "wrong-token" not in logged

    monkeypatch.setenv("AIRFLOW_CONN_DBT_CLOUD_DEFAULT", connection_json(emulator.base_url))
    await until(lambda: len(emulator.requests) > len(refused) + 1, "a listing with the right token", timeout=5)
    await asyncio.sleep(3 * POLL)
    run_id = start_run(emulator, 38, run_seconds=0.1)
    await until(lambda: collector.run_ids() == [run_id], "the run after the fix", timeout=5)
    await collector.stop()


# --- the cursor alone (pure) -----------------------------------------------------------------------------------


def run_at(run_id: int, finished: float, job_id: int = 1) -> dict[str, Any]:
    from datetime import datetime, timezone

    stamp = datetime.fromtimestamp(finished, timezone.utc).isoformat(sep=" ", timespec="microseconds")
    return {"id": run_id, "job_definition_id": job_id, "status": 10, "finished_at": stamp}


def test_cursor_takes_a_run_that_shows_up_late_within_the_settle_window_and_never_one_twice() -> None:
    from airflow_dbt_cloud_dlt.api.watching import SETTLE_SECONDS, RunCursor

    t = 1_800_000_000.0
    first = (run_at(1, t),)
    cursor = RunCursor().advance(first, first)  # the first look: history
    assert cursor.started and cursor.mark == t and not cursor.is_new(first[0], 0)
    newer, late, too_late = run_at(2, t + 10), run_at(3, t + 5 - SETTLE_SECONDS + 10), run_at(4, t - SETTLE_SECONDS)
    snapshot = (newer, first[0])
    assert [r["id"] for r in snapshot if cursor.is_new(r, 0)] == [2]
    cursor = cursor.advance([newer], snapshot)
    assert cursor.is_new(late, 0)  # finished before the mark but within the settle window, not seen yet
    assert not cursor.is_new(too_late, 0) and not cursor.is_new(newer, 0)
    assert not cursor.is_new(run_at(5, t + 20), t + 21)  # older than the look-back bound
    stored = json.loads(json.dumps(cursor.to_json()))
    assert RunCursor.from_json(stored) == cursor
    assert len(json.dumps(stored)) < 200


@pytest.mark.parametrize("stored", [None, "x", {"v": 99}, {"v": 1, "mark": "soon"}, {"v": 1, "recent": {"a": 1}}])
def test_a_stored_cursor_that_cannot_be_read_is_ignored(stored: Any) -> None:
    from airflow_dbt_cloud_dlt.api.watching import RunCursor

    assert RunCursor.from_json(stored) is None
