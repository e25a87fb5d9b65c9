"""The emulator's state: accounts and their tokens, jobs, runs, and the run lifecycle.

Runs advance lazily from a monotonic clock (moved forward by :meth:`EmulatorState.advance`) and their job's
script: created Queued (1), then Starting (2), Running (3) and a terminal status per the script's outcome.
Runs of a serial job wait for the previous one. Callers hold ``state.lock`` while they read or change runs.
"""

from __future__ import annotations

import copy
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from airflow_dbt_cloud_dlt.testing import _api as api
from airflow_dbt_cloud_dlt.testing._api import Json
from airflow_dbt_cloud_dlt.testing.scripts import OUTCOME_STATUS, JobScript, StepScript

FIRST_RUN_ID = 70403111615000
FIRST_STEP_ID = 70403120000000
CANCELLED_MESSAGE = "Cancelled by user."
DEFAULT_ERROR_MESSAGE = "Database Error in model my_model (models/my_model.sql)"


@dataclass(eq=False)
class Run:
    """A triggered run: its script snapshot and what has happened to it (times on the emulator clock)."""

    id: int
    job: JobScript  # snapshot taken at trigger time
    outcome: str
    created: float
    trigger: Json  # validated trigger body
    cause_category: str
    prev: Run | None  # previous run of the same serial job
    step_id0: int
    retrying_run_id: int | None = None
    cancelled_at: float | None = None
    ready: float = 0.0  # when it may leave the queue (the previous serial run finished)
    final_finish: float | None = None  # set once terminal: never changes again
    eval_key: tuple[float, int] = (-1.0, 0)  # memo: (instant, generation) of the last evaluation
    eval_finish: float = 0.0

    def ran_steps(self) -> list[StepScript]:
        """The steps this run executes: an "error" run stops after its failing step."""
        steps = self.job.steps
        if self.outcome != "error":
            return steps
        failing = next((i for i, s in enumerate(steps) if s.outcome == "error"), len(steps) - 1)
        return steps[: failing + 1]


@dataclass(frozen=True)
class Phase:
    """A run's derived state at one instant (emulator clock; None: not reached yet)."""

    status: int
    finish: float
    dequeued: float | None
    started: float | None
    finished: float | None
    blocked_by: list[int]


def command(step_name: str) -> str:
    """``"Invoke dbt with `dbt build`"`` → ``"dbt build"``."""
    match = re.search(r"`([^`]+)`", step_name)
    return match.group(1) if match else step_name


class EmulatorState:
    """Accounts (token → account ids), jobs and runs, on a clock that tests can move forward."""

    def __init__(self, accounts: Mapping[int, str | Sequence[str]]) -> None:
        self.lock = threading.RLock()  # runs and jobs
        self.tokens: dict[str, set[int]] = {}
        self.account_ids = [int(a) for a in accounts]
        for account, tokens in accounts.items():
            for token in [tokens] if isinstance(tokens, str) else tokens:
                self.tokens.setdefault(token, set()).add(int(account))
        self.jobs: dict[int, JobScript] = {}
        self.job_created: dict[int, float] = {}
        self.base_url: str | None = None  # the server's URL, for the runs' href (kept after it stops)
        self._offset = 0.0
        self.mono0, self._wall0 = time.monotonic(), datetime.now(timezone.utc)
        self.clear_runs()

    # ------------------------------------------------------------------ clock
    def now(self) -> float:
        return time.monotonic() + self._offset

    def advance(self, seconds: float) -> None:
        with self.lock:
            self._offset += seconds

    def wall(self, t: float | None, sep: str = " ") -> str | None:
        """dbt's run timestamp format (``sep="T"`` for jobs, projects, ...)."""
        if t is None:
            return None
        return (self._wall0 + timedelta(seconds=t - self.mono0)).isoformat(sep=sep, timespec="microseconds")

    def created(self, job_id: int) -> str | None:
        """When a job (and the project and environment it declares) was created."""
        return self.wall(self.job_created.get(job_id, self.mono0), "T")

    # ------------------------------------------------------------------ accounts and jobs
    def authenticate(self, header: str) -> set[int]:
        """The accounts an ``Authorization: Token|Bearer ...`` header may use; 401 otherwise."""
        scheme, _, token = header.strip().partition(" ")
        accounts = self.tokens.get(token.strip()) if scheme.lower() in ("token", "bearer") else None
        if not accounts:
            raise api.unauthorized()
        return accounts

    def add_job(self, job: JobScript) -> None:
        with self.lock:
            self.jobs[job.job_id] = copy.deepcopy(job)
            self.job_created.setdefault(job.job_id, self.now())

    def job(self, account: int, job_id: int) -> JobScript:
        job = self.jobs.get(job_id)
        if job is None or job.account_id != account:
            raise api.not_found()
        return job

    def first_job(self, account: int, attribute: str) -> dict[int, JobScript]:
        """Project (or environment) id → the first job declaring it: projects and environments derive from jobs."""
        out: dict[int, JobScript] = {}
        for job in self.jobs.values():
            if job.account_id == account:
                out.setdefault(getattr(job, attribute), job)
        return out

    # ------------------------------------------------------------------ runs
    def clear_runs(self) -> None:
        self.runs: dict[int, Run] = {}
        self.job_runs: dict[int, list[Run]] = {}
        self.account_runs: dict[int, list[Run]] = {}
        self._next_id, self._next_step_id, self._generation = FIRST_RUN_ID, FIRST_STEP_ID, 0

    def run(self, account: int, run_id: int) -> Run:
        run = self.runs.get(run_id)
        if run is None or run.job.account_id != account:
            raise api.not_found()
        return run

    def is_latest(self, run: Run) -> bool:
        return self.job_runs[run.job.job_id][-1] is run

    def create_run(self, job: JobScript, trigger: Json, category: str, retrying: int | None = None) -> Run:
        job_runs = self.job_runs.setdefault(job.job_id, [])
        script = copy.deepcopy(job)
        if trigger.get("steps_override"):
            script.steps = [StepScript(f"Invoke dbt with `{cmd}`") for cmd in trigger["steps_override"]]
        n = len(job_runs)
        run = Run(
            id=self._next_id,
            job=script,
            outcome=job.outcome_sequence[n] if n < len(job.outcome_sequence) else job.outcome,
            created=self.now(),
            trigger=trigger,
            cause_category=category,
            prev=job_runs[-1] if job.serial and job_runs else None,
            step_id0=self._next_step_id,
            retrying_run_id=retrying,
        )
        self._next_id += 1
        self._next_step_id += len(script.steps)
        self.runs[run.id] = run
        job_runs.append(run)
        self.account_runs.setdefault(job.account_id, []).append(run)
        return run

    def cancel(self, run_id: int) -> Run:
        """Cancel as a user would in the UI (terminal runs are left unchanged); ``KeyError`` if unknown."""
        run, now = self.runs[run_id], self.now()
        if self.phase(run, now).status < 10:
            run.cancelled_at = run.final_finish = now
            self._generation += 1  # later runs of the job must be re-evaluated
        return run

    def _finish(self, run: Run, now: float) -> float:
        """When ``run`` finishes (maybe in the future), settling the unfinished serial chain before it."""
        memo = (now, self._generation)
        chain: list[Run] = []
        r: Run | None = run
        while r is not None and r.final_finish is None and r.eval_key != memo:
            chain.append(r)
            r = r.prev
        prev_finish = None if r is None else r.final_finish if r.final_finish is not None else r.eval_finish
        for link in reversed(chain):
            link.ready = link.created if prev_finish is None else max(link.created, prev_finish)
            job = link.job
            finish = link.ready + job.queue_seconds + job.start_seconds + job.run_seconds
            finish = finish if link.cancelled_at is None else link.cancelled_at
            link.final_finish = finish if finish <= now else None
            link.eval_key, link.eval_finish = memo, finish
            prev_finish = finish
        return run.final_finish if run.final_finish is not None else run.eval_finish

    def phase(self, run: Run, now: float) -> Phase:
        finish = self._finish(run, now)
        end = min(now, finish)
        dequeued = run.ready + run.job.queue_seconds
        started = dequeued + run.job.start_seconds
        if now >= finish:
            status = 30 if run.cancelled_at is not None else OUTCOME_STATUS[run.outcome]
        else:
            status = 1 if now < dequeued else 2 if now < started else 3
        blocked = [run.prev.id] if run.prev is not None and status == 1 and now < run.ready else []
        reached = (dequeued if dequeued <= end else None, started if started <= end else None)
        return Phase(status, finish, *reached, finish if now >= finish else None, blocked)


def status_message(run: Run, status: int) -> str | None:
    """The run's ``status_message``: dbt Cloud's cancel and timeout texts, or the error's first line."""
    if status == 30 and (run.cancelled_at is not None or run.outcome == "cancelled"):
        return CANCELLED_MESSAGE
    if status == 30:  # timeout
        job = run.job
        limit = run.trigger.get("timeout_seconds_override") or job.timeout_seconds or max(1, round(job.run_seconds))
        return job.status_message or (
            f"This run timed out after running for {api.humanize(max(1, job.run_seconds))}, "
            f"which exceeded the configured timeout of {limit} seconds."
        )
    return (run.job.status_message or DEFAULT_ERROR_MESSAGE) if status == 20 else None
