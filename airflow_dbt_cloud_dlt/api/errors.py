"""Typed errors of the dbt Cloud API layer. No message ever contains the API token."""

from __future__ import annotations

from typing import Any


class DbtCloudError(Exception):
    """Base class of every error raised by this package."""

    transient = False

    def __init__(self, message: str, *, status_code: int | None = None, path: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.path = path


class DbtCloudConfigError(DbtCloudError, ValueError):
    """Bad input found before any request was sent: a missing token, a bad id, a malformed host."""


class DbtCloudAuthError(DbtCloudError):
    """401: the token was refused."""


class DbtCloudPermissionError(DbtCloudError):
    """403: the token is valid but may not use this account or object."""


class DbtCloudNotFoundError(DbtCloudError):
    """404: the account, job or run does not exist, or the token may not see it."""


class DbtCloudValidationError(DbtCloudError):
    """400: dbt Cloud rejected the request's fields; ``field_errors`` holds its per-field messages."""

    def __init__(self, message: str, *, field_errors: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.field_errors = field_errors or {}


class DbtCloudRateLimitError(DbtCloudError):
    """429: the account's request budget is used up; ``retry_after`` is the wait the server asked for."""

    transient = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class DbtCloudServerError(DbtCloudError):
    """5xx: dbt Cloud (or a proxy in front of it) failed."""

    transient = True


class DbtCloudBadResponseError(DbtCloudError):
    """The answer was not the JSON envelope that dbt Cloud sends."""

    transient = True


class DbtCloudConnectionError(DbtCloudError):
    """No answer: the host could not be reached, the connection broke or the request timed out.

    ``request_sent`` is False only when the request certainly never reached the server (connect failed),
    which is what makes a trigger POST safe to send again.
    """

    transient = True

    def __init__(self, message: str, *, request_sent: bool = True, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.request_sent = request_sent


class DbtCloudRunTimeoutError(DbtCloudError, TimeoutError):
    """Waiting for a run took longer than the allowed timeout. The run itself may still be going."""

    def __init__(self, message: str, *, run_id: int, run: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.run = run
