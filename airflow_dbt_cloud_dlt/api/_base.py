"""What the sync and async transports share: the client base and the endpoints, each declared once.

:class:`BaseClient` holds the credentials, the retry policy and the account's rate budget, and turns an
answer into a value or a typed error (:meth:`BaseClient._answer`), or the lack of one into a
:class:`~.errors.DbtCloudConnectionError` (:meth:`BaseClient._no_answer`). A transport only moves bytes.
An :class:`Endpoint` pairs a request builder of :mod:`.core` with what the caller gets from the answer;
each client class picks its methods from it with :meth:`Endpoint.sync` or :meth:`Endpoint.aio`.
"""

from __future__ import annotations

import http.cookiejar
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Mapping
from typing import Any, Concatenate, Generic, NoReturn, ParamSpec, Protocol, TypeVar

from . import core
from .core import ApiRequest, RetryPolicy
from .credentials import CredentialsLike, DbtCloudCredentials, resolve_credentials
from .errors import DbtCloudBadResponseError, DbtCloudRateLimitError
from .ratelimit import budget_for

P = ParamSpec("P")
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
#: What one connection pool serves: the host, the TLS setting and the proxies (never the token).
PoolKey = tuple[str, str, tuple[tuple[str, str], ...]]


def pool_key(credentials: DbtCloudCredentials) -> PoolKey:
    """The connection pool these credentials may share with others of the process."""
    return credentials.base_url, str(credentials.verify), tuple(sorted((credentials.proxies or {}).items()))


def no_cookies() -> http.cookiejar.DefaultCookiePolicy:
    """A cookie policy that keeps nothing: a shared pool serves many tokens, and none may see another's cookies."""
    return http.cookiejar.DefaultCookiePolicy(allowed_domains=[])


class BaseClient:
    """One account's credentials, retry policy and rate budget; answers become values or typed errors."""

    def __init__(self, credentials: CredentialsLike = None, retry: RetryPolicy | None = None) -> None:
        self.credentials: DbtCloudCredentials = resolve_credentials(credentials)
        self.account_id = core.require_account(self.credentials)
        self.retry = retry or RetryPolicy()
        self._budget = budget_for(self.credentials.base_url, self.account_id)
        self._headers = core.auth_headers(self.credentials.api_token)  # per request: pools never hold the token

    def _reserve(self) -> float:
        """Take one request from the account's budget; the seconds to wait before sending it."""
        return self._budget.reserve()

    def _retrying(self, request: ApiRequest, retry: RetryPolicy | None = None) -> dict[str, Any]:
        """``tenacity.Retrying`` / ``AsyncRetrying`` arguments for this request."""
        return (retry or self.retry).tenacity_kwargs(request)

    def _answer(self, request: ApiRequest, status: int, headers: Mapping[str, str], body: bytes) -> Any:
        """The value of an answer, or its typed error; a 429 pauses the whole account first."""
        try:
            return core.parse_response(request, status, headers, body, self.credentials)
        except DbtCloudRateLimitError as error:
            self._budget.pause(self.retry.capped_retry_after(error))
            raise

    def _no_answer(self, request: ApiRequest, exc: BaseException, *, sent: bool, transient: bool = True) -> NoReturn:
        """Raise the connection error for a request that got no answer."""
        raise core.connection_error(request, self.credentials, exc, sent=sent, transient=transient) from None


class _Sends(Protocol):
    account_id: int

    def send(self, request: ApiRequest) -> Any: ...


class _SendsAsync(Protocol):
    account_id: int

    async def send(self, request: ApiRequest) -> Any: ...


class Endpoint(Generic[P, T]):
    """A request builder of :mod:`.core` (its first argument the account id) and the shape of its value."""

    def __init__(
        self, build: Callable[Concatenate[int, P], ApiRequest], shape: Callable[[Any], T], doc: str = ""
    ) -> None:
        self.build, self.shape, self.doc = build, shape, doc

    def sync(self) -> Callable[Concatenate[_Sends, P], T]:
        """The method of a client whose ``send`` blocks."""

        def call(client: _Sends, /, *args: P.args, **kwargs: P.kwargs) -> T:
            return self.shape(client.send(self.build(client.account_id, *args, **kwargs)))

        return self._described(call)

    def aio(self) -> Callable[Concatenate[_SendsAsync, P], Coroutine[Any, Any, T]]:
        """The method of a client whose ``send`` is a coroutine."""

        async def call(client: _SendsAsync, /, *args: P.args, **kwargs: P.kwargs) -> T:
            return self.shape(await client.send(self.build(client.account_id, *args, **kwargs)))

        return self._described(call)

    def _described(self, call: F) -> F:
        """``call`` with the builder's name and signature (``self`` in place of the account id) and the doc."""
        signature = inspect.signature(self.build)
        self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
        call.__name__ = call.__qualname__ = self.build.__name__
        call.__doc__ = self.doc or None
        call.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[self_param, *list(signature.parameters.values())[1:]],
            return_annotation=inspect.signature(self.shape).return_annotation,
        )
        return call


def data(envelope: Any) -> dict[str, Any]:
    """The envelope's ``data`` object (a typed error when it is anything else)."""
    value = envelope.get("data") if isinstance(envelope, dict) else None
    if not isinstance(value, dict):
        raise DbtCloudBadResponseError("dbt Cloud answered with a malformed envelope: data is not an object.")
    return dict(value)


def data_list(envelope: Any) -> list[Any]:
    """The envelope's ``data`` list (null counts as empty; a typed error for anything else)."""
    value = envelope.get("data") if isinstance(envelope, dict) else None
    if not isinstance(value, list | None):
        raise DbtCloudBadResponseError("dbt Cloud answered with a malformed envelope: data is not a list.")
    return list(value or [])


def page(envelope: Any) -> list[dict[str, Any]]:
    return core.page_items(envelope)[0]


def raw(answer: Any) -> bytes:
    return bytes(answer)


def paginate(
    fetch: Callable[[int], Any], what: str, *, limit: int | None = None, page_size: int = core.MAX_PAGE_SIZE
) -> Iterator[Any]:
    """The items of a paged listing: ``fetch(offset)`` returns one page's envelope (see :class:`.core.PageWalk`
    for when it stops). Every listing of the sync client goes through here."""
    walk = core.PageWalk(what, limit=limit, page_size=page_size)
    while not walk.done:
        yield from walk.take(fetch(walk.offset))


async def apaginate(
    fetch: Callable[[int], Awaitable[Any]],
    what: str,
    *,
    limit: int | None = None,
    page_size: int = core.MAX_PAGE_SIZE,
) -> AsyncIterator[Any]:
    """:func:`paginate` for an async ``fetch``."""
    walk = core.PageWalk(what, limit=limit, page_size=page_size)
    while not walk.done:
        for item in walk.take(await fetch(walk.offset)):
            yield item


# --- the endpoints that both transports, or one of them, offer --------------------------------------

TRIGGER_JOB_RUN = Endpoint(
    core.trigger_job_run, data, "Start a run of a job. Never retried once the request may have reached dbt Cloud."
)
RERUN_JOB = Endpoint(
    core.rerun_job, data, "Rerun a job from its point of failure (a plain new run when its last run did not fail)."
)
GET_RUN = Endpoint(core.get_run, data, "A run, with the related objects named in ``include_related``.")
LIST_RUNS_PAGE = Endpoint(
    core.list_runs, page, "One page (at most 100) of runs, e.g. ``pk__in=[...]`` for a batch of known run ids."
)
CANCEL_RUN = Endpoint(core.cancel_run, data, "Cancel a run; the answer is the run as it is now.")
LIST_RUN_ARTIFACTS = Endpoint(core.list_run_artifacts, data_list, "The paths of a run's artifacts.")
GET_RUN_ARTIFACT = Endpoint(core.get_run_artifact, raw, "One artifact of a run, as bytes.")
GET_JOB = Endpoint(core.get_job, data, "A job definition.")
GET_ACCOUNT = Endpoint(core.get_account, data, "The account of these credentials.")
