"""A per-account request budget shared by every client in the process, sync or async.

dbt Cloud allows 5,000 API requests per minute per account and answers more with 429 and a cooldown of
up to five minutes. By default this process takes at most half of that, because the account's other tools
(the dbt Cloud UI, CI, other schedulers) need the rest. ``DBT_CLOUD_RATE_LIMIT_SHARE`` (0 < share <= 1)
changes the share. A 429 pauses the whole account for ``Retry-After``, or for a cautious default.
"""

from __future__ import annotations

import os
import threading
import time

ACCOUNT_LIMIT_PER_MINUTE = 5000
DEFAULT_SHARE = 0.5
#: How long a 429 without Retry-After pauses the account.
DEFAULT_PAUSE_SECONDS = 60.0


def _share_from_env() -> float:
    try:
        share = float(os.environ.get("DBT_CLOUD_RATE_LIMIT_SHARE", DEFAULT_SHARE))
    except ValueError:
        return DEFAULT_SHARE
    return share if 0 < share <= 1 else DEFAULT_SHARE


class RateBudget:
    """A token bucket (capacity of one second's worth) plus a pause that a 429 sets.

    :meth:`reserve` is thread-safe and never sleeps itself: it returns how long the caller must wait,
    so the sync transport can ``time.sleep`` and the async one ``asyncio.sleep``.
    """

    def __init__(self, requests_per_minute: float) -> None:
        self.rate = requests_per_minute / 60.0
        self.capacity = max(1.0, self.rate)
        self._tokens = self.capacity
        self._updated = time.monotonic()
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Take one request's worth of budget; return the seconds to wait before sending it."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            self._tokens -= 1.0
            wait = 0.0 if self._tokens >= 0 else -self._tokens / self.rate
            return max(wait, self._paused_until - now)

    def pause(self, seconds: float | None) -> None:
        """Hold every request of the account for ``seconds`` (after a 429)."""
        with self._lock:
            until = time.monotonic() + (DEFAULT_PAUSE_SECONDS if seconds is None else seconds)
            self._paused_until = max(self._paused_until, until)


_BUDGETS: dict[tuple[str, int], RateBudget] = {}
_REGISTRY_LOCK = threading.Lock()


def budget_for(base_url: str, account_id: int) -> RateBudget:
    """The process-wide budget of one account on one host."""
    with _REGISTRY_LOCK:
        budget = _BUDGETS.get((base_url, account_id))
        if budget is None:
            budget = RateBudget(ACCOUNT_LIMIT_PER_MINUTE * _share_from_env())
            _BUDGETS[(base_url, account_id)] = budget
        return budget
