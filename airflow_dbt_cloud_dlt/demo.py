"""``make demo``: the data-aware chain dlt → DuckDB → dbt Cloud → Assets → a second DAG, on this machine.

``python -m airflow_dbt_cloud_dlt.demo [--keep] [--verbose]``

It starts the local dbt Cloud emulator (job 1 builds its example dbt project; a full run of it stands for last
night's scheduled build, whose ``manifest.json`` says which models read which source), makes a throw-away
``AIRFLOW_HOME`` (SQLite) whose dags folder is the repository's ``example_dags/``, and starts an Airflow
scheduler (and, on Airflow 3, the api-server that runs its tasks). Then ``airflow dags test
example_dlt_then_dbt_cloud`` loads ``raw.orders`` with dlt, runs only the dbt models that read it
(``select_from_load``; the deferred wait runs in line there), and emits one Asset per model rebuilt; the
scheduler starts ``example_dbt_cloud_assets_consumer``, which is scheduled on the ``fct_orders`` model's Asset.
It then says what happened and exits 1 if anything failed. Nothing is read from, or written to, your own
Airflow or dbt Cloud settings.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
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

from airflow_dbt_cloud_dlt.api.credentials import DbtCloudCredentials
from airflow_dbt_cloud_dlt.helpers import run_dbt_cloud_job
from airflow_dbt_cloud_dlt.testing import DbtCloudEmulator
from airflow_dbt_cloud_dlt.testing.emulator import default_demo_job

DAG_ID = "example_dlt_then_dbt_cloud"
CONSUMER_DAG_ID = "example_dbt_cloud_assets_consumer"  # scheduled on the fct_orders model's Asset
WATCHED_MODEL = "fct_orders"
TABLE = "raw.orders"  # where the example DAG's dlt pipeline loads
AIRFLOW_3 = not version("apache-airflow").startswith("2.")
CONSUMER_TIMEOUT = 180.0  # for the scheduler to start the consumer and for it to end
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
    baseline: dict[str, Any] | None = None  # "last night's" full run, whose manifest select_from_load reads
    run: dict[str, Any] | None = None
    deferred: bool = False
    task_states: dict[str, str] = field(default_factory=dict)
    events: dict[str, list[str]] = field(default_factory=dict)  # task id → Asset URIs of its events
    consumer_state: str | None = None
    consumer_lines: list[str] = field(default_factory=list)  # what the consumer printed
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def demo_environment(work: Path, dags: Path, base_url: str, token: str) -> dict[str, str]:
    """The environment of the Airflow commands: a fresh SQLite home, a scheduler that starts a DAG as soon as an
    Asset it is scheduled on is updated, and a connection to the emulator."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(_SCRUBBED_PREFIXES) and name not in _SCRUBBED_NAMES
    }
    home = work / "airflow"
    duckdb_path = work / "warehouse.duckdb"  # its stem is the database the example dbt project names
    api_port = free_port()
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
            "DEMO_DUCKDB_PATH": str(duckdb_path),
            "DBT_CLOUD_ASSET_NAMESPACE": f"duckdb://{duckdb_path}",  # the consumer's fct_orders: the same file
            # SQLite: LocalExecutor on Airflow 3 (tasks run through the api-server), SequentialExecutor on 2.11
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor" if AIRFLOW_3 else "SequentialExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # `airflow tasks run`
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


def read_asset_events(db_path: Path) -> dict[str, list[str]]:
    """Task id → the Asset URIs of the events it emitted in the demo DAG's latest run (Datasets on 2.11)."""
    asset, event = ("asset", "asset_event") if AIRFLOW_3 else ("dataset", "dataset_event")
    with sqlite3.connect(db_path) as db:
        rows = db.execute(
            f"SELECT e.source_task_id, a.uri FROM {event} e JOIN {asset} a ON a.id = e.{asset}_id "
            "WHERE e.source_dag_id = ? AND e.source_run_id = "
            "(SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1) ORDER BY e.id",
            (DAG_ID, DAG_ID),
        ).fetchall()
    events: dict[str, list[str]] = {}
    for task_id, uri in rows:
        events.setdefault(str(task_id), []).append(str(uri))
    return events


def consumer_run_state(db_path: Path) -> str | None:
    """The state of the consumer's run that an Asset update started, once it ended; else None."""
    run_type = "asset_triggered" if AIRFLOW_3 else "dataset_triggered"
    with sqlite3.connect(db_path) as db:
        row = db.execute(
            "SELECT state FROM dag_run WHERE dag_id = ? AND run_type = ? ORDER BY id DESC LIMIT 1",
            (CONSUMER_DAG_ID, run_type),
        ).fetchone()
    return str(row[0]) if row and row[0] in ("success", "failed") else None


def wait_for_consumer(db_path: Path, clock: Clock, processes: dict[str, subprocess.Popen[bytes]]) -> str | None:
    """Wait until the scheduler has started the consumer and its run ended; None on a timeout or a dead process."""
    deadline = time.monotonic() + CONSUMER_TIMEOUT
    while time.monotonic() < deadline:
        state = consumer_run_state(db_path)
        if state:
            return state
        dead = [name for name, process in processes.items() if process.poll() is not None]
        if dead:
            clock.say(f"  airflow {', '.join(dead)} stopped unexpectedly; see its log")
            return None
        time.sleep(0.5)
    clock.say(f"  ... the scheduler did not start and finish {CONSUMER_DAG_ID} within {CONSUMER_TIMEOUT:.0f} s")
    return None


def consumer_output(home: Path) -> list[str]:
    """The lines the consumer's task printed (``... rebuilt by dbt Cloud run ...``), from its task log."""
    lines: list[str] = []
    for log in sorted(home.glob(f"logs/dag_id={CONSUMER_DAG_ID}/**/*.log")):
        for raw in log.read_text(errors="replace").splitlines():
            text = raw
            with contextlib.suppress(ValueError, TypeError):  # Airflow 3 task logs are JSON lines
                text = str(json.loads(raw).get("event", raw))
            if "rebuilt by dbt Cloud run" in text and (line := log_message(text)) not in lines:
                lines.append(line)
    return lines


def start_background(name: str, command: Sequence[str], env: dict[str, str], work: Path) -> subprocess.Popen[bytes]:
    """Start an Airflow component in its own process group (stopping it stops its workers), log to a file."""
    with (work / f"airflow-{name}.log").open("wb") as log:
        return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop_background(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    """SIGTERM all at once, then SIGKILL what is still running after 15 s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
        deadline = time.monotonic() + 15
        for process in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
        if all(process.poll() is not None for process in processes):
            return


def buildable_nodes() -> list[str]:
    """The models, seeds and snapshots of the emulator's example project: what a full build rebuilds."""
    from airflow_dbt_cloud_dlt.testing.project import example_project

    nodes = example_project().nodes.values()
    return [node.name for node in nodes if node.resource_type in ("model", "seed", "snapshot")]


def model_name(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1]


def count_rows(duckdb_path: Path) -> int | None:
    """Rows in the table the example DAG loads, or None if there is none."""
    if not duckdb_path.is_file():
        return None
    import duckdb  # optional (the dlt extra): only a demo that loaded a table has one to count

    with duckdb.connect(str(duckdb_path), read_only=True) as db:
        row = db.execute(f"SELECT count(*) FROM {TABLE}").fetchone()
    return int(row[0]) if row else None


def step_commands(run: dict[str, Any]) -> list[str]:
    """The dbt commands of a run's steps, as dbt Cloud reports them."""
    return [
        str((step.get("run_step_command") or {}).get("dbt_command") or step.get("name"))
        for step in run.get("run_steps") or []
    ]


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
        outcome.problems.append("dbt Cloud saw no run from Airflow")
    else:
        if outcome.run.get("status_humanized") != "Success":
            outcome.problems.append(f"the dbt Cloud run ended {outcome.run.get('status_humanized')}")
        if not any("--select" in command for command in step_commands(outcome.run)):
            outcome.problems.append("the dbt Cloud run was not selective (no --select in its steps)")
    if not outcome.deferred:
        outcome.problems.append(f"the dbt task did not defer (no {DEFERRED_MARK!r} line)")
    if not outcome.events.get("load_orders"):
        outcome.problems.append("the dlt load emitted no asset event")
    if WATCHED_MODEL not in {model_name(uri) for uri in outcome.events.get("run_dbt_cloud_job", [])}:
        outcome.problems.append(f"the dbt Cloud run emitted no asset event for {WATCHED_MODEL}")
    if outcome.consumer_state != "success":
        outcome.problems.append(f"the scheduler did not run {CONSUMER_DAG_ID} to success ({outcome.consumer_state})")


def print_summary(outcome: Outcome, work: Path, keep: bool, log_file: Path) -> None:
    duckdb_path = work / "warehouse.duckdb"
    print("\nWhat happened")
    if outcome.rows is not None:
        print(f"  dlt        loaded {outcome.rows} rows into {TABLE} in DuckDB at {duckdb_path}")
    for uri in outcome.events.get("load_orders", []):
        print(f"             asset event {uri}")
    if outcome.baseline is not None:
        print(
            f"  dbt Cloud  run {outcome.baseline['id']}, last night's full build ({'; '.join(step_commands(outcome.baseline))}), "
            f"left the manifest.json that tells what reads {TABLE}"
        )
    run = outcome.run
    if run is not None:
        print(
            f"  dbt Cloud  run {run['id']} of job {run['job_definition_id']}: {run['status_humanized']} "
            f"in {run.get('duration_humanized')} — {run.get('href')}"
        )
        print("             ran " + "; ".join(step_commands(run)))
    print(
        "  deferral   "
        + (f"the dbt task deferred; its trigger polled the run ({DEFERRED_MARK!r})" if outcome.deferred else "NOT seen")
    )
    rebuilt = [model_name(uri) for uri in outcome.events.get("run_dbt_cloud_job", [])]
    skipped = [name for name in buildable_nodes() if name not in rebuilt]
    print(f"  assets     {len(rebuilt)} rebuilt, one asset event each: {', '.join(rebuilt) or 'none'}")
    print(f"             {len(skipped)} left alone (they do not read {TABLE}): {', '.join(skipped)}")
    if outcome.task_states:
        print("  tasks      " + ", ".join(f"{task} {state}" for task, state in outcome.task_states.items()))
    print(
        f"  scheduler  started {CONSUMER_DAG_ID} (scheduled on the {WATCHED_MODEL} Asset): "
        f"{outcome.consumer_state or 'NOT seen'}"
    )
    for line in outcome.consumer_lines:
        print(f"             {line[:160]}")
    total = sum(outcome.requests.values())
    print(f"  emulator   {total} API request(s)")
    for endpoint, count in sorted(outcome.requests.items(), key=lambda item: (-item[1], item[0])):
        print(f"             {count:3d} x {endpoint}")
    print("  timings    " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in outcome.timings.items()))
    print(f"  files      {work}" + ("" if keep else " (removed now; --keep keeps it)") + f", log {log_file.name}")
    if outcome.problems:
        print("\nDemo FAILED: " + "; ".join(outcome.problems))
        if not keep:
            print("Run it again with --verbose (all output) or --keep (keep the logs and the DuckDB file).")
    else:
        print("\nDemo OK.")


def last_nights_run(emulator: DbtCloudEmulator, job_id: int, token: str) -> dict[str, Any]:
    """A full run of the job, finished: it stands for dbt Cloud's scheduled build, and leaves the job's latest
    ``manifest.json``. Started with this package's dlt-compatible helper, as a script without Airflow would."""
    credentials = DbtCloudCredentials(api_token=token, account_id=ACCOUNT_ID, base_url=emulator.base_url)
    data = {"cause": "Scheduled by dbt Cloud (last night's full build)"}
    run = run_dbt_cloud_job(credentials, job_id, data=data, wait_for_outcome=False)
    emulator.advance(60)  # the emulator's clock: the run has finished
    return emulator.get_run(int(run["id"]))


def run_demo(keep: bool = False, verbose: bool = False) -> int:
    """Run the demo; return the process exit code."""
    missing = [name for name in ("dlt", "duckdb", "airflow", "ijson") if find_spec(name) is None]
    if missing:
        print(f"The demo needs {', '.join(missing)}: pip install -e '.[demo]' (or run `make demo`).", file=sys.stderr)
        return 2
    clock = Clock()
    dags = find_example_dags()
    work = Path(tempfile.mkdtemp(prefix="airflow-dbt-cloud-demo-"))
    log_file = work / "airflow-dags-test.log"
    token = "dbtc_demo_" + secrets.token_hex(8)
    outcome = Outcome()
    background: dict[str, subprocess.Popen[bytes]] = {}
    print(
        f"airflow-dbt-cloud-dlt demo on Airflow {version('apache-airflow')}: dlt → DuckDB, then a dbt Cloud run of "
        f"only what reads the load, waited for on the triggerer; its models become Assets that start a second DAG\n"
        f"  dags folder  {dags}\n  work dir     {work}"
    )
    try:
        with DbtCloudEmulator(accounts={ACCOUNT_ID: token}) as emulator:
            job = emulator.add_job(default_demo_job())
            clock.say(f"dbt Cloud emulator at {emulator.base_url}: job {job.job_id} {job.name!r} ({job.outcome})")
            outcome.baseline = last_nights_run(emulator, job.job_id, token)
            clock.say(
                f"dbt Cloud run {outcome.baseline['id']}: last night's full build, {outcome.baseline['status_humanized']}"
            )
            env = demo_environment(work, dags, emulator.base_url, token)
            airflow = [sys.executable, "-m", "airflow"]
            db_path = work / "airflow" / "airflow.db"

            started = clock.elapsed()
            clock.say("airflow db migrate (fresh SQLite), dags reserialize, dags unpause the consumer ...")
            for step, command in (
                ("db-migrate", ["db", "migrate"]),
                ("dags-reserialize", ["dags", "reserialize"]),  # the scheduler knows the consumer's schedule
                ("dags-unpause", ["dags", "unpause", CONSUMER_DAG_ID]),
            ):
                rc = run_quietly([*airflow, *command], env, work / f"airflow-{step}.log")
                if rc != 0:
                    print((work / f"airflow-{step}.log").read_text()[-4000:], file=sys.stderr)
                    outcome.problems.append(f"airflow {' '.join(command)} exited with {rc}")
                    keep = True  # for the log
                    print_summary(outcome, work, keep, log_file)
                    return 1
            outcome.timings["set-up"] = clock.elapsed() - started

            components = ["scheduler", "api-server"] if AIRFLOW_3 else ["scheduler"]
            clock.say(f"airflow {' and '.join(components)} started in the background")
            for name in components:
                background[name] = start_background(name, [*airflow, name], env, work)

            started = clock.elapsed()
            clock.say(f"airflow dags test {DAG_ID}")
            dags_rc, outcome.deferred = run_streaming([*airflow, "dags", "test", DAG_ID], env, log_file, clock, verbose)
            outcome.timings["dags test"] = clock.elapsed() - started

            started = clock.elapsed()
            clock.say(f"waiting for the scheduler to start {CONSUMER_DAG_ID} ...")
            outcome.consumer_state = wait_for_consumer(db_path, clock, background)
            outcome.timings["consumer"] = clock.elapsed() - started
            if outcome.consumer_state:
                clock.say(f"  {CONSUMER_DAG_ID}: {outcome.consumer_state}")

            ours = [run for run in emulator.runs.values() if int(run["id"]) != outcome.baseline["id"]]
            outcome.run = max(ours, key=lambda run: int(run["id"])) if ours else None
            outcome.requests = dict(emulator.request_summary()["by_method_path_template"])
        outcome.task_states = read_task_states(db_path)
        outcome.events = read_asset_events(db_path) if db_path.is_file() else {}
        outcome.consumer_lines = consumer_output(work / "airflow")
        outcome.rows = count_rows(work / "warehouse.duckdb")
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
        stop_background(list(background.values()))
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
