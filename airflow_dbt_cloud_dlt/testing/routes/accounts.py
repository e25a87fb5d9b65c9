"""Account, project and environment routes (v2 accounts, v3 projects and environments)."""

from __future__ import annotations

from airflow_dbt_cloud_dlt.testing import _api as api
from airflow_dbt_cloud_dlt.testing._api import Json
from airflow_dbt_cloud_dlt.testing.objects import account_obj, by_field, env_obj, project_obj
from airflow_dbt_cloud_dlt.testing.routes.base import INCLUDE, Request, Routes, list_filters
from airflow_dbt_cloud_dlt.testing.state import EmulatorState

_PROJECT_FILTERS = list_filters("int: pk pk__gt; ints: pk__in; str: name__icontains")
_ENV_FILTERS = list_filters(
    "int: pk id__gt credentials_id project_id; ints: pk__in project_id__in; "
    "str: name name__icontains deployment_type type dbt_version; strs: dbt_version__in deployment_type__in"
)


def list_accounts(state: EmulatorState, req: Request) -> Json:
    api.parse_query(req.query, api.PAGING)
    accounts = sorted(req.accounts)
    extra = {"filters": {"limit": api.MAX_LIMIT, "offset": 0}, "order_by": "id"}
    pagination = {"count": len(accounts), "total_count": len(accounts)}
    return api.ok([account_obj(state, a) for a in accounts], extra | {"pagination": pagination})


def get_account(state: EmulatorState, req: Request) -> Json:
    api.parse_query(req.query, INCLUDE)
    return api.ok(account_obj(state, req.account))


def list_projects(state: EmulatorState, req: Request) -> Json:
    q, account = api.parse_query(req.query, _PROJECT_FILTERS), req.account
    projects = [project_obj(state, account, p) for p in state.first_job(account, "project_id")]
    found = api.ordered([p for p in projects if p and api.matches(p, q)], q, ["id", "name"], by_field)
    return api.paged(found, q, lambda p: p, {"account_id": account}, "active")


def get_project(state: EmulatorState, req: Request) -> Json:
    api.parse_query(req.query, INCLUDE)
    project = project_obj(state, req.account, req.params["project"])
    if project is None:
        raise api.not_found()
    return api.ok(project)


def list_environments(state: EmulatorState, req: Request) -> Json:
    q, account, project = api.parse_query(req.query, _ENV_FILTERS), req.account, req.params["project"]
    if project_obj(state, account, project) is None:
        raise api.not_found()
    envs = [env_obj(state, account, e) for e in state.first_job(account, "environment_id")]
    envs = [e for e in envs if e and e["project_id"] == project and api.matches(e, q)]
    envs = api.ordered(envs, q, ["id", "name"], by_field)
    return api.paged(envs, q, lambda e: e, {"account_id": account, "project_id": project}, "active")


def get_environment(state: EmulatorState, req: Request) -> Json:
    api.parse_query(req.query, INCLUDE)
    env = env_obj(state, req.account, req.params["env"])
    if env is None or env["project_id"] != req.params["project"]:
        raise api.not_found()
    return api.ok(env)


ROUTES: Routes = [
    ("/api/v2/accounts/", "GET", list_accounts),
    ("/api/v2/accounts/{account}/", "GET", get_account),
    ("/api/v3/accounts/{account}/projects/", "GET", list_projects),
    ("/api/v3/accounts/{account}/projects/{project}/", "GET", get_project),
    ("/api/v3/accounts/{account}/projects/{project}/environments/", "GET", list_environments),
    ("/api/v3/accounts/{account}/projects/{project}/environments/{env}/", "GET", get_environment),
]
