"""Job routes: list jobs and get one."""

from __future__ import annotations

from airflow_dbt_cloud_dlt.testing import _api as api
from airflow_dbt_cloud_dlt.testing._api import Json
from airflow_dbt_cloud_dlt.testing.objects import by_field, job_obj
from airflow_dbt_cloud_dlt.testing.routes.base import INCLUDE, Request, Routes, list_filters
from airflow_dbt_cloud_dlt.testing.state import EmulatorState

_FILTERS = list_filters(
    "int: project_id environment_id pk; ints: project_id__in; str: name__icontains; strs: dbt_version__in; "
    "bool: is_system triggers_schedule is_fusion_ready"
)


def list_jobs(state: EmulatorState, req: Request) -> Json:
    q, account = api.parse_query(req.query, _FILTERS), req.account
    include = set(q.get("include_related", []))
    jobs = [job_obj(state, j, include) for j in state.jobs.values() if j.account_id == account]
    jobs = api.ordered([j for j in jobs if api.matches(j, q)], q, ["id", "name", "created_at"], by_field)
    return api.paged(jobs, q, lambda j: j, {"account_id": account}, "active")


def get_job(state: EmulatorState, req: Request) -> Json:
    q = api.parse_query(req.query, INCLUDE)
    job = state.job(req.account, req.params["job"])
    return api.ok(job_obj(state, job, set(q.get("include_related", []))))


ROUTES: Routes = [
    ("/api/v2/accounts/{account}/jobs/", "GET", list_jobs),
    ("/api/v2/accounts/{account}/jobs/{job}/", "GET", get_job),
]
