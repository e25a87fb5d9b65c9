"""A faithful local dbt Cloud Administrative API emulator: a real HTTP(S) server on loopback.

Runs advance lazily from a monotonic clock and a per-job script (:class:`JobScript`): created Queued (1),
then Starting (2), Running (3) and a terminal status per the script's outcome. Paths, shapes, status codes
and error bodies follow the official OpenAPI spec plus the observed behaviour collected in
``shared/reference/dbt-cloud-api.md`` (§4-§9, §11). Standard library only, plus ``cryptography`` for the
https certificate; deliberately independent of Airflow and of this package's own API client.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import random
import re
import shutil
import ssl
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from airflow_dbt_cloud_dlt.testing import _api as api
from airflow_dbt_cloud_dlt.testing._api import ApiError, Json, fields
from airflow_dbt_cloud_dlt.testing._http import Handler, Server
from airflow_dbt_cloud_dlt.testing.tls import generate_certificates

STATUS_HUMANIZED = {1: "Queued", 2: "Starting", 3: "Running", 10: "Success", 20: "Error", 30: "Cancelled"}
OUTCOME_STATUS = {"success": 10, "error": 20, "cancelled": 30, "timeout": 30}
FAULT_KINDS = ("500", "502", "503", "429", "reset", "stall", "reset_after")
FIRST_RUN_ID = 70403111615000
CANCELLED_MESSAGE = "Cancelled by user."
DEFAULT_ERROR_MESSAGE = "Database Error in model my_model (models/my_model.sql)"
_COLOR = {1: "gray", 2: "gray", 3: "blue", 10: "green", 20: "red", 30: "gray"}
_HTML = "<html><head><title>{0}</title></head><body><center><h1>{0}</h1></center><hr></body></html>\n"
_REASONS = {"500": "500 Internal Server Error", "502": "502 Bad Gateway", "503": "503 Service Unavailable"}
_ALL_RELATED = {"trigger", "job", "run_steps", "environment"}

# Constant parts of the objects, per the spec's schemas (RunResponse, HumanReadableJobDefinitionResponse, ...).
_RUN_CONST = fields(
    None,
    "owner_thread_id executed_by_thread_id deferring_run_id is_running artifact_s3_path last_checked_at "
    "last_heartbeat_at should_start_at used_repo_cache audit",
) | fields(False, "has_docs_generated has_sources_generated")
_STEP_CONST = fields(None, "status_message log_path debug_log_path run_step_invocation") | {
    "log_location": "db",
    "log_archive_type": "db_flushed",
}
_JOB_CONST = (
    fields(
        None,
        "dbt_version deferring_environment_id deferring_job_definition_id lifecycle_webhooks_url schedule account "
        "job_completion_trigger_condition fusion_readiness",
    )
    | fields(
        False,
        "generate_docs generate_sources run_generate_sources is_deferrable lifecycle_webhooks run_compare_changes "
        "run_lint triggers_on_draft_pr",
    )
    | {"description": "", "job_type": "other", "compare_changes_flags": "--select state:modified", "state": 1}
    | {"run_failure_count": 0, "errors_on_lint_failure": True, "cost_optimization_features": []}
    | {"settings": {"threads": 4, "target_name": "default"}}
    | {"triggers": fields(False, "github_webhook schedule git_provider_webhook on_merge")}
)
_PROJECT_CONST = fields(
    None,
    "connection_id repository_id semantic_layer_config_id dbt_project_subdirectory docs_job_id freshness_job_id "
    "connection repository docs_job freshness_job fusion_readiness",
) | {"description": "", "state": 1, "type": 0, "environments": [], "group_permissions": [], "default_version": "latest"}
_ENV_CONST = (
    fields(
        None, "credentials_id connection_id extended_attributes_id custom_branch project credentials fusion_readiness"
    )
    | fields(False, "use_custom_branch supports_docs is_deferrable")
    | {"type": "deployment", "state": 1}
)
_ACCOUNT_CONST = (
    fields(
        None,
        "lock_reason lock_cause unlocked_at billing_email_address enterprise_login_slug starter_repo_url "
        "trial_end_date static_subdomain vanity_subdomain run_locked_until docs_job_id freshness_job_id "
        "copilot_locked_until",
    )
    | fields(False, "locked pending_cancel business_critical agent_credit_locked")
    | fields(0, "explorer_seats analyst_seats read_only_seats develop_pod_memory_request_mebibytes")
    | {"plan": "enterprise", "run_slots": 5, "developer_seats": 10, "it_seats": 1, "state": 1, "queue_limit": 50}
    | {"pod_memory_request_mebibytes": 600, "run_duration_limit_seconds": 86400, "git_auth_level": "team"}
    | {"account_migration_events": [], "groups": []}
)

_RUN_FILTERS = api.params(
    api.PAGING,
    int="job_definition_id environment_id project_id status pk id__gt deferring_run_id",
    ints="project_id__in status__in pk__in",
    str="dbt_version",
    strs="dbt_version__in",
    bool="has_docs_generated has_sources_generated",
)
_JOB_FILTERS = api.params(
    api.PAGING,
    int="project_id environment_id pk",
    ints="project_id__in",
    str="name__icontains",
    strs="dbt_version__in",
    bool="is_system triggers_schedule is_fusion_ready",
)
_PROJECT_FILTERS = api.params(api.PAGING, int="pk pk__gt", ints="pk__in", str="name__icontains")
_ENV_FILTERS = api.params(
    api.PAGING,
    int="pk id__gt credentials_id project_id",
    ints="pk__in project_id__in",
    str="name name__icontains deployment_type type dbt_version",
    strs="dbt_version__in deployment_type__in",
)
_INCLUDE = api.params(include="include_related")
_ARTIFACT = api.params(include="include_related", int="step")


def _route(template: str) -> re.Pattern[str]:
    """``{name}`` matches an integer path segment, ``{path}`` the rest of the path (artifact names)."""
    return re.compile(
        re.sub(r"\{(\w+)\}", lambda m: "(?P<path>.+)" if m[1] == "path" else rf"(?P<{m[1]}>\d+)", template)
    )


_ROUTES = [
    (_route(template), template, method, name)
    for template, method, name in [
        ("/api/v2/accounts/", "GET", "list_accounts"),
        ("/api/v2/accounts/{account}/", "GET", "get_account"),
        ("/api/v2/accounts/{account}/jobs/", "GET", "list_jobs"),
        ("/api/v2/accounts/{account}/jobs/{job}/", "GET", "get_job"),
        ("/api/v2/accounts/{account}/jobs/{job}/run/", "POST", "trigger"),
        ("/api/v2/accounts/{account}/jobs/{job}/rerun/", "POST", "rerun"),
        ("/api/v2/accounts/{account}/jobs/{job}/artifacts/{path}", "GET", "job_artifact"),
        ("/api/v2/accounts/{account}/runs/", "GET", "list_runs"),
        ("/api/v2/accounts/{account}/runs/{run}/", "GET", "get_run"),
        ("/api/v2/accounts/{account}/runs/{run}/cancel/", "POST", "cancel"),
        ("/api/v2/accounts/{account}/runs/{run}/artifacts/", "GET", "list_artifacts"),
        ("/api/v2/accounts/{account}/runs/{run}/artifacts/{path}", "GET", "get_artifact"),
        ("/api/v3/accounts/{account}/projects/", "GET", "list_projects"),
        ("/api/v3/accounts/{account}/projects/{project}/", "GET", "get_project"),
        ("/api/v3/accounts/{account}/projects/{project}/environments/", "GET", "list_environments"),
        ("/api/v3/accounts/{account}/projects/{project}/environments/{env}/", "GET", "get_environment"),
    ]
]
_ACCOUNT_IN_PATH = re.compile(r"/api/v\d+/accounts/(\d+)/")


@dataclass
class StepScript:
    """One run step; in an "error" run the first step with ``outcome="error"`` (else the last) fails."""

    name: str
    logs: str = ""
    outcome: str = "success"


@dataclass
class JobScript:
    """A job and the script its runs follow: Queued → Starting → Running → terminal per ``outcome``.

    ``outcome`` is "success", "error", "cancelled" or "timeout" (status 30 plus dbt's timeout message);
    ``outcome_sequence`` overrides it for the job's 1st, 2nd, ... run. Steps share ``run_seconds`` equally.
    ``serial=False`` lets runs of the job execute concurrently (otherwise a run waits, ``blocked_by`` the
    previous one). ``run_results`` is served, with a small manifest, as artifacts of finished runs.
    """

    job_id: int
    account_id: int = 1
    project_id: int = 1
    environment_id: int = 1
    name: str = "emulated job"
    project_name: str = "analytics"
    environment_name: str = "prod"
    queue_seconds: float = 0.0
    start_seconds: float = 0.0
    run_seconds: float = 1.0
    outcome: str = "success"
    steps: list[StepScript] = field(default_factory=list)
    run_results: dict[str, Any] | None = None
    serial: bool = True
    outcome_sequence: list[str] = field(default_factory=list)
    timeout_seconds: int = 0
    status_message: str | None = None  # overrides the error/timeout status_message
    dbt_version: str = "latest"

    def __post_init__(self) -> None:
        self.steps = [StepScript(**s) if isinstance(s, dict) else s for s in self.steps]
        self.steps = self.steps or [StepScript("Invoke dbt with `dbt build`", "Running with dbt=1.9.0\nDone. PASS=1")]
        for outcome in (self.outcome, *self.outcome_sequence):
            if outcome not in OUTCOME_STATUS:
                raise ValueError(f"unknown outcome {outcome!r}; expected one of {sorted(OUTCOME_STATUS)}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobScript:
        """Build from JSON (control route); unknown keys raise ``ValueError``."""
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown JobScript fields: {sorted(unknown)}")
        return cls(**data)


@dataclass(frozen=True)
class RequestRecord:
    """One API request as the emulator saw it (``status`` 0: the connection was reset, no answer)."""

    method: str
    path: str
    query: dict[str, list[str]]
    status: int
    account_id: int | None
    body: dict[str, Any] | None
    headers: dict[str, str]  # Authorization is "REDACTED"
    time: float
    fault: str | None
    template: str | None = None  # the matched route, e.g. "/api/v2/accounts/{account}/runs/{run}/"


class Faults:
    """Seeded random fault injection, applied to API requests before routing (never to ``/_emulator/``).

    Kinds: "500"/"502"/"503" (HTML body, like a proxy), "429" (``Retry-After``), "reset" (TCP RST before
    any processing: a faulted trigger creates no run), "stall" (sleep, then answer normally) and
    "reset_after" (POST only: process the request, e.g. create the run, then RST without answering).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.clear()

    def set(
        self,
        rate: float = 1.0,
        kinds: Sequence[str] = ("500", "502", "503", "429", "reset", "stall"),
        seed: int | None = None,
        retry_after: float | None = 1.0,
        stall_seconds: float = 2.0,
        methods: Sequence[str] = ("GET", "POST"),
        paths: Sequence[str] | None = None,
        max_faults: int | None = None,
    ) -> None:
        """Fault ``rate`` of the requests whose method is in ``methods`` and path contains one of ``paths``.

        ``max_faults`` caps the number injected (e.g. "fail the next two GETs").
        """
        bad = [k for k in kinds if k not in FAULT_KINDS]
        if bad or not 0.0 <= rate <= 1.0:
            raise ValueError(f"invalid fault kinds {bad} or rate {rate}; kinds are {FAULT_KINDS}")
        with self._lock:
            self._rate, self._kinds, self._rng = rate, tuple(kinds), random.Random(seed)
            self.retry_after, self.stall_seconds = retry_after, stall_seconds
            self._methods, self._paths = {m.upper() for m in methods}, tuple(paths or ())
            self._max, self.injected = max_faults, 0

    def clear(self) -> None:
        """Disable fault injection."""
        self.set(rate=0.0)

    def pick(self, method: str, path: str) -> str | None:
        """Decide, under the lock and from the seeded RNG, whether and how this request fails."""
        with self._lock:
            if self._rate <= 0 or method not in self._methods or (self._max is not None and self.injected >= self._max):
                return None
            if self._paths and not any(p in path for p in self._paths):
                return None
            kinds = [k for k in self._kinds if k != "reset_after" or method == "POST"]
            if not kinds or self._rng.random() >= self._rate:
                return None
            self.injected += 1
            return self._rng.choice(kinds)


class _RateLimiter:
    """Per-account sliding 60 s window; overrunning it starts a cooldown during which every request is 429."""

    def __init__(self, requests_per_minute: int, cooldown_seconds: float, retry_after: bool) -> None:
        self.rpm, self.cooldown, self.retry_after = requests_per_minute, cooldown_seconds, retry_after
        self._lock = threading.Lock()
        self._hits: dict[int, deque[float]] = {}
        self._cool: dict[int, float] = {}

    def check(self, account: int, now: float) -> float | None:
        """Count the request; return the seconds to wait when it is limited."""
        with self._lock:
            if now < self._cool.get(account, 0.0):
                return self._cool[account] - now
            hits = self._hits.setdefault(account, deque())
            while hits and hits[0] <= now - 60.0:
                hits.popleft()
            if len(hits) >= self.rpm:
                self._cool[account] = now + self.cooldown
                hits.clear()
                return self.cooldown
            hits.append(now)
            return None


@dataclass(eq=False)
class _Run:
    id: int
    job: JobScript  # snapshot taken at trigger time
    outcome: str
    created: float  # emulator clock
    trigger: Json  # validated trigger body
    cause_category: str
    prev: _Run | None  # previous run of the same serial job
    step_id0: int
    retrying_run_id: int | None = None
    cancelled_at: float | None = None
    ready: float = 0.0  # when it may leave the queue (the previous serial run finished)
    final_finish: float | None = None  # set once terminal: never changes again
    eval_key: tuple[float, int] = (-1.0, 0)  # memo: (instant, generation) of the last evaluation
    eval_finish: float = 0.0


@dataclass(frozen=True)
class _State:
    """A run's derived state at one instant (emulator clock; None: not reached yet)."""

    status: int
    finish: float
    dequeued: float | None
    started: float | None
    finished: float | None
    blocked_by: list[int]


@dataclass(frozen=True)
class _Req:
    params: Json  # int path parameters (and "path" for artifacts)
    query: dict[str, list[str]]
    body: bytes
    ctype: str
    accounts: set[int]  # accounts the token may use


class DbtCloudEmulator:
    """The dbt Cloud Admin API (v2 runs/jobs/account, v3 projects/environments) on loopback.

    ``accounts`` maps an account id to the token (or list of tokens) valid for it. Use it as a context
    manager or call :meth:`start` / :meth:`stop`. Projects and environments derive from the added jobs.
    """

    def __init__(
        self,
        tls: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        accounts: Mapping[int, str | Sequence[str]] | None = None,
        cert_dir: str | Path | None = None,
        cert_hostnames: Sequence[str] = (),
        max_request_log: int = 100_000,
    ) -> None:
        self.tls, self._bind = tls, (host, port)
        self._cert_dir = Path(cert_dir) if cert_dir else None
        self._cert_hostnames = tuple(cert_hostnames)
        self._tmp_dir: Path | None = None
        self.ca_cert_path: str | None = None
        self._tokens: dict[str, set[int]] = {}
        self.account_ids = [int(a) for a in (accounts or {1: "emulator-token"})]
        for account, tokens in (accounts or {1: "emulator-token"}).items():
            for token in [tokens] if isinstance(tokens, str) else tokens:
                self._tokens.setdefault(token, set()).add(int(account))
        self.faults = Faults()
        self._limiter: _RateLimiter | None = None
        self._lock = threading.RLock()  # runs and jobs
        self._log_lock = threading.Lock()
        self._log: deque[RequestRecord] = deque(maxlen=max_request_log)
        self._log_counts: Counter[str] = Counter()
        self._jobs: dict[int, JobScript] = {}
        self._job_created: dict[int, float] = {}
        self._offset = 0.0
        self._mono0, self._wall0 = time.monotonic(), datetime.now(timezone.utc)
        self._server: Server | None = None
        self._port: int | None = None  # kept after stop() so stored runs still render their href
        self._thread: threading.Thread | None = None
        self._clear_runs()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> DbtCloudEmulator:
        """Bind (port 0: the OS picks) and serve from a daemon thread."""
        if self._server is not None:
            return self
        context = None
        if self.tls:
            self._tmp_dir = None if self._cert_dir else Path(tempfile.mkdtemp(prefix="dbt-cloud-emulator-"))
            files = generate_certificates(self._cert_dir or self._tmp_dir or ".", self._cert_hostnames)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(files.server_cert, files.server_key)
            self.ca_cert_path = str(files.ca_cert)
        self._server = Server(self._bind, self._dispatch, context)
        self._port = int(self._server.server_address[1])
        kwargs = {"poll_interval": 0.05}
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs=kwargs, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the listening socket and open connections, remove temporary certificates."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._tmp_dir is not None:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)

    def __enter__(self) -> DbtCloudEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the emulator has not been started")
        return self._port

    @property
    def host(self) -> str:
        """``host:port``: what Airflow's dbt Cloud connection calls the tenant."""
        return f"{self._bind[0]}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    @property
    def token(self) -> str:
        """A token valid for the first account."""
        return next(t for t, accounts in self._tokens.items() if self.account_ids[0] in accounts)

    # ------------------------------------------------------------------ scripting
    def add_job(self, job: JobScript) -> JobScript:
        """Add a job, or replace its script for future runs."""
        with self._lock:
            self._jobs[job.job_id] = copy.deepcopy(job)
            self._job_created.setdefault(job.job_id, self._now())
        return job

    def rate_limit(
        self, requests_per_minute: int | None = 5000, cooldown_seconds: float = 300.0, retry_after: bool = True
    ) -> None:
        """Enable the per-account limiter (dbt Cloud: 5000/min, then a 5-minute cooldown); ``None`` disables."""
        limiter = _RateLimiter(requests_per_minute, cooldown_seconds, retry_after) if requests_per_minute else None
        self._limiter = limiter

    def advance(self, seconds: float) -> None:
        """Move the emulator clock forward: runs progress as if ``seconds`` had passed."""
        with self._lock:
            self._offset += seconds

    def reset(self) -> None:
        """Drop runs, the request log, faults and the rate limiter; keep jobs and accounts."""
        with self._lock:
            self._clear_runs()
        self.clear_requests()
        self.faults.clear()
        self._limiter = None

    # ------------------------------------------------------------------ inspection
    @property
    def requests(self) -> list[RequestRecord]:
        """A snapshot of the request log (control routes are not logged)."""
        with self._log_lock:
            return list(self._log)

    def request_count(self, method: str | None = None, path_contains: str | None = None) -> int:
        return sum(
            (method is None or r.method == method.upper()) and (path_contains is None or path_contains in r.path)
            for r in self.requests
        )

    def clear_requests(self) -> None:
        with self._log_lock:
            self._log.clear()
            self._log_counts.clear()

    def request_summary(self) -> Json:
        """``{"total": n, "by_method_path_template": {"GET /api/v2/accounts/{account}/runs/{run}/": n}}``."""
        with self._log_lock:
            return {"total": sum(self._log_counts.values()), "by_method_path_template": dict(self._log_counts)}

    @property
    def runs(self) -> dict[int, Json]:
        """Every run as the API would return it now, with ``trigger``, ``job``, ``run_steps``, ``environment``."""
        with self._lock:
            now = self._now()
            return {run_id: self._render(run, now, _ALL_RELATED) for run_id, run in self._runs.items()}

    def get_run(self, run_id: int) -> Json:
        """One run, like :attr:`runs`; ``KeyError`` if unknown."""
        with self._lock:
            return self._render(self._runs[run_id], self._now(), _ALL_RELATED)

    def cancel_run(self, run_id: int) -> Json:
        """Cancel as a user would in the UI (terminal runs are left unchanged); ``KeyError`` if unknown."""
        with self._lock:
            run, now = self._runs[run_id], self._now()
            if self._state(run, now).status < 10:
                run.cancelled_at = run.final_finish = now
                self._generation += 1  # later runs of the job must be re-evaluated
            return self._render(run, now, set())

    # ------------------------------------------------------------------ run model
    def _clear_runs(self) -> None:
        self._runs: dict[int, _Run] = {}
        self._job_runs: dict[int, list[_Run]] = {}
        self._account_runs: dict[int, list[_Run]] = {}
        self._next_id, self._next_step_id, self._generation = FIRST_RUN_ID, 70403120000000, 0

    def _now(self) -> float:
        return time.monotonic() + self._offset

    def _wall(self, t: float | None, sep: str = " ") -> str | None:
        """dbt's run timestamp format (``sep="T"`` for jobs, projects, ...)."""
        if t is None:
            return None
        return (self._wall0 + timedelta(seconds=t - self._mono0)).isoformat(sep=sep, timespec="microseconds")

    def _create_run(self, job: JobScript, trigger: Json, category: str, retrying: int | None = None) -> _Run:
        job_runs = self._job_runs.setdefault(job.job_id, [])
        script = copy.deepcopy(job)
        if trigger.get("steps_override"):
            script.steps = [StepScript(f"Invoke dbt with `{cmd}`") for cmd in trigger["steps_override"]]
        n = len(job_runs)
        run = _Run(
            id=self._next_id,
            job=script,
            outcome=job.outcome_sequence[n] if n < len(job.outcome_sequence) else job.outcome,
            created=self._now(),
            trigger=trigger,
            cause_category=category,
            prev=job_runs[-1] if job.serial and job_runs else None,
            step_id0=self._next_step_id,
            retrying_run_id=retrying,
        )
        self._next_id += 1
        self._next_step_id += len(script.steps)
        self._runs[run.id] = run
        job_runs.append(run)
        self._account_runs.setdefault(job.account_id, []).append(run)
        return run

    def _finish(self, run: _Run, now: float) -> float:
        """When ``run`` finishes (maybe in the future), settling the unfinished serial chain before it."""
        memo = (now, self._generation)
        chain: list[_Run] = []
        r: _Run | None = run
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

    def _state(self, run: _Run, now: float) -> _State:
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
        return _State(status, finish, *reached, finish if now >= finish else None, blocked)

    def _status_message(self, run: _Run, status: int) -> str | None:
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

    def _steps(self, run: _Run, st: _State, now: float) -> list[Json]:
        """The steps started by ``now``; each gets an equal share of ``run_seconds``."""
        if st.started is None:
            return []
        steps = run.job.steps
        if run.outcome == "error":
            failing = next((i for i, s in enumerate(steps) if s.outcome == "error"), len(steps) - 1)
            steps = steps[: failing + 1]
        share, end, out = run.job.run_seconds / len(steps), min(now, st.finish), []
        for i, step in enumerate(steps):
            last = i == len(steps) - 1
            s0 = st.started + i * share
            s1 = st.started + run.job.run_seconds if last else st.started + (i + 1) * share
            if s0 > end:
                break
            logs = step.logs
            if run.cancelled_at is not None and s1 > run.cancelled_at:
                status, s1 = 30, run.cancelled_at
            elif s1 <= now:
                status = 10 if not last else {"error": 20, "cancelled": 30, "timeout": 30}.get(run.outcome, 10)
                logs = logs or (self._status_message(run, 20) or "" if status == 20 else "")
            else:  # running: a share of the log lines proportional to progress
                status, lines = 3, logs.splitlines()
                logs = "\n".join(lines[: math.ceil(len(lines) * (now - s0) / max(share, 1e-9))])
            done = None if status == 3 else s1
            took = (done or now) - s0
            out.append(
                _STEP_CONST
                | {"id": run.step_id0 + i, "run_id": run.id, "account_id": run.job.account_id, "index": i + 1}
                | {"status": status, "status_humanized": STATUS_HUMANIZED[status], "status_color": _COLOR[status]}
                | {"name": step.name, "logs": logs, "debug_logs": logs, "truncated_debug_logs": logs}
                | {"created_at": self._wall(s0), "updated_at": self._wall(done or now), "started_at": self._wall(s0)}
                | {"finished_at": self._wall(done), "duration": api.hms(took), "duration_humanized": api.humanize(took)}
                | {"run_step_command": _command(step.name)}
            )
        return out

    def _artifacts(self, run: _Run, step: int | None = None) -> dict[str, bytes]:
        """``run_results.json`` and a small ``manifest.json`` once a run with ``run_results`` succeeded/failed."""
        st = self._state(run, self._now())
        if run.job.run_results is None or st.status not in (10, 20):
            return {}
        if step is not None and not 1 <= step <= len(run.job.steps):
            return {}
        metadata: Json = {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json"}
        metadata |= {"generated_at": self._wall(st.finished, "T"), "invocation_id": str(run.id)}
        manifest = {"metadata": metadata} | fields({}, "nodes sources macros exposures metrics")
        return {
            "manifest.json": json.dumps(manifest).encode(),
            "run_results.json": json.dumps(run.job.run_results).encode(),
        }

    def _render(self, run: _Run, now: float, include: set[str]) -> Json:
        st, j = self._state(run, now), run.job
        status, end = st.status, st.finished if st.finished is not None else now
        latest = self._job_runs[j.job_id][-1] is run
        can_retry = status == 20 and latest and j.run_results is not None
        reason = "RETRY_NOT_FAILED_RUN" if status != 20 else "RETRY_NOT_LATEST_RUN" if not latest else None
        reason = None if can_retry else reason or "RETRY_NO_RUN_RESULTS"
        created, started = run.created, st.started
        events = (created, st.dequeued, started, st.finished)
        queued_until, ran = (started if started is not None else end), (end - started if started is not None else 0)
        trigger = {"id": run.id + 10_000_000, "cause": "", "job_definition_id": j.job_id}
        trigger |= fields(None, " ".join(api.TRIGGER_FIELDS)) | run.trigger | {"cause_category": run.cause_category}
        trigger |= {"created_at": self._wall(created), "updated_at": self._wall(created)}
        return (
            _RUN_CONST
            | {"id": run.id, "trigger_id": trigger["id"], "account_id": j.account_id, "job_definition_id": j.job_id}
            | {"environment_id": j.environment_id, "project_id": j.project_id, "job_id": j.job_id}
            | {"status": status, "status_humanized": STATUS_HUMANIZED[status]}
            | {"status_message": self._status_message(run, status) if status >= 20 else None}
            | {"dbt_version": run.trigger.get("dbt_version_override", j.dbt_version)}
            | {"git_branch": run.trigger.get("git_branch"), "git_sha": run.trigger.get("git_sha")}
            | {"in_progress": status < 10, "is_complete": status >= 10, "is_success": status == 10}
            | {"is_error": status == 20, "is_cancelled": status == 30, "blocked_by": st.blocked_by}
            | {"artifacts_saved": j.run_results is not None and status in (10, 20), "notifications_sent": status >= 10}
            | {"created_at": self._wall(created), "updated_at": self._wall(max(t for t in events if t is not None))}
            | {"dequeued_at": self._wall(st.dequeued), "started_at": self._wall(started)}
            | {"finished_at": self._wall(st.finished)}
            | {"trigger": trigger if "trigger" in include else None}
            | {"job": self._job_obj(j) if "job" in include else None}
            | {"environment": self._env_obj(j.account_id, j.environment_id) if "environment" in include else None}
            | {"run_steps": self._steps(run, st, now) if "run_steps" in include else []}
            | {"duration": api.hms(end - created), "duration_humanized": api.humanize(end - created)}
            | {"queued_duration": api.hms(queued_until - created)}
            | {"queued_duration_humanized": api.humanize(queued_until - created)}
            | {"run_duration": api.hms(ran), "run_duration_humanized": api.humanize(ran)}
            | {"created_at_humanized": f"{api.humanize(now - created)} ago"}
            | {"finished_at_humanized": None if st.finished is None else f"{api.humanize(now - st.finished)} ago"}
            | {"retrying_run_id": run.retrying_run_id, "can_retry": can_retry, "retry_not_supported_reason": reason}
            | {"href": f"{self.base_url}/deploy/{j.account_id}/projects/{j.project_id}/runs/{run.id}/"}
        )

    # ------------------------------------------------------------------ other objects
    def _created(self, job_id: int) -> str | None:
        return self._wall(self._job_created.get(job_id, self._mono0), "T")

    def _job_obj(self, j: JobScript, include: set[str] | frozenset[str] = frozenset()) -> Json:
        return copy.deepcopy(_JOB_CONST) | {
            "id": j.job_id,
            "account_id": j.account_id,
            "project_id": j.project_id,
            "environment_id": j.environment_id,
            "name": j.name,
            "raw_dbt_version": j.dbt_version,
            # Only the dbt commands: dbt Cloud adds its own setup steps (clone, profile, deps) to a run.
            "execute_steps": [_command(s.name) for s in j.steps if s.name.startswith("Invoke dbt")],
            "execution": {"timeout_seconds": j.timeout_seconds},
            "created_at": self._created(j.job_id),
            "updated_at": self._created(j.job_id),
            "project": self._project_obj(j.account_id, j.project_id) if "project" in include else None,
            "environment": self._env_obj(j.account_id, j.environment_id) if "environment" in include else None,
        }

    def _first_job(self, account: int, attribute: str) -> dict[int, JobScript]:
        """Project (or environment) id → the first job declaring it: projects and environments derive from jobs."""
        out: dict[int, JobScript] = {}
        for job in self._jobs.values():
            if job.account_id == account:
                out.setdefault(getattr(job, attribute), job)
        return out

    def _project_obj(self, account: int, project_id: int) -> Json | None:
        j = self._first_job(account, "project_id").get(project_id)
        if j is None:
            return None
        created = self._created(j.job_id)
        return (
            copy.deepcopy(_PROJECT_CONST)
            | {"id": project_id, "name": j.project_name, "account_id": account}
            | {
                "created_at": created,
                "updated_at": created,
            }
        )

    def _env_obj(self, account: int, env_id: int) -> Json | None:
        j = self._first_job(account, "environment_id").get(env_id)
        if j is None:
            return None
        created = self._created(j.job_id)
        deployment = "production" if "prod" in j.environment_name.lower() else "staging"
        return _ENV_CONST | {
            "id": env_id,
            "account_id": account,
            "project_id": j.project_id,
            "name": j.environment_name,
            "dbt_version": j.dbt_version,
            "raw_dbt_version": j.dbt_version,
            "deployment_type": deployment,
            "created_at": created,
            "updated_at": created,
        }

    def _account_obj(self, account: int) -> Json:
        created = self._wall(self._mono0, "T")
        return (
            copy.deepcopy(_ACCOUNT_CONST)
            | {"id": account, "name": f"Emulated account {account}"}
            | {
                "identifier": f"act_emulated_{account}",
                "created_at": created,
                "updated_at": created,
            }
        )

    # ------------------------------------------------------------------ HTTP
    def _dispatch(self, h: Handler) -> None:
        url, method, body = urlsplit(h.path), h.command, h.read_body()
        query = parse_qs(url.query, keep_blank_values=True)
        if url.path.startswith("/_emulator/"):
            self._control(h, method, url.path, query, body)
            return
        account = _ACCOUNT_IN_PATH.match(url.path)
        headers = {k: "REDACTED" if k.lower() == "authorization" else v for k, v in h.headers.items()}
        parsed: Any = None
        if body:
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
        rec: Json = {
            "method": method,
            "path": url.path,
            "query": query,
            "account_id": int(account.group(1)) if account else None,
            "body": parsed if isinstance(parsed, dict) else None,
            "headers": headers,
            "time": time.time(),
            "fault": self.faults.pick(method, url.path),
            "template": None,
        }
        status, payload, extra = self._answer(h, url, query, body, rec)
        status = 0 if rec["fault"] == "reset_after" else status  # processed, then dropped unanswered
        self._record(RequestRecord(status=status, **rec))  # before answering: the client may read the log next
        if status == 0:
            h.reset()
        else:
            h.send(status, payload, extra)

    def _answer(
        self, h: Handler, url: Any, query: dict[str, list[str]], body: bytes, rec: Json
    ) -> tuple[int, Any, Mapping[str, str]]:
        """Faults, rate limit, routing (404, 308), auth (401, 403), method (405), then the endpoint."""
        fault = rec["fault"]
        if fault in _REASONS:
            return int(fault), _HTML.format(_REASONS[fault]).encode(), {"Content-Type": "text/html"}
        if fault == "429":
            return 429, _throttled(), _retry_after(self.faults.retry_after)
        if fault == "reset":
            return 0, b"", {}
        if fault == "stall":
            time.sleep(self.faults.stall_seconds)
        limiter, account = self._limiter, rec["account_id"]
        wait = limiter.check(account, time.monotonic()) if limiter and account is not None else None
        if limiter and wait is not None:
            rec["fault"] = "rate_limit"
            return 429, _throttled(), _retry_after(wait if limiter.retry_after else None)
        try:
            for route in _ROUTES:
                match = route[0].fullmatch(url.path)
                if match:
                    _, template, allowed, name = route
                    break
            else:
                if not url.path.endswith("/") and any(r[0].fullmatch(url.path + "/") for r in _ROUTES):
                    return 308, b"", {"Location": url.path + "/" + (f"?{url.query}" if url.query else "")}
                raise api.not_found()
            rec["template"] = template
            accounts = self._authenticate(h.headers.get("Authorization", ""))
            params: Json = {k: v if k == "path" else int(v) for k, v in match.groupdict().items()}
            if "account" in params and params["account"] not in accounts:
                raise api.forbidden()
            if h.command != allowed:
                raise ApiError(405, {"detail": f'Method "{h.command}" not allowed.'})
            with self._lock:
                result = getattr(self, f"_api_{name}")(
                    _Req(params, query, body, h.headers.get("Content-Type", ""), accounts)
                )
            if isinstance(result, bytes):  # a raw artifact file
                return 200, result, {"Content-Type": "application/json"}
            return 200, result, {}
        except ApiError as err:
            return err.status, err.body, err.headers

    def _authenticate(self, header: str) -> set[int]:
        scheme, _, token = header.strip().partition(" ")
        accounts = self._tokens.get(token.strip()) if scheme.lower() in ("token", "bearer") else None
        if not accounts:
            raise api.unauthorized()
        return accounts

    def _record(self, record: RequestRecord) -> None:
        with self._log_lock:
            self._log.append(record)
            template = record.template or re.sub(r"/\d+", "/{id}", record.path)
            self._log_counts[f"{record.method} {template}"] += 1

    # ------------------------------------------------------------------ endpoints (called under self._lock)
    def _api_list_accounts(self, req: _Req) -> Json:
        api.parse_query(req.query, api.PAGING)
        accounts = sorted(req.accounts)
        extra = {"filters": {"limit": api.MAX_LIMIT, "offset": 0}, "order_by": "id"}
        return api.ok(
            [self._account_obj(a) for a in accounts],
            extra | {"pagination": {"count": len(accounts), "total_count": len(accounts)}},
        )

    def _api_get_account(self, req: _Req) -> Json:
        api.parse_query(req.query, _INCLUDE)
        return api.ok(self._account_obj(req.params["account"]))

    def _job(self, account: int, job_id: int) -> JobScript:
        job = self._jobs.get(job_id)
        if job is None or job.account_id != account:
            raise api.not_found()
        return job

    def _api_list_jobs(self, req: _Req) -> Json:
        q, account = api.parse_query(req.query, _JOB_FILTERS), req.params["account"]
        include = set(q.get("include_related", []))
        jobs = [self._job_obj(j, include) for j in self._jobs.values() if j.account_id == account]
        jobs = api.ordered([j for j in jobs if api.matches(j, q)], q, ["id", "name", "created_at"], _by_field)
        return api.paged(jobs, q, lambda j: j, {"account_id": account}, "active")

    def _api_get_job(self, req: _Req) -> Json:
        q = api.parse_query(req.query, _INCLUDE)
        return api.ok(
            self._job_obj(self._job(req.params["account"], req.params["job"]), set(q.get("include_related", [])))
        )

    def _api_trigger(self, req: _Req) -> Json:
        job = self._job(req.params["account"], req.params["job"])
        if "application/x-www-form-urlencoded" in req.ctype:
            data: Any = api.form_to_trigger(parse_qs(req.body.decode(errors="replace"), keep_blank_values=True))
        elif req.ctype and "json" not in req.ctype:
            raise ApiError(415, {"detail": f'Unsupported media type "{req.ctype}" in request.'})
        else:
            try:
                data = json.loads(req.body) if req.body.strip() else {}
            except ValueError as exc:
                raise api.invalid(f"JSON parse error - {exc}") from None
        run = self._create_run(job, api.validate_trigger(data), "api")
        return api.ok(self._render(run, self._now(), {"trigger", "job"}))  # observed live: trigger and job included

    def _api_rerun(self, req: _Req) -> Json:
        job = self._job(req.params["account"], req.params["job"])
        runs = self._job_runs.get(job.job_id, [])
        if runs and self._state(runs[-1], self._now()).status == 20:
            failed = runs[-1]
            trigger = failed.trigger | {"cause": f"Rerun of run {failed.id} from point of failure"}
            run = self._create_run(job, trigger, "rerun", retrying=failed.id)
        else:
            run = self._create_run(job, {"cause": "API"}, "api")
        return api.ok(self._render(run, self._now(), {"trigger", "job"}))

    def _run(self, account: int, run_id: int) -> _Run:
        run = self._runs.get(run_id)
        if run is None or run.job.account_id != account:
            raise api.not_found()
        return run

    def _api_get_run(self, req: _Req) -> Json:
        q = api.parse_query(req.query, _INCLUDE)
        run = self._run(req.params["account"], req.params["run"])
        return api.ok(self._render(run, self._now(), set(q.get("include_related", []))))

    def _api_cancel(self, req: _Req) -> Json:
        return api.ok(self.cancel_run(self._run(req.params["account"], req.params["run"]).id))

    def _api_list_runs(self, req: _Req) -> Json:
        q, now, account = api.parse_query(req.query, _RUN_FILTERS), self._now(), req.params["account"]
        bad = [s for s in [q.get("status", 1), *q.get("status__in", [])] if s not in STATUS_HUMANIZED]
        if bad:
            name = "status" if q.get("status", 1) not in STATUS_HUMANIZED else "status__in"
            raise api.invalid({name: f"'{bad[0]}' is not valid under any of the given schemas"})
        if "pk" in q or "pk__in" in q:  # look runs up by id
            ids = {q["pk"]} if "pk" in q else set(q["pk__in"])
            candidates = [self._runs[i] for i in sorted(ids) if i in self._runs]
        elif "job_definition_id" in q:
            candidates = self._job_runs.get(q["job_definition_id"], [])
        else:
            candidates = self._account_runs.get(account, [])
        with_status = "status" in q or "status__in" in q

        def view(r: _Run) -> Json:  # what the filters look at; status only when filtered on (it costs)
            j, status = r.job, self._state(r, now).status if with_status else None
            ids = {"id": r.id, "job_definition_id": j.job_id, "environment_id": j.environment_id}
            return _RUN_CONST | ids | {"project_id": j.project_id, "dbt_version": j.dbt_version, "status": status}

        runs = [r for r in candidates if r.job.account_id == account and api.matches(view(r), q)]

        def key(r: _Run, name: str) -> Any:  # finished_at: NULLS LAST ascending, NULLS FIRST descending (Postgres)
            finished = self._state(r, now).finished if name == "finished_at" else 0.0
            return (1, r.id) if finished is None else (0, finished, r.id)

        runs = api.ordered(runs, q, ["id", "created_at", "finished_at"], key)
        include = set(q.get("include_related", []))
        return api.paged(runs, q, lambda r: self._render(r, now, include), {"account_id": account}, "all")

    def _api_list_artifacts(self, req: _Req) -> Json:
        q = api.parse_query(req.query, _ARTIFACT)
        names = sorted(self._artifacts(self._run(req.params["account"], req.params["run"]), q.get("step")))
        return api.ok(names or None)  # null when the run has no artifacts (as observed live)

    def _api_get_artifact(self, req: _Req) -> bytes:
        q = api.parse_query(req.query, _ARTIFACT)
        files = self._artifacts(self._run(req.params["account"], req.params["run"]), q.get("step"))
        if req.params["path"] not in files:
            raise api.not_found()
        return files[req.params["path"]]

    def _api_job_artifact(self, req: _Req) -> bytes:
        q = api.parse_query(req.query, _ARTIFACT)
        for run in reversed(self._job_runs.get(self._job(req.params["account"], req.params["job"]).job_id, [])):
            files = self._artifacts(run, q.get("step"))
            if req.params["path"] in files:
                return files[req.params["path"]]
        raise api.not_found()

    def _api_list_projects(self, req: _Req) -> Json:
        q, account = api.parse_query(req.query, _PROJECT_FILTERS), req.params["account"]
        projects = [self._project_obj(account, p) for p in self._first_job(account, "project_id")]
        found = api.ordered([p for p in projects if p and api.matches(p, q)], q, ["id", "name"], _by_field)
        return api.paged(found, q, lambda p: p, {"account_id": account}, "active")

    def _api_get_project(self, req: _Req) -> Json:
        api.parse_query(req.query, _INCLUDE)
        project = self._project_obj(req.params["account"], req.params["project"])
        if project is None:
            raise api.not_found()
        return api.ok(project)

    def _api_list_environments(self, req: _Req) -> Json:
        q, account, project = api.parse_query(req.query, _ENV_FILTERS), req.params["account"], req.params["project"]
        if self._project_obj(account, project) is None:
            raise api.not_found()
        envs = [self._env_obj(account, e) for e in self._first_job(account, "environment_id")]
        envs = [e for e in envs if e and e["project_id"] == project and api.matches(e, q)]
        envs = api.ordered(envs, q, ["id", "name"], _by_field)
        return api.paged(envs, q, lambda e: e, {"account_id": account, "project_id": project}, "active")

    def _api_get_environment(self, req: _Req) -> Json:
        api.parse_query(req.query, _INCLUDE)
        env = self._env_obj(req.params["account"], req.params["env"])
        if env is None or env["project_id"] != req.params["project"]:
            raise api.not_found()
        return api.ok(env)

    # ------------------------------------------------------------------ control routes (no auth, not logged)
    def _control(self, h: Handler, method: str, path: str, query: dict[str, list[str]], body: bytes) -> None:
        route = method + " " + re.sub(r"/\d+/", "/{id}/", path.rstrip("/") + "/")
        try:
            data = json.loads(body) if body.strip() else {}
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object")
            result: Any = {"ok": True}
            if route == "GET /_emulator/health/":
                pass
            elif route == "POST /_emulator/jobs/":
                result = asdict(self.add_job(JobScript.from_dict(data)))
            elif route == "POST /_emulator/faults/" and data:
                self.faults.set(**data)
            elif route == "POST /_emulator/faults/":
                self.faults.clear()
            elif route == "POST /_emulator/rate_limit/":
                self.rate_limit(**data)
            elif route == "GET /_emulator/requests/":
                summary = query.get("summary", ["0"])[-1].lower() not in ("0", "false", "")
                result = self.request_summary() if summary else [asdict(r) for r in self.requests]
            elif route == "DELETE /_emulator/requests/":
                self.clear_requests()
            elif route == "POST /_emulator/reset/":
                self.reset()
            elif route == "POST /_emulator/advance/":
                self.advance(float(data.get("seconds", 0)))
            elif route == "GET /_emulator/runs/":
                result = sorted(self.runs.values(), key=lambda r: int(r["id"]))
            elif route == "POST /_emulator/runs/{id}/cancel/":
                result = self.cancel_run(int(path.strip("/").split("/")[2]))
            else:
                h.send(404, {"error": f"unknown control route {method} {path}"})
                return
            h.send(200, result)
        except KeyError as exc:
            h.send(404, {"error": f"not found: {exc}"})
        except (TypeError, ValueError) as exc:
            h.send(400, {"error": str(exc)})


def _throttled() -> Json:
    return api.error_body(429, "Too many requests. Please slow down and try again later.")


def _retry_after(seconds: float | None) -> dict[str, str]:
    return {} if seconds is None else {"Retry-After": str(max(0, math.ceil(seconds)))}


def _by_field(obj: Json, name: str) -> Any:
    return (obj.get(name) or "", obj["id"])


def _command(step_name: str) -> str:
    """``"Invoke dbt with `dbt build`"`` → ``"dbt build"``."""
    match = re.search(r"`([^`]+)`", step_name)
    return match.group(1) if match else step_name


def default_demo_job() -> JobScript:
    """The CLI's demo job: job 1 "daily build", two successful steps over about three seconds."""
    return JobScript(
        job_id=1,
        name="daily build",
        project_name="analytics",
        environment_name="prod",
        queue_seconds=0.5,
        start_seconds=0.5,
        run_seconds=2.0,
        steps=[
            StepScript("Invoke dbt with `dbt deps`", "Installing packages\nDone."),
            StepScript("Invoke dbt with `dbt build`", "Running with dbt=1.9.0\nDone. PASS=3 ERROR=0 TOTAL=3"),
        ],
        run_results={"metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/run-results/v6.json"}}
        | {"results": [], "elapsed_time": 2.0, "args": {}},
    )


def parse_job_spec(spec: str, account_id: int = 1) -> JobScript:
    """Parse the CLI's ``JOB_ID[:OUTCOME[:RUN_SECONDS]]``."""
    job_id, outcome, seconds = [*spec.split(":"), "", ""][:3]
    return JobScript(
        job_id=int(job_id),
        account_id=account_id,
        name=f"job {job_id}",
        outcome=outcome or "success",
        run_seconds=float(seconds) if seconds else 1.0,
    )
