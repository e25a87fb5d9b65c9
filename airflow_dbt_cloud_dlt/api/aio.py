"""The async transport for the triggerer: httpx, one pooled HTTP client per event loop and endpoint.

The official provider opens a new HTTP session (TCP and TLS handshake) for every poll. Here every
trigger of a process shares one ``httpx.AsyncClient`` per (event loop, host, TLS and proxy settings),
so polls reuse warm connections. The token travels per request, never in the shared client.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import weakref
from collections.abc import Iterable
from typing import Any

import httpx
import tenacity

from . import core
from .core import ApiRequest, RetryPolicy
from .credentials import CredentialsLike, DbtCloudCredentials, resolve_credentials
from .errors import DbtCloudRateLimitError
from .ratelimit import budget_for

_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
#: Per event loop (weakly: a closed loop's clients go with it), per endpoint settings.
_SHARED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[Any, ...], httpx.AsyncClient]] = (
    weakref.WeakKeyDictionary()
)


@functools.lru_cache(maxsize=16)
def _ssl_context(verify: bool | str) -> ssl.SSLContext | bool:
    """One TLS context per setting, shared by every HTTP client: loading a CA bundle takes ~0.2 s."""
    if verify is False:
        return False
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return httpx.create_ssl_context()  # certifi, or SSL_CERT_FILE / SSL_CERT_DIR when set


def new_http_client(credentials: DbtCloudCredentials) -> httpx.AsyncClient:
    """A pooled HTTP client for these endpoint settings (TLS, proxies, timeouts); no token inside."""
    core.warn_if_unverified(credentials)
    verify = (
        ssl.create_default_context(cafile=credentials.verify)
        if isinstance(credentials.verify, str)
        else credentials.verify
    )
    mounts = {
        f"{scheme}://": httpx.AsyncHTTPTransport(proxy=url, verify=verify)
        for scheme, url in (credentials.proxies or {}).items()
    }
    return httpx.AsyncClient(
        base_url=credentials.base_url,
        verify=verify,
        mounts=mounts or None,
        timeout=httpx.Timeout(credentials.timeout, connect=min(core.CONNECT_TIMEOUT, credentials.timeout)),
        limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
        follow_redirects=False,
    )


def shared_http_client(credentials: DbtCloudCredentials) -> httpx.AsyncClient:
    """The process's pooled HTTP client for this event loop and endpoint settings."""
    clients = _SHARED.setdefault(asyncio.get_running_loop(), {})
    key = (
        credentials.base_url,
        str(credentials.verify),
        tuple(sorted((credentials.proxies or {}).items())),
        credentials.timeout,
    )
    client = clients.get(key)
    if client is None or client.is_closed:
        client = clients[key] = new_http_client(credentials)
    return client


async def close_shared_clients() -> None:
    """Close every pooled client of the running event loop (used when the last user leaves)."""
    for client in _SHARED.pop(asyncio.get_running_loop(), {}).values():
        await client.aclose()


class AsyncDbtCloudClient:
    """Async dbt Cloud calls for one account, over the process's pooled HTTP client."""

    def __init__(
        self,
        credentials: CredentialsLike = None,
        *,
        retry: RetryPolicy | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.credentials = resolve_credentials(credentials)
        self._http = http_client
        self.account_id = core.require_account(self.credentials)
        self.retry = retry or RetryPolicy()
        self._budget = budget_for(self.credentials.base_url, self.account_id)
        self._headers = core.auth_headers(self.credentials.api_token)

    async def _send_once(self, request: ApiRequest) -> Any:
        creds = self.credentials
        wait = self._budget.reserve()
        if wait > 0:
            await asyncio.sleep(wait)
        try:
            response = await (self._http or shared_http_client(creds)).request(
                request.method, request.path, params=request.params, json=request.body, headers=self._headers
            )
        except httpx.TransportError as exc:
            tls_failure = isinstance(exc, httpx.ConnectError) and "CERTIFICATE" in str(exc)
            raise core.connection_error(
                request, creds, exc, sent=not isinstance(exc, _NOT_SENT), transient=not tls_failure
            ) from None
        try:
            return core.parse_response(request, response.status_code, response.headers, response.content, creds)
        except DbtCloudRateLimitError as error:
            self._budget.pause(self.retry.capped_retry_after(error))
            raise

    async def send(self, request: ApiRequest, retry: RetryPolicy | None = None) -> Any:
        """Send one request under the retry policy; returns the envelope."""
        async for attempt in tenacity.AsyncRetrying(**(retry or self.retry).tenacity_kwargs(request)):
            with attempt:
                return await self._send_once(request)
        raise AssertionError("unreachable")  # pragma: no cover

    async def get_run(self, run_id: int, include_related: Iterable[str] = ()) -> dict[str, Any]:
        return dict((await self.send(core.get_run(self.account_id, run_id, include_related)))["data"])

    async def list_runs_page(self, **filters: Any) -> list[dict[str, Any]]:
        """One page (at most 100) of runs, e.g. ``pk__in=[...]`` for a batch of known run ids."""
        items, _ = core.page_items(await self.send(core.list_runs(self.account_id, **filters)))
        return items

    async def cancel_run(self, run_id: int) -> dict[str, Any]:
        return dict((await self.send(core.cancel_run(self.account_id, run_id)))["data"])

    async def get_account(self) -> dict[str, Any]:
        return dict((await self.send(core.get_account(self.account_id)))["data"])
