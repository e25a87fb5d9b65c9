"""Exactly-once triggering: a compact marker of the caller in the run's ``cause``, the search for it, and
:func:`trigger_once`, which attaches to, accepts, reruns or triggers a run accordingly.

An orchestrator that retries a task (or restarts after a crash) looks for a run carrying its own marker
before it triggers again, so it attaches to that run instead of starting a duplicate. A marker belongs to
one task instance (dag, task, logical run, map index), so it never matches a run that some other task, a
schedule or a person started.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, Literal

from .core import MAX_CAUSE_LENGTH, log
from .errors import DbtCloudConnectionError, DbtCloudServerError
from .models import RunStatus, run_status

if TYPE_CHECKING:
    from .client import DbtCloudClient

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


def find_active_run(client: DbtCloudClient, job_id: int) -> dict[str, Any] | None:
    """The newest run of ``job_id`` that is queued, starting or running, if any."""
    active = [int(status) for status in (RunStatus.QUEUED, RunStatus.STARTING, RunStatus.RUNNING)]
    runs = client.list_runs(job_definition_id=job_id, status__in=active, order_by="-id", limit=1)
    return runs[0] if runs else None


#: Trigger POSTs per call when dbt Cloud answers 500/503 and provably started no run.
TRIGGER_ATTEMPTS = 3
#: dbt Cloud's own finished answers: after one, "no run carries our marker" is final.
FINAL_5XX = (500, 503)
#: How :func:`trigger_once` got its run.
How = Literal["triggered", "attached", "accepted", "rerun", "recovered", "reused"]


def trigger_once(
    client: DbtCloudClient,
    job_id: int,
    body: dict[str, Any],
    *,
    marker: str,
    is_retry: bool,
    retry_from_failure: bool = False,
    reuse_active: bool = False,
) -> tuple[dict[str, Any], How]:
    """Start job ``job_id`` at most once per ``marker``; return the run and how it was obtained.

    On a retry (``is_retry``) the run an earlier try started is looked up first: one in progress is
    ``"attached"`` to, a succeeded one ``"accepted"``; a failed one is ``"rerun"`` from its point of
    failure when ``retry_from_failure`` and it is still the job's latest run, else a new run is triggered.
    With ``reuse_active``, the job's newest run that is still going, whoever started it, is ``"reused"``
    instead of triggering (the official provider's ``reuse_existing_run``).
    ``body["cause"]`` must carry ``marker``. A trigger POST that fails ambiguously is followed by a search
    for the marker (``"recovered"``); it is sent again only after a 500/503, which is final.
    """
    if is_retry:
        earlier = find_marked_run(client, job_id, marker)
        if earlier is not None:
            status = run_status(earlier)
            if not status.is_terminal:
                return earlier, "attached"
            if status is RunStatus.SUCCESS:
                return earlier, "accepted"
            if retry_from_failure and status is RunStatus.ERROR:
                latest = client.list_runs(job_definition_id=job_id, order_by="-id", limit=1)
                if latest and latest[0]["id"] == earlier["id"]:
                    return client.rerun_job(job_id), "rerun"
                log.info("Run %s is not the job's latest run; starting a new run instead.", earlier["id"])
    if reuse_active:
        active = find_active_run(client, job_id)
        if active is not None:
            return active, "reused"
    for attempt in range(1, TRIGGER_ATTEMPTS + 1):
        try:
            return client.trigger_job_run(job_id, body), "triggered"
        except (DbtCloudConnectionError, DbtCloudServerError) as error:
            # The request may have reached dbt Cloud: look for it before anything is sent again.
            found = find_marked_run(client, job_id, marker)
            if found is not None:
                log.warning("The trigger request failed (%s), but it created run %s; using it.", error, found["id"])
                return found, "recovered"
            # A 500 or 503 is dbt Cloud's own finished answer, so "no run carries our marker" is final and
            # sending again is safe. After a timeout, a reset or a gateway's 502/504, dbt Cloud may still be
            # working on it: leave that to a retry of the caller, whose search comes later.
            if error.status_code not in FINAL_5XX or attempt == TRIGGER_ATTEMPTS:
                raise
            log.warning("The trigger request failed (%s) and started no run; sending it again.", error)
    raise AssertionError("unreachable")  # pragma: no cover


# TEMPORARY (to be replaced by the HMAC-bound marker): the reconciler's view of markers.
def marker_for_task(dag_id: str, task_id: str, run_id: str, map_index: int | None, max_tries: int | None) -> str:
    return task_marker(dag_id, task_id, run_id, -1 if map_index is None else map_index, max_tries)


def deployment_marker_of(cause: str) -> str | None:
    import re

    found = re.search(r"\[af:[0-9a-f]{16}\]", cause)
    return found.group(0) if found else None
