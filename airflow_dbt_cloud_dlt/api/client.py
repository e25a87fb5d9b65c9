"""The sync transport: one ``requests.Session`` per client, the protocol core for everything else."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any

import requests
import tenacity
import urllib3.exceptions

from . import core
from .core import ApiRequest, RetryPolicy
from .credentials import CredentialsLike, DbtCloudCredentials, resolve_credentials
from .errors import DbtCloudConfigError, DbtCloudRateLimitError
from .ratelimit import budget_for


def _not_sent(exc: requests.RequestException) -> bool:
    """True when the connection never opened, so the server cannot have seen the request."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


class DbtCloudClient:
    """A dbt Cloud API client for one account. Use it as a context manager, or call :meth:`close`."""

    def __init__(
        self,
        credentials: CredentialsLike = None,
        *,
        retry: RetryPolicy | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.credentials: DbtCloudCredentials = resolve_credentials(credentials)
        self.account_id = core.require_account(self.credentials)
        self.retry = retry or RetryPolicy()
        self._budget = budget_for(self.credentials.base_url, self.account_id)
        self._session = session or requests.Session()
        self._session.headers.update(core.auth_headers(self.credentials.api_token))
        core.warn_if_unverified(self.credentials)

    def __enter__(self) -> DbtCloudClient:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._session.close()

    # --- transport --------------------------------------------------------------------------------

    def _send_once(self, request: ApiRequest) -> Any:
        creds = self.credentials
        wait = self._budget.reserve()
        if wait > 0:
            time.sleep(wait)
        try:
            response = self._session.request(
                request.method,
                creds.base_url + request.path,
                params=request.params,
                json=request.body,
                timeout=(min(core.CONNECT_TIMEOUT, creds.timeout), creds.timeout),
                allow_redirects=False,
                # Per request, because requests lets REQUESTS_CA_BUNDLE and HTTPS_PROXY override session settings.
                verify=creds.verify,
                proxies=dict(creds.proxies or {}),
            )
        except requests.exceptions.SSLError as exc:
            raise core.connection_error(request, creds, exc, sent=False, transient=False) from None
        except requests.RequestException as exc:  # connection errors, timeouts, bodies cut short
            raise core.connection_error(request, creds, exc, sent=not _not_sent(exc)) from None
        try:
            return core.parse_response(request, response.status_code, response.headers, response.content, creds)
        except DbtCloudRateLimitError as error:
            self._budget.pause(self.retry.capped_retry_after(error))
            raise

    def send(self, request: ApiRequest) -> Any:
        """Send one request under the retry policy; returns the envelope (or bytes for artifacts)."""
        for attempt in tenacity.Retrying(**self.retry.tenacity_kwargs(request)):
            with attempt:
                return self._send_once(request)
        raise AssertionError("unreachable")  # pragma: no cover

    def _data(self, request: ApiRequest) -> Any:
        return self.send(request)["data"]

    def _paged(self, build: Any, limit: int | None) -> Iterator[dict[str, Any]]:
        offset, seen = 0, 0
        while True:
            items, total = core.page_items(self.send(build(offset)))
            for item in items:
                if limit is not None and seen >= limit:
                    return
                seen += 1
                yield item
            offset += len(items)
            if not items or (total is not None and offset >= total) or len(items) < core.MAX_PAGE_SIZE:
                return

    # --- runs -------------------------------------------------------------------------------------

    def trigger_job_run(self, job_id: int, body: Mapping[str, Any]) -> dict[str, Any]:
        """Start a run of a job. Never retried once the request may have reached dbt Cloud."""
        return dict(self._data(core.trigger_job_run(self.account_id, job_id, body)))

    def rerun_job(self, job_id: int) -> dict[str, Any]:
        """Rerun a job from its point of failure (a plain new run when its last run did not fail)."""
        return dict(self._data(core.rerun_job(self.account_id, job_id)))

    def get_run(self, run_id: int, include_related: Iterable[str] = ()) -> dict[str, Any]:
        return dict(self._data(core.get_run(self.account_id, run_id, include_related)))

    def list_runs(self, *, limit: int | None = None, order_by: str = "-id", **filters: Any) -> list[dict[str, Any]]:
        """Runs matching dbt Cloud's list filters, paged 100 at a time; ``limit`` caps the total."""
        page = core.MAX_PAGE_SIZE if limit is None else min(limit, core.MAX_PAGE_SIZE)
        return list(
            self._paged(
                lambda offset: core.list_runs(self.account_id, limit=page, offset=offset, order_by=order_by, **filters),
                limit,
            )
        )

    def cancel_run(self, run_id: int) -> dict[str, Any]:
        return dict(self._data(core.cancel_run(self.account_id, run_id)))

    def list_run_artifacts(self, run_id: int, step: int | None = None) -> list[str]:
        return list(self._data(core.list_run_artifacts(self.account_id, run_id, step)) or [])

    def get_run_artifact(self, run_id: int, path: str, step: int | None = None) -> bytes:
        return bytes(self.send(core.get_run_artifact(self.account_id, run_id, path, step)))

    # --- jobs, projects, environments, account ----------------------------------------------------

    def get_job(self, job_id: int) -> dict[str, Any]:
        return dict(self._data(core.get_job(self.account_id, job_id)))

    def list_jobs(self, **filters: Any) -> list[dict[str, Any]]:
        return list(self._paged(lambda offset: core.list_jobs(self.account_id, offset=offset, **filters), None))

    def list_projects(self, **filters: Any) -> list[dict[str, Any]]:
        return list(self._paged(lambda offset: core.list_projects(self.account_id, offset=offset, **filters), None))

    def list_environments(self, project_id: int, **filters: Any) -> list[dict[str, Any]]:
        return list(
            self._paged(
                lambda offset: core.list_environments(self.account_id, project_id, offset=offset, **filters), None
            )
        )

    def get_account(self) -> dict[str, Any]:
        return dict(self._data(core.get_account(self.account_id)))

    def find_job(self, project_name: str, environment_name: str, job_name: str) -> dict[str, Any]:
        """The one job with exactly these project, environment and job names."""
        project = _exactly_one(self.list_projects(name__icontains=project_name), "project", project_name)
        environment = _exactly_one(
            self.list_environments(project["id"], name=environment_name), "environment", environment_name
        )
        return _exactly_one(
            self.list_jobs(project_id=project["id"], environment_id=environment["id"], name__icontains=job_name),
            "job",
            job_name,
        )


def _exactly_one(items: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [item for item in items if item.get("name") == name]
    if len(matches) != 1:
        found = sorted({str(item.get("name")) for item in items})
        problem = "No" if not matches else f"{len(matches)}"
        raise DbtCloudConfigError(
            f"{problem} dbt Cloud {kind} named exactly {name!r} (close matches: {found or 'none'}). "
            f"Check the name, or pass the {kind}'s id instead."
        )
    return matches[0]
