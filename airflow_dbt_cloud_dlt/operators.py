"""``RunDbtCloudJobOperator``: trigger a dbt Cloud job run, then optionally wait for it, blocking or deferred.

Exactly once (:func:`.api.idempotency.trigger_once`): every run carries a marker of its task instance in
``cause``. A retry, or a try after an ambiguous trigger failure, first looks for the run with its own marker
and attaches to it (in progress), accepts it (succeeded), or starts a new run (failed or cancelled; a rerun
from the point of failure with ``retry_from_failure=True``). It never attaches to a run that something else
started.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, NoReturn

from ._compat import BaseOperator, Context
from ._tasks import RunWaitMixin, default_deferrable, seconds
from .api.credentials import validate_id
from .api.errors import DbtCloudError
from .api.events import RunEvent
from .api.reporting import progress_line, run_url
from .links import DbtCloudRunLink

if TYPE_CHECKING:
    from .api.client import DbtCloudClient

DEFAULT_POLL_INTERVAL = 10.0
DEFAULT_TIMEOUT = timedelta(days=7)
#: How long ``on_kill`` waits for dbt Cloud to confirm a cancel.
CANCEL_CONFIRM_SECONDS = 60.0
#: Seconds kept free before ``execution_timeout`` to cancel the run and report.
EXECUTION_TIMEOUT_MARGIN = 5.0
_INT_OVERRIDES = ("threads_override", "timeout_seconds_override")
_TEXT_OVERRIDES = ("schema_override", "git_sha", "git_branch", "target_name_override", "dbt_version_override")
TEMPLATE_FIELDS = (
    *("dbt_cloud_conn_id", "job_id", "project_name", "environment_name", "job_name", "account_id", "cause"),
    *("steps_override", *_TEXT_OVERRIDES, *_INT_OVERRIDES, "generate_docs_override", "data"),
)
#: What the task log says when a try did not simply trigger a new run.
_HOW = {
    "attached": "attaching to run %s that an earlier try started (%s); not triggering again.",
    "accepted": "run %s that an earlier try started already succeeded (%s); not triggering again.",
    "rerun": "rerunning the failed run from its point of failure: run %s (%s).",
    "recovered": "the trigger request failed but created run %s (%s); using it.",
}


def _as_int(value: Any) -> Any:
    """Rendered templates are strings: turn digits back into the integer dbt Cloud expects."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return value


def _as_bool(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return value


def first_try(ti: Any, retries: int | None) -> int:
    """The first try of the current series: a clear starts a new series (and must start a new run), retries
    continue it (and must find the series' run). Airflow derives it the same way."""
    max_tries = getattr(ti, "max_tries", None)
    return 1 if max_tries is None else int(max_tries) - int(retries or 0) + 1


def wait_timeout(timeout: float | None, execution_timeout: float | None, started: datetime | None) -> float | None:
    """The smaller of ``timeout`` and what is left of ``execution_timeout``, so that ours fires first and
    cancels the run (Airflow's own execution timeout would leave it running)."""
    limits = [timeout] if timeout is not None else []
    if execution_timeout is not None:
        elapsed = (datetime.now(timezone.utc) - started).total_seconds() if started else 0.0
        limits.append(max(1.0, execution_timeout - elapsed - EXECUTION_TIMEOUT_MARGIN))
    return min(limits) if limits else None


class RunDbtCloudJobOperator(RunWaitMixin, BaseOperator):
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

    template_fields: Sequence[str] = TEMPLATE_FIELDS
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
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.poll_interval = poll_interval
        self.timeout = seconds(timeout)
        self.cancel_on_timeout = cancel_on_timeout
        self.retry_from_failure = retry_from_failure
        self.run_id: int | None = None
        self.run_url: str | None = None

    # --- helpers ----------------------------------------------------------------------------------

    def _resolve_job_id(self, client: DbtCloudClient) -> int:
        if self.job_id not in (None, ""):
            return validate_id(self.job_id, "job_id")
        job = client.find_job(str(self.project_name), str(self.environment_name), str(self.job_name))
        self.log.info("Job %r in %s/%s is job %s.", self.job_name, self.project_name, self.environment_name, job["id"])
        return int(job["id"])

    def _wait_timeout(self, context: Context) -> float | None:
        started = getattr(context["ti"], "start_date", None)
        return wait_timeout(self.timeout, seconds(self.execution_timeout), started)

    # --- execution --------------------------------------------------------------------------------

    def execute(self, context: Context) -> int:
        with self.hook.get_conn() as client:
            job_id = self._resolve_job_id(client)
            run = self._attach_or_trigger(client, context, job_id)
            self.run_id = int(run["id"])
            self.run_url = run_url(run, client.credentials.base_url)
            context["ti"].xcom_push(key="run_id", value=self.run_id)
            context["ti"].xcom_push(key="run_url", value=self.run_url)
            self.log.info("dbt Cloud run %s of job %s: %s", self.run_id, job_id, self.run_url)
            if not self.wait_for_termination:
                return self.run_id
            event = RunEvent.for_run(run, self.run_url)
            if event is None and self.deferrable:
                self.defer_wait(self.run_id, poll_interval=self.poll_interval, timeout=self._wait_timeout(context))
            event = event or self._wait_blocking(client, context)
        return self.finish_wait(event)

    def _attach_or_trigger(self, client: DbtCloudClient, context: Context, job_id: int) -> dict[str, Any]:
        """The run of this try: see :func:`.api.idempotency.trigger_once`."""
        from .api.idempotency import cause_with_marker, task_marker, trigger_once  # tenacity: not at DAG parse

        ti = context["ti"]
        series, try_number = first_try(ti, self.retries), int(getattr(ti, "try_number", 1) or 1)
        marker = task_marker(ti.dag_id, ti.task_id, ti.run_id, getattr(ti, "map_index", -1), series)
        body = trigger_body(self, ti)
        body["cause"] = cause_with_marker(body["cause"], marker)
        run, how = trigger_once(
            client,
            job_id,
            body,
            marker=marker,
            is_retry=try_number > series,
            retry_from_failure=self.retry_from_failure,
        )
        if how != "triggered":
            self.log.info(f"Try %d: {_HOW[how]}", try_number, run["id"], run.get("status_humanized"))
        return run

    def _wait_blocking(self, client: DbtCloudClient, context: Context) -> RunEvent:
        from .api.waiting import wait_for_event  # it needs the retry policy (tenacity): not at DAG parse

        assert self.run_id is not None
        return wait_for_event(
            client,
            self.run_id,
            poll_interval=self.poll_interval,
            timeout=self._wait_timeout(context),
            run_url=self.run_url,
            on_change=lambda run: self.log.info("%s", progress_line(run)),
        )

    def on_wait_timeout(self, event: RunEvent) -> NoReturn:
        """Cancel the run (``cancel_on_timeout``), then fail."""
        message = event.message
        if self.cancel_on_timeout:
            with self.hook.get_conn() as client:
                try:
                    client.cancel_run(event.run_id)
                    message += f" The run was cancelled ({client.credentials.base_url})."
                except DbtCloudError as error:
                    message += f" Cancelling it failed: {error}"
        raise self.failure_exception(message)

    def on_kill(self) -> None:
        """Cancel the run when the worker is told to stop, and wait a bounded time for dbt Cloud to confirm."""
        from .api.waiting import wait_for_run  # it needs the retry policy (tenacity): not at DAG parse

        if self.run_id is None:
            return
        try:
            with self.hook.get_conn() as client:
                client.cancel_run(self.run_id)
                wait_for_run(client, self.run_id, poll_interval=2.0, timeout=CANCEL_CONFIRM_SECONDS)
            self.log.info("Cancelled dbt Cloud run %s.", self.run_id)
        except DbtCloudError as error:
            self.log.warning("Could not confirm the cancel of dbt Cloud run %s: %s", self.run_id, error)


def trigger_body(op: RunDbtCloudJobOperator, ti: Any) -> dict[str, Any]:
    """The trigger request's fields: the overrides as dbt Cloud types them, ``data`` merged last."""
    data = dict(op.data or {})
    readable = data.pop("cause", None) or op.cause or f"Triggered by Airflow: {ti.dag_id}.{ti.task_id}, run {ti.run_id}"
    body: dict[str, Any] = {name: getattr(op, name) for name in _TEXT_OVERRIDES}
    body.update({name: _as_int(getattr(op, name)) for name in _INT_OVERRIDES})
    body["generate_docs_override"] = _as_bool(op.generate_docs_override)
    body["steps_override"] = list(op.steps_override) if op.steps_override else None
    body.update(data)
    body["cause"] = str(readable)
    return {key: value for key, value in body.items() if value is not None}
