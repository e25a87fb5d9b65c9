"""The Airflow hook: an Airflow connection in, dbt Cloud credentials and clients out.

This is the only module that reads Airflow connections and masks secrets. Connections in the official
provider's format work unchanged: host = access URL or tenant, login = account id, password = token,
extra ``proxies``. Extras may also set ``job_id``, ``project_id``, ``environment_id``, ``timeout`` and
``verify`` (true, false, or a CA bundle path). Connections of this package's old type name (``dbt_cloud_dlt``)
and of the official type (``dbt_cloud``) are read the same way.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from airflow.providers.common.compat.connection import get_async_connection, get_async_extra_dejson

from ._compat import BaseHook, mask_secret
from .api.credentials import DbtCloudCredentials, credentials_from_mapping, validate_id
from .api.errors import DbtCloudConfigError, DbtCloudError
from .provider_info import CONN_FIELDS, CONN_TYPE, LEGACY_CONN_TYPE, OFFICIAL_CONN_TYPE, UI_FIELD_BEHAVIOUR

if TYPE_CHECKING:
    from .api.aio import AsyncDbtCloudClient
    from .api.client import DbtCloudClient

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


def _form_filter(name: str) -> Callable[[Any], Any]:
    """A wtforms filter that gives a form field its proper type; Airflow 2's form saves nothing for ""."""

    def typed(value: Any) -> Any:
        cleaned = typed_extra(name, value)  # a DbtCloudConfigError is a ValueError: the form shows its message
        return "" if cleaned is None else cleaned

    return typed


class DbtCloudHook(BaseHook):
    """dbt Cloud access through an Airflow connection (default ``dbt_cloud_default``)."""

    conn_name_attr = "dbt_cloud_conn_id"
    default_conn_name = "dbt_cloud_default"
    conn_type = CONN_TYPE
    hook_name = "dbt Cloud (dlt-compatible)"

    def __init__(self, dbt_cloud_conn_id: str = default_conn_name, account_id: int | str | None = None) -> None:
        super().__init__()
        self.dbt_cloud_conn_id = dbt_cloud_conn_id
        self.account_id = account_id

    # --- credentials and clients --------------------------------------------------------------------

    @cached_property
    def credentials(self) -> DbtCloudCredentials:
        conn = self.get_connection(self.dbt_cloud_conn_id)
        credentials = connection_to_credentials(conn, conn.extra_dejson, self.account_id)
        mask_secret(credentials.api_token)
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
        conn = await get_async_connection(self.dbt_cloud_conn_id)
        # Connections fetched this way are already masked; a sync mask call here would block the loop.
        return connection_to_credentials(conn, await get_async_extra_dejson(conn), self.account_id)

    def get_conn(self) -> DbtCloudClient:
        """A sync API client (one ``requests.Session``); close it when done."""
        from .api.client import DbtCloudClient  # requests costs ~0.1 s, and DAG parsing imports this module

        return DbtCloudClient(self.credentials)

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
