"""``DbtCloudRunSensor``: wait for an existing dbt Cloud run, poking or deferred."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

from ._compat import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    BaseSensorOperator,
    Context,
)


class DbtCloudRunSensor(BaseSensorOperator):
    """Succeed when dbt Cloud run ``run_id`` succeeds; fail when it ends in error or is cancelled.

    A failed run raises ``AirflowFailException`` (no pointless retries; ``soft_fail`` skips instead).
    Transient API errors are waited out. With ``deferrable=True`` the wait runs on the triggerer; the
    sensor's ``timeout`` then raises ``AirflowSensorTimeout`` as in poke mode.
    """

    template_fields: Sequence[str] = ("run_id", "dbt_cloud_conn_id", "account_id")

    def __init__(
        self,
        *,
        run_id: int | str,
        dbt_cloud_conn_id: str = "dbt_cloud_default",
        account_id: int | str | None = None,
        deferrable: bool | None = None,
        **kwargs: Any,
    ) -> None:
        from .operators import _default_deferrable

        kwargs.setdefault("poke_interval", 10.0)
        super().__init__(**kwargs)
        self.run_id = run_id
        self.dbt_cloud_conn_id = dbt_cloud_conn_id
        self.account_id = account_id
        self.deferrable = _default_deferrable() if deferrable is None else deferrable

    @cached_property
    def _hook(self) -> Any:
        """One hook per task instance: its connection is read once, not on every poke."""
        from .hooks import DbtCloudHook

        return DbtCloudHook(self.dbt_cloud_conn_id, account_id=self.account_id)

    def _fail(self) -> None:
        from .api.reporting import failure_report

        with self._hook.get_conn() as client:
            report = failure_report(client, int(self.run_id))
        self.log.error("%s", report)
        raise AirflowFailException(report)

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        try:
            if self.poke(context):  # already finished: no need to defer
                return None
        except AirflowFailException as error:
            if self.soft_fail:  # BaseSensorOperator applies soft_fail only to its own poke loop
                raise AirflowSkipException(f"Skipping due to soft_fail: {error}") from error
            raise
        from .operators import optional_account_id, seconds
        from .triggers import DbtCloudRunTrigger

        timeout = seconds(self.timeout)
        self.defer(
            trigger=DbtCloudRunTrigger(
                conn_id=self.dbt_cloud_conn_id,
                run_id=int(self.run_id),
                account_id=optional_account_id(self.account_id),
                poll_interval=float(self.poke_interval),
                timeout=float(timeout) if timeout else None,
            ),
            method_name="execute_complete",
        )
        return None

    def poke(self, context: Context) -> bool:
        from .api.errors import DbtCloudError
        from .api.models import RunStatus, run_status
        from .api.reporting import progress_line

        try:
            with self._hook.get_conn() as client:
                run = client.get_run(self.run_id, include_related=("run_steps",))
        except DbtCloudError as error:
            if error.transient:
                self.log.warning("Could not read run %s (%s); will look again.", self.run_id, error)
                return False
            raise
        self.log.info("%s", progress_line(run))
        status = run_status(run)
        if status.is_terminal and status is not RunStatus.SUCCESS:
            self._fail()
        return status is RunStatus.SUCCESS

    def execute_complete(self, context: Context, event: dict[str, Any]) -> None:
        """Resume after the trigger's event."""
        status = (event or {}).get("status")
        if status == "success":
            self.log.info("%s", event.get("message"))
            return
        if status == "timeout":
            raise AirflowSensorTimeout(str(event.get("message")))
        if not event or not event.get("observed", True):
            raise AirflowException((event or {}).get("message") or f"Unexpected trigger event {event!r}.")
        self._fail()
