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


#: The most characters of a text field, and the most steps, that a summary keeps.
MAX_SUMMARY_TEXT = 2000
MAX_SUMMARY_STEPS = 100


def _short(value: Any) -> Any:
    """A string cut to :data:`MAX_SUMMARY_TEXT` characters with a note of what was cut; containers dropped."""
    if isinstance(value, str) and len(value) > MAX_SUMMARY_TEXT:
        return f"{value[:MAX_SUMMARY_TEXT]}… [{len(value) - MAX_SUMMARY_TEXT:,} more characters cut]"
    return None if isinstance(value, dict | list) else value


def run_summary(run: dict[str, Any]) -> dict[str, Any]:
    """A few JSON-safe fields of a run, small enough for trigger events, XCom and log lines.

    Text is cut to :data:`MAX_SUMMARY_TEXT` characters and the steps to the last :data:`MAX_SUMMARY_STEPS`
    (``steps_cut`` says how many earlier ones were left out).
    """
    summary = {key: _short(run.get(key)) for key in SUMMARY_KEYS if key in run}
    steps = run.get("run_steps") or []
    if steps and isinstance(steps, list):
        kept = [s for s in steps if isinstance(s, dict)]
        if len(kept) > MAX_SUMMARY_STEPS:
            summary["steps_cut"] = len(kept) - MAX_SUMMARY_STEPS
            kept = kept[-MAX_SUMMARY_STEPS:]
        summary["steps"] = [
            {"index": _short(s.get("index")), "name": _short(s.get("name")), "status": _short(s.get("status"))}
            for s in kept
        ]
    return summary
