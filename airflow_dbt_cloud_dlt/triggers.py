"""The deferrable trigger: waits for a dbt Cloud run on the triggerer, on the process's shared poller."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from .api.credentials import validate_id
from .api.errors import DbtCloudError
from .api.models import run_status, run_summary, status_text

DEFAULT_POLL_INTERVAL = 10.0
#: Seconds that ``on_kill`` may spend cancelling the run (the triggerer's own bound is 30 s).
CANCEL_TIMEOUT = 20.0


class DbtCloudRunTrigger(BaseTrigger):
    """Fire one event when dbt Cloud run ``run_id`` ends, or when ``timeout`` seconds have passed.

    The event is ``{"status": "success" | "error" | "cancelled" | "timeout", "run_id", "message", "run"}``
    where ``run`` is a small JSON-safe summary. Transient API errors (429, 5xx, resets, timeouts) are
    waited out; they never become an event. An event with ``"observed": False`` means the run could not
    be read at all (bad token, unknown run), which is not a dbt failure.

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

    def _hook(self) -> Any:
        from .hooks import DbtCloudHook

        return DbtCloudHook(self.conn_id, account_id=self.account_id)

    def _event(self, status: str, message: str, run: dict[str, Any] | None, observed: bool = True) -> TriggerEvent:
        return TriggerEvent(
            {
                "status": status,
                "run_id": self.run_id,
                "message": message,
                "observed": observed,
                "run": run_summary(run) if run else None,
            }
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from .api.aio import AsyncDbtCloudClient
        from .api.poller import wait_for_run_async

        try:
            credentials = await self._hook().aget_credentials()
            remaining = None if self.end_time is None else self.end_time - time.time()
            try:
                run = await wait_for_run_async(
                    credentials, self.run_id, poll_interval=self.poll_interval, timeout=remaining
                )
            except TimeoutError:
                yield await self._last_look(AsyncDbtCloudClient(credentials))
                return
        except DbtCloudError as error:
            yield self._event(
                "error",
                f"Could not observe dbt Cloud run {self.run_id}: {error} The run itself was not changed.",
                None,
                observed=False,
            )
            return
        yield self._final_event(run)

    def _final_event(self, run: dict[str, Any]) -> TriggerEvent:
        message = f"dbt Cloud run {self.run_id} ended: {status_text(run)}."
        if run.get("status_message"):
            message += f" {run['status_message']}"
        return self._event(run_status(run).event_name, message, run)

    async def _last_look(self, client: Any) -> TriggerEvent:
        """At the deadline, read the run once more, so a run that finished right then gets its real status."""
        try:
            run = await client.get_run(self.run_id)
        except DbtCloudError:
            run = None
        if run is not None and run_status(run).is_terminal:
            return self._final_event(run)
        status = status_text(run) if run else "unknown"
        return self._event(
            "timeout", f"dbt Cloud run {self.run_id} did not finish within the timeout (last status: {status}).", run
        )

    async def on_kill(self) -> None:
        """Cancel the dbt Cloud run when a user kills, clears or marks the deferred task (Airflow 3.3+)."""
        from .api.aio import AsyncDbtCloudClient

        credentials = await self._hook().aget_credentials()
        run = await asyncio.wait_for(AsyncDbtCloudClient(credentials).cancel_run(self.run_id), timeout=CANCEL_TIMEOUT)
        self.log.info("Cancelled dbt Cloud run %s (status now %s).", self.run_id, run.get("status_humanized"))
