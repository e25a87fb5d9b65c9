"""What the run-job operator and the run sensor share: settings helpers, deferring to the trigger, and the
one handler that turns a :class:`~.api.events.RunEvent` into the task's success or failure."""

from __future__ import annotations

from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.configuration import conf

from ._compat import AirflowException, Context
from .api.credentials import validate_id
from .api.events import RunEvent
from .api.reporting import failure_report
from .hooks import DbtCloudHook
from .triggers import DbtCloudRunTrigger

if TYPE_CHECKING:  # the mixin's attributes (log, defer) come from the operator it joins
    from ._compat import BaseOperator as _Base
else:
    _Base = object


def default_deferrable() -> bool:
    """``[operators] default_deferrable`` of the Airflow configuration."""
    return conf.getboolean("operators", "default_deferrable", fallback=False)


def seconds(value: timedelta | float | None) -> float | None:
    """A duration in seconds."""
    return value.total_seconds() if isinstance(value, timedelta) else value


def optional_account_id(value: int | str | None) -> int | None:
    """A templated account id as an int (validated), or None to use the connection's login."""
    return None if value in (None, "") else validate_id(value, "account_id")


class RunWaitMixin(_Base):
    """Waiting for dbt Cloud run ``run_id`` and finishing the task from its outcome.

    The host class sets ``dbt_cloud_conn_id``, ``account_id`` and ``run_id``; ``run_url`` is set as soon as
    the run is known (the extra link reads it). ``failure_exception`` is what a failed run raises.
    """

    dbt_cloud_conn_id: str
    account_id: int | str | None
    run_id: Any
    run_url: str | None = None
    failure_exception: type[Exception] = AirflowException

    @cached_property
    def hook(self) -> DbtCloudHook:
        """One hook per task instance: its connection is read once."""
        return DbtCloudHook(self.dbt_cloud_conn_id, account_id=self.account_id)

    def defer_wait(self, run_id: int, *, poll_interval: float, timeout: float | None) -> NoReturn:
        """Hand the wait to the triggerer; ``execute_complete`` resumes with its event."""
        self.defer(
            trigger=DbtCloudRunTrigger(
                conn_id=self.dbt_cloud_conn_id,
                run_id=run_id,
                account_id=optional_account_id(self.account_id),
                poll_interval=poll_interval,
                timeout=timeout,
            ),
            method_name="execute_complete",
        )
        raise AssertionError("defer() returned")  # pragma: no cover

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        """Resume after the trigger's event: success returns the run id, anything else fails the task."""
        try:
            outcome = RunEvent.from_payload(event)
        except ValueError as error:
            raise AirflowException(str(error)) from None
        return self.finish_wait(outcome)

    def finish_wait(self, event: RunEvent) -> int:
        """The one completion handler, for blocking and deferred waits alike."""
        self.run_id = event.run_id
        self.run_url = event.run_url or self.run_url
        if event.succeeded:
            self.log.info("%s", event.message)
            return event.run_id
        if not event.observed:
            raise AirflowException(event.message)
        if event.status == "timeout":
            self.on_wait_timeout(event)
        self.fail_run(event.run_id)

    def on_wait_timeout(self, event: RunEvent) -> NoReturn:
        """The wait's own deadline passed; the run may still be going."""
        raise AirflowException(event.message)

    def fail_run(self, run_id: int) -> NoReturn:
        """Fail the task with why the run failed: status message, failed step and its log, failed nodes."""
        with self.hook.get_conn() as client:
            report = failure_report(client, run_id)
        self.log.error("%s", report)
        raise self.failure_exception(report)
