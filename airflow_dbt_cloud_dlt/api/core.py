"""The protocol core shared by the sync and async transports: pure functions, no I/O.

It builds requests (paths with their exact trailing slashes), turns answers into values or typed errors,
and decides what may be retried and after how long.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timezone
from typing import Any

import tenacity

from .._version import __version__
from .credentials import DEFAULT_CAUSE, LEGACY_HOSTS, DbtCloudCredentials, is_loopback, validate_id
from .errors import (
    DbtCloudAuthError,
    DbtCloudBadResponseError,
    DbtCloudConfigError,
    DbtCloudConnectionError,
    DbtCloudError,
    DbtCloudNotFoundError,
    DbtCloudPermissionError,
    DbtCloudRateLimitError,
    DbtCloudServerError,
    DbtCloudValidationError,
)

log = logging.getLogger("airflow_dbt_cloud_dlt")

USER_AGENT = f"airflow-dbt-cloud-dlt/{__version__}"
#: Seconds to open a connection (the credentials' ``timeout`` bounds the whole answer).
CONNECT_TIMEOUT = 10.0
MAX_CAUSE_LENGTH = 255
MAX_PAGE_SIZE = 100
#: A listing stops with an error after this many pages (100,000 items): a server that always answers full
#: pages, or a ``total_count`` that lies, must not keep a listing going forever.
MAX_PAGES = 1000
#: The shortest poll interval of every wait, blocking or deferred (seconds); smaller ones, 0 included, are
#: raised to it (:func:`clamp_poll_interval`). Low enough for tests against the emulator; dbt Cloud itself
#: needs no more than one poll every few seconds.
MIN_POLL_INTERVAL = 0.1
#: The largest JSON answer read (bytes); a larger one is a :class:`DbtCloudBadResponseError`.
MAX_JSON_BYTES = 64 * 1024 * 1024
#: The largest artifact read into memory (bytes).
MAX_ARTIFACT_BYTES = 1024 * 1024 * 1024
#: dbt Cloud's trigger fields and their JSON types (openapi-v2.yaml, TriggerRunRequestRequest).
TRIGGER_FIELD_TYPES: dict[str, type] = {
    "cause": str,
    "git_sha": str,
    "git_branch": str,
    "schema_override": str,
    "dbt_version_override": str,
    "target_name_override": str,
    "threads_override": int,
    "timeout_seconds_override": int,
    "generate_docs_override": bool,
    "steps_override": list,
    "azure_pull_request_id": int,
    "github_pull_request_id": int,
    "gitlab_merge_request_id": int,
    "non_native_pull_request_id": int,
}
Params = tuple[tuple[str, str], ...]
_HTML_TITLE = re.compile(r"<title>(.*?)</title>", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class ApiRequest:
    """One dbt Cloud API call, ready for any transport."""

    method: str
    path: str
    what: str  # for messages, e.g. "run 123"
    params: Params = ()
    body: Mapping[str, Any] | None = None
    raw: bool = False  # the answer is a file (artifacts), not the JSON envelope
    #: the JSON type of the envelope's ``data``: "object", "objects" (a list of objects), "list", or "any"
    expects: str = "any"
    #: a POST whose repetition can do harm (it may start a second dbt Cloud run)
    creates_run: bool = field(default=False)

    @property
    def retry_safe(self) -> bool:
        return not self.creates_run


def clamp_poll_interval(seconds: float) -> float:
    """``seconds``, but at least :data:`MIN_POLL_INTERVAL` (a NaN or infinite interval is an error)."""
    if not math.isfinite(seconds):
        raise DbtCloudConfigError(f"Invalid poll interval {seconds!r}: give a finite number of seconds, such as 10.")
    return max(MIN_POLL_INTERVAL, float(seconds))


def warn_if_unverified(credentials: DbtCloudCredentials) -> None:
    if not credentials.verify:
        log.warning("TLS verification of %s is off: only do this for testing.", credentials.host)


def auth_headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Token {token}", "Accept": "application/json", "User-Agent": USER_AGENT}


def _v2(account_id: int, rest: str = "") -> str:
    return f"/api/v2/accounts/{validate_id(account_id, 'account_id')}/{rest}"


def _params(values: Mapping[str, Any]) -> Params:
    """Query parameters with lists as repeated keys (dbt Cloud's documented array form); None is dropped."""
    pairs: list[tuple[str, str]] = []
    for key, value in values.items():
        if value is None:
            continue
        items = value if isinstance(value, list | tuple | set | frozenset) else [value]
        pairs.extend((key, str(item).lower() if isinstance(item, bool) else str(item)) for item in items)
    return tuple(pairs)


def _related(include_related: Iterable[str]) -> dict[str, str | None]:
    names = ",".join(include_related)
    return {"include_related": names or None}


# --- request builders -------------------------------------------------------------------------------


def build_trigger_body(credentials: DbtCloudCredentials, data: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """dlt's trigger body: cause, ``git_sha`` (which wins over ``git_branch``), ``schema_override``, then
    every key of ``data`` merged over them."""
    body: dict[str, Any] = {"cause": credentials.cause or DEFAULT_CAUSE}
    if credentials.git_sha:
        body["git_sha"] = credentials.git_sha
    elif credentials.git_branch:
        body["git_branch"] = credentials.git_branch
    if credentials.schema_override:
        body["schema_override"] = credentials.schema_override
    body.update(data or {})
    return body


def validate_trigger_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """Check known trigger fields' types before sending, drop unset ones, and cut ``cause`` to 255 chars."""
    clean = {key: value for key, value in body.items() if value is not None}
    for key, value in clean.items():
        expected = TRIGGER_FIELD_TYPES.get(key)
        if expected is None:
            continue  # new API fields pass through; dbt Cloud itself rejects unknown ones with a 400
        ok = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
        if ok and expected is str and not value.strip():
            ok = False
        if ok and expected is list:
            ok = bool(value) and all(isinstance(step, str) and step.strip() for step in value)
        if not ok:
            kind = {str: "a non-empty string", int: "an integer", bool: "true or false"}.get(
                expected, "a non-empty list of dbt commands, such as ['dbt build -s my_model+']"
            )
            raise DbtCloudConfigError(
                f"Invalid trigger field {key!r}: got {type(value).__name__} {value!r}, expected {kind}."
            )
    cause = str(clean.get("cause") or DEFAULT_CAUSE)
    if len(cause) > MAX_CAUSE_LENGTH:
        log.warning("The run cause is %d characters long; dbt Cloud allows 255, so it was cut.", len(cause))
        cause = cause[:MAX_CAUSE_LENGTH]
    clean["cause"] = cause
    return clean


def trigger_job_run(account_id: int, job_id: int, body: Mapping[str, Any]) -> ApiRequest:
    job = validate_id(job_id, "job_id")
    return ApiRequest(
        "POST",
        _v2(account_id, f"jobs/{job}/run/"),
        f"trigger of job {job}",
        body=validate_trigger_body(body),
        creates_run=True,
        expects="object",
    )


def rerun_job(account_id: int, job_id: int) -> ApiRequest:
    job = validate_id(job_id, "job_id")
    return ApiRequest(
        "POST", _v2(account_id, f"jobs/{job}/rerun/"), f"rerun of job {job}", creates_run=True, expects="object"
    )


def get_run(account_id: int, run_id: int, include_related: Iterable[str] = ()) -> ApiRequest:
    run = validate_id(run_id, "run_id")
    return ApiRequest(
        "GET", _v2(account_id, f"runs/{run}/"), f"run {run}", _params(_related(include_related)), expects="object"
    )


def list_runs(
    account_id: int,
    /,
    *,
    limit: int = MAX_PAGE_SIZE,
    offset: int = 0,
    order_by: str = "-id",
    include_related: Iterable[str] = (),
    **filters: Any,
) -> ApiRequest:
    """List runs; list-valued filters (``pk__in``, ``status__in``) are sent as repeated keys."""
    for key in ("job_definition_id", "environment_id", "project_id"):
        if filters.get(key) is not None:
            filters[key] = validate_id(filters[key], key)
    if filters.get("pk__in") is not None:
        filters["pk__in"] = [validate_id(pk, "run_id") for pk in filters["pk__in"]]
    limit = max(1, min(int(limit), MAX_PAGE_SIZE))
    query = {**filters, **_related(include_related), "order_by": order_by, "limit": limit, "offset": offset}
    return ApiRequest("GET", _v2(account_id, "runs/"), "runs", _params(query), expects="objects")


def cancel_run(account_id: int, run_id: int) -> ApiRequest:
    run = validate_id(run_id, "run_id")
    return ApiRequest("POST", _v2(account_id, f"runs/{run}/cancel/"), f"cancel of run {run}", expects="object")


def list_run_artifacts(account_id: int, run_id: int, step: int | None = None) -> ApiRequest:
    run = validate_id(run_id, "run_id")
    return ApiRequest(
        "GET",
        _v2(account_id, f"runs/{run}/artifacts/"),
        f"artifacts of run {run}",
        _params({"step": step}),
        expects="list",
    )


def _artifact_path(path: str) -> str:
    """An artifact's path under ``target/``, checked: no empty, ``.`` or ``..`` part."""
    parts = path.strip("/").split("/")
    if not path.strip("/") or any(part in ("", ".", "..") for part in parts):
        raise DbtCloudConfigError(f"Invalid artifact path {path!r}: give a path such as 'run_results.json'.")
    return "/".join(parts)


def get_run_artifact(account_id: int, run_id: int, path: str, step: int | None = None) -> ApiRequest:
    run = validate_id(run_id, "run_id")
    return ApiRequest(
        "GET",
        _v2(account_id, f"runs/{run}/artifacts/{_artifact_path(path)}"),
        f"artifact {path} of run {run}",
        _params({"step": step}),
        raw=True,
    )


def get_job_artifact(account_id: int, job_id: int, path: str, step: int | None = None) -> ApiRequest:
    """The artifact ``path`` of the job's latest run that has it ("Retrieve Job Artifact"), as raw bytes."""
    job = validate_id(job_id, "job_id")
    return ApiRequest(
        "GET",
        _v2(account_id, f"jobs/{job}/artifacts/{_artifact_path(path)}"),
        f"artifact {path} of the latest run of job {job}",
        _params({"step": step}),
        raw=True,
    )


def get_job(account_id: int, job_id: int) -> ApiRequest:
    job = validate_id(job_id, "job_id")
    return ApiRequest("GET", _v2(account_id, f"jobs/{job}/"), f"job {job}", expects="object")


def list_jobs(account_id: int, *, limit: int = MAX_PAGE_SIZE, offset: int = 0, **filters: Any) -> ApiRequest:
    query = {**filters, "limit": max(1, min(int(limit), MAX_PAGE_SIZE)), "offset": offset}
    return ApiRequest("GET", _v2(account_id, "jobs/"), "jobs", _params(query), expects="objects")


def get_account(account_id: int) -> ApiRequest:
    account = validate_id(account_id, "account_id")
    return ApiRequest("GET", _v2(account), f"account {account}", expects="object")


def list_projects(account_id: int, *, limit: int = MAX_PAGE_SIZE, offset: int = 0, **filters: Any) -> ApiRequest:
    account = validate_id(account_id, "account_id")
    query = {**filters, "limit": max(1, min(int(limit), MAX_PAGE_SIZE)), "offset": offset}
    return ApiRequest("GET", f"/api/v3/accounts/{account}/projects/", "projects", _params(query), expects="objects")


def list_environments(
    account_id: int, project_id: int, *, limit: int = MAX_PAGE_SIZE, offset: int = 0, **filters: Any
) -> ApiRequest:
    account, project = validate_id(account_id, "account_id"), validate_id(project_id, "project_id")
    return ApiRequest(
        "GET",
        f"/api/v3/accounts/{account}/projects/{project}/environments/",
        f"environments of project {project}",
        _params({**filters, "limit": max(1, min(int(limit), MAX_PAGE_SIZE)), "offset": offset}),
        expects="objects",
    )


# --- answers ----------------------------------------------------------------------------------------


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds asked for by ``Retry-After`` (seconds or HTTP-date form) or ``x-rate-limit-retry-after-seconds``."""
    lowered = {key.lower(): value for key, value in headers.items()}
    value = lowered.get("retry-after") or lowered.get("x-rate-limit-retry-after-seconds")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # the asctime form and "-0000" carry no zone: HTTP dates are always UTC
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _server_message(payload: Any) -> str:
    status = payload.get("status") if isinstance(payload, dict) else None
    if isinstance(status, dict):
        parts = [status.get("user_message"), status.get("developer_message")]
        return " ".join(str(p) for p in parts if p)
    if isinstance(payload, dict) and payload.get("detail"):
        return str(payload["detail"])
    return ""


def _snippet(body: bytes) -> str:
    """The start of a body, as one line; an HTML error page is reduced to its title."""
    text = body[:500].decode("utf-8", "replace").strip()
    title = _HTML_TITLE.search(text)
    if title or text.startswith("<"):
        return title.group(1).strip() if title else "an HTML page"
    return " ".join(text.split())[:200]


# --- messages: one sentence each, saying what is wrong and then what to do ---------------------------

#: How much of a transport error's own words a message quotes (cut at a word boundary, never mid-word).
MAX_DETAIL_LENGTH = 160
_VERB = re.compile(r"(trigger|rerun|cancel) of (.+)")
_PART_OF = re.compile(r"(?:artifacts|environments) of (.+)")
_ACCOUNT_LISTS = frozenset({"runs", "jobs", "projects"})
_OBJECT_REPR = re.compile(r"<[^<>]*? object at 0x[0-9a-fA-F]+>:?\s*")
#: What OpenSSL says when an https request meets a plain-http server: the "HTTP/1.1 400" it answers with is
#: not a TLS record. Both transports pass it on in the text of their own error (requests' SSLError, httpx's
#: ConnectError), so it is recognised here rather than in each transport.
_PLAIN_HTTP_SIGNS = ("wrong_version_number", "wrong version number", "record_layer_failure", "packet length too long")
_NOT_FOUND_ADVICE = {
    "account": "check the account id (the connection's login, the number after /deploy/ in dbt Cloud URLs) "
    "and the host",
    "artifact": "check the artifact's path and step, and that the run has finished and produced it",
}


def _action(request: ApiRequest) -> str:
    """What the request asked dbt Cloud to do, as a verb phrase: "trigger job 99", "read run 5"."""
    verb = _VERB.fullmatch(request.what)
    return f"{verb.group(1)} {verb.group(2)}" if verb else f"read {request.what}"


def _missing(request: ApiRequest, account: int | None) -> str:
    """The object that a 404 names as missing: "job 99", "run 5", "account 1"."""
    found = _VERB.fullmatch(request.what) or _PART_OF.fullmatch(request.what)
    if found:
        return found.groups()[-1]
    return f"account {account}" if request.what in _ACCOUNT_LISTS else request.what


def _in_account(account: int | None, phrase: str) -> str:
    """The words "in account N" to follow ``phrase``, or nothing when the phrase is about that account."""
    about_account = phrase.split()[-2:] == ["account", str(account)]
    return "" if account is None or about_account else f" in account {account}"


def _http_status(status: int, said: str) -> str:
    """The status with dbt Cloud's own words: (HTTP 404: "Not found.")."""
    return f'(HTTP {status}: "{said}")' if said else f"(HTTP {status})"


def _expected(error: DbtCloudError) -> DbtCloudError:
    """Mark an error whose message says it all: whatever was being handled when it is raised stays out of the
    traceback (the same as ``raise error from None``, wherever it is raised)."""
    error.__cause__ = None
    error.__suppress_context__ = True
    return error


def error_for_status(
    request: ApiRequest, status: int, headers: Mapping[str, str], body: bytes, credentials: DbtCloudCredentials
) -> DbtCloudError:
    """The typed error for a non-2xx answer: one sentence that says what is wrong, then what to do."""
    payload = load_json(body) if body else None
    said = _server_message(payload) or _snippet(body)
    action, where = _action(request), f"{request.method} {request.path}"
    host, account = credentials.host, credentials.account_id
    kwargs: dict[str, Any] = {"status_code": status, "path": request.path}
    error: DbtCloudError
    if status == 401:
        if host in LEGACY_HOSTS:
            advice = (
                f"the request went to the legacy host {host}, which refuses a valid token of an account that has "
                "its own access URL, so set base_url (the connection's host) to that access URL, such as "
                "ab123.us1.dbt.com (dbt Cloud > Account settings > Access URLs), or else check the token"
            )
        else:
            advice = "check the token (the connection's password): it may be mistyped, revoked or expired"
        error = DbtCloudAuthError(
            f"dbt Cloud refused the API token {_http_status(401, said)} for the request to {action}; {advice}.",
            **kwargs,
        )
    elif status == 403:
        error = DbtCloudPermissionError(
            f"dbt Cloud denied the API token permission to {action}{_in_account(account, action)} "
            f"{_http_status(403, said)}; check that the account id is right (the connection's login, the number "
            "after /deploy/ in dbt Cloud URLs) and that the token's permission set allows this (Job Admin or "
            "Job Runner to trigger runs).",
            **kwargs,
        )
    elif status == 404:
        missing = _missing(request, account)
        kind = missing.split()[0]
        advice = _NOT_FOUND_ADVICE.get(
            kind,
            f"check the {kind} id, the account id (the connection's login) and the host, and that the token may "
            f"see this {kind}",
        )
        error = DbtCloudNotFoundError(
            f"dbt Cloud {missing} was not found{_in_account(account, missing)} {_http_status(404, said)}; {advice}.",
            **kwargs,
        )
    elif status == 400:
        fields = payload.get("data") if isinstance(payload, dict) else None
        detail = json.dumps(fields) if fields else said
        error = DbtCloudValidationError(
            f"dbt Cloud rejected the request to {action} as invalid (HTTP 400: {detail}); fix the fields it names.",
            field_errors=fields if isinstance(fields, dict) else {"detail": fields or said},
            **kwargs,
        )
    elif status == 429:
        wait = retry_after_seconds(headers)
        hint = f"it asked to wait {wait:.0f} s" if wait is not None else "it may impose a cooldown of up to 5 minutes"
        error = DbtCloudRateLimitError(
            f"dbt Cloud rate-limited the request to {action} (HTTP 429) because the account's 5,000 requests per "
            f"minute are used up, and {hint}; poll less often or spread the jobs out.",
            retry_after=wait,
            **kwargs,
        )
    elif 300 <= status < 400:
        error = DbtCloudBadResponseError(
            f"dbt Cloud answered {where} with a redirect (HTTP {status}) to {headers.get('Location', '?')!r}; set "
            "base_url (the connection's host) to your account's access URL.",
            **kwargs,
        )
        error.transient = False  # asking again gets the same redirect
    elif status >= 500:
        error = DbtCloudServerError(
            f"dbt Cloud failed on the request to {action} {_http_status(status, said)}; this is usually "
            "temporary, so try again in a few minutes.",
            **kwargs,
        )
    else:
        error = DbtCloudError(
            f"dbt Cloud answered {where} with {_http_status(status, said)[1:-1]}; check the host and the request.",
            **kwargs,
        )
    return _expected(error)


def load_json(body: bytes) -> Any:
    """The JSON value of ``body``, or None when it is not JSON or nests too deep to read (RecursionError)."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def parse_response(
    request: ApiRequest,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    credentials: DbtCloudCredentials,
) -> Any:
    """The value of a dbt Cloud answer: the whole envelope (JSON calls) or the raw bytes (artifacts).

    An envelope of the wrong shape is a :class:`DbtCloudBadResponseError` (retried like a 5xx where safe).
    """
    if credentials.api_token.encode() in body and not (request.raw and 200 <= status < 300):
        body = body.replace(credentials.api_token.encode(), b"***")  # before any message is cut from it
    if not 200 <= status < 300:
        error = error_for_status(request, status, headers, body, credentials)
        raise _scrubbed(error, credentials.api_token)
    if request.raw:
        return body
    payload = load_json(body)
    if not isinstance(payload, dict) or "data" not in payload:
        raise DbtCloudBadResponseError(  # the body was scrubbed of the token above
            f"dbt Cloud answered the {request.what} with HTTP {status} but not with its JSON envelope "
            f"(got {_snippet(body)!r}). Check that base_url points at the dbt Cloud API.",
            status_code=status,
            path=request.path,
        )
    problem = envelope_problem(payload, request.expects)
    if problem:
        raise _scrubbed(
            DbtCloudBadResponseError(
                f"dbt Cloud answered the {request.what} with HTTP {status} but with a malformed envelope: {problem}. "
                "Check that base_url points at the dbt Cloud API.",
                status_code=status,
                path=request.path,
            ),
            credentials.api_token,
        )
    return payload


def _kind(value: Any) -> str:
    """What a JSON value is, in a few words (scalars shown, cut short; containers never walked)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return f"the number {_clip(repr(value), 20)}"


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


#: Fields of dbt Cloud objects that this package reads, and the JSON types they must have when present.
_NESTED_OBJECTS = ("job", "trigger", "environment", "project")


def _object_problem(item: dict[str, Any], where: str) -> str | None:
    if "id" in item and item["id"] is not None and not _is_id(item["id"]):
        return f"{where}'s id is {_kind(item['id'])}, not a positive whole number"
    steps = item.get("run_steps")
    if steps is not None and not (isinstance(steps, list) and all(isinstance(step, dict) for step in steps)):
        return f"{where}'s run_steps is {_kind(steps)}, not a list of objects"
    for name in _NESTED_OBJECTS:
        if item.get(name) is not None and not isinstance(item[name], dict):
            return f"{where}'s {name} is {_kind(item[name])}, not an object"
    return None


def envelope_problem(envelope: Mapping[str, Any], expects: str = "any") -> str | None:
    """What is wrong with the shape of an envelope (``data``, ``extra``, ids, steps), or None.

    ``expects`` is the JSON type of ``data``: "object", "objects" (a list of objects), "list" or "any".
    """
    data = envelope.get("data")
    wanted = {"object": (dict,), "objects": (list, type(None)), "list": (list, type(None))}.get(
        expects, (dict, list, type(None))
    )
    if not isinstance(data, wanted):
        noun = {"object": "an object", "objects": "a list of objects", "list": "a list"}.get(
            expects, "an object or a list"
        )
        return f"data is {_kind(data)}, not {noun}"
    for position, item in enumerate([data] if isinstance(data, dict) else data or []):
        where = "the object" if isinstance(data, dict) else f"item {position}"
        if isinstance(item, dict):
            problem = _object_problem(item, where)
            if problem:
                return problem
        elif expects == "objects":
            return f"{where} of data is {_kind(item)}, not an object"
    try:
        page_total(envelope)
    except DbtCloudBadResponseError as error:
        return error.message
    return None


def page_total(envelope: Mapping[str, Any]) -> int | None:
    """The ``extra.pagination.total_count`` of a list page, or None when dbt Cloud left it out."""
    extra = envelope.get("extra")
    pagination = extra.get("pagination") if isinstance(extra, dict) else None
    total = pagination.get("total_count") if isinstance(pagination, dict) else None
    if extra is not None and not isinstance(extra, dict):
        problem = f"extra is {_kind(extra)}, not an object"
    elif isinstance(extra, dict) and extra.get("pagination") is not None and not isinstance(pagination, dict):
        problem = f"extra.pagination is {_kind(pagination)}, not an object"
    elif total is None or (isinstance(total, int) and not isinstance(total, bool) and total >= 0):
        return total
    elif isinstance(total, str) and total.strip().isdigit() and total.isascii():
        return int(total)
    else:
        problem = f"total_count is {_kind(total)}, not a whole number"
    raise DbtCloudBadResponseError(problem)


def _scrubbed(error: DbtCloudError, token: str) -> DbtCloudError:
    """Make sure no echo of the token survives in a message built from a server's answer."""
    if token and token in error.message:
        error.message = error.message.replace(token, "***")
        error.args = (error.message,)
    return error


def _exception_chain(exc: BaseException) -> list[BaseException]:
    """A transport error and the errors it wraps, outermost first (urllib3's ``reason``, ``args``, causes)."""
    chain, current = [exc], exc
    while len(chain) < 10:
        inner = getattr(current, "reason", None)
        if not isinstance(inner, BaseException):
            inner = next((arg for arg in current.args if isinstance(arg, BaseException)), None)
        if inner is None:
            inner = current.__cause__ or current.__context__
        if inner is None or any(inner is seen for seen in chain):
            break
        chain.append(inner)
        current = inner
    return chain


def _clip(text: str, limit: int) -> str:
    """``text`` cut to about ``limit`` characters at a word boundary, with an ellipsis when it was cut."""
    if len(text) <= limit:
        return text
    head = text[: limit + 1]
    cut = head.rsplit(" ", 1)[0] if " " in head else text[:limit]
    return cut.rstrip(" ,;:(") + "…"


def _answered_plain_http(chain: list[BaseException]) -> bool:
    text = " ".join(f"{type(error).__name__} {error}" for error in chain).lower()
    return any(sign in text for sign in _PLAIN_HTTP_SIGNS)


def connection_error(
    request: ApiRequest, credentials: DbtCloudCredentials, exc: BaseException, *, sent: bool, transient: bool = True
) -> DbtCloudConnectionError:
    """The error for a request that got no answer: one sentence with the innermost reason and what to do."""
    chain, action, host = _exception_chain(exc), _action(request), credentials.host
    if credentials.base_url.startswith("https://") and _answered_plain_http(chain):
        if is_loopback(host):
            advice = f"use {'http://' + credentials.base_url.removeprefix('https://')!r} as the host"
        else:
            advice = (
                "check the host and port: dbt Cloud answers https only, and plain http, which would send the "
                "token unencrypted, is allowed only to loopback addresses"
            )
        message = (
            f"The server at {credentials.base_url} answered plain http, not https, to the request to {action}; "
            f"{advice}."
        )
        sent, transient = False, False  # the TLS handshake failed, so no request went out; asking again cannot help
    else:
        inner = next((error for error in reversed(chain) if str(error).strip()), exc)
        detail = _clip(" ".join(_OBJECT_REPR.sub("", str(inner)).split()), MAX_DETAIL_LENGTH)
        if not transient:
            advice = (
                "check the TLS settings: set verify to the path of a CA bundle for a private certificate "
                "authority (or to false, for testing only)"
            )
        elif sent:
            advice = f"check the network and the timeout ({credentials.timeout:g} s), since the request may have reached dbt Cloud"
        else:
            advice = f"check the host {host!r} and the network (proxies, firewall)"
        message = (
            f"No answer from dbt Cloud at {credentials.base_url} to the request to {action} "
            f"({type(exc).__name__}: {detail}); {advice}."
        )
    error = DbtCloudConnectionError(message, request_sent=sent, path=request.path)
    error.transient = transient
    return _scrubbed(_expected(error), credentials.api_token)  # type: ignore[return-value]


def body_limit(request: ApiRequest) -> int:
    """The most bytes of an answer to ``request`` that are read."""
    return MAX_ARTIFACT_BYTES if request.raw else MAX_JSON_BYTES


def answer_deadline(request: ApiRequest, credentials: DbtCloudCredentials) -> float | None:
    """Seconds that the whole answer to ``request`` may take: the credentials' timeout for JSON calls, none for
    artifacts (each read of an artifact still has the timeout)."""
    return None if request.raw else credentials.timeout


def too_large(request: ApiRequest, size: int | None = None) -> DbtCloudBadResponseError:
    """The error for an answer larger than :func:`body_limit`; asking again gets the same answer."""
    limit = body_limit(request)
    said = f" ({size:,} bytes announced)" if size is not None else ""
    error = DbtCloudBadResponseError(
        f"dbt Cloud's answer to the request to {_action(request)} is larger than {limit // 2**20} MiB{said}, the most "
        "this package reads; check that base_url points at the dbt Cloud API, and narrow the request.",
        path=request.path,
    )
    error.transient = False
    return error


def too_slow(request: ApiRequest, credentials: DbtCloudCredentials) -> DbtCloudConnectionError:
    """The error for an answer that did not arrive whole within :func:`answer_deadline`."""
    late = TimeoutError(f"the whole answer took longer than {credentials.timeout:g} s")
    return connection_error(request, credentials, late, sent=True)


def check_announced_size(request: ApiRequest, headers: Mapping[str, str]) -> None:
    """Refuse an answer whose ``Content-Length`` is already over :func:`body_limit`, before reading it."""
    declared = str(headers.get("Content-Length") or "").strip()
    if declared.isdigit() and declared.isascii() and int(declared) > body_limit(request):
        raise too_large(request, int(declared))


# --- retries ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """When a failed request is sent again, and after how long.

    Requests that read (GET) and cancels are retried on connection errors, timeouts, 429, 5xx and non-JSON
    answers, with exponential backoff and jitter; ``Retry-After`` wins when the server sends it, up to
    ``max_retry_after``. A trigger POST is retried only when it certainly did not start a run: on 429, or
    when the connection could not even be opened.
    """

    max_attempts: int = 5
    initial_wait: float = 1.0
    max_wait: float = 30.0
    max_retry_after: float = 300.0
    #: Log a warning before each retry (the shared poller, which reports per run instead, turns it off).
    log_retries: bool = True

    def should_retry(self, request: ApiRequest, error: BaseException) -> bool:
        if not isinstance(error, DbtCloudError) or not error.transient:
            return False
        if request.retry_safe:
            return True
        if isinstance(error, DbtCloudRateLimitError):
            return True
        return isinstance(error, DbtCloudConnectionError) and not error.request_sent

    def capped_retry_after(self, error: DbtCloudRateLimitError) -> float | None:
        """The server's ``Retry-After``, but never more than ``max_retry_after``."""
        return None if error.retry_after is None else min(error.retry_after, self.max_retry_after)

    def wait_seconds(self, attempt: int, error: BaseException | None) -> float:
        if isinstance(error, DbtCloudRateLimitError) and error.retry_after is not None:
            return min(error.retry_after, self.max_retry_after)
        backoff = tenacity.wait_exponential_jitter(
            initial=self.initial_wait, max=self.max_wait, jitter=self.initial_wait
        )
        return float(backoff(_AttemptState(attempt)))  # type: ignore[arg-type]

    def tenacity_kwargs(self, request: ApiRequest) -> dict[str, Any]:
        """Arguments for ``tenacity.Retrying`` and ``tenacity.AsyncRetrying``: one policy for both transports."""

        def wait(state: tenacity.RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            return self.wait_seconds(state.attempt_number, error)

        def before_sleep(state: tenacity.RetryCallState) -> None:
            if not self.log_retries:
                return
            error = state.outcome.exception() if state.outcome else None
            log.warning(
                "%s Retrying in %.1f s (attempt %d of %d).",
                error,
                state.upcoming_sleep,
                state.attempt_number + 1,
                self.max_attempts,
            )

        return {
            "retry": tenacity.retry_if_exception(lambda error: self.should_retry(request, error)),
            "wait": wait,
            "stop": tenacity.stop_after_attempt(self.max_attempts),
            "before_sleep": before_sleep,
            "reraise": True,
        }


@dataclass(frozen=True)
class _AttemptState:
    attempt_number: int


def page_items(envelope: Mapping[str, Any]) -> tuple[list[Any], int | None]:
    """The items of one list page and the total count that dbt Cloud reports (typed errors if malformed)."""
    if not isinstance(envelope, Mapping):
        raise DbtCloudBadResponseError(f"dbt Cloud answered a list request with {_kind(envelope)}, not an envelope.")
    items = envelope.get("data")
    if items is not None and not isinstance(items, list):
        raise DbtCloudBadResponseError(f"dbt Cloud answered a list request with data of {_kind(items)}, not a list.")
    try:
        total = page_total(envelope)
    except DbtCloudBadResponseError as error:
        raise DbtCloudBadResponseError(f"dbt Cloud answered a list request with a malformed page: {error}.") from None
    return list(items or []), total


@dataclass
class PageWalk:
    """A paged listing under way: :meth:`take` reads one page, and says (``done``) when to stop.

    It stops on a short or empty page, when ``total_count`` is reached, when a page repeats ids already seen
    (a server that ignores ``offset``), and after ``limit`` items; after ``max_pages`` full pages it raises
    a :class:`DbtCloudBadResponseError`, so no answer can keep a listing going forever.
    """

    what: str
    limit: int | None = None
    page_size: int = MAX_PAGE_SIZE
    max_pages: int | None = None  # None: MAX_PAGES
    offset: int = 0
    pages: int = 0
    taken: int = 0
    done: bool = False
    _seen: set[Any] = field(default_factory=set, repr=False)

    def take(self, envelope: Mapping[str, Any]) -> list[Any]:
        """The new items of one page (repeats dropped, cut to ``limit``); sets ``done`` and ``offset``."""
        items, total = page_items(envelope)
        self.pages += 1
        fresh, repeated = [], False
        for item in items:
            key = item.get("id") if isinstance(item, dict) else None
            if key is not None and not isinstance(key, dict | list):
                if key in self._seen:
                    repeated = True
                    continue
                self._seen.add(key)
            fresh.append(item)
        if self.limit is not None:
            fresh = fresh[: max(0, self.limit - self.taken)]
        self.taken += len(fresh)
        self.offset += len(items)
        if repeated:
            log.warning(
                "dbt Cloud listed %s again that it had listed before (page %d); the listing stops there.",
                self.what,
                self.pages,
            )
        self.done = (
            repeated
            or len(items) < self.page_size
            or (total is not None and self.offset >= total)
            or (self.limit is not None and self.taken >= self.limit)
        )
        if not self.done and self.pages >= (self.max_pages or MAX_PAGES):
            error = DbtCloudBadResponseError(
                f"dbt Cloud kept answering full pages of {self.what}: the listing stopped after {self.pages} pages "
                f"({self.offset} items), the most this package reads; narrow it with filters."
            )
            error.transient = False
            raise error
        return fresh


def require_account(credentials: DbtCloudCredentials) -> int:
    if credentials.account_id is None:
        raise DbtCloudConfigError(
            "No dbt Cloud account id: pass account_id in the credentials, set DBT_CLOUD__ACCOUNT_ID, or set the "
            "Airflow connection's login. It is the number after /deploy/ in dbt Cloud URLs."
        )
    return credentials.account_id
