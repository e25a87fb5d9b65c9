"""``DbtCloudRunSensor``: wait for an existing dbt Cloud run, poking or deferred."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._compat import AirflowFailException, AirflowSensorTimeout, AirflowSkipException, BaseSensorOperator, Context
from ._official_names import DbtCloudJobRunException
from ._tasks import (
    OFFICIAL_DEFERRABLE,
    RunWaitMixin,
    check_args,
    check_asset_namespace,
    check_hook_params,
    default_deferrable,
    seconds,
    with_asset_alias,
)
from .api.errors import DbtCloudError
from .api.events import RunEvent
from .api.reporting import progress_line, run_url
from .links import DbtCloudRunLink
from .provider_info import DEFAULT_CONN_ID


class DbtCloudRunSensor(RunWaitMixin, BaseSensorOperator):
    """Succeed when dbt Cloud run ``run_id`` succeeds; fail when it ends in error or is cancelled.

    A failed run raises ``AirflowFailException`` (no pointless retries; ``soft_fail`` skips instead).
    Transient API errors are waited out. With ``deferrable=True`` the wait runs on the triggerer; the
    sensor's ``timeout`` then raises ``AirflowSensorTimeout`` as in poke mode. The first poke pushes XCom
    ``run_url``, which the "dbt Cloud run" extra link opens.

    ``asset_alias``, ``asset_namespace`` and ``assets_on_failure`` are those of
    :class:`~airflow_dbt_cloud_dlt.operators.RunDbtCloudJobOperator`: with an alias, a run that succeeds emits
    one asset event per model, seed and snapshot it built, whoever started it. With the ``openlineage`` extra, the
    finished run's lineage is the task's (:mod:`airflow_dbt_cloud_dlt.lineage`), as for the operator.
    """

    template_fields: Sequence[str] = ("run_id", "dbt_cloud_conn_id", "account_id")
    operator_extra_links = (DbtCloudRunLink(),)
    failure_exception: type[Exception] = AirflowFailException

    def __init__(
        self,
        *,
        run_id: int | str,
        dbt_cloud_conn_id: str = "dbt_cloud_default",
        account_id: int | str | None = None,
        deferrable: bool | None = None,
        hook_params: dict[str, Any] | None = None,
        asset_alias: str | None = None,
        asset_namespace: str | None = None,
        assets_on_failure: bool = True,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", 10.0)
        super().__init__(**with_asset_alias(kwargs, asset_alias))
        check_args(self.task_id, run_id=(run_id, "id"), account_id=(account_id, "id"), deferrable=(deferrable, "bool"))
        check_args(
            self.task_id, asset_namespace=(asset_namespace, "text"), assets_on_failure=(assets_on_failure, "bool")
        )
        self.asset_alias = asset_alias
        check_asset_namespace(self.task_id, asset_namespace)
        self.asset_namespace = asset_namespace
        self.assets_on_failure = assets_on_failure
        self.hook_params = check_hook_params(self.task_id, hook_params)
        self.run_id = run_id
        self.dbt_cloud_conn_id = dbt_cloud_conn_id
        self.account_id = account_id
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.run_url: str | None = None

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        try:
            if self.poke(context):  # already finished: no need to defer
                return None
        except (AirflowFailException, self.failure_exception) as error:
            if self.soft_fail:  # BaseSensorOperator applies soft_fail only to its own poke loop
                raise AirflowSkipException(f"Skipping due to soft_fail: {error}") from error
            raise
        timeout = seconds(self.timeout)
        self.defer_wait(int(self.run_id), poll_interval=float(self.poke_interval), timeout=timeout or None)

    def poke(self, context: Context) -> bool:
        try:
            with self.hook.get_conn() as client:
                run = client.get_run(self.run_id, include_related=("run_steps",))
                if self.run_url is None:  # the first poke of this process: publish the link
                    self.run_url = run_url(run, client.credentials.base_url)
                    context["ti"].xcom_push(key="run_url", value=self.run_url)
        except DbtCloudError as error:
            if error.transient:
                self.log.warning("Could not read run %s (%s); will look again.", self.run_id, error)
                return False
            raise
        self.log.info("%s", progress_line(run))
        event = RunEvent.for_run(run, self.run_url)
        if event is None:
            return False
        self.finish_wait(event)
        return True

    def on_wait_timeout(self, event: RunEvent) -> Any:
        """A sensor watches: at its timeout it fails as a sensor does, and never cancels the run."""
        raise AirflowSensorTimeout(event.message)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> int | None:
        """Resume after the trigger's event (see :meth:`RunWaitMixin.finish_wait`)."""
        super().execute_complete(context, event)
        return None


class DbtCloudJobRunSensor(DbtCloudRunSensor):
    """The official provider's ``DbtCloudJobRunSensor``: its parameters, defaults and template fields, on
    :class:`DbtCloudRunSensor`. Deferred, it waits through this package's coalesced poller on the triggerer;
    its defaults are then ``poke_interval=5`` and ``timeout`` 7 days, as in the official. A run that fails or
    is cancelled raises ``DbtCloudJobRunException``, with the failed step and its log in the message. Deferred,
    it returns the run id.
    """

    template_fields: Sequence[str] = ("dbt_cloud_conn_id", "run_id", "account_id")
    failure_exception = DbtCloudJobRunException

    def __init__(
        self,
        *,
        dbt_cloud_conn_id: str = DEFAULT_CONN_ID,
        run_id: int,
        account_id: int | None = None,
        deferrable: bool = OFFICIAL_DEFERRABLE,
        hook_params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if deferrable and "poke_interval" not in kwargs:  # the official's defaults, nested as there
            kwargs["poke_interval"] = 5
            kwargs.setdefault("timeout", 60 * 60 * 24 * 7)
        kwargs.setdefault("poke_interval", 60)  # BaseSensorOperator's, where DbtCloudRunSensor has 10
        super().__init__(
            run_id=run_id,
            dbt_cloud_conn_id=dbt_cloud_conn_id,
            account_id=account_id,
            deferrable=deferrable,
            hook_params=hook_params,
            **kwargs,
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> int | None:
        """Resume after the trigger's event; returns the run id, as the official does."""
        return int(RunWaitMixin.execute_complete(self, context, event))
