"""Watch a dbt Cloud job, whoever starts it (Airflow 3): DAGs scheduled on Assets fed by ``AssetWatcher``.

``DbtCloudJobRunWatcher`` runs on the triggerer and emits one asset event for each run of the job that
finishes, also runs started by dbt Cloud's own scheduler or by hand. Two DAGs use it:

- ``example_dbt_cloud_job_watcher`` runs after every finished run (success, error or cancelled);
- ``example_dbt_cloud_job_failure_alert`` runs only for failed runs (``statuses=["error", "cancelled"]``:
  dbt Cloud ends a run that timed out as cancelled), for alerting.

Each event's payload (in ``triggering_asset_events``, under ``extra["payload"]``) holds the run id, job id,
status, finished_at and the run's URL. Settings: ``DBT_CLOUD_CONN_ID``, ``DBT_CLOUD_JOB_ID`` and
``DBT_CLOUD_POLL_INTERVAL`` (seconds between listings; all watchers of one account share each listing).

On Airflow 2 this file defines no DAG: event-driven scheduling (``AssetWatcher``) is Airflow 3 only.
"""

from __future__ import annotations

import os

try:  # Airflow 3
    from airflow.sdk import Asset, AssetWatcher, dag, task
except ImportError:  # Airflow 2.11: nothing to define
    AssetWatcher = None

CONN_ID = os.environ.get("DBT_CLOUD_CONN_ID", "dbt_cloud_default")
JOB_ID = int(os.environ.get("DBT_CLOUD_JOB_ID", "1"))
POLL_INTERVAL = float(os.environ.get("DBT_CLOUD_POLL_INTERVAL", "30"))

if AssetWatcher is not None:
    from airflow_dbt_cloud_dlt.triggers import DbtCloudJobRunWatcher

    job_runs = Asset(
        f"dbt_cloud_job_{JOB_ID}_runs",
        watchers=[
            AssetWatcher(
                name=f"dbt_cloud_job_{JOB_ID}_runs",
                trigger=DbtCloudJobRunWatcher(CONN_ID, JOB_ID, poll_interval=POLL_INTERVAL),
            )
        ],
    )
    job_failures = Asset(
        f"dbt_cloud_job_{JOB_ID}_failures",
        watchers=[
            AssetWatcher(
                name=f"dbt_cloud_job_{JOB_ID}_failures",
                trigger=DbtCloudJobRunWatcher(
                    CONN_ID, JOB_ID, statuses=["error", "cancelled"], poll_interval=POLL_INTERVAL
                ),
            )
        ],
    )

    def payloads(triggering_asset_events: dict) -> list[dict]:
        """The watcher's payloads among the events that started this DAG run."""
        return [
            event.extra["payload"]
            for events in triggering_asset_events.values()
            for event in events
            if event.extra.get("from_trigger")
        ]

    @dag(schedule=[job_runs], catchup=False, tags=["dbt-cloud", "example"])
    def example_dbt_cloud_job_watcher() -> None:
        @task
        def report(triggering_asset_events: dict | None = None) -> list[dict]:
            runs = payloads(triggering_asset_events or {})
            for run in runs:
                print(f"dbt Cloud run {run['run_id']} of job {run['job_id']} ended {run['status']}: {run['run_url']}")
            return runs

        report()

    @dag(schedule=[job_failures], catchup=False, tags=["dbt-cloud", "example"])
    def example_dbt_cloud_job_failure_alert() -> None:
        @task
        def alert(triggering_asset_events: dict | None = None) -> None:
            for run in payloads(triggering_asset_events or {}):
                # Send it where your team looks: Slack, PagerDuty, e-mail ...
                print(f"ALERT: dbt Cloud job {run['job_id']} run {run['run_id']} {run['status']}: {run['run_url']}")

        alert()

    example_dbt_cloud_job_watcher()
    example_dbt_cloud_job_failure_alert()
