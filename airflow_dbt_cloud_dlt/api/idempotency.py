"""Exactly-once triggering: a compact marker of the caller in the run's ``cause``, and the search for it.

An orchestrator that retries a task (or restarts after a crash) looks for a run carrying its own marker
before it triggers again, so it attaches to that run instead of starting a duplicate. A marker belongs to
one task instance (dag, task, logical run, map index), so it never matches a run that some other task, a
schedule or a person started.
"""

from __future__ import annotations

import hashlib
from typing import Any

from .client import DbtCloudClient
from .core import MAX_CAUSE_LENGTH

MARKER_PREFIX = "[af:"
#: How many of the job's most recent runs are searched for a marker.
SEARCH_DEPTH = 200


def task_marker(*parts: object) -> str:
    """A short, stable tag such as ``[af:3f2a9c0d1b7e4a12]`` for the identity given by ``parts``."""
    digest = hashlib.sha256("\x1f".join(str(part) for part in parts).encode()).hexdigest()[:16]
    return f"{MARKER_PREFIX}{digest}]"


def cause_with_marker(cause: str, marker: str) -> str:
    """The readable cause in front, the marker at the end, 255 characters at most in all."""
    room = MAX_CAUSE_LENGTH - len(marker) - 1
    readable = cause if len(cause) <= room else cause[: room - 1] + "…"
    return f"{readable} {marker}"


def find_marked_run(client: DbtCloudClient, job_id: int, marker: str) -> dict[str, Any] | None:
    """The newest recent run of ``job_id`` that is ours: its cause carries ``marker``, or it reruns one that is.

    A rerun from the point of failure may get a cause of dbt Cloud's own; it is recognised through its
    ``retrying_run_id``, which points at the run it retries.
    """
    runs = client.list_runs(job_definition_id=job_id, order_by="-id", include_related=("trigger",), limit=SEARCH_DEPTH)
    ours: dict[int, dict[str, Any]] = {}
    for run in reversed(runs):  # oldest first, so that reruns of reruns are followed
        cause = _cause(client, run)
        if marker in cause or run.get("retrying_run_id") in ours:
            ours[int(run["id"])] = run
    return ours[max(ours)] if ours else None


def _cause(client: DbtCloudClient, run: dict[str, Any]) -> str:
    """The run's cause; read from the run itself when a list answer left ``trigger`` out."""
    if not isinstance(run.get("trigger"), dict) and run.get("id"):
        run["trigger"] = client.get_run(run["id"], include_related=("trigger",)).get("trigger")
    return str((run.get("trigger") or {}).get("cause") or "")
