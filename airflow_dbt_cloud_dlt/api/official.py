"""What the official provider's hook methods need beyond ``core``: three request builders, list pages that
follow ``extra.pagination``, and the ``requests.Response`` values that those methods return.

Every request still goes through :meth:`DbtCloudClient.send`: its retries, ``Retry-After`` handling and
rate budget. Nothing here opens a connection.
"""

from __future__ import annotations

import dataclasses
import json
import mimetypes
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import core
from .core import ApiRequest, RetryPolicy
from .credentials import validate_id
from .errors import DbtCloudConfigError, DbtCloudRateLimitError

if TYPE_CHECKING:
    import requests

    from .client import DbtCloudClient

# --- request builders that core does not have ---------------------------------------------------------


def list_accounts() -> ApiRequest:
    """``GET /api/v2/accounts/``: the accounts that the token may use."""
    return ApiRequest("GET", "/api/v2/accounts/", "accounts")


def get_project(account_id: int, project_id: int) -> ApiRequest:
    account, project = validate_id(account_id, "account_id"), validate_id(project_id, "project_id")
    return ApiRequest("GET", f"/api/v3/accounts/{account}/projects/{project}/", f"project {project}")


def get_environment(account_id: int, project_id: int, environment_id: int) -> ApiRequest:
    account, project = validate_id(account_id, "account_id"), validate_id(project_id, "project_id")
    environment = validate_id(environment_id, "environment_id")
    return ApiRequest(
        "GET",
        f"/api/v3/accounts/{account}/projects/{project}/environments/{environment}/",
        f"environment {environment}",
    )


def related(include_related: Iterable[str] | str | None) -> tuple[str, ...]:
    """``include_related`` as names; a single name given as a string is accepted."""
    if include_related is None:
        return ()
    if isinstance(include_related, str):
        return tuple(name.strip() for name in include_related.split(",") if name.strip())
    names = tuple(include_related)
    if not all(isinstance(name, str) for name in names):
        raise DbtCloudConfigError(
            f"Invalid include_related {include_related!r}: give a list of names, such as ['job', 'run_steps']."
        )
    return names


def optional_step(step: Any) -> int | None:
    """An artifact ``step`` (1 is the run's first step), or None for the last step."""
    return None if step is None else validate_id(step, "step")


def artifact_request(account_id: int, run_id: int, path: str, step: int | None) -> ApiRequest:
    """``core.get_run_artifact``, described so that a 404 names the run, the step and the path."""
    request = core.get_run_artifact(account_id, run_id, path, step)
    where = f"step {step}" if step is not None else "its last step"
    return dataclasses.replace(request, what=f"artifact {path!r} of run {validate_id(run_id, 'run_id')} at {where}")


def find_job(client: DbtCloudClient, project_name: str, environment_name: str, job_name: str) -> dict[str, Any]:
    """The one job with exactly these project, environment and job names (names compared as dbt Cloud shows
    them). None or several: a :class:`DbtCloudLookupError` that names the candidates with their ids."""
    for name, value in (("project_name", project_name), ("environment_name", environment_name), ("job_name", job_name)):
        if not isinstance(value, str) or not value.strip():
            raise DbtCloudConfigError(f"Invalid {name} {value!r}: give the name as dbt Cloud shows it.")
    project = _exactly_one(client.list_projects(name__icontains=project_name), "project", project_name, "")
    where = f" in project {project_name!r}"
    environment = _exactly_one(
        client.list_environments(project["id"], name__icontains=environment_name),
        "environment",
        environment_name,
        where,
    )
    jobs = client.list_jobs(project_id=project["id"], environment_id=environment["id"], name__icontains=job_name)
    return _exactly_one(jobs, "job", job_name, f" in environment {environment_name!r}{where}")


class DbtCloudLookupError(DbtCloudConfigError):
    """A lookup by name found no object, or more than one."""


def _exactly_one(items: list[dict[str, Any]], kind: str, name: str, where: str) -> dict[str, Any]:
    matches = [item for item in items if item.get("name") == name]
    if len(matches) == 1:
        return matches[0]
    if matches:
        ids = ", ".join(str(item.get("id")) for item in matches)
        raise DbtCloudLookupError(
            f"{len(matches)} dbt Cloud {kind}s are named exactly {name!r}{where} (ids {ids}); rename all but one "
            f"in dbt Cloud, or pass the {kind}'s id instead."
        )
    close = ", ".join(f"{item.get('name')!r} (id {item.get('id')})" for item in items[:20]) or "none"
    raise DbtCloudLookupError(
        f"No dbt Cloud {kind} is named exactly {name!r}{where} (names that contain it: {close}); check the name "
        f"and its case, or pass the {kind}'s id instead."
    )


# --- pages and responses ------------------------------------------------------------------------------


def pages(client: DbtCloudClient, build: Callable[[int], ApiRequest]) -> Iterator[dict[str, Any]]:
    """Every page's envelope of a list endpoint; ``build(offset)`` makes the request for one page.

    It follows ``extra.pagination`` and ends as every listing of this package does (:class:`.core.PageWalk`):
    on a short or empty page, at ``total_count``, on repeated ids, or with an error after too many pages.
    """
    walk = core.PageWalk("items")
    while not walk.done:
        envelope = client.send(build(walk.offset))
        walk.take(envelope)
        yield envelope


def as_response(client: DbtCloudClient, request: ApiRequest, value: Any) -> requests.Response:
    """A ``requests.Response`` for an answer that :meth:`DbtCloudClient.send` has already checked and parsed.

    Its status is 200 and its body the JSON envelope (or the artifact's bytes), so ``.json()``, ``.text``,
    ``.content``, ``.ok`` and ``.raise_for_status()`` behave as on the official hook's answers. Of the
    headers, only ``Content-Type`` is set (from the artifact's name for files). The URL holds no token.
    """
    import requests  # loaded already by the client that answered; not at DAG parsing, which imports this module
    from requests.structures import CaseInsensitiveDict

    response = requests.Response()
    response.status_code = 200
    response.reason = "OK"
    response._content = value if isinstance(value, bytes) else json.dumps(value).encode()
    response.encoding = None if isinstance(value, bytes) else "utf-8"
    kind = "application/json" if not isinstance(value, bytes) else mimetypes.guess_type(request.path)[0]
    response.headers = CaseInsensitiveDict({"Content-Type": kind or "application/octet-stream"})
    query = "&".join(f"{key}={val}" for key, val in request.params)
    response.url = client.credentials.base_url + request.path + (f"?{query}" if query else "")
    return response


# --- the official constructor's retry settings --------------------------------------------------------


def retry_policy(retry_limit: int, retry_delay: float, retry_args: Mapping[str, Any] | None) -> RetryPolicy:
    """This package's retry policy under the official hook's ``retry_limit``, ``retry_delay`` and ``retry_args``
    (checked by the hook).

    ``retry_limit`` (attempts in all) can only raise the default of 5: the official default of 1 lets one
    network blip fail the task. ``retry_delay`` is the first backoff. ``stop`` and ``wait`` in ``retry_args``
    replace the policy's own, as the official hook uses them; what may be retried (never a trigger that may
    have started a run) and ``Retry-After`` stay this package's.
    """
    base = RetryPolicy()
    overrides = {key: retry_args[key] for key in ("stop", "wait") if retry_args and key in retry_args}
    return TenacityOverrides(
        max_attempts=max(retry_limit, base.max_attempts),
        initial_wait=float(retry_delay),
        max_wait=max(base.max_wait, float(retry_delay)),
        overrides=tuple(overrides.items()),
    )


@dataclass(frozen=True)
class TenacityOverrides(RetryPolicy):
    """A :class:`RetryPolicy` whose tenacity ``stop`` and ``wait`` may come from the caller's ``retry_args``."""

    overrides: tuple[tuple[str, Any], ...] = ()

    def tenacity_kwargs(self, request: ApiRequest) -> dict[str, Any]:
        kwargs = super().tenacity_kwargs(request)
        given = dict(self.overrides)
        if "stop" in given:
            kwargs["stop"] = given["stop"]
        if "wait" in given:
            own_wait = given["wait"]

            def wait(state: Any) -> float:  # a server's Retry-After still wins over the caller's backoff
                error = state.outcome.exception() if state.outcome else None
                if isinstance(error, DbtCloudRateLimitError) and error.retry_after is not None:
                    return min(error.retry_after, self.max_retry_after)
                return float(own_wait(state))

            kwargs["wait"] = wait
        return kwargs


__all__ = [
    "TenacityOverrides",
    "as_response",
    "get_environment",
    "get_project",
    "list_accounts",
    "optional_step",
    "pages",
    "related",
    "retry_policy",
]
