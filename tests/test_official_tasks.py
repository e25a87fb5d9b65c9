"""The official-named operators and sensor (``DbtCloudRunJobOperator``, ``DbtCloudJobRunSensor``,
``DbtCloudGetJobRunArtifactOperator``, ``DbtCloudListJobsOperator``, ``DbtCloudListJobRunsOperator``) in real
Airflow (``dag.test()``) against the emulator: the official's results, XCom keys and link, this package's
guarantees, and clear errors for bad input."""

from __future__ import annotations

import json
import logging
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from conftest import AIRFLOW_2, TOKEN, output, run_dag, start_run, xcom

from airflow_dbt_cloud_dlt.hooks import DbtCloudHook
from airflow_dbt_cloud_dlt.links import DbtCloudRunJobOperatorLink
from airflow_dbt_cloud_dlt.operators import (
    DbtCloudGetJobRunArtifactOperator,
    DbtCloudListJobRunsOperator,
    DbtCloudListJobsOperator,
    DbtCloudRunJobOperator,
)
from airflow_dbt_cloud_dlt.sensors import DbtCloudJobRunSensor
from airflow_dbt_cloud_dlt.testing import JobScript
from airflow_dbt_cloud_dlt.triggers import DbtCloudRunTrigger

pytestmark = pytest.mark.usefixtures("airflow_db", "airflow_conn")
RESULTS = {"results": [{"unique_id": "model.a.b", "status": "success"}]}


def run_official(cls: str, **kwargs: Any) -> Any:
    """A one-task DAG of the official-named class ``cls``, run; the task instance."""
    (ti,) = run_dag("official", cls=cls, **kwargs).get_task_instances()
    return ti


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[DbtCloudRunTrigger]:
    """The triggers that ran (deferred waits go through this package's trigger and its shared poller)."""
    seen: list[DbtCloudRunTrigger] = []
    original = DbtCloudRunTrigger.run

    async def spy(self: DbtCloudRunTrigger) -> AsyncIterator[Any]:
        seen.append(self)
        async for event in original(self):
            yield event

    monkeypatch.setattr(DbtCloudRunTrigger, "run", spy)
    return seen


# --- DbtCloudRunJobOperator ---------------------------------------------------------------------------


@pytest.mark.parametrize("deferrable", [False, True], ids=["blocking", "deferred"])
def test_run_job_returns_the_run_id_and_pushes_the_officials_xcom(
    emulator: Any, deferrable: bool, waits: list[DbtCloudRunTrigger]
) -> None:
    emulator.add_job(JobScript(job_id=21, run_seconds=0.6, run_results=RESULTS))
    ti = run_official(
        "DbtCloudRunJobOperator",
        job_id=21,
        check_interval=0.1,
        deferrable=deferrable,
        steps_override=["dbt build -s a"],
        additional_run_config={"threads_override": 8},
    )
    (run,) = emulator.runs.values()
    assert ti.state == "success" and run["status"] == 10
    assert xcom(ti, "return_value") == run["id"] == xcom(ti, "job_run_id")
    assert xcom(ti, "job_run_url") == run["href"]
    trigger = run["trigger"]
    assert trigger["threads_override"] == 8 and trigger["steps_override"] == ["dbt build -s a"]
    assert trigger["cause"].startswith("Triggered via Apache Airflow by task 'task' in the ")
    assert "[af:" in trigger["cause"]  # this package's exactly-once marker
    assert [w.run_id for w in waits] == ([run["id"]] if deferrable else [])
    if AIRFLOW_2:  # the webserver's copy reads the link from XCom job_run_url
        op = DbtCloudRunJobOperator(task_id="task", job_id=21)
        assert DbtCloudRunJobOperatorLink().get_link(op, ti_key=ti.key) == run["href"]
    else:  # Airflow 3 stores the link computed in the worker
        assert xcom(ti, DbtCloudRunJobOperatorLink().xcom_key) == run["href"]
    assert DbtCloudRunJobOperator.operator_extra_links[0].name == "Monitor Job Run"


@pytest.mark.parametrize("deferrable", [False, True], ids=["blocking", "deferred"])
@pytest.mark.parametrize(
    "href",
    ["https://phish.example/deploy/1/projects/1/runs/1/", "javascript:alert(document.cookie)", "http://127.0.0.2:1/"],
    ids=["other-host", "javascript", "other-port"],
)
def test_only_links_on_the_configured_host_reach_xcom_and_the_ui(emulator: Any, deferrable: bool, href: str) -> None:
    """Issue 12 part 3, finding 8: the API's ``href`` is used only on the connection's own host."""
    emulator.add_job(JobScript(job_id=24, run_seconds=0.2, href=href))
    ti = run_official("DbtCloudRunJobOperator", job_id=24, check_interval=0.1, deferrable=deferrable)
    (run,) = emulator.runs.values()
    built = f"{emulator.base_url}/deploy/1/projects/1/runs/{run['id']}/"
    assert ti.state == "success" and run["href"] == href
    assert xcom(ti, "job_run_url") == built
    if AIRFLOW_2:
        op = DbtCloudRunJobOperator(task_id="task", job_id=24)
        assert DbtCloudRunJobOperatorLink().get_link(op, ti_key=ti.key) == built
    else:
        assert xcom(ti, DbtCloudRunJobOperatorLink().xcom_key) == built


def test_the_extra_link_shows_only_web_links() -> None:
    from types import SimpleNamespace

    for url in ("javascript:alert(1)", "data:text/html,x", "http://phish.example/", "https://u:p@h.example/"):
        assert DbtCloudRunJobOperatorLink().get_link(SimpleNamespace(run_url=url), ti_key=None) == ""
    good = "https://ab123.us1.dbt.com/deploy/1/projects/2/runs/3/"
    assert DbtCloudRunJobOperatorLink().get_link(SimpleNamespace(run_url=good), ti_key=None) == good


@pytest.mark.parametrize("deferrable", [False, True], ids=["blocking", "deferred"])
def test_timeout_ends_the_wait_but_leaves_the_run_going(emulator: Any, deferrable: bool) -> None:
    emulator.add_job(JobScript(job_id=22, run_seconds=60))
    ti = run_official(
        "DbtCloudRunJobOperator", job_id=22, check_interval=0.1, timeout=1, deferrable=deferrable, retries=0
    )
    (run,) = emulator.runs.values()
    assert ti.state == "failed"
    assert emulator.get_run(run["id"])["in_progress"] is True  # the official's timeout does not cancel


@pytest.mark.parametrize("deferrable", [False, True], ids=["blocking", "deferred"])
def test_execution_timeout_cancels_the_run(emulator: Any, deferrable: bool) -> None:
    emulator.add_job(JobScript(job_id=23, run_seconds=60))
    ti = run_official(
        "DbtCloudRunJobOperator",
        job_id=23,
        check_interval=0.1,
        execution_timeout=6.5,  # the wait ends 5 s before it, to cancel in time
        deferrable=deferrable,
        retries=0,
    )
    (run,) = emulator.runs.values()
    assert ti.state == "failed"
    assert emulator.get_run(run["id"])["status"] == 30


def test_failed_run_raises_the_officials_exception_with_the_reason(
    emulator: Any, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    emulator.add_job(JobScript(job_id=24, run_seconds=0.2, outcome="error"))
    with caplog.at_level(logging.INFO):
        ti = run_official("DbtCloudRunJobOperator", job_id=24, check_interval=0.1, retries=0)
    assert ti.state == "failed"
    text = output(capfd, caplog)
    assert "DbtCloudJobRunException" in text and "Failed step" in text
    assert TOKEN not in text


def test_reuse_existing_run_waits_for_the_run_in_progress(emulator: Any) -> None:
    run_id = start_run(emulator, 25, run_seconds=1.0)
    ti = run_official("DbtCloudRunJobOperator", job_id=25, check_interval=0.1, reuse_existing_run=True)
    assert ti.state == "success" and xcom(ti, "return_value") == run_id
    assert list(emulator.runs) == [run_id]  # nothing triggered


def test_job_by_name_that_matches_several_names_the_candidates(
    emulator: Any, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    for job_id in (26, 27):
        emulator.add_job(JobScript(job_id=job_id, name="nightly"))
    emulator.add_job(JobScript(job_id=28, name="nightly full"))
    with caplog.at_level(logging.INFO):
        ti = run_official(
            "DbtCloudRunJobOperator", project_name="analytics", environment_name="prod", job_name="nightly", retries=0
        )
    assert ti.state == "failed" and not emulator.runs
    text = output(capfd, caplog)
    assert "DbtCloudResourceLookupError" in text  # the official's exception type
    assert (
        "2 dbt Cloud jobs are named exactly 'nightly' in environment 'prod' in project 'analytics' (ids 26, 27)" in text
    )


def test_job_by_name_that_matches_none_names_the_near_ones(
    emulator: Any, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    emulator.add_job(JobScript(job_id=29, name="nightly full"))
    with caplog.at_level(logging.INFO):
        ti = run_official(
            "DbtCloudRunJobOperator", project_name="analytics", environment_name="prod", job_name="nightly", retries=0
        )
    assert ti.state == "failed"
    assert "No dbt Cloud job is named exactly 'nightly'" in output(capfd, caplog)


# --- DbtCloudJobRunSensor -----------------------------------------------------------------------------


def test_sensor_defaults_are_the_officials() -> None:
    deferred = DbtCloudJobRunSensor(task_id="a", run_id=1, deferrable=True)
    assert (deferred.poke_interval, deferred.timeout) == (5, 60 * 60 * 24 * 7)
    poking = DbtCloudJobRunSensor(task_id="b", run_id=1)
    assert poking.poke_interval == 60 and poking.deferrable is False
    assert DbtCloudJobRunSensor(task_id="c", run_id=1, deferrable=True, poke_interval=2).timeout == 60 * 60 * 24 * 7


@pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferred"])
def test_sensor_waits_for_success(emulator: Any, deferrable: bool, waits: list[DbtCloudRunTrigger]) -> None:
    run_id = start_run(emulator, 31, run_seconds=0.8)
    ti = run_official("DbtCloudJobRunSensor", run_id=run_id, deferrable=deferrable, poke_interval=0.1)
    assert ti.state == "success"
    assert [w.run_id for w in waits] == ([run_id] if deferrable else [])
    assert xcom(ti, "return_value") == (run_id if deferrable else None)  # as the official returns


@pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferred"])
def test_sensor_fails_on_a_failed_run(
    emulator: Any, deferrable: bool, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    run_id = start_run(emulator, 32, run_seconds=0.3, outcome="error")
    with caplog.at_level(logging.INFO):
        ti = run_official("DbtCloudJobRunSensor", run_id=run_id, deferrable=deferrable, poke_interval=0.1, retries=0)
    assert ti.state == "failed"
    assert "DbtCloudJobRunException" in output(capfd, caplog)


# --- DbtCloudGetJobRunArtifactOperator ----------------------------------------------------------------


def finished_run(emulator: Any, job_id: int, **script: Any) -> int:
    run_id = start_run(emulator, job_id, run_seconds=0.0, run_results=RESULTS, **script)
    emulator.advance(5)
    return run_id


def test_artifact_is_written_under_the_default_name(
    emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = finished_run(emulator, 41)
    monkeypatch.chdir(tmp_path)
    ti = run_official("DbtCloudGetJobRunArtifactOperator", run_id=run_id, path="run_results.json")
    assert ti.state == "success"
    assert xcom(ti, "return_value") == f"{run_id}_run_results.json"
    assert json.loads((tmp_path / f"{run_id}_run_results.json").read_text()) == RESULTS


def test_artifact_in_a_folder_goes_to_the_given_file(
    emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = finished_run(emulator, 42, artifact_sizes={"target/big.json": 3_000_000})
    target = tmp_path / "out" / "big.json"
    ti = run_official(
        "DbtCloudGetJobRunArtifactOperator", run_id=run_id, path="target/big.json", output_file_name=str(target)
    )
    assert ti.state == "success" and xcom(ti, "return_value") == str(target)
    assert target.stat().st_size == 3_000_000 and json.loads(target.read_text())["padding"].startswith("xxx")
    assert [p.name for p in target.parent.iterdir()] == ["big.json"]  # no partial file left beside it
    monkeypatch.chdir(tmp_path)
    ti = run_official("DbtCloudGetJobRunArtifactOperator", run_id=run_id, path="target/big.json")
    assert (tmp_path / f"{run_id}_target-big.json").stat().st_size == 3_000_000  # the official's default name


def test_missing_artifact_names_run_step_and_path(
    emulator: Any, tmp_path: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    run_id = finished_run(emulator, 43)
    target = tmp_path / "catalog.json"
    with caplog.at_level(logging.INFO):
        ti = run_official(
            "DbtCloudGetJobRunArtifactOperator",
            run_id=run_id,
            path="catalog.json",
            step=1,
            output_file_name=str(target),
            retries=0,
        )
    assert ti.state == "failed" and not target.exists() and not list(tmp_path.iterdir())
    assert f"artifact 'catalog.json' of run {run_id} at step 1" in output(capfd, caplog)


def test_download_streams_a_big_artifact_in_little_memory(emulator: Any, tmp_path: Path) -> None:
    size = 60_000_000
    run_id = finished_run(emulator, 44, artifact_sizes={"manifest_big.json": size})
    hook = DbtCloudHook()
    hook.get_job_run(run_id)  # the client and its connection exist before measuring
    tracemalloc.start()
    try:
        written = hook.download_job_run_artifact(run_id, "manifest_big.json", tmp_path / "m.json")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert written == size == (tmp_path / "m.json").stat().st_size
    assert peak < 12_000_000, f"peak {peak / 1e6:.1f} MB for a {size / 1e6:.0f} MB file"


# --- the list operators -------------------------------------------------------------------------------


def test_list_jobs_returns_ids_across_pages(emulator: Any) -> None:
    for n in range(103):
        emulator.add_job(JobScript(job_id=1000 + n, project_id=5 if n < 101 else 6))
    ti = run_official("DbtCloudListJobsOperator", project_id=5, order_by="-id")
    assert xcom(ti, "return_value") == [1000 + n for n in reversed(range(101))]


def test_list_job_runs_shapes_filters_and_latest(emulator: Any) -> None:
    emulator.add_job(JobScript(job_id=51, serial=False, run_seconds=0.0, outcome_sequence=["error", "success"]))
    hook = DbtCloudHook()
    first, second = (hook.trigger_job_run(51, "list me").json()["data"]["id"] for _ in range(2))
    emulator.advance(5)
    all_runs = xcom(run_official("DbtCloudListJobRunsOperator", job_id=51, include_related=["job"]), "return_value")
    assert [run["id"] for run in all_runs] == [first, second] and all_runs[0]["job"]["id"] == 51
    failed = xcom(run_official("DbtCloudListJobRunsOperator", job_id=51, status_filter=20), "return_value")
    assert [run["id"] for run in failed] == [first]
    latest = xcom(run_official("DbtCloudListJobRunsOperator", job_id=51, latest_only=True), "return_value")
    assert latest["id"] == second
    none = run_official("DbtCloudListJobRunsOperator", job_id=51, latest_only=True, status_filter=[30])
    assert none.state == "success" and xcom(none, "return_value") is None


# --- bad input: refused when the DAG is parsed, naming the parameter -----------------------------------


@pytest.mark.parametrize(
    ("cls", "kwargs", "named"),
    [
        (DbtCloudRunJobOperator, {"job_id": 1, "check_interval": "ten"}, "check_interval"),
        (DbtCloudRunJobOperator, {"job_id": 1, "timeout": -1}, "timeout"),
        (DbtCloudRunJobOperator, {"job_id": 1, "steps_override": {"dbt build": 1}}, "steps_override"),
        (DbtCloudRunJobOperator, {"job_id": 1, "steps_override": ["dbt build", 3]}, "steps_override"),
        (DbtCloudRunJobOperator, {"job_id": 1, "additional_run_config": "threads_override=8"}, "additional_run_config"),
        (DbtCloudRunJobOperator, {"job_id": 1, "additional_run_config": ["threads_override"]}, "additional_run_config"),
        (DbtCloudRunJobOperator, {"job_id": 1, "wait_for_termination": "yes"}, "wait_for_termination"),
        (DbtCloudRunJobOperator, {"job_id": 1.5}, "job_id"),
        (DbtCloudRunJobOperator, {"job_id": 1, "hook_params": {"retries": 3}}, "hook_params"),
        (DbtCloudRunJobOperator, {"job_id": 1, "trigger_reason": 7}, "trigger_reason"),
        (DbtCloudJobRunSensor, {"run_id": [1]}, "run_id"),
        (DbtCloudJobRunSensor, {"run_id": 1, "deferrable": "true"}, "deferrable"),
        (DbtCloudGetJobRunArtifactOperator, {"run_id": 1, "path": 5}, "path"),
        (DbtCloudListJobsOperator, {"project_id": "x1.5"}, None),
        (DbtCloudListJobsOperator, {"project_id": 2.5}, "project_id"),
        (DbtCloudListJobRunsOperator, {"status_filter": "error"}, "status_filter"),
        (DbtCloudListJobRunsOperator, {"include_related": "job"}, "include_related"),
    ],
)
def test_wrong_types_are_refused_at_parse_time(cls: type, kwargs: dict[str, Any], named: str | None) -> None:
    if named is None:  # a string may be a template: checked when the task runs, before any request
        cls(task_id="t", **kwargs)
        return
    with pytest.raises(TypeError, match=rf"^t: {named}\b"):
        cls(task_id="t", **kwargs)


def test_a_bad_rendered_value_is_refused_before_any_request(emulator: Any) -> None:
    emulator.add_job(JobScript(job_id=61))
    ti = run_official("DbtCloudRunJobOperator", job_id="{{ 'sixty-one' }}", retries=0)
    assert ti.state == "failed"
    assert emulator.request_count() == 0


def test_hook_params_reach_the_client_of_the_task(emulator: Any) -> None:
    emulator.add_job(JobScript(job_id=71, run_seconds=0.2))
    operator = DbtCloudRunJobOperator(task_id="t", job_id=71, hook_params={"timeout_seconds": 7, "retry_limit": 9})
    with operator.hook.get_conn() as client:
        assert client.credentials.timeout == 7.0 and client.retry.max_attempts == 9
    with DbtCloudRunJobOperator(task_id="u", job_id=71).hook.get_conn() as client:
        assert client.credentials.timeout != 7.0 and client.retry.max_attempts == 5
