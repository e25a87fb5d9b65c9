"""The Airflow hook: an Airflow connection in, dbt Cloud credentials and clients out.

This is the only module that reads Airflow connections and masks secrets. Connections in the official
provider's format work unchanged: host = access URL or tenant, login = account id, password = token,
extra ``proxies``. Extras may also set ``job_id``, ``project_id``, ``environment_id``, ``timeout`` and
``verify`` (true, false, or a CA bundle path).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from functools import cached_property
from typing import TYPE_CHECKING, Any

from ._compat import BaseHook, mask_secret
from .api.credentials import DbtCloudCredentials, credentials_from_mapping
from .api.errors import DbtCloudError
from .provider_info import CONN_FIELDS, CONN_TYPE, UI_FIELD_BEHAVIOUR

if TYPE_CHECKING:
    from .api.aio import AsyncDbtCloudClient
    from .api.client import DbtCloudClient

#: Seconds that triggers in one process share a connection lookup (a rotated token is seen after this).
CREDENTIALS_TTL = 30.0
_SHARED_CREDENTIALS: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, str], tuple[float, asyncio.Future[DbtCloudCredentials]]]
] = weakref.WeakKeyDictionary()
_EXTRA_FIELDS = ("job_id", "project_id", "environment_id", "timeout", "proxies", "verify")


def connection_to_credentials(
    conn: Any, extra: dict[str, Any], account_id: int | str | None = None
) -> DbtCloudCredentials:
    """Map an Airflow connection (and its parsed extra) to credentials; ``account_id`` wins over login."""
    host = (conn.host or "").strip()
    if host and conn.port and "://" not in host and ":" not in host:
        host = f"{host}:{conn.port}"
    values: dict[str, Any] = {
        "api_token": conn.password,
        "account_id": account_id if account_id not in (None, "") else conn.login,
        "base_url": host or None,
    }
    for name in _EXTRA_FIELDS:
        # Airflow 2 forms once stored widget fields as "extra__<conn_type>__<name>".
        value = extra.get(name, extra.get(f"extra__{CONN_TYPE}__{name}"))
        if value not in (None, ""):
            values[name] = value
    return credentials_from_mapping(values)


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
        from airflow.providers.common.compat.connection import get_async_connection, get_async_extra_dejson

        conn = await get_async_connection(self.dbt_cloud_conn_id)
        # Connections fetched this way are already masked; a sync mask call here would block the loop.
        return connection_to_credentials(conn, await get_async_extra_dejson(conn), self.account_id)

    def get_conn(self) -> DbtCloudClient:
        """A sync API client (one ``requests.Session``); close it when done."""
        from .api.client import DbtCloudClient

        return DbtCloudClient(self.credentials)

    async def get_async_client(self) -> AsyncDbtCloudClient:
        """An async API client over the process's pooled HTTP connections."""
        from .api.aio import AsyncDbtCloudClient

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
        from .helpers import run_dbt_cloud_job

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
        from .helpers import get_dbt_cloud_run_status

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
        """Extra form fields for Airflow 2's connection form."""
        from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
        from wtforms import StringField

        return {
            name: StringField(spec["label"], widget=BS3TextFieldWidget(), description=spec.get("description", ""))
            for name, spec in CONN_FIELDS.items()
        }
