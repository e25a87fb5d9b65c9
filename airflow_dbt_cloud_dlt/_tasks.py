"""What the run-job operator and the run sensor share: settings helpers, deferring to the trigger, and the
one handler that turns a :class:`~.api.events.RunEvent` into the task's success or failure."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.configuration import conf

from ._compat import AirflowException, Context
from .api.credentials import validate_id
from .api.events import RunEvent
from .api.reporting import failure_report
from .triggers import DbtCloudRunTrigger

if TYPE_CHECKING:  # the mixin's attributes (log, defer) come from the operator it joins
    from ._compat import BaseOperator as _Base
    from .dbt_assets import RunAssets
    from .hooks import DbtCloudHook
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


#: The official ``DbtCloudHook`` constructor's settings that ``hook_params`` may carry.
HOOK_PARAMS = frozenset({"timeout_seconds", "retry_limit", "retry_delay", "retry_args"})
#: What a type check accepts, by name: the type and the words of the message.
_KINDS: dict[str, tuple[tuple[type, ...], str]] = {
    "bool": ((bool,), "True or False"),
    "seconds": ((int, float, timedelta), "seconds (a number or a timedelta)"),
    "text": ((str,), "a string"),
    "id": ((int, str), "an id (a whole number, or a template that renders to one)"),
    "dict": ((Mapping,), "a dict"),
    "list": ((list, tuple), "a list"),
}


def rendered_later(value: Any) -> bool:
    """True for a value known only when the task runs: a template string or an ``XComArg``."""
    return type(value).__name__.endswith("XComArg") or (isinstance(value, str) and "{{" in value)


def at_parse(task_id: str, name: str, value: Any, convert: Callable[[Any, str], Any]) -> Any:
    """``convert(value, name)`` when the DAG is parsed, its ``ValueError`` a ``TypeError`` that names the task;
    a template or ``XComArg`` is left as it is, for the same conversion at execute time."""
    if value is None or rendered_later(value):
        return value
    try:
        return convert(value, name)
    except ValueError as error:
        raise TypeError(f"{task_id}: {error}") from None


def check_args(task_id: str, **given: tuple[Any, str]) -> None:
    """Refuse a wrong-typed argument when the DAG is parsed: ``name=(value, kind)``, None always allowed.

    The message names the task, the parameter, what it got and what it takes. Values from templates or
    XCom (``XComArg``, ``PlainXComArg``) are left for execute time, where they are checked before any call.
    """
    for name, (value, kind) in given.items():
        if value is None or rendered_later(value):
            continue
        types, words = _KINDS[kind]
        bad = (isinstance(value, bool) and bool not in types) or not isinstance(value, types)
        if kind == "seconds" and not bad and (value.total_seconds() if isinstance(value, timedelta) else value) < 0:
            bad = True
        if kind == "list" and not bad and not all(isinstance(item, str) for item in value):
            raise TypeError(f"{task_id}: {name} must be a list of strings, such as ['dbt build']; got {value!r}.")
        if bad:
            raise TypeError(f"{task_id}: {name} must be {words}; got {value!r} ({type(value).__name__}).")


def _literal(text: str) -> Any:
    """A JSON or Python literal (``["a"]``, ``['a']``, ``{"k": 1}``); ``text`` itself when it is neither."""
    import ast
    import json

    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(text)
        except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError):
            continue
    return text


def as_steps(value: Any, name: str = "steps_override") -> list[str] | None:
    """``steps_override`` as dbt Cloud takes it: a list of dbt commands.

    A template renders to a string: one that reads as a list (``["dbt build", "dbt test"]``, JSON or Python) is
    that list (a string that opens with a bracket or brace must be one), any other string is one command (``"dbt build"`` is ``["dbt build"]``, never ``['d', 'b', ...]``).
    Anything else (a dict, a number, a list with a non-string or an empty command) raises ``ValueError``, which
    names the parameter.
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        value = _literal(text) if text[:1] in ("[", "(", "{") else [text]
    if isinstance(value, list | tuple) and value and all(isinstance(step, str) and step.strip() for step in value):
        return [step.strip() for step in value]
    raise ValueError(
        f"{name} must be a dbt command or a list of them, such as 'dbt build' or ['dbt seed', 'dbt build']; "
        f"got {str(value)[:200]!r} ({type(value).__name__})."
    )


def as_data(value: Any, name: str = "data") -> dict[str, Any] | None:
    """``data`` (``additional_run_config``) as a dict of trigger fields; a string that reads as a dict (a
    rendered template, JSON or Python) is that dict. Anything else raises ``ValueError`` naming the parameter."""
    if value is None:
        return None
    parsed = _literal(value.strip()) if isinstance(value, str) and value.strip().startswith("{") else value
    if isinstance(parsed, Mapping) and all(isinstance(key, str) for key in parsed):
        return dict(parsed)
    raise ValueError(
        f"{name} must be a dict of further trigger fields, such as {{'threads_override': 8}}; "
        f"got {str(value)[:200]!r} ({type(value).__name__})."
    )


def check_hook_params(task_id: str, hook_params: Any) -> dict[str, Any]:
    """``hook_params`` as a dict of the official hook's settings; anything else is refused at parse time."""
    if hook_params is None:
        return {}
    if not isinstance(hook_params, Mapping):
        raise TypeError(f"{task_id}: hook_params must be a dict of DbtCloudHook arguments; got {hook_params!r}.")
    unknown = sorted(set(hook_params) - HOOK_PARAMS)
    if unknown:
        raise TypeError(
            f"{task_id}: hook_params has unknown DbtCloudHook arguments {unknown}; it takes {sorted(HOOK_PARAMS)}."
        )
    return dict(hook_params)


def with_asset_alias(kwargs: dict[str, Any], alias: str | None) -> dict[str, Any]:
    """The task's keyword arguments with the ``AssetAlias`` (``DatasetAlias`` on 2.11) named ``alias`` added to
    its ``outlets``, so that the task can emit events for Assets only its run knows. ``alias`` None: unchanged."""
    if alias is None:
        return kwargs
    if not isinstance(alias, str) or not alias.strip():
        raise TypeError(f"{kwargs.get('task_id')}: asset_alias must be a non-empty string; got {alias!r}.")
    from .assets import asset_alias as make_alias  # Airflow's asset classes, once per task with an alias

    given = kwargs.get("outlets")
    outlets = list(given) if isinstance(given, list | tuple) else ([given] if given is not None else [])
    return kwargs | {"outlets": [*outlets, make_alias(alias)]}


def check_asset_namespace(task_id: str, namespace: Any) -> None:
    """Refuse a namespace the naming rule cannot use when the DAG is parsed, not after the run (templates are
    left for run time)."""
    if isinstance(namespace, str) and namespace and "{{" not in namespace:
        from .assets import UnsupportedWarehouseError, resolve_namespace

        try:
            resolve_namespace(namespace)
        except UnsupportedWarehouseError as error:
            raise UnsupportedWarehouseError(f"{task_id}: asset_namespace {namespace!r}: {error}") from None


def new_hook(conn_id: str, hook_params: Mapping[str, Any], account_id: int | str | None = None) -> DbtCloudHook:
    """A hook for a task's calls. Imported here, at run time: the hook loads the API core, which DAG parsing
    (which imports the operators) does not need."""
    from .hooks import DbtCloudHook

    return DbtCloudHook(conn_id, account_id=account_id, **hook_params)


def current_context() -> Any:
    """The running task's context (Airflow 3's task SDK, or 2.11's)."""
    try:
        from airflow.sdk import get_current_context
    except ImportError:  # Airflow 2.11
        from airflow.operators.python import get_current_context  # type: ignore[no-redef,attr-defined,unused-ignore]
    return get_current_context()


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
    #: Cancel the run when the task stops waiting for it (killed, marked, cleared): only for a run the task
    #: started. The run-job operator takes it as a parameter; a sensor waits on others' runs and never cancels.
    cancel_on_kill: bool = False
    #: Keyword arguments of the hook (the official ``hook_params``): timeouts and retries of this task's calls.
    hook_params: dict[str, Any] = {}
    #: The alias through which a finished run's built nodes are emitted as asset events (None: no events).
    asset_alias: str | None = None
    #: The warehouse namespace of those Assets; None: the connection's ``asset_namespace`` extra.
    asset_namespace: str | None = None
    #: Whether a failed run leaves the events of the nodes that succeeded in XCom ``dbt_asset_events``.
    assets_on_failure: bool = True

    @cached_property
    def hook(self) -> DbtCloudHook:
        """One hook per task instance: its connection is read once."""
        return new_hook(self.dbt_cloud_conn_id, self.hook_params, account_id=self.account_id)

    def defer_wait(
        self, run_id: int, *, poll_interval: float, timeout: float | None, resume: dict[str, Any] | None = None
    ) -> NoReturn:
        """Hand the wait to the triggerer; ``execute_complete`` resumes with its event (and ``resume``)."""
        self.defer(
            trigger=DbtCloudRunTrigger(
                conn_id=self.dbt_cloud_conn_id,
                run_id=run_id,
                account_id=optional_account_id(self.account_id),
                poll_interval=poll_interval,
                timeout=timeout,
                cancel_on_kill=self.cancel_on_kill,
            ),
            method_name="execute_complete",
            kwargs=resume,
        )
        raise AssertionError("defer() returned")  # pragma: no cover

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
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
            self.emit_run_assets(event.run_id)
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
        if self.asset_alias and self.assets_on_failure:
            self.record_failed_run_assets(run_id)
        raise self.failure_exception(report)

    # --- OpenLineage ------------------------------------------------------------------------------------

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """The finished run's lineage, read from its artifacts by OpenLineage's dbt processor: called by the
        OpenLineage provider's listener only (the ``openlineage`` extra); see :mod:`airflow_dbt_cloud_dlt.lineage`."""
        from .lineage import run_lineage

        return run_lineage(self, task_instance)

    # --- asset events of the built nodes ----------------------------------------------------------------

    def _read_run_assets(self, run_id: int) -> RunAssets:
        from .dbt_assets import read_run_assets  # ijson: only tasks that emit assets load it

        with self.hook.get_conn() as client:
            # the task's asset_namespace, else the connection's asset_namespace extra (checked by the hook)
            namespace = self.asset_namespace or self.hook.asset_namespace
            return read_run_assets(client, run_id, run_url=self.run_url, namespace=namespace)

    def emit_run_assets(self, run_id: int) -> None:
        """One asset event per model, seed and snapshot the succeeded run built, through ``asset_alias``.
        Artifacts that cannot be read fail the task with the reason (see :mod:`.dbt_assets`)."""
        if not self.asset_alias:
            return
        from .assets import UnsupportedWarehouseError
        from .dbt_assets import DbtArtifactError, emit_recorded_events

        try:
            found = self._read_run_assets(run_id)
        except (DbtArtifactError, UnsupportedWarehouseError) as error:
            raise AirflowException(f"dbt Cloud run {run_id} succeeded, but its asset events failed: {error}") from None
        if found.reason:
            self.log.info("No asset events: %s.", found.reason)
            return
        emit_recorded_events(found.events(), self.asset_alias)
        for node in found.nodes:
            self.log.info("Asset event %s for %s (%s rows)", node.uri, node.unique_id, node.rows_affected)
        if not found.nodes:
            self.log.info("No asset events: dbt Cloud run %s built no model, seed or snapshot.", run_id)

    def record_failed_run_assets(self, run_id: int) -> None:
        """Leave the events of the nodes that succeeded before the run failed in XCom ``dbt_asset_events``.

        Airflow records outlet events only of tasks that succeed, and a failed run fails its task, so the
        events cannot be emitted here; ``dbt_assets.emit_recorded_events`` in a follow-up task announces them.
        Reading the artifacts is best effort: the run's failure stays the task's error.
        """
        from .dbt_assets import FAILED_RUN_XCOM_KEY

        try:
            found = self._read_run_assets(run_id)
        except Exception as error:
            self.log.warning("Could not read the failed run's artifacts for asset events: %s", error)
            return
        if found.reason:
            self.log.info("No asset events: %s.", found.reason)
            return
        current_context()["ti"].xcom_push(key=FAILED_RUN_XCOM_KEY, value=found.events())
        self.log.info(
            "%d node(s) succeeded before dbt Cloud run %s failed: %s. Their asset events are in XCom %r.",
            len(found.nodes),
            run_id,
            ", ".join(node.unique_id for node in found.nodes) or "none",
            FAILED_RUN_XCOM_KEY,
        )


class Alias:
    """An attribute under a second name: the official provider's parameter names for this package's own
    (``trigger_reason`` is ``cause``), so that templates, ``default_args`` and reads of either name agree."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        return self if instance is None else getattr(instance, self.target)

    def __set__(self, instance: Any, value: Any) -> None:
        setattr(instance, self.target, value)


#: The official provider's defaults read from the Airflow configuration, evaluated at import as it does.
OFFICIAL_DEFERRABLE: bool = conf.getboolean("operators", "default_deferrable", fallback=False)
OFFICIAL_OPENLINEAGE_INJECT: bool = conf.getboolean("openlineage", "spark_inject_parent_job_info", fallback=False)
