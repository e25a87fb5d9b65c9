"""Parity with the official provider (apache-airflow-providers-dbt-cloud, pinned in the ``test`` extra).

Signatures: every constructor parameter and public method of the official classes that issue 10 lists
must exist here with the same name, kind and default, in the same positional order; this package may add
only optional keyword-only parameters. Behaviour: the official-named hook methods against the emulator
over real loopback HTTP: ``requests.Response`` answers, pagination, lookups by name, bad input.
"""

from __future__ import annotations

import asyncio
import inspect
import pickle
from collections.abc import Callable
from typing import Any

import pytest
import requests
import tenacity
from airflow.providers.dbt.cloud.hooks import dbt as official_hooks
from airflow.providers.dbt.cloud.operators import dbt as official_operators
from airflow.providers.dbt.cloud.sensors import dbt as official_sensors
from conftest import ACCOUNT_ID, TOKEN

from airflow_dbt_cloud_dlt import hooks, operators, sensors
from airflow_dbt_cloud_dlt._compat import AirflowException
from airflow_dbt_cloud_dlt.api.errors import DbtCloudConfigError, DbtCloudNotFoundError
from airflow_dbt_cloud_dlt.hooks import (
    DbtCloudHook,
    DbtCloudJobRunException,
    DbtCloudJobRunStatus,
    DbtCloudResourceLookupError,
)
from airflow_dbt_cloud_dlt.testing import JobScript, StepScript

HOOK_METHODS = [
    "__init__",
    "list_accounts",
    "get_account",
    "list_projects",
    "get_project",
    "list_environments",
    "get_environment",
    "list_jobs",
    "get_job",
    "get_job_by_name",
    "trigger_job_run",
    "list_job_runs",
    "get_job_runs",
    "get_job_run",
    "get_job_run_status",
    "wait_for_job_run_status",
    "cancel_job_run",
    "retry_failed_job_run",
    "list_job_run_artifacts",
    "get_job_run_artifact",
    "test_connection",
    "get_job_details",
    "get_job_status",
]
#: (official module, our module, class name): the classes that the operators' rework gives official names.
TASK_CLASSES = [
    (official_operators, operators, "DbtCloudRunJobOperator"),
    (official_operators, operators, "DbtCloudGetJobRunArtifactOperator"),
    (official_operators, operators, "DbtCloudListJobsOperator"),
    (official_operators, operators, "DbtCloudListJobRunsOperator"),
    (official_sensors, sensors, "DbtCloudJobRunSensor"),
]
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def signature_differences(official: Callable[..., Any], ours: Callable[..., Any]) -> list[str]:
    """What a caller of ``official`` would find broken in ``ours``: missing, renamed, re-kinded or re-defaulted
    parameters, a changed positional order, or a new parameter without a default."""
    theirs, mine = inspect.signature(official).parameters, inspect.signature(ours).parameters
    problems = []
    for name, param in theirs.items():
        if param.kind in _VARIADIC:
            if not any(p.kind == param.kind for p in mine.values()):
                problems.append(f"no {'*' if param.kind == param.VAR_POSITIONAL else '**'}{name}")
            continue
        own = mine.get(name)
        if own is None:
            problems.append(f"missing parameter {name!r}")
        elif own.kind != param.kind:
            problems.append(f"{name!r} is {own.kind.description}, the official's is {param.kind.description}")
        elif not _same_default(own.default, param.default):
            problems.append(f"{name!r} defaults to {own.default!r}, the official's to {param.default!r}")
    their_order = [name for name, p in theirs.items() if p.kind in _POSITIONAL]
    my_order = [name for name, p in mine.items() if p.kind in _POSITIONAL]
    if my_order[: len(their_order)] != their_order:
        problems.append(f"positional order {my_order} differs from the official's {their_order}")
    for name, own in mine.items():
        if name not in theirs and own.kind not in _VARIADIC and own.default is inspect.Parameter.empty:
            problems.append(f"new required parameter {name!r}")
    return problems


def _same_default(mine: Any, theirs: Any) -> bool:
    if mine is inspect.Parameter.empty or theirs is inspect.Parameter.empty:
        return mine is theirs
    try:
        return bool(mine == theirs) and type(mine) is type(theirs)
    except Exception:  # defaults that cannot be compared count as different
        return False


# --- signatures ---------------------------------------------------------------------------------------


def test_the_comparison_catches_missing_renamed_and_changed_defaults() -> None:
    def official(self: Any, a: int, b: str = "x", *, c: int | None = None, **kwargs: Any) -> None: ...

    def same_plus_optional(self: Any, a: int, b: str = "x", *, c: int | None = None, d: int = 0, **kw: Any) -> None: ...

    def missing(self: Any, a: int, *, c: int | None = None, **kwargs: Any) -> None: ...

    def renamed(self: Any, a: int, bb: str = "x", *, c: int | None = None, **kwargs: Any) -> None: ...

    def new_default(self: Any, a: int, b: str = "y", *, c: int | None = None, **kwargs: Any) -> None: ...

    def keyword_only(self: Any, a: int, *, b: str = "x", c: int | None = None, **kwargs: Any) -> None: ...

    def reordered(self: Any, b: str = "x", a: int = 0, *, c: int | None = None, **kwargs: Any) -> None: ...

    assert signature_differences(official, same_plus_optional) == []
    assert "missing parameter 'b'" in signature_differences(official, missing)
    assert "missing parameter 'b'" in signature_differences(official, renamed)
    assert signature_differences(official, new_default) == ["'b' defaults to 'y', the official's to 'x'"]
    assert "keyword-only" in signature_differences(official, keyword_only)[0]
    assert any("positional order" in p for p in signature_differences(official, reordered))


@pytest.mark.parametrize("name", HOOK_METHODS)
def test_hook_method_signature_matches_the_official(name: str) -> None:
    official, ours = getattr(official_hooks.DbtCloudHook, name), getattr(DbtCloudHook, name)
    assert signature_differences(official, ours) == []
    assert inspect.iscoroutinefunction(ours) == inspect.iscoroutinefunction(official)


#: Public members of the official hook that this one leaves out on purpose (docs/migrating-from-the-official-provider.md).
HOOK_ABSENT = {
    "get_request_url_params": "builds URLs by hand; the API core builds every request",
    "get_headers_tenants_from_connection": "hands out the token in a plain headers dict",
    "connection": "the hook reads the connection into credentials (hook.credentials) instead",
}
#: Present, but on purpose not with the official's signature or return value.
HOOK_DIFFERENT = {"get_conn": "returns this package's API client, not a requests.Session (as before issue 10)"}


def test_every_public_member_of_the_official_hook_is_here() -> None:
    """Beyond the issue's list: what the official hook defines itself (not what HttpHook gives it)."""
    for name, member in vars(official_hooks.DbtCloudHook).items():
        if name.startswith("_") or name in HOOK_ABSENT:
            continue
        assert hasattr(DbtCloudHook, name), f"DbtCloudHook has no {name!r}"
        if inspect.isfunction(member) and name not in HOOK_DIFFERENT:
            assert signature_differences(member, getattr(DbtCloudHook, name)) == [], name
    for name in ("DbtCloudJobRunStatus", "DbtCloudJobRunException", "DbtCloudResourceLookupError"):
        assert hasattr(hooks, name), name


def test_hook_class_attributes_and_names_match_the_official() -> None:
    for attribute in ("conn_name_attr", "default_conn_name"):
        assert getattr(DbtCloudHook, attribute) == getattr(official_hooks.DbtCloudHook, attribute)
    assert {m.name: m.value for m in DbtCloudJobRunStatus} == {
        m.name: m.value for m in official_hooks.DbtCloudJobRunStatus
    }
    for method in ("check_is_valid", "is_terminal"):
        official = getattr(official_hooks.DbtCloudJobRunStatus, method)
        assert signature_differences(official, getattr(DbtCloudJobRunStatus, method)) == []
    assert DbtCloudJobRunStatus.is_terminal(20) and not DbtCloudJobRunStatus.is_terminal(3)
    assert issubclass(DbtCloudJobRunException, AirflowException)
    assert issubclass(DbtCloudResourceLookupError, AirflowException)


@pytest.mark.parametrize(("official_module", "our_module", "name"), TASK_CLASSES, ids=[c[2] for c in TASK_CLASSES])
def test_task_constructor_matches_the_official(official_module: Any, our_module: Any, name: str) -> None:
    ours = getattr(our_module, name)
    assert signature_differences(getattr(official_module, name).__init__, ours.__init__) == []


@pytest.mark.parametrize(("official_module", "our_module", "name"), TASK_CLASSES, ids=[c[2] for c in TASK_CLASSES])
def test_task_template_fields_include_the_officials(official_module: Any, our_module: Any, name: str) -> None:
    official, ours = getattr(official_module, name), getattr(our_module, name)
    assert set(official.template_fields) <= set(ours.template_fields)


# --- behaviour against the emulator -------------------------------------------------------------------


def fast_hook(**kwargs: Any) -> DbtCloudHook:
    """A hook whose retries wait milliseconds, so that tests of faults stay quick."""
    return DbtCloudHook(retry_delay=0.01, **kwargs)


def test_run_methods_return_responses(emulator: Any, airflow_conn: str) -> None:
    emulator.add_job(JobScript(job_id=3, run_seconds=0.5, run_results={"results": []}))
    hook = DbtCloudHook()
    triggered = hook.trigger_job_run(job_id=3, cause="parity")
    assert isinstance(triggered, requests.Response) and triggered.ok
    run_id = triggered.json()["data"]["id"]
    assert TOKEN not in triggered.url and str(ACCOUNT_ID) in triggered.url
    assert hook.get_job_run(run_id).json()["data"]["status"] in (1, 2, 3)
    assert hook.wait_for_job_run_status(run_id, check_interval=0.1, timeout=30) is True
    assert hook.get_job_run_status(run_id) == DbtCloudJobRunStatus.SUCCESS.value
    steps = hook.get_job_run(run_id, include_related=["run_steps"]).json()["data"]["run_steps"]
    assert steps and steps[-1]["status"] == 10
    assert hook.list_job_run_artifacts(run_id).json()["data"] == ["manifest.json", "run_results.json"]
    artifact = hook.get_job_run_artifact(run_id, "run_results.json")
    assert "results" in artifact.json() and artifact.headers["Content-Type"] == "application/json"
    assert hook.get_job(3).json()["data"]["id"] == 3
    assert hook.get_account().json()["data"]["id"] == ACCOUNT_ID
    assert [a["id"] for a in hook.list_accounts().json()["data"]] == [ACCOUNT_ID]
    assert hook.get_project(1).json()["data"]["name"] == "analytics"
    assert hook.get_environment(1, 1).json()["data"]["name"] == "prod"
    assert hook.get_job_runs(payload={"job_definition_id": 3, "limit": 1}).json()["data"][0]["id"] == run_id
    assert hook.test_connection()[0] is True
    both = asyncio.run(hook.get_job_run_artifacts_concurrently(run_id, ["run_results.json", "manifest.json"]))
    assert set(both) == {"run_results.json", "manifest.json"} and "metadata" in both["manifest.json"]
    assert asyncio.run(hook.get_job_status(run_id)) == 10
    assert asyncio.run(hook.get_job_details(run_id, include_related=["job"]))["data"]["job"]["id"] == 3


def test_cancel_and_rerun_from_failure(emulator: Any, airflow_conn: str) -> None:
    emulator.add_job(JobScript(job_id=4, run_seconds=60))
    emulator.add_job(JobScript(job_id=5, outcome="error", run_seconds=0.1))
    hook = DbtCloudHook()
    run_id = hook.trigger_job_run(4, "to cancel").json()["data"]["id"]
    assert hook.cancel_job_run(run_id) is None
    assert hook.get_job_run_status(run_id) == DbtCloudJobRunStatus.CANCELLED.value
    failed = hook.trigger_job_run(5, "fails").json()["data"]["id"]
    with pytest.raises(DbtCloudJobRunException, match=f"Job run {failed} reached terminal status ERROR") as caught:
        hook.wait_for_job_run_status(failed, check_interval=0.1, timeout=30)
    assert "Failed step" in str(caught.value)  # this package's report: the step, its log tail, the nodes
    hook.log_job_run_failure_details(failed)
    rerun = hook.trigger_job_run(5, "again", retry_from_failure=True).json()["data"]
    assert rerun["id"] != failed and "Rerun" in emulator.runs[rerun["id"]]["trigger"]["cause"]
    assert hook.retry_failed_job_run(5).json()["data"]["id"] > rerun["id"]


def test_list_methods_follow_pagination(emulator: Any, airflow_conn: str) -> None:
    for i in range(103):  # 103 environments in project 7, and 103 projects with one job each
        emulator.add_job(JobScript(job_id=100 + i, project_id=7, environment_id=1000 + i, environment_name=f"e{i}"))
        emulator.add_job(JobScript(job_id=300 + i, project_id=500 + i, environment_id=2000 + i))
    hook = DbtCloudHook()
    projects = hook.list_projects()
    assert len(projects) == 2 and sum(len(r.json()["data"]) for r in projects) == 104
    environments = hook.list_environments(7)
    assert [len(r.json()["data"]) for r in environments] == [100, 3]
    jobs = hook.list_jobs()
    assert [len(r.json()["data"]) for r in jobs] == [100, 100, 6]
    assert len({job["id"] for r in jobs for job in r.json()["data"]}) == 206
    assert [len(r.json()["data"]) for r in hook.list_jobs(project_id=7, order_by="-id")] == [100, 3]
    assert hook.list_environments(7, name_contains="e10")[0].json()["data"][0]["name"] == "e10"

    emulator.add_job(JobScript(job_id=9, serial=False, run_seconds=0.0, outcome_sequence=["error"]))
    for n in range(102):
        hook.trigger_job_run(9, f"run {n}")
    emulator.advance(5)
    runs = hook.list_job_runs(job_definition_id=9, include_related=["job"], order_by="-id")
    assert [len(r.json()["data"]) for r in runs] == [100, 2]
    assert runs[0].json()["data"][0]["job"]["id"] == 9
    failed = hook.get_job_runs(payload={"job_definition_id": 9, "status": 20}).json()
    assert failed["extra"]["pagination"]["total_count"] == 1
    succeeded = hook.get_job_runs(payload={"job_definition_id": 9, "status__in": [10], "offset": 100}).json()
    assert succeeded["extra"]["pagination"] == {"count": 1, "total_count": 101}


def test_job_by_name_names_the_candidates(emulator: Any, airflow_conn: str) -> None:
    emulator.add_job(JobScript(job_id=11, name="daily build", project_id=2, project_name="Shop", environment_id=3))
    emulator.add_job(JobScript(job_id=12, name="daily build", project_id=2, project_name="Shop", environment_id=3))
    emulator.add_job(JobScript(job_id=13, name="hourly", project_id=2, project_name="Shop", environment_id=3))
    hook = DbtCloudHook()
    assert hook.get_job_by_name(project_name="Shop", environment_name="prod", job_name="hourly")["id"] == 13
    with pytest.raises(
        DbtCloudResourceLookupError, match=r"2 dbt Cloud jobs are named exactly 'daily build'.*ids 11, 12"
    ):
        hook.get_job_by_name(project_name="Shop", environment_name="prod", job_name="daily build")
    with pytest.raises(DbtCloudResourceLookupError, match=r"No dbt Cloud job .*'hour'.*'hourly' \(id 13\)"):
        hook.get_job_by_name(project_name="Shop", environment_name="prod", job_name="hour")
    with pytest.raises(DbtCloudResourceLookupError, match=r"No dbt Cloud environment is named exactly 'dev'"):
        hook.get_job_by_name(project_name="Shop", environment_name="dev", job_name="hourly")
    with pytest.raises(DbtCloudResourceLookupError, match=r"No dbt Cloud project .*'Sho'.*'Shop' \(id 2\)"):
        hook.get_job_by_name(project_name="Sho", environment_name="prod", job_name="hourly")


def test_missing_artifact_names_run_step_and_path(emulator: Any, airflow_conn: str) -> None:
    emulator.add_job(JobScript(job_id=6, run_seconds=0.0))
    hook = DbtCloudHook()
    run_id = hook.trigger_job_run(6, "artifacts").json()["data"]["id"]
    emulator.advance(5)
    with pytest.raises(DbtCloudNotFoundError) as caught:
        hook.get_job_run_artifact(run_id, "catalog.json", step=1)
    message = str(caught.value)
    assert f"'catalog.json' of run {run_id} at step 1" in message and TOKEN not in message
    assert isinstance(caught.value, AirflowException)  # as the official's errors are
    assert str(pickle.loads(pickle.dumps(caught.value))) == message  # errors cross process boundaries
    with pytest.raises(AirflowException, match=f"'target/x.json' of run {run_id} at its last step"):
        hook.get_job_run_artifact(run_id, "target/x.json")


@pytest.mark.parametrize(
    ("call", "parameter"),
    [
        (lambda hook: hook.get_job_run("latest"), "run_id"),
        (lambda hook: hook.get_job_run(5, account_id="abc"), "account_id"),
        (lambda hook: hook.list_jobs(project_id="shop"), "project_id"),
        (lambda hook: hook.list_job_run_artifacts(5, step="last"), "step"),
        (lambda hook: hook.get_job_run_artifact(5, path=None), "path"),
        (lambda hook: hook.get_job_run(5, include_related=[1]), "include_related"),
        (lambda hook: hook.trigger_job_run(3, cause=5), "cause"),
        (lambda hook: hook.trigger_job_run(3, "c", steps_override="dbt run"), "steps_override"),
        (lambda hook: hook.trigger_job_run(3, "c", additional_run_config=["x"]), "additional_run_config"),
        (lambda hook: hook.wait_for_job_run_status(5, expected_statuses=99), "expected_statuses"),
        (lambda hook: hook.get_job_by_name(project_name=1, environment_name="p", job_name="j"), "project_name"),
        (lambda hook: DbtCloudHook(retry_limit="3"), "retry_limit"),
        (lambda hook: DbtCloudHook(timeout_seconds="ten"), "timeout_seconds"),
        (lambda hook: DbtCloudHook(retry_args=[1]), "retry_args"),
    ],
)
def test_bad_input_names_the_parameter_before_any_request(
    emulator: Any, airflow_conn: str, call: Callable[[DbtCloudHook], Any], parameter: str
) -> None:
    emulator.clear_requests()
    with pytest.raises(DbtCloudConfigError, match=parameter) as caught:
        call(DbtCloudHook())
    assert isinstance(caught.value, AirflowException) and TOKEN not in str(caught.value)
    assert not [r for r in emulator.requests if "/api/" in r.path]


def test_a_blip_does_not_fail_a_call_unless_asked(emulator: Any, airflow_conn: str) -> None:
    emulator.add_job(JobScript(job_id=8))
    emulator.faults.set(rate=1.0, kinds=("503",), methods=("GET",), max_faults=2)
    assert fast_hook().get_job(8).json()["data"]["id"] == 8  # the official's retry_limit=1 fails here
    emulator.faults.set(rate=1.0, kinds=("503",), methods=("GET",), max_faults=1)
    old = fast_hook(retry_args={"stop": tenacity.stop_after_attempt(1)})  # the official's behaviour, if wanted
    with pytest.raises(AirflowException, match="HTTP 503"):
        old.get_job(8)
    emulator.faults.clear()


def test_timeout_seconds_bounds_each_answer(emulator: Any, airflow_conn: str) -> None:
    emulator.add_job(JobScript(job_id=10))
    emulator.faults.set(rate=1.0, kinds=("stall",), stall_seconds=2.0, methods=("GET",), max_faults=1)
    hook = fast_hook(timeout_seconds=0.5)
    assert hook.get_job(10).json()["data"]["id"] == 10  # the stalled answer timed out and was asked again
    assert hook._client(ACCOUNT_ID).credentials.timeout == 0.5
    emulator.faults.clear()


def test_hook_import_stays_cheap() -> None:
    import subprocess
    import sys

    code = (
        "import sys; import airflow_dbt_cloud_dlt._compat; before = set(sys.modules); "
        "import airflow_dbt_cloud_dlt.hooks; "
        "print(sorted(m.split('.')[0] for m in set(sys.modules) - before))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    added = set(out.strip().splitlines()[-1].strip("[]").replace("'", "").split(", ")) - {""}
    # the official methods' needs (requests, tenacity, httpx) load on first call, not on import
    assert not added & {"requests", "tenacity", "httpx", "aiohttp", "urllib3"}, added


def test_steps_are_read_from_the_run(emulator: Any, airflow_conn: str) -> None:
    steps = [StepScript("Invoke dbt with `dbt seed`", "ok"), StepScript("Invoke dbt with `dbt build`", "boom")]
    emulator.add_job(JobScript(job_id=14, steps=steps, run_seconds=0.0, outcome="error"))
    hook = DbtCloudHook()
    run_id = hook.trigger_job_run(14, "steps").json()["data"]["id"]
    emulator.advance(5)
    assert hook.list_job_run_artifacts(run_id, step=1).json()["data"] == ["manifest.json", "run_results.json"]
    assert hooks.DbtCloudJobRunStatus(hook.get_job_run_status(run_id)) is DbtCloudJobRunStatus.ERROR
