"""A local dbt Cloud Admin API emulator for tests and benchmarks (a real HTTP(S) server on loopback).

It never imports Airflow nor this package's own API client::

    from airflow_dbt_cloud_dlt.testing import DbtCloudEmulator, JobScript

    with DbtCloudEmulator(accounts={1: "tok"}) as emu:
        emu.add_job(JobScript(job_id=42, outcome="error", run_seconds=0.5))
        ...  # point a client at emu.base_url
"""

from __future__ import annotations

from airflow_dbt_cloud_dlt.testing.emulator import (
    FAULT_KINDS,
    DbtCloudEmulator,
    Faults,
    JobScript,
    RequestRecord,
    StepScript,
)

__all__ = ["FAULT_KINDS", "DbtCloudEmulator", "Faults", "JobScript", "RequestRecord", "StepScript"]
