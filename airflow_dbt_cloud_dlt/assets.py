"""One naming rule for warehouse tables as Airflow Assets, and asset events for dlt loads.

The rule (documented in the README, "Naming tables as Assets"):

- A *namespace* names the warehouse, as the OpenLineage dataset naming spec does: ``postgres://host:5432``,
  ``redshift://cluster.region:5439``, ``snowflake://org-account``, ``bigquery``, ``databricks://host``,
  ``duckdb:///path/to/file.duckdb``.
- A table is ``database``, ``schema`` and ``table`` inside it (BigQuery: project, dataset, table; Databricks:
  catalog, schema, table).
- The Asset URI is the form Airflow's own providers register: ``<namespace>/<database>/<schema>/<table>``, e.g.
  ``postgres://host:5432/db/schema/table`` and ``bigquery://project/dataset/table``. DuckDB has no Airflow
  provider; it follows the same pattern on OpenLineage's ``duckdb://{path}`` namespace, written as Airflow stores
  a URI without authority: ``duckdb:/abs/path/file.duckdb/catalog/schema/table``.
- Identifiers are folded the way the warehouse folds unquoted names (Snowflake upper, Postgres, Redshift,
  Databricks and DuckDB lower, BigQuery as given), so dlt (which writes ``ORDERS`` to Snowflake) and dbt (whose
  manifest says ``orders``) name the same table the same way.

dlt destinations (:func:`dlt_table_asset_uri`) and dbt relations (:func:`dbt_node_asset_uri`) both go through
:func:`table_asset_uri`. The namespace is set once per connection with the extra ``asset_namespace``
(:func:`namespace_from_extras`) and can be overridden per call. A warehouse this module does not know raises
:class:`UnsupportedWarehouseError`; it never guesses.

Importing this module imports neither Airflow nor dlt: they load when an asset object or a ``LoadInfo`` is used.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

if TYPE_CHECKING:
    from dlt.common.pipeline import LoadInfo

__all__ = [
    "ASSET_NAMESPACE_EXTRA",
    "SUPPORTED_WAREHOUSES",
    "DltLoadError",
    "LoadedTable",
    "TableName",
    "UnsupportedWarehouseError",
    "asset",
    "asset_alias",
    "asset_for_table",
    "dbt_node_asset_uri",
    "dlt_asset_alias",
    "dlt_load_asset_events",
    "dlt_namespace",
    "dlt_table_asset_uri",
    "emit_dlt_load_assets",
    "loaded_tables",
    "namespace_from_extras",
    "parse_table_asset_uri",
    "resolve_namespace",
    "table_asset_uri",
    "warehouse_namespace",
    "with_dlt_asset_events",
]

log = logging.getLogger(__name__)

ASSET_NAMESPACE_EXTRA = "asset_namespace"
"""The connection extra that names the warehouse, e.g. ``{"asset_namespace": "snowflake://myorg-myaccount"}``."""

DEFAULT_DLT_ALIAS = "dlt_loads"


@dataclass(frozen=True)
class _Warehouse:
    """How one warehouse names its tables: the URI scheme, default port, identifier case and the spec's hint."""

    scheme: str
    example: str
    default_port: int | None = None
    fold: Callable[[str], str] | None = str.lower  # None: case-sensitive, keep as given


def _keep(value: str) -> str:
    return value


_WAREHOUSES: dict[str, _Warehouse] = {
    "postgres": _Warehouse("postgres", "postgres://host:5432", default_port=5432),
    "redshift": _Warehouse("redshift", "redshift://cluster.region:5439", default_port=5439),
    "snowflake": _Warehouse("snowflake", "snowflake://org-account", fold=str.upper),
    "bigquery": _Warehouse("bigquery", "bigquery", fold=_keep),
    "databricks": _Warehouse("databricks", "databricks://workspace.cloud.databricks.com"),
    "duckdb": _Warehouse("duckdb", "duckdb:///path/to/file.duckdb"),
}
SUPPORTED_WAREHOUSES: tuple[str, ...] = tuple(_WAREHOUSES)
_ALIASES = {"postgresql": "postgres", "duckdb": "duckdb", "motherduck": None}


class UnsupportedWarehouseError(ValueError):
    """The warehouse, or its namespace, cannot be named by the rule; the message says what to set."""


class DltLoadError(RuntimeError):
    """A dlt load had failed jobs, so its tables are not announced as updated."""


def _how_to_set(kind: str | None = None) -> str:
    examples = ", ".join(f"{name}: {w.example!r}" for name, w in _WAREHOUSES.items())
    hint = f" (for {kind}: {_WAREHOUSES[kind].example!r})" if kind in _WAREHOUSES else ""
    return (
        f"Supported warehouses: {', '.join(SUPPORTED_WAREHOUSES)}. Set the namespace once on the connection with "
        f'the extra {{"{ASSET_NAMESPACE_EXTRA}": "<namespace>"}}{hint}, or pass namespace=... to the call. '
        f"Namespaces: {examples}."
    )


def _warehouse_of(kind: str) -> str:
    name = kind.strip().lower()
    name = _ALIASES.get(name, name) or ""
    if name not in _WAREHOUSES:
        raise UnsupportedWarehouseError(f"Cannot name tables of warehouse {kind!r} as Assets. {_how_to_set()}")
    return name


def _host(value: str) -> str:
    """A host from a bare name or a URL (``https://h/`` -> ``h``), lower-cased."""
    value = value.strip()
    if "://" in value:
        value = urlsplit(value).netloc
    return value.strip("/").lower()


def _snowflake_account(account: str) -> str:
    """The account as OpenLineage writes it: ``org-account``, or a locator completed to ``loc.region.cloud``."""
    parts = account.strip().lower().split(".")
    if "-" in parts[0] or len(parts) >= 3:
        return parts[0] if "-" in parts[0] else ".".join(parts[:3])
    return f"{parts[0]}.us-west-1.aws" if len(parts) == 1 else f"{parts[0]}.{parts[1]}.aws"


def _redshift_authority(host: str) -> str:
    """``cluster.region`` for a provisioned cluster endpoint (as OpenLineage does), else the host itself."""
    parts = host.split(".")
    if host.endswith(".redshift.amazonaws.com") and len(parts) == 6:
        return f"{parts[0]}.{parts[2]}"
    return host


def warehouse_namespace(
    warehouse: str,
    *,
    host: str | None = None,
    port: int | None = None,
    account: str | None = None,
    path: str | None = None,
) -> str:
    """The OpenLineage namespace of a warehouse from its location (host/port, Snowflake account, DuckDB path)."""
    kind = _warehouse_of(warehouse)
    w = _WAREHOUSES[kind]
    if kind == "bigquery":
        return "bigquery"
    if kind == "snowflake":
        if not (account or host):
            raise UnsupportedWarehouseError(f"A Snowflake namespace needs the account. {_how_to_set(kind)}")
        return f"snowflake://{_snowflake_account(account or host or '')}"
    if kind == "duckdb":
        if not path or path == ":memory:":
            raise UnsupportedWarehouseError(f"A DuckDB namespace needs the database file's path. {_how_to_set(kind)}")
        return f"duckdb://{quote(os.path.abspath(path))}"
    if not host:
        raise UnsupportedWarehouseError(f"A {kind} namespace needs the host. {_how_to_set(kind)}")
    authority = _host(host)
    if kind == "redshift":
        authority = _redshift_authority(authority)
    if kind == "databricks":
        return f"databricks://{authority}"
    return f"{w.scheme}://{authority}:{port or w.default_port}"


@dataclass(frozen=True)
class TableName:
    """A table named by the rule: its warehouse, OpenLineage namespace and the three name parts."""

    warehouse: str
    namespace: str
    database: str
    schema: str
    table: str

    @property
    def uri(self) -> str:
        """The Airflow Asset URI."""
        base = self.namespace
        if self.warehouse == "bigquery":
            base = "bigquery:/"
        elif self.warehouse == "duckdb":  # Airflow stores duckdb:///p as duckdb:/p (no authority); so do we
            base = "duckdb:" + self.namespace[len("duckdb://") :]
        return "/".join([base, *(quote(part, safe="") for part in (self.database, self.schema, self.table))])

    @property
    def openlineage_name(self) -> str:
        """The OpenLineage dataset name, ``database.schema.table``."""
        return f"{self.database}.{self.schema}.{self.table}"


def _split_namespace(namespace: str) -> tuple[str, str]:
    """(warehouse, canonical namespace) of an OpenLineage namespace; raises when it cannot be used."""
    text = namespace.strip()
    if text.lower().rstrip("/") in ("bigquery", "bigquery:"):
        return "bigquery", "bigquery"
    if text.lower().startswith("duckdb:/") and not text.lower().startswith("duckdb://"):  # the Asset URI form
        text = "duckdb://" + text[len("duckdb:") :]
    if "://" not in text:
        raise UnsupportedWarehouseError(
            f"Asset namespace {namespace!r} is not a URI like 'postgres://host:5432'. {_how_to_set()}"
        )
    scheme, rest = text.split("://", 1)
    rest = rest.rstrip("/")
    kind = _warehouse_of(scheme)
    if kind == "bigquery":
        return "bigquery", "bigquery"
    if kind == "duckdb":
        return kind, warehouse_namespace(kind, path=unquote(rest))
    parts = urlsplit(f"{kind}://{rest}")
    if "@" in parts.netloc or parts.path not in ("", "/"):
        raise UnsupportedWarehouseError(
            f"Asset namespace {namespace!r} must be only '{kind}://<authority>' (no user, password or path). {_how_to_set(kind)}"
        )
    if kind == "snowflake":
        return kind, warehouse_namespace(kind, account=parts.netloc)
    return kind, warehouse_namespace(kind, host=parts.hostname or "", port=parts.port)


def table_asset_uri(namespace: str, database: str | None, schema: str | None, table: str) -> str:
    """The Asset URI of ``database.schema.table`` in the warehouse ``namespace`` (an OpenLineage namespace)."""
    return asset_for_table(namespace, database, schema, table).uri


def asset_for_table(namespace: str, database: str | None, schema: str | None, table: str) -> TableName:
    """The table named by the rule; see :func:`table_asset_uri`."""
    kind, canonical = _split_namespace(namespace)
    parts = {"database": database, "schema": schema, "table": table}
    missing = [name for name, value in parts.items() if not value or not str(value).strip()]
    if missing:
        label = {"bigquery": "project, dataset and table", "databricks": "catalog, schema and table"}
        raise ValueError(
            f"A {kind} table needs {label.get(kind, 'database, schema and table')}; missing {', '.join(missing)} "
            f"in {parts}"
        )
    fold = _WAREHOUSES[kind].fold or _keep
    db, sch, tbl = (fold(str(parts[name]).strip().strip('"`')) for name in ("database", "schema", "table"))
    return TableName(kind, canonical, db, sch, tbl)


def parse_table_asset_uri(uri: str) -> TableName:
    """The table an Asset URI made by this rule names (the inverse of :func:`table_asset_uri`)."""
    head, _, table = uri.rstrip("/").rpartition("/")
    head, _, schema = head.rpartition("/")
    head, _, database = head.rpartition("/")
    namespace = "bigquery" if head == "bigquery:/" else head  # bigquery://project/dataset/table
    return asset_for_table(namespace, unquote(database), unquote(schema), unquote(table))


def namespace_from_extras(extras: Mapping[str, Any] | None) -> str | None:
    """The connection's ``asset_namespace`` extra, checked; ``None`` when the connection has none."""
    value = (extras or {}).get(ASSET_NAMESPACE_EXTRA)
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise UnsupportedWarehouseError(
            f"The connection extra {ASSET_NAMESPACE_EXTRA!r} must be a string, got {value!r}."
        )
    return _split_namespace(value)[1]


def resolve_namespace(
    namespace: str | None = None, extras: Mapping[str, Any] | None = None, *, warehouse: str | None = None
) -> str:
    """The namespace to use: the per-call ``namespace``, else the connection's extra, else BigQuery's fixed one.

    ``warehouse`` (a dbt adapter type or dlt destination type) is checked against the namespace, so a Snowflake
    table is never named in a Postgres namespace.
    """
    chosen = namespace or namespace_from_extras(extras)
    kind = _warehouse_of(warehouse) if warehouse else None
    if not chosen:
        if kind == "bigquery":
            return "bigquery"
        raise UnsupportedWarehouseError(f"No asset namespace for {warehouse or 'this table'}. {_how_to_set(kind)}")
    found, canonical = _split_namespace(chosen)
    if kind and found != kind:
        raise UnsupportedWarehouseError(
            f"The asset namespace {chosen!r} is for {found}, but the table is in {kind}. {_how_to_set(kind)}"
        )
    return canonical


# dbt relations ---------------------------------------------------------------------------------------------------


def dbt_node_asset_uri(
    node: Mapping[str, Any],
    *,
    adapter_type: str | None = None,
    namespace: str | None = None,
    extras: Mapping[str, Any] | None = None,
) -> str:
    """The Asset URI of a manifest.json node or source (``database``, ``schema``, ``identifier``/``alias``).

    ``adapter_type`` is the manifest's ``metadata.adapter_type``; it is checked against the namespace.
    """
    table = node.get("identifier") or node.get("alias") or node.get("name")
    if not table:
        raise ValueError(f"dbt node {node.get('unique_id', node)!r} has no identifier, alias or name")
    chosen = resolve_namespace(namespace, extras, warehouse=adapter_type)
    return table_asset_uri(chosen, node.get("database"), node.get("schema"), str(table))


# dlt destinations ------------------------------------------------------------------------------------------------


def _get(obj: Any, *names: str) -> Any:
    for name in names:
        value = obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)
        if value not in (None, ""):
            return value
    return None


def _dlt_kind(destination_type: str) -> str:
    """``dlt.destinations.postgres`` or ``postgres`` -> ``postgres``."""
    return _warehouse_of(destination_type.rsplit(".", 1)[-1])


def dlt_namespace(destination_type: str, credentials: Any, *, config: Any = None) -> str:
    """The namespace of a dlt destination from its (resolved) credentials object or mapping."""
    kind = _dlt_kind(destination_type)
    if kind == "bigquery":
        return "bigquery"
    if kind == "duckdb":
        return warehouse_namespace(kind, path=_get(credentials, "database", "path"))
    if kind == "snowflake":
        return warehouse_namespace(kind, account=_get(credentials, "host", "account"))
    host = _get(credentials, "server_hostname", "host")
    port = _get(credentials, "port")
    return warehouse_namespace(kind, host=host, port=int(port) if port else None)


def dlt_table_asset_uri(
    destination_type: str,
    credentials: Any,
    dataset_name: str,
    table: str,
    *,
    namespace: str | None = None,
    config: Any = None,
) -> str:
    """The Asset URI of ``table`` that dlt loaded into ``dataset_name`` of a destination.

    The database is the credentials' database (Postgres, Redshift, Snowflake), the project (BigQuery), the
    catalog (Databricks) or the DuckDB file's catalog (its file name without extension).
    """
    kind = _dlt_kind(destination_type)
    chosen = resolve_namespace(namespace or dlt_namespace(destination_type, credentials, config=config), warehouse=kind)
    if kind == "bigquery":
        database = _get(config, "project_id") if config is not None else None
        database = database or _get(credentials, "project_id")
    elif kind == "databricks":
        database = _get(credentials, "catalog")
    elif kind == "duckdb":
        path = _get(credentials, "database", "path") or ""
        database = os.path.splitext(os.path.basename(str(path)))[0]
    else:
        database = _get(credentials, "database")
    return table_asset_uri(chosen, database, dataset_name, table)


# dlt LoadInfo -> asset events -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedTable:
    """One table a dlt load wrote, with what the asset event's ``extra`` carries."""

    uri: str
    table: str
    load_ids: tuple[str, ...]
    rows: int | None
    schema_changes: tuple[str, ...]  # new or changed columns in this load
    dataset_name: str
    pipeline_name: str | None

    @property
    def extra(self) -> dict[str, Any]:
        """The asset event's ``extra`` (JSON-serialisable)."""
        return {
            "source": "dlt",
            "table": self.table,
            "dataset_name": self.dataset_name,
            "pipeline_name": self.pipeline_name,
            "load_id": self.load_ids[-1],
            "load_ids": list(self.load_ids),
            "rows": self.rows,
            "schema_changes": list(self.schema_changes),
        }


def _raise_on_failed_jobs(load_info: LoadInfo) -> None:
    failed: list[str] = []
    for package in load_info.load_packages:
        for job in package.jobs.get("failed_jobs", []):
            message = (getattr(job, "failed_message", None) or "").strip().splitlines()
            failed.append(
                f"{job.job_file_info.table_name} (load {package.load_id}): {message[-1] if message else 'failed'}"
            )
    if failed:
        raise DltLoadError(
            f"The dlt load has {len(failed)} failed job(s), so no asset events were emitted: {'; '.join(failed)}. "
            "Fix the load, or run the pipeline with load.raise_on_failed_jobs=true to fail the task at the load."
        )


def _row_counts(load_info: LoadInfo) -> dict[str, int]:
    """Rows per table from the pipeline's last normalize step, when it normalized these loads."""
    try:
        trace = load_info.pipeline.last_trace  # type: ignore[attr-defined]
        normalize = trace.last_normalize_info if trace else None
    except Exception:  # a pipeline without a trace (e.g. wiped working folder): no counts
        return {}
    if normalize is None or not set(normalize.loads_ids) & set(load_info.loads_ids):
        return {}
    return dict(normalize.row_counts)


def _destination(load_info: LoadInfo) -> tuple[Any, Any]:
    """(credentials, config) of the destination the load wrote to."""
    try:
        config = load_info.pipeline.destination_client().config  # type: ignore[attr-defined]
        return config.credentials, config
    except Exception as exc:
        raise UnsupportedWarehouseError(
            f"Cannot read the destination of pipeline {getattr(load_info.pipeline, 'pipeline_name', '?')}: {exc}. "
            f"Pass namespace=... (and database=...) explicitly. {_how_to_set()}"
        ) from exc


def loaded_tables(
    load_info: LoadInfo,
    *,
    namespace: str | None = None,
    extras: Mapping[str, Any] | None = None,
    database: str | None = None,
    include_child_tables: bool = True,
) -> list[LoadedTable]:
    """The data tables a dlt load wrote, named by the rule; raises :class:`DltLoadError` on failed jobs.

    dlt's own tables (``_dlt_loads``, ``_dlt_version``, ``_dlt_pipeline_state``) are left out, and so are child
    tables (``orders__items``) when ``include_child_tables`` is false.
    """
    _raise_on_failed_jobs(load_info)
    kind = _dlt_kind(load_info.destination_type or load_info.destination_name or "")
    chosen_ns = namespace or namespace_from_extras(extras)
    credentials, config = (None, None) if chosen_ns and database else _destination(load_info)
    rows = _row_counts(load_info)
    per_table: dict[str, dict[str, Any]] = {}
    for package in load_info.load_packages:
        for job in package.jobs.get("completed_jobs", []):
            name = job.job_file_info.table_name
            if name.startswith("_dlt") or (not include_child_tables and "__" in name):
                continue
            entry = per_table.setdefault(name, {"load_ids": [], "changes": []})
            if package.load_id not in entry["load_ids"]:
                entry["load_ids"].append(package.load_id)
            update = package.schema_update.get(name) or {}
            for column in update.get("columns", {}):
                if column not in entry["changes"]:
                    entry["changes"].append(column)
    result = []
    for name, entry in per_table.items():
        if database is not None:
            ns = resolve_namespace(chosen_ns or dlt_namespace(kind, credentials, config=config), warehouse=kind)
            uri = table_asset_uri(ns, database, load_info.dataset_name, name)
        else:
            uri = dlt_table_asset_uri(
                kind, credentials, load_info.dataset_name, name, namespace=chosen_ns, config=config
            )
        result.append(
            LoadedTable(
                uri=uri,
                table=name,
                load_ids=tuple(entry["load_ids"]),
                rows=rows.get(name),
                schema_changes=tuple(entry["changes"]),
                dataset_name=load_info.dataset_name,
                pipeline_name=getattr(load_info.pipeline, "pipeline_name", None),
            )
        )
    return result


# Airflow objects: the one place that knows Airflow 3 from 2.11 for assets ---------------------------------------
# (_assets_compat: move into airflow_dbt_cloud_dlt/_compat.py once its owner is done with it.)


def _asset_classes() -> tuple[type, type]:
    """(Asset, AssetAlias) on Airflow 3; (Dataset, DatasetAlias) on 2.11."""
    try:
        from airflow.sdk import Asset, AssetAlias

        return Asset, AssetAlias
    except ImportError:  # Airflow 2.11
        from airflow.datasets import Dataset, DatasetAlias

        return Dataset, DatasetAlias


def _current_outlet_events() -> Any:
    try:
        from airflow.sdk import get_current_context
    except ImportError:  # Airflow 2.11
        from airflow.operators.python import (  # type: ignore[no-redef,attr-defined,unused-ignore]
            get_current_context,
        )
    return get_current_context()["outlet_events"]


def _event_extra(extra: Mapping[str, Any]) -> dict[str, Any]:
    """An event ``extra`` Airflow accepts: 2.11 hashes its items (``frozenset(extra.items())``), so lists become
    tuples there (stored as the same JSON arrays); Airflow 3 takes JSON values as they are."""
    try:
        import airflow.sdk  # noqa: F401

        return dict(extra)
    except ImportError:  # Airflow 2.11
        return {key: tuple(value) if isinstance(value, list) else value for key, value in extra.items()}


def asset(uri: str, extra: Mapping[str, Any] | None = None) -> Any:
    """An ``Asset`` (Airflow 3) or ``Dataset`` (2.11) for a URI made by the rule."""
    cls, _ = _asset_classes()
    return cls(uri=uri, extra=dict(extra or {}))


def asset_alias(name: str) -> Any:
    """An ``AssetAlias`` (Airflow 3) or ``DatasetAlias`` (2.11)."""
    _, cls = _asset_classes()
    return cls(name=name)


def dlt_asset_alias(name: str = DEFAULT_DLT_ALIAS) -> Any:
    """The alias a dlt task lists in ``outlets`` so that it can emit events for tables known only at run time."""
    return asset_alias(name)


def dlt_load_asset_events(
    load_info: LoadInfo,
    outlet_events: Any = None,
    *,
    alias: str | Any = DEFAULT_DLT_ALIAS,
    namespace: str | None = None,
    extras: Mapping[str, Any] | None = None,
    database: str | None = None,
    include_child_tables: bool = True,
) -> list[LoadedTable]:
    """Emit one asset event per table the load wrote, through ``alias`` (which the task lists in ``outlets``).

    ``outlet_events`` defaults to the running task's. Returns the tables, so a ``@task`` can also return them
    (``[t.uri for t in ...]``) for a later ``select_from_load``.
    """
    tables = loaded_tables(
        load_info, namespace=namespace, extras=extras, database=database, include_child_tables=include_child_tables
    )
    events = outlet_events if outlet_events is not None else _current_outlet_events()
    key = asset_alias(alias) if isinstance(alias, str) else alias
    for table in tables:
        events[key].add(asset(table.uri), extra=_event_extra(table.extra))
        log.info("dlt load: asset event for %s (%s rows)", table.uri, table.rows)
    if not tables:
        log.info("dlt load wrote no data tables; no asset events")
    return tables


emit_dlt_load_assets = dlt_load_asset_events


def with_dlt_asset_events(
    tasks: Sequence[Any] | Any,
    *,
    alias: str = DEFAULT_DLT_ALIAS,
    namespace: str | None = None,
    database: str | None = None,
    include_child_tables: bool = True,
) -> list[Any]:
    """Make the tasks of dlt's ``PipelineTasksGroup.add_run`` emit asset events for what each one loaded.

    Each task gets ``alias`` in its ``outlets``; after dlt's callable runs, the active pipeline's last
    ``LoadInfo`` is turned into events by :func:`dlt_load_asset_events`. Start/end placeholder tasks are left as
    they are. Returns the tasks, so ``with_dlt_asset_events(tasks.add_run(...))`` reads naturally.
    """
    items: Iterable[Any] = tasks if isinstance(tasks, Sequence) else [tasks]
    out = list(items)
    for task in out:
        callable_ = getattr(task, "python_callable", None)
        if callable_ is None:
            continue
        key = asset_alias(alias)
        if key not in (task.outlets or []):
            task.outlets = [*(task.outlets or []), key]
        task.python_callable = _EmitAfter(callable_, alias, namespace, database, include_child_tables)
    return out


class _EmitAfter:
    """The dlt task callable, then asset events for the load it ran (picklable, unlike a closure)."""

    def __init__(
        self, inner: Callable[..., Any], alias: str, namespace: str | None, database: str | None, children: bool
    ) -> None:
        self.inner, self.alias, self.namespace, self.database, self.children = (
            inner,
            alias,
            namespace,
            database,
            children,
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        import dlt

        result = self.inner(*args, **kwargs)
        trace = dlt.current.pipeline().last_trace
        load_info = trace.last_load_info if trace else None
        if load_info is None:
            log.info("the dlt task produced no LoadInfo; no asset events")
            return result
        dlt_load_asset_events(
            load_info,
            alias=self.alias,
            namespace=self.namespace,
            database=self.database,
            include_child_tables=self.children,
        )
        return result
