"""Human-readable lines about runs: progress while waiting, and why a run failed.

Only tails are shown: the last lines of the failed step's log and a bounded list of failed nodes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from .credentials import is_loopback
from .errors import DbtCloudError
from .models import RunStatus, status_text

if TYPE_CHECKING:  # the sync client pulls in requests: only failure_report needs one, and it is given one
    from .client import DbtCloudClient

LOG_TAIL_LINES = 50
MAX_FAILED_NODES = 20
#: The most characters of one piece of server text shown (a status message, a node's message, a step name).
MAX_TEXT = 2000
#: The most characters of one log line shown.
MAX_LOG_LINE = 500
log = logging.getLogger("airflow_dbt_cloud_dlt")  # core's logger, without importing core (tenacity)
_FAILED_NODE_STATUSES = ("error", "fail", "runtime error")


def cap(text: object, limit: int = MAX_TEXT) -> str:
    """``text`` cut to ``limit`` characters, with a note of how much was cut."""
    shown = str(text)
    if len(shown) <= limit:
        return shown
    return f"{shown[:limit]}… [{len(shown) - limit:,} more characters cut]"


def scrub(text: str, token: str) -> str:
    """``text`` with every occurrence of the token replaced by ``***``."""
    return text.replace(token, "***") if token else text


def is_web_link(url: object) -> bool:
    """True for a URL a browser may be sent to: https (or plain http to a loopback host, the emulator), no user
    name or password, no white space or control characters."""
    if not isinstance(url, str) or not url.isprintable() or any(ch.isspace() for ch in url) or len(url) > 2000:
        return False
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return False
    if parts.username is not None or parts.password is not None or not host:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and is_loopback(host))


def run_url(run: dict[str, Any], base_url: str) -> str:
    """The run's page in dbt Cloud, on the configured host ``base_url``.

    The API's ``href`` is used only when it is a web link (:func:`is_web_link`) on that very host (scheme, host
    and port): a hostile or broken server cannot put a link to anywhere else into XCom and the UI. Otherwise
    the page is built from ``base_url`` and the run's ids.
    """
    href = run.get("href")
    if is_web_link(href) and is_web_link(base_url):
        page, home = urlsplit(str(href)), urlsplit(base_url)
        if (page.scheme, page.netloc.lower()) == (home.scheme, home.netloc.lower()):
            return str(href)
    account, project, run_id = (_path_part(run.get(name)) for name in ("account_id", "project_id", "id"))
    return f"{base_url}/deploy/{account}/projects/{project}/runs/{run_id}/"


def _path_part(value: object) -> str:
    """An id for a URL path: digits as they are, anything else percent-encoded (no "/", "?" or "#")."""
    return str(value) if type(value) is int else quote(str(value), safe="")


def _current_step(run: dict[str, Any]) -> dict[str, Any] | None:
    steps = run.get("run_steps") or []
    return next((s for s in steps if s.get("status") in (RunStatus.STARTING, RunStatus.RUNNING)), None)


def _of_total(run: dict[str, Any], steps: list[dict[str, Any]]) -> str:
    """ " of N" when the job's commands are known: dbt Cloud lists a step only once it starts, and runs its
    own setup steps (clone, profile, deps) before the job's ``execute_steps``."""
    commands = (run.get("job") or {}).get("execute_steps")
    if not commands:
        return ""
    setup = sum(1 for step in steps if not str(step.get("name", "")).startswith("Invoke dbt"))
    return f" of {setup + len(commands)}"


def progress_state(run: dict[str, Any]) -> tuple[Any, ...]:
    """What a progress line reports, without the clock: the status and the running step."""
    step = _current_step(run)
    return run.get("status"), step.get("index") if step else None


def changes_only(callback: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    """Wrap ``callback`` so that it sees a run only when its :func:`progress_state` changed."""
    seen: list[tuple[Any, ...]] = []

    def on_poll(run: dict[str, Any]) -> None:
        state = progress_state(run)
        if not seen or seen[-1] != state:
            seen[:] = [state]
            callback(run)

    return on_poll


def progress_line(run: dict[str, Any]) -> str:
    """One line: status, the running step out of how many, elapsed time, and the run URL."""
    parts = [f"dbt Cloud run {run.get('id')}: {cap(status_text(run), 200)}"]
    steps = run.get("run_steps") or []
    current = _current_step(run)
    if current is not None:
        parts.append(f"step {current.get('index')}{_of_total(run, steps)} {cap(current.get('name'), 200)!r}")
    if run.get("duration"):
        parts.append(f"{cap(run['duration'], 40)} elapsed")
    if run.get("href"):
        parts.append(cap(run["href"], 500))
    return ", ".join(parts)


def _tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines, each cut to :data:`MAX_LOG_LINE` characters (with a note of what was cut)."""
    every = text.rstrip().splitlines()
    tail = [cap(line, MAX_LOG_LINE) for line in every[-lines:]]
    return "\n".join(tail)


def _node_line(result: dict[str, Any]) -> str:
    """``unique_id: message``; dbt's multi-line messages (error, detail, compiled path) go on indented lines."""
    message = cap(str(result.get("message") or result.get("status")).strip())
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return f"{cap(result.get('unique_id'), 300)}: " + "\n    ".join(lines)


def failed_nodes(run_results: bytes) -> list[str]:
    """``unique_id: message`` of the nodes that failed, from a ``run_results.json``."""
    try:
        results = json.loads(run_results).get("results") or []
    except (ValueError, AttributeError, RecursionError):
        return []
    if not isinstance(results, list):
        return []
    nodes = [
        _node_line(r)
        for r in results
        if isinstance(r, dict) and str(r.get("status", "")).lower() in _FAILED_NODE_STATUSES
    ]
    if len(nodes) > MAX_FAILED_NODES:
        nodes = [*nodes[:MAX_FAILED_NODES], f"... and {len(nodes) - MAX_FAILED_NODES} more"]
    return nodes


def failure_report(client: DbtCloudClient, run_id: int) -> str:
    """Why a run failed: its status message, the failed step with its log tail, and the failed nodes.

    Reading the details is best effort: if the API cannot be read, the report says so instead of hiding
    the failure behind an API error.
    """
    try:
        run = client.get_run(run_id, include_related=("run_steps", "job"))
    except DbtCloudError as error:
        return f"dbt Cloud run {run_id} failed; its details could not be read ({error})."
    lines = [f"dbt Cloud run {run_id} ended with status {cap(status_text(run), 200)}."]
    if run.get("status_message"):
        lines.append(f"Status message: {cap(run['status_message'])}")
    steps = run.get("run_steps") or []
    failed = next((s for s in steps if s.get("status") == RunStatus.ERROR), None)
    if failed is not None:
        lines.append(f"Failed step {failed.get('index')}{_of_total(run, steps)}: {cap(failed.get('name'), 300)}")
        logs = failed.get("logs") or failed.get("truncated_debug_logs") or ""
        if logs:
            lines.append(f"Last {LOG_TAIL_LINES} lines of its log:\n{_tail(str(logs))}")
    try:
        artifact = client.get_run_artifact(run_id, "run_results.json", step=failed.get("index") if failed else None)
    except DbtCloudError as error:
        log.info("No run_results.json for run %s (%s).", run_id, error.status_code or error)
    else:
        nodes = failed_nodes(artifact)
        if nodes:
            lines.append("Failed nodes:\n" + "\n".join(f"  - {node}" for node in nodes))
    lines.append(f"Run: {cap(run_url(run, client.credentials.base_url), 500)}")
    return scrub("\n".join(lines), client.credentials.api_token)  # the artifact is read raw: never scrubbed before
