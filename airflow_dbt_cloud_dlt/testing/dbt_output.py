"""What a dbt invocation leaves behind in a run: the failing step's log, and ``run_results.json`` (schema v6).

A run that fails in a step invoking dbt looks like a real failed run: the step log ends with dbt's error
block and ``Done. PASS=n WARN=0 ERROR=1 SKIP=m TOTAL=t``, and, unless the script gives its own
``run_results``, the run serves a generated ``run_results.json`` that lists the failed node (named after
the run's status message), the nodes that succeeded before it and the one skipped after it.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any

from airflow_dbt_cloud_dlt.testing._api import Json
from airflow_dbt_cloud_dlt.testing.project import (
    COMMAND_TYPES,
    Project,
    SelectionError,
    example_project,
    parse_dbt_command,
)
from airflow_dbt_cloud_dlt.testing.state import DEFAULT_ERROR_MESSAGE, Run, command, status_message

RUN_RESULTS_SCHEMA = "https://schemas.getdbt.com/dbt/run-results/v6.json"
DBT_VERSION = "1.9.0"
PASSED = ("stg_customers", "stg_orders")  # built before the failing node
SKIPPED = ("fct_orders",)  # downstream of it
_FAILED_NODE = re.compile(r"in (\w+) (\w+) \(([^)]+)\)")  # "... Error in model my_model (models/my_model.sql)"
_TIMES = {"success": 0.2, "error": 0.3, "skipped": 0.0}


@dataclass(frozen=True)
class Failure:
    """The node a failed dbt invocation stopped at, and dbt's message for it."""

    resource_type: str
    name: str
    path: str
    message: str  # multi-line, as dbt writes it in run_results.json and the log


def fails_in_dbt(run: Run) -> bool:
    """Whether ``run`` is scripted to fail in a step that invokes dbt (not in, say, the git clone)."""
    return run.outcome == "error" and command(run.ran_steps()[-1].name).startswith("dbt")


def has_run_results(run: Run, status: int) -> bool:
    """Whether the run has a ``run_results.json`` once it ends with ``status``."""
    if serves_project(run):
        return status in (10, 20) and any(building_command(run, i) for i in range(1, len(run.ran_steps()) + 1))
    return run.job.run_results is not None or (status == 20 and fails_in_dbt(run))


# --- the example project's artifacts (JobScript(project=True)) ------------------------------------------------


@functools.cache
def _project() -> Project:
    return example_project()


def serves_project(run: Run) -> bool:
    """Whether the run's artifacts are the example project's (and not a scripted ``run_results``)."""
    return run.job.project and run.job.run_results is None


def building_command(run: Run, step: int) -> str | None:
    """The dbt command of step ``step`` (1 is the first) when it builds or tests nodes, else None."""
    steps = run.ran_steps()
    if not 1 <= step <= len(steps):
        return None
    invocation = command(steps[step - 1].name)
    try:
        which = parse_dbt_command(invocation)[0]
    except SelectionError:
        return None
    return invocation if invocation.startswith("dbt ") and which in COMMAND_TYPES else None


def _failing_nodes(run: Run, invocation: str) -> list[str]:
    """The scripted failing nodes; else the node the status message names, or the step's last built node."""
    if run.job.failing_nodes:
        return list(run.job.failing_nodes)
    project, named = _project(), failure(run).name
    if any(node.name == named for node in project.nodes.values()):
        return [named]
    which, select, exclude = parse_dbt_command(invocation)
    built = [uid for uid in project.executed(which, select, exclude) if project.nodes[uid].resource_type != "test"]
    return [project.nodes[built[-1]].name] if built else []


def project_artifacts(run: Run, step: int | None, finished_at: str | None) -> dict[str, bytes]:
    """``manifest.json`` and ``run_results.json`` of one step (default: the last that ran), as dbt writes them."""
    steps = run.ran_steps()
    index = step or len(steps)
    invocation = building_command(run, index)
    if invocation is None:
        return {}
    failing = _failing_nodes(run, invocation) if run.outcome == "error" and index == len(steps) else []
    project = _project()
    results = project.run_results(invocation, generated_at=finished_at, invocation_id=str(run.id), failing=failing)
    manifest = project.manifest(generated_at=finished_at, invocation_id=str(run.id))
    return {"manifest.json": json.dumps(manifest).encode(), "run_results.json": json.dumps(results).encode()}


def failure(run: Run) -> Failure:
    """The failed node, read from the run's error message (dbt Cloud's default names ``my_model``)."""
    title = status_message(run, 20) or DEFAULT_ERROR_MESSAGE
    found = _FAILED_NODE.search(title)
    resource_type, name, path = found.groups() if found else ("model", "my_model", "models/my_model.sql")
    lines = [title, *(["  division by zero"] if run.job.status_message is None else [])]
    lines.append(f"  compiled code at target/run/{run.job.project_name}/{path}")
    return Failure(resource_type, name, path, "\n".join(lines))


def _nodes(fail: Failure, run: Run | None = None) -> list[tuple[str, str]]:
    """(name, status) of every node of the failed invocation, in execution order: the example project's
    results of the failing step for a ``project`` job, else a fixed pair around the failed node."""
    if run is not None and serves_project(run):
        results = json.loads(project_artifacts(run, None, None).get("run_results.json", b"{}")).get("results", [])
        status = {"success": "success", "pass": "success", "error": "error", "fail": "error", "skipped": "skipped"}
        return [(r["unique_id"].split(".")[2], status.get(r["status"], "skipped")) for r in results]
    passed = [(name, "success") for name in PASSED if name != fail.name]
    skipped = [(name, "skipped") for name in SKIPPED if name != fail.name]
    return [*passed, (fail.name, "error"), *skipped]


def failing_step_log(run: Run, scripted: str, explicit: bool) -> str:
    """The log of the step that failed the run.

    ``explicit`` (the step is scripted with ``outcome="error"``) keeps non-empty scripted logs as they are.
    A dbt step gets its scripted lines, minus dbt's ``Done.`` summary, and then dbt's error output.
    """
    if explicit and scripted:
        return scripted
    if not fails_in_dbt(run):
        return scripted or status_message(run, 20) or ""
    fail, schema = failure(run), run.job.environment_name
    lines = [line for line in scripted.splitlines() if not line.startswith("Done.")]
    if not any(line.startswith("Running with dbt=") for line in lines):
        lines.insert(0, f"Running with dbt={DBT_VERSION}")
    nodes = _nodes(fail, run)
    for i, (name, status) in enumerate(nodes, 1):
        relation = f"{schema}.{name}"
        text = {
            "success": f"OK created sql view model {relation} [OK in {_TIMES[status]:.2f}s]",
            "error": f"ERROR creating sql table model {relation} [ERROR in {_TIMES[status]:.2f}s]",
            "skipped": f"SKIP relation {relation} due to an upstream error [SKIP]",
        }[status]
        lines.append(f"{i} of {len(nodes)} {text}")
    passed = sum(status == "success" for _, status in nodes)
    skipped = sum(status == "skipped" for _, status in nodes)
    errors = sum(status == "error" for _, status in nodes)
    lines += ["", f"Completed with {errors} error{'s' * (errors != 1)} and 0 warnings:", "", fail.message, ""]
    lines.append(f"Done. PASS={passed} WARN=0 ERROR={errors} SKIP={skipped} TOTAL={len(nodes)}")
    return "\n".join(lines)


def failed_run_results(run: Run, finished_at: str | None) -> Json:
    """A dbt schema v6 ``run_results.json`` for a run that failed in a dbt step."""
    fail, project, schema = failure(run), run.job.project_name, run.job.environment_name
    results: list[Json] = []
    for name, status in _nodes(fail):
        took = _TIMES[status]
        timing = [
            {"name": step, "started_at": finished_at, "completed_at": finished_at} for step in ("compile", "execute")
        ]
        adapter: dict[str, Any] = {"_message": "OK", "code": "CREATE VIEW", "rows_affected": -1}
        results.append(
            {"status": status, "timing": [] if status == "skipped" else timing, "thread_id": "Thread-1"}
            | {"execution_time": took, "adapter_response": adapter if status == "success" else {}}
            | {"message": {"success": "OK", "error": fail.message, "skipped": None}[status], "failures": None}
            | {"unique_id": f"{fail.resource_type if name == fail.name else 'model'}.{project}.{name}"}
            | {"compiled": status != "skipped", "relation_name": f'"{project}"."{schema}"."{name}"'}
        )
    metadata: Json = {"dbt_schema_version": RUN_RESULTS_SCHEMA, "dbt_version": DBT_VERSION}
    metadata |= {"generated_at": finished_at, "invocation_id": str(run.id), "env": {}}
    invocation = command(run.ran_steps()[-1].name)
    args = {"which": invocation.split()[1] if " " in invocation else "build", "invocation_command": invocation}
    elapsed = round(sum(result["execution_time"] for result in results), 2)
    return {"metadata": metadata, "results": results, "elapsed_time": elapsed, "args": args}
