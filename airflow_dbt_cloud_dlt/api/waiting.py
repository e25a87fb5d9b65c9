"""Waiting for a run to finish, by polling. Only dbt Cloud's own final status ends the wait
(:func:`.models.is_terminal`, the rule that :meth:`.events.RunEvent.for_run` applies too)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .core import clamp_poll_interval, log
from .errors import DbtCloudError, DbtCloudRunTimeoutError
from .events import RunEvent
from .models import is_terminal
from .reporting import changes_only

if TYPE_CHECKING:
    from .client import DbtCloudClient


def wait_for_run(
    client: DbtCloudClient,
    run_id: int,
    *,
    poll_interval: float,
    timeout: float | None = None,
    include_related: Iterable[str] = (),
    on_poll: Callable[[dict[str, Any]], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll ``run_id`` every ``poll_interval`` seconds until it is terminal, and return it.

    Transient failures to read the run (429, 5xx, resets, timeouts) are logged and waited out: failing to
    observe a run is not a dbt failure. Raises :class:`DbtCloudRunTimeoutError` after ``timeout`` seconds.
    """
    poll_interval = clamp_poll_interval(poll_interval)
    deadline = None if timeout is None else time.monotonic() + timeout
    run: dict[str, Any] | None = None
    while True:
        try:
            run = client.get_run(run_id, include_related)
        except DbtCloudError as error:
            if not error.transient:
                raise
            log.warning("Could not read run %s (%s); still waiting for it.", run_id, error)
        else:
            if on_poll is not None:
                on_poll(run)
            if is_terminal(run):
                return run
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            status = run.get("status_humanized", "unknown") if run else "unknown"
            raise DbtCloudRunTimeoutError(
                f"dbt Cloud run {run_id} did not finish within {timeout:g} s (last status: {status}).",
                run_id=run_id,
                run=run,
            )
        sleep(max(0.0, poll_interval if remaining is None else min(poll_interval, remaining)))


def wait_for_event(
    client: DbtCloudClient,
    run_id: int,
    *,
    poll_interval: float,
    timeout: float | None = None,
    run_url: str | None = None,
    on_change: Callable[[dict[str, Any]], None] | None = None,
) -> RunEvent:
    """A blocking wait whose outcome is the same :class:`RunEvent` a deferred wait delivers.

    ``on_change`` sees the run (with its steps and job) whenever its status or running step changes.
    """
    try:
        run = wait_for_run(
            client,
            run_id,
            poll_interval=poll_interval,
            timeout=timeout,
            include_related=("run_steps", "job"),
            on_poll=None if on_change is None else changes_only(on_change),
        )
    except DbtCloudRunTimeoutError as error:
        return RunEvent.timed_out(run_id, error.run, run_url, message=str(error))
    event = RunEvent.for_run(run, run_url)
    assert event is not None  # wait_for_run returns terminal runs only
    return event
