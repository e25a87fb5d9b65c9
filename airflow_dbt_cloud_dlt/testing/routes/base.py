"""What every API route handler receives and returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from airflow_dbt_cloud_dlt.testing import _api as api
from airflow_dbt_cloud_dlt.testing.state import EmulatorState

INCLUDE = api.params(include="include_related")


def list_filters(spec: str) -> dict[str, str]:
    """A list endpoint's query parameters: paging plus ``"kind: name name; kind: name"`` (see ``api.params``)."""
    kinds = (part.split(":") for part in spec.split(";"))
    return api.params(api.PAGING, **{kind.strip(): names for kind, names in kinds})


@dataclass(frozen=True)
class Request:
    """An authenticated API request, as a handler sees it."""

    params: dict[str, Any]  # int path parameters (and "path" for artifacts)
    query: dict[str, list[str]]
    body: bytes
    ctype: str
    accounts: set[int]  # accounts the token may use

    @property
    def account(self) -> int:
        return int(self.params["account"])


Handler = Callable[[EmulatorState, Request], Any]  # a JSON envelope, or bytes for a raw artifact file
Routes = list[tuple[str, str, Handler]]  # (path template, method, handler)
