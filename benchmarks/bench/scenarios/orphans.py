"""``orphans``: a deferred task is marked failed while the triggerer is down; is its dbt Cloud run cancelled?

A real Airflow 3 stack (api-server, scheduler, dag-processor, triggerer; LocalExecutor on SQLite) in a work
dir, against the benchmark's emulator over https (its CA trusted through the environment). Each trial: the
scheduler starts a one-task DAG run, the task triggers a 10-minute dbt Cloud run and defers; the triggerer is
stopped; the task is marked failed through the REST API; the triggerer is started again. The trial records
whether the run was cancelled within :data:`WINDOW` seconds of the mark (else it is an orphan) and how long
that took, and which path cancelled it (``Trigger.on_kill`` when the restarted triggerer still found the
trigger, the reconciler when the trigger was gone). In every second trial the trigger's row is deleted while
the triggerer is down, as Airflow's clean-up of unused triggers (on another triggerer, say) does: then no
``on_kill`` can run, and only the reconciler is left. Ours runs :data:`TRIALS` trials, the official provider's
``DbtCloudRunJobOperator`` fewer (each of its orphans costs the whole window).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..clients import connection_json
from ..config import ACCOUNT
from ..context import Bench
from ..emulator import Emulator
from ..table import Target

TRIALS = {"ours": 20, "official": 3}
QUICK_TRIALS = {"ours": 2, "official": 1}
#: A run not cancelled this long after the task was marked failed is an orphan (the issue's bound).
WINDOW = 60.0
DAGS = textwrap.dedent(
    """
    from datetime import datetime

    from airflow.sdk import DAG
    from airflow.providers.dbt.cloud.operators.dbt import DbtCloudRunJobOperator as Official

    from airflow_dbt_cloud_dlt.operators import RunDbtCloudJobOperator

    with DAG("orphans_ours", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
        RunDbtCloudJobOperator(task_id="dbt", job_id=301, deferrable=True, poll_interval=5, retries=0)

    with DAG("orphans_official", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
        Official(task_id="dbt", dbt_cloud_conn_id="dbt_official", job_id=302, deferrable=True, check_interval=5,
                 retries=0)
    """
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(condition: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    return None


class _Stack:
    def __init__(self, home: Path, emulator: Emulator) -> None:
        self.home, self.port = home, _free_port()
        (home / "dags").mkdir(parents=True, exist_ok=True)
        (home / "dags" / "orphans_dags.py").write_text(DAGS)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "DBT_CLOUD"))},
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.port}",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__DBT_CLOUD__MARKER_SECRET": "orphans-bench-secret",
            "AIRFLOW_CONN_DBT_CLOUD_DEFAULT": connection_json("ours", emulator),
            "AIRFLOW_CONN_DBT_OFFICIAL": connection_json("official", emulator),
            "SSL_CERT_FILE": emulator.ca_cert,
            "REQUESTS_CA_BUNDLE": emulator.ca_cert,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def airflow(self, *args: str) -> None:
        subprocess.run([sys.executable, "-m", "airflow", *args], env=self.env, check=True, capture_output=True)

    def start(self, name: str) -> None:
        log = (self.home / f"{name}.out").open("ab")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "airflow", name], env=self.env, stdout=log, stderr=log, start_new_session=True
        )

    def stop(self, name: str) -> None:
        process = self.processes.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        import requests

        base = f"http://127.0.0.1:{self.port}"
        token = requests.get(f"{base}/auth/token", timeout=10).json()["access_token"]
        response = requests.request(
            method, f"{base}/api/v2{path}", headers={"Authorization": f"Bearer {token}"}, timeout=30, **kwargs
        )
        response.raise_for_status()
        return response.json()

    def ti_state(self, dag_id: str, run_id: str) -> str | None:
        with sqlite3.connect(self.home / "airflow.db") as db:
            row = db.execute(
                "select state from task_instance where dag_id = ? and run_id = ?", (dag_id, run_id)
            ).fetchone()
        return row[0] if row else None

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.home.glob("*.out"))


def _status(emulator: Emulator, run_id: int) -> int:
    return int(emulator.runs()[run_id]["status"])


def _trial(stack: _Stack, emulator: Emulator, side: str, job_id: int, index: int) -> dict[str, Any]:
    dag_id = f"orphans_{side}"
    run_id = f"trial_{index}"
    stack.api("POST", f"/dags/{dag_id}/dagRuns", json={"dag_run_id": run_id, "logical_date": None})
    if not _wait(lambda: stack.ti_state(dag_id, run_id) == "deferred", 180):
        raise RuntimeError(f"{dag_id} {run_id} never deferred:\n{stack.log_text()[-3000:]}")
    (dbt_run,) = [run for run in emulator.runs().values() if run["job_definition_id"] == job_id and run["status"] < 10]
    stack.stop("triggerer")
    stack.api("PATCH", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/dbt", json={"new_state": "failed"})
    marked = time.monotonic()
    if index % 2:
        with sqlite3.connect(stack.home / "airflow.db") as db:
            db.execute("delete from trigger")
    time.sleep(2)
    stack.start("triggerer")
    cancelled = _wait(lambda: _status(emulator, dbt_run["id"]) == 30, WINDOW - (time.monotonic() - marked))
    took = time.monotonic() - marked if cancelled else None
    if not cancelled:  # clean up: the next trial starts from no running run
        emulator.session.post(f"{emulator.base_url}/api/v2/accounts/{ACCOUNT}/runs/{dbt_run['id']}/cancel/", timeout=30)
    by_reconciler = f"Cancelling dbt Cloud run {dbt_run['id']}" in stack.log_text()
    path = "reconciler" if by_reconciler else ("on_kill" if cancelled else None)
    print(
        f"[bench]   orphans {side:8} trial {index + 1}: {f'cancelled in {took:.1f} s ({path})' if took else 'ORPHANED'}"
    )
    return {"cancelled": bool(cancelled), "seconds": took, "path": path}


def run(bench: Bench) -> None:
    if bench.args.quick and "orphans" not in bench.args.only:
        print("[bench]   orphans: skipped in --quick (it starts a whole Airflow stack); name it in --only to run it")
        return
    trials = QUICK_TRIALS if bench.args.quick else TRIALS
    home = bench.workdir / "orphans_airflow"
    figures: dict[str, Any] = {"window_s": WINDOW}
    emulator = bench.emulator
    for job_id in (301, 302):
        job = {"job_id": job_id, "account_id": ACCOUNT, "name": f"orphans {job_id}", "outcome": "success"}
        emulator.control("POST", "jobs/", {**job, "run_seconds": 600, "serial": False})
    stack = _Stack(home, emulator)
    stack.airflow("db", "migrate")
    for name in ("api-server", "scheduler", "dag-processor", "triggerer"):
        stack.start(name)
    try:
        _wait(lambda: _answers(stack.port), 120)
        _wait(lambda: _dags_parsed(stack), 180)
        for side, job_id in (("ours", 301), ("official", 302)):
            results = [_trial(stack, emulator, side, job_id, index) for index in range(trials[side])]
            times = [r["seconds"] for r in results if r["seconds"] is not None]
            figures[side] = {
                "trials": len(results),
                "orphaned": sum(not r["cancelled"] for r in results),
                "median_s": statistics.median(times) if times else None,
                "max_s": max(times) if times else None,
                "paths": {p: sum(r["path"] == p for r in results) for p in ("on_kill", "reconciler")},
            }
    finally:
        for name in list(stack.processes):
            stack.stop(name)
    bench.extra["orphans"] = figures


def _answers(port: int) -> bool:
    import requests

    try:
        return requests.get(f"http://127.0.0.1:{port}/api/v2/version", timeout=2).status_code < 500
    except requests.ConnectionError:
        return False


def _dags_parsed(stack: _Stack) -> bool:
    with contextlib.suppress(sqlite3.Error), sqlite3.connect(stack.home / "airflow.db") as db:
        return len(db.execute("select dag_id from dag where dag_id like 'orphans_%'").fetchall()) == 2
    return False


def targets(figures: dict[str, Any] | None) -> list[Target]:
    if not figures or "ours" not in figures:
        return []
    ours = figures["ours"]
    detail = f"ours {ours['orphaned']} of {ours['trials']}, official {figures.get('official', {}).get('orphaned', '-')}"
    detail += f" of {figures.get('official', {}).get('trials', '-')}"
    return [("no orphaned run when a task is marked failed while the triggerer is down", ours["orphaned"] == 0, detail)]


def render(figures: dict[str, Any] | None) -> list[str]:
    if not figures:
        return []
    lines = [
        "",
        "## Marked failed while the triggerer is down: orphaned runs (real Airflow 3 stack)",
        "",
        f"A run still going {figures['window_s']:.0f} s after its task was marked failed counts as orphaned. In "
        "every second trial the trigger was deleted while the triggerer was down (as Airflow's clean-up of unused "
        "triggers does), which leaves the reconciler as the only path.",
        "",
        "| side | trials | orphaned | time to cancel, median | max | cancelled by on_kill / reconciler |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for side in ("ours", "official"):
        if side in figures:
            f = figures[side]
            median = "-" if f["median_s"] is None else f"{f['median_s']:.1f} s"
            most = "-" if f["max_s"] is None else f"{f['max_s']:.1f} s"
            paths = f"{f['paths']['on_kill']} / {f['paths']['reconciler']}"
            lines.append(f"| {side} | {f['trials']} | {f['orphaned']} | {median} | {most} | {paths} |")
    return lines
