"""Exactly-once triggering: a keyed marker of the caller in the run's ``cause``, the search for it, and
:func:`trigger_once`, which attaches to, accepts, reruns or triggers a run accordingly.

An orchestrator that retries a task (or restarts after a crash) looks for a run carrying its own marker
before it triggers again, so it attaches to that run instead of starting a duplicate. A marker belongs to
one deployment (the HMAC key) and one task instance (dag, task, logical run, map index, series of tries), so it
never matches a run that some other task, a schedule, a person or another Airflow started. A run that
carries the marker is adopted only when its job and its overrides are the ones this caller would send:
whoever can read a run's cause can copy the marker, but not make a copy that does different work.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from .core import MAX_CAUSE_LENGTH, TRIGGER_FIELD_TYPES, log
from .errors import DbtCloudConnectionError, DbtCloudServerError
from .models import RunStatus, run_status

if TYPE_CHECKING:
    from .client import DbtCloudClient

MARKER_PREFIX = "[af:"
#: ``[af:<deployment tag>.<task instance MAC>]``: 8 and 24 hex digits (32 and 96 bits of HMAC-SHA256).
MARKER_PATTERN = re.compile(r"\[af:([0-9a-f]{8})\.([0-9a-f]{24})\]")
#: How many of the job's most recent runs are searched for a marker.
SEARCH_DEPTH = 200
#: The trigger fields compared before a run is adopted (``cause`` carries the marker and is not compared).
OVERRIDE_FIELDS = tuple(name for name in TRIGGER_FIELD_TYPES if name != "cause")


@functools.lru_cache(maxsize=8)
def deployment_tag(key: bytes) -> str:
    """8 hex digits that name the deployment whose key is ``key``, without revealing the key."""
    return hmac.new(key, b"airflow-dbt-cloud-dlt/deployment", hashlib.sha256).hexdigest()[:8]


def task_marker(key: bytes, *parts: object) -> str:
    """The marker, such as ``[af:1a2b3c4d.5e6f...]``, of the identity ``parts`` in the deployment keyed ``key``.

    Without ``key`` nobody can compute the marker of an identity, so another Airflow (which has another key)
    or a person who sets ``cause`` can only copy a marker they have seen, never make one up.
    """
    identity = "\x1f".join(str(part) for part in parts).encode()
    mac = hmac.new(key, b"airflow-dbt-cloud-dlt/task-instance\x1f" + identity, hashlib.sha256).hexdigest()[:24]
    return f"{MARKER_PREFIX}{deployment_tag(key)}.{mac}]"


#: ``[afw:<16 hex>]``: the run's task waits for it and wants it cancelled when it stops waiting (``orphans``).
WAITED_PATTERN = re.compile(r"\[afw:([0-9a-f]{16})\]")


def waited_token(key: bytes, marker: str, job_id: int) -> str:
    """The token that says, verifiably for the holder of ``key``, that the run of ``job_id`` carrying
    ``marker`` was started by a task that waits for it (and so may be cancelled once nobody waits)."""
    mac = hmac.new(key, f"airflow-dbt-cloud-dlt/waited\x1f{marker}\x1f{job_id}".encode(), hashlib.sha256)
    return f"[afw:{mac.hexdigest()[:16]}]"


def carries_marker(cause: str, marker: str) -> bool:
    """True when ``cause`` holds exactly ``marker`` (compared in constant time)."""
    return any(hmac.compare_digest(found.group(0), marker) for found in MARKER_PATTERN.finditer(cause))


def cause_with_marker(cause: str, marker: str) -> str:
    """The readable cause in front, the marker at the end, 255 characters at most in all."""
    room = MAX_CAUSE_LENGTH - len(marker) - 1
    readable = cause if len(cause) <= room else cause[: room - 1] + "…"
    return f"{readable} {marker}"


def _same(sent: Any, echoed: Any) -> bool:
    """A trigger field as sent and as the run's ``trigger`` echoes it. Unset, null, "", [] and false are the
    same: dbt Cloud may echo a flag that was not sent as false, and a run without docs does no other work."""
    sent, echoed = (None if value is False or value in (None, "", []) else value for value in (sent, echoed))
    if isinstance(sent, list | tuple) and isinstance(echoed, list | tuple):
        return list(sent) == list(echoed)
    return type(sent) is type(echoed) and sent == echoed


def mismatch(run: dict[str, Any], job_id: int, body: Mapping[str, Any] | None) -> str | None:
    """Why ``run`` is not what a trigger of ``job_id`` with ``body`` starts, or None when it is.

    The run must belong to the job, and every override (each trigger field but ``cause``, and any further key
    of ``body``) must be what ``body`` sends. ``body=None`` checks the job alone.
    """
    echoed = run.get("trigger")
    trigger: dict[str, Any] = echoed if isinstance(echoed, dict) else {}
    job = run.get("job_definition_id", trigger.get("job_definition_id"))
    if type(job) is not int or job != job_id:
        return f"it belongs to job {job!r}, not job {job_id}"
    if body is None:
        return None
    different = [
        name
        for name in dict.fromkeys((*OVERRIDE_FIELDS, *body))
        if name != "cause" and not _same(body.get(name), trigger.get(name))
    ]
    if different:
        shown = ", ".join(f"{name} {trigger.get(name)!r} instead of {body.get(name)!r}" for name in different[:5])
        return f"its overrides differ ({shown})"
    return None


def find_marked_run(
    client: DbtCloudClient, job_id: int, marker: str, body: Mapping[str, Any] | None = None
) -> dict[str, Any] | None:
    """The newest recent run of ``job_id`` that is ours: its cause carries ``marker``, or it reruns one that is.

    A run that carries the marker but belongs to another job or has other overrides than ``body`` is not ours
    (someone copied the marker): it is logged and passed over. A rerun from the point of failure may get a
    cause of dbt Cloud's own; it is recognised through its ``retrying_run_id``, which points at the run it
    retries (a rerun takes no overrides of its own).
    """
    runs = client.list_runs(job_definition_id=job_id, order_by="-id", include_related=("trigger",), limit=SEARCH_DEPTH)
    ours: dict[int, dict[str, Any]] = {}
    for run in reversed(runs):  # oldest first, so that reruns of reruns are followed
        rerun = run.get("retrying_run_id") in ours
        if not rerun and not carries_marker(_cause(client, run), marker):
            continue
        problem = mismatch(run, job_id, None if rerun else body)
        if problem is None:
            ours[int(run["id"])] = run
        else:
            log.warning("Run %s carries this task's marker, but %s: not adopting it.", run.get("id"), problem)
    return ours[max(ours)] if ours else None


def _cause(client: DbtCloudClient, run: dict[str, Any]) -> str:
    """The run's cause; read from the run itself when a list answer left ``trigger`` out."""
    if not isinstance(run.get("trigger"), dict) and run.get("id"):
        run["trigger"] = client.get_run(run["id"], include_related=("trigger",)).get("trigger")
    return str((run.get("trigger") or {}).get("cause") or "")


def find_active_run(
    client: DbtCloudClient, job_id: int, body: Mapping[str, Any] | None = None
) -> dict[str, Any] | None:
    """The newest run of ``job_id`` that is queued, starting or running and does the work ``body`` asks for
    (the same overrides; see :func:`mismatch`), if any. Active runs with other overrides are logged and left."""
    active = [int(status) for status in (RunStatus.QUEUED, RunStatus.STARTING, RunStatus.RUNNING)]
    runs = client.list_runs(
        job_definition_id=job_id, status__in=active, order_by="-id", include_related=("trigger",), limit=SEARCH_DEPTH
    )
    for run in runs:
        _cause(client, run)  # reads ``trigger`` when the list answer left it out
        problem = mismatch(run, job_id, body)
        if problem is None:
            return run
        log.warning("Run %s of job %s is in progress, but %s: not reusing it.", run.get("id"), job_id, problem)
    return None


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
    for the marker (``"recovered"``); it is sent again only after a 500/503, which is final. A run is only
    ever adopted when its job and overrides are those of ``body`` (:func:`mismatch`); otherwise a new run is
    triggered.
    """
    if is_retry:
        earlier = find_marked_run(client, job_id, marker, body)
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
        active = find_active_run(client, job_id, body)
        if active is not None:
            return active, "reused"
    for attempt in range(1, TRIGGER_ATTEMPTS + 1):
        try:
            return client.trigger_job_run(job_id, body), "triggered"
        except (DbtCloudConnectionError, DbtCloudServerError) as error:
            # The request may have reached dbt Cloud: look for it before anything is sent again.
            found = find_marked_run(client, job_id, marker, body)
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
