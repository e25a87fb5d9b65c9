"""The emulator's example dbt project: valid manifest v12 / run_results v6, dbt's selection, fewer nodes built
by a selective run, and sources named like the tables dlt loads."""

from __future__ import annotations

import pytest
from dbt_artifacts_parser.parser import parse_manifest_v12, parse_run_results_v6

from airflow_dbt_cloud_dlt.assets import dbt_node_asset_uri, dlt_table_asset_uri
from airflow_dbt_cloud_dlt.testing.project import (
    MANIFEST_SCHEMA,
    RUN_RESULTS_SCHEMA,
    SelectionError,
    example_project,
    parse_dbt_command,
)

AT = "2026-01-01T00:00:00Z"
P = example_project()


def names(uids: list[str]) -> list[str]:
    return [uid.split(".")[2] for uid in uids]


def test_manifest_is_valid_v12_with_dlt_sources_models_and_maps() -> None:
    manifest = P.manifest(generated_at=AT, invocation_id="42")
    parsed = parse_manifest_v12(manifest)  # the published schema, as dbt-artifacts-parser models it
    assert parsed.metadata.dbt_schema_version == MANIFEST_SCHEMA and manifest["metadata"]["adapter_type"] == "duckdb"
    assert set(manifest["sources"]) == {f"source.analytics.raw.{t}" for t in ("orders", "customers", "payments")}
    kinds = {n["resource_type"] for n in manifest["nodes"].values()}
    assert kinds == {"model", "seed", "snapshot", "test"}
    for uid, node in manifest["nodes"].items():  # what OpenLineage's dbt processor reads
        assert node["database"] == "warehouse" and node["schema"] and uid in manifest["parent_map"]
        if node["resource_type"] != "test":
            assert node["alias"] == node["name"]
        assert node["depends_on"]["nodes"] == manifest["parent_map"][uid] if "nodes" in node["depends_on"] else True
    for parent, kids in manifest["child_map"].items():  # child_map is parent_map inverted
        assert all(parent in manifest["parent_map"][kid] for kid in kids)
    assert manifest["parent_map"]["model.analytics.stg_orders"] == ["source.analytics.raw.orders"]


def test_source_is_the_asset_a_dlt_load_writes() -> None:
    source = P.manifest()["sources"]["source.analytics.raw.orders"]
    namespace = "duckdb:///data/warehouse.duckdb"
    dbt_uri = dbt_node_asset_uri(source, adapter_type="duckdb", namespace=namespace)
    dlt_uri = dlt_table_asset_uri("duckdb", {"database": "/data/warehouse.duckdb"}, "raw", "orders")
    assert dbt_uri == dlt_uri == "duckdb:/data/warehouse.duckdb/warehouse/raw/orders"


def test_selective_run_builds_fewer_nodes() -> None:
    full = P.run_results("dbt build", generated_at=AT, invocation_id="1")
    selective = P.run_results("dbt build --select source:raw.orders+", generated_at=AT, invocation_id="2")
    for results in (full, selective):
        assert parse_run_results_v6(results).metadata.dbt_schema_version == RUN_RESULTS_SCHEMA
    built = [r["unique_id"] for r in selective["results"] if r["unique_id"].split(".")[0] != "test"]
    assert sorted(names(built)) == ["dim_customers", "fct_orders", "stg_orders"]
    assert len(full["results"]) == 14 and len(selective["results"]) == 9
    assert "model.analytics.stg_payments" not in {r["unique_id"] for r in selective["results"]}
    assert selective["args"] == {
        "which": "build",
        "invocation_command": "dbt build --select source:raw.orders+",
        "select": ["source:raw.orders+"],
        "exclude": [],
    }


@pytest.mark.parametrize(
    ("which", "select", "exclude", "expected"),
    [
        ("run", "stg_orders", None, ["stg_orders"]),
        ("run", "stg_orders+", None, ["stg_orders", "dim_customers", "fct_orders"]),
        ("run", "+fct_orders", None, ["stg_orders", "stg_payments", "fct_orders"]),
        ("run", "1+dim_customers", None, ["stg_customers", "stg_orders", "dim_customers"]),
        (
            "build",
            "1+dim_customers",
            "resource_type:test",
            ["country_codes", "stg_customers", "stg_orders", "dim_customers"],
        ),
        ("run", "stg_*", None, ["stg_customers", "stg_orders", "stg_payments"]),
        ("run", "tag:marts,tag:orders", None, ["fct_orders"]),
        ("run", "stg_payments fct_orders", None, ["stg_payments", "fct_orders"]),
        ("run", "source:raw+", "tag:marts", ["stg_customers", "stg_orders", "stg_payments"]),
        ("run", "path:models/marts", None, ["dim_customers", "fct_orders"]),
        ("snapshot", "source:raw.customers+", None, ["customers_snapshot"]),
        ("seed", None, None, ["country_codes"]),
        ("run", "nothing_here", None, []),
    ],
)
def test_selection_as_dbt_does(which: str, select: str | None, exclude: str | None, expected: list[str]) -> None:
    assert sorted(names(P.executed(which, select, exclude))) == sorted(expected)


def test_parents_run_before_children() -> None:
    order = names(P.executed("build"))
    assert order.index("stg_orders") < order.index("fct_orders") < order.index("not_null_fct_orders_amount")
    assert order.index("country_codes") < order.index("dim_customers")


def test_build_selects_tests_eagerly() -> None:
    tests = names([u for u in P.executed("build", "fct_orders") if u.startswith("test.")])
    assert sorted(tests) == ["not_null_fct_orders_amount", "relationships_fct_orders_customer_id"]


@pytest.mark.parametrize("spec", ["foo:bar", "+", "a+b+c+"])
def test_a_selector_dbt_would_reject_is_an_error(spec: str) -> None:
    with pytest.raises(SelectionError):
        P.executed("run", spec)


def test_unknown_subcommand_is_an_error() -> None:
    with pytest.raises(SelectionError, match="does not build nodes"):
        P.run_results("dbt docs generate")


def test_failed_node_errors_and_its_descendants_are_skipped() -> None:
    results = P.run_results("dbt build", generated_at=AT, failing=["stg_orders"])
    parse_run_results_v6(results)
    status = {r["unique_id"].split(".")[2]: r for r in results["results"]}
    assert status["stg_orders"]["status"] == "error" and "stg_orders" in status["stg_orders"]["message"]
    assert {status[n]["status"] for n in ("fct_orders", "dim_customers", "unique_stg_orders_order_id")} == {"skipped"}
    assert (
        status["stg_customers"]["status"] == "success"
        and status["unique_stg_customers_customer_id"]["status"] == "pass"
    )
    assert status["stg_customers"]["adapter_response"]["rows_affected"] == 3
    assert status["fct_orders"]["timing"] == [] and status["fct_orders"]["execution_time"] == 0.0


def test_failing_test_fails_without_skipping_models() -> None:
    results = P.run_results("dbt build -s stg_orders+", failing=["unique_stg_orders_order_id"])
    status = {r["unique_id"].split(".")[2]: r["status"] for r in results["results"]}
    assert status["unique_stg_orders_order_id"] == "fail" and status["fct_orders"] == "success"


@pytest.mark.parametrize(
    ("command", "parsed"),
    [
        ("dbt build", ("build", [], [])),
        ("dbt run -s a b+ --exclude c", ("run", ["a", "b+"], ["c"])),
        ("dbt build --select source:raw.orders+ --target prod --full-refresh", ("build", ["source:raw.orders+"], [])),
        ("dbt test --models x,y", ("test", ["x,y"], [])),
    ],
)
def test_parse_dbt_command(command: str, parsed: tuple[str, list[str], list[str]]) -> None:
    assert parse_dbt_command(command) == parsed


def test_names_follow_the_database_and_schemas_given() -> None:
    project = example_project(database="demo", schema="prod", source_schema="landing")
    manifest = project.manifest()
    assert set(manifest["sources"]) == {f"source.analytics.landing.{t}" for t in ("orders", "customers", "payments")}
    assert manifest["nodes"]["model.analytics.fct_orders"]["relation_name"] == '"demo"."prod"."fct_orders"'
    assert names(project.executed("run", "source:landing.orders+")) == ["stg_orders", "dim_customers", "fct_orders"]
