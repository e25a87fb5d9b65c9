"""The request log: every API request the emulator answered (control routes excluded), with counts per
method and route template, so tests and benchmarks can assert on traffic."""

from __future__ import annotations

import re
import threading
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

from airflow_dbt_cloud_dlt.testing._api import Json


@dataclass(frozen=True)
class RequestRecord:
    """One API request as the emulator saw it (``status`` 0: the connection was reset, no answer)."""

    method: str
    path: str
    query: dict[str, list[str]]
    status: int
    account_id: int | None
    body: dict[str, Any] | None
    headers: dict[str, str]  # Authorization is "REDACTED"
    time: float
    fault: str | None
    template: str | None = None  # the matched route, e.g. "/api/v2/accounts/{account}/runs/{run}/"


class RequestLog:
    """A bounded, thread-safe log of :class:`RequestRecord` plus unbounded per-route counts."""

    def __init__(self, max_records: int) -> None:
        self._lock = threading.Lock()
        self._records: deque[RequestRecord] = deque(maxlen=max_records)
        self._counts: Counter[str] = Counter()

    def add(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)
            template = record.template or re.sub(r"/\d+", "/{id}", record.path)
            self._counts[f"{record.method} {template}"] += 1

    def snapshot(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
            self._counts.clear()

    def summary(self) -> Json:
        """``{"total": n, "by_method_path_template": {"GET /api/v2/accounts/{account}/runs/{run}/": n}}``."""
        with self._lock:
            return {"total": sum(self._counts.values()), "by_method_path_template": dict(self._counts)}
