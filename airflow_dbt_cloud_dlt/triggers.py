"""The triggers: the deferrable wait for one dbt Cloud run, and (Airflow 3) the watcher of a job's runs for
``AssetWatcher``. Both run on the triggerer and share the process's pollers: requests per account, not per trigger."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

try:  # Airflow 3: event-driven scheduling (AssetWatcher)
    from airflow.triggers.base import BaseEventTrigger as _EventTriggerBase

    _EVENT_TRIGGERS = True
except ImportError:  # Airflow 2.11: the module still imports; the watcher refuses to be built
    _EventTriggerBase = BaseTrigger  # type: ignore[misc,assignment,unused-ignore]
    _EVENT_TRIGGERS = False

from .api.credentials import DbtCloudCredentials, validate_id
from .api.errors import DbtCloudError
from .api.events import RunEvent
from .api.models import RunStatus, is_terminal, run_status
from .api.reporting import progress_line, run_url

if TYPE_CHECKING:
    from .api.watching import RunCursor
    from .hooks import DbtCloudHook

DEFAULT_POLL_INTERVAL = 10.0
#: Seconds that ``on_kill`` may spend cancelling the run (the triggerer's own bound is 30 s).
CANCEL_TIMEOUT = 20.0


class DbtCloudRunTrigger(BaseTrigger):
    """Fire one event when dbt Cloud run ``run_id`` ends, or when ``timeout`` seconds have passed.

    The event's payload is a :class:`~.api.events.RunEvent` (``RunEvent.from_payload`` rebuilds it), kept
    small because Airflow logs it whole. Each change of the run's status is logged as one progress line.
    Transient API errors (429, 5xx, resets, timeouts) are waited out; they never become an event. An event
    with ``observed=False`` means the run could not be read at all (bad token, unknown run), which is not a
    dbt failure.

    ``timeout`` is turned into an absolute ``end_time`` that is serialized, so a triggerer restart does
    not restart the clock. ``serialize()`` holds no secret: the token is read from the connection.
    """

    def __init__(
        self,
        conn_id: str,
        run_id: int,
        account_id: int | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        timeout: float | None = None,
        end_time: float | None = None,
        cancel_on_kill: bool = False,
    ) -> None:
        super().__init__()
        self.conn_id = conn_id
        self.cancel_on_kill = bool(cancel_on_kill)
        self.run_id = validate_id(run_id, "run_id")
        self.account_id = account_id
        self.poll_interval = float(poll_interval)
        self.timeout = timeout
        self.end_time = end_time if end_time is not None else (time.time() + timeout if timeout else None)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "conn_id": self.conn_id,
                "run_id": self.run_id,
                "account_id": self.account_id,
                "poll_interval": self.poll_interval,
                "timeout": self.timeout,
                "end_time": self.end_time,
                "cancel_on_kill": self.cancel_on_kill,
            },
        )

    def _hook(self) -> DbtCloudHook:
        from .hooks import DbtCloudHook  # not at DAG parse: operators import this module

        return DbtCloudHook(self.conn_id, account_id=self.account_id)

    def _progress(self, run: dict[str, Any]) -> None:
        """One task-log line per status change, from the poller's own answers (no extra request). The final
        status is left to the event, which Airflow logs anyway: a line fewer per run on a busy triggerer."""
        if not is_terminal(run):
            self.log.info("%s", progress_line(run))

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from .api.aio import AsyncDbtCloudClient  # httpx: the triggerer needs it, DAG parsing does not
        from .api.poller import wait_for_run_async  # the shared poller (httpx), for the triggerer only

        try:
            credentials = await self._hook().aget_credentials()
            remaining = None if self.end_time is None else self.end_time - time.time()
            try:
                run = await wait_for_run_async(
                    credentials,
                    self.run_id,
                    poll_interval=self.poll_interval,
                    timeout=remaining,
                    on_change=self._progress,
                )
            except TimeoutError:
                yield self._event(await self._last_look(AsyncDbtCloudClient(credentials), credentials))
                return
        except DbtCloudError as error:
            yield self._event(RunEvent.unobserved(self.run_id, error))
            return
        event = RunEvent.for_run(run, run_url(run, credentials.base_url))
        assert event is not None  # the poller returns terminal runs only
        yield self._event(event)

    @staticmethod
    def _event(event: RunEvent) -> TriggerEvent:
        return TriggerEvent(event.to_payload())

    async def _last_look(self, client: Any, credentials: DbtCloudCredentials) -> RunEvent:
        """At the deadline, read the run once more, so a run that finished right then gets its real status."""
        try:
            run = await client.get_run(self.run_id)
        except DbtCloudError:
            run = None
        url = run_url(run, credentials.base_url) if run else None
        if run is not None and is_terminal(run):
            ended = RunEvent.for_run(run, url)
            assert ended is not None
            return ended
        return RunEvent.timed_out(self.run_id, run, url)

    async def on_kill(self) -> None:
        """Cancel the dbt Cloud run when a user kills, clears or marks the deferred task (Airflow 3.3+), if the
        task started it and asked for that (``cancel_on_kill``; a sensor waits on a run it did not start)."""
        from .api.aio import AsyncDbtCloudClient  # httpx: the triggerer needs it, DAG parsing does not

        if not self.cancel_on_kill:
            self.log.info("The task stopped waiting; dbt Cloud run %s is left to run (not this task's).", self.run_id)
            return
        credentials = await self._hook().aget_credentials()
        run = await asyncio.wait_for(AsyncDbtCloudClient(credentials).cancel_run(self.run_id), timeout=CANCEL_TIMEOUT)
        self.log.info("Cancelled dbt Cloud run %s (status now %s).", self.run_id, run.get("status_humanized"))


#: The watcher's defaults: one listing per account every 30 s, and catch-up over the last day after downtime.
DEFAULT_WATCH_POLL_INTERVAL = 30.0
DEFAULT_LOOK_BACK = 24 * 3600.0
#: The statuses of a finished run, by name (dbt Cloud ends a timed-out run as ``cancelled``).
FINISHED_STATUSES = ("success", "error", "cancelled")
#: The longest wait (seconds) before a watcher tries again after an error it cannot wait out (a refused token).
MAX_RETRY_WAIT = 300.0
#: A cursor is written to the asset state store at least this often (seconds) while nothing is emitted.
CURSOR_SAVE_INTERVAL = 60.0
#: Where a watcher's cursor lives when Airflow gives it no asset state store (``run()`` outside the
#: triggerer): in this process only, by the watcher's serialized kwargs.
_MEMORY_CURSORS: dict[str, dict[str, Any]] = {}


def _status_names(statuses: Iterable[str | int] | str | int | None) -> list[str]:
    """``statuses`` as sorted names of finished statuses (codes 10/20/30 or names); a clear error otherwise."""
    if statuses is None:
        return sorted(FINISHED_STATUSES)
    items = [statuses] if isinstance(statuses, str | int) else list(statuses)
    names: set[str] = set()
    for item in items:
        try:
            status = RunStatus(int(item)) if str(item).strip().isdigit() else RunStatus[str(item).strip().upper()]
        except (KeyError, ValueError):
            status = None
        if status is None or not status.is_terminal:
            raise ValueError(
                f"Unknown dbt Cloud run status {item!r} to watch: use {', '.join(FINISHED_STATUSES)} "
                "(or their codes 10, 20, 30)."
            )
        names.add(status.event_name)
    if not names:
        raise ValueError(f"No statuses to watch: give one or more of {', '.join(FINISHED_STATUSES)}.")
    return sorted(names)


class DbtCloudJobRunWatcher(_EventTriggerBase):
    """Fire one event for each run of dbt Cloud job ``job_id`` that finishes, whoever started it (Airflow 3).

    For ``AssetWatcher``: every run of the job that ends with one of ``statuses`` becomes one asset event,
    whether it was started by this package, by dbt Cloud's own scheduler, by another tool or by hand.
    ``statuses=["error", "cancelled"]`` watches failures only, for alerting (dbt Cloud ends a run that timed
    out as ``cancelled``). The event's payload is small and holds no secret::

        {"run_id": 70, "job_id": 42, "account_id": 1, "status": "error", "status_code": 20,
         "finished_at": "2026-12-02 16:40:01.123456+00:00", "run_url": "https://…/runs/70/"}

    **Requests.** Watchers do not poll on their own: all watchers (of any job) in the triggerer that use
    the same account share one listing of its recently finished runs per tick (``api/watching.py``), so
    requests grow with accounts, not watchers. The shortest ``poll_interval`` among them sets the tick.

    **Why not Airflow's ``shared_stream_key``.** Airflow 3.3 lets event triggers share one poll loop per
    ``shared_stream_key``. This package's feed already does that, and more widely: it is keyed by the
    resolved (host, account, token), so watchers of different connections to one account, and of different
    jobs, share one request; and it runs inside ``run()``, so the same code runs in the triggerer and in
    tests, and it also serves the deferred waits' pollers' HTTP pool. A shared stream is opened with one sibling's kwargs, so it could not page back as
    far as each watcher's own cursor needs after downtime; and its subscribers joining late miss the
    snapshots broadcast before they joined. ``shared_stream_key`` therefore stays ``None``.

    **Once, and after downtime (the guarantee).** A watcher keeps a cursor (:class:`.api.watching.RunCursor`:
    the newest ``finished_at`` examined, and the ids of its job's runs near it) in Airflow's asset state
    store of the watched asset (Airflow 3.3), written **before** each event is yielded. So:

    * a run is never emitted twice, also across triggerer restarts and across new trigger instances;
    * a run that finished while the triggerer was down is emitted when it is back, if it finished within
      ``look_back`` seconds (default one day) before the watcher restarted; older ones are skipped (logged);
    * on its very first start (nothing stored) a watcher emits only runs that finish from then on;
    * the one window in which a run can be lost is a hard kill between the cursor write and Airflow storing
      the event (about a second): at most once, never twice.

    **Errors.** Transient API errors are waited out. A refused token, a missing connection or any other
    lasting error is logged and tried again with backoff (up to :data:`MAX_RETRY_WAIT`), with the connection
    read afresh; the watcher never ends on its own.

    Without an asset state store (``run()`` called directly, outside the triggerer) the cursor lives in the
    process, so a new process starts afresh. The cursor is never in the kwargs: Airflow identifies a watcher by a hash of
    its kwargs, which must not change from one DAG parse to the next.
    """

    def __init__(
        self,
        conn_id: str = "dbt_cloud_default",
        job_id: int | None = None,
        account_id: int | None = None,
        statuses: Iterable[str | int] | str | int | None = None,
        poll_interval: float = DEFAULT_WATCH_POLL_INTERVAL,
        look_back: float = DEFAULT_LOOK_BACK,
    ) -> None:
        if not _EVENT_TRIGGERS:
            raise RuntimeError(
                "DbtCloudJobRunWatcher needs Airflow 3 (event-driven scheduling with AssetWatcher); this is "
                "Airflow 2. Use RunDbtCloudJobOperator or DbtCloudRunSensor to wait for runs instead."
            )
        super().__init__()
        self.conn_id = conn_id
        self.job_id = validate_id(job_id, "job_id")
        self.account_id = account_id
        self.statuses = _status_names(statuses)
        self.poll_interval = float(poll_interval)
        self.look_back = float(look_back)
        if not self.look_back >= 0:
            raise ValueError(f"look_back must be zero or more seconds, not {look_back!r}.")

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "conn_id": self.conn_id,
                "job_id": self.job_id,
                "account_id": self.account_id,
                "statuses": self.statuses,
                "poll_interval": self.poll_interval,
                "look_back": self.look_back,
            },
        )

    @property
    def cursor_key(self) -> str:
        """The key of this watcher's cursor in the asset state store: one per job, statuses and connection."""
        return f"dbt_cloud_watch:{self.conn_id}:{self.account_id or ''}:{self.job_id}:{','.join(self.statuses)}"

    def _hook(self) -> DbtCloudHook:
        from .hooks import DbtCloudHook  # not at DAG parse: DAG files import this module

        return DbtCloudHook(self.conn_id, account_id=self.account_id)

    def _accessors(self) -> list[Any]:
        """The asset state store accessors Airflow injected (one per watched asset), or none."""
        store = getattr(self, "asset_state_store", None)
        if store is None:
            return []
        try:
            return [store._single_accessor()]  # the usual case: the watcher watches one asset
        except ValueError:  # one trigger shared by several assets: keep the cursor on each
            return [*getattr(store, "_by_name", {}).values(), *getattr(store, "_by_uri", {}).values()]
        except AttributeError:
            return [store]

    async def _load_cursor(self) -> RunCursor | None:
        from .api.watching import RunCursor

        accessors = self._accessors()
        if not accessors:
            return RunCursor.from_json(_MEMORY_CURSORS.get(self._memory_key()))
        cursors = [RunCursor.from_json(await accessor.aget(self.cursor_key)) for accessor in accessors]
        found = [c for c in cursors if c is not None]
        # Several assets: the furthest cursor wins, so nothing one of them recorded is emitted again.
        return max(found, key=lambda c: c.mark or 0.0) if found else None

    async def _save_cursor(self, cursor: RunCursor) -> None:
        value = cursor.to_json()
        accessors = self._accessors()
        if not accessors:
            _MEMORY_CURSORS[self._memory_key()] = value
        for accessor in accessors:
            await accessor.aset(self.cursor_key, value)

    def _memory_key(self) -> str:
        return json.dumps(self.serialize(), sort_keys=True)

    def _payload(self, run: dict[str, Any], base_url: str) -> dict[str, Any]:
        status = run_status(run)
        return {
            "run_id": int(run["id"]),
            "job_id": self.job_id,
            "account_id": run.get("account_id"),
            "status": status.event_name,
            "status_code": int(status),
            "finished_at": run.get("finished_at"),
            "run_url": run_url(run, base_url),
        }

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Watch until cancelled. A refused token, a missing connection or any other lasting error is logged
        and tried again with backoff (up to :data:`MAX_RETRY_WAIT`), with the connection read afresh: a
        watcher that raised would be restarted by the triggerer at once, again and again."""
        from .api.watching import RunCursor  # httpx: the triggerer needs it, DAG parsing does not

        cursor = await self._load_cursor() or RunCursor()
        not_before = time.time() - self.look_back  # the look-back counts from this (re)start
        self.log.info(
            "Watching dbt Cloud job %s for finished runs (%s); %s.",
            self.job_id,
            ", ".join(self.statuses),
            "resuming from the stored cursor" if cursor.started else "first start: runs finishing from now on",
        )
        failures = 0
        while True:
            watch = _Watch(self, cursor, not_before)
            try:
                async for event in watch.events():
                    failures = 0
                    yield event
            except Exception as error:  # a watcher must outlive what it cannot fix itself
                failures = 1 if watch.listed else failures + 1
                wait = min(MAX_RETRY_WAIT, self.poll_interval * 2**failures)
                self.log.error(
                    "Could not watch dbt Cloud job %s: %s Trying again in %.0f s, with the connection read again.",
                    self.job_id,
                    error,
                    wait,
                    exc_info=not isinstance(error, DbtCloudError),
                )
                await asyncio.sleep(wait)
            cursor = watch.cursor


class _Watch:
    """One subscription of a :class:`DbtCloudJobRunWatcher` to its account's feed, until an error ends it."""

    def __init__(self, watcher: DbtCloudJobRunWatcher, cursor: RunCursor, not_before: float) -> None:
        self.watcher, self.cursor, self.not_before = watcher, cursor, not_before
        self.saved_at = time.monotonic()
        self.listed = False  # whether the feed answered at least once

    async def save(self, cursor: RunCursor) -> None:
        """Store ``cursor``, then make it current: a cursor that could not be stored is not relied on."""
        await self.watcher._save_cursor(cursor)
        self.cursor, self.saved_at = cursor, time.monotonic()

    async def events(self) -> AsyncIterator[TriggerEvent]:
        from .api.watching import feed_for

        watcher, job_id, not_before = self.watcher, self.watcher.job_id, self.not_before
        credentials = await watcher._hook().aget_credentials()
        feed = feed_for(credentials).subscribe(
            job_id, watcher.poll_interval, lambda: self.cursor.oldest_needed(not_before)
        )
        async for snapshot in feed:
            self.listed = True
            if not snapshot.covers(job_id, self.cursor.oldest_needed(not_before)):
                continue  # listed for others before this watcher joined: the next tick goes back far enough
            job_runs = [run for run in snapshot.runs if _job_of(run) == job_id]
            if not self.cursor.started:  # first look ever: what has finished already is history
                await self.save(self.cursor.advance(job_runs, snapshot.runs))
                continue
            new = [run for run in reversed(job_runs) if self.cursor.is_new(run, not_before)]  # oldest first
            skipped = [
                r for r in job_runs if not self.cursor.is_new(r, not_before) and self.cursor.is_new(r, -math.inf)
            ]
            if skipped:
                watcher.log.warning(
                    "Not emitting runs %s of dbt Cloud job %s: they finished more than look_back=%ss before "
                    "this watcher (re)started.",
                    sorted(int(r["id"]) for r in skipped),
                    job_id,
                    watcher.look_back,
                )
            for run in new:
                if run_status(run).event_name not in watcher.statuses:
                    continue  # examined all the same: the advance below records it
                await self.save(self.cursor.advance([run], ()))  # before the event: never twice (class docstring)
                yield TriggerEvent(watcher._payload(run, credentials.base_url))
            advanced = self.cursor.advance(job_runs, snapshot.runs)
            if advanced != self.cursor:
                if new or time.monotonic() - self.saved_at >= CURSOR_SAVE_INTERVAL:
                    await self.save(advanced)
                else:
                    self.cursor = advanced


def _job_of(run: dict[str, Any]) -> int | None:
    job = run.get("job_definition_id", run.get("job_id"))
    return int(job) if isinstance(job, int | str) and str(job).isdigit() else None
