"""The dlt-compatible helpers: same signatures, defaults and return values as ``dlt.helpers.dbt_cloud``.

Differences, all deliberate: ``data`` really reaches the API (dlt drops it), the host is configurable
(``base_url``), a keyword-only ``timeout`` bounds the wait, and API errors raise typed errors.
Like dlt, a run that ends in error is returned, not raised.
"""

from __future__ import annotations

from typing import Any

from .api.client import DbtCloudClient
from .api.core import build_trigger_body, log
from .api.credentials import CredentialsLike, resolve_credentials, validate_id
from .api.errors import DbtCloudConfigError, DbtCloudError
from .api.waiting import wait_for_run


def _pick_id(given: int | str | None, configured: int | None, name: str) -> int:
    value = given if given not in (None, "") else configured
    if value is None:
        raise DbtCloudConfigError(
            f"No dbt Cloud {name}: pass {name}=... or set DBT_CLOUD__{name.upper()} (or {name} in the credentials)."
        )
    return validate_id(value, name)


def run_dbt_cloud_job(
    credentials: CredentialsLike = None,
    job_id: int | str | None = None,
    data: dict[Any, Any] | None = None,
    wait_for_outcome: bool = True,
    wait_seconds: int = 10,
    *,
    timeout: float | None = None,
) -> dict[Any, Any]:
    """Trigger a dbt Cloud job run and return the run's status dict.

    With ``wait_for_outcome`` it polls every ``wait_seconds`` until the run is terminal; ``timeout`` (seconds)
    raises :class:`~airflow_dbt_cloud_dlt.api.errors.DbtCloudRunTimeoutError` when it runs out.
    """
    creds = resolve_credentials(credentials)
    job = _pick_id(job_id, creds.job_id, "job_id")
    with DbtCloudClient(creds) as client:
        run = client.trigger_job_run(job, build_trigger_body(creds, data))
        if wait_for_outcome:
            return wait_for_run(client, run["id"], poll_interval=wait_seconds, timeout=timeout)
        try:
            return client.get_run(run["id"])  # dlt returns the run as read after the trigger
        except DbtCloudError as error:  # the run started: an error here must not invite a second trigger
            log.warning(
                "Run %s started, but reading it back failed (%s); returning the trigger's answer.", run["id"], error
            )
            return run


def get_dbt_cloud_run_status(
    credentials: CredentialsLike = None,
    run_id: int | str | None = None,
    wait_for_outcome: bool = True,
    wait_seconds: int = 10,
    *,
    timeout: float | None = None,
) -> dict[Any, Any]:
    """Return a dbt Cloud run's status dict, after waiting for it to finish when ``wait_for_outcome``."""
    creds = resolve_credentials(credentials)
    run = _pick_id(run_id, creds.run_id, "run_id")
    with DbtCloudClient(creds) as client:
        if wait_for_outcome:
            return wait_for_run(client, run, poll_interval=wait_seconds, timeout=timeout)
        return client.get_run(run)
