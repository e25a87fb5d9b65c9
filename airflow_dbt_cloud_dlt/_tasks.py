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


def new_hook(conn_id: str, hook_params: Mapping[str, Any], account_id: int | str | None = None) -> DbtCloudHook:
    """A hook for a task's calls. Imported here, at run time: the hook loads the API core, which DAG parsing
    (which imports the operators) does not need."""
    from .hooks import DbtCloudHook

    return DbtCloudHook(conn_id, account_id=account_id, **hook_params)


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
    #: Keyword arguments of the hook (the official ``hook_params``): timeouts and retries of this task's calls.
    hook_params: dict[str, Any] = {}

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
