"""A faithful local dbt Cloud Administrative API emulator: a real HTTP(S) server on loopback.

:class:`DbtCloudEmulator` ties the parts together: the state and run lifecycle (``state``), the API's
objects (``objects``), the routes per resource (``routes``), fault injection and rate limiting
(``faults``), the request log (``recording``) and the transport (``_http``). Paths, shapes, status codes
and error bodies follow the official OpenAPI spec plus the observed behaviour collected in
``shared/reference/dbt-cloud-api.md`` (§4-§9, §11). Standard library only, plus ``cryptography`` for the
https certificate; deliberately independent of Airflow and of this package's own API client.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import ssl
import tempfile
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, parse_qs, urlsplit

from airflow_dbt_cloud_dlt.testing._api import Json
from airflow_dbt_cloud_dlt.testing._http import Handler, Server
from airflow_dbt_cloud_dlt.testing.faults import FAULT_KINDS, Faults, RateLimiter
from airflow_dbt_cloud_dlt.testing.objects import ALL_RELATED, run_obj
from airflow_dbt_cloud_dlt.testing.recording import RequestLog, RequestRecord
from airflow_dbt_cloud_dlt.testing.routes import answer
from airflow_dbt_cloud_dlt.testing.routes.control import control
from airflow_dbt_cloud_dlt.testing.scripts import (
    OUTCOME_STATUS,
    STATUS_HUMANIZED,
    JobScript,
    StepScript,
    default_demo_job,
    parse_job_spec,
)
from airflow_dbt_cloud_dlt.testing.state import CANCELLED_MESSAGE, DEFAULT_ERROR_MESSAGE, FIRST_RUN_ID, EmulatorState
from airflow_dbt_cloud_dlt.testing.tls import generate_certificates

__all__ = [
    "CANCELLED_MESSAGE",
    "DEFAULT_ERROR_MESSAGE",
    "FAULT_KINDS",
    "FIRST_RUN_ID",
    "OUTCOME_STATUS",
    "STATUS_HUMANIZED",
    "DbtCloudEmulator",
    "Faults",
    "JobScript",
    "RequestRecord",
    "StepScript",
    "default_demo_job",
    "parse_job_spec",
]

_ACCOUNT_IN_PATH = re.compile(r"/api/v\d+/accounts/(\d+)/")


#: What a control route (``/_emulator/``, but health) answers without a valid token.
CONTROL_AUTH_MESSAGE = (
    "The emulator's control routes need an account's token: send 'Authorization: Token <token>' "
    "(the token the emulator was started with, e.g. from DBT_CLOUD_EMULATOR_TOKEN)."
)


def bind_warning(host: str) -> str | None:
    """The warning for an address other than loopback: anyone who can reach it can use the emulator."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return None
    return (
        f"The dbt Cloud emulator binds {host!r}, which is not a loopback address: anyone who can reach this "
        "machine's port can read its runs and use its token. Bind 127.0.0.1 unless you need otherwise (a "
        "container), and then publish the port to loopback only."
    )


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
        warning = bind_warning(host)
        if warning:
            warnings.warn(warning, stacklevel=2)
        self._cert_dir = Path(cert_dir) if cert_dir else None
        self._cert_hostnames = tuple(cert_hostnames)
        self._tmp_dir: Path | None = None
        self.ca_cert_path: str | None = None
        self.state = EmulatorState(accounts or {1: "emulator-token"})
        self.account_ids = self.state.account_ids
        self.faults = Faults()
        self._limiter: RateLimiter | None = None
        self._log = RequestLog(max_request_log)
        self._server: Server | None = None
        self._port: int | None = None  # kept after stop() so stored runs still render their href
        self._thread: threading.Thread | None = None

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
        self.state.base_url = self.base_url
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
        return next(t for t, accounts in self.state.tokens.items() if self.account_ids[0] in accounts)

    # ------------------------------------------------------------------ scripting
    def add_job(self, job: JobScript) -> JobScript:
        """Add a job, or replace its script for future runs."""
        self.state.add_job(job)
        return job

    def rate_limit(
        self, requests_per_minute: int | None = 5000, cooldown_seconds: float = 300.0, retry_after: bool = True
    ) -> None:
        """Enable the per-account limiter (dbt Cloud: 5000/min, then a 5-minute cooldown); ``None`` disables."""
        limiter = RateLimiter(requests_per_minute, cooldown_seconds, retry_after) if requests_per_minute else None
        self._limiter = limiter

    def advance(self, seconds: float) -> None:
        """Move the emulator clock forward: runs progress as if ``seconds`` had passed."""
        self.state.advance(seconds)

    def reset(self) -> None:
        """Drop runs, the request log, faults and the rate limiter; keep jobs and accounts."""
        with self.state.lock:
            self.state.clear_runs()
        self.clear_requests()
        self.faults.clear()
        self._limiter = None

    # ------------------------------------------------------------------ inspection
    @property
    def requests(self) -> list[RequestRecord]:
        """A snapshot of the request log (control routes are not logged)."""
        return self._log.snapshot()

    def request_count(self, method: str | None = None, path_contains: str | None = None) -> int:
        return sum(
            (method is None or r.method == method.upper()) and (path_contains is None or path_contains in r.path)
            for r in self.requests
        )

    def clear_requests(self) -> None:
        self._log.clear()

    def request_summary(self) -> Json:
        """``{"total": n, "by_method_path_template": {"GET /api/v2/accounts/{account}/runs/{run}/": n}}``."""
        return self._log.summary()

    @property
    def runs(self) -> dict[int, Json]:
        """Every run as the API would return it now, with ``trigger``, ``job``, ``run_steps``, ``environment``."""
        with self.state.lock:
            now = self.state.now()
            return {run_id: run_obj(self.state, run, now, ALL_RELATED) for run_id, run in self.state.runs.items()}

    def get_run(self, run_id: int) -> Json:
        """One run, like :attr:`runs`; ``KeyError`` if unknown."""
        with self.state.lock:
            return run_obj(self.state, self.state.runs[run_id], self.state.now(), ALL_RELATED)

    def cancel_run(self, run_id: int) -> Json:
        """Cancel as a user would in the UI (terminal runs are left unchanged); ``KeyError`` if unknown."""
        with self.state.lock:
            return run_obj(self.state, self.state.cancel(run_id), self.state.now(), set())

    # ------------------------------------------------------------------ HTTP
    def _may_control(self, authorization: str | None) -> bool:
        """The control routes (all but health) need the token of one of the emulator's accounts."""
        scheme, _, token = (authorization or "").partition(" ")
        return scheme.lower() in ("token", "bearer") and token.strip() in self.state.tokens

    def _dispatch(self, h: Handler) -> None:
        url, method, body = urlsplit(h.path), h.command, h.read_body()
        query = parse_qs(url.query, keep_blank_values=True)
        if url.path.startswith("/_emulator/"):
            if url.path.rstrip("/") != "/_emulator/health" and not self._may_control(h.headers.get("Authorization")):
                h.send(401, {"detail": CONTROL_AUTH_MESSAGE})
                return
            h.send(*control(self, method, url.path, query, body))
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
        self._log.add(RequestRecord(status=status, **rec))  # before answering: the client may read the log next
        if status == 0:
            h.reset()
        else:
            h.send(status, payload, extra)

    def _answer(
        self, h: Handler, url: SplitResult, query: dict[str, list[str]], body: bytes, rec: Json
    ) -> tuple[int, Any, Mapping[str, str]]:
        """Faults, then the rate limit, then the routes."""
        faulted = self.faults.answer(rec["fault"])
        if faulted is not None:
            return faulted
        limiter = self._limiter
        limited = limiter.answer(rec["account_id"]) if limiter is not None else None
        if limited is not None:
            rec["fault"] = "rate_limit"
            return limited
        return answer(self.state, h, url, query, body, rec)
