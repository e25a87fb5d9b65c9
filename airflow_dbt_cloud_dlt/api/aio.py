"""The async transport for the triggerer: httpx, one pooled HTTP client per event loop and endpoint.

The official provider opens a new HTTP session (TCP and TLS handshake) for every poll. Here every
trigger of a process shares one ``httpx.AsyncClient`` per (event loop, host, TLS and proxy settings),
so polls reuse warm connections. The token travels per request, never in the shared client. A pool is
closed when its last holder (a poller) leaves, once its requests in flight are done, and in any case
when the event loop shuts down. Every pool uses one cached TLS context per ``verify`` setting.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.cookiejar
import ssl
import weakref
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import tenacity

from . import _base, core
from ._base import BaseClient, PoolKey, no_cookies, pool_key
from .core import ApiRequest, RetryPolicy
from .credentials import CredentialsLike, DbtCloudCredentials

_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@functools.lru_cache(maxsize=16)
def _ssl_context(verify: bool | str) -> ssl.SSLContext | bool:
    """One TLS context per setting, shared by every HTTP client: loading a CA bundle takes ~0.2 s."""
    if verify is False:
        return False
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return httpx.create_ssl_context()  # certifi, or SSL_CERT_FILE / SSL_CERT_DIR when set


def _timeout(credentials: DbtCloudCredentials) -> httpx.Timeout:
    return httpx.Timeout(credentials.timeout, connect=min(core.CONNECT_TIMEOUT, credentials.timeout))


def new_http_client(credentials: DbtCloudCredentials) -> httpx.AsyncClient:
    """A pooled HTTP client for these endpoint settings (TLS, proxies, timeouts); no token inside."""
    core.warn_if_unverified(credentials)
    verify = _ssl_context(credentials.verify)
    mounts = {
        f"{scheme}://": httpx.AsyncHTTPTransport(proxy=url, verify=verify)
        for scheme, url in (credentials.proxies or {}).items()
    }
    return httpx.AsyncClient(
        base_url=credentials.base_url,
        verify=verify,
        mounts=mounts or None,
        timeout=_timeout(credentials),
        limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
        follow_redirects=False,
        cookies=http.cookiejar.CookieJar(no_cookies()),
    )


@dataclass(eq=False)
class _Pool:
    http: httpx.AsyncClient
    holders: set[int] = field(default_factory=set)  # id() of the objects that hold the pool open
    busy: int = 0  # requests in flight
    orphaned: bool = False  # its last holder left while requests were in flight: the last one closes it


class _LoopPools:
    """The pools of one event loop, closed when the loop shuts down its async generators."""

    def __init__(self) -> None:
        self.pools: dict[PoolKey, _Pool] = {}
        # The loop finalises the async generators it saw started (asyncio.run, the triggerer and
        # pytest-asyncio call shutdown_asyncgens): this one's ``finally`` closes the pools.
        self._closer = self._close_at_shutdown()
        with contextlib.suppress(StopIteration):
            self._closer.asend(None).send(None)

    async def _close_at_shutdown(self) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            await self.aclose()

    def pool(self, credentials: DbtCloudCredentials) -> _Pool:
        key = pool_key(credentials)
        pool = self.pools.get(key)
        if pool is None or pool.http.is_closed:
            pool = self.pools[key] = _Pool(new_http_client(credentials))
        return pool

    @contextlib.asynccontextmanager
    async def using(self, credentials: DbtCloudCredentials) -> AsyncIterator[httpx.AsyncClient]:
        """The pooled client for one request; an orphaned pool is closed when its last request is done."""
        pool = self.pool(credentials)
        pool.busy += 1
        try:
            yield pool.http
        finally:
            pool.busy -= 1
            if pool.orphaned and not pool.busy and not pool.holders:
                await self.close(pool)

    async def close(self, pool: _Pool) -> None:
        for key in [key for key, value in self.pools.items() if value is pool]:
            del self.pools[key]
        await pool.http.aclose()

    async def aclose(self) -> None:
        pools, self.pools = list(self.pools.values()), {}
        for pool in pools:
            await pool.http.aclose()


#: Per event loop (weakly: a closed loop's pools go with it).
_SHARED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopPools] = weakref.WeakKeyDictionary()


def _loop_pools() -> _LoopPools:
    loop = asyncio.get_running_loop()
    pools = _SHARED.get(loop)
    if pools is None:
        pools = _SHARED[loop] = _LoopPools()
    return pools


def shared_http_client(credentials: DbtCloudCredentials) -> httpx.AsyncClient:
    """The process's pooled HTTP client for this event loop and endpoint settings."""
    return _loop_pools().pool(credentials).http


def hold_http_client(credentials: DbtCloudCredentials, holder: object) -> httpx.AsyncClient:
    """The pooled HTTP client, kept open for ``holder`` until :func:`release_http_client`."""
    pool = _loop_pools().pool(credentials)
    pool.holders.add(id(holder))
    pool.orphaned = False
    return pool.http


async def release_http_client(credentials: DbtCloudCredentials, holder: object) -> None:
    """``holder`` is done with the pool; the last holder to leave closes it (after its requests in flight)."""
    pools = _loop_pools()
    pool = pools.pools.get(pool_key(credentials))
    if pool is None or id(holder) not in pool.holders:
        return
    pool.holders.discard(id(holder))
    if not pool.holders:
        pool.orphaned = True
        if not pool.busy:
            await pools.close(pool)


async def close_shared_clients() -> None:
    """Close every pooled client of the running event loop."""
    await _loop_pools().aclose()


class AsyncDbtCloudClient(BaseClient):
    """Async dbt Cloud calls for one account, over the process's pooled HTTP client."""

    def __init__(
        self,
        credentials: CredentialsLike = None,
        *,
        retry: RetryPolicy | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(credentials, retry)
        self._http = http_client

    async def _send_once(self, request: ApiRequest) -> Any:
        wait = self._reserve()
        if wait > 0:
            await asyncio.sleep(wait)
        pooled = _loop_pools().using(self.credentials) if self._http is None else contextlib.nullcontext(self._http)
        async with pooled as http:
            try:
                async with asyncio.timeout(core.answer_deadline(request, self.credentials)):
                    response, body = await self._exchange(http, request)
            except TimeoutError:  # the whole answer's deadline (httpx's own timeouts are TransportErrors)
                raise core.too_slow(request, self.credentials) from None
            except httpx.TransportError as exc:
                tls_failure = isinstance(exc, httpx.ConnectError) and "CERTIFICATE" in str(exc)
                self._no_answer(request, exc, sent=not isinstance(exc, _NOT_SENT), transient=not tls_failure)
        return self._answer(request, response.status_code, response.headers, body)

    async def _exchange(self, http: httpx.AsyncClient, request: ApiRequest) -> tuple[httpx.Response, bytes]:
        """Send ``request`` and read its answer, at most :func:`.core.body_limit` bytes."""
        async with http.stream(
            request.method,
            request.path,
            params=request.params,
            json=request.body,
            headers=self._headers,
            timeout=_timeout(self.credentials),
        ) as response:
            core.check_announced_size(request, response.headers)
            limit, size, chunks = core.body_limit(request), 0, list[bytes]()
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    raise core.too_large(request)
                chunks.append(chunk)
        return response, b"".join(chunks)

    async def send(self, request: ApiRequest, retry: RetryPolicy | None = None) -> Any:
        """Send one request under the retry policy; returns the envelope."""
        async for attempt in tenacity.AsyncRetrying(**self._retrying(request, retry)):
            with attempt:
                return await self._send_once(request)
        raise AssertionError("unreachable")  # pragma: no cover

    get_run = _base.GET_RUN.aio()
    list_runs_page = _base.LIST_RUNS_PAGE.aio()
    cancel_run = _base.CANCEL_RUN.aio()
    get_account = _base.GET_ACCOUNT.aio()
