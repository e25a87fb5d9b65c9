"""The deferrable trigger: waits for a dbt Cloud run on the triggerer, on the process's shared poller."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from .api.credentials import DbtCloudCredentials, validate_id
from .api.errors import DbtCloudError
from .api.events import RunEvent
from .api.models import is_terminal
from .api.reporting import progress_line, run_url

if TYPE_CHECKING:
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
    ) -> None:
        super().__init__()
        self.conn_id = conn_id
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
        """Cancel the dbt Cloud run when a user kills, clears or marks the deferred task (Airflow 3.3+)."""
        from .api.aio import AsyncDbtCloudClient  # httpx: the triggerer needs it, DAG parsing does not

        credentials = await self._hook().aget_credentials()
        run = await asyncio.wait_for(AsyncDbtCloudClient(credentials).cancel_run(self.run_id), timeout=CANCEL_TIMEOUT)
        self.log.info("Cancelled dbt Cloud run %s (status now %s).", self.run_id, run.get("status_humanized"))
