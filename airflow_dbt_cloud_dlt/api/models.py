"""Run status codes and the small, JSON-safe view of a run that crosses process boundaries."""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class RunStatus(IntEnum):
    """dbt Cloud run status codes."""

    QUEUED = 1
    STARTING = 2
    RUNNING = 3
    SUCCESS = 10
    ERROR = 20
    CANCELLED = 30

    @property
    def is_terminal(self) -> bool:
        return self >= RunStatus.SUCCESS

    @property
    def event_name(self) -> str:
        """The name used in trigger events and logs: ``queued`` … ``success``, ``error``, ``cancelled``."""
        return self.name.lower()


SUMMARY_KEYS = (
    "id",
    "job_definition_id",
    "status",
    "status_humanized",
    "status_message",
    "href",
    "duration",
    "run_duration",
    "created_at",
    "started_at",
    "finished_at",
    "in_progress",
    "is_success",
    "is_error",
    "is_cancelled",
    "git_sha",
    "git_branch",
)


def run_status(run: dict[str, Any]) -> RunStatus:
    """The run's status as an enum member. A code this package does not know counts as still running:
    only dbt Cloud's known final statuses end a wait."""
    try:
        return RunStatus(int(run["status"]))
    except (KeyError, TypeError, ValueError):
        return RunStatus.RUNNING


_TERMINAL_CODES = frozenset(code for code in RunStatus if code.is_terminal)


def is_terminal(run: dict[str, Any]) -> bool:
    """Whether dbt Cloud reports the run as ended (the poller asks this of every run on every tick)."""
    status = run.get("status")
    return status in _TERMINAL_CODES or (isinstance(status, str) and run_status(run).is_terminal)


def status_text(run: dict[str, Any]) -> str:
    """``status_humanized``, or the status name when dbt Cloud left it out."""
    return str(run.get("status_humanized") or f"{run_status(run).name.title()} ({run.get('status')})")


def run_summary(run: dict[str, Any]) -> dict[str, Any]:
    """A few JSON-safe fields of a run, small enough for trigger events, XCom and log lines."""
    summary = {key: run.get(key) for key in SUMMARY_KEYS if key in run}
    steps = run.get("run_steps") or []
    if steps:
        summary["steps"] = [{"index": s.get("index"), "name": s.get("name"), "status": s.get("status")} for s in steps]
    return summary
