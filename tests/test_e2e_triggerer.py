"""End to end on Airflow 3.3: a real ``airflow triggerer`` and ``api-server``, and ``airflow dags test
--use-executor`` running tasks in LocalExecutor worker processes, against the emulator.

Covers what only real processes show: a deferred task waiting on the triggerer, a user killing it (mark
failed, clear) which must cancel the dbt Cloud run through ``Trigger.on_kill``, a triggerer SIGKILLed
mid-wait, and a worker that dies right after the trigger POST.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import AIRFLOW_2, TESTS, TOKEN, connection_json, start_run

from airflow_dbt_cloud_dlt.testing import DbtCloudEmulator, JobScript

pytestmark = pytest.mark.skipif(AIRFLOW_2, reason="Trigger.on_kill and SQLite with LocalExecutor need Airflow 3.3")
AIRFLOW = [sys.executable, "-m", "airflow"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def stop_group(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Signal a process and its children; SIGKILL them if they are not gone within 20 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


class Stack:
    """The emulator, an api-server and a triggerer, sharing one SQLite AIRFLOW_HOME."""

    def __init__(self, home: Path, emulator: DbtCloudEmulator) -> None:
        self.home = home
        self.emulator = emulator
        self.api_port = free_port()
        self.env = {
            **os.environ,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__CORE__DAGS_FOLDER": str(TESTS / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.api_port}",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
            "AIRFLOW__SCHEDULER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "4",
            "AIRFLOW__DBT_CLOUD__ORPHAN_CHECK_INTERVAL": "2",
            # every process of the deployment keys its run markers alike (README, Security)
            "AIRFLOW__DBT_CLOUD__MARKER_SECRET": "e2e-marker-secret",
            "AIRFLOW_CONN_DBT_CLOUD_DEFAULT": connection_json(emulator.base_url),
            "PYTHONPATH": str(TESTS / "dags"),
        }
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
        log = (self.home / f"{name}.out").open("ab")
        process = subprocess.Popen(  # own process group, so that stopping it stops its workers too
            [*AIRFLOW, *args], env={**self.env, **env}, stdout=log, stderr=log, start_new_session=True
        )
        self.processes[name] = process
        return process

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        stop_group(self.processes.pop(name), sig)

    def ti_states(self, dag_id: str) -> dict[str, str | None]:
        with sqlite3.connect(self.home / "airflow.db") as db:
            rows = db.execute("select task_id, state from task_instance where dag_id = ?", (dag_id,)).fetchall()
        return dict(rows)

    def ti_tries(self, dag_id: str) -> dict[str, int]:
        with sqlite3.connect(self.home / "airflow.db") as db:
            rows = db.execute("select task_id, try_number from task_instance where dag_id = ?", (dag_id,))
            return dict(rows.fetchall())

    def dags_test(self, dag_id: str, **operator_kwargs: Any) -> subprocess.Popen[bytes]:
        spec = json.dumps({dag_id: ["operator", operator_kwargs]})
        return self.start(f"dags-test-{dag_id}", "dags", "test", "--use-executor", dag_id, DBT_TEST_DAGS=spec)

    def finish(self, process: subprocess.Popen[bytes], dag_id: str, timeout: float = 240) -> str:
        """Wait for the DAG run to end and return its state. The ``dags test`` process is then stopped: its
        LocalExecutor can take long to shut down on a busy machine, and the outcome is already in the DB."""

        def state() -> str | None:
            with sqlite3.connect(self.home / "airflow.db") as db:
                row = db.execute("select state from dag_run where dag_id = ?", (dag_id,)).fetchone()
            return row[0] if row and row[0] in ("success", "failed") else None

        try:
            return str(wait_until(state, timeout, f"the {dag_id} run to end"))
        finally:
            stop_group(process)

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        base = f"http://127.0.0.1:{self.api_port}"
        token = requests.get(f"{base}/auth/token", timeout=10).json()["access_token"]
        response = requests.request(
            method, f"{base}/api/v2{path}", headers={"Authorization": f"Bearer {token}"}, timeout=30, **kwargs
        )
        response.raise_for_status()
        return response

    def all_output(self) -> str:
        files = [*self.home.glob("*.out"), *self.home.rglob("logs/**/*.log")]
        return "\n".join(path.read_text(errors="replace") for path in files if path.is_file())


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    home = Path(tempfile.mkdtemp(prefix="airflow-e2e-"))
    with DbtCloudEmulator(accounts={1: TOKEN}) as emulator:
        st = Stack(home, emulator)
        subprocess.run([*AIRFLOW, "db", "migrate"], env=st.env, check=True, capture_output=True, timeout=180)
        st.start("api-server", "api-server")
        st.start("triggerer", "triggerer")
        wait_until(lambda: _answers(st.api_port), 60, "the api-server")
        yield st
        for name in list(st.processes):
            st.stop(name)


def _answers(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/api/v2/version", timeout=2).status_code < 500
    except requests.ConnectionError:
        return False


def runs_of(emulator: DbtCloudEmulator, job_id: int) -> list[dict[str, Any]]:
    return [run for run in emulator.runs.values() if run["job_definition_id"] == job_id]


def test_deferred_task_waits_on_the_real_triggerer_and_the_token_never_leaks(stack: Stack) -> None:
    stack.emulator.add_job(JobScript(job_id=101, account_id=1, run_seconds=12))
    process = stack.dags_test("e2e_success", job_id=101, deferrable=True, poll_interval=1)
    assert stack.finish(process, "e2e_success") == "success"
    assert stack.ti_states("e2e_success") == {"dbt": "success"}
    (run,) = runs_of(stack.emulator, 101)
    assert run["status"] == 10
    trigger_logs = list(stack.home.rglob("logs/dag_id=e2e_success/**/*.log.trigger.*.log"))
    assert trigger_logs and "Trigger fired event" in trigger_logs[0].read_text()
    assert TOKEN not in stack.all_output()
    # The deferred wait reports progress in the task log, one line per status change, and the event that
    # Airflow logs whole is small.
    lines = trigger_logs[0].read_text().splitlines()
    progress = [line for line in lines if f"dbt Cloud run {run['id']}: " in line]
    assert any("Running" in line for line in progress), lines
    assert len(progress) <= 4, progress  # per change, not per poll (about 3 polls while running)
    (fired,) = [json.loads(line) for line in lines if "Trigger fired event" in line]
    assert len(fired["result"]) < 400, fired["result"]


@pytest.mark.parametrize("action", ["mark_failed", "clear"])
def test_killing_a_deferred_task_cancels_its_dbt_cloud_run(stack: Stack, action: str) -> None:
    dag_id, job_id, poll = f"e2e_kill_{action}", {"mark_failed": 111, "clear": 112}[action], 2.0
    stack.emulator.add_job(JobScript(job_id=job_id, account_id=1, run_seconds=300))
    process = stack.dags_test(dag_id, job_id=job_id, deferrable=True, poll_interval=poll, retries=0)
    wait_until(lambda: stack.ti_states(dag_id).get("dbt") == "deferred", 120, "the task to defer")
    (run,) = runs_of(stack.emulator, job_id)
    # Kill only once the triggerer runs the trigger (it polls the run): a trigger that no triggerer has
    # started yet is simply dropped by Airflow, with no on_kill to call.
    polled = str(run["id"])
    wait_until(lambda: any(polled in r.query.get("pk__in", []) for r in stack.emulator.requests), 60, "the first poll")
    with sqlite3.connect(stack.home / "airflow.db") as db:
        (run_id,) = db.execute("select run_id from dag_run where dag_id = ?", (dag_id,)).fetchone()
    killed_at = time.monotonic()
    if action == "mark_failed":
        stack.api("PATCH", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/dbt", json={"new_state": "failed"})
    else:
        stack.api(
            "POST",
            f"/dags/{dag_id}/clearTaskInstances",
            json={"dry_run": False, "only_failed": False, "task_ids": ["dbt"], "dag_run_id": run_id},
        )
    wait_until(lambda: stack.emulator.get_run(run["id"])["status"] == 30, 30, "the dbt Cloud run to be cancelled")
    took = time.monotonic() - killed_at
    stop_group(process)
    # The triggerer notices the user's action on its next loop (about 1 s), then on_kill cancels at once.
    assert took <= poll + 2.0, f"the run was cancelled {took:.1f} s after the {action}"


def test_triggerer_sigkilled_mid_wait_loses_nothing(stack: Stack) -> None:
    stack.emulator.add_job(JobScript(job_id=121, account_id=1, run_seconds=12, serial=False))
    process = stack.dags_test("e2e_restart", job_id=121, deferrable=True, poll_interval=1, tasks=3)
    wait_until(lambda: set(stack.ti_states("e2e_restart").values()) == {"deferred"}, 120, "all three tasks to defer")
    stack.stop("triggerer", signal.SIGKILL)
    time.sleep(1)
    stack.start("triggerer", "triggerer")
    assert stack.finish(process, "e2e_restart") == "success"
    assert stack.ti_states("e2e_restart") == {"dbt_0": "success", "dbt_1": "success", "dbt_2": "success"}
    assert sorted(run["status"] for run in runs_of(stack.emulator, 121)) == [10, 10, 10]


def test_worker_dying_right_after_the_trigger_post_attaches_on_retry(stack: Stack) -> None:
    stack.emulator.add_job(JobScript(job_id=131, account_id=1, run_seconds=3))
    process = stack.dags_test(
        "e2e_crash", job_id=131, crash="exit", deferrable=True, poll_interval=1, retries=1, retry_delay=0
    )
    assert stack.finish(process, "e2e_crash") == "success"
    assert stack.ti_states("e2e_crash") == {"dbt": "success"}
    assert stack.ti_tries("e2e_crash") == {"dbt": 2}
    (run,) = runs_of(stack.emulator, 131)  # exactly one dbt Cloud run across both tries
    assert run["status"] == 10


ORPHAN_ACTIONS = {"mark_failed": 141, "mark_success": 142, "clear": 143, "fail_dag_run": 144, "delete_dag_run": 145}


@pytest.mark.parametrize("action", list(ORPHAN_ACTIONS))
def test_a_task_stopped_while_the_triggerer_is_down_still_gets_its_run_cancelled(stack: Stack, action: str) -> None:
    """No trigger is left to call on_kill: the triggerer's reconciler finds the orphan when it is back, whatever
    ended the wait. A run of the same job started by hand at the same time is left alone, and so is the run of
    the new try that a clear starts."""
    dag_id, job_id = f"e2e_orphan_{action}", ORPHAN_ACTIONS[action]
    by_hand = start_run(stack.emulator, job_id, cause="started by hand", run_seconds=300, serial=False)
    process = stack.dags_test(dag_id, job_id=job_id, deferrable=True, poll_interval=2, retries=0)
    wait_until(lambda: stack.ti_states(dag_id).get("dbt") == "deferred", 120, "the task to defer")
    (ours,) = [run for run in runs_of(stack.emulator, job_id) if run["id"] != by_hand]
    stack.stop("triggerer")
    with sqlite3.connect(stack.home / "airflow.db") as db:
        (run_id,) = db.execute("select run_id from dag_run where dag_id = ?", (dag_id,)).fetchone()
    task = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/dbt"
    if action in ("mark_failed", "mark_success"):
        stack.api("PATCH", task, json={"new_state": action.removeprefix("mark_")})
    elif action == "clear":
        stack.api(
            "POST",
            f"/dags/{dag_id}/clearTaskInstances",
            json={"dry_run": False, "only_failed": False, "task_ids": ["dbt"], "dag_run_id": run_id},
        )
    else:  # the DAG run marked failed; Airflow deletes only a DAG run that is not running
        stack.api("PATCH", f"/dags/{dag_id}/dagRuns/{run_id}", json={"state": "failed"})
        if action == "delete_dag_run":
            stack.api("DELETE", f"/dags/{dag_id}/dagRuns/{run_id}")
    marked_at = time.monotonic()
    with sqlite3.connect(stack.home / "airflow.db") as db:  # the trigger is gone, as Airflow's cleanup of
        db.execute("delete from trigger")  # unused triggers (on another triggerer, say) leaves it: no on_kill
    time.sleep(3)
    assert stack.emulator.get_run(ours["id"])["status"] != 30  # nothing cancels it while no triggerer runs
    stack.start("triggerer", "triggerer")
    wait_until(lambda: stack.emulator.get_run(ours["id"])["status"] == 30, 60, "the orphaned run to be cancelled")
    took = time.monotonic() - marked_at
    time.sleep(2 * 2)  # two more reconciler passes: nothing else may be cancelled
    stop_group(process)
    assert took <= 60, took
    others = [run for run in runs_of(stack.emulator, job_id) if run["id"] != ours["id"]]
    assert all(run["status"] != 30 for run in others), others  # by hand, and a cleared task's new try
    assert f"Cancelling dbt Cloud run {ours['id']}" in stack.all_output()


def test_two_triggerers_cancel_an_orphan_once(stack: Stack) -> None:
    """Airflow's high-availability setup: both triggerers run the reconciler, only the leader acts."""
    dag_id, job_id = "e2e_orphan_two_triggerers", 151
    stack.emulator.add_job(JobScript(job_id=job_id, account_id=1, run_seconds=300))
    stack.start("triggerer-2", "triggerer")
    try:
        process = stack.dags_test(dag_id, job_id=job_id, deferrable=True, poll_interval=2, retries=0)
        wait_until(lambda: stack.ti_states(dag_id).get("dbt") == "deferred", 120, "the task to defer")
        (ours,) = runs_of(stack.emulator, job_id)
        with sqlite3.connect(stack.home / "airflow.db") as db:
            (run_id,) = db.execute("select run_id from dag_run where dag_id = ?", (dag_id,)).fetchone()
            db.execute("delete from trigger")  # no on_kill: the reconcilers alone
        stack.api("PATCH", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/dbt", json={"new_state": "failed"})
        wait_until(lambda: stack.emulator.get_run(ours["id"])["status"] == 30, 60, "the orphaned run to be cancelled")
        stop_group(process)
        seen = len(stack.emulator.requests)
        time.sleep(10)  # five passes (2 s) of each reconciler
        listings = [r for r in stack.emulator.requests[seen:] if "status__in" in r.query]
    finally:
        stack.stop("triggerer-2")
    cancels = [
        r for r in stack.emulator.requests if r.method == "POST" and r.path.endswith(f"/runs/{ours['id']}/cancel/")
    ]
    assert len(cancels) == 1, cancels
    assert 3 <= len(listings) <= 7, len(listings)  # one reconciler lists (about 5 passes), not both (about 10)
