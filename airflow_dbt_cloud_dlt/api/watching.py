"""Watching a job's finished runs, whoever started them: one shared feed per account, and a cursor per watcher.

:class:`FinishedRunsFeed` is the watchers' counterpart of :class:`.poller.RunPoller`. Every watcher in an
event loop that uses the same (host, account, token) subscribes to one feed. On each tick the feed lists the
account's most recently finished runs (``status__in=10,20,30``, ``order_by=-finished_at``, 100 per page, and
``job_definition_id`` when every subscriber watches the same job) and hands the same answer to every
subscriber. Requests grow with the number of accounts, not with the number of watchers. The feed pages
further back only as far as the subscriber that needs the oldest runs (a watcher catching up after a
restart), and never more than :data:`MAX_WATCH_PAGES` pages per tick.

:class:`RunCursor` is what a watcher remembers so that a run is emitted once: a high-water mark (the newest
``finished_at`` it has examined, in dbt Cloud's clock) and the ids of its job's runs that finished within
:data:`SETTLE_SECONDS` of it. A run is new when it finished after ``mark - SETTLE_SECONDS`` and its id is not
remembered: a run that shows up in the listing a little late (up to the settle window) is still caught, and
one already seen is never taken again. The cursor is small JSON, so the trigger can persist it.

Pure Python and httpx: nothing here knows Airflow.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .aio import AsyncDbtCloudClient, hold_http_client, release_http_client
from .core import MAX_PAGE_SIZE, clamp_poll_interval, log
from .credentials import DbtCloudCredentials
from .errors import DbtCloudError
from .models import RunStatus
from .poller import POLL_RETRY, PerLoop

#: Seconds before the high-water mark in which a run that appears late is still taken (ids remembered).
SETTLE_SECONDS = 300.0
#: The most pages (of 100 runs) one tick reads while catching up; older runs are left out, with a warning.
MAX_WATCH_PAGES = 50
FINISHED_CODES = (int(RunStatus.SUCCESS), int(RunStatus.ERROR), int(RunStatus.CANCELLED))
_CURSOR_VERSION = 1


@dataclass(frozen=True)
class Snapshot:
    """What a subscriber receives per tick: the finished runs listed, newest first, and how far back the
    listing is complete (``complete_down_to`` None: every finished run; the last page was short)."""

    runs: tuple[dict[str, Any], ...] = ()
    complete_down_to: float | None = None
    truncated: bool = False  # stopped at MAX_WATCH_PAGES: as complete as it will get
    job_id: int | None = None  # the runs of this job only (all jobs: None)

    def covers(self, job_id: int, since: float | None) -> bool:
        """Whether every run of ``job_id`` that finished at or after ``since`` is listed (``since`` None: the
        newest runs). A listing made for other subscribers, before this one joined, may not be."""
        if self.job_id is not None and self.job_id != job_id:
            return False
        return since is None or self.truncated or self.complete_down_to is None or self.complete_down_to <= since


def finished_epoch(run: Mapping[str, Any]) -> float | None:
    """The run's ``finished_at`` as POSIX seconds (dbt writes ``2024-05-27 10:42:16.179903+00:00``)."""
    value = run.get("finished_at")
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


@dataclass(frozen=True)
class RunCursor:
    """Which finished runs of one job a watcher has already examined (see the module docstring).

    ``mark`` is None until the watcher's first look (``started`` False), or when the account had no finished
    run at that look (``started`` True): then every run seen later is new.
    """

    started: bool = False
    mark: float | None = None
    recent: Mapping[int, float] = field(default_factory=dict)

    def oldest_needed(self, not_before: float) -> float | None:
        """How far back (``finished_at``) the feed must list for this cursor; None: the first page is enough."""
        if not self.started:
            return None
        return not_before if self.mark is None else max(self.mark - SETTLE_SECONDS, not_before)

    def is_new(self, run: Mapping[str, Any], not_before: float) -> bool:
        finished = finished_epoch(run)
        if finished is None or finished < not_before or int(run["id"]) in self.recent:
            return False
        return self.mark is None or finished > self.mark - SETTLE_SECONDS

    def advance(self, job_runs: Iterable[Mapping[str, Any]], listed: Iterable[Mapping[str, Any]]) -> RunCursor:
        """The cursor once ``job_runs`` (this job's runs among all the runs ``listed``) have been examined."""
        marks = [t for t in (finished_epoch(run) for run in listed) if t is not None]
        mark = max([*marks, *([self.mark] if self.mark is not None else [])], default=None)
        recent = dict(self.recent)
        for run in job_runs:
            finished = finished_epoch(run)
            if finished is not None:
                recent[int(run["id"])] = finished
        if mark is not None:
            recent = {run_id: t for run_id, t in recent.items() if t > mark - SETTLE_SECONDS}
        return RunCursor(True, mark, recent)

    def to_json(self) -> dict[str, Any]:
        return {"v": _CURSOR_VERSION, "mark": self.mark, "recent": {str(k): v for k, v in sorted(self.recent.items())}}

    @classmethod
    def from_json(cls, value: Any) -> RunCursor | None:
        """The cursor of :meth:`to_json`, or None for anything else (nothing stored, another version)."""
        if not isinstance(value, Mapping) or value.get("v") != _CURSOR_VERSION:
            return None
        try:
            mark = None if value.get("mark") is None else float(value["mark"])
            recent = {int(k): float(v) for k, v in (value.get("recent") or {}).items()}
        except (TypeError, ValueError, AttributeError):
            return None
        return cls(True, mark, recent)


@dataclass(eq=False)
class _Subscriber:
    job_id: int
    poll_interval: float
    oldest_needed: Callable[[], float | None]
    queue: asyncio.Queue[Snapshot | BaseException] = field(default_factory=asyncio.Queue, repr=False)


class FinishedRunsFeed:
    """Lists the finished runs of one account on behalf of every watcher in this event loop."""

    def __init__(self, key: tuple[Any, ...], credentials: DbtCloudCredentials) -> None:
        self._key = key
        self._credentials = credentials
        self._client = AsyncDbtCloudClient(credentials, retry=POLL_RETRY)
        self._subscribers: set[_Subscriber] = set()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.ticks = 0  # for tests and logs: how many listings the feed made

    async def subscribe(
        self, job_id: int, poll_interval: float, oldest_needed: Callable[[], float | None]
    ) -> AsyncIterator[Snapshot]:
        """Yield one snapshot per tick, starting with one taken right away; raises a permanent API error."""
        subscriber = _Subscriber(job_id, clamp_poll_interval(poll_interval), oldest_needed)
        if not self._subscribers:
            hold_http_client(self._credentials, self)
        self._subscribers.add(subscriber)
        _loop_feeds().setdefault(self._key, self)
        self._wake.set()  # a new subscriber gets its first snapshot now, not one interval later
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop(), name=f"dbt-cloud-run-feed-{self._key[1]}")
        try:
            while True:
                item = await subscriber.queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._subscribers.discard(subscriber)
            if not self._subscribers:
                await self._stop()

    async def _stop(self) -> None:
        feeds = _loop_feeds()
        if feeds.get(self._key) is self:
            del feeds[self._key]
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        self._task = None
        await release_http_client(self._credentials, self)

    async def _loop(self) -> None:
        while self._subscribers:
            started = time.monotonic()
            self._wake.clear()
            try:
                snapshot: Snapshot | BaseException = await self._list()
            except DbtCloudError as error:
                if error.transient:
                    log.warning("Could not list finished dbt Cloud runs this tick (%s); will try again.", error)
                    delay = min(s.poll_interval for s in self._subscribers) if self._subscribers else 0.0
                    await self._sleep(delay - (time.monotonic() - started))
                    continue
                snapshot = error
            except Exception as error:  # never strand the subscribers: they see what went wrong
                log.exception("dbt Cloud run feed tick failed.")
                snapshot = error
            self.ticks += 1
            for subscriber in list(self._subscribers):
                subscriber.queue.put_nowait(snapshot)
            if isinstance(snapshot, BaseException):
                return
            delay = min((s.poll_interval for s in self._subscribers), default=0.0)
            await self._sleep(delay - (time.monotonic() - started))

    async def _sleep(self, delay: float) -> None:
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)

    async def _list(self) -> Snapshot:
        subscribers = list(self._subscribers)
        jobs = {s.job_id for s in subscribers}
        filters: dict[str, Any] = {"status__in": list(FINISHED_CODES)}
        if len(jobs) == 1:
            filters["job_definition_id"] = next(iter(jobs))
        needs = [n for n in (s.oldest_needed() for s in subscribers) if n is not None]
        oldest = min(needs, default=None)  # None: every subscriber is on its first look, one page will do
        runs: dict[int, dict[str, Any]] = {}
        complete_down_to: float | None = None
        for page_number in range(MAX_WATCH_PAGES):
            page = await self._client.list_runs_page(
                order_by="-finished_at", limit=MAX_PAGE_SIZE, offset=page_number * MAX_PAGE_SIZE, **filters
            )
            runs.update((int(run["id"]), run) for run in page if run.get("id") is not None)
            if len(page) < MAX_PAGE_SIZE:
                complete_down_to = None
                break
            complete_down_to = finished_epoch(page[-1])
            if oldest is None or complete_down_to is None or complete_down_to <= oldest:
                break
        else:
            log.warning(
                "Catching up on finished dbt Cloud runs stopped after %s pages; older runs are not emitted.",
                MAX_WATCH_PAGES,
            )
        newest_first = sorted(runs.values(), key=lambda run: (finished_epoch(run) or 0.0, int(run["id"])), reverse=True)
        truncated = complete_down_to is not None and oldest is not None and complete_down_to > oldest
        return Snapshot(tuple(newest_first), complete_down_to, truncated, filters.get("job_definition_id"))


_FEEDS: PerLoop[FinishedRunsFeed] = PerLoop()


def _loop_feeds() -> dict[tuple[Any, ...], FinishedRunsFeed]:
    return _FEEDS.current()


def feed_for(credentials: DbtCloudCredentials) -> FinishedRunsFeed:
    """The running event loop's feed of finished runs for these credentials' account."""
    return _FEEDS.for_credentials(credentials, FinishedRunsFeed)
