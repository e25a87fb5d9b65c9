"""Artifact routes: list a run's artifacts, serve one raw file, and a job's latest artifact.

A finished run serves ``run_results.json`` (the script's, or the generated one of a failed dbt step) and a
small ``manifest.json``; a run without run results has none (the list's ``data`` is null, as observed live).
A job scripted with ``project=True`` serves the example project's artifacts of each dbt step instead.
"""

from __future__ import annotations

import json

from airflow_dbt_cloud_dlt.testing import _api as api
from airflow_dbt_cloud_dlt.testing._api import Json, fields
from airflow_dbt_cloud_dlt.testing._http import Streamed
from airflow_dbt_cloud_dlt.testing.dbt_output import (
    failed_run_results,
    has_run_results,
    project_artifacts,
    serves_project,
)
from airflow_dbt_cloud_dlt.testing.routes.base import Request, Routes
from airflow_dbt_cloud_dlt.testing.state import EmulatorState, Run

_QUERY = api.params(include="include_related", int="step")
MANIFEST_SCHEMA = "https://schemas.getdbt.com/dbt/manifest/v12.json"


def artifacts(state: EmulatorState, run: Run, step: int | None = None) -> dict[str, bytes | Streamed]:
    """The run's files by name once it succeeded or failed with run results; ``step`` must be one of its steps.
    The job's ``artifact_sizes`` add generated files of those sizes, streamed as they are sent."""
    st = state.phase(run, state.now())
    if st.status not in (10, 20) or not has_run_results(run, st.status):
        return {}
    if step is not None and not 1 <= step <= len(run.ran_steps()):  # a failed run's later steps never ran
        return {}
    finished = state.wall(st.finished, "T")
    if serves_project(run):
        return _replaced(run, dict(project_artifacts(run, step, finished)))
    results = run.job.run_results if run.job.run_results is not None else failed_run_results(run, finished)
    metadata: Json = {"dbt_schema_version": MANIFEST_SCHEMA, "generated_at": finished, "invocation_id": str(run.id)}
    manifest = {"metadata": metadata} | fields({}, "nodes sources macros exposures metrics")
    files: dict[str, bytes | Streamed] = {"manifest.json": json.dumps(manifest).encode()}
    files["run_results.json"] = json.dumps(results).encode()
    return _replaced(run, files | {path: Streamed(size) for path, size in run.job.artifact_sizes.items()})


def _replaced(run: Run, files: dict[str, bytes | Streamed]) -> dict[str, bytes | Streamed]:
    """The job's ``files`` overrides applied to a step that has artifacts (text replaces, None removes)."""
    if not files:
        return files
    for path, text in run.job.files.items():
        if text is None:
            files.pop(path, None)
        else:
            files[path] = text.encode()
    return files


def list_artifacts(state: EmulatorState, req: Request) -> Json:
    q = api.parse_query(req.query, _QUERY)
    names = sorted(artifacts(state, state.run(req.account, req.params["run"]), q.get("step")))
    return api.ok(names or None)


def get_artifact(state: EmulatorState, req: Request) -> bytes | Streamed:
    q = api.parse_query(req.query, _QUERY)
    files = artifacts(state, state.run(req.account, req.params["run"]), q.get("step"))
    if req.params["path"] not in files:
        raise api.not_found()
    return files[req.params["path"]]


def job_artifact(state: EmulatorState, req: Request) -> bytes | Streamed:
    """The file from the job's latest run that has it."""
    q = api.parse_query(req.query, _QUERY)
    for run in reversed(state.job_runs.get(state.job(req.account, req.params["job"]).job_id, [])):
        files = artifacts(state, run, q.get("step"))
        if req.params["path"] in files:
            return files[req.params["path"]]
    raise api.not_found()


ROUTES: Routes = [
    ("/api/v2/accounts/{account}/jobs/{job}/artifacts/{path}", "GET", job_artifact),
    ("/api/v2/accounts/{account}/runs/{run}/artifacts/", "GET", list_artifacts),
    ("/api/v2/accounts/{account}/runs/{run}/artifacts/{path}", "GET", get_artifact),
]
