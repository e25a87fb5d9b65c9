"""Fault injection and rate limiting: seeded random faults (5xx pages, 429, resets, stalls) and a per-account
sliding-window limiter, with the answers they produce. Control routes (``/_emulator/``) are never affected."""

from __future__ import annotations

import math
import random
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from airflow_dbt_cloud_dlt.testing._api import Json, error_body

FAULT_KINDS = ("500", "502", "503", "429", "reset", "stall", "reset_after")
_HTML = "<html><head><title>{0}</title></head><body><center><h1>{0}</h1></center><hr></body></html>\n"
_REASONS = {"500": "500 Internal Server Error", "502": "502 Bad Gateway", "503": "503 Service Unavailable"}

Answer = tuple[int, Any, Mapping[str, str]]  # status (0: reset the connection), body, extra headers


class Faults:
    """Seeded random fault injection, applied to API requests before routing (never to ``/_emulator/``).

    Kinds: "500"/"502"/"503" (HTML body, like a proxy), "429" (``Retry-After``), "reset" (TCP RST before
    any processing: a faulted trigger creates no run), "stall" (sleep, then answer normally) and
    "reset_after" (POST only: process the request, e.g. create the run, then RST without answering).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.clear()

    def set(
        self,
        rate: float = 1.0,
        kinds: Sequence[str] = ("500", "502", "503", "429", "reset", "stall"),
        seed: int | None = None,
        retry_after: float | None = 1.0,
        stall_seconds: float = 2.0,
        methods: Sequence[str] = ("GET", "POST"),
        paths: Sequence[str] | None = None,
        max_faults: int | None = None,
    ) -> None:
        """Fault ``rate`` of the requests whose method is in ``methods`` and path contains one of ``paths``.

        ``max_faults`` caps the number injected (e.g. "fail the next two GETs").
        """
        bad = [k for k in kinds if k not in FAULT_KINDS]
        if bad or not 0.0 <= rate <= 1.0:
            raise ValueError(f"invalid fault kinds {bad} or rate {rate}; kinds are {FAULT_KINDS}")
        with self._lock:
            self._rate, self._kinds, self._rng = rate, tuple(kinds), random.Random(seed)
            self.retry_after, self.stall_seconds = retry_after, stall_seconds
            self._methods, self._paths = {m.upper() for m in methods}, tuple(paths or ())
            self._max, self.injected = max_faults, 0

    def clear(self) -> None:
        """Disable fault injection."""
        self.set(rate=0.0)

    def pick(self, method: str, path: str) -> str | None:
        """Decide, under the lock and from the seeded RNG, whether and how this request fails."""
        with self._lock:
            if self._rate <= 0 or method not in self._methods or (self._max is not None and self.injected >= self._max):
                return None
            if self._paths and not any(p in path for p in self._paths):
                return None
            kinds = [k for k in self._kinds if k != "reset_after" or method == "POST"]
            if not kinds or self._rng.random() >= self._rate:
                return None
            self.injected += 1
            return self._rng.choice(kinds)

    def answer(self, fault: str | None) -> Answer | None:
        """The answer a picked fault gives instead of the endpoint's (None: carry on; "stall" sleeps first)."""
        if fault in _REASONS:
            return int(fault), _HTML.format(_REASONS[fault]).encode(), {"Content-Type": "text/html"}
        if fault == "429":
            return throttled(self.retry_after)
        if fault == "reset":
            return 0, b"", {}
        if fault == "stall":
            time.sleep(self.stall_seconds)
        return None


class RateLimiter:
    """Per-account sliding 60 s window; overrunning it starts a cooldown during which every request is 429."""

    def __init__(self, requests_per_minute: int, cooldown_seconds: float, retry_after: bool) -> None:
        self.rpm, self.cooldown, self.retry_after = requests_per_minute, cooldown_seconds, retry_after
        self._lock = threading.Lock()
        self._hits: dict[int, deque[float]] = {}
        self._cool: dict[int, float] = {}

    def check(self, account: int, now: float) -> float | None:
        """Count the request; return the seconds to wait when it is limited."""
        with self._lock:
            if now < self._cool.get(account, 0.0):
                return self._cool[account] - now
            hits = self._hits.setdefault(account, deque())
            while hits and hits[0] <= now - 60.0:
                hits.popleft()
            if len(hits) >= self.rpm:
                self._cool[account] = now + self.cooldown
                hits.clear()
                return self.cooldown
            hits.append(now)
            return None

    def answer(self, account: int | None) -> Answer | None:
        """A 429 when ``account`` is over its budget (None: the request may go on)."""
        wait = None if account is None else self.check(account, time.monotonic())
        if wait is None:
            return None
        return throttled(wait if self.retry_after else None)


def throttled(retry_after: float | None) -> Answer:
    """dbt Cloud's 429 envelope, with ``Retry-After`` (whole seconds, rounded up) unless it is None."""
    headers = {} if retry_after is None else {"Retry-After": str(max(0, math.ceil(retry_after)))}
    body: Json = error_body(429, "Too many requests. Please slow down and try again later.")
    return 429, body, headers
