"""``make demo``: the dlt → DuckDB → dbt Cloud example DAG, end to end, on this machine, in well under a minute.

``python -m airflow_dbt_cloud_dlt.demo [--keep] [--verbose]``

It starts the local dbt Cloud emulator, makes a throw-away ``AIRFLOW_HOME`` (SQLite) whose dags folder is the
repository's ``example_dags/``, runs ``airflow db migrate`` and ``airflow dags test example_dlt_then_dbt_cloud``
(deferred waits run in line there), and then says what happened: rows loaded, the dbt Cloud run, whether the
dbt task really deferred, the requests dbt Cloud saw, and the task states. It exits 1 if anything failed.
Nothing is read from, or written to, your own Airflow or dbt Cloud settings.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from importlib.util import find_spec
from pathlib import Path
from typing import Any, TextIO

from airflow_dbt_cloud_dlt.testing import DbtCloudEmulator
from airflow_dbt_cloud_dlt.testing.emulator import default_demo_job

DAG_ID = "example_dlt_then_dbt_cloud"
TABLE = "raw.orders"  # where the example DAG's dlt pipeline loads
ACCOUNT_ID = 1
DEFERRED_MARK = "running trigger in line"  # logged by dag.test() on Airflow 3.3 and 2.11 when a task defers
DAGS_TEST_TIMEOUT = 300.0
#: Inherited variables that would change what the demo does; every other variable is passed through.
_SCRUBBED_PREFIXES = ("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_", "DBT_CLOUD_")  # DBT_CLOUD__* too
_SCRUBBED_NAMES = ("AIRFLOW_HOME", "AIRFLOW_CONFIG", "DEMO_DUCKDB_PATH", "DLT_DATA_DIR")
#: Lines of ``airflow dags test`` output worth showing (the rest is in the log file).
_SHOWN = re.compile(
    r"\[DAG TEST\] (starting|running trigger|Trigger completed|end task)|dbt Cloud run|Pausing task as DEFERRED"
    r"|dlt loaded|load step finished|Load package|Traceback|Error|ERROR|error\s*\]|Task failed|Marking run",
)
#: Airflow 3 (structlog) ``TS [level   ] message [logger] key=value`` and Airflow 2 ``[TS] {file:line} LEVEL - message``.
_LOG_PREFIXES = (
    re.compile(r"^\S+Z \[\s*(?P<level>\w+)\s*\] (?P<msg>.*?)(?: \[[\w.]+\](?: \w+=.*)?)?$"),
    re.compile(r"^\[[^\]]+\] \{[^}]+\} (?P<level>[A-Z]+) - (?P<msg>.*)$"),
)


@dataclass
class Outcome:
    """What the demo observed; ``problems`` empty means success."""

    rows: int | None = None
    run: dict[str, Any] | None = None
    deferred: bool = False
    task_states: dict[str, str] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def find_example_dags() -> Path:
    """``example_dags/`` of the repository this package runs from (editable install), else of the cwd."""
    for root in (Path(__file__).resolve().parent.parent, Path.cwd()):
        candidate = root / "example_dags"
        if (candidate / f"{DAG_ID}.py").is_file():
            return candidate
    raise SystemExit(f"Cannot find example_dags/{DAG_ID}.py: run the demo from the repository's root.")


def demo_environment(work: Path, dags: Path, base_url: str, token: str) -> dict[str, str]:
    """The environment of the Airflow commands: a fresh SQLite home and a connection to the emulator."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(_SCRUBBED_PREFIXES) and name not in _SCRUBBED_NAMES
    }
    home = work / "airflow"
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW_CONN_DBT_CLOUD_DEFAULT": json.dumps(
                {"conn_type": "dbt_cloud_dlt", "host": base_url, "login": str(ACCOUNT_ID), "password": token}
            ),
            "DBT_CLOUD_JOB_ID": "1",
            "DBT_CLOUD_POLL_INTERVAL": "1",  # the demo job takes about 3 s
            "DEMO_DUCKDB_PATH": str(work / "demo.duckdb"),
            "DLT_DATA_DIR": str(work / "dlt"),  # dlt's pipeline state, instead of ~/.dlt
            "RUNTIME__DLTHUB_TELEMETRY": "false",  # no calls home from dlt
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def log_message(line: str) -> str:
    """The message of an Airflow 3 or Airflow 2 log line; other lines (prints) unchanged."""
    for pattern in _LOG_PREFIXES:
        match = pattern.match(line)
        if match:
            line = match["msg"].strip()
            break
    dag_run = re.match(r"Marking run <DagRun .*> (successful|failed)$", line)
    return f"DAG run {dag_run[1]}" if dag_run else line


class Clock:
    """Prints ``[  12.3s] message`` lines, seconds since the demo started."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self.start = time.monotonic()
        self.out = out

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def say(self, message: str) -> None:
        print(f"[{self.elapsed():6.1f}s] {message}", file=self.out, flush=True)


def run_quietly(command: Sequence[str], env: dict[str, str], log_file: Path) -> int:
    """Run ``command``, its output to ``log_file`` only; -1 if it takes longer than ``DAGS_TEST_TIMEOUT``."""
    with log_file.open("w") as log:
        try:
            done = subprocess.run(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, check=False, timeout=DAGS_TEST_TIMEOUT
            )
        except subprocess.TimeoutExpired:
            return -1
        return done.returncode


def run_streaming(
    command: Sequence[str], env: dict[str, str], log_file: Path, clock: Clock, verbose: bool
) -> tuple[int, bool]:
    """Run ``command``, keep all output in ``log_file`` and show the interesting lines.

    Returns the exit code and whether a task deferred (``dag.test()`` then runs the trigger in line).
    """
    deferred = False
    last_shown = ""
    with log_file.open("w") as log:
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        )
        assert process.stdout is not None
        watchdog = threading.Timer(DAGS_TEST_TIMEOUT, process.kill)  # a hung run must not hang the demo
        watchdog.start()
        try:
            for raw in process.stdout:
                log.write(raw)
                line = raw.rstrip()
                deferred = deferred or DEFERRED_MARK in line
                if verbose:
                    print(line, flush=True)
                elif _SHOWN.search(line) and (message := log_message(line)[:200]) != last_shown:
                    clock.say("  " + message)  # Airflow 2 prints task log lines twice: once is enough
                    last_shown = message
            rc = process.wait()
            if not watchdog.is_alive():
                clock.say(f"  ... stopped after {DAGS_TEST_TIMEOUT:.0f} s without an end")
            return rc, deferred
        finally:
            watchdog.cancel()
            if process.poll() is None:
                process.kill()
                process.wait()


def read_task_states(db_path: Path) -> dict[str, str]:
    """Task id → state of the demo DAG's latest run, straight from the SQLite metadata DB."""
    if not db_path.is_file():
        return {}
    with sqlite3.connect(db_path) as db:
        rows = db.execute(
            "SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = "
            "(SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1) ORDER BY end_date",
            (DAG_ID, DAG_ID),
        ).fetchall()
    return {str(task_id): str(state) for task_id, state in rows}


def count_rows(duckdb_path: Path) -> int | None:
    """Rows in the table the example DAG loads, or None if there is none."""
    if not duckdb_path.is_file():
        return None
    import duckdb  # optional (the dlt extra): only a demo that loaded a table has one to count

    with duckdb.connect(str(duckdb_path), read_only=True) as db:
        row = db.execute(f"SELECT count(*) FROM {TABLE}").fetchone()
    return int(row[0]) if row else None


def check(outcome: Outcome, dags_rc: int) -> None:
    """Turn what was observed into problems."""
    if dags_rc != 0:
        outcome.problems.append(f"airflow dags test exited with {dags_rc}")
    failed = {task: state for task, state in outcome.task_states.items() if state != "success"}
    if not outcome.task_states:
        outcome.problems.append("no task instance was recorded")
    elif failed:
        outcome.problems.append(f"tasks not successful: {failed}")
    if not outcome.rows:
        outcome.problems.append("dlt loaded no rows")
    if outcome.run is None:
        outcome.problems.append("dbt Cloud saw no run")
    elif outcome.run.get("status_humanized") != "Success":
        outcome.problems.append(f"the dbt Cloud run ended {outcome.run.get('status_humanized')}")
    if not outcome.deferred:
        outcome.problems.append(f"the dbt task did not defer (no {DEFERRED_MARK!r} line)")


def print_summary(outcome: Outcome, work: Path, keep: bool, log_file: Path) -> None:
    duckdb_path = work / "demo.duckdb"
    print("\nWhat happened")
    if outcome.rows is not None:
        print(f"  dlt        loaded {outcome.rows} rows into {TABLE} in DuckDB at {duckdb_path}")
    run = outcome.run
    if run is not None:
        print(
            f"  dbt Cloud  run {run['id']} of job {run['job_definition_id']}: {run['status_humanized']} "
            f"in {run.get('duration_humanized')} — {run.get('href')}"
        )
    print(
        "  deferral   "
        + (f"the dbt task deferred; its trigger polled the run ({DEFERRED_MARK!r})" if outcome.deferred else "NOT seen")
    )
    if outcome.task_states:
        print("  tasks      " + ", ".join(f"{task} {state}" for task, state in outcome.task_states.items()))
    total = sum(outcome.requests.values())
    print(f"  emulator   {total} API request(s)")
    for endpoint, count in sorted(outcome.requests.items(), key=lambda item: (-item[1], item[0])):
        print(f"             {count:3d} x {endpoint}")
    print("  timings    " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in outcome.timings.items()))
    print(f"  files      {work}" + ("" if keep else " (removed now; --keep keeps it)") + f", log {log_file.name}")
    if outcome.problems:
        print("\nDemo FAILED: " + "; ".join(outcome.problems))
        if not keep:
            print("Run it again with --verbose (all output) or --keep (keep the log and the DuckDB file).")
    else:
        print("\nDemo OK.")


def run_demo(keep: bool = False, verbose: bool = False) -> int:
    """Run the demo; return the process exit code."""
    missing = [name for name in ("dlt", "duckdb", "airflow") if find_spec(name) is None]
    if missing:
        print(f"The demo needs {', '.join(missing)}: pip install -e '.[demo]' (or run `make demo`).", file=sys.stderr)
        return 2
    clock = Clock()
    dags = find_example_dags()
    work = Path(tempfile.mkdtemp(prefix="airflow-dbt-cloud-demo-"))
    log_file = work / "airflow-dags-test.log"
    token = "dbtc_demo_" + secrets.token_hex(8)
    outcome = Outcome()
    print(
        f"airflow-dbt-cloud-dlt demo on Airflow {version('apache-airflow')}: "
        f"dlt → DuckDB, then a dbt Cloud job run, waited for on the triggerer\n"
        f"  dags folder  {dags}\n  work dir     {work}"
    )
    try:
        with DbtCloudEmulator(accounts={ACCOUNT_ID: token}) as emulator:
            job = emulator.add_job(default_demo_job())
            clock.say(f"dbt Cloud emulator at {emulator.base_url}: job {job.job_id} {job.name!r} ({job.outcome})")
            env = demo_environment(work, dags, emulator.base_url, token)
            airflow = [sys.executable, "-m", "airflow"]

            started = clock.elapsed()
            clock.say("airflow db migrate (fresh SQLite) ...")
            rc = run_quietly([*airflow, "db", "migrate"], env, work / "airflow-db-migrate.log")
            outcome.timings["db migrate"] = clock.elapsed() - started
            if rc != 0:
                print((work / "airflow-db-migrate.log").read_text()[-4000:], file=sys.stderr)
                outcome.problems.append(f"airflow db migrate exited with {rc}")
                keep = True  # for the log
                print_summary(outcome, work, keep, log_file)
                return 1

            started = clock.elapsed()
            clock.say(f"airflow dags test {DAG_ID}")
            dags_rc, outcome.deferred = run_streaming([*airflow, "dags", "test", DAG_ID], env, log_file, clock, verbose)
            outcome.timings["dags test"] = clock.elapsed() - started

            runs = sorted(emulator.runs.values(), key=lambda run: int(run["id"]))
            outcome.run = runs[-1] if runs else None
            outcome.requests = dict(emulator.request_summary()["by_method_path_template"])
        outcome.task_states = read_task_states(work / "airflow" / "airflow.db")
        outcome.rows = count_rows(work / "demo.duckdb")
        outcome.timings["total"] = clock.elapsed()
        check(outcome, dags_rc)
        if outcome.problems and not verbose:
            print("\nLast lines of the Airflow output:\n" + "\n".join(log_file.read_text().splitlines()[-25:]))
        print_summary(outcome, work, keep, log_file)
        return 1 if outcome.problems else 0
    except KeyboardInterrupt:
        print("\nInterrupted.", file=sys.stderr)
        return 130
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m airflow_dbt_cloud_dlt.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the work dir (Airflow home, logs, DuckDB file)")
    parser.add_argument("--verbose", action="store_true", help="show all of Airflow's output")
    args = parser.parse_args(argv)
    return run_demo(keep=args.keep, verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
