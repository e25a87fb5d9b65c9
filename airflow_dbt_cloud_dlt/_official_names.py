"""The official provider's hook-module names that tasks need when their module is imported.

``hooks`` re-exports them (``airflow.providers.dbt.cloud.hooks.dbt`` has them there). They live apart so that
importing the operators, the sensor or the trigger at DAG parse does not load the hook and the API core.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

from ._compat import AirflowException
from .api.models import RunStatus


class DbtCloudJobRunStatus(Enum):
    """dbt Cloud job run statuses, as in the official provider (``api.models.RunStatus`` is this package's)."""

    QUEUED = RunStatus.QUEUED.value
    STARTING = RunStatus.STARTING.value
    RUNNING = RunStatus.RUNNING.value
    SUCCESS = RunStatus.SUCCESS.value
    ERROR = RunStatus.ERROR.value
    CANCELLED = RunStatus.CANCELLED.value
    NON_TERMINAL_STATUSES = (QUEUED, STARTING, RUNNING)
    TERMINAL_STATUSES = (SUCCESS, ERROR, CANCELLED)

    @classmethod
    def check_is_valid(cls, statuses: int | Sequence[int] | set[int]) -> None:
        """Raise a ValueError for a status that is not a known value."""
        for status in statuses if isinstance(statuses, Sequence | set) else [statuses]:
            cls(status)

    @classmethod
    def is_terminal(cls, status: int) -> bool:
        """Whether ``status`` is final: success, error or cancelled."""
        cls.check_is_valid(statuses=status)
        return status in cls.TERMINAL_STATUSES.value


class DbtCloudJobRunException(AirflowException):
    """A job run ended in a status other than the expected one, or did not reach it in time."""


class DbtCloudResourceLookupError(AirflowException):
    """A project, environment or job looked up by name is not there, or is there more than once."""
