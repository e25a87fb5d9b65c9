"""Asset events for the models, seeds and snapshots a dbt Cloud run built, read from the run's artifacts.

After a run ends, :func:`read_run_assets` downloads each dbt step's ``run_results.json`` and the run's
``manifest.json`` to a temporary directory (``DbtCloudClient.download`` streams them, a chunk at a time), then
reads them with ``ijson``, a streaming JSON parser: one manifest node is in memory at a time, and only the nodes
the run built (and the tests of those nodes) are kept. A 200 MB manifest therefore costs about one node of
memory plus the kept ones, where ``json.load`` needs about twice the file's size for its Python objects
(measured: a 41 MB peak for a 20 MB manifest; ``tests/test_dbt_assets.py`` checks the streamed read stays under a
tenth of the file's size). ``ijson`` (the ``assets`` extra) is imported here, and this module is imported only
by a task that emits assets, at run time: DAG parsing, which imports the operators, loads neither. ijson was
chosen over a hand-written reader because it is maintained, has a C backend (yajl2) and reads key/value pairs
under a prefix (``nodes``), which is exactly the access a manifest needs.

Which nodes: resource types ``model``, ``seed`` and ``snapshot`` whose result status is ``success`` and that
have a relation (ephemeral models have none). Their names come from the manifest (``database``, ``schema``,
``alias``/``identifier``) through the one naming rule, :func:`.assets.dbt_node_asset_uri`. Results of every dbt
step that builds or tests nodes are merged (a later step's result of a node wins), so a job with a
``dbt run`` step and a ``dbt test`` step gets its test summary too.

What goes wrong, and what happens:

- no ``run_results.json`` in any step (a ``dbt deps``-only job, a run that failed before dbt): no events, and
  :attr:`RunAssets.reason` says why (the task logs it);
- a ``manifest.json`` missing beside the run results, malformed JSON, or a schema newer than this package reads
  (manifest v12, run_results v6): :class:`DbtArtifactError`, whose message names the run, the artifact and what
  to do. A successful run whose models cannot be announced fails its task: downstream DAGs must not silently miss
  an update. An Airflow retry attaches to the succeeded run and reads the artifacts again.

Importing this module does not import Airflow; the events themselves are made by :mod:`.assets`.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .assets import asset, asset_alias, dbt_node_asset_uri

if TYPE_CHECKING:
    from .api.client import DbtCloudClient

log = logging.getLogger(__name__)

#: The newest artifact schemas this module reads; a newer one is refused rather than misread.
MANIFEST_VERSION = 12
RUN_RESULTS_VERSION = 6
#: Resource types that build a relation, and so are announced as Assets.
BUILT_TYPES = frozenset({"model", "seed", "snapshot"})
#: dbt commands whose step writes run results of nodes (``dbt deps``, ``docs generate`` ... do not).
NODE_COMMANDS = frozenset({"build", "run", "seed", "snapshot", "test", "retry"})
#: The XCom key under which a failed run's task leaves the events of the nodes that succeeded.
FAILED_RUN_XCOM_KEY = "dbt_asset_events"
_VERSION = re.compile(r"/v(\d+)\.json$")
_TEST_STATUS = {"pass": "passed", "warn": "warned", "fail": "failed", "error": "failed"}


class DbtArtifactError(ValueError):
    """A run's artifacts cannot be read: missing, malformed, or of a newer schema. The message says which."""


@dataclass(frozen=True)
class BuiltNode:
    """One node the run built, named by the rule, with what its asset event's ``extra`` carries."""

    unique_id: str
    resource_type: str
    uri: str
    status: str
    rows_affected: int | None
    execution_time: float | None
    tests_passed: int = 0
    tests_warned: int = 0
    tests_failed: int = 0

    def extra(self, run_id: int, run_url: str | None) -> dict[str, Any]:
        """The event's ``extra``: flat JSON values, which Airflow 2.11 can hash as well as 3 can store."""
        return {
            "source": "dbt_cloud",
            "dbt_cloud_run_id": run_id,
            "dbt_cloud_run_url": run_url,
            "unique_id": self.unique_id,
            "resource_type": self.resource_type,
            "status": self.status,
            "rows_affected": self.rows_affected,
            "execution_time": self.execution_time,
            "tests_passed": self.tests_passed,
            "tests_warned": self.tests_warned,
            "tests_failed": self.tests_failed,
        }


@dataclass
class RunAssets:
    """What :func:`read_run_assets` found: the built nodes, or why there are none."""

    run_id: int
    run_url: str | None
    nodes: list[BuiltNode] = field(default_factory=list)
    reason: str | None = None  # set when the run has no run results at all

    def events(self) -> list[dict[str, Any]]:
        """``[{"uri": ..., "extra": {...}}]``: JSON, for XCom and :func:`emit_recorded_events`."""
        return [{"uri": node.uri, "extra": node.extra(self.run_id, self.run_url)} for node in self.nodes]


# --- streaming reads -----------------------------------------------------------------------------------------


def _ijson() -> Any:
    try:
        import ijson
    except ImportError:  # pragma: no cover - the assets extra is installed wherever tests run
        raise ImportError(
            "Reading dbt artifacts for asset events needs ijson: pip install 'airflow-dbt-cloud-dlt[assets]'."
        ) from None
    return ijson


def _check_version(metadata: Any, kind: str, newest: int, where: str) -> None:
    url = metadata.get("dbt_schema_version") if isinstance(metadata, Mapping) else None
    found = _VERSION.search(str(url or ""))
    if not found:
        raise DbtArtifactError(f"{where} is not a dbt {kind}: its metadata.dbt_schema_version is {url!r}.")
    if int(found.group(1)) > newest:
        raise DbtArtifactError(
            f"{where} has schema {kind} v{found.group(1)}, newer than v{newest}, the newest this package reads. "
            "Upgrade airflow-dbt-cloud-dlt, or pin the job's dbt version to one that writes "
            f"{kind} v{newest} or older."
        )


def _metadata(path: Path, kind: str, newest: int, where: str) -> dict[str, Any]:
    """The file's ``metadata``, checked. dbt writes it first, so only the file's head is read."""
    ijson = _ijson()
    with path.open("rb") as handle:
        try:
            metadata = next(iter(ijson.items(handle, "metadata", use_float=True)), None)
        except ijson.JSONError as error:
            raise DbtArtifactError(f"{where} is not valid JSON ({error}).") from None
    _check_version(metadata, kind, newest, where)
    return dict(metadata)  # type: ignore[arg-type]


def _stream(path: Path, prefix: str, where: str, pairs: bool = False) -> Iterator[Any]:
    """The items (or ``(key, value)`` pairs) under ``prefix``, one at a time; malformed JSON is a clear error."""
    ijson = _ijson()
    with path.open("rb") as handle:
        try:
            if pairs:
                yield from ijson.kvitems(handle, prefix, use_float=True)
            else:
                yield from ijson.items(handle, prefix, use_float=True)
        except ijson.JSONError as error:
            raise DbtArtifactError(f"{where} is not valid JSON ({error}).") from None


@dataclass(frozen=True)
class _Result:
    unique_id: str
    status: str
    execution_time: float | None
    rows_affected: int | None


def read_run_results(path: Path, where: str = "run_results.json") -> dict[str, _Result]:
    """The results of one ``run_results.json`` by unique_id (schema v6 or older), read as a stream."""
    _metadata(path, "run-results", RUN_RESULTS_VERSION, where)
    out: dict[str, _Result] = {}
    for item in _stream(path, "results.item", where):
        if not isinstance(item, Mapping) or not isinstance(item.get("unique_id"), str):
            raise DbtArtifactError(f"{where} has a result without a unique_id: {str(item)[:200]}")
        adapter = item.get("adapter_response") or {}
        rows = adapter.get("rows_affected") if isinstance(adapter, Mapping) else None
        took = item.get("execution_time")
        out[item["unique_id"]] = _Result(
            item["unique_id"],
            str(item.get("status")),
            float(took) if isinstance(took, int | float) else None,
            int(rows) if isinstance(rows, int | float) and not isinstance(rows, bool) else None,
        )
    return out


def read_manifest_nodes(path: Path, wanted: set[str], where: str = "manifest.json") -> tuple[str, dict[str, Any]]:
    """(adapter_type, {unique_id: node}) for the ``wanted`` nodes of a manifest (v12 or older), read as a stream."""
    metadata = _metadata(path, "manifest", MANIFEST_VERSION, where)
    found: dict[str, Any] = {}
    for uid, node in _stream(path, "nodes", where, pairs=True):
        if uid in wanted:
            found[uid] = node
    return str(metadata.get("adapter_type") or ""), found


# --- a run's artifacts -----------------------------------------------------------------------------------------


def step_command(step: Mapping[str, Any]) -> str:
    """A run step's dbt command: ``run_step_command.dbt_command`` (the API's object; a bare string is
    read too), else the command in its name ("Invoke dbt with `dbt build`", with or without the backticks)."""
    command = step.get("run_step_command")
    if isinstance(command, Mapping):
        command = command.get("dbt_command")
    if isinstance(command, str) and command.strip():
        return command.strip()
    name = str(step.get("name") or "")
    quoted = re.search(r"`([^`]+)`", name)
    return quoted.group(1).strip() if quoted else name.removeprefix("Invoke dbt with").strip()


def dbt_subcommand(command: str) -> str | None:
    """``build`` for ``dbt --warn-error build -s x``; None when the command is not dbt's."""
    words = command.split()
    if not words or words[0] != "dbt":
        return None
    return next((word for word in words[1:] if not word.startswith("-")), None)


def _node_steps(run: Mapping[str, Any]) -> list[int | None]:
    """The indexes of the run's steps that ran a node-building dbt command; ``[None]`` (the last step) when the
    run does not list its steps."""
    steps = run.get("run_steps") or []
    if not steps:
        return [None]
    return [
        step["index"]
        for step in steps
        if dbt_subcommand(step_command(step)) in NODE_COMMANDS and isinstance(step.get("index"), int)
    ]


def _download(client: DbtCloudClient, run_id: int, path: str, step: int | None, target: Path) -> bool:
    """Stream one artifact to ``target``; False when the run (step) has none."""
    from .api import core
    from .api.errors import DbtCloudNotFoundError

    try:
        client.download(core.get_run_artifact(client.account_id, run_id, path, step), target)
    except DbtCloudNotFoundError:
        return False
    return True


def _tests_by_node(tests: Mapping[str, Any], results: Mapping[str, _Result]) -> dict[str, dict[str, int]]:
    """``{node: {"passed": n, "warned": n, "failed": n}}`` from the tests' results and manifest entries."""
    summary: dict[str, dict[str, int]] = {}
    for uid, node in tests.items():
        outcome = _TEST_STATUS.get(results[uid].status)
        if outcome is None:  # skipped
            continue
        attached = node.get("attached_node")
        parents = [attached] if attached else list((node.get("depends_on") or {}).get("nodes") or [])
        for parent in parents:
            counts = summary.setdefault(parent, {"passed": 0, "warned": 0, "failed": 0})
            counts[outcome] += 1
    return summary


def read_run_assets(
    client: DbtCloudClient,
    run_id: int,
    *,
    run_url: str | None = None,
    namespace: str | None = None,
    extras: Mapping[str, Any] | None = None,
) -> RunAssets:
    """The nodes run ``run_id`` built, from its artifacts; see the module docstring for what can go wrong.

    ``namespace`` (else ``extras["asset_namespace"]``, the connection's) names the warehouse, as
    :func:`.assets.resolve_namespace` does.
    """
    run = client.get_run(run_id, include_related=("run_steps",))
    steps = _node_steps(run)
    found = RunAssets(run_id, run_url)
    if not steps:
        found.reason = f"dbt Cloud run {run_id} ran no dbt step that builds or tests nodes (such as a deps-only job)"
        return found
    results: dict[str, _Result] = {}
    last: int | None = None
    with tempfile.TemporaryDirectory(prefix=f"dbt-cloud-run-{run_id}-") as tmp:
        had_results = False
        for step in steps:
            target = Path(tmp) / f"run_results.{step or 'last'}.json"
            if not _download(client, run_id, "run_results.json", step, target):
                log.debug("Run %s step %s has no run_results.json.", run_id, step)
                continue
            where = f"run_results.json of dbt Cloud run {run_id}" + (f" step {step}" if step else "")
            results.update(read_run_results(target, where))
            had_results, last = True, step
        if not had_results:
            found.reason = f"dbt Cloud run {run_id} has no run_results.json in any dbt step"
            return found
        manifest = Path(tmp) / "manifest.json"
        where = f"manifest.json of dbt Cloud run {run_id}" + (f" step {last}" if last else "")
        if not _download(client, run_id, "manifest.json", last, manifest):
            raise DbtArtifactError(
                f"dbt Cloud run {run_id} has run_results.json but no {where}: without it the built nodes cannot "
                "be named as Assets. Check that the job's artifacts are saved (dbt Cloud keeps them for a limited "
                "time), then retry the task."
            )
        adapter_type, nodes = read_manifest_nodes(manifest, set(results), where)
    tests = {uid: node for uid, node in nodes.items() if node.get("resource_type") == "test"}
    summary = _tests_by_node(tests, results)
    for uid, result in results.items():
        node = nodes.get(uid)
        if node is None or node.get("resource_type") not in BUILT_TYPES or result.status != "success":
            continue
        if (node.get("config") or {}).get("materialized") == "ephemeral":
            continue
        uri = dbt_node_asset_uri(node, adapter_type=adapter_type or None, namespace=namespace, extras=extras)
        counts = summary.get(uid, {})
        found.nodes.append(
            BuiltNode(
                uid,
                str(node["resource_type"]),
                uri,
                result.status,
                result.rows_affected,
                result.execution_time,
                counts.get("passed", 0),
                counts.get("warned", 0),
                counts.get("failed", 0),
            )
        )
    return found


# --- asset events ------------------------------------------------------------------------------------------------


def emit_recorded_events(
    events: Sequence[Mapping[str, Any]] | None, alias: str | Any, outlet_events: Any = None
) -> int:
    """Emit ``[{"uri", "extra"}]`` (:meth:`RunAssets.events`) through ``alias``, which the task lists in its
    ``outlets``; return how many.

    A task whose dbt Cloud run failed leaves the events of the nodes that did succeed in XCom
    (``FAILED_RUN_XCOM_KEY``), because Airflow records outlet events only of tasks that succeed. A follow-up
    task (``trigger_rule="all_failed"``) announces them with this function.
    """
    from .assets import _current_outlet_events, _event_extra

    accessors = outlet_events if outlet_events is not None else _current_outlet_events()
    key = asset_alias(alias) if isinstance(alias, str) else alias
    for event in events or []:
        accessors[key].add(asset(str(event["uri"])), extra=_event_extra(dict(event.get("extra") or {})))
    return len(events or [])
