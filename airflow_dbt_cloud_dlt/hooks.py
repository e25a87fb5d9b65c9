"""The Airflow hook: an Airflow connection in, dbt Cloud credentials and clients out.

This is the only module that reads Airflow connections and masks secrets. Connections in the official
provider's format work unchanged: host = access URL or tenant, login = account id, password = token,
extra ``proxies``. Extras may also set ``job_id``, ``project_id``, ``environment_id``, ``timeout`` and
``verify`` (true, false, or a CA bundle path). Connections of this package's old type name (``dbt_cloud_dlt``)
and of the official type (``dbt_cloud``) are read the same way.

``DbtCloudHook`` also has the official provider's constructor and public methods (and ``DbtCloudJobRunStatus``,
``DbtCloudJobRunException``, ``DbtCloudResourceLookupError``), so that code written for
``airflow.providers.dbt.cloud.hooks.dbt`` only changes its import. Those methods stay thin: each builds a
request (``api.core``, ``api.official``) and sends it through the API client, which owns retries and the
rate budget. docs/migrating-from-the-official-provider.md lists where they differ, and why.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from functools import cache, cached_property, wraps
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

from ._compat import AirflowException, BaseHook, amask_secret, mask_secret
from ._official_names import DbtCloudJobRunException, DbtCloudJobRunStatus, DbtCloudResourceLookupError
from .api import core, errors
from .api.core import ApiRequest, RetryPolicy, require_account
from .api.credentials import DbtCloudCredentials, credentials_from_mapping, validate_id
from .api.errors import DbtCloudConfigError, DbtCloudError
from .api.official import (
    DbtCloudLookupError,
    artifact_request,
    as_response,
    find_job,
    get_environment,
    get_project,
    list_accounts,
    optional_step,
    pages,
    related,
    retry_policy,
)
from .api.reporting import failure_report
from .provider_info import (
    CONN_FIELDS,
    CONN_TYPE,
    DEFAULT_CONN_ID,
    LEGACY_CONN_TYPE,
    OFFICIAL_CONN_TYPE,
    UI_FIELD_BEHAVIOUR,
)

if TYPE_CHECKING:
    from requests import Response

    from .api.aio import AsyncDbtCloudClient  # httpx: the triggerer needs it, DAG parsing does not
    from .api.client import DbtCloudClient  # requests: loaded on first use, not at DAG parsing

#: Seconds that triggers in one process share a connection lookup (a rotated token is seen after this).
CREDENTIALS_TTL = 30.0
_SHARED_CREDENTIALS: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, str], tuple[float, asyncio.Future[DbtCloudCredentials]]]
] = weakref.WeakKeyDictionary()
_EXTRA_FIELDS = ("job_id", "project_id", "environment_id", "timeout", "proxies", "verify")
_ID_EXTRAS = frozenset({"job_id", "project_id", "environment_id"})
#: Airflow 2 forms once stored widget fields as "extra__<conn_type>__<name>".
_EXTRA_PREFIXES = tuple(f"extra__{name}__" for name in (CONN_TYPE, LEGACY_CONN_TYPE, OFFICIAL_CONN_TYPE))
_UNSET_TEXT = frozenset({"", "null", "none"})


def typed_extra(name: str, value: Any) -> Any:
    """An extra field's value in its proper type, or None when it is unset (None, blank, "null").

    Forms store what they were given: Airflow 3's saves every field (null when empty), Airflow 2's stored
    strings. Ids become ints ("42", 42.0), the timeout a float, ``verify`` true/false or a CA bundle path.
    """
    if isinstance(value, str):
        value = value.strip()
        if value.lower() in _UNSET_TEXT:
            return None
    if value is None:
        return None
    if name in _ID_EXTRAS:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return validate_id(value, name)
    if name == "timeout":
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            seconds = 0.0
        if not seconds > 0 or isinstance(value, bool):
            raise DbtCloudConfigError(f"Invalid timeout {value!r}: give seconds, such as 30.")
        return seconds
    if name == "verify" and isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


def _base_url(host: str | None, port: int | str | None) -> str | None:
    """The connection's host with its port field added; a host that names a different port is refused."""
    text = (host or "").strip()
    if port in (None, "", 0, "0"):
        return text or None
    if not text:
        raise DbtCloudConfigError(
            f"The connection sets port {port} but no host: set the host too, such as 'ab123.us1.dbt.com', or "
            "clear the port."
        )
    parts = urlsplit(text if "://" in text else f"https://{text}")
    try:
        wanted, named = int(port), parts.port
    except ValueError:
        return text  # a malformed port in the host is reported when the host is read
    if named is None:
        with_port = urlunsplit(parts._replace(netloc=f"{parts.netloc}:{wanted}"))
        return with_port if "://" in text else with_port.removeprefix("https://")
    if named != wanted:
        raise DbtCloudConfigError(
            f"The connection's host {text!r} names port {named}, but its port field says {wanted}: clear the "
            "port field, or make the two agree."
        )
    return text


def connection_to_credentials(
    conn: Any, extra: Mapping[str, Any] | None, account_id: int | str | None = None
) -> DbtCloudCredentials:
    """Map an Airflow connection (and its parsed extra) to credentials; ``account_id`` wins over login."""
    extra = extra if isinstance(extra, Mapping) else {}
    login = conn.login.strip() if isinstance(conn.login, str) else conn.login
    values: dict[str, Any] = {
        "api_token": conn.password,
        "account_id": account_id if account_id not in (None, "") else login,
        "base_url": _base_url(conn.host, conn.port),
    }
    for name in _EXTRA_FIELDS:
        for key in (name, *(prefix + name for prefix in _EXTRA_PREFIXES)):
            value = typed_extra(name, extra.get(key))
            if value is not None:
                values[name] = value
                break
    return credentials_from_mapping(values)


def secrets_of(credentials: DbtCloudCredentials) -> list[str]:
    """What Airflow's secret masker must hide: the token, and the password of each proxy URL (as written and
    percent-decoded, since either form may reach a log)."""
    secrets = [credentials.api_token]
    for url in (credentials.proxies or {}).values():
        try:
            password = urlsplit(url).password
        except ValueError:  # a malformed proxy URL: requests reports it; mask it whole
            password = url
        if password:
            secrets.extend(dict.fromkeys((password, unquote(password))))
    return secrets


def _form_filter(name: str) -> Callable[[Any], Any]:
    """A wtforms filter that gives a form field its proper type; Airflow 2's form saves nothing for ""."""

    def typed(value: Any) -> Any:
        cleaned = typed_extra(name, value)  # a DbtCloudConfigError is a ValueError: the form shows its message
        return "" if cleaned is None else cleaned

    return typed


# --- the official provider's names (apache-airflow-providers-dbt-cloud), for a drop-in switch ------------


#: Error types of ``api.errors`` paired with an AirflowException twin (see ``_as_airflow_error``).
_TWIN_PREFIX = "_AirflowTwin_"
_F = TypeVar("_F", bound=Callable[..., Any])


def _twin(cls: type[DbtCloudError]) -> type[DbtCloudError]:
    """``cls`` and AirflowException in one type, defined in this module so that its errors pickle."""
    name = _TWIN_PREFIX + cls.__name__
    twin = globals().get(name)
    if twin is None:
        twin = type(name, (cls, AirflowException), {"__module__": __name__, "__doc__": cls.__doc__})
        globals()[name] = twin
    return twin  # type: ignore[no-any-return]


def __getattr__(name: str) -> Any:
    """Unpickling an error twin in a fresh process makes the twin first."""
    if name.startswith(_TWIN_PREFIX):
        base = getattr(errors, name.removeprefix(_TWIN_PREFIX), None)
        if isinstance(base, type) and issubclass(base, DbtCloudError):
            return _twin(base)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _as_airflow_error(error: DbtCloudError) -> DbtCloudError:
    """The same error, also an ``AirflowException``: the official hook raises those, and DAGs catch them."""
    if isinstance(error, AirflowException):
        return error
    twin = _twin(type(error))
    copy = twin.__new__(twin, *error.args)
    copy.__dict__.update(error.__dict__)
    copy.args = error.args
    copy.__cause__, copy.__suppress_context__ = error.__cause__, True
    return copy.with_traceback(error.__traceback__)


def _official(method: _F) -> _F:
    """An official-named hook method: ``account_id`` falls back to the hook's (``account_id=``, then the
    connection's login), and errors are also AirflowExceptions. The signature is read on first call, not at
    import (DAG parsing imports this module)."""
    signature = cache(lambda: inspect.signature(method))

    def bound(self: DbtCloudHook, args: tuple[Any, ...], kwargs: dict[str, Any]) -> inspect.BoundArguments:
        return signature().bind(self, *args, **kwargs)

    def unset_account(arguments: inspect.BoundArguments) -> bool:
        return "account_id" in signature().parameters and arguments.arguments.get("account_id") is None

    if inspect.iscoroutinefunction(method):

        @wraps(method)
        async def run_async(self: DbtCloudHook, *args: Any, **kwargs: Any) -> Any:
            try:
                arguments = bound(self, args, kwargs)
                if unset_account(arguments):
                    arguments.arguments["account_id"] = (await self.aget_credentials()).account_id
                return await method(*arguments.args, **arguments.kwargs)
            except DbtCloudError as error:
                raise _as_airflow_error(error) from None

        return run_async  # type: ignore[return-value]

    @wraps(method)
    def run(self: DbtCloudHook, *args: Any, **kwargs: Any) -> Any:
        try:
            arguments = bound(self, args, kwargs)
            if unset_account(arguments):
                arguments.arguments["account_id"] = self._resolve_account_id()
            return method(*arguments.args, **arguments.kwargs)
        except DbtCloudError as error:
            raise _as_airflow_error(error) from None

    return run  # type: ignore[return-value]


def _check_retry_settings(timeout_seconds: Any, retry_limit: Any, retry_delay: Any, retry_args: Any) -> None:
    """The official constructor's settings, checked when the hook is made (before any request)."""
    if timeout_seconds is not None and (
        isinstance(timeout_seconds, bool) or not isinstance(timeout_seconds, int | float) or timeout_seconds <= 0
    ):
        raise DbtCloudConfigError(f"Invalid timeout_seconds {timeout_seconds!r}: give seconds, such as 30.")
    if isinstance(retry_limit, bool) or not isinstance(retry_limit, int) or retry_limit < 1:
        raise DbtCloudConfigError(f"Invalid retry_limit {retry_limit!r}: give a whole number of attempts, 1 or more.")
    if isinstance(retry_delay, bool) or not isinstance(retry_delay, int | float) or retry_delay < 0:
        raise DbtCloudConfigError(f"Invalid retry_delay {retry_delay!r}: give seconds, such as 1.0.")
    if retry_args is not None and not isinstance(retry_args, Mapping):
        raise DbtCloudConfigError(f"Invalid retry_args {retry_args!r}: give a dict of tenacity arguments.")


class DbtCloudHook(BaseHook):
    """dbt Cloud access through an Airflow connection (default ``dbt_cloud_default``).

    It takes the official provider's parameters and has its public methods, which go through this package's
    API client (retries, ``Retry-After``, rate budget). ``timeout_seconds`` bounds each HTTP answer (None: the
    connection's ``timeout`` extra, else 30 s). ``retry_limit`` is the number of attempts in all, but never
    fewer than this package's 5; ``retry_delay`` is the first backoff; ``stop`` and ``wait`` in ``retry_args``
    replace the policy's own. ``account_id`` overrides the connection's login.
    """

    conn_name_attr = "dbt_cloud_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "dbt Cloud (dlt-compatible)"

    def __init__(
        self,
        dbt_cloud_conn_id: str = default_conn_name,
        timeout_seconds: int | None = None,
        retry_limit: int = 1,
        retry_delay: float = 1.0,
        retry_args: dict[Any, Any] | None = None,
        *,
        account_id: int | str | None = None,
    ) -> None:
        super().__init__()
        try:
            if not isinstance(dbt_cloud_conn_id, str) or not dbt_cloud_conn_id.strip():
                raise DbtCloudConfigError(f"Invalid dbt_cloud_conn_id {dbt_cloud_conn_id!r}: give a connection id.")
            _check_retry_settings(timeout_seconds, retry_limit, retry_delay, retry_args)
        except DbtCloudConfigError as error:
            raise _as_airflow_error(error) from None
        self.dbt_cloud_conn_id = dbt_cloud_conn_id
        self.account_id = account_id
        self.timeout_seconds = timeout_seconds
        self.retry_limit = retry_limit
        self.retry_delay = retry_delay
        self.retry_args = dict(retry_args) if retry_args is not None else None

    # --- credentials and clients --------------------------------------------------------------------

    @cached_property
    def _connection(self) -> Any:
        return self.get_connection(self.dbt_cloud_conn_id)

    @property
    def connection_extras(self) -> dict[str, Any]:
        """The connection's extras (``asset_namespace`` names the warehouse of the Assets its runs build)."""
        extra = self._connection.extra_dejson
        return dict(extra) if isinstance(extra, Mapping) else {}

    @property
    def asset_namespace(self) -> str | None:
        """The connection's ``asset_namespace`` extra, checked (see :mod:`.assets`); None when it has none."""
        from .assets import namespace_from_extras

        return namespace_from_extras(self.connection_extras)

    @cached_property
    def credentials(self) -> DbtCloudCredentials:
        conn = self._connection
        credentials = connection_to_credentials(conn, conn.extra_dejson, self.account_id)
        for secret in secrets_of(credentials):
            mask_secret(secret)
        return credentials

    async def aget_credentials(self) -> DbtCloudCredentials:
        """The credentials, read without blocking the triggerer's event loop.

        Triggers of the same connection in one event loop share one lookup for ``CREDENTIALS_TTL`` seconds:
        a triggerer that resumes a thousand deferred tasks reads the connection once, not a thousand times
        (each read reloads the secrets backends). A failed lookup is not kept.
        """
        shared = _SHARED_CREDENTIALS.setdefault(asyncio.get_running_loop(), {})
        key, now = (self.dbt_cloud_conn_id, str(self.account_id)), time.monotonic()
        expires, lookup = shared.get(key, (0.0, None))
        if lookup is None or expires < now:
            lookup = asyncio.ensure_future(self._read_credentials())
            shared[key] = (now + CREDENTIALS_TTL, lookup)
        try:
            return await asyncio.shield(lookup)  # one caller's cancellation must not cancel the others' lookup
        except Exception:
            if shared.get(key, (0.0, None))[1] is lookup:
                del shared[key]
            raise

    async def _read_credentials(self) -> DbtCloudCredentials:
        # only triggers read connections this way: not imported at DAG parse
        from airflow.providers.common.compat.connection import get_async_connection, get_async_extra_dejson

        conn = await get_async_connection(self.dbt_cloud_conn_id)
        credentials = connection_to_credentials(conn, await get_async_extra_dejson(conn), self.account_id)
        # The password is masked by the fetch; a proxy's password inside the extra is not. Async: a sync
        # mask call would block the loop.
        for secret in secrets_of(credentials):
            await amask_secret(secret)
        return credentials

    def get_conn(self) -> DbtCloudClient:
        """A sync API client (one ``requests.Session``); close it when done. The hook's ``timeout_seconds`` and
        retry settings apply to it when they are given (an operator's ``hook_params``)."""
        from .api.client import DbtCloudClient  # requests costs ~0.1 s, and DAG parsing imports this module

        default_retries = (self.retry_limit, self.retry_delay, self.retry_args) == (1, 1.0, None)
        credentials = self._for_official(self.credentials, None)
        return DbtCloudClient(credentials, retry=None if default_retries else self.retry_policy)

    async def get_async_client(self) -> AsyncDbtCloudClient:
        """An async API client over the process's pooled HTTP connections."""
        from .api.aio import AsyncDbtCloudClient  # httpx, imported by the triggerer only

        return AsyncDbtCloudClient(await self.aget_credentials())

    # --- the dlt-compatible helpers, with this connection's credentials -----------------------------

    def run_dbt_cloud_job(
        self,
        job_id: int | str | None = None,
        data: dict[Any, Any] | None = None,
        wait_for_outcome: bool = True,
        wait_seconds: int = 10,
        *,
        timeout: float | None = None,
    ) -> dict[Any, Any]:
        """:func:`airflow_dbt_cloud_dlt.run_dbt_cloud_job` with this connection's credentials."""
        from .helpers import run_dbt_cloud_job  # it loads the sync client (requests): not at DAG parsing

        return run_dbt_cloud_job(self.credentials, job_id, data, wait_for_outcome, wait_seconds, timeout=timeout)

    def get_dbt_cloud_run_status(
        self,
        run_id: int | str | None = None,
        wait_for_outcome: bool = True,
        wait_seconds: int = 10,
        *,
        timeout: float | None = None,
    ) -> dict[Any, Any]:
        """:func:`airflow_dbt_cloud_dlt.get_dbt_cloud_run_status` with this connection's credentials."""
        from .helpers import get_dbt_cloud_run_status  # it loads the sync client (requests): not at DAG parsing

        return get_dbt_cloud_run_status(self.credentials, run_id, wait_for_outcome, wait_seconds, timeout=timeout)

    # --- the official provider's methods ------------------------------------------------------------
    # Each builds its request with api/core.py (or api/official.py) and sends it through the client.

    @cached_property
    def retry_policy(self) -> RetryPolicy:
        """The API client's retry policy under this hook's ``retry_limit``, ``retry_delay`` and ``retry_args``."""
        return retry_policy(self.retry_limit, self.retry_delay, self.retry_args)

    def _for_official(self, credentials: DbtCloudCredentials, account_id: int | None) -> DbtCloudCredentials:
        changes: dict[str, Any] = {}
        if self.timeout_seconds is not None:
            changes["timeout"] = float(self.timeout_seconds)
        if account_id is not None and account_id != credentials.account_id:
            changes["account_id"] = account_id
        return credentials.with_overrides(**changes) if changes else credentials

    def _client(self, account_id: int | None) -> DbtCloudClient:
        """One sync client (one HTTP session) per account, kept for the hook's life."""
        from .api.client import DbtCloudClient  # requests: loaded on first use, not at DAG parsing

        clients: dict[int | None, DbtCloudClient] = self.__dict__.setdefault("_official_clients", {})
        if account_id not in clients:
            credentials = self._for_official(self.credentials, account_id)
            clients[account_id] = DbtCloudClient(credentials, retry=self.retry_policy)
        return clients[account_id]

    def _resolve_account_id(self) -> int:
        """The account of calls without ``account_id``: the hook's ``account_id=``, else the connection's login."""

        return require_account(self.credentials)

    def _account(self, account_id: int | None) -> int:
        return self._resolve_account_id() if account_id is None else account_id

    def _get(self, account_id: int | None, build: Callable[[int], ApiRequest]) -> Response:
        """Send ``build(account)`` through the client; the answer as a ``requests.Response``."""
        account = self._account(account_id)
        client, request = self._client(account), build(account)
        return as_response(client, request, client.send(request))

    def _pages(self, account_id: int | None, build: Callable[[int, int], ApiRequest]) -> list[Response]:
        """Every page of ``build(account, offset)``, following ``extra.pagination``: one response per page."""
        account = self._account(account_id)
        client = self._client(account)
        return [as_response(client, build(account, 0), page) for page in pages(client, lambda o: build(account, o))]

    def list_accounts(self) -> Response:
        """The accounts that the token may use (``GET /api/v2/accounts/``); the connection needs an account id."""
        try:
            return self._get(None, lambda account: list_accounts())
        except DbtCloudError as error:
            raise _as_airflow_error(error) from None

    @_official
    def get_account(self, account_id: int | None = None) -> Response:
        """One account's metadata."""
        return self._get(account_id, core.get_account)

    @_official
    def list_projects(self, account_id: int | None = None, name_contains: str | None = None) -> list[Response]:
        """The account's projects, one response per page; ``name_contains`` filters case-insensitively."""
        return self._pages(
            account_id,
            lambda account, offset: core.list_projects(account, offset=offset, name__icontains=name_contains),
        )

    @_official
    def get_project(self, project_id: int, account_id: int | None = None) -> Response:
        """One project's metadata."""
        return self._get(account_id, lambda account: get_project(account, project_id))

    @_official
    def list_environments(
        self, project_id: int, *, name_contains: str | None = None, account_id: int | None = None
    ) -> list[Response]:
        """A project's environments, one response per page."""
        return self._pages(
            account_id,
            lambda account, offset: core.list_environments(
                account, project_id, offset=offset, name__icontains=name_contains
            ),
        )

    @_official
    def get_environment(self, project_id: int, environment_id: int, *, account_id: int | None = None) -> Response:
        """One environment's metadata."""
        return self._get(account_id, lambda account: get_environment(account, project_id, environment_id))

    @_official
    def list_jobs(
        self,
        account_id: int | None = None,
        order_by: str | None = None,
        project_id: int | None = None,
        environment_id: int | None = None,
        name_contains: str | None = None,
    ) -> list[Response]:
        """The account's jobs, one response per page, optionally of one project or environment."""
        filters: dict[str, Any] = {
            "order_by": order_by,
            "project_id": None if project_id is None else validate_id(project_id, "project_id"),
            "environment_id": None if environment_id is None else validate_id(environment_id, "environment_id"),
            "name__icontains": name_contains,
        }
        return self._pages(account_id, lambda account, offset: core.list_jobs(account, offset=offset, **filters))

    @_official
    def get_job(self, job_id: int, account_id: int | None = None) -> Response:
        """One job's metadata."""
        return self._get(account_id, lambda account: core.get_job(account, job_id))

    @_official
    def get_job_by_name(
        self, *, project_name: str, environment_name: str, job_name: str, account_id: int | None = None
    ) -> dict[str, Any]:
        """The job with exactly these project, environment and job names; a DbtCloudResourceLookupError naming
        the candidates when there is none or more than one."""
        try:
            return find_job(self._client(self._account(account_id)), project_name, environment_name, job_name)
        except DbtCloudLookupError as error:
            raise DbtCloudResourceLookupError(str(error)) from None

    @_official
    def trigger_job_run(
        self,
        job_id: int,
        cause: str,
        account_id: int | None = None,
        steps_override: list[str] | None = None,
        schema_override: str | None = None,
        retry_from_failure: bool = False,
        additional_run_config: dict[str, Any] | None = None,
    ) -> Response:
        """Start a run of a job (never sent twice blindly). With ``retry_from_failure``, when the job's latest
        run failed, rerun it from the point of failure instead (the overrides are then ignored, as dbt Cloud's
        rerun takes none)."""
        if additional_run_config is not None and not isinstance(additional_run_config, Mapping):
            raise DbtCloudConfigError(
                f"Invalid additional_run_config {additional_run_config!r}: give a dict of trigger fields."
            )
        if retry_from_failure:
            latest = self._client(self._account(account_id)).list_runs(
                limit=1, order_by="-created_at", job_definition_id=job_id
            )
            if latest and latest[0].get("status") == DbtCloudJobRunStatus.ERROR.value:
                if steps_override is not None or schema_override is not None or additional_run_config:
                    self.log.warning(
                        "steps_override, schema_override and additional_run_config are ignored: run %s of job %s "
                        "failed, so it is rerun from the point of failure.",
                        latest[0].get("id"),
                        job_id,
                    )
                return self.retry_failed_job_run(job_id, account_id)
        body = {"cause": cause, "steps_override": steps_override, "schema_override": schema_override}
        body.update(additional_run_config or {})
        return self._get(account_id, lambda account: core.trigger_job_run(account, job_id, body))

    @_official
    def list_job_runs(
        self,
        account_id: int | None = None,
        include_related: list[str] | None = None,
        job_definition_id: int | None = None,
        order_by: str | None = None,
    ) -> list[Response]:
        """The account's runs, or one job's, one response per page."""
        job = None if job_definition_id is None else validate_id(job_definition_id, "job_definition_id")
        names = related(include_related)
        query: dict[str, Any] = {"order_by": order_by, "include_related": names, "job_definition_id": job}
        return self._pages(account_id, lambda account, offset: core.list_runs(account, offset=offset, **query))

    @_official
    def get_job_runs(self, account_id: int | None = None, payload: dict[str, Any] | None = None) -> Response:
        """One page of runs; ``payload`` holds the query (filters, ``order_by``, ``limit``, ``offset``)."""
        if payload is not None and not isinstance(payload, Mapping):
            raise DbtCloudConfigError(f"Invalid payload {payload!r}: give a dict of query parameters.")
        query = dict(payload or {})
        query["include_related"] = related(query.get("include_related"))
        query.setdefault("order_by", None)
        return self._get(account_id, lambda account: core.list_runs(account, **query))

    @_official
    def get_job_run(
        self, run_id: int, account_id: int | None = None, include_related: list[str] | None = None
    ) -> Response:
        """One run's metadata, with the related objects asked for (e.g. ``["run_steps", "job"]``)."""
        return self._get(account_id, lambda account: core.get_run(account, run_id, related(include_related)))

    @_official
    def get_job_run_status(self, run_id: int, account_id: int | None = None) -> int:
        """The run's status code (see :class:`DbtCloudJobRunStatus`)."""
        self.log.info("Getting the status of job run %s.", run_id)
        status: int = self.get_job_run(run_id, account_id).json()["data"]["status"]
        try:
            name = DbtCloudJobRunStatus(status).name
        except ValueError:
            name = str(status)
        self.log.info("Current status of job run %s: %s", run_id, name)
        return status

    @_official
    def wait_for_job_run_status(
        self,
        run_id: int,
        account_id: int | None = None,
        expected_statuses: int | Sequence[int] | set[int] = DbtCloudJobRunStatus.SUCCESS.value,
        check_interval: int = 60,
        timeout: int = 60 * 60 * 24 * 7,
    ) -> bool:
        """Poll until the run reaches one of ``expected_statuses``: True. A DbtCloudJobRunException when it ends
        in another status (with the failed step, its log tail and failed nodes) or ``timeout`` passes."""
        statuses = (expected_statuses,) if isinstance(expected_statuses, int) else expected_statuses
        try:
            DbtCloudJobRunStatus.check_is_valid(statuses)
        except (TypeError, ValueError):
            raise DbtCloudConfigError(
                f"Invalid expected_statuses {expected_statuses!r}: give dbt Cloud status codes, such as "
                f"{DbtCloudJobRunStatus.SUCCESS.value} (see DbtCloudJobRunStatus)."
            ) from None
        for name, value in (("check_interval", check_interval), ("timeout", timeout)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise DbtCloudConfigError(f"Invalid {name} {value!r}: give seconds, such as 60.")
        deadline = time.monotonic() + timeout
        while True:
            status = self.get_job_run_status(run_id, account_id)
            if status in statuses:
                return True
            if status in DbtCloudJobRunStatus.TERMINAL_STATUSES.value:
                raise DbtCloudJobRunException(
                    f"Job run {run_id} reached terminal status {DbtCloudJobRunStatus(status).name} before reaching "
                    f"expected statuses {statuses}.\n{failure_report(self._client(self._account(account_id)), run_id)}"
                )
            if time.monotonic() > deadline:
                raise DbtCloudJobRunException(
                    f"Job run {run_id} has not reached a terminal status after {timeout} seconds; it is still going "
                    "in dbt Cloud (cancel it with cancel_job_run)."
                )
            time.sleep(check_interval)

    @_official
    def log_job_run_failure_details(
        self, run_id: int, account_id: int | None = None, job_run: dict[str, Any] | None = None
    ) -> None:
        """Log why a run failed: its status message, the failed step with its log tail, the failed nodes.
        The run is always read again (``job_run`` is accepted for the official's signature)."""
        self.log.error("%s", failure_report(self._client(self._account(account_id)), run_id))

    @_official
    def cancel_job_run(self, run_id: int, account_id: int | None = None) -> None:
        """Cancel a run (a run that has already ended stays as it is)."""
        self._get(account_id, lambda account: core.cancel_run(account, run_id))

    @_official
    def list_job_run_artifacts(self, run_id: int, account_id: int | None = None, step: int | None = None) -> Response:
        """The names of a run's artifact files, of its last step or of ``step`` (1 is the first)."""
        return self._get(account_id, lambda account: core.list_run_artifacts(account, run_id, optional_step(step)))

    @_official
    def get_job_run_artifact(
        self, run_id: int, path: str, account_id: int | None = None, step: int | None = None
    ) -> Response:
        """One artifact file (``manifest.json``, ``run_results.json``, ...), read whole; a missing one names the
        run, the step and the path. DbtCloudGetJobRunArtifactOperator streams big files to disk instead."""
        if not isinstance(path, str):
            raise DbtCloudConfigError(f"Invalid path {path!r}: give an artifact's path, such as 'manifest.json'.")
        return self._get(account_id, lambda account: artifact_request(account, run_id, path, optional_step(step)))

    @_official
    def download_job_run_artifact(
        self,
        run_id: int,
        path: str,
        output_file: str | os.PathLike[str],
        account_id: int | None = None,
        step: int | None = None,
    ) -> int:
        """Stream one artifact file into ``output_file``, a chunk at a time (a manifest can be hundreds of MB);
        return its size in bytes. A missing one names the run, the step and the path. Not in the official hook:
        DbtCloudGetJobRunArtifactOperator uses it."""
        if not isinstance(path, str):
            raise DbtCloudConfigError(f"Invalid path {path!r}: give an artifact's path, such as 'manifest.json'.")
        account = self._account(account_id)
        return self._client(account).download(artifact_request(account, run_id, path, optional_step(step)), output_file)

    @_official
    async def get_job_run_artifacts_concurrently(
        self, run_id: int, artifacts: list[str], account_id: int | None = None, step: int | None = None
    ) -> dict[str, Any]:
        """Several JSON artifacts of one run at once: ``{path: parsed JSON}``."""
        if isinstance(artifacts, str) or not all(isinstance(path, str) for path in artifacts):
            raise DbtCloudConfigError(
                f"Invalid artifacts {artifacts!r}: give a list of paths, such as ['manifest.json']."
            )
        self._client(self._account(account_id))  # made once, before the threads share it
        answers = await asyncio.gather(
            *(
                asyncio.to_thread(self.get_job_run_artifact, run_id, path, account_id=account_id, step=step)
                for path in artifacts
            )
        )
        return {path: answer.json() for path, answer in zip(artifacts, answers, strict=True)}

    @_official
    def retry_failed_job_run(self, job_id: int, account_id: int | None = None) -> Response:
        """Rerun a job from the point of failure if its latest run failed; otherwise start a new run."""
        return self._get(account_id, lambda account: core.rerun_job(account, job_id))

    @_official
    async def get_job_details(
        self, run_id: int, account_id: int | None = None, include_related: list[str] | None = None
    ) -> Any:
        """The run's whole JSON answer (``["data"]`` is the run), read without blocking the event loop."""
        from .api.aio import AsyncDbtCloudClient  # httpx: the triggerer needs it, DAG parsing does not

        credentials = self._for_official(await self.aget_credentials(), account_id)
        client = AsyncDbtCloudClient(credentials, retry=self.retry_policy)
        return await client.send(core.get_run(client.account_id, run_id, related(include_related)))

    async def get_job_status(
        self, run_id: int, account_id: int | None = None, include_related: list[str] | None = None
    ) -> int:
        """The run's status code, read without blocking the event loop."""
        self.log.info("Getting the status of job run %s.", run_id)
        details = await self.get_job_details(run_id, account_id=account_id, include_related=include_related)
        status: int = details["data"]["status"]
        return status

    # --- connection test and form -------------------------------------------------------------------

    def test_connection(self) -> tuple[bool, str]:
        """Read the account through the API, which checks host, token and account id together."""
        try:
            with self.get_conn() as client:
                account = client.get_account()
        except DbtCloudError as error:
            return False, str(error)
        return True, (
            f"Connected to dbt Cloud account {account.get('name')!r} ({account.get('id')}) "
            f"at {self.credentials.base_url}."
        )

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Connection form layout for Airflow 2 (Airflow 3.2+ reads it from the provider info)."""
        return {key.replace("-", "_"): value for key, value in UI_FIELD_BEHAVIOUR.items()}

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Extra form fields for Airflow 2's connection form: each saved in its proper type, and only when set."""
        # Airflow 2's web server brings these; Airflow 3 has neither and reads the fields from the provider info.
        from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
        from wtforms import StringField

        return {
            name: StringField(
                spec["label"],
                widget=BS3TextFieldWidget(),
                description=spec.get("description", ""),
                filters=[_form_filter(name)],
            )
            for name, spec in CONN_FIELDS.items()
        }


class LegacyTypeDbtCloudHook(DbtCloudHook):
    """:class:`DbtCloudHook` under the connection type of earlier releases (``dbt_cloud_dlt``), so that
    connections stored under it keep their form and their Test button. Prefer the new type for new ones."""

    conn_type = LEGACY_CONN_TYPE
    hook_name = "dbt Cloud (dlt-compatible, old type name)"
    # Airflow 2 reads form fields only from classmethods defined on the class itself.
    get_ui_field_behaviour = DbtCloudHook.__dict__["get_ui_field_behaviour"]
    get_connection_form_widgets = DbtCloudHook.__dict__["get_connection_form_widgets"]
