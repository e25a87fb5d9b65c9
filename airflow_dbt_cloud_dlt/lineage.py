"""OpenLineage for dbt Cloud runs: the task's lineage read from the run's artifacts, and the parent job link.

Used only when ``apache-airflow-providers-openlineage`` is installed (the ``openlineage`` extra): its listener
calls ``get_openlineage_facets_on_complete`` of the run-job operator and the run sensor, which call
:func:`run_lineage`. Nothing here is imported when the operators are imported (DAG parsing), and without the
provider nothing here runs.

What :func:`run_lineage` does, as the official provider does (``airflow.providers.dbt.cloud.utils.openlineage``):

- reads each dbt step's ``manifest.json`` and ``run_results.json`` (and ``catalog.json`` when the run has one),
  streamed to temporary files by ``DbtCloudClient.download`` (:mod:`.dbt_assets` picks the steps);
- turns them into OpenLineage events with OpenLineage's own dbt artifact processor,
  ``openlineage.common.provider.dbt.DbtCloudArtifactProcessor``: one job per model, seed, snapshot and test,
  whose run's parent is the Airflow task, emitted through the OpenLineage provider;

and, unlike the official provider, which returns empty lineage for the task itself:

- returns the run's lineage as the task's: the models, seeds and snapshots the run built are the outputs of the
  task's COMPLETE event, and the tables they read that the run did not build (the dlt-loaded sources) its inputs.

Dataset names follow this package's one naming rule (:mod:`.assets`), so that the table a dlt load writes and
the source a dbt model reads are one dataset: the namespace is the task's ``asset_namespace``, else the
connection's ``asset_namespace`` extra, else what the processor derives from the dbt Cloud project's connection
(as the official provider does); names are ``database.schema.table`` folded as the warehouse folds unquoted
names (Snowflake upper case). OpenLineage's processor gives the same for Postgres, Redshift, DuckDB, Databricks
and BigQuery with lower-case names; for Snowflake it keeps the manifest's case, which the rule folds.

:func:`parent_job_cause` is the ``openlineage_inject_parent_job_info`` mechanism: the run's ``cause`` becomes the
compact JSON of the task's OpenLineage parent (and root) run, as the official provider writes it, with this
package's exactly-once marker as one more key (``"marker"``), so that the cause stays one JSON object.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .api.core import MAX_CAUSE_LENGTH

if TYPE_CHECKING:
    from ._tasks import RunWaitMixin
    from .api.client import DbtCloudClient

log = logging.getLogger(__name__)

#: dbt commands whose artifacts OpenLineage's processor turns into events (others it skips).
LINEAGE_COMMANDS = frozenset({"build", "run", "seed", "snapshot", "test"})


# --- the parent job link (openlineage_inject_parent_job_info) ----------------------------------------------


def parent_run_metadata(task_instance: Any) -> Any:
    """The task instance's OpenLineage run and job, and its DAG run's (the root), as OpenLineage's
    ``ParentRunMetadata``: what the official provider links dbt Cloud runs with."""
    from airflow.providers.openlineage.plugins.macros import (
        lineage_job_name,
        lineage_job_namespace,
        lineage_root_job_name,
        lineage_root_job_namespace,
        lineage_root_run_id,
        lineage_run_id,
    )
    from openlineage.common.provider.dbt import ParentRunMetadata

    return ParentRunMetadata(
        run_id=lineage_run_id(task_instance),
        job_name=lineage_job_name(task_instance),
        job_namespace=lineage_job_namespace(),
        root_parent_run_id=lineage_root_run_id(task_instance),
        root_parent_job_name=lineage_root_job_name(task_instance),
        root_parent_job_namespace=lineage_root_job_namespace(task_instance),
    )


def parent_job_cause(task_instance: Any, marker: str) -> str | None:
    """The run ``cause`` that links the dbt Cloud run to the task: ``{"parent": ..., "root": ..., "marker": ...}``
    as compact JSON, 255 characters at most (``root`` is dropped when it does not fit); None when even the parent
    does not fit, or the OpenLineage provider is not installed (the caller then keeps its readable cause)."""
    try:
        meta = parent_run_metadata(task_instance)
    except ImportError:
        log.warning(
            "openlineage_inject_parent_job_info: the OpenLineage provider is not installed "
            "(pip install 'airflow-dbt-cloud-dlt[openlineage]'); the run's cause stays as it is."
        )
        return None
    parent = {"run": {"runId": meta.run_id}, "job": {"namespace": meta.job_namespace, "name": meta.job_name}}
    root = {
        "run": {"runId": meta.root_parent_run_id},
        "job": {"namespace": meta.root_parent_job_namespace, "name": meta.root_parent_job_name},
    }
    for payload in ({"parent": parent, "root": root}, {"parent": parent}):
        text = json.dumps(payload | {"marker": marker}, separators=(",", ":"))
        if len(text) <= MAX_CAUSE_LENGTH:
            return text
    log.warning(
        "openlineage_inject_parent_job_info: the OpenLineage parent job information does not fit in dbt Cloud's "
        "%d-character cause; the run's cause stays as it is.",
        MAX_CAUSE_LENGTH,
    )
    return None


# --- the run's lineage -----------------------------------------------------------------------------------------


def _processor_class() -> type:
    """OpenLineage's ``DbtCloudArtifactProcessor``, naming datasets by this package's rule (:mod:`.assets`)."""
    from openlineage.common.provider.dbt import DbtCloudArtifactProcessor

    from .assets import UnsupportedWarehouseError, asset_for_table

    class RuleNamedProcessor(DbtCloudArtifactProcessor):  # type: ignore[misc]
        """The processor with the namespace set once (``namespace``) and names folded by the naming rule."""

        namespace: str | None = None

        def extract_namespace(self, profile: dict[str, Any]) -> str:
            return self.namespace or str(super().extract_namespace(profile))

        def extract_dataset_data(self, node: Any, *args: Any, **kwargs: Any) -> tuple[str, str, Any, Any]:
            """The processor's dataset, its name folded by the rule (job names stay the processor's own)."""
            namespace, name, facets, input_facets = super().extract_dataset_data(node, *args, **kwargs)
            meta = node.metadata_node
            table = meta["name"] if node.type == "source" else meta["alias"]
            with contextlib.suppress(UnsupportedWarehouseError, ValueError):  # a warehouse the rule does not know
                name = asset_for_table(namespace, meta.get("database"), meta.get("schema"), table).openlineage_name
            return namespace, name, facets, input_facets

    return RuleNamedProcessor


def _download_json(client: DbtCloudClient, run_id: int, path: str, step: int | None, target: Path) -> Any:
    """The artifact, streamed to ``target`` and parsed; None when the run (step) has none. OpenLineage's
    processor takes whole artifacts, so they are parsed here (the download itself is never held in memory)."""
    from .dbt_assets import DbtArtifactError, _download

    if not _download(client, run_id, path, step, target):
        return None
    try:
        with target.open("rb") as handle:
            return json.load(handle)
    except ValueError as error:
        raise DbtArtifactError(f"{path} of dbt Cloud run {run_id} step {step} is not valid JSON ({error}).") from None
    finally:
        target.unlink()


def _profile(task: RunWaitMixin, client: DbtCloudClient, run: dict[str, Any], adapter_type: str) -> tuple[Any, str]:
    """(profile, namespace): the namespace by the naming rule when one is configured, with a profile that names
    only the adapter; else the dbt Cloud project's connection (as the official provider reads it) and no namespace."""
    from .api.official import get_project
    from .assets import _split_namespace, resolve_namespace

    namespace = task.asset_namespace or task.hook.asset_namespace
    if namespace:  # checked against the manifest's adapter: a Snowflake table is never named in a Postgres namespace
        kind, canonical = _split_namespace(resolve_namespace(namespace, warehouse=adapter_type or None))
        return {"type": adapter_type or kind, "name": kind, "details": {}}, canonical
    project_id = run.get("project_id") or (run.get("job") or {}).get("project_id")
    if project_id is None:
        raise ValueError(f"run {run.get('id')} names no project; set the connection's asset_namespace extra")
    connection = client.send(get_project(client.account_id, int(project_id)))["data"].get("connection") or {}
    if not isinstance(connection, dict) or not connection.get("type") or not connection.get("details"):
        raise ValueError(
            f"no asset_namespace, and dbt Cloud project {project_id} has no warehouse connection to name the "
            'datasets by: set the connection\'s extra {"asset_namespace": "<namespace>"} (or the task\'s asset_namespace)'
        )
    return connection, ""


def _adapter_type(manifest: dict[str, Any]) -> str:
    return str((manifest.get("metadata") or {}).get("adapter_type") or "")


def _merge(datasets: Iterable[Any], into: dict[tuple[str, str], Any]) -> None:
    for dataset in datasets:
        into.setdefault((dataset.namespace, dataset.name), dataset)


def run_lineage(task: RunWaitMixin, task_instance: Any) -> Any:
    """The ``OperatorLineage`` of the task whose dbt Cloud run ``task.run_id`` finished; see the module docstring.

    The node events are emitted as the run's artifacts are read. Anything that goes wrong is logged and gives
    empty lineage: lineage never fails a task (OpenLineage's listener calls this after the task succeeded).
    """
    from airflow.providers.openlineage.extractors import OperatorLineage

    if not isinstance(task.run_id, int):
        log.info("No OpenLineage events: the task has no finished dbt Cloud run.")
        return OperatorLineage()
    if getattr(task, "wait_for_termination", True) is False:
        log.info("No OpenLineage events: wait_for_termination is False, so the run may not have finished.")
        return OperatorLineage()
    try:
        return _run_lineage(task, task_instance, task.run_id)
    except Exception as error:
        log.warning("No OpenLineage events for dbt Cloud run %s: %s", task.run_id, error, exc_info=True)
        return OperatorLineage()


def _emit(event: Any) -> None:
    try:
        from airflow.providers.openlineage.api import emit
    except ImportError:  # pragma: no cover - providers older than the public api module
        from airflow.providers.openlineage.plugins.listener import get_openlineage_listener

        get_openlineage_listener().adapter.emit(event)
        return
    emit(event)


def _run_lineage(task: RunWaitMixin, task_instance: Any, run_id: int) -> Any:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.providers.openlineage.plugins.adapter import _PRODUCER  # type: ignore[attr-defined]

    from .dbt_assets import _node_steps, dbt_subcommand, step_command

    parent = parent_run_metadata(task_instance)
    processor_class = _processor_class()
    inputs: dict[tuple[str, str], Any] = {}
    outputs: dict[tuple[str, str], Any] = {}
    count = 0
    with task.hook.get_conn() as client, tempfile.TemporaryDirectory(prefix=f"dbt-cloud-ol-{run_id}-") as tmp:
        run = client.get_run(run_id, include_related=("run_steps", "job"))
        commands = {step.get("index"): dbt_subcommand(step_command(step)) for step in run.get("run_steps") or []}
        steps = [step for step in _node_steps(run) if step is None or commands.get(step) in LINEAGE_COMMANDS]
        catalog = _download_json(client, run_id, "catalog.json", None, Path(tmp) / "catalog.json")
        profile: Any = None
        namespace = ""
        for step in steps:
            results = _download_json(client, run_id, "run_results.json", step, Path(tmp) / "run_results.json")
            if not results:
                log.info("dbt Cloud run %s step %s has no run_results.json: no lineage from it.", run_id, step)
                continue
            manifest = _download_json(client, run_id, "manifest.json", step, Path(tmp) / "manifest.json")
            if manifest is None:
                log.warning("dbt Cloud run %s step %s has run_results.json but no manifest.json.", run_id, step)
                continue
            if profile is None:
                profile, namespace = _profile(task, client, run, _adapter_type(manifest))
            processor = processor_class(
                producer=_PRODUCER,
                job_namespace=parent.job_namespace,
                skip_errors=False,
                logger=log,
                manifest=manifest,
                run_result=results,
                profile=profile,
                catalog=catalog,
                project_name=(run.get("job") or {}).get("project_name"),
                account_id=str(client.account_id),
            )
            processor.namespace = namespace or None
            processor.dbt_run_metadata = parent
            events = processor.parse()
            for event in events.events():
                _emit(event)
            count += len(events.events())
            for complete in events.completes:
                _merge(complete.outputs or [], outputs)
                _merge(complete.inputs or [], inputs)
    for key in outputs:  # a model the run built and another then read is the run's output, not its input
        inputs.pop(key, None)
    log.info(
        "OpenLineage: %d event(s) for the nodes of dbt Cloud run %s; the task read %d and wrote %d dataset(s).",
        count,
        run_id,
        len(inputs),
        len(outputs),
    )
    return OperatorLineage(inputs=list(inputs.values()), outputs=list(outputs.values()))
