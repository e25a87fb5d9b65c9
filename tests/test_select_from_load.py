"""``select_from_load``: run only what a dlt load changed (issue 11, part 4).

The pure parts first (select expressions, dbt's intersection syntax, the per-warehouse case rules, the forms the
tables come in), then against the emulator as a real HTTP server serving its example project (the job's latest
``manifest.json`` through the "get job artifact" endpoint, and runs that honour ``--select``), and under real
Airflow (``dag.test()``, both versions): the selective run builds only the changed source's descendants, keeps
the job's own ``--select`` by intersecting with it, skips when nothing reads the tables, falls back to the whole
job without a manifest (or fails, when told to), and refuses a selection dbt would reject.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
from typing import Any

import pytest
from conftest import TOKEN, connection_json, output

from airflow_dbt_cloud_dlt.api.client import DbtCloudClient
from airflow_dbt_cloud_dlt.assets import LoadedTable, UnsupportedWarehouseError, table_asset_uri
from airflow_dbt_cloud_dlt.selection import (
    DbtSource,
    InvalidSelectError,
    changed_tables,
    check_select,
    match_sources,
    plan_selection,
    select_steps,
)
from airflow_dbt_cloud_dlt.testing import JobScript, StepScript

NAMESPACE = "duckdb:///data/warehouse.duckdb"
RAW = "duckdb:/data/warehouse.duckdb/warehouse/raw"
ORDERS, CUSTOMERS, EVENTS = f"{RAW}/orders", f"{RAW}/customers", f"{RAW}/events"
#: What ``dbt build`` of the whole example project builds (models, seed, snapshot), and its tests.
FULL_BUILT = {
    "seed.analytics.country_codes",
    "model.analytics.stg_orders",
    "model.analytics.stg_customers",
    "model.analytics.stg_payments",
    "model.analytics.fct_orders",
    "model.analytics.dim_customers",
    "snapshot.analytics.customers_snapshot",
}
#: Downstream of source raw.orders: stg_orders, and the marts that read it.
ORDERS_BUILT = {"model.analytics.stg_orders", "model.analytics.fct_orders", "model.analytics.dim_customers"}


# --- select expressions and steps ---------------------------------------------------------------------------------


def test_selective_steps_intersect_with_the_jobs_own_select_and_leave_other_steps_alone() -> None:
    steps = [
        "dbt deps",
        "dbt build --select tag:daily stg_x --exclude stg_y",
        "dbt run",
        "dbt source freshness --select source:raw",
        "dbt docs generate",
        "dbt --warn-error test -s tag:t",
    ]
    new, changed = select_steps(steps, ["source:raw.orders+", "source:raw.customers+"])
    assert changed == [1, 2, 5]
    assert new[0] == "dbt deps" and new[3:5] == steps[3:5]
    assert new[1] == (
        "dbt build --exclude stg_y --select tag:daily,source:raw.orders+ tag:daily,source:raw.customers+ "
        "stg_x,source:raw.orders+ stg_x,source:raw.customers+"
    )
    assert new[2] == "dbt run --select source:raw.orders+ source:raw.customers+"
    assert new[5] == "dbt --warn-error test --select tag:t,source:raw.orders+ tag:t,source:raw.customers+"
    new, _ = select_steps(["dbt build --models=a,b+"], ["source:raw.orders+"])
    assert new == ["dbt build --select a,b+,source:raw.orders+"]


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("foo:bar", "'foo' is not a valid method name"),
        ("tag:a,,tag:b", "Invalid selector spec"),
        ("@+stg_orders", '"@" prefix and "+" prefix are not compatible'),
        ("tag:", "has no value"),
    ],
)
def test_a_select_dbt_would_reject_is_a_clear_error(expression: str, says: str) -> None:
    with pytest.raises(InvalidSelectError, match=re.escape(says)):
        check_select([expression], "here")
    with pytest.raises(InvalidSelectError, match=re.escape(says)):
        select_steps([f"dbt build --select {expression}"], ["source:raw.orders+"])
    check_select(["tag:a,source:raw.orders+", "2+stg_orders+1", "@fct_orders", "config.materialized:table"], "ok")


def test_a_yaml_selector_cannot_be_intersected() -> None:
    with pytest.raises(InvalidSelectError, match="YAML selector"):
        select_steps(["dbt build --selector nightly"], ["source:raw.orders+"])


def test_a_source_name_the_selector_cannot_name_exactly_is_refused() -> None:
    from airflow_dbt_cloud_dlt.selection import source_selector

    assert source_selector("raw", "orders") == "source:raw.orders+"
    for source_name, table in (("raw data", "orders"), ("raw", "ord*"), ("raw", "a,b"), ("raw.x", "orders")):
        with pytest.raises(InvalidSelectError, match="cannot be selected exactly"):
            source_selector(source_name, table)


# --- the changed tables and the case rules ------------------------------------------------------------------------


def test_the_tables_come_as_uris_loaded_tables_dicts_or_a_rendered_list() -> None:
    loaded = LoadedTable(CUSTOMERS, "customers", ("1",), 3, (), "raw", "p")
    found = changed_tables([ORDERS, loaded, {"uri": f"{RAW}/ORDERS"}])
    assert [t.uri for t in found] == [ORDERS, CUSTOMERS]  # folded (DuckDB is case-insensitive) and deduplicated
    assert [t.uri for t in changed_tables(str([ORDERS, CUSTOMERS]))] == [ORDERS, CUSTOMERS]
    assert [t.uri for t in changed_tables(ORDERS)] == [ORDERS]
    assert changed_tables([]) == [] and changed_tables("") == []
    with pytest.raises(ValueError, match="select_from_load takes the tables"):
        changed_tables([42])
    with pytest.raises(ValueError, match="not a table Asset URI"):
        changed_tables(["mysql://h:3306/db/raw/orders"])


def source(
    name: str, schema: str = "raw", database: str = "db", readers: int = 1, quoted: bool | None = None
) -> DbtSource:
    """A manifest source whose identifier is ``name``; ``quoted`` sets its identifier's quoting."""
    quoting = (("identifier", quoted),) if quoted is not None else ()
    return DbtSource(f"source.p.raw.{name}", "raw", name.lower(), database, schema, name, quoting, readers)


def matched(uri: str, sources: list[DbtSource], adapter: str, namespace: str | None = None) -> list[str]:
    return [s.identifier for s in match_sources(changed_tables([uri]), sources, adapter, namespace).sources]


def test_case_rules_per_warehouse() -> None:
    pg, sf = "postgres://h:5432", "snowflake://org-acct"
    # Postgres: dbt quotes by default, and quoted names are case-sensitive: "Orders" is not the orders dlt wrote
    assert matched(table_asset_uri(pg, "db", "raw", "orders"), [source("orders"), source("Orders")], "postgres") == [
        "orders"
    ]
    assert matched(table_asset_uri(pg, "db", "raw", "orders"), [source("Orders", quoted=False)], "postgres") == [
        "Orders"
    ]
    near = match_sources(changed_tables([table_asset_uri(pg, "db", "raw", "orders")]), [source("Orders")], "postgres")
    assert near.sources == [] and "quoted names are case-sensitive" in near.notes[0]
    # Snowflake: unquoted by default and folded upper, as dlt writes ORDERS; a quoted lower-case name is another table
    sf_orders = table_asset_uri(sf, "DB", "RAW", "ORDERS")
    assert matched(sf_orders, [source("orders", database="db")], "snowflake") == ["orders"]
    assert matched(sf_orders, [source("orders", database="db", quoted=True)], "snowflake") == []
    # DuckDB: case-insensitive, quoted or not
    assert matched(ORDERS, [source("ORDERS", database="warehouse", quoted=True)], "duckdb") == ["ORDERS"]
    # BigQuery: table names are case-sensitive
    bq = table_asset_uri("bigquery", "proj", "raw", "orders")
    assert matched(bq, [source("Orders", database="proj")], "bigquery") == []
    assert matched(bq, [source("orders", database="proj")], "bigquery") == ["orders"]
    # Another schema or database is another table
    assert matched(ORDERS, [source("orders", schema="staging", database="warehouse")], "duckdb") == []


def test_the_warehouse_and_namespace_must_be_the_projects() -> None:
    sources = [source("orders", database="warehouse")]
    assert matched(ORDERS, sources, "duckdb", NAMESPACE) == ["orders"]
    other = match_sources(changed_tables([ORDERS]), sources, "duckdb", "duckdb:///elsewhere/warehouse.duckdb")
    assert other.sources == [] and "the dbt project's is duckdb:///elsewhere" in other.notes[0]
    postgres = match_sources(changed_tables([ORDERS]), sources, "postgres")
    assert postgres.sources == [] and "runs on postgres" in postgres.notes[0]
    with pytest.raises(UnsupportedWarehouseError):
        match_sources(changed_tables([ORDERS]), sources, "sqlserver")


def test_a_source_nothing_reads_is_not_selected() -> None:
    found = match_sources(changed_tables([ORDERS]), [source("orders", database="warehouse", readers=0)], "duckdb")
    assert found.sources == [] and [s.identifier for s in found.unread] == ["orders"]


# --- against the emulator -----------------------------------------------------------------------------------------


def dbt_job(job_id: int, *commands: str, **script: Any) -> JobScript:
    steps = [StepScript(f"Invoke dbt with `{command}`") for command in commands or ("dbt deps", "dbt build")]
    return JobScript(job_id=job_id, account_id=1, run_seconds=0.3, project=True, steps=steps, **script)


def full_run(emulator: Any, job: JobScript) -> int:
    """Add the job and finish one run of it, so that the job has a latest manifest.json."""
    import requests

    emulator.add_job(job)
    response = requests.post(
        f"{emulator.base_url}/api/v2/accounts/1/jobs/{job.job_id}/run/",
        json={"cause": "the first, full run"},
        headers={"Authorization": f"Token {TOKEN}"},
        timeout=5,
    )
    response.raise_for_status()
    emulator.advance(60)
    return int(response.json()["data"]["id"])


@pytest.fixture
def client(credentials: dict[str, Any]) -> Any:
    with DbtCloudClient(credentials) as c:
        yield c


def built(client: Any, run_id: int, step: int | None = None) -> set[str]:
    """The models, seeds and snapshots a run's step built, from its run_results.json."""
    results = json.loads(client.get_run_artifact(run_id, "run_results.json", step=step))["results"]
    return {r["unique_id"] for r in results if not r["unique_id"].startswith("test.")}


def test_the_emulator_serves_the_jobs_latest_manifest(emulator: Any, client: Any) -> None:
    from airflow_dbt_cloud_dlt.api import core
    from airflow_dbt_cloud_dlt.api.errors import DbtCloudNotFoundError

    emulator.add_job(dbt_job(1))
    with pytest.raises(DbtCloudNotFoundError):  # no run yet
        client.send(core.get_job_artifact(1, 1, "manifest.json"))
    full_run(emulator, dbt_job(1))
    manifest = json.loads(client.send(core.get_job_artifact(1, 1, "manifest.json")))
    assert set(manifest["sources"]) == {f"source.analytics.raw.{t}" for t in ("orders", "customers", "payments")}


def test_plan_from_the_jobs_manifest(emulator: Any, client: Any) -> None:
    full_run(emulator, dbt_job(2, "dbt deps", "dbt build --select tag:marts"))
    plan = plan_selection(client, 2, changed_tables([ORDERS, EVENTS]), namespace=NAMESPACE)
    assert plan.steps == ["dbt deps", "dbt build --select tag:marts,source:raw.orders+"]
    assert not plan.skip and not plan.fallback
    assert plan_selection(client, 2, changed_tables([EVENTS]), namespace=NAMESPACE).skip
    assert plan_selection(client, 2, []).skip
    emulator.add_job(dbt_job(3))
    fallback = plan_selection(client, 3, changed_tables([ORDERS]))
    assert fallback.fallback and "manifest.json of dbt Cloud job 3 cannot be read" in fallback.reason


def test_a_real_dlt_load_info_selects_the_sources_it_wrote(emulator: Any, client: Any, tmp_path: Any) -> None:
    import dlt

    @dlt.resource(name="orders")
    def orders() -> Any:
        yield [{"order_id": 1, "items": [{"sku": "a"}]}]  # and a child table, orders__items, which no source reads

    pipeline = dlt.pipeline(
        pipeline_name="select_shop",
        destination=dlt.destinations.duckdb(str(tmp_path / "warehouse.duckdb")),
        dataset_name="raw",
        pipelines_dir=str(tmp_path / "pipelines"),
    )
    info = pipeline.run(orders())
    full_run(emulator, dbt_job(5))
    plan = plan_selection(client, 5, changed_tables(info))
    assert plan.selectors == ["source:raw.orders+"]
    assert plan.steps == ["dbt deps", "dbt build --select source:raw.orders+"]
    # the dbt project's warehouse (its asset_namespace) is another DuckDB file: nothing there was changed
    assert plan_selection(client, 5, changed_tables(info), namespace=NAMESPACE).skip


def test_a_job_without_a_selecting_step_is_a_clear_error(emulator: Any, client: Any) -> None:
    full_run(emulator, dbt_job(4, "dbt build"))
    with pytest.raises(InvalidSelectError, match="no step that selects nodes"):
        plan_selection(client, 4, changed_tables([ORDERS]), steps=["dbt deps", "dbt docs generate"])


# --- under real Airflow -------------------------------------------------------------------------------------------

_ids = itertools.count()


@pytest.fixture
def select_conn(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """``dbt_cloud_default`` pointing at the emulator, with the warehouse namespace as its extra."""
    monkeypatch.setenv("AIRFLOW_CONN_DBT_CLOUD_DEFAULT", connection_json(emulator.base_url, asset_namespace=NAMESPACE))
    return "dbt_cloud_default"


def run_select_dag(**kwargs: Any) -> Any:
    """``load`` >> ``dbt`` (tests/dags/select_dags.py), announced where ``dag.test()`` finds it; its DagRun."""
    from select_dags import load_then_dbt_dag

    dag_id = f"select_{next(_ids)}"
    kwargs = {"poll_interval": 0.2, "deferrable": False, "retries": 0} | kwargs
    if kwargs.get("cls") == "DbtCloudRunJobOperator":
        kwargs["check_interval"] = kwargs.pop("poll_interval")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SELECT_DAGS", json.dumps({dag_id: kwargs}))
        return load_then_dbt_dag(dag_id, **kwargs).test()


def states(dag_run: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state).rsplit(".", 1)[-1].lower() for ti in dag_run.get_task_instances()}


def runs_of(emulator: Any, job_id: int) -> list[dict[str, Any]]:
    return sorted((r for r in emulator.runs.values() if r["job_definition_id"] == job_id), key=lambda r: r["id"])


@pytest.mark.usefixtures("airflow_db", "select_conn")
@pytest.mark.parametrize(
    ("cls", "deferrable", "template"),
    [("RunDbtCloudJobOperator", False, False), ("RunDbtCloudJobOperator", True, False), ("DbtCloudRunJobOperator", True, True)],
)  # fmt: skip
def test_selective_run_builds_only_what_reads_the_changed_source(
    emulator: Any, client: Any, cls: str, deferrable: bool, template: bool
) -> None:
    first = full_run(emulator, dbt_job(11))
    assert built(client, first, step=2) == FULL_BUILT
    dag_run = run_select_dag(job_id=11, tables=[ORDERS, EVENTS], cls=cls, deferrable=deferrable, template=template)
    assert states(dag_run) == {"load": "success", "dbt": "success"}
    _, selective = runs_of(emulator, 11)
    assert selective["trigger"]["steps_override"] == ["dbt deps", "dbt build --select source:raw.orders+"]
    assert built(client, selective["id"], step=2) == ORDERS_BUILT
    tests = json.loads(client.get_run_artifact(selective["id"], "run_results.json", step=2))["results"]
    assert "test.analytics.source_not_null_raw_orders_order_id" in {r["unique_id"].rsplit(".", 1)[0] for r in tests}


@pytest.mark.usefixtures("airflow_db", "select_conn")
def test_the_jobs_own_select_is_intersected(emulator: Any, client: Any) -> None:
    full_run(emulator, dbt_job(12, "dbt deps", "dbt seed", "dbt build --select tag:marts"))
    dag_run = run_select_dag(job_id=12, tables=[ORDERS])
    assert states(dag_run) == {"load": "success", "dbt": "success"}
    _, selective = runs_of(emulator, 12)
    assert selective["trigger"]["steps_override"] == [
        "dbt deps",
        "dbt seed --select source:raw.orders+",  # a seed reads no source: dbt seeds nothing
        "dbt build --select tag:marts,source:raw.orders+",
    ]
    assert built(client, selective["id"], step=2) == set()
    assert built(client, selective["id"], step=3) == {"model.analytics.fct_orders", "model.analytics.dim_customers"}


@pytest.mark.usefixtures("airflow_db", "select_conn")
def test_steps_override_is_narrowed_too(emulator: Any, client: Any) -> None:
    full_run(emulator, dbt_job(13))
    dag_run = run_select_dag(job_id=13, tables=[CUSTOMERS], steps_override=["dbt run --select stg_customers+"])
    assert states(dag_run) == {"load": "success", "dbt": "success"}
    _, selective = runs_of(emulator, 13)
    assert selective["trigger"]["steps_override"] == ["dbt run --select stg_customers+,source:raw.customers+"]
    assert built(client, selective["id"]) == {"model.analytics.stg_customers", "model.analytics.dim_customers"}


@pytest.mark.usefixtures("airflow_db", "select_conn")
def test_skipped_when_nothing_reads_the_changed_tables(
    emulator: Any, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    full_run(emulator, dbt_job(14))
    with caplog.at_level(logging.INFO):
        dag_run = run_select_dag(job_id=14, tables=[EVENTS])
    assert states(dag_run) == {"load": "success", "dbt": "skipped"}
    assert len(runs_of(emulator, 14)) == 1  # nothing triggered
    text = output(capfd, caplog)
    assert "skipping dbt Cloud job 14: nothing in the dbt project reads the changed tables" in text
    assert EVENTS in text


@pytest.mark.usefixtures("airflow_db", "select_conn")
def test_skipped_when_the_load_changed_nothing(emulator: Any) -> None:
    full_run(emulator, dbt_job(15))
    assert states(run_select_dag(job_id=15, tables=[])) == {"load": "success", "dbt": "skipped"}
    assert len(runs_of(emulator, 15)) == 1


@pytest.mark.usefixtures("airflow_db", "select_conn")
@pytest.mark.parametrize(
    "manifest",
    [
        None,
        "{not json",
        json.dumps({"metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v99.json"}}),
    ],
)
def test_without_a_readable_manifest_the_whole_job_runs_and_says_so(
    emulator: Any, client: Any, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, manifest: str | None
) -> None:  # fmt: skip
    job = dbt_job(16, files={"manifest.json": manifest}) if manifest else dbt_job(16)
    if manifest:
        full_run(emulator, job)
    else:
        emulator.add_job(job)  # no run yet: no manifest at all
    with caplog.at_level(logging.INFO):
        dag_run = run_select_dag(job_id=16, tables=[ORDERS])
    assert states(dag_run) == {"load": "success", "dbt": "success"}
    whole = runs_of(emulator, 16)[-1]
    assert not whole["trigger"].get("steps_override")
    assert built(client, whole["id"], step=2) == FULL_BUILT
    text = output(capfd, caplog)
    assert "running the whole dbt Cloud job 16" in text and "cannot be read" in text


@pytest.mark.usefixtures("airflow_db", "select_conn")
def test_fail_mode_fails_without_a_manifest(
    emulator: Any, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    emulator.add_job(dbt_job(17))
    with caplog.at_level(logging.INFO):
        dag_run = run_select_dag(job_id=17, tables=[ORDERS], select_fallback="fail")
    assert states(dag_run) == {"load": "success", "dbt": "failed"}
    assert runs_of(emulator, 17) == []
    assert "manifest.json of dbt Cloud job 17 cannot be read" in output(capfd, caplog)


@pytest.mark.usefixtures("airflow_db", "select_conn")
def test_a_select_dbt_would_reject_fails_the_task_before_any_run(
    emulator: Any, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    full_run(emulator, dbt_job(18))
    emulator.add_job(dbt_job(18, "dbt build --select tags:marts"))  # the job's steps now, after that run
    with caplog.at_level(logging.INFO):
        dag_run = run_select_dag(job_id=18, tables=[ORDERS])
    assert states(dag_run) == {"load": "success", "dbt": "failed"}
    assert len(runs_of(emulator, 18)) == 1
    assert "'tags' is not a valid method name" in output(capfd, caplog)


def test_select_fallback_is_checked_when_the_dag_is_parsed() -> None:
    from airflow_dbt_cloud_dlt.operators import RunDbtCloudJobOperator

    with pytest.raises(ValueError, match="select_fallback must be one of"):
        RunDbtCloudJobOperator(task_id="t", job_id=1, select_from_load=[ORDERS], select_fallback="whole")
