"""``RunDbtCloudJobOperator``: trigger a dbt Cloud job run, then optionally wait for it, blocking or deferred.

Exactly once (:func:`.api.idempotency.trigger_once`): every run carries a marker of its task instance in
``cause``, an HMAC under this deployment's key (:mod:`.markers`). A retry, or a try after an ambiguous trigger
failure, first looks for the run with its own marker and attaches to it (in progress), accepts it (succeeded),
or starts a new run (failed or cancelled; a rerun from the point of failure with ``retry_from_failure=True``).
It never attaches to a run that something else started, nor to a marked run whose job or overrides differ
from what this try would send.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, NoReturn

from ._compat import AirflowException, AirflowFailException, AirflowSkipException, BaseOperator, Context
from ._official_names import DbtCloudJobRunException, DbtCloudJobRunStatus, DbtCloudResourceLookupError
from ._tasks import (
    OFFICIAL_DEFERRABLE,
    OFFICIAL_OPENLINEAGE_INJECT,
    Alias,
    RunWaitMixin,
    as_data,
    as_steps,
    at_parse,
    check_args,
    check_asset_namespace,
    check_hook_params,
    default_deferrable,
    new_hook,
    seconds,
    with_asset_alias,
)
from .api.credentials import validate_id
from .api.errors import DbtCloudError
from .api.events import RunEvent
from .api.reporting import progress_line, run_url
from .links import DbtCloudRunJobOperatorLink, DbtCloudRunLink
from .provider_info import DEFAULT_CONN_ID

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
    *("steps_override", *_TEXT_OVERRIDES, *_INT_OVERRIDES, "generate_docs_override", "data", "select_from_load"),
)
#: What ``select_fallback`` takes: run the whole job, or fail, when the job's manifest cannot be read.
SELECT_FALLBACKS = ("full_run", "fail")
#: What the task log says when a try did not simply trigger a new run.
_HOW = {
    "attached": "attaching to run %s that an earlier try started (%s); not triggering again.",
    "accepted": "run %s that an earlier try started already succeeded (%s); not triggering again.",
    "rerun": "rerunning the failed run from its point of failure: run %s (%s).",
    "recovered": "the trigger request failed but created run %s (%s); using it.",
    "reused": "reusing run %s of the job, which is still going (%s); not triggering (reuse_existing_run).",
}

#: The type kind of each parameter, checked when the DAG is parsed (see ``_tasks.check_args``).
_ARG_KINDS = {
    "job_id": "id",
    "project_name": "text",
    "environment_name": "text",
    "job_name": "text",
    "account_id": "id",
    "cause": "text",
    "schema_override": "text",
    "wait_for_termination": "bool",
    "deferrable": "bool",
    "poll_interval": "seconds",
    "timeout": "seconds",
    "cancel_on_timeout": "bool",
    "cancel_on_kill": "bool",
    "retry_from_failure": "bool",
    "reuse_existing_run": "bool",
    "asset_namespace": "text",
    "assets_on_failure": "bool",
    "openlineage_inject_parent_job_info": "bool",
    "select_fallback": "text",
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


def wait_timeout(
    timeout: float | None, execution_timeout: float | None, started: datetime | None
) -> tuple[float | None, bool]:
    """The smaller of ``timeout`` and what is left of ``execution_timeout``, so that ours fires first and
    cancels the run (Airflow's own execution timeout would leave it running); and whether that limit is
    the execution timeout's (which always cancels the run)."""
    if execution_timeout is None:
        return timeout, False
    elapsed = (datetime.now(timezone.utc) - started).total_seconds() if started else 0.0
    left = max(1.0, execution_timeout - elapsed - EXECUTION_TIMEOUT_MARGIN)
    return (timeout, False) if timeout is not None and timeout < left else (left, True)


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
    :param cancel_on_kill: cancel the run when the task stops waiting for it: killed, marked failed or success,
        cleared, timed out, a zombie, its DAG run failed or deleted, also while no triggerer runs its trigger
        (the triggerer's reconciler, :mod:`airflow_dbt_cloud_dlt.orphans`). False leaves the run going.
    :param retry_from_failure: on an Airflow retry after this task's run failed, rerun it from the point of
        failure instead of starting it from scratch.
    :param reuse_existing_run: when the job has a run in progress, wait for that run instead of triggering.
    :param hook_params: ``DbtCloudHook`` settings for this task's calls (``timeout_seconds``, ``retry_*``).
    :param asset_alias: the name of an ``AssetAlias`` (``DatasetAlias`` on Airflow 2.11) that is added to the
        task's ``outlets``. When the run succeeds, the task reads its ``run_results.json`` and ``manifest.json``
        and emits one asset event per model, seed and snapshot it built, through that alias: DAGs scheduled on
        a model's Asset start when a run rebuilt it, and the DAG need not list the models. Needs
        ``wait_for_termination`` and the ``assets`` extra (ijson). See :mod:`airflow_dbt_cloud_dlt.dbt_assets`.
    :param asset_namespace: the warehouse namespace of those Assets, such as ``snowflake://org-account``;
        default the connection's ``asset_namespace`` extra (see :mod:`airflow_dbt_cloud_dlt.assets`).
    :param assets_on_failure: when the run fails, leave the events of the nodes that succeeded in XCom
        ``dbt_asset_events`` (default True). The task still fails, and Airflow records outlet events only of
        tasks that succeed: a follow-up task announces them with ``dbt_assets.emit_recorded_events``.
    :param openlineage_inject_parent_job_info: make the run's ``cause`` the task's OpenLineage parent (and root)
        run as JSON, so that a lineage consumer reading dbt Cloud runs links the run back to this task (needs the
        ``openlineage`` extra; see :func:`airflow_dbt_cloud_dlt.lineage.parent_job_cause`).

    With the ``openlineage`` extra installed, OpenLineage's listener reads the finished run's artifacts through
    :meth:`get_openlineage_facets_on_complete`: one event per dbt node, and the task's inputs and outputs
    (:mod:`airflow_dbt_cloud_dlt.lineage`).
    :param select_from_load: run only what a dlt load changed: the tables it wrote (Asset URIs, ``LoadedTable``s,
        dicts with a ``uri``, or a dlt ``LoadInfo``; a list, or an XCom of one; templated). The job's latest
        ``manifest.json`` names the dbt sources that are those tables, and each selecting dbt step of the job
        (or of ``steps_override``) runs with ``--select source:<source>.<table>+``, intersected with its own
        ``--select``. When nothing in the project reads the tables the task is skipped. See
        :mod:`airflow_dbt_cloud_dlt.selection`. Needs the ``assets`` extra (ijson).
    :param select_fallback: when ``select_from_load`` cannot read the job's manifest (none yet, malformed, too
        new): ``"full_run"`` (default) runs the whole job and says so in the log, ``"fail"`` fails the task.

    Pushes XCom ``run_id`` and ``run_url`` right after the trigger and returns the run id. An
    ``execution_timeout`` always cancels the run (the wait ends 5 s before it, to have time to).
    """

    template_fields: Sequence[str] = TEMPLATE_FIELDS
    template_fields_renderers = {"data": "json", "steps_override": "json"}
    #: The name under which this class takes ``data`` (in error messages).
    data_param = "data"
    operator_extra_links = (DbtCloudRunLink(),)
    ui_color = "#ff694a"
    #: The XCom keys of the run id and the run URL.
    xcom_keys = ("run_id", "run_url")

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
        cancel_on_kill: bool = True,
        retry_from_failure: bool = False,
        reuse_existing_run: bool = False,
        hook_params: dict[str, Any] | None = None,
        asset_alias: str | None = None,
        asset_namespace: str | None = None,
        assets_on_failure: bool = True,
        openlineage_inject_parent_job_info: bool = False,
        select_from_load: Any = None,
        select_fallback: str = "full_run",
        **kwargs: Any,
    ) -> None:
        super().__init__(**with_asset_alias(kwargs, asset_alias))
        if job_id is None and not (project_name and environment_name and job_name):
            raise ValueError(f"{self.task_id}: give job_id, or all of project_name, environment_name and job_name.")
        given = locals()
        check_args(self.task_id, **{name: (given[name], kind) for name, kind in _ARG_KINDS.items()})
        self.hook_params = check_hook_params(self.task_id, hook_params)
        self.dbt_cloud_conn_id = dbt_cloud_conn_id
        self.job_id = job_id
        self.project_name = project_name
        self.environment_name = environment_name
        self.job_name = job_name
        self.account_id = account_id
        self.cause = cause
        self.steps_override = at_parse(self.task_id, "steps_override", steps_override, as_steps)
        self.schema_override = schema_override
        self.git_sha = git_sha
        self.git_branch = git_branch
        self.threads_override = threads_override
        self.target_name_override = target_name_override
        self.dbt_version_override = dbt_version_override
        self.generate_docs_override = generate_docs_override
        self.timeout_seconds_override = timeout_seconds_override
        self.data = at_parse(self.task_id, self.data_param, data, as_data)
        self.wait_for_termination = wait_for_termination
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.poll_interval = poll_interval
        self.timeout = seconds(timeout)
        self.cancel_on_timeout = cancel_on_timeout
        self.cancel_on_kill = cancel_on_kill
        self.retry_from_failure = retry_from_failure
        self.reuse_existing_run = reuse_existing_run
        self.asset_alias = asset_alias
        check_asset_namespace(self.task_id, asset_namespace)
        self.asset_namespace = asset_namespace
        self.assets_on_failure = assets_on_failure
        self.openlineage_inject_parent_job_info = openlineage_inject_parent_job_info
        self.select_from_load = select_from_load
        if select_fallback not in SELECT_FALLBACKS:
            raise ValueError(
                f"{self.task_id}: select_fallback must be one of {SELECT_FALLBACKS}; got {select_fallback!r}."
            )
        self.select_fallback = select_fallback
        if asset_alias and not wait_for_termination:
            raise ValueError(f"{self.task_id}: asset_alias needs wait_for_termination=True (events follow the run).")
        self.run_id: int | None = None
        self.selected_steps: list[str] | None = None

    # --- helpers ----------------------------------------------------------------------------------

    def _wait_timeout(self, context: Context) -> tuple[float | None, bool]:
        started = getattr(context["ti"], "start_date", None)
        return wait_timeout(self.timeout, seconds(self.execution_timeout), started)

    def default_cause(self, ti: Any) -> str:
        """The run's readable cause when none is given."""
        return f"Triggered by Airflow: {ti.dag_id}.{ti.task_id}, run {ti.run_id}"

    # --- execution --------------------------------------------------------------------------------

    def execute(self, context: Context) -> int:
        with self.hook.get_conn() as client:
            job_id = resolve_job_id(self, client)
            if self.select_from_load is not None:
                self._select_from_load(client, job_id)
            run = self._attach_or_trigger(client, context, job_id)
            self.run_id = int(run["id"])
            self.run_url = run_url(run, client.credentials.base_url)
            context["ti"].xcom_push(key=self.xcom_keys[1], value=self.run_url)
            context["ti"].xcom_push(key=self.xcom_keys[0], value=self.run_id)
            self.log.info("dbt Cloud run %s of job %s: %s", self.run_id, job_id, self.run_url)
            if not self.wait_for_termination:
                return self.run_id
            event = RunEvent.for_run(run, self.run_url)
            timeout, by_execution_timeout = self._wait_timeout(context)
            self.cancel_on_timeout = self.cancel_on_timeout or by_execution_timeout
            if event is None and self.deferrable:
                resume = {"cancel_on_timeout": self.cancel_on_timeout}
                self.defer_wait(self.run_id, poll_interval=self.poll_interval, timeout=timeout, resume=resume)
            event = event or self._wait_blocking(client, timeout)
        return self.finish_wait(event)

    def execute_complete(
        self, context: Context, event: dict[str, Any] | None = None, cancel_on_timeout: bool | None = None
    ) -> Any:
        """Resume after the trigger's event; ``cancel_on_timeout`` is what the deferring try decided. Without
        it (``dag.test()`` replaces the resume arguments with the event), the execution timeout is taken to be
        the binding limit when it ends before ``timeout`` does."""
        if cancel_on_timeout is None:
            cancel_on_timeout = (
                self.cancel_on_timeout or wait_timeout(self.timeout, seconds(self.execution_timeout), None)[1]
            )
        self.cancel_on_timeout = cancel_on_timeout
        return super().execute_complete(context, event)

    def _select_from_load(self, client: DbtCloudClient, job_id: int) -> None:
        """Narrow the run to what the load changed (``select_from_load``): set the steps to send, skip the task,
        or leave the job whole (``select_fallback``). See :mod:`.selection`."""
        from .api.errors import DbtCloudConfigError
        from .selection import InvalidSelectError, changed_tables, plan_selection  # not at DAG parse

        try:
            tables = changed_tables(self.select_from_load)
            steps = trigger_steps(self)
            namespace = self.asset_namespace or self.hook.asset_namespace
            plan = plan_selection(client, job_id, tables, steps=steps, namespace=namespace)
        except (InvalidSelectError, DbtCloudConfigError, ValueError) as error:
            raise AirflowFailException(f"{self.task_id}: select_from_load: {error}") from None
        for note in plan.notes:
            self.log.info("select_from_load: %s.", note)
        if plan.skip:
            self.log.info("select_from_load: skipping dbt Cloud job %s: %s.", job_id, plan.reason)
            raise AirflowSkipException(f"Nothing to run in dbt Cloud job {job_id}: {plan.reason}.")
        if plan.fallback:
            if self.select_fallback == "fail":
                raise AirflowException(f"{self.task_id}: select_from_load: {plan.reason} (select_fallback='fail').")
            self.log.warning("select_from_load: running the whole dbt Cloud job %s: %s.", job_id, plan.reason)
            return
        self.log.info(
            "select_from_load: %s. Running only %s; steps: %s", plan.reason, " ".join(plan.selectors), plan.steps
        )
        self.selected_steps = plan.steps

    def _attach_or_trigger(self, client: DbtCloudClient, context: Context, job_id: int) -> dict[str, Any]:
        """The run of this try: see :func:`.api.idempotency.trigger_once`."""
        from .api.idempotency import cause_with_marker, trigger_once  # tenacity: not at DAG parse
        from .markers import marker_of, waited_suffix

        ti = context["ti"]
        series, try_number = first_try(ti, self.retries), int(getattr(ti, "try_number", 1) or 1)
        marker = marker_of(ti)
        body = trigger_body(self, ti)
        # A run the task waits for, and that it may cancel, says so verifiably: the orphaned-run reconciler
        # (``orphans``) cancels only such runs, once their task no longer waits.
        waited = f" {waited_suffix(marker, job_id)}" if self.wait_for_termination and self.cancel_on_kill else ""
        linked = self._parent_job_cause(ti, marker + waited) if self.openlineage_inject_parent_job_info else None
        body["cause"] = linked or cause_with_marker(body["cause"], marker + waited)
        run, how = trigger_once(
            client,
            job_id,
            body,
            marker=marker,
            is_retry=try_number > series,
            retry_from_failure=self.retry_from_failure,
            reuse_active=self.reuse_existing_run,
        )
        if how != "triggered":
            self.log.info(f"Try %d: {_HOW[how]}", try_number, run["id"], run.get("status_humanized"))
        return run

    def _parent_job_cause(self, ti: Any, marker: str) -> str | None:
        """The cause that links the run to this task's OpenLineage run (``openlineage_inject_parent_job_info``)."""
        from .lineage import parent_job_cause

        linked = parent_job_cause(ti, marker)
        if linked:
            self.log.info("The run's cause is this task's OpenLineage parent job information: %s", linked)
        return linked

    def _wait_blocking(self, client: DbtCloudClient, timeout: float | None) -> RunEvent:
        from .api.waiting import wait_for_event  # it needs the retry policy (tenacity): not at DAG parse

        assert self.run_id is not None
        return wait_for_event(
            client,
            self.run_id,
            poll_interval=self.poll_interval,
            timeout=timeout,
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
        if not self.cancel_on_kill:
            self.log.info("Task killed; dbt Cloud run %s is left to run (cancel_on_kill=False).", self.run_id)
            return
        try:
            with self.hook.get_conn() as client:
                client.cancel_run(self.run_id)
                wait_for_run(client, self.run_id, poll_interval=2.0, timeout=CANCEL_CONFIRM_SECONDS)
            self.log.info("Cancelled dbt Cloud run %s.", self.run_id)
        except DbtCloudError as error:
            self.log.warning("Could not confirm the cancel of dbt Cloud run %s: %s", self.run_id, error)


def trigger_steps(op: RunDbtCloudJobOperator) -> list[str] | None:
    """The steps the trigger would override the job's with (``data``'s ``steps_override``, which is merged last,
    else ``steps_override``); None: the job's own."""
    from .api.errors import DbtCloudConfigError

    try:
        data = as_data(op.data, op.data_param) or {}
        return as_steps(data["steps_override"]) if data.get("steps_override") else as_steps(op.steps_override)
    except ValueError as error:
        raise DbtCloudConfigError(f"{op.task_id}: {error}") from None


def trigger_body(op: RunDbtCloudJobOperator, ti: Any) -> dict[str, Any]:
    """The trigger request's fields: the overrides as dbt Cloud types them, ``data`` merged last."""
    from .api.errors import DbtCloudConfigError

    try:  # the rendered values: a template renders to a string, checked and converted before any call
        steps, data = as_steps(op.steps_override), as_data(op.data, op.data_param) or {}
    except ValueError as error:
        raise DbtCloudConfigError(f"{op.task_id}: {error}") from None
    readable = data.pop("cause", None) or op.cause or op.default_cause(ti)
    body: dict[str, Any] = {name: getattr(op, name) for name in _TEXT_OVERRIDES}
    body.update({name: _as_int(getattr(op, name)) for name in _INT_OVERRIDES})
    body["generate_docs_override"] = _as_bool(op.generate_docs_override)
    body["steps_override"] = steps
    body.update(data)
    if getattr(op, "selected_steps", None) is not None:  # select_from_load's steps replace those it narrowed
        body["steps_override"] = op.selected_steps
    body["cause"] = str(readable)
    return {key: value for key, value in body.items() if value is not None}


# --- the official provider's names (apache-airflow-providers-dbt-cloud 4.11.1), one implementation ------


def resolve_job_id(task: RunDbtCloudJobOperator, client: DbtCloudClient) -> int:
    """The task's ``job_id``, or the id of the job named by its project, environment and job names."""
    if task.job_id not in (None, ""):
        return validate_id(task.job_id, "job_id")
    from .api.official import DbtCloudLookupError, find_job  # requests: not at DAG parse

    try:
        job = find_job(client, str(task.project_name), str(task.environment_name), str(task.job_name))
    except DbtCloudLookupError as error:  # the official's exception type; the message names the candidates
        raise DbtCloudResourceLookupError(str(error)) from None
    task.log.info("Job %r in %s/%s is job %s.", task.job_name, task.project_name, task.environment_name, job["id"])
    return int(job["id"])


class DbtCloudRunJobOperator(RunDbtCloudJobOperator):
    """The official provider's ``DbtCloudRunJobOperator``: its parameters, defaults, template fields, XCom keys
    (``job_run_url``, ``job_run_id``) and extra link ("Monitor Job Run"), on :class:`RunDbtCloudJobOperator`.

    ``trigger_reason``, ``additional_run_config`` and ``check_interval`` are this package's ``cause``, ``data``
    and ``poll_interval``. ``timeout`` ends the wait without cancelling the run; ``execution_timeout`` cancels
    it. Returns the run id. ``openlineage_inject_parent_job_info`` replaces the cause with the OpenLineage
    parent job JSON, as the official does. docs/migrating-from-the-official-provider.md lists the differences.
    This package's ``select_from_load`` (templated here too) and ``select_fallback`` are accepted as keywords.
    """

    template_fields: Sequence[str] = (
        *("dbt_cloud_conn_id", "job_id", "project_name", "environment_name", "job_name", "account_id"),
        *("trigger_reason", "steps_override", "schema_override", "additional_run_config", "select_from_load"),
    )
    template_fields_renderers = {"additional_run_config": "json", "steps_override": "json"}
    operator_extra_links = (DbtCloudRunJobOperatorLink(),)
    xcom_keys = ("job_run_id", "job_run_url")
    data_param = "additional_run_config"
    failure_exception = DbtCloudJobRunException
    trigger_reason = Alias("cause")
    additional_run_config = Alias("data")
    check_interval = Alias("poll_interval")

    def __init__(
        self,
        *,
        dbt_cloud_conn_id: str = DEFAULT_CONN_ID,
        job_id: int | None = None,
        project_name: str | None = None,
        environment_name: str | None = None,
        job_name: str | None = None,
        account_id: int | None = None,
        trigger_reason: str | None = None,
        steps_override: list[str] | None = None,
        schema_override: str | None = None,
        wait_for_termination: bool = True,
        timeout: int = 60 * 60 * 24 * 7,
        check_interval: int = 60,
        additional_run_config: dict[str, Any] | None = None,
        reuse_existing_run: bool = False,
        retry_from_failure: bool = False,
        deferrable: bool = OFFICIAL_DEFERRABLE,
        hook_params: dict[str, Any] | None = None,
        openlineage_inject_parent_job_info: bool = OFFICIAL_OPENLINEAGE_INJECT,
        **kwargs: Any,
    ) -> None:
        for ours in ("cause", "data", "poll_interval", "cancel_on_timeout"):
            if ours in kwargs:
                raise TypeError(f"DbtCloudRunJobOperator takes no {ours!r}: use RunDbtCloudJobOperator for it.")
        check_args(  # under the official names, before they become this package's
            str(kwargs.get("task_id")),
            trigger_reason=(trigger_reason, "text"),
            check_interval=(check_interval, "seconds"),
            openlineage_inject_parent_job_info=(openlineage_inject_parent_job_info, "bool"),
        )
        super().__init__(
            dbt_cloud_conn_id=dbt_cloud_conn_id,
            job_id=job_id,
            project_name=project_name,
            environment_name=environment_name,
            job_name=job_name,
            account_id=account_id,
            cause=trigger_reason,
            steps_override=steps_override,
            schema_override=schema_override,
            data=additional_run_config,
            wait_for_termination=wait_for_termination,
            deferrable=deferrable,
            poll_interval=check_interval,
            timeout=timeout,
            cancel_on_timeout=False,  # the official's timeout only ends the wait
            retry_from_failure=retry_from_failure,
            reuse_existing_run=reuse_existing_run,
            hook_params=hook_params,
            openlineage_inject_parent_job_info=openlineage_inject_parent_job_info,
            **kwargs,
        )

    def default_cause(self, ti: Any) -> str:
        return f"Triggered via Apache Airflow by task {self.task_id!r} in the {ti.dag_id} DAG."


class DbtCloudGetJobRunArtifactOperator(BaseOperator):
    """Download one artifact of a dbt Cloud run (``manifest.json``, ``run_results.json``, ...) to a file.

    The file is streamed to disk in chunks, never held in memory whole, and appears under its name only once
    complete. ``output_file_name`` defaults to ``<run_id>_<path>`` ("/" becomes "-"). Returns the file's name.
    """

    template_fields: Sequence[str] = ("dbt_cloud_conn_id", "run_id", "path", "account_id", "output_file_name")

    def __init__(
        self,
        *,
        dbt_cloud_conn_id: str = DEFAULT_CONN_ID,
        run_id: int,
        path: str,
        account_id: int | None = None,
        step: int | None = None,
        output_file_name: str | None = None,
        hook_params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_args(self.task_id, run_id=(run_id, "id"), path=(path, "text"), account_id=(account_id, "id"))
        check_args(self.task_id, step=(step, "id"), output_file_name=(output_file_name, "text"))
        self.dbt_cloud_conn_id = dbt_cloud_conn_id
        self.run_id = run_id
        self.path = path
        self.account_id = account_id
        self.step = step
        self.output_file_name = output_file_name
        self.hook_params = check_hook_params(self.task_id, hook_params)

    def execute(self, context: Context) -> str:
        if not self.output_file_name:  # after rendering: the default uses the rendered run id and path
            self.output_file_name = f"{self.run_id}_{self.path}".replace("/", "-")
        hook = new_hook(self.dbt_cloud_conn_id, self.hook_params)
        self.log.info("Writing %s artifact for job run %s to %s.", self.path, self.run_id, self.output_file_name)
        size = hook.download_job_run_artifact(
            self.run_id, self.path, self.output_file_name, account_id=self.account_id, step=self.step
        )
        self.log.info("Wrote %d bytes to %s.", size, self.output_file_name)
        return self.output_file_name


class DbtCloudListJobsOperator(BaseOperator):
    """The ids of the account's jobs (of ``project_id`` only, if given), across every page of the list."""

    template_fields: Sequence[str] = ("account_id", "project_id", "dbt_cloud_conn_id")

    def __init__(
        self,
        *,
        dbt_cloud_conn_id: str = DEFAULT_CONN_ID,
        account_id: int | None = None,
        project_id: int | None = None,
        order_by: str | None = None,
        hook_params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_args(self.task_id, account_id=(account_id, "id"), project_id=(project_id, "id"))
        check_args(self.task_id, order_by=(order_by, "text"))
        self.dbt_cloud_conn_id = dbt_cloud_conn_id
        self.account_id = account_id
        self.project_id = project_id
        self.order_by = order_by
        self.hook_params = check_hook_params(self.task_id, hook_params)

    def execute(self, context: Context) -> list[int]:
        hook = new_hook(self.dbt_cloud_conn_id, self.hook_params)
        pages = hook.list_jobs(account_id=self.account_id, order_by=self.order_by, project_id=self.project_id)
        job_ids = [int(job["id"]) for page in pages for job in page.json()["data"]]
        self.log.info("Jobs in the specified dbt Cloud account are: %s", ", ".join(map(str, job_ids)))
        return job_ids


class DbtCloudListJobRunsOperator(BaseOperator):
    """The account's runs (of ``job_id`` only, if given), as dicts across every page; with ``latest_only`` the
    newest one (or None). ``status_filter`` keeps runs with that status code, or one of those codes."""

    template_fields: Sequence[str] = ("account_id", "job_id", "order_by", "include_related", "dbt_cloud_conn_id")

    def __init__(
        self,
        *,
        dbt_cloud_conn_id: str = DEFAULT_CONN_ID,
        account_id: int | None = None,
        job_id: int | None = None,
        order_by: str | None = None,
        include_related: list[str] | None = None,
        hook_params: dict[str, Any] | None = None,
        latest_only: bool = False,
        status_filter: int | list[int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_args(self.task_id, account_id=(account_id, "id"), job_id=(job_id, "id"), order_by=(order_by, "text"))
        check_args(self.task_id, include_related=(include_related, "list"), latest_only=(latest_only, "bool"))
        self.dbt_cloud_conn_id = dbt_cloud_conn_id
        self.account_id = account_id
        self.job_id = job_id
        self.order_by = order_by
        self.include_related = include_related
        self.hook_params = check_hook_params(self.task_id, hook_params)
        self.latest_only = latest_only
        self.status_filter = status_codes(self.task_id, status_filter)

    def execute(self, context: Context) -> list[dict[str, Any]] | dict[str, Any] | None:
        hook = new_hook(self.dbt_cloud_conn_id, self.hook_params)
        order_by = self.order_by or ("-created_at" if self.latest_only else None)
        pages = hook.list_job_runs(
            account_id=self.account_id,
            include_related=self.include_related,
            job_definition_id=self.job_id,
            order_by=order_by,
        )
        runs = [run for page in pages for run in page.json()["data"]]
        if self.status_filter is not None:
            runs = [run for run in runs if run.get("status") is not None and int(run["status"]) in self.status_filter]
        if not self.latest_only:
            self.log.info("Retrieved %s job runs.", len(runs))
            return runs
        latest = runs[0] if runs else None
        if latest:
            self.log.info("Returning latest job run (id=%s, status=%s)", latest["id"], latest.get("status"))
        else:
            self.log.info("No job runs found for the given filters.")
        return latest


def status_codes(task_id: str, value: Any) -> frozenset[int] | None:
    """``status_filter`` as a set of dbt Cloud status codes; anything else is refused at parse time."""
    if value is None:
        return None
    codes = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    valid = {status.value for status in DbtCloudJobRunStatus if isinstance(status.value, int)}
    if not isinstance(codes, list | tuple | set | frozenset) or not all(code in valid for code in codes):
        raise TypeError(
            f"{task_id}: status_filter must be a status code or a list of them {sorted(valid)}; got {value!r}."
        )
    return frozenset(codes)
