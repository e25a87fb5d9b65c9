"""This package's Airflow plugin (entry point ``airflow.plugins``): it starts the orphaned-run reconciler
(:mod:`.orphans`) in every triggerer. It imports nothing heavy: Airflow loads plugins in every component."""

from __future__ import annotations

from typing import Any

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin


class _Lifecycle:
    """Airflow calls ``on_starting`` when a job (scheduler, triggerer, ...) is created."""

    @hookimpl
    def on_starting(self, component: Any) -> None:
        from airflow.jobs.job import Job

        if isinstance(component, Job):  # the job type is set just after this call; the thread checks it
            from .orphans import Reconciler

            Reconciler(component).start()


class DbtCloudDltPlugin(AirflowPlugin):
    name = "airflow_dbt_cloud_dlt"
    listeners = [_Lifecycle()]
