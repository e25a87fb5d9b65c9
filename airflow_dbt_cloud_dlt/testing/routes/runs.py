"""Run routes: trigger and rerun a job, get, list and cancel runs."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from airflow_dbt_cloud_dlt.testing import _api as api
from airflow_dbt_cloud_dlt.testing._api import ApiError, Json
from airflow_dbt_cloud_dlt.testing.objects import RUN_CONST, run_obj
from airflow_dbt_cloud_dlt.testing.routes.base import INCLUDE, Request, Routes, list_filters
from airflow_dbt_cloud_dlt.testing.scripts import STATUS_HUMANIZED
from airflow_dbt_cloud_dlt.testing.state import EmulatorState, Run

_FILTERS = list_filters(
    "int: job_definition_id environment_id project_id status pk id__gt deferring_run_id; "
    "ints: project_id__in status__in pk__in; str: dbt_version; strs: dbt_version__in; "
    "bool: has_docs_generated has_sources_generated"
)
_CREATED = {"trigger", "job"}  # observed live: a trigger's answer includes the trigger and the job


def trigger(state: EmulatorState, req: Request) -> Json:
    job = state.job(req.account, req.params["job"])
    if "application/x-www-form-urlencoded" in req.ctype:
        data: Any = api.form_to_trigger(parse_qs(req.body.decode(errors="replace"), keep_blank_values=True))
    elif req.ctype and "json" not in req.ctype:
        raise ApiError(415, {"detail": f'Unsupported media type "{req.ctype}" in request.'})
    else:
        try:
            data = json.loads(req.body) if req.body.strip() else {}
        except ValueError as exc:
            raise api.invalid(f"JSON parse error - {exc}") from None
    run = state.create_run(job, api.validate_trigger(data), "api")
    return api.ok(run_obj(state, run, state.now(), _CREATED))


def rerun(state: EmulatorState, req: Request) -> Json:
    """Rerun from the point of failure when the job's latest run failed; a plain trigger otherwise."""
    job = state.job(req.account, req.params["job"])
    runs = state.job_runs.get(job.job_id, [])
    if runs and state.phase(runs[-1], state.now()).status == 20:
        failed = runs[-1]
        cause = {"cause": f"Rerun of run {failed.id} from point of failure"}
        run = state.create_run(job, failed.trigger | cause, "rerun", retrying=failed.id)
    else:
        run = state.create_run(job, {"cause": "API"}, "api")
    return api.ok(run_obj(state, run, state.now(), _CREATED))


def get_run(state: EmulatorState, req: Request) -> Json:
    q = api.parse_query(req.query, INCLUDE)
    run = state.run(req.account, req.params["run"])
    return api.ok(run_obj(state, run, state.now(), set(q.get("include_related", []))))


def cancel(state: EmulatorState, req: Request) -> Json:
    run = state.cancel(state.run(req.account, req.params["run"]).id)
    return api.ok(run_obj(state, run, state.now(), set()))


def list_runs(state: EmulatorState, req: Request) -> Json:
    q, now, account = api.parse_query(req.query, _FILTERS), state.now(), req.account
    bad = [s for s in [q.get("status", 1), *q.get("status__in", [])] if s not in STATUS_HUMANIZED]
    if bad:
        name = "status" if q.get("status", 1) not in STATUS_HUMANIZED else "status__in"
        raise api.invalid({name: f"'{bad[0]}' is not valid under any of the given schemas"})
    if "pk" in q or "pk__in" in q:  # look runs up by id
        ids = {q["pk"]} if "pk" in q else set(q["pk__in"])
        candidates = [state.runs[i] for i in sorted(ids) if i in state.runs]
    elif "job_definition_id" in q:
        candidates = state.job_runs.get(q["job_definition_id"], [])
    else:
        candidates = state.account_runs.get(account, [])
    with_status = "status" in q or "status__in" in q

    def view(r: Run) -> Json:  # what the filters look at; status only when filtered on (it costs)
        j, status = r.job, state.phase(r, now).status if with_status else None
        ids = {"id": r.id, "job_definition_id": j.job_id, "environment_id": j.environment_id}
        return RUN_CONST | ids | {"project_id": j.project_id, "dbt_version": j.dbt_version, "status": status}

    runs = [r for r in candidates if r.job.account_id == account and api.matches(view(r), q)]

    def key(r: Run, name: str) -> Any:  # finished_at: NULLS LAST ascending, NULLS FIRST descending (Postgres)
        finished = state.phase(r, now).finished if name == "finished_at" else 0.0
        return (1, r.id) if finished is None else (0, finished, r.id)

    runs = api.ordered(runs, q, ["id", "created_at", "finished_at"], key)
    include = set(q.get("include_related", []))
    return api.paged(runs, q, lambda r: run_obj(state, r, now, include), {"account_id": account}, "all")


ROUTES: Routes = [
    ("/api/v2/accounts/{account}/jobs/{job}/run/", "POST", trigger),
    ("/api/v2/accounts/{account}/jobs/{job}/rerun/", "POST", rerun),
    ("/api/v2/accounts/{account}/runs/", "GET", list_runs),
    ("/api/v2/accounts/{account}/runs/{run}/", "GET", get_run),
    ("/api/v2/accounts/{account}/runs/{run}/cancel/", "POST", cancel),
]
