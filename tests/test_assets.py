"""The naming rule for tables as Assets, its dbt and dlt adapters, and asset events from real dlt loads.

Runs on Airflow 3 (Asset/AssetAlias) and 2.11 (Dataset/DatasetAlias) with the same assertions. The expected
URIs are the forms Airflow's own providers register (postgres, redshift, snowflake, bigquery and databricks
``assets/`` modules, whose ``sanitize_uri`` demand ``scheme://authority/a/b/c``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import AIRFLOW_2

from airflow_dbt_cloud_dlt import assets
from airflow_dbt_cloud_dlt.assets import (
    DltLoadError,
    UnsupportedWarehouseError,
    dbt_node_asset_uri,
    dlt_table_asset_uri,
    namespace_from_extras,
    parse_table_asset_uri,
    resolve_namespace,
    table_asset_uri,
)

# dlt looks for an Airflow Variable ``dlt_secrets_toml`` when Airflow is installed; an env-var Variable answers
# before the (absent) metadata database.
os.environ.setdefault("AIRFLOW_VAR_DLT_SECRETS_TOML", "# no dlt secrets in tests")


# --- the rule --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("namespace", "parts", "uri"),
    [
        (
            "postgres://db.example.com:5432",
            ("shop", "public", "orders"),
            "postgres://db.example.com:5432/shop/public/orders",
        ),
        (
            "postgresql://DB.example.com",
            ("Shop", "Public", "Orders"),
            "postgres://db.example.com:5432/shop/public/orders",
        ),
        (
            "redshift://examplecluster.abc123xyz789.us-west-2.redshift.amazonaws.com:5439",
            ("dev", "raw", "orders"),
            "redshift://examplecluster.us-west-2:5439/dev/raw/orders",
        ),
        ("redshift://cluster.us-east-1", ("dev", "raw", "orders"), "redshift://cluster.us-east-1:5439/dev/raw/orders"),
        (
            "snowflake://MyOrg-MyAccount",
            ("analytics", "raw", "orders"),
            "snowflake://myorg-myaccount/ANALYTICS/RAW/ORDERS",
        ),
        ("snowflake://xy12345.us-east-1", ("A", "B", "C"), "snowflake://xy12345.us-east-1.aws/A/B/C"),
        ("bigquery", ("my-project", "raw", "Orders"), "bigquery://my-project/raw/Orders"),
        (
            "databricks://My-Workspace.cloud.databricks.com",
            ("Main", "Default", "Users"),
            "databricks://my-workspace.cloud.databricks.com/main/default/users",
        ),
        (
            "duckdb:///data/warehouse.duckdb",
            ("warehouse", "raw", "orders"),
            "duckdb:/data/warehouse.duckdb/warehouse/raw/orders",
        ),
    ],
)
def test_table_asset_uri_follows_the_provider_forms(namespace: str, parts: tuple[str, str, str], uri: str) -> None:
    assert table_asset_uri(namespace, *parts) == uri
    named = parse_table_asset_uri(uri)
    assert named.uri == uri  # the URI names the table it was made from
    assert named.openlineage_name == ".".join(named.uri.split("/")[-3:])


def test_openlineage_namespace_and_name() -> None:
    named = assets.asset_for_table("postgres://h:5432", "db", "public", "orders")
    assert (named.namespace, named.openlineage_name) == ("postgres://h:5432", "db.public.orders")


@pytest.mark.parametrize("namespace", ["mssql://h:1433", "oracle://h:1521", "motherduck://x", "mysql://h:3306"])
def test_unknown_warehouse_names_the_supported_ones_and_how_to_set_the_namespace(namespace: str) -> None:
    with pytest.raises(UnsupportedWarehouseError) as info:
        table_asset_uri(namespace, "d", "s", "t")
    message = str(info.value)
    assert all(name in message for name in ("postgres", "snowflake", "bigquery", "redshift", "databricks", "duckdb"))
    assert '"asset_namespace"' in message and "namespace=" in message


@pytest.mark.parametrize(
    ("namespace", "needle"),
    [
        ("postgres://user:secret@h:5432", "no user, password or path"),
        ("postgres://h:5432/db", "no user, password or path"),
        ("just-a-name", "is not a URI"),
        ("postgres://", "needs the host"),
        ("duckdb://:memory:", "path"),
    ],
)
def test_bad_namespaces_are_rejected_not_guessed(namespace: str, needle: str) -> None:
    with pytest.raises(UnsupportedWarehouseError, match=needle):
        table_asset_uri(namespace, "d", "s", "t")


def test_a_missing_name_part_is_an_error() -> None:
    with pytest.raises(ValueError, match="missing schema"):
        table_asset_uri("postgres://h:5432", "db", "", "orders")
    with pytest.raises(ValueError, match="project, dataset and table"):
        table_asset_uri("bigquery", None, "raw", "orders")


# --- once per connection, overridden per call ---------------------------------------------------------------------


def test_namespace_from_connection_extras_and_per_call_override() -> None:
    extras = {"asset_namespace": "postgres://Warehouse.internal"}
    assert namespace_from_extras(extras) == "postgres://warehouse.internal:5432"
    assert namespace_from_extras({}) is None and namespace_from_extras(None) is None
    assert resolve_namespace(None, extras, warehouse="postgres") == "postgres://warehouse.internal:5432"
    assert resolve_namespace("postgres://other:6543", extras) == "postgres://other:6543"
    with pytest.raises(UnsupportedWarehouseError, match="must be a string"):
        namespace_from_extras({"asset_namespace": 5432})


def test_namespace_of_another_warehouse_is_refused() -> None:
    with pytest.raises(UnsupportedWarehouseError, match="is for postgres, but the table is in snowflake"):
        resolve_namespace(None, {"asset_namespace": "postgres://h:5432"}, warehouse="snowflake")


def test_no_namespace_is_an_error_except_for_bigquery() -> None:
    with pytest.raises(UnsupportedWarehouseError, match=r"No asset namespace for snowflake.*snowflake://org-account"):
        resolve_namespace(None, {}, warehouse="snowflake")
    assert resolve_namespace(None, {}, warehouse="bigquery") == "bigquery"


# --- dbt relations and dlt destinations name the same table the same way ---------------------------------------

SOURCE = {  # as in manifest.json v12 "sources"
    "unique_id": "source.analytics.raw.orders",
    "resource_type": "source",
    "database": "ANALYTICS",
    "schema": "raw",
    "name": "orders",
    "identifier": "orders",
    "relation_name": "ANALYTICS.raw.orders",
}
MODEL = {  # as in manifest.json v12 "nodes"
    "unique_id": "model.analytics.fct_orders",
    "resource_type": "model",
    "database": "analytics",
    "schema": "marts",
    "name": "fct_orders",
    "alias": "fact_orders",
}


def test_dbt_node_uses_identifier_for_sources_and_alias_for_models() -> None:
    extras = {"asset_namespace": "snowflake://myorg-acct"}
    assert (
        dbt_node_asset_uri(SOURCE, adapter_type="snowflake", extras=extras)
        == "snowflake://myorg-acct/ANALYTICS/RAW/ORDERS"
    )
    assert dbt_node_asset_uri(MODEL, adapter_type="snowflake", extras=extras).endswith("/ANALYTICS/MARTS/FACT_ORDERS")
    renamed = SOURCE | {"name": "orders_src", "identifier": "orders"}
    assert dbt_node_asset_uri(renamed, namespace="snowflake://myorg-acct").endswith("/ORDERS")


def test_snowflake_table_loaded_by_dlt_is_the_source_dbt_reads() -> None:
    from dlt.destinations.impl.snowflake.configuration import SnowflakeCredentials

    creds = SnowflakeCredentials()
    creds.host, creds.database = "MYORG-ACCT", "ANALYTICS"
    dlt_uri = dlt_table_asset_uri("dlt.destinations.snowflake", creds, "RAW", "ORDERS")
    dbt_uri = dbt_node_asset_uri(SOURCE, adapter_type="snowflake", extras={"asset_namespace": "snowflake://myorg-acct"})
    assert dlt_uri == dbt_uri == "snowflake://myorg-acct/ANALYTICS/RAW/ORDERS"


def test_postgres_bigquery_databricks_credentials() -> None:
    from dlt.common.configuration.specs import ConnectionStringCredentials, GcpServiceAccountCredentials
    from dlt.destinations.impl.databricks.configuration import DatabricksCredentials

    pg = ConnectionStringCredentials("postgresql://loader:pw@PG.internal:6543/shop")
    assert dlt_table_asset_uri("postgres", pg, "raw", "orders") == "postgres://pg.internal:6543/shop/raw/orders"
    assert "pw" not in dlt_table_asset_uri("postgres", pg, "raw", "orders")
    gcp = GcpServiceAccountCredentials()
    gcp.project_id = "my-project"
    assert dlt_table_asset_uri("bigquery", gcp, "raw", "orders") == "bigquery://my-project/raw/orders"
    dbx = DatabricksCredentials()
    dbx.server_hostname, dbx.catalog = "adb-1.2.azuredatabricks.net", "Main"
    assert (
        dlt_table_asset_uri("databricks", dbx, "raw", "orders")
        == "databricks://adb-1.2.azuredatabricks.net/main/raw/orders"
    )
    with pytest.raises(UnsupportedWarehouseError, match="Supported warehouses"):
        dlt_table_asset_uri("dlt.destinations.mssql", pg, "raw", "orders")


# --- real dlt loads into DuckDB -----------------------------------------------------------------------------------


def _pipeline(tmp_path: Path, name: str = "shop", own_dir: bool = True) -> Any:
    import dlt

    return dlt.pipeline(
        pipeline_name=name,
        destination=dlt.destinations.duckdb(str(tmp_path / "warehouse.duckdb")),
        dataset_name="raw",
        **({"pipelines_dir": str(tmp_path / "pipelines")} if own_dir else {}),
    )


def _orders(extra_column: bool = False) -> Any:
    import dlt

    @dlt.resource(name="orders", write_disposition="append")
    def orders() -> Any:
        row = {"order_id": 3, "customer_id": 1, "amount": 9.5, "items": [{"sku": "a"}, {"sku": "b"}]}
        yield [{"order_id": 1, "customer_id": 1, "amount": 1.5, "items": [{"sku": "c"}]}, row]
        if extra_column:
            yield {"order_id": 4, "customer_id": 2, "amount": 2.0, "coupon": "X1"}

    @dlt.resource(name="customers", write_disposition="replace")
    def customers() -> Any:
        yield [{"customer_id": 1, "name": "alice"}, {"customer_id": 2, "name": "bob"}, {"customer_id": 3, "name": "c"}]

    return [orders(), customers()]


def _outlet_events() -> Any:
    if AIRFLOW_2:
        from airflow.utils.context import OutletEventAccessors
    else:
        from airflow.sdk.execution_time.context import OutletEventAccessors
    return OutletEventAccessors()


def _alias_events(events: Any, alias: str) -> list[tuple[str, dict[str, Any]]]:
    accessor = events[assets.asset_alias(alias)]
    if AIRFLOW_2:
        return [(e["dest_dataset_uri"], e["extra"]) for e in accessor.dataset_alias_events]  # TypedDicts on 2.11
    return [(e.dest_asset_key.uri, e.extra) for e in accessor.asset_alias_events]


@pytest.fixture(scope="module")
def first_load(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """One real dlt load into DuckDB, shared by the tests that only read its LoadInfo."""
    tmp_path = tmp_path_factory.mktemp("first_load")
    return tmp_path, _pipeline(tmp_path).run(_orders())


def test_real_load_emits_one_event_per_table_with_rows_and_load_id(first_load: tuple[Path, Any]) -> None:
    tmp_path, info = first_load
    events = _outlet_events()
    tables = assets.dlt_load_asset_events(info, events, alias="shop_loads")

    ns = f"duckdb://{tmp_path}/warehouse.duckdb"
    base = f"duckdb:{tmp_path}/warehouse.duckdb/warehouse/raw"
    emitted = dict(_alias_events(events, "shop_loads"))
    assert set(emitted) == {f"{base}/orders", f"{base}/orders__items", f"{base}/customers"}  # no _dlt_* tables
    assert [t.uri for t in tables] and {t.uri for t in tables} == set(emitted)
    orders = emitted[f"{base}/orders"]
    assert orders["load_id"] == info.loads_ids[-1] and orders["rows"] == 2
    assert emitted[f"{base}/customers"]["rows"] == 3 and emitted[f"{base}/orders__items"]["rows"] == 3
    assert {"order_id", "customer_id", "amount"} <= set(orders["schema_changes"])  # the first load creates them
    # the table a dbt source reads in the same file is the same Asset
    source = {"database": "warehouse", "schema": "raw", "identifier": "orders"}
    assert dbt_node_asset_uri(source, adapter_type="duckdb", namespace=ns) == f"{base}/orders"


def test_second_load_reports_only_the_new_column_and_child_tables_can_be_left_out(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path)
    pipeline.run(_orders())
    info = pipeline.run(_orders(extra_column=True))
    tables = {t.table: t for t in assets.loaded_tables(info, include_child_tables=False)}
    assert set(tables) == {"orders", "customers"}
    assert tables["orders"].schema_changes == ("coupon",) and tables["customers"].schema_changes == ()
    assert tables["orders"].rows == 3


def test_events_are_real_airflow_assets(first_load: tuple[Path, Any]) -> None:
    _, info = first_load
    uri = assets.loaded_tables(info)[0].uri
    made = assets.asset(uri)
    if AIRFLOW_2:
        from airflow.datasets import Dataset, DatasetAlias

        assert isinstance(made, Dataset) and isinstance(assets.dlt_asset_alias(), DatasetAlias)
    else:
        from airflow.sdk import Asset, AssetAlias

        assert isinstance(made, Asset) and isinstance(assets.dlt_asset_alias(), AssetAlias)
    assert made.uri == uri  # Airflow's own URI sanitising leaves the rule's URI unchanged


def test_namespace_and_database_overrides_skip_the_destination(first_load: tuple[Path, Any]) -> None:
    _, info = first_load
    tables = assets.loaded_tables(info, extras={"asset_namespace": "duckdb:///shared/wh.duckdb"}, database="wh")
    assert {t.uri for t in tables} >= {"duckdb:/shared/wh.duckdb/wh/raw/orders"}
    with pytest.raises(UnsupportedWarehouseError, match="is for postgres, but the table is in duckdb"):
        assets.loaded_tables(info, namespace="postgres://h:5432", database="wh")


def test_load_with_failed_jobs_is_a_clear_error_and_emits_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import duckdb

    monkeypatch.setenv("LOAD__RAISE_ON_FAILED_JOBS", "false")
    pipeline = _pipeline(tmp_path, "failing")
    pipeline.run([{"order_id": 1}], table_name="orders")
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as db:
        db.execute("CREATE UNIQUE INDEX uq_orders ON raw.orders(order_id)")
    info = pipeline.run([{"order_id": 1}], table_name="orders")
    assert info.has_failed_jobs
    events = _outlet_events()
    with pytest.raises(DltLoadError, match=r"1 failed job.*orders \(load .*\): .*(?i:constraint)"):
        assets.dlt_load_asset_events(info, events, alias="x")
    assert _alias_events(events, "x") == []


def test_pipeline_tasks_group_tasks_emit_events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pendulum
    from dlt.helpers.airflow_helper import PipelineTasksGroup

    if AIRFLOW_2:
        from airflow import DAG
    else:
        from airflow.sdk import DAG

    events = _outlet_events()
    monkeypatch.setattr(assets, "_current_outlet_events", lambda: events)
    with DAG("dlt_group", schedule=None, start_date=pendulum.datetime(2025, 1, 1)):
        group = PipelineTasksGroup("shop", use_data_folder=False, wipe_local_data=True, use_task_logger=False)
        pipeline = _pipeline(tmp_path, own_dir=False)  # after the group, which sets dlt's working directory
        tasks = assets.with_dlt_asset_events(group.add_run(pipeline, _orders(), decompose="none"))
    (task,) = tasks
    assert assets.dlt_asset_alias() in task.outlets
    task.python_callable()
    uris = {uri for uri, _ in _alias_events(events, "dlt_loads")}
    assert f"duckdb:{tmp_path}/warehouse.duckdb/warehouse/raw/orders" in uris and len(uris) == 3


def test_importing_the_module_imports_neither_airflow_nor_dlt() -> None:
    code = "import sys, airflow_dbt_cloud_dlt.assets; print(sorted(m for m in ('airflow', 'dlt') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=dict(os.environ))
    assert out.stdout.strip() == "[]"


# --- end to end: a @task running dlt under dag.test(), events recorded by Airflow ---------------------------------


@pytest.mark.usefixtures("airflow_db")
def test_dlt_task_records_asset_events_in_airflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    duckdb_file = tmp_path / "e2e.duckdb"
    monkeypatch.setenv("DLT_ASSETS_DUCKDB", str(duckdb_file))
    import dlt_asset_dags

    module = importlib.reload(dlt_asset_dags)  # reads DLT_ASSETS_DUCKDB
    if AIRFLOW_2:  # 2.11's dag.test() does not sync the DAG's DatasetAlias; its DAG processor would
        module.dlt_assets_dag.sync_to_db()
    dag_run = module.dlt_assets_dag.test()
    assert str(dag_run.state).endswith("success")
    uri = f"duckdb:{duckdb_file}/e2e/raw/orders"
    from airflow.utils.session import create_session

    with create_session() as session:
        if AIRFLOW_2:
            from airflow.models.dataset import DatasetEvent

            events = [(e.dataset.uri, e.extra) for e in session.query(DatasetEvent).all()]
        else:
            from airflow.models.asset import AssetEvent

            events = [(e.asset.uri, e.extra) for e in session.query(AssetEvent).all()]
    mine = [extra for event_uri, extra in events if event_uri == uri]
    assert len(mine) == 1, events
    assert mine[0]["rows"] == 2 and mine[0]["source"] == "dlt" and mine[0]["load_id"]
