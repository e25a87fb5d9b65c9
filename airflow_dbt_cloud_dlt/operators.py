"""``RunDbtCloudJobOperator``: trigger a dbt Cloud job run, then optionally wait for it, blocking or deferred.

Exactly once: every run carries a marker of its task instance in ``cause``. A retry, or a try after an
ambiguous trigger failure, first looks for the run with its own marker and attaches to it (in progress),
accepts it (succeeded), or starts a new run (failed or cancelled; a rerun from the point of failure with
``retry_from_failure=True``). It never attaches to a run that something else started.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from ._compat import AirflowException, BaseOperator, Context
from .links import DbtCloudRunLink

if TYPE_CHECKING:
    from .api.client import DbtCloudClient
    from .hooks import DbtCloudHook

DEFAULT_POLL_INTERVAL = 10.0
DEFAULT_TIMEOUT = timedelta(days=7)
#: How long ``on_kill`` waits for dbt Cloud to confirm a cancel.
CANCEL_CONFIRM_SECONDS = 60.0
#: Seconds kept free before ``execution_timeout`` to cancel the run and report.
EXECUTION_TIMEOUT_MARGIN = 5.0
#: Trigger POSTs per try when dbt Cloud answers 500/503 and provably started no run.
TRIGGER_ATTEMPTS = 3
FINAL_5XX = (500, 503)
_INT_OVERRIDES = ("threads_override", "timeout_seconds_override")
_TEXT_OVERRIDES = ("schema_override", "git_sha", "git_branch", "target_name_override", "dbt_version_override")


def _default_deferrable() -> bool:
    from airflow.configuration import conf

    return conf.getboolean("operators", "default_deferrable", fallback=False)


def seconds(value: timedelta | float | None) -> float | None:
    return value.total_seconds() if isinstance(value, timedelta) else value


def optional_account_id(value: int | str | None) -> int | None:
    """A templated account id as an int (validated), or None to use the connection's login."""
    from .api.credentials import validate_id

    return None if value in (None, "") else validate_id(value, "account_id")


def _as_int(value: Any) -> Any:
    """Rendered templates are strings: turn digits back into the integer dbt Cloud expects."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return value


def _as_bool(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return value


class RunDbtCloudJobOperator(BaseOperator):
    """Trigger a dbt Cloud job run and, by default, wait for it to finish.

    :param job_id: the job to run; or give ``project_name``, ``environment_name`` and ``job_name``.
    :param cause: why the run was started; default "Triggered by Airflow: <dag>.<task>, run <run_id>".
    :param steps_override: ... ``timeout_seconds_override``: dbt Cloud's trigger overrides.
    :param data: any further trigger fields, merged last.
    :param wait_for_termination: wait for the run to end (else return right after the trigger).
    :param deferrable: wait on the triggerer instead of holding a worker slot.
    :param poll_interval: seconds between status checks.
    :param timeout: the longest wait; then the run is cancelled (``cancel_on_timeout``) and the task fails.
    :param retry_from_failure: on an Airflow retry after this task's run failed, rerun it from the point of
        failure instead of starting it from scratch.

    Pushes XCom ``run_id`` and ``run_url`` right after the trigger and returns the run id.
    """

    template_fields: Sequence[str] = (
        "dbt_cloud_conn_id", "job_id", "project_name", "environment_name", "job_name", "account_id", "cause",
        "steps_override", "schema_override", "git_sha", "git_branch", "threads_override",
        "target_name_override", "dbt_version_override", "generate_docs_override", "timeout_seconds_override",
        "data",
    )  # fmt: skip
    template_fields_renderers = {"data": "json", "steps_override": "json"}
    operator_extra_links = (DbtCloudRunLink(),)
    ui_color = "#ff694a"

    def __init__(
        self,
        *,
        dbt_cloud_conn_id: str = "dbt_cloud_default",
        job_id: int | str | None = None,
        project_name: str | None = None,
        environment_name: str | None = None,
        job_name: str | None = None,
        account_id: int | str | None = None,
        cause: str | None = None,
        steps_override: list[str] | None = None,
        schema_override: str | None = None,
        git_sha: str | None = None,
        git_branch: str | None = None,
        threads_override: int | None = None,
        target_name_override: str | None = None,
        dbt_version_override: str | None = None,
        generate_docs_override: bool | None = None,
        timeout_seconds_override: int | None = None,
        data: dict[str, Any] | None = None,
        wait_for_termination: bool = True,
        deferrable: bool | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        timeout: timedelta | float | None = DEFAULT_TIMEOUT,
        cancel_on_timeout: bool = True,
        retry_from_failure: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if job_id is None and not (project_name and environment_name and job_name):
            raise ValueError(f"{self.task_id}: give job_id, or all of project_name, environment_name and job_name.")
        self.dbt_cloud_conn_id = dbt_cloud_conn_id
        self.job_id = job_id
        self.project_name = project_name
        self.environment_name = environment_name
        self.job_name = job_name
        self.account_id = account_id
        self.cause = cause
        self.steps_override = steps_override
        self.schema_override = schema_override
        self.git_sha = git_sha
        self.git_branch = git_branch
        self.threads_override = threads_override
        self.target_name_override = target_name_override
        self.dbt_version_override = dbt_version_override
        self.generate_docs_override = generate_docs_override
        self.timeout_seconds_override = timeout_seconds_override
        self.data = data
        self.wait_for_termination = wait_for_termination
        self.deferrable = _default_deferrable() if deferrable is None else deferrable
        self.poll_interval = poll_interval
        self.timeout = seconds(timeout)
        self.cancel_on_timeout = cancel_on_timeout
        self.retry_from_failure = retry_from_failure
        self.run_id: int | None = None

    # --- helpers ----------------------------------------------------------------------------------

    @property
    def hook(self) -> DbtCloudHook:
        from .hooks import DbtCloudHook

        return DbtCloudHook(self.dbt_cloud_conn_id, account_id=self.account_id)

    def _resolve_job_id(self, client: DbtCloudClient) -> int:
        from .api.credentials import validate_id

        if self.job_id not in (None, ""):
            return validate_id(self.job_id, "job_id")
        job = client.find_job(str(self.project_name), str(self.environment_name), str(self.job_name))
        self.log.info("Job %r in %s/%s is job %s.", self.job_name, self.project_name, self.environment_name, job["id"])
        return int(job["id"])

    def _first_try(self, context: Context) -> int:
        """The first try of the current series: a clear starts a new series (and must start a new run),
        retries continue it (and must find the series' run). Airflow derives it the same way."""
        max_tries = getattr(context["ti"], "max_tries", None)
        return 1 if max_tries is None else int(max_tries) - int(self.retries or 0) + 1

    def _marker(self, context: Context) -> str:
        from .api.idempotency import task_marker

        ti = context["ti"]
        return task_marker(ti.dag_id, ti.task_id, ti.run_id, getattr(ti, "map_index", -1), self._first_try(context))

    def _trigger_body(self, context: Context, marker: str) -> dict[str, Any]:
        from .api.idempotency import cause_with_marker

        ti = context["ti"]
        data = dict(self.data or {})
        readable = (
            data.pop("cause", None) or self.cause or f"Triggered by Airflow: {ti.dag_id}.{ti.task_id}, run {ti.run_id}"
        )
        body: dict[str, Any] = {name: getattr(self, name) for name in _TEXT_OVERRIDES}
        body.update({name: _as_int(getattr(self, name)) for name in _INT_OVERRIDES})
        body["generate_docs_override"] = _as_bool(self.generate_docs_override)
        body["steps_override"] = list(self.steps_override) if self.steps_override else None
        body.update(data)
        body["cause"] = cause_with_marker(str(readable), marker)
        return {key: value for key, value in body.items() if value is not None}

    def _wait_timeout(self, context: Context) -> float | None:
        """The smaller of ``timeout`` and what is left of ``execution_timeout``, so that ours fires first and
        cancels the run (Airflow's own execution timeout would leave it running)."""
        limits = [self.timeout] if self.timeout is not None else []
        execution_timeout = seconds(self.execution_timeout)
        started = getattr(context["ti"], "start_date", None)
        if execution_timeout is not None:
            elapsed = (datetime.now(timezone.utc) - started).total_seconds() if started else 0.0
            limits.append(max(1.0, execution_timeout - elapsed - EXECUTION_TIMEOUT_MARGIN))
        return min(limits) if limits else None

    # --- execution --------------------------------------------------------------------------------

    def execute(self, context: Context) -> int:
        from .api.reporting import run_url

        with self.hook.get_conn() as client:
            job_id = self._resolve_job_id(client)
            run = self._attach_or_trigger(client, context, job_id)
            self.run_id = int(run["id"])
            url = run_url(run, client.credentials.base_url)
            context["ti"].xcom_push(key="run_id", value=self.run_id)
            context["ti"].xcom_push(key="run_url", value=url)
            self.log.info("dbt Cloud run %s of job %s: %s", self.run_id, job_id, url)
            if not self.wait_for_termination:
                return self.run_id
            if run.get("is_complete") and run.get("is_success"):
                return self.run_id
            if self.deferrable:
                self._defer(context)
            return self._wait_blocking(client, context)

    def _attach_or_trigger(self, client: DbtCloudClient, context: Context, job_id: int) -> dict[str, Any]:
        from .api.errors import DbtCloudConnectionError, DbtCloudError, DbtCloudServerError
        from .api.idempotency import find_marked_run
        from .api.models import RunStatus, run_status

        marker = self._marker(context)
        try_number = int(getattr(context["ti"], "try_number", 1) or 1)
        if try_number > self._first_try(context):
            earlier = find_marked_run(client, job_id, marker)
            if earlier is not None:
                status = run_status(earlier)
                if not status.is_terminal or status is RunStatus.SUCCESS:
                    self.log.info(
                        "Try %d: attaching to run %s that an earlier try started (%s); not triggering again.",
                        try_number, earlier["id"], earlier.get("status_humanized"),
                    )  # fmt: skip
                    return earlier
                if self.retry_from_failure and status is RunStatus.ERROR:
                    latest = client.list_runs(job_definition_id=job_id, order_by="-id", limit=1)
                    if latest and latest[0]["id"] == earlier["id"]:
                        self.log.info(
                            "Try %d: rerunning failed run %s from its point of failure.", try_number, earlier["id"]
                        )
                        return client.rerun_job(job_id)
                    self.log.info("Run %s is not the job's latest run; starting a new run instead.", earlier["id"])
        body = self._trigger_body(context, marker)
        for attempt in range(1, TRIGGER_ATTEMPTS + 1):
            try:
                return client.trigger_job_run(job_id, body)
            except DbtCloudError as error:
                if not isinstance(error, DbtCloudConnectionError | DbtCloudServerError):
                    raise
                # The request may have reached dbt Cloud: look for it before anything is sent again.
                found = find_marked_run(client, job_id, marker)
                if found is not None:
                    self.log.warning(
                        "The trigger request failed (%s), but it created run %s; using it.", error, found["id"]
                    )
                    return found
                # A 500 or 503 is dbt Cloud's own finished answer, so "no run carries our marker" is final and
                # sending again is safe. After a timeout, a reset or a gateway's 502/504, dbt Cloud may still be
                # working on it: leave that to an Airflow retry, whose search comes later.
                if error.status_code not in FINAL_5XX or attempt == TRIGGER_ATTEMPTS:
                    raise
                self.log.warning("The trigger request failed (%s) and started no run; sending it again.", error)
        raise AssertionError("unreachable")  # pragma: no cover

    def _defer(self, context: Context) -> None:
        from .triggers import DbtCloudRunTrigger

        assert self.run_id is not None
        self.defer(
            trigger=DbtCloudRunTrigger(
                conn_id=self.dbt_cloud_conn_id,
                run_id=self.run_id,
                account_id=optional_account_id(self.account_id),
                poll_interval=self.poll_interval,
                timeout=self._wait_timeout(context),
            ),
            method_name="execute_complete",
        )

    def _wait_blocking(self, client: DbtCloudClient, context: Context) -> int:
        from .api.errors import DbtCloudRunTimeoutError
        from .api.models import RunStatus, run_status
        from .api.reporting import progress_line, progress_state
        from .api.waiting import wait_for_run

        assert self.run_id is not None
        last: dict[str, Any] = {}

        def report(run: dict[str, Any]) -> None:  # one line whenever the status or the running step changes
            state = progress_state(run)
            if last.get("state") != state:
                self.log.info("%s", progress_line(run))
                last["state"] = state

        try:
            run = wait_for_run(
                client, self.run_id, poll_interval=self.poll_interval, timeout=self._wait_timeout(context),
                include_related=("run_steps", "job"), on_poll=report,
            )  # fmt: skip
        except DbtCloudRunTimeoutError as error:
            self._fail_on_timeout(client, str(error))
        if run_status(run) is not RunStatus.SUCCESS:
            self._fail_run(client)
        return self.run_id

    def execute_complete(self, context: Context, event: dict[str, Any]) -> int:
        """Resume after the trigger's event: success returns the run id, anything else fails the task."""
        if not event or "status" not in event:
            raise AirflowException(f"Unexpected trigger event {event!r}; the run's outcome is unknown.")
        self.run_id = int(event["run_id"])
        status = event["status"]
        if status == "success":
            self.log.info("%s", event.get("message"))
            return self.run_id
        if not event.get("observed", True):
            raise AirflowException(event.get("message"))
        with self.hook.get_conn() as client:
            if status == "timeout":
                self._fail_on_timeout(client, str(event.get("message")))
            self._fail_run(client)
        raise AssertionError("unreachable")  # pragma: no cover

    def _fail_run(self, client: DbtCloudClient) -> None:
        from .api.reporting import failure_report

        assert self.run_id is not None
        report = failure_report(client, self.run_id)
        self.log.error("%s", report)
        raise AirflowException(report)

    def _fail_on_timeout(self, client: DbtCloudClient, message: str) -> None:
        from .api.errors import DbtCloudError

        assert self.run_id is not None
        if self.cancel_on_timeout:
            try:
                client.cancel_run(self.run_id)
                message += f" The run was cancelled ({client.credentials.base_url})."
            except DbtCloudError as error:
                message += f" Cancelling it failed: {error}"
        raise AirflowException(message)

    def on_kill(self) -> None:
        """Cancel the run when the worker is told to stop, and wait a bounded time for dbt Cloud to confirm."""
        from .api.errors import DbtCloudError
        from .api.waiting import wait_for_run

        if self.run_id is None:
            return
        try:
            with self.hook.get_conn() as client:
                client.cancel_run(self.run_id)
                wait_for_run(client, self.run_id, poll_interval=2.0, timeout=CANCEL_CONFIRM_SECONDS)
            self.log.info("Cancelled dbt Cloud run %s.", self.run_id)
        except DbtCloudError as error:
            self.log.warning("Could not confirm the cancel of dbt Cloud run %s: %s", self.run_id, error)
