"""One poller per account in a process: many waiting runs, few API requests.

Every waiter for the same (event loop, host, account, token) registers its run id with one
:class:`RunPoller`. On each tick the poller reads all registered runs with the list endpoint's ``pk__in``
filter, 100 runs per request, and wakes exactly the waiters whose run reached a terminal state. Requests
therefore grow with the number of accounts, not with the number of runs. If the server rejects ``pk__in``,
or a run is missing from the answer, that run is read with a plain GET instead (logged once).

All state lives in memory and is rebuilt by the waiters themselves, so a triggerer restart loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .aio import AsyncDbtCloudClient, hold_http_client, release_http_client
from .core import MAX_PAGE_SIZE, RetryPolicy, clamp_poll_interval, log
from .credentials import DbtCloudCredentials
from .errors import DbtCloudError, DbtCloudValidationError
from .models import is_terminal
from .reporting import progress_state

#: Called with a run whenever its status (or running step, when the answer lists steps) changes.
OnChange = Callable[[dict[str, Any]], None]

#: Polls retry briefly: the next tick is itself a retry. Retries are not logged: :class:`_Trouble` reports.
POLL_RETRY = RetryPolicy(max_attempts=3, initial_wait=0.5, max_wait=5.0, log_retries=False)


class _Trouble:
    """Failed reads, reported once per run and then as a count: a server that answers badly for the whole
    timeout (tens of thousands of ticks at the defaults) gets a handful of log lines, not one per tick."""

    def __init__(self) -> None:
        self.failures: dict[int, int] = {}  # run id -> ticks in a row on which it could not be read
        self.crashes = 0  # ticks that failed with an unexpected error

    def failed(self, run_ids: list[int], error: BaseException) -> None:
        new = [run_id for run_id in run_ids if run_id not in self.failures]
        for run_id in run_ids:
            self.failures[run_id] = self.failures.get(run_id, 0) + 1
        if new:
            shown = ", ".join(map(str, new))
            log.warning(
                "Could not read dbt Cloud runs %s (%s); will try again (the count is logged from now on).", shown, error
            )
            return
        counts = sorted({self.failures[run_id] for run_id in run_ids})
        if any(_milestone(count) for count in counts):
            log.warning(
                "dbt Cloud runs %s still could not be read, %d ticks in a row (last: %s).",
                ", ".join(map(str, run_ids)),
                counts[-1],
                error,
            )

    def read(self, run_id: int) -> None:
        failed = self.failures.pop(run_id, 0)
        if failed:
            log.info("Read dbt Cloud run %s again after %d failed ticks.", run_id, failed)

    def forget(self, run_id: int) -> None:
        self.failures.pop(run_id, None)

    def crashed(self) -> None:
        """A tick failed unexpectedly: the first time with its traceback, then as a count."""
        self.crashes += 1
        if self.crashes == 1:
            log.exception("dbt Cloud poller tick failed; trying again next tick (later failures are counted).")
        elif _milestone(self.crashes):
            log.warning("dbt Cloud poller ticks failed %d times so far; still trying.", self.crashes, exc_info=False)


def _milestone(count: int) -> bool:
    """10, 100, 1000, ...: when a count is worth a line."""
    return count >= 10 and str(count).rstrip("0") == "1"


@dataclass(eq=False)
class _Waiter:
    run_id: int
    poll_interval: float
    future: asyncio.Future[dict[str, Any]] = field(repr=False)
    on_change: OnChange | None = field(default=None, repr=False)
    seen: tuple[Any, ...] | None = None  # the progress state last reported to ``on_change``


class RunPoller:
    """Polls the runs of one account on behalf of every waiter in this event loop."""

    def __init__(self, key: tuple[Any, ...], credentials: DbtCloudCredentials) -> None:
        self._key = key
        self._http = hold_http_client(credentials, self)  # the process's pool, released when the last waiter leaves
        self._client = AsyncDbtCloudClient(credentials, retry=POLL_RETRY)
        self._waiters: dict[int, set[_Waiter]] = {}  # by run id: every step stays O(1) per waiter
        self._intervals: Counter[float] = Counter()  # the waiters' poll intervals, for the tick
        self._task: asyncio.Task[None] | None = None
        self._interval_changed = asyncio.Event()
        self._pk_in_supported = True
        self._reported_missing: set[int] = set()
        self._trouble = _Trouble()

    @property
    def run_ids(self) -> set[int]:
        """The runs still waited for (a waiter whose answer is set is not polled again)."""
        return {run_id for run_id, waiters in self._waiters.items() if any(not w.future.done() for w in waiters)}

    def _interval(self) -> float:
        return min(self._intervals, default=0.0)

    async def wait(self, run_id: int, poll_interval: float, on_change: OnChange | None = None) -> dict[str, Any]:
        """Return the run once it is terminal. Cancelling the caller unregisters it.

        ``on_change`` sees the run on every tick whose answer shows a new status or step; it costs no request.
        """
        interval = clamp_poll_interval(poll_interval)
        waiter = _Waiter(run_id, interval, asyncio.get_running_loop().create_future(), on_change)
        if self._waiters and waiter.poll_interval < self._interval():
            self._interval_changed.set()
        self._waiters.setdefault(run_id, set()).add(waiter)
        self._intervals[waiter.poll_interval] += 1
        _loop_pollers().setdefault(self._key, self)  # a poller that stopped a moment ago becomes current again
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop(), name=f"dbt-cloud-poller-{self._key[1]}")
        try:
            return await waiter.future
        finally:
            self._remove(waiter)
            if not self._waiters:
                await self._stop()

    def _remove(self, waiter: _Waiter) -> None:
        waiters = self._waiters.get(waiter.run_id, set())
        waiters.discard(waiter)
        if not waiters:
            self._waiters.pop(waiter.run_id, None)
            self._trouble.forget(waiter.run_id)
        self._intervals[waiter.poll_interval] -= 1
        if self._intervals[waiter.poll_interval] <= 0:
            del self._intervals[waiter.poll_interval]

    async def _stop(self) -> None:
        pollers = _loop_pollers()
        if pollers.get(self._key) is self:
            del pollers[self._key]
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        self._task = None
        await release_http_client(self._client.credentials, self)

    async def _loop(self) -> None:
        while self._waiters:
            started = time.monotonic()
            self._interval_changed.clear()  # before the tick: a shorter interval registered during it counts
            try:
                await self._poll_once()
            except Exception:  # never let one bad tick kill the poller and strand its waiters
                self._trouble.crashed()
            delay = self._interval() - (time.monotonic() - started)
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._interval_changed.wait(), timeout=delay)

    async def _poll_once(self) -> None:
        run_ids = sorted(self.run_ids)
        found: dict[int, dict[str, Any]] = {}
        unread: set[int] = set()
        if self._pk_in_supported:
            for start in range(0, len(run_ids), MAX_PAGE_SIZE):
                chunk = run_ids[start : start + MAX_PAGE_SIZE]
                try:
                    runs = await self._client.list_runs_page(pk__in=chunk, limit=MAX_PAGE_SIZE, order_by="id")
                except DbtCloudValidationError as error:
                    log.warning("dbt Cloud rejected pk__in (%s); reading each run with its own GET.", error)
                    self._pk_in_supported = False
                    break
                except DbtCloudError as error:
                    self._handle_error(chunk, error, unread)
                    continue
                found.update((run["id"], run) for run in runs if run.get("id") in chunk)
        missing = [run_id for run_id in run_ids if run_id not in found and run_id not in unread]
        if missing and self._pk_in_supported:
            new = [run_id for run_id in missing if run_id not in self._reported_missing]
            if new:
                log.warning("Runs %s were missing from the batched answer; reading them one by one.", new)
                self._reported_missing.update(new)
        results = await asyncio.gather(*(self._client.get_run(run_id) for run_id in missing), return_exceptions=True)
        for run_id, result in zip(missing, results, strict=True):
            if isinstance(result, DbtCloudError):
                self._handle_error([run_id], result, unread)
            elif isinstance(result, BaseException):
                raise result
            else:
                found[run_id] = result
        for run_id, run in found.items():
            self._trouble.read(run_id)
            self._report(run_id, run)
            if is_terminal(run):
                self._resolve(run_id, run)

    def _report(self, run_id: int, run: dict[str, Any]) -> None:
        """Tell the waiters that asked for it about a new status or step (a callback error never stops a wait)."""
        state: tuple[Any, ...] | None = None
        for waiter in self._waiters.get(run_id, ()):
            if waiter.on_change is None or waiter.future.done():
                continue
            state = progress_state(run) if state is None else state
            if state != waiter.seen:
                waiter.seen = state
                try:
                    waiter.on_change(run)
                except Exception:
                    log.exception("A progress callback for run %s failed.", run_id)

    def _handle_error(self, run_ids: list[int], error: DbtCloudError, unread: set[int]) -> None:
        """Transient errors wait for the next tick; others (401, 403, 404) end the affected waits."""
        unread.update(run_ids)
        if error.transient:
            self._trouble.failed(run_ids, error)
            return
        for run_id in run_ids:
            for waiter in self._waiters.get(run_id, ()):
                if not waiter.future.done():
                    waiter.future.set_exception(error)

    def _resolve(self, run_id: int, run: dict[str, Any]) -> None:
        for waiter in self._waiters.get(run_id, ()):
            if not waiter.future.done():
                waiter.future.set_result(run)


_Shared = TypeVar("_Shared")


class PerLoop(weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[Any, ...], _Shared]]):
    """One shared object per event loop (weakly: a closed loop's go with it) and per (host, account, token)."""

    def current(self) -> dict[tuple[Any, ...], _Shared]:
        """The running event loop's objects, by key."""
        return self.setdefault(asyncio.get_running_loop(), {})

    def for_credentials(
        self, credentials: DbtCloudCredentials, make: Callable[[tuple[Any, ...], DbtCloudCredentials], _Shared]
    ) -> _Shared:
        """The running event loop's object for these credentials' account, made on first use."""
        shared = self.current()
        key = (credentials.base_url, credentials.account_id, credentials.api_token)
        found = shared.get(key)
        if found is None:
            found = shared[key] = make(key, credentials)
        return found


_POLLERS: PerLoop[RunPoller] = PerLoop()


def _loop_pollers() -> dict[tuple[Any, ...], RunPoller]:
    return _POLLERS.current()


def poller_for(credentials: DbtCloudCredentials) -> RunPoller:
    """The running event loop's poller for these credentials' account."""
    return _POLLERS.for_credentials(credentials, RunPoller)


async def wait_for_run_async(
    credentials: DbtCloudCredentials,
    run_id: int,
    *,
    poll_interval: float,
    timeout: float | None = None,
    on_change: OnChange | None = None,
) -> dict[str, Any]:
    """Wait on the shared poller until the run is terminal; raises ``TimeoutError`` after ``timeout`` s.

    ``on_change`` is called with the run each time its status (or step) differs from the last one seen.
    """

    async def waiting() -> dict[str, Any]:
        # Look the poller up in the same step that registers with it: wait_for runs this in a new task, and
        # a poller picked one step earlier may have stopped in between.
        return await poller_for(credentials).wait(run_id, poll_interval, on_change)

    if timeout is None:
        return await waiting()
    return await asyncio.wait_for(waiting(), timeout=max(0.0, timeout))
