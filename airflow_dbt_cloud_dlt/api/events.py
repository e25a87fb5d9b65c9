"""The one typed event that ends every wait for a run, and the completion rule that makes it.

Only dbt Cloud's own final status ends a wait (:func:`.models.is_terminal`). Whatever way a run was waited
for (blocking poll, sensor poke, deferred trigger), the outcome is a :class:`RunEvent`, which the Airflow
tasks turn into success or failure in one place. Light on purpose: operators import it at DAG-parse time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .errors import DbtCloudError
from .models import RunStatus, is_terminal, run_status, status_text

EventStatus = Literal["success", "error", "cancelled", "timeout"]
#: ``status_message`` is cut to this many characters in an event: events are logged whole by Airflow.
MAX_STATUS_MESSAGE = 120


@dataclass(frozen=True)
class RunEvent:
    """How a wait for run ``run_id`` ended: small and JSON-safe, so it can cross to a deferred task.

    ``observed=False`` means the run could not be read at all (bad token, unknown run): not a dbt failure.
    ``run_status`` is dbt Cloud's status code when the run was read; ``run_url`` its page when known (built by
    :func:`.reporting.run_url` on the configured host, never the API's ``href`` unchecked).
    """

    status: EventStatus
    run_id: int
    message: str
    observed: bool = True
    run_status: int | None = None
    run_url: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == "success"

    @classmethod
    def for_run(cls, run: dict[str, Any], run_url: str | None = None) -> RunEvent | None:
        """The completion rule: the event of a terminal run, or None while it is still going."""
        if not is_terminal(run):
            return None
        status = run_status(run)
        message = f"dbt Cloud run {run.get('id')} ended: {status_text(run)}."
        detail = str(run.get("status_message") or "")
        if detail:
            cut = detail if len(detail) <= MAX_STATUS_MESSAGE else detail[: MAX_STATUS_MESSAGE - 1] + "…"
            message += f" {cut}"
        name: EventStatus = "success" if status is RunStatus.SUCCESS else status.event_name  # type: ignore[assignment]
        return cls(name, int(run["id"]), message, run_status=int(status), run_url=run_url)

    @classmethod
    def timed_out(
        cls, run_id: int, run: dict[str, Any] | None, run_url: str | None = None, message: str | None = None
    ) -> RunEvent:
        """The wait's own deadline passed while the run was still going (or could not be read)."""
        last = status_text(run) if run else "unknown"
        return cls(
            "timeout",
            run_id,
            message or f"dbt Cloud run {run_id} did not finish within the timeout (last status: {last}).",
            run_status=run_status(run).value if run else None,
            run_url=run_url,
        )

    @classmethod
    def unobserved(cls, run_id: int, error: DbtCloudError) -> RunEvent:
        """The run could not be read at all; the run itself was not touched."""
        message = f"Could not observe dbt Cloud run {run_id}: {error} The run itself was not changed."
        return cls("error", run_id, message, observed=False)

    def to_payload(self) -> dict[str, Any]:
        """The JSON-safe dict that a ``TriggerEvent`` carries."""
        return {key: value for key, value in vars(self).items() if value is not None}  # flat: no asdict() copy

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any] | None) -> RunEvent:
        """Rebuild an event from :meth:`to_payload`; raises ``ValueError`` for anything else."""
        try:
            if payload is None or payload["status"] not in ("success", "error", "cancelled", "timeout"):
                raise ValueError("not a RunEvent payload")
            return cls(
                status=payload["status"],
                run_id=int(payload["run_id"]),
                message=str(payload.get("message") or ""),
                observed=bool(payload.get("observed", True)),
                run_status=payload.get("run_status"),
                run_url=payload.get("run_url"),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"Unexpected trigger event {payload!r}; the run's outcome is unknown.") from error
