"""Exactly-once triggering across Airflow retries and ambiguous trigger failures (``dag.test()``)."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from conftest import TOKEN, run_task

from airflow_dbt_cloud_dlt.testing import JobScript

pytestmark = pytest.mark.usefixtures("airflow_db", "airflow_conn")


def run_dag(**kwargs: Any) -> Any:
    """One operator task with one immediate retry by default; its task instance."""
    return run_task("operator", **{"retries": 1, "poll_interval": 0.1, "retry_delay": 0, **kwargs})


MARKER = "[af:0123abcd.0123456789abcdef01234567]"


def runs_of(emulator: Any, job_id: int) -> list[dict[str, Any]]:
    return sorted((r for r in emulator.runs.values() if r["job_definition_id"] == job_id), key=lambda r: r["id"])


@pytest.mark.parametrize("deferrable", [False, True], ids=["blocking", "deferred"])
def test_retry_after_a_crash_attaches_to_the_running_run(emulator: Any, deferrable: bool) -> None:
    emulator.add_job(JobScript(job_id=1, account_id=1, run_seconds=1.0))
    ti = run_dag(job_id=1, crash="raise", deferrable=deferrable)
    assert ti.state == "success" and ti.try_number == 2
    (run,) = runs_of(emulator, 1)
    assert run["status"] == 10


def test_retry_accepts_a_run_that_already_succeeded(emulator: Any) -> None:
    emulator.add_job(JobScript(job_id=2, account_id=1, run_seconds=0.0))
    ti = run_dag(job_id=2, crash="raise", wait_for_termination=False)
    assert ti.state == "success"
    assert len(runs_of(emulator, 2)) == 1


def test_retry_after_a_failed_run_starts_a_new_run(emulator: Any) -> None:
    emulator.add_job(JobScript(job_id=3, account_id=1, run_seconds=0.2, outcome_sequence=["error", "success"]))
    ti = run_dag(job_id=3, steps_override=["dbt build -s orders"])
    assert ti.state == "success" and ti.try_number == 2
    first, second = runs_of(emulator, 3)
    assert (first["status"], second["status"]) == (20, 10)
    assert second["trigger"]["steps_override"] == ["dbt build -s orders"]


def test_retry_from_failure_reruns_this_tasks_own_run_with_its_overrides(emulator: Any) -> None:
    emulator.add_job(JobScript(job_id=4, account_id=1, run_seconds=0.2, outcome_sequence=["error", "success"]))
    ti = run_dag(job_id=4, retry_from_failure=True, steps_override=["dbt build -s orders"])
    assert ti.state == "success"
    first, rerun = runs_of(emulator, 4)
    assert rerun["trigger"]["cause_category"] == "rerun" and rerun["retrying_run_id"] == first["id"]
    assert rerun["trigger"]["steps_override"] == ["dbt build -s orders"]
    assert [r.path.rsplit("/", 2)[-2] for r in emulator.requests if r.method == "POST"] == ["run", "rerun"]


def test_never_attaches_to_a_run_started_by_someone_else(emulator: Any) -> None:
    emulator.add_job(JobScript(job_id=5, account_id=1, run_seconds=0.5, serial=False))
    requests.post(  # a scheduled run of the same job, already in progress
        f"{emulator.base_url}/api/v2/accounts/1/jobs/5/run/",
        json={"cause": "Triggered by schedule"},
        headers={"Authorization": f"Token {TOKEN}"},
        timeout=5,
    ).raise_for_status()
    ti = run_dag(job_id=5, crash="raise")
    assert ti.state == "success"
    other, ours = runs_of(emulator, 5)
    assert "[af:" not in other["trigger"]["cause"] and "[af:" in ours["trigger"]["cause"]


def test_ambiguous_trigger_failure_finds_the_run_instead_of_triggering_again(emulator: Any) -> None:
    emulator.add_job(JobScript(job_id=6, account_id=1, run_seconds=0.2))
    emulator.faults.set(rate=1.0, kinds=("reset_after",), methods=("POST",), seed=1)
    ti = run_dag(job_id=6, retries=0)
    emulator.faults.clear()
    assert ti.state == "success"
    (run,) = runs_of(emulator, 6)
    assert run["status"] == 10
    assert sum(1 for r in emulator.requests if r.method == "POST") == 1  # never sent twice


def test_marker_search_reads_runs_whose_list_entry_lacks_the_trigger(emulator: Any, credentials: Any) -> None:
    """Some servers leave ``trigger`` out of list answers: the search must then read those runs one by one."""
    from airflow_dbt_cloud_dlt.api.client import DbtCloudClient
    from airflow_dbt_cloud_dlt.api.idempotency import find_marked_run

    emulator.add_job(JobScript(job_id=7, account_id=1, run_seconds=30, serial=False))
    with DbtCloudClient(credentials) as client:
        mine = client.trigger_job_run(7, {"cause": f"mine {MARKER}"})
        client.trigger_job_run(7, {"cause": "someone else's"})
        original = client.list_runs

        def list_without_trigger(**kwargs: Any) -> list[dict[str, Any]]:
            return [{**run, "trigger": None} for run in original(**kwargs)]

        client.list_runs = list_without_trigger  # type: ignore[method-assign]
        found = find_marked_run(client, 7, MARKER)
    assert found is not None and found["id"] == mine["id"]


def _ti(try_number: int, max_tries: int) -> Any:
    from types import SimpleNamespace

    return SimpleNamespace(
        dag_id="d",
        task_id="dbt",
        run_id="r",
        map_index=-1,
        try_number=try_number,
        max_tries=max_tries,
        xcom_push=lambda **_: None,
    )


def _post_run(emulator: Any, job_id: int, body: dict[str, Any]) -> int:
    """A run started straight through the API, as a person or another tool would."""
    response = requests.post(
        f"{emulator.base_url}/api/v2/accounts/1/jobs/{job_id}/run/",
        json=body,
        headers={"Authorization": f"Token {TOKEN}"},
        timeout=5,
    )
    response.raise_for_status()
    return int(response.json()["data"]["id"])


def _execute(operator: Any, try_number: int, max_tries: int = 1) -> int:
    return operator.execute({"ti": _ti(try_number, max_tries)})  # type: ignore[no-any-return]


def test_a_clear_starts_a_new_run_while_a_retry_accepts_the_series_run(emulator: Any, airflow_conn: str) -> None:
    """Airflow raises try_number on a clear too; only a retry (a try after the series' first) may reuse a run."""
    from airflow_dbt_cloud_dlt.operators import RunDbtCloudJobOperator

    emulator.add_job(JobScript(job_id=8, account_id=1, run_seconds=0.0))
    operator = RunDbtCloudJobOperator(task_id="dbt", job_id=8, retries=1, wait_for_termination=False)
    first = _execute(operator, try_number=1)
    assert _execute(operator, try_number=2) == first  # a retry: the series' run succeeded, no new run
    cleared = _execute(operator, try_number=3, max_tries=3)  # cleared after try 2: a new series (tries 3 and 4)
    assert cleared != first and len(runs_of(emulator, 8)) == 2


# --- issue 12 part 3, finding 1: the marker is bound to the deployment, and a run is checked before adoption ---


def test_a_retry_never_adopts_the_run_of_another_airflow(
    emulator: Any, airflow_conn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Staging and prod run the same DAG against the same job: prod's retry must not take staging's run."""
    from airflow_dbt_cloud_dlt.operators import RunDbtCloudJobOperator

    emulator.add_job(JobScript(job_id=9, account_id=1, run_seconds=0.0))
    operator = RunDbtCloudJobOperator(task_id="dbt", job_id=9, retries=1, wait_for_termination=False)
    monkeypatch.setenv("DBT_CLOUD__MARKER_SECRET", "staging-secret")
    staging = _execute(operator, try_number=1)
    monkeypatch.setenv("DBT_CLOUD__MARKER_SECRET", "prod-secret")
    prod = _execute(operator, try_number=2)  # prod's retry (its first try died before triggering)
    assert prod != staging and len(runs_of(emulator, 9)) == 2
    causes = [run["trigger"]["cause"] for run in runs_of(emulator, 9)]
    assert causes[0].split("[af:")[1][:8] != causes[1].split("[af:")[1][:8]  # the deployment tags differ


def test_a_copied_marker_with_other_overrides_is_not_adopted(
    emulator: Any, airflow_conn: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Someone copies this task's cause onto a run with other steps: the retry keeps to the run it started."""
    from airflow_dbt_cloud_dlt.operators import RunDbtCloudJobOperator

    monkeypatch.setenv("DBT_CLOUD__MARKER_SECRET", "prod-secret")
    emulator.add_job(JobScript(job_id=10, account_id=1, run_seconds=0.0))
    operator = RunDbtCloudJobOperator(
        task_id="dbt", job_id=10, retries=1, wait_for_termination=False, steps_override=["dbt build -s orders"]
    )
    ours = _execute(operator, try_number=1)
    cause = runs_of(emulator, 10)[0]["trigger"]["cause"]
    forged = _post_run(emulator, 10, {"cause": cause, "steps_override": ["dbt run-operation drop_everything"]})
    assert _execute(operator, try_number=2) == ours  # not the newer, forged run
    assert f"Run {forged} carries this task's marker, but its overrides differ (steps_override" in caplog.text


def test_a_copied_marker_alone_makes_the_retry_trigger_its_own_run(
    emulator: Any, airflow_conn: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_dbt_cloud_dlt.markers import marker_of
    from airflow_dbt_cloud_dlt.operators import RunDbtCloudJobOperator

    monkeypatch.setenv("DBT_CLOUD__MARKER_SECRET", "prod-secret")
    emulator.add_job(JobScript(job_id=11, account_id=1, run_seconds=0.0))
    # a run with this task instance's marker (leaked, say) and another schema
    _post_run(emulator, 11, {"cause": f"copied {marker_of(_ti(1, 1))}", "schema_override": "dbt_attacker"})
    operator = RunDbtCloudJobOperator(task_id="dbt", job_id=11, retries=1, wait_for_termination=False)
    forged, ours = (run["id"] for run in runs_of(emulator, 11)), _execute(operator, try_number=2)
    assert ours != next(forged) and len(runs_of(emulator, 11)) == 2
    assert "its overrides differ (schema_override 'dbt_attacker' instead of None)" in caplog.text


def test_reuse_existing_run_skips_an_active_run_with_other_overrides(
    emulator: Any, airflow_conn: str, caplog: pytest.LogCaptureFixture
) -> None:
    from airflow_dbt_cloud_dlt.operators import RunDbtCloudJobOperator

    emulator.add_job(JobScript(job_id=12, account_id=1, run_seconds=30, serial=False))
    other = _post_run(emulator, 12, {"cause": "by hand", "steps_override": ["dbt run -s something_else"]})
    same = _post_run(emulator, 12, {"cause": "by hand", "steps_override": ["dbt build"]})
    kwargs = {"job_id": 12, "reuse_existing_run": True, "wait_for_termination": False}
    reusing = RunDbtCloudJobOperator(task_id="dbt", steps_override=["dbt build"], **kwargs)  # type: ignore[arg-type]
    assert _execute(reusing, try_number=1) == same
    differing = RunDbtCloudJobOperator(task_id="dbt", steps_override=["dbt test"], **kwargs)  # type: ignore[arg-type]
    assert _execute(differing, try_number=1) not in (same, other)
    assert f"Run {same} of job 12 is in progress, but its overrides differ" in caplog.text


def test_marker_key_sources_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_dbt_cloud_dlt._compat import AIRFLOW_3
    from airflow_dbt_cloud_dlt.markers import key_is_bound, marker_key

    for name in ("DBT_CLOUD__MARKER_SECRET", "AIRFLOW__DBT_CLOUD__MARKER_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", "")  # unit-test mode makes one up
    secret_key = "AIRFLOW__API__SECRET_KEY" if AIRFLOW_3 else "AIRFLOW__WEBSERVER__SECRET_KEY"
    monkeypatch.delenv(secret_key, raising=False)
    assert marker_key()[1] == "none" and not key_is_bound()  # Airflow's made-up, per-process secret_key is not a key
    steps = [
        (secret_key, "[api] secret_key" if AIRFLOW_3 else "[webserver] secret_key"),
        ("AIRFLOW__CORE__FERNET_KEY", "[core] fernet_key"),
        ("AIRFLOW__DBT_CLOUD__MARKER_SECRET", "[dbt_cloud] marker_secret"),
        ("DBT_CLOUD__MARKER_SECRET", "env DBT_CLOUD__MARKER_SECRET"),
    ]
    for name, source in steps:  # each source set wins over those set before it
        monkeypatch.setenv(name, f"value of {name}")
        assert marker_key() == (f"value of {name}".encode(), source)


def test_marker_names_the_deployment_and_the_exact_task_instance(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_dbt_cloud_dlt.api.idempotency import MARKER_PATTERN
    from airflow_dbt_cloud_dlt.markers import (
        deployment_marker_of,
        is_marked_by,
        is_this_deployments,
        key_is_bound,
        task_instance_marker,
        this_deployment_tag,
    )

    monkeypatch.setenv("DBT_CLOUD__MARKER_SECRET", "prod-secret")
    identity = ("dag", "task", "manual__2026-01-01", 3, 1)
    marker = task_instance_marker(*identity)
    assert MARKER_PATTERN.fullmatch(marker) and marker.startswith(f"[af:{this_deployment_tag()}.")
    assert task_instance_marker(*identity) == marker  # stable: every worker and try computes the same
    for changed in range(len(identity)):
        other = list(identity)
        other[changed] = f"{other[changed]}x" if isinstance(other[changed], str) else other[changed] + 1
        assert task_instance_marker(*other) != marker, changed  # type: ignore[arg-type]
    cause = f"Triggered by Airflow {task_instance_marker('d', 'dbt', 'r', -1, 1)}"
    assert is_marked_by(cause, _ti(try_number=2, max_tries=1))  # a retry of the series
    assert not is_marked_by(cause, _ti(try_number=2, max_tries=2))  # cleared: a new series
    assert is_this_deployments(f"Triggered by Airflow {marker}") and not is_this_deployments("Triggered by schedule")
    assert deployment_marker_of(f"Triggered by Airflow {marker}") == marker and key_is_bound()
    monkeypatch.setenv("DBT_CLOUD__MARKER_SECRET", "staging-secret")
    assert task_instance_marker(*identity) != marker and not marker.startswith(f"[af:{this_deployment_tag()}.")
    assert not is_this_deployments(f"Triggered by Airflow {marker}")
    assert deployment_marker_of(f"Triggered by Airflow {marker}") is None


def test_mismatch_compares_the_job_and_every_override() -> None:
    from airflow_dbt_cloud_dlt.api.idempotency import mismatch

    body = {"cause": "mine [af:...]", "steps_override": ["dbt build"], "threads_override": 4}
    echoed = {"cause": "other", "steps_override": ["dbt build"], "threads_override": 4, "schema_override": None}
    assert mismatch({"job_definition_id": 5, "trigger": {**echoed, "generate_docs_override": False}}, 5, body) is None
    assert "job 6, not job 5" in str(mismatch({"job_definition_id": 6, "trigger": echoed}, 5, body))
    assert "job None" in str(mismatch({"trigger": {}}, 5, body))
    problem = mismatch(
        {"job_definition_id": 5, "trigger": {**echoed, "schema_override": "x", "threads_override": 8}}, 5, body
    )
    assert problem == "its overrides differ (schema_override 'x' instead of None, threads_override 8 instead of 4)"
    assert mismatch({"job_definition_id": 5, "trigger": {**echoed, "threads_override": "4"}}, 5, body)  # typed
    assert mismatch({"job_definition_id": 5, "trigger": echoed}, 5, {**body, "git_sha": "abc"})  # a data key
