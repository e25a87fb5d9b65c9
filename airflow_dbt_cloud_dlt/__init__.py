"""Trigger and monitor dbt Cloud job runs from Airflow, or from any Python script.

Importing this package (and the two helpers) does not import Airflow.
"""

from ._version import __version__
from .helpers import get_dbt_cloud_run_status, run_dbt_cloud_job

__all__ = ["__version__", "get_dbt_cloud_run_status", "run_dbt_cloud_job"]
