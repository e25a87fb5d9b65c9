"""The sync transport: one pooled ``requests.Session`` per process and endpoint settings.

Every client of a process that talks to the same host with the same TLS and proxy settings shares one
session, so calls reuse warm connections. The token travels per request, never in the shared session.
A child process after ``fork`` opens sessions of its own (the key holds the process id), and the
sessions of a process are closed when it exits.
"""

from __future__ import annotations

import atexit
import contextvars
import http.client
import io
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import requests
import tenacity
import urllib3.connection
import urllib3.connectionpool
import urllib3.exceptions
import urllib3.poolmanager
from requests.adapters import HTTPAdapter

from . import _base, core
from ._base import BaseClient, PoolKey, no_cookies, pool_key
from .core import ApiRequest, RetryPolicy
from .credentials import CredentialsLike, DbtCloudCredentials
from .errors import DbtCloudConfigError

#: Per (process id, endpoint settings): a forked child never sends over its parent's connections.
_SESSIONS: dict[tuple[int, PoolKey], requests.Session] = {}
_SESSIONS_LOCK = threading.Lock()
#: Bytes read and written at a time by :meth:`DbtCloudClient.download`.
DOWNLOAD_CHUNK = 1 << 20
#: What a request that got no (whole) answer raises.
_NO_ANSWER = (requests.RequestException, urllib3.exceptions.HTTPError, OSError)


#: When the answer being read must be complete (``time.monotonic()``), for this thread's request; None: no
#: deadline for the whole answer (artifact downloads), only the per-read timeout.
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("dbt_cloud_deadline", default=None)


class _DeadlineReader(io.RawIOBase):
    """Reads of a socket that all end by a deadline: each waits at most what is left of it (and at most the
    socket's own per-read timeout). The status line and headers are read through it too, so a server that
    drips them a byte at a time meets the same deadline as one that drips the body."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self._sock, self._deadline, self._timeout = sock, deadline, sock.gettimeout()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the whole answer's deadline passed")
        self._sock.settimeout(left if self._timeout is None else min(left, self._timeout))
        return self._sock.recv_into(buffer)


class _DeadlineResponse(http.client.HTTPResponse):
    """``http.client``'s response, reading through a :class:`_DeadlineReader` while a deadline is set."""

    def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        deadline = _DEADLINE.get()
        if deadline is not None:
            self.fp.close()  # the plain socket file: only drops its reference to the socket
            self.fp = io.BufferedReader(_DeadlineReader(sock, deadline))


class _HTTPConnection(urllib3.connection.HTTPConnection):
    response_class = _DeadlineResponse


class _HTTPSConnection(urllib3.connection.HTTPSConnection):
    response_class = _DeadlineResponse


class _HTTPPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOL_CLASSES = {"http": _HTTPPool, "https": _HTTPSPool}


class _DeadlineAdapter(HTTPAdapter):
    """``requests``' adapter whose connections (direct or through an http proxy) read every answer, headers
    included, within the deadline that :meth:`DbtCloudClient._send_once` sets."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOL_CLASSES

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if manager.pool_classes_by_scheme is urllib3.poolmanager.pool_classes_by_scheme:  # not SOCKS
            manager.pool_classes_by_scheme = _POOL_CLASSES
        return manager


def with_deadlines(session: requests.Session) -> requests.Session:
    """``session`` with :class:`_DeadlineAdapter` for http and https, where it has ``requests``' default
    adapters (adapters of its owner's own are left alone: there only the body is under the deadline)."""
    for prefix in ("https://", "http://"):
        if type(session.adapters.get(prefix)) is HTTPAdapter:
            session.mount(prefix, _DeadlineAdapter())
    return session


def shared_session(credentials: DbtCloudCredentials) -> requests.Session:
    """This process's pooled session for these endpoint settings (host, TLS, proxies); no token inside."""
    key = (os.getpid(), pool_key(credentials))
    with _SESSIONS_LOCK:
        session = _SESSIONS.get(key)
        if session is None:
            session = _SESSIONS[key] = with_deadlines(requests.Session())
            session.cookies.set_policy(no_cookies())
        return session


@atexit.register
def close_shared_sessions() -> None:
    """Close this process's pooled sessions (a parent's, inherited through fork, are left alone)."""
    with _SESSIONS_LOCK:
        for key in [key for key in _SESSIONS if key[0] == os.getpid()]:
            _SESSIONS.pop(key).close()


def _after_fork_in_child() -> None:
    global _SESSIONS_LOCK
    _SESSIONS_LOCK = threading.Lock()  # another thread of the parent may have held it at the fork


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _not_sent(exc: requests.RequestException) -> bool:
    """True when the connection never opened, so the server cannot have seen the request."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


def _timed_out(exc: BaseException, deadline: float | None) -> bool:
    """True when ``exc`` is a read that ran into the whole answer's deadline (never a failed connect)."""
    if deadline is None or time.monotonic() < deadline:
        return False
    if isinstance(exc, requests.ConnectTimeout) or (isinstance(exc, requests.RequestException) and _not_sent(exc)):
        return False
    return isinstance(exc, requests.Timeout | urllib3.exceptions.ReadTimeoutError | TimeoutError)


def _read_bounded(
    response: requests.Response, request: ApiRequest, creds: DbtCloudCredentials, deadline: float | None
) -> bytes:
    """The body, at most :func:`.core.body_limit` bytes, all of it by ``deadline`` (``time.monotonic()``).

    ``read1`` returns what one socket read brings, so a server that drips bytes meets the deadline between two
    reads, and each read waits at most what is left of it.
    """
    core.check_announced_size(request, response.headers)
    limit, size, chunks = core.body_limit(request), 0, list[bytes]()
    while True:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise core.too_slow(request, creds)
            sock = getattr(getattr(response.raw, "connection", None), "sock", None)
            if sock is not None:
                sock.settimeout(min(left, creds.timeout))
        try:
            chunk = response.raw.read1(65536, decode_content=True)
        except (urllib3.exceptions.ReadTimeoutError, TimeoutError):
            if deadline is not None and time.monotonic() >= deadline:
                raise core.too_slow(request, creds) from None
            raise
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise core.too_large(request)
        chunks.append(chunk)


def _write_body(response: requests.Response, target: Path) -> int:
    """Write the body to ``target`` (truncated first), a chunk at a time; the bytes written."""
    written = 0
    with target.open("wb") as out:
        for chunk in response.iter_content(chunk_size=DOWNLOAD_CHUNK):
            try:
                out.write(chunk)
            except OSError as error:  # the disk, not the network: not retried
                raise DbtCloudConfigError(f"Could not write {target}: {error}") from None
            written += len(chunk)
    return written


class DbtCloudClient(BaseClient):
    """A dbt Cloud API client for one account. Use it as a context manager, or call :meth:`close`."""

    def __init__(
        self,
        credentials: CredentialsLike = None,
        *,
        retry: RetryPolicy | None = None,
        session: requests.Session | None = None,
    ) -> None:
        super().__init__(credentials, retry)
        self._own_session = None if session is None else with_deadlines(session)  # this client's; closed with it
        core.warn_if_unverified(self.credentials)

    def __enter__(self) -> DbtCloudClient:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close a session passed in; the process's pooled session stays open for other clients."""
        if self._own_session is not None:
            self._own_session.close()

    # --- transport --------------------------------------------------------------------------------

    def _request_kwargs(self, request: ApiRequest) -> dict[str, Any]:
        creds = self.credentials
        return {
            "method": request.method,
            "url": creds.base_url + request.path,
            "params": request.params,
            "json": request.body,
            "headers": self._headers,
            "timeout": (min(core.CONNECT_TIMEOUT, creds.timeout), creds.timeout),
            "allow_redirects": False,
            # Per request, because requests lets REQUESTS_CA_BUNDLE and HTTPS_PROXY override session settings.
            "verify": creds.verify,
            "proxies": dict(creds.proxies or {}),
            "stream": True,  # read below, bounded in size and time (or written to disk chunk by chunk)
        }

    def _send_once(self, request: ApiRequest) -> Any:
        creds = self.credentials
        wait = self._reserve()
        if wait > 0:
            time.sleep(wait)
        # The whole request, from sending to the last byte of the answer (headers too), within the timeout.
        seconds = core.answer_deadline(request, creds)
        deadline = None if seconds is None else time.monotonic() + seconds
        context = _DEADLINE.set(deadline)
        try:
            response = (self._own_session or shared_session(creds)).request(**self._request_kwargs(request))
            with response:
                body = _read_bounded(response, request, creds, deadline)
        except requests.exceptions.SSLError as exc:
            self._no_answer(request, exc, sent=False, transient=False)
        except _NO_ANSWER as exc:  # resets, timeouts, cut bodies
            if _timed_out(exc, deadline):
                raise core.too_slow(request, creds) from None
            self._no_answer(request, exc, sent=not (isinstance(exc, requests.RequestException) and _not_sent(exc)))
        finally:
            _DEADLINE.reset(context)
        return self._answer(request, response.status_code, response.headers, body)

    def _download_once(self, request: ApiRequest, target: Path) -> int:
        """One attempt of :meth:`download`: a successful answer goes to ``target``, any other raises its error."""
        creds = self.credentials
        wait = self._reserve()
        if wait > 0:
            time.sleep(wait)
        try:
            response = (self._own_session or shared_session(creds)).request(**self._request_kwargs(request))
            with response:
                if 200 <= response.status_code < 300:
                    return _write_body(response, target)
                body = _read_bounded(response, request, creds, None)
        except requests.exceptions.SSLError as exc:
            self._no_answer(request, exc, sent=False, transient=False)
        except _NO_ANSWER as exc:  # resets, timeouts, bodies cut short: the download starts again
            self._no_answer(request, exc, sent=not (isinstance(exc, requests.RequestException) and _not_sent(exc)))
        self._answer(request, response.status_code, response.headers, body)  # raises the answer's error
        raise AssertionError("unreachable")  # pragma: no cover

    def download(self, request: ApiRequest, target: str | os.PathLike[str]) -> int:
        """Stream the file that ``request`` reads (an artifact) into ``target``, a chunk at a time; return its
        size. Memory stays at one chunk whatever the file's size, and no size limit applies. The file appears
        under its name only when complete (written beside it first); a failed attempt is retried from the start
        under the retry policy.
        """
        final = Path(target)
        final.parent.mkdir(parents=True, exist_ok=True)
        partial = final.with_name(f".{final.name}.part")
        try:
            for attempt in tenacity.Retrying(**self._retrying(request)):
                with attempt:
                    size = self._download_once(request, partial)
            os.replace(partial, final)
        finally:
            partial.unlink(missing_ok=True)
        return size

    def send(self, request: ApiRequest) -> Any:
        """Send one request under the retry policy; returns the envelope (or bytes for artifacts)."""
        for attempt in tenacity.Retrying(**self._retrying(request)):
            with attempt:
                return self._send_once(request)
        raise AssertionError("unreachable")  # pragma: no cover

    def _paged(
        self, build: Callable[[int], ApiRequest], limit: int | None, page_size: int = core.MAX_PAGE_SIZE
    ) -> Iterator[dict[str, Any]]:
        what = build(0).what
        return _base.paginate(lambda offset: self.send(build(offset)), what, limit=limit, page_size=page_size)

    # --- runs -------------------------------------------------------------------------------------

    trigger_job_run = _base.TRIGGER_JOB_RUN.sync()
    rerun_job = _base.RERUN_JOB.sync()
    get_run = _base.GET_RUN.sync()
    cancel_run = _base.CANCEL_RUN.sync()
    list_run_artifacts = _base.LIST_RUN_ARTIFACTS.sync()
    get_run_artifact = _base.GET_RUN_ARTIFACT.sync()

    def list_runs(self, *, limit: int | None = None, order_by: str = "-id", **filters: Any) -> list[dict[str, Any]]:
        """Runs matching dbt Cloud's list filters, paged 100 at a time; ``limit`` caps the total."""
        page = core.MAX_PAGE_SIZE if limit is None else min(limit, core.MAX_PAGE_SIZE)
        return list(
            self._paged(
                lambda offset: core.list_runs(self.account_id, limit=page, offset=offset, order_by=order_by, **filters),
                limit,
                page,
            )
        )

    # --- jobs, projects, environments, account ----------------------------------------------------

    get_job = _base.GET_JOB.sync()
    get_account = _base.GET_ACCOUNT.sync()

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
