"""No orphaned dbt Cloud runs: cancel each run whose task no longer waits for it.

A task that waits for its run marks the run (``markers``, an HMAC under this deployment's key): the run's cause carries this deployment's
tag and the hash of the task instance (dag, task, logical run, map index, try series). On the triggerer, one
thread (:class:`Reconciler`, started by this package's Airflow plugin) lists, every
:data:`RECONCILE_SECONDS`, the queued, starting and running runs of each dbt Cloud account that a connection
names, keeps those that carry this deployment's tag, and cancels each one whose task instance no longer waits:
marked failed or success, cleared, timed out, its DAG run failed or deleted, a zombie. It does so whatever
the path, and whether or not a triggerer ran the task's trigger at that moment (``Trigger.on_kill``, which
Airflow 2.11 lacks, is then only the fast path).

- Runs are listed before task instances are read: a run that is listed was started before the snapshot of
  waiting task instances, so a task that has just started its run is never taken for gone.
- Only the leader among live triggerers (the lowest job id) reconciles: with two triggerers no run is
  cancelled twice, and when the leader dies the next one takes over after Airflow's health threshold.
- Requests: one listing per account and pass, plus one cancel per orphan: O(accounts), not O(runs).
- ``cancel_on_kill=False`` on an operator leaves its runs unmarked as waited, and so alone.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

#: Seconds between passes. A run is cancelled within this plus one pass's work after its task stops waiting.
RECONCILE_SECONDS = 15.0
#: Task instance states in which a task still waits for its run (a retry attaches to the run of its series).
WAITING_STATES = ("running", "deferred", "queued", "scheduled", "up_for_retry", "up_for_reschedule", "restarting")
_ACTIVE = (1, 2, 3)  # queued, starting, running


@dataclass(frozen=True)
class Orphan:
    """A run to cancel, and why."""

    conn_id: str
    account_id: int
    run_id: int
    job_id: int | None
    marker: str


def find_orphans(
    runs_by_conn: Mapping[tuple[str, int], Iterable[Mapping[str, Any]]],
    waited_marker_of: Callable[[str, int], str | None],
    waiting_markers: set[str],
) -> list[Orphan]:
    """The listed runs that this deployment's tasks started and waited for, and whose task no longer waits."""
    orphans = []
    for (conn_id, account_id), runs in runs_by_conn.items():
        for run in runs:
            trigger, job = run.get("trigger"), run.get("job_definition_id")
            cause = str(trigger.get("cause") or "") if isinstance(trigger, Mapping) else ""
            marker = waited_marker_of(cause, job) if type(job) is int else None
            if marker is not None and marker not in waiting_markers:
                orphans.append(Orphan(conn_id, account_id, int(run["id"]), job, marker))
    return orphans


# --- the Airflow side: which tasks wait, which connections name accounts, who leads ---------------------


def waiting_markers(session: Any, marker_for: Callable[..., str]) -> set[str]:
    """The markers of every task instance that still waits (any operator: the marker says whose run it is)."""
    from airflow.models.taskinstance import TaskInstance as TI
    from sqlalchemy import select

    rows = session.execute(
        select(TI.dag_id, TI.task_id, TI.run_id, TI.map_index, TI.max_tries).where(TI.state.in_(WAITING_STATES))
    )
    return {marker_for(*row) for row in rows}


def describe(session: Any, marker: str, marker_for: Callable[..., str]) -> str:
    """The task instance behind ``marker`` and its state, for the cancel's log line (a few recent rows)."""
    from airflow.models.taskinstance import TaskInstance as TI
    from sqlalchemy import select

    rows = session.execute(
        select(TI.dag_id, TI.task_id, TI.run_id, TI.map_index, TI.max_tries, TI.state)
        .where(TI.state.not_in(WAITING_STATES) | TI.state.is_(None))
        .order_by(TI.updated_at.desc())
        .limit(5000)
    )
    for dag_id, task_id, run_id, map_index, max_tries, state in rows:
        if marker_for(dag_id, task_id, run_id, map_index, max_tries) == marker:
            index = "" if map_index in (None, -1) else f"[{map_index}]"
            return f"task {dag_id}.{task_id}{index} of {run_id} is {state or 'cleared'}"
    return "its task instance is gone (DAG run deleted) or was cleared into a new series of tries"


def dbt_cloud_conn_ids(session: Any) -> list[str]:
    """Connection ids that may name a dbt Cloud account: stored ones of this package's and the official types,
    ``AIRFLOW_CONN_*`` variables, and ``[dbt_cloud] reconcile_conn_ids`` (for secrets backends, which cannot be
    listed)."""
    from airflow.configuration import conf
    from airflow.models.connection import Connection
    from sqlalchemy import select

    from .provider_info import CONN_TYPE, LEGACY_CONN_TYPE, OFFICIAL_CONN_TYPE

    types = (CONN_TYPE, LEGACY_CONN_TYPE, OFFICIAL_CONN_TYPE)
    ids = set(session.scalars(select(Connection.conn_id).where(Connection.conn_type.in_(types))))
    ids.update(name.removeprefix("AIRFLOW_CONN_").lower() for name in os.environ if name.startswith("AIRFLOW_CONN_"))
    configured = conf.get("dbt_cloud", "reconcile_conn_ids", fallback="") or ""
    ids.update(part.strip() for part in configured.split(",") if part.strip())
    return sorted(ids)


def is_leader(session: Any, job_id: int | None) -> bool:
    """Whether this triggerer has the lowest id among the live ones (Airflow's own health threshold)."""
    from datetime import datetime, timedelta, timezone

    from airflow.configuration import conf
    from airflow.jobs.job import Job
    from sqlalchemy import select

    if job_id is None:
        return False
    threshold = conf.getfloat("triggerer", "triggerer_health_check_threshold", fallback=30.0)
    since = datetime.now(timezone.utc) - timedelta(seconds=threshold)
    leader = session.scalars(
        select(Job.id)
        .where(Job.job_type == "TriggererJob", Job.state == "running", Job.latest_heartbeat > since)
        .order_by(Job.id)
        .limit(1)
    ).first()
    return bool(leader == job_id)


# --- the pass, and the thread that repeats it on the triggerer -------------------------------------------


class Reconciler:
    """Cancels orphaned runs every ``interval`` seconds, from a daemon thread of the triggerer ``job``."""

    def __init__(self, job: Any, interval: float | None = None) -> None:
        from airflow.configuration import conf

        self.job = job
        self.interval = interval or conf.getfloat("dbt_cloud", "orphan_check_interval", fallback=RECONCILE_SECONDS)
        self.stopped = threading.Event()
        self.warned_unbound = False
        self.thread = threading.Thread(target=self._loop, name="dbt-cloud-orphans", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()

    def _job_field(self, name: str) -> Any:
        # Read without SQLAlchemy's lazy loading: the job's session belongs to the triggerer's main thread.
        return vars(self.job).get(name)

    def _loop(self) -> None:
        while not self.stopped.wait(self.interval):
            if self._job_field("job_type") not in (None, "TriggererJob"):
                return  # another component (the scheduler, say): the triggerer's reconciler does the work
            try:
                self.run_once()
            except Exception:  # one bad pass must not end the thread: the next one tries again
                log.exception("The dbt Cloud orphaned-run check failed; it runs again in %.0f s.", self.interval)

    def run_once(self) -> list[Orphan]:
        """One pass: list active runs, read the waiting tasks, cancel the orphans. Returns what it cancelled."""
        from airflow.utils.session import create_session

        from .markers import key_is_bound, marker_for_task, waited_marker_of

        if not key_is_bound():
            if not self.warned_unbound:
                self.warned_unbound = True
                log.warning(
                    "Orphaned dbt Cloud runs are not cancelled: no marker secret is configured, so this Airflow's "
                    "runs cannot be told from another's. Set [dbt_cloud] marker_secret (or [core] fernet_key)."
                )
            return []
        with create_session() as session:
            if not is_leader(session, self._job_field("id")):
                return []
            conn_ids = dbt_cloud_conn_ids(session)
        runs, clients = active_runs(conn_ids)  # listed before the tasks are read (see the module docstring)
        with create_session() as session:
            orphans = find_orphans(runs, waited_marker_of, waiting_markers(session, marker_for_task))
            reasons = {orphan.marker: describe(session, orphan.marker, marker_for_task) for orphan in orphans}
        for orphan in orphans:
            log.warning(
                "Cancelling dbt Cloud run %s (job %s, account %s): nobody waits for it any more: %s.",
                orphan.run_id,
                orphan.job_id,
                orphan.account_id,
                reasons[orphan.marker],
            )
            try:
                clients[(orphan.conn_id, orphan.account_id)].cancel_run(orphan.run_id)
            except Exception as error:  # logged; the next pass tries again
                log.warning("Could not cancel dbt Cloud run %s: %s", orphan.run_id, error)
        return orphans


def active_runs(conn_ids: Iterable[str]) -> tuple[dict[tuple[str, int], list[dict[str, Any]]], dict[Any, Any]]:
    """Each account's queued, starting and running runs with their cause: one listing per account."""
    from airflow.models.connection import Connection

    from .api.client import DbtCloudClient
    from .api.core import require_account
    from .api.errors import DbtCloudError
    from .hooks import connection_to_credentials
    from .provider_info import CONN_TYPE, LEGACY_CONN_TYPE, OFFICIAL_CONN_TYPE

    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    clients: dict[tuple[str, int], Any] = {}
    seen: set[tuple[str, int]] = set()
    for conn_id in conn_ids:
        try:
            conn = Connection.get_connection_from_secrets(conn_id)
            if conn.conn_type not in (CONN_TYPE, LEGACY_CONN_TYPE, OFFICIAL_CONN_TYPE):
                continue
            credentials = connection_to_credentials(conn, conn.extra_dejson)
            account_id = require_account(credentials)
            if (credentials.base_url, account_id) in seen:
                continue  # one listing per account, however many connections name it
            seen.add((credentials.base_url, account_id))
            client = DbtCloudClient(credentials)
            key = (conn_id, account_id)
            runs[key] = client.list_runs(status__in=list(_ACTIVE), include_related=("trigger",))
            clients[key] = client
        except (DbtCloudError, ValueError, LookupError) as error:  # an unusable connection must not stop the rest
            log.warning("Orphaned-run check: skipping connection %r: %s", conn_id, error)
    return runs, clients
