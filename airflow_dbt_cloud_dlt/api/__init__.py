"""The dbt Cloud API layer. It knows nothing of Airflow.

Names load on first use, so that a module needing only credentials or errors (the trigger, at DAG-parse
time) does not pay for ``requests`` and ``tenacity``.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .client import DbtCloudClient
    from .core import RetryPolicy
    from .credentials import DbtCloudCredentials, normalize_base_url, resolve_credentials, validate_id
    from .errors import (
        DbtCloudAuthError,
        DbtCloudBadResponseError,
        DbtCloudConfigError,
        DbtCloudConnectionError,
        DbtCloudError,
        DbtCloudNotFoundError,
        DbtCloudPermissionError,
        DbtCloudRateLimitError,
        DbtCloudRunTimeoutError,
        DbtCloudServerError,
        DbtCloudValidationError,
    )
    from .events import RunEvent
    from .idempotency import trigger_once
    from .models import RunStatus, run_summary
    from .waiting import wait_for_run

__all__ = [
    "DbtCloudAuthError",
    "DbtCloudBadResponseError",
    "DbtCloudClient",
    "DbtCloudConfigError",
    "DbtCloudConnectionError",
    "DbtCloudCredentials",
    "DbtCloudError",
    "DbtCloudNotFoundError",
    "DbtCloudPermissionError",
    "DbtCloudRateLimitError",
    "DbtCloudRunTimeoutError",
    "DbtCloudServerError",
    "DbtCloudValidationError",
    "RetryPolicy",
    "RunEvent",
    "RunStatus",
    "normalize_base_url",
    "resolve_credentials",
    "run_summary",
    "trigger_once",
    "validate_id",
    "wait_for_run",
]
_WHERE = {
    **{name: "errors" for name in __all__ if name.endswith("Error")},
    "DbtCloudClient": "client",
    "RetryPolicy": "core",
    "DbtCloudCredentials": "credentials",
    "normalize_base_url": "credentials",
    "resolve_credentials": "credentials",
    "validate_id": "credentials",
    "RunStatus": "models",
    "run_summary": "models",
    "wait_for_run": "waiting",
    "RunEvent": "events",
    "trigger_once": "idempotency",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
