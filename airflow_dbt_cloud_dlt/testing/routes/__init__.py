"""The API routes, one module per resource, and how a request finds its handler: routing (404, or 308 to
the slashed path), authentication (401, 403), the method (405), then the handler under the state's lock."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import SplitResult

from airflow_dbt_cloud_dlt.testing import _api as api
from airflow_dbt_cloud_dlt.testing._api import ApiError, Json
from airflow_dbt_cloud_dlt.testing._http import Handler, Streamed
from airflow_dbt_cloud_dlt.testing.faults import Answer
from airflow_dbt_cloud_dlt.testing.routes import accounts, artifacts, jobs, runs
from airflow_dbt_cloud_dlt.testing.routes.base import Handler as RouteHandler
from airflow_dbt_cloud_dlt.testing.routes.base import Request
from airflow_dbt_cloud_dlt.testing.state import EmulatorState


@dataclass(frozen=True)
class Route:
    pattern: re.Pattern[str]
    template: str
    method: str
    handler: RouteHandler


def _pattern(template: str) -> re.Pattern[str]:
    """``{name}`` matches an integer path segment, ``{path}`` the rest of the path (artifact names)."""
    return re.compile(
        re.sub(r"\{(\w+)\}", lambda m: "(?P<path>.+)" if m[1] == "path" else rf"(?P<{m[1]}>\d+)", template)
    )


ROUTES = [
    Route(_pattern(template), template, method, handler)
    for module in (accounts, jobs, runs, artifacts)
    for template, method, handler in module.ROUTES
]


def answer(
    state: EmulatorState, h: Handler, url: SplitResult, query: dict[str, list[str]], body: bytes, rec: Json
) -> Answer:
    """Route an API request and run its handler; ``rec["template"]`` gets the matched route."""
    method = h.command
    try:
        for route in ROUTES:
            match = route.pattern.fullmatch(url.path)
            if match:
                break
        else:
            if not url.path.endswith("/") and any(r.pattern.fullmatch(url.path + "/") for r in ROUTES):
                return 308, b"", {"Location": url.path + "/" + (f"?{url.query}" if url.query else "")}
            raise api.not_found()
        rec["template"] = route.template
        allowed = state.authenticate(h.headers.get("Authorization", ""))
        params = {k: v if k == "path" else int(v) for k, v in match.groupdict().items()}
        if "account" in params and params["account"] not in allowed:
            raise api.forbidden()
        if method != route.method:
            raise ApiError(405, {"detail": f'Method "{method}" not allowed.'})
        with state.lock:
            result = route.handler(state, Request(params, query, body, h.headers.get("Content-Type", ""), allowed))
        if isinstance(result, bytes | Streamed):  # a raw artifact file
            return 200, result, {"Content-Type": "application/json"}
        return 200, result, {}
    except ApiError as err:
        return err.status, err.body, err.headers
