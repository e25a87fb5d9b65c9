"""Control routes under ``/_emulator/`` (an account's token needed, but for health; never logged nor faulted): script jobs, inject faults, set
the rate limit, read or clear the request log, move the clock, list and cancel runs, reset."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from airflow_dbt_cloud_dlt.testing._api import Json
from airflow_dbt_cloud_dlt.testing.scripts import JobScript

if TYPE_CHECKING:  # the emulator imports this module
    from airflow_dbt_cloud_dlt.testing.emulator import DbtCloudEmulator

Action = Callable[["DbtCloudEmulator", Json, dict[str, list[str]], str], Any]  # None answers {"ok": true}


def _faults(emu: DbtCloudEmulator, data: Json, query: dict[str, list[str]], path: str) -> None:
    if data:
        emu.faults.set(**data)
    else:
        emu.faults.clear()


def _requests(emu: DbtCloudEmulator, data: Json, query: dict[str, list[str]], path: str) -> Any:
    if query.get("summary", ["0"])[-1].lower() not in ("0", "false", ""):
        return emu.request_summary()
    return [asdict(r) for r in emu.requests]


_ACTIONS: dict[str, Action] = {
    "GET /_emulator/health/": lambda emu, data, query, path: None,
    "POST /_emulator/jobs/": lambda emu, data, query, path: asdict(emu.add_job(JobScript.from_dict(data))),
    "POST /_emulator/faults/": _faults,
    "POST /_emulator/rate_limit/": lambda emu, data, query, path: emu.rate_limit(**data),
    "GET /_emulator/requests/": _requests,
    "DELETE /_emulator/requests/": lambda emu, data, query, path: emu.clear_requests(),
    "POST /_emulator/reset/": lambda emu, data, query, path: emu.reset(),
    "POST /_emulator/advance/": lambda emu, data, query, path: emu.advance(float(data.get("seconds", 0))),
    "GET /_emulator/runs/": lambda emu, data, query, path: sorted(emu.runs.values(), key=lambda r: int(r["id"])),
    "POST /_emulator/runs/{id}/cancel/": lambda emu, data, query, path: emu.cancel_run(
        int(path.strip("/").split("/")[2])
    ),
}


def control(emu: DbtCloudEmulator, method: str, path: str, query: dict[str, list[str]], body: bytes) -> tuple[int, Any]:
    """Run a control route: 200 with its result, 404 for an unknown route or object, 400 for bad input."""
    route = method + " " + re.sub(r"/\d+/", "/{id}/", path.rstrip("/") + "/")
    try:
        data = json.loads(body) if body.strip() else {}
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        action = _ACTIONS.get(route)
        if action is None:
            return 404, {"error": f"unknown control route {method} {path}"}
        result = action(emu, data, query, path)
        return 200, {"ok": True} if result is None else result
    except KeyError as exc:
        return 404, {"error": f"not found: {exc}"}
    except (TypeError, ValueError) as exc:
        return 400, {"error": str(exc)}
