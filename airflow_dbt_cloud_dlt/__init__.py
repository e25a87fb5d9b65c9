"""Trigger and monitor dbt Cloud job runs from Airflow, or from any Python script.

Importing this package, or the two helpers, never imports Airflow. The helpers load on first use, so
Airflow's provider discovery (which imports this package at every start) pays almost nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .helpers import get_dbt_cloud_run_status, run_dbt_cloud_job

__all__ = ["__version__", "get_dbt_cloud_run_status", "run_dbt_cloud_job"]


def __getattr__(name: str) -> Any:
    if name in ("run_dbt_cloud_job", "get_dbt_cloud_run_status"):
        from . import helpers

        return getattr(helpers, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
