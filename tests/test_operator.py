"""RunDbtCloudJobOperator in real Airflow (``dag.test()``) against the emulator."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from conftest import TOKEN, output, run_task, xcom

from airflow_dbt_cloud_dlt.testing import JobScript, StepScript

pytestmark = pytest.mark.usefixtures("airflow_db", "airflow_conn")

RUN_RESULTS = {
    "results": [
        {"unique_id": "model.shop.orders", "status": "success", "message": "OK"},
        {"unique_id": "model.shop.revenue", "status": "error", "message": "Database Error: division by zero"},
    ]
}


def run_dag(**operator_kwargs: Any) -> Any:
    """The operator's one-task DAG, run; its ``dbt`` task instance."""
    return run_task("operator", **operator_kwargs)


def trigger_bodies(emulator: Any) -> list[dict[str, Any]]:
    return [r.body for r in emulator.requests if r.method == "POST" and r.path.endswith("/run/")]


@pytest.mark.parametrize("deferrable", [False, True], ids=["blocking", "deferred"])
def test_success_pushes_run_id_and_url_and_sends_the_overrides(emulator: Any, deferrable: bool) -> None:
    emulator.add_job(JobScript(job_id=11, account_id=1, run_seconds=0.5))
    ti = run_dag(
        job_id="11",
        deferrable=deferrable,
        poll_interval=0.2,
        steps_override=["dbt build -s orders+"],
        threads_override="8",
        git_branch="main",
        generate_docs_override="true",
        data={"target_name_override": "ci"},
    )

    assert ti.state == "success"
    (run_id,) = emulator.runs
    assert emulator.get_run(run_id)["status"] == 10
    assert int(xcom(ti, "run_id")) == run_id
    assert str(run_id) in xcom(ti, "run_url")
    (body,) = trigger_bodies(emulator)
    assert body["steps_override"] == ["dbt build -s orders+"]
    assert body["threads_override"] == 8 and body["generate_docs_override"] is True
    assert body["git_branch"] == "main" and body["target_name_override"] == "ci"
    assert body["cause"].startswith(f"Triggered by Airflow: {ti.dag_id}.dbt, run ")
    assert "[af:" in body["cause"] and len(body["cause"]) <= 255


def test_job_found_by_names(emulator: Any) -> None:
    emulator.add_job(
        JobScript(
            job_id=12, account_id=1, name="nightly", project_name="analytics", environment_name="prod", run_seconds=0.1
        )
    )
    emulator.add_job(
        JobScript(job_id=13, account_id=1, name="nightly-full", project_name="analytics", environment_name="prod")
    )
    ti = run_dag(project_name="analytics", environment_name="prod", job_name="nightly", poll_interval=0.1)
    assert ti.state == "success"
    assert [run["job_definition_id"] for run in emulator.runs.values()] == [12]


@pytest.mark.parametrize("deferrable", [False, True], ids=["blocking", "deferred"])
def test_failed_run_fails_the_task_and_says_why(
    emulator: Any, deferrable: bool, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    log_lines = "\n".join(f"line {i}" for i in range(120)) + "\nDatabase Error in model revenue"
    emulator.add_job(
        JobScript(
            job_id=21,
            account_id=1,
            run_seconds=0.4,
            outcome="error",
            run_results=RUN_RESULTS,
            steps=[
                StepScript(name="Clone git repository"),
                StepScript(name="Invoke dbt with `dbt build`", logs=log_lines, outcome="error"),
            ],
        )
    )
    with caplog.at_level(logging.INFO):
        ti = run_dag(job_id=21, deferrable=deferrable, poll_interval=0.2, retries=0)

    assert ti.state == "failed"
    text = output(capfd, caplog)
    assert "Failed step 2 of 2: Invoke dbt with `dbt build`" in text
    assert "Database Error in model revenue" in text and "line 119" in text
    assert "line 69" not in text.split("Failed step")[1]  # only the tail (last 50 lines) of the step log
    assert "model.shop.revenue: Database Error: division by zero" in text
    assert "model.shop.orders" not in text.split("Failed nodes")[1]
    assert TOKEN not in text


@pytest.mark.parametrize("deferrable", [False, True], ids=["blocking", "deferred"])
def test_cancelled_run_fails_the_task(emulator: Any, deferrable: bool) -> None:
    emulator.add_job(JobScript(job_id=22, account_id=1, run_seconds=0.3, outcome="cancelled"))
    assert run_dag(job_id=22, deferrable=deferrable, poll_interval=0.1, retries=0).state == "failed"


@pytest.mark.parametrize("deferrable", [False, True], ids=["blocking", "deferred"])
def test_timeout_cancels_the_run_and_fails(
    emulator: Any, deferrable: bool, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    emulator.add_job(JobScript(job_id=31, account_id=1, run_seconds=60))
    with caplog.at_level(logging.INFO):
        ti = run_dag(job_id=31, deferrable=deferrable, poll_interval=0.2, timeout=1.0, retries=0)

    assert ti.state == "failed"
    (run,) = emulator.runs.values()
    assert run["status"] == 30 and run["status_message"] == "Cancelled by user."
    text = output(capfd, caplog)
    assert "did not finish within" in text and "The run was cancelled" in text


def test_no_wait_returns_right_after_the_trigger(emulator: Any) -> None:
    emulator.add_job(JobScript(job_id=41, account_id=1, run_seconds=60))
    ti = run_dag(job_id=41, wait_for_termination=False)
    assert ti.state == "success"
    (run,) = emulator.runs.values()
    assert run["in_progress"] is True
    assert int(xcom(ti, "return_value")) == run["id"]


def test_unknown_job_fails_with_a_clear_message(
    emulator: Any, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        ti = run_dag(job_id=999, retries=0)
    assert ti.state == "failed"
    logged = output(capfd, caplog)
    assert "job 999 was not found" in logged
    assert "XCom not found" not in logged and "run_url" not in logged  # no run, so no link and no lookup of one
    assert emulator.runs == {}


def test_blocking_wait_logs_a_line_per_status_or_step_change(
    emulator: Any, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    steps = [
        StepScript(name="Clone git repository"),
        StepScript(name="Invoke dbt with `dbt seed`"),
        StepScript(name="Invoke dbt with `dbt build`"),
    ]
    emulator.add_job(JobScript(job_id=51, account_id=1, queue_seconds=0.3, run_seconds=1.5, steps=steps))
    with caplog.at_level(logging.INFO):
        ti = run_dag(job_id=51, poll_interval=0.05)
    assert ti.state == "success"
    lines = [line for line in output(capfd, caplog).splitlines() if "dbt Cloud run 7" in line and " elapsed" in line]
    text = "\n".join(lines)
    assert "Queued" in text and "step 1 of 3 'Clone git repository'" in text
    assert "step 2 of 3 'Invoke dbt with `dbt seed`'" in text and "step 3 of 3" in text and "Success" in text
    assert f"{emulator.base_url}/deploy/1/projects/" in lines[-1]
    assert len(lines) <= 2 * 6  # a line per change (Airflow 2 logs each twice), not one per poll (~40 polls)


# --- issue 12 part 3, finding 6: steps_override and data as templates render them ----------------------


@pytest.mark.parametrize(
    ("template", "sent"),
    [
        ("{{ 'dbt build -s orders' }}", ["dbt build -s orders"]),  # one command: never ['d', 'b', 't', ...]
        ("{{ ['dbt seed', 'dbt build'] }}", ["dbt seed", "dbt build"]),  # a rendered Python list
        ('["dbt seed", "dbt {{ \'build\' }}"]', ["dbt seed", "dbt build"]),  # a JSON list
    ],
    ids=["command", "python-list", "json-list"],
)
def test_a_rendered_steps_override_is_a_list_of_commands(emulator: Any, template: str, sent: list[str]) -> None:
    emulator.add_job(JobScript(job_id=91, account_id=1, run_seconds=0.0))
    ti = run_dag(job_id=91, steps_override=template, data="{{ {'threads_override': 4} }}", poll_interval=0.1)
    assert ti.state == "success"
    (body,) = trigger_bodies(emulator)
    assert body["steps_override"] == sent and body["threads_override"] == 4


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"steps_override": "{{ {'dbt build': 1} }}"}, "steps_override must be a dbt command or a list of them"),
        ({"steps_override": "{{ [] }}"}, "steps_override must be a dbt command or a list of them"),
        ({"data": "{{ 'threads_override=4' }}"}, "data must be a dict of further trigger fields"),
        ({"data": "{{ ['threads_override'] }}"}, "data must be a dict of further trigger fields"),
    ],
    ids=["steps-dict", "steps-empty", "data-text", "data-list"],
)
def test_a_bad_rendered_override_fails_naming_it_before_any_request(
    emulator: Any,
    kwargs: dict[str, Any],
    named: str,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    emulator.add_job(JobScript(job_id=92, account_id=1, run_seconds=0.0))
    ti = run_dag(job_id=92, retries=0, **kwargs)
    assert ti.state == "failed"
    assert trigger_bodies(emulator) == []
    assert f"dbt: {named}" in output(capfd, caplog)


def test_steps_override_at_parse_time() -> None:
    from airflow_dbt_cloud_dlt.operators import RunDbtCloudJobOperator

    assert RunDbtCloudJobOperator(task_id="t", job_id=1, steps_override="dbt build").steps_override == ["dbt build"]
    for bad in ({"dbt build": 1}, ["dbt build", 3], "['dbt build'", ""):
        with pytest.raises(TypeError, match=r"^t: steps_override must be a dbt command or a list of them"):
            RunDbtCloudJobOperator(task_id="t", job_id=1, steps_override=bad)
    with pytest.raises(TypeError, match=r"^t: data must be a dict"):
        RunDbtCloudJobOperator(task_id="t", job_id=1, data="threads_override=4")
