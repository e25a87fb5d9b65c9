"""The dbt Cloud API layer. It knows nothing of Airflow."""

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
    DbtCloudRunFailedError,
    DbtCloudRunTimeoutError,
    DbtCloudServerError,
    DbtCloudValidationError,
)
from .models import RunStatus, run_summary
from .waiting import wait_for_run

__all__ = [
    "DbtCloudAuthError", "DbtCloudBadResponseError", "DbtCloudClient", "DbtCloudConfigError",
    "DbtCloudConnectionError", "DbtCloudCredentials", "DbtCloudError", "DbtCloudNotFoundError",
    "DbtCloudPermissionError", "DbtCloudRateLimitError", "DbtCloudRunFailedError", "DbtCloudRunTimeoutError",
    "DbtCloudServerError", "DbtCloudValidationError", "RetryPolicy", "RunStatus", "normalize_base_url",
    "resolve_credentials", "run_summary", "validate_id", "wait_for_run",
]  # fmt: skip
