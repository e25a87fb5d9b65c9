"""dbt Cloud runs emit one asset event per model, seed and snapshot they built (issue 11, part 2).

Against the emulator as a real HTTP server, serving its example project's manifest.json (v12) and per-step
run_results.json (v6): the artifacts are read as streams, named by the rule, and emitted through an AssetAlias
(DatasetAlias on 2.11) by the operator (deferred and blocking), the official-named operator and the sensor
(poking and deferred), under real Airflow (``dag.test()``); the recorded events are read back from Airflow's
metadata database.
"""

from __future__ import annotations

import itertools
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import AIRFLOW_2, TOKEN, connection_json, output, xcom

from airflow_dbt_cloud_dlt.api.client import DbtCloudClient
from airflow_dbt_cloud_dlt.dbt_assets import (
    FAILED_RUN_XCOM_KEY,
    DbtArtifactError,
    dbt_subcommand,
    read_manifest_nodes,
    read_run_assets,
    step_command,
)
from airflow_dbt_cloud_dlt.testing import JobScript, StepScript

NAMESPACE = "duckdb:///data/warehouse.duckdb"
BASE = "duckdb:/data/warehouse.duckdb/warehouse/analytics"
BUILT = {  # what `dbt build` of the example project builds: unique_id -> rows
    "seed.analytics.country_codes": 5,
    "model.analytics.stg_orders": 4,
    "model.analytics.stg_customers": 3,
    "model.analytics.stg_payments": 4,
    "model.analytics.fct_orders": 4,
    "model.analytics.dim_customers": 3,
    "snapshot.analytics.customers_snapshot": 3,
}
ALIAS = "dbt_models"


def uri(unique_id: str) -> str:
    return f"{BASE}/{unique_id.rsplit('.', 1)[-1]}"


def dbt_job(job_id: int, *commands: str, **script: Any) -> JobScript:
    steps = [StepScript(f"Invoke dbt with `{command}`") for command in commands or ("dbt deps", "dbt build")]
    return JobScript(job_id=job_id, account_id=1, run_seconds=0.3, project=True, steps=steps, **script)


def finished_run(emulator: Any, job: JobScript) -> int:
    emulator.add_job(job)
    run_id = _trigger(emulator, job.job_id)
    emulator.advance(60)
    return run_id


def _trigger(emulator: Any, job_id: int) -> int:
    import requests

    response = requests.post(
        f"{emulator.base_url}/api/v2/accounts/1/jobs/{job_id}/run/",
        json={"cause": "test"},
        headers={"Authorization": f"Token {TOKEN}"},
        timeout=5,
    )
    response.raise_for_status()
    return int(response.json()["data"]["id"])


@pytest.fixture
def client(credentials: dict[str, Any]) -> Any:
    with DbtCloudClient(credentials) as c:
        yield c


# --- the emulator: realistic artifacts per run and per step -------------------------------------------------------


def test_emulator_serves_the_projects_artifacts_per_dbt_step(emulator: Any, client: Any) -> None:
    run_id = finished_run(emulator, dbt_job(1, "dbt deps", "dbt build --select source:raw.orders+"))
    assert client.list_run_artifacts(run_id, step=1) == []  # dbt deps writes no run results
    assert client.list_run_artifacts(run_id) == ["manifest.json", "run_results.json"]
    results = json.loads(client.get_run_artifact(run_id, "run_results.json", step=2))
    assert results["args"]["invocation_command"] == "dbt build --select source:raw.orders+"
    built = {r["unique_id"] for r in results["results"] if not r["unique_id"].startswith("test.")}
    assert built == {"model.analytics.stg_orders", "model.analytics.fct_orders", "model.analytics.dim_customers"}
    manifest = json.loads(client.get_run_artifact(run_id, "manifest.json"))
    assert manifest["metadata"]["dbt_schema_version"].endswith("/v12.json") and len(manifest["nodes"]) == 14
    assert emulator.get_run(run_id)["artifacts_saved"] is True


def test_emulator_failed_run_has_partial_run_results(emulator: Any, client: Any) -> None:
    run_id = finished_run(emulator, dbt_job(2, "dbt build", outcome="error", failing_nodes=["stg_orders"]))
    assert emulator.get_run(run_id)["status"] == 20
    statuses = {
        r["unique_id"]: r["status"] for r in json.loads(client.get_run_artifact(run_id, "run_results.json"))["results"]
    }
    assert statuses["model.analytics.stg_orders"] == "error"
    assert statuses["model.analytics.fct_orders"] == statuses["model.analytics.dim_customers"] == "skipped"
    assert statuses["model.analytics.stg_customers"] == "success"
    run = emulator.get_run(run_id)
    assert run["status_message"] == "Runtime Error in model stg_orders (models/staging/stg_orders.sql)"
    (step,) = run["run_steps"]
    assert "ERROR creating sql table model prod.stg_orders" in step["logs"]
    assert step["logs"].rstrip().endswith("Done. PASS=6 WARN=0 ERROR=1 SKIP=7 TOTAL=14")


# --- reading a run's artifacts ------------------------------------------------------------------------------------


def test_full_build_names_every_built_node_with_rows_time_and_tests(emulator: Any, client: Any) -> None:
    run_id = finished_run(emulator, dbt_job(3))
    found = read_run_assets(client, run_id, run_url="https://x/run", extras={"asset_namespace": NAMESPACE})
    assert found.reason is None
    nodes = {node.unique_id: node for node in found.nodes}
    assert set(nodes) == set(BUILT)  # models, the seed and the snapshot; no tests, no sources
    assert {uid: node.rows_affected for uid, node in nodes.items()} == BUILT
    assert {node.uri for node in found.nodes} == {uri(uid) for uid in BUILT}
    stg_orders = nodes["model.analytics.stg_orders"]
    assert (stg_orders.tests_passed, stg_orders.tests_warned, stg_orders.tests_failed) == (2, 0, 0)
    assert nodes["model.analytics.stg_payments"].tests_passed == 0
    assert all(node.execution_time and node.execution_time > 0 for node in found.nodes)
    extra = stg_orders.extra(run_id, "https://x/run")
    assert extra == {
        "source": "dbt_cloud",
        "dbt_cloud_run_id": run_id,
        "dbt_cloud_run_url": "https://x/run",
        "unique_id": "model.analytics.stg_orders",
        "resource_type": "model",
        "status": "success",
        "rows_affected": 4,
        "execution_time": stg_orders.execution_time,
        "tests_passed": 2,
        "tests_warned": 0,
        "tests_failed": 0,
    }


def test_selective_run_names_only_what_it_built(emulator: Any, client: Any) -> None:
    run_id = finished_run(emulator, dbt_job(4, "dbt deps", "dbt build --select source:raw.orders+"))
    found = read_run_assets(client, run_id, namespace=NAMESPACE)
    assert sorted(n.unique_id for n in found.nodes) == [
        "model.analytics.dim_customers",
        "model.analytics.fct_orders",
        "model.analytics.stg_orders",
    ]


def test_tests_of_a_later_step_count_for_the_nodes_an_earlier_step_built(emulator: Any, client: Any) -> None:
    run_id = finished_run(emulator, dbt_job(5, "dbt seed", "dbt run", "dbt test"))
    found = read_run_assets(client, run_id, namespace=NAMESPACE)
    nodes = {node.unique_id: node for node in found.nodes}
    assert set(nodes) == set(BUILT) - {"snapshot.analytics.customers_snapshot"}
    assert nodes["model.analytics.fct_orders"].tests_passed == 2  # not_null and relationships, from step 3


def test_failed_run_names_only_the_nodes_that_succeeded(emulator: Any, client: Any) -> None:
    run_id = finished_run(emulator, dbt_job(6, outcome="error", failing_nodes=["fct_orders"]))
    found = read_run_assets(client, run_id, namespace=NAMESPACE)
    assert {n.unique_id for n in found.nodes} == set(BUILT) - {"model.analytics.fct_orders"}


@pytest.mark.parametrize(
    ("step", "subcommand"),
    [
        ({"name": "Invoke dbt with `dbt build --select x+`"}, "build"),
        ({"name": "Invoke dbt with dbt run"}, "run"),
        ({"name": "x", "run_step_command": {"run_step_id": 1, "dbt_command": "dbt --warn-error test"}}, "test"),
        ({"name": "Clone git repository", "run_step_command": None}, None),
        ({"name": "Invoke dbt with `dbt deps`"}, "deps"),
    ],
)
def test_step_commands_as_the_api_and_the_emulator_give_them(step: dict[str, Any], subcommand: str | None) -> None:
    assert dbt_subcommand(step_command(step)) == subcommand


def test_deps_only_run_has_nothing_and_says_why(emulator: Any, client: Any) -> None:
    run_id = finished_run(emulator, dbt_job(7, "dbt deps"))
    found = read_run_assets(client, run_id, namespace=NAMESPACE)
    assert found.nodes == [] and "ran no dbt step that builds or tests nodes" in str(found.reason)


@pytest.mark.parametrize(
    ("files", "needle"),
    [
        (
            {"manifest.json": '{"metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json"'},
            "is not valid JSON",
        ),
        (
            {
                "manifest.json": json.dumps(
                    {
                        "metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v13.json"},
                        "nodes": {},
                    }
                )
            },
            "manifest v13, newer than v12",
        ),
        ({"manifest.json": json.dumps({"nodes": {}})}, "is not a dbt manifest"),
        ({"manifest.json": None}, "has run_results.json but no manifest.json"),
        (
            {
                "run_results.json": json.dumps(
                    {
                        "metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/run-results/v7.json"},
                        "results": [],
                    }
                )
            },
            "run-results v7, newer than v6",
        ),
    ],
    ids=["malformed", "too-new", "not-a-manifest", "missing-manifest", "too-new-run-results"],
)
def test_bad_or_missing_artifacts_are_clear_errors(
    emulator: Any, client: Any, files: dict[str, Any], needle: str
) -> None:
    run_id = finished_run(emulator, dbt_job(8, files=files))
    with pytest.raises(DbtArtifactError, match=needle) as info:
        read_run_assets(client, run_id, namespace=NAMESPACE)
    assert f"run {run_id}" in str(info.value)


def test_manifest_is_read_as_a_stream_keeping_only_the_wanted_nodes(tmp_path: Path) -> None:
    """A 20 MB manifest (4,000 big nodes): reading two nodes of it needs a small fraction of the file's size in
    memory (``json.load`` needs more than the file)."""
    import tracemalloc

    from airflow_dbt_cloud_dlt.testing.project import example_project

    manifest = example_project().manifest()
    for i in range(4000):
        manifest["nodes"][f"model.analytics.big_{i}"] = {"resource_type": "model", "raw_code": "x" * 5000}
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))
    size = path.stat().st_size
    tracemalloc.start()
    adapter, nodes = read_manifest_nodes(path, {"model.analytics.stg_orders", "model.analytics.big_3999"})
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert adapter == "duckdb" and set(nodes) == {"model.analytics.stg_orders", "model.analytics.big_3999"}
    assert nodes["model.analytics.stg_orders"]["schema"] == "analytics"
    assert size > 20_000_000 and peak < size / 10, (size, peak)


def test_importing_the_task_modules_does_not_load_the_artifact_reader() -> None:
    code = (
        "import sys\n"
        "import airflow_dbt_cloud_dlt.operators, airflow_dbt_cloud_dlt.sensors\n"
        "print(sorted(m for m in ('airflow_dbt_cloud_dlt.dbt_assets', 'ijson') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout
    code = "import sys, airflow_dbt_cloud_dlt.dbt_assets; print('airflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "False"  # the reader itself is Airflow-free


# --- in Airflow: the operator and the sensor emit the events, Airflow records them ------------------------------

_ids = itertools.count()


@pytest.fixture
def asset_conn(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """``dbt_cloud_default`` pointing at the emulator, with the warehouse namespace as its extra."""
    monkeypatch.setenv("AIRFLOW_CONN_DBT_CLOUD_DEFAULT", connection_json(emulator.base_url, asset_namespace=NAMESPACE))
    return "dbt_cloud_default"


def run_asset_dag(kind: str, **kwargs: Any) -> Any:
    """A DAG of kind "operator", "sensor", "official" (tests/dags/dbt_test_dags.py) or "follow_up"
    (tests/dags/dbt_asset_dags.py), announced where ``dag.test()`` finds it, run; its DagRun."""
    from dbt_asset_dags import follow_up_dag
    from dbt_test_dags import official_dag, operator_dag, sensor_dag

    dag_id = f"assets_{kind}_{next(_ids)}"
    with pytest.MonkeyPatch.context() as patch:
        if kind == "follow_up":
            patch.setenv("DBT_ASSET_DAGS", json.dumps({dag_id: kwargs}))
            dag = follow_up_dag(dag_id, **kwargs)
        else:
            patch.setenv("DBT_TEST_DAGS", json.dumps({dag_id: [kind, kwargs]}))
            dag = {"operator": operator_dag, "sensor": sensor_dag, "official": official_dag}[kind](dag_id, **kwargs)
        if AIRFLOW_2:  # 2.11's dag.test() does not sync the DAG's DatasetAlias; its DAG processor would
            dag.sync_to_db()
        return dag.test()


def recorded_events(dag_id: str) -> dict[str, dict[str, Any]]:
    """The asset events Airflow recorded from the DAG's tasks: URI -> extra."""
    from airflow.utils.session import create_session

    with create_session() as session:
        if AIRFLOW_2:
            from airflow.models.dataset import DatasetEvent

            rows = session.query(DatasetEvent).filter(DatasetEvent.source_dag_id == dag_id).all()
            return {e.dataset.uri: dict(e.extra) for e in rows}
        from airflow.models.asset import AssetEvent

        rows = session.query(AssetEvent).filter(AssetEvent.source_dag_id == dag_id).all()
        return {e.asset.uri: dict(e.extra) for e in rows}


def states(dag_run: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state).rsplit(".", 1)[-1].lower() for ti in dag_run.get_task_instances()}


def assert_full_build_events(events: dict[str, dict[str, Any]], run_id: int, run_url: str) -> None:
    assert set(events) == {uri(uid) for uid in BUILT}
    for unique_id, rows in BUILT.items():
        extra = events[uri(unique_id)]
        assert extra["unique_id"] == unique_id and extra["rows_affected"] == rows and extra["status"] == "success"
        assert extra["dbt_cloud_run_id"] == run_id and extra["dbt_cloud_run_url"] == run_url
        assert extra["execution_time"] > 0
    stg_orders = events[uri("model.analytics.stg_orders")]
    assert (stg_orders["tests_passed"], stg_orders["tests_warned"], stg_orders["tests_failed"]) == (2, 0, 0)


@pytest.mark.usefixtures("airflow_db", "asset_conn")
@pytest.mark.parametrize(("kind", "deferrable"), [("operator", True), ("operator", False), ("official", True)])
def test_operator_emits_one_event_per_built_node(emulator: Any, kind: str, deferrable: bool) -> None:
    emulator.add_job(dbt_job(11))
    args: dict[str, Any] = {"job_id": 11, "deferrable": deferrable, "asset_alias": ALIAS}
    if kind == "official":
        args |= {"cls": "DbtCloudRunJobOperator", "check_interval": 0.2}
    else:
        args |= {"poll_interval": 0.2}
    dag_run = run_asset_dag(kind, **args)
    assert set(states(dag_run).values()) == {"success"}
    (run,) = emulator.runs.values()
    assert_full_build_events(recorded_events(dag_run.dag_id), run["id"], run["href"])


@pytest.mark.usefixtures("airflow_db", "asset_conn")
@pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferred"])
def test_sensor_emits_the_events_of_a_run_started_elsewhere(emulator: Any, deferrable: bool) -> None:
    emulator.add_job(dbt_job(12, "dbt deps", "dbt build --select source:raw.orders+"))
    run_id = _trigger(emulator, 12)
    dag_run = run_asset_dag("sensor", run_id=run_id, deferrable=deferrable, poke_interval=0.1, asset_alias=ALIAS)
    assert states(dag_run) == {"wait": "success"}
    events = recorded_events(dag_run.dag_id)
    assert set(events) == {uri(f"model.analytics.{m}") for m in ("stg_orders", "fct_orders", "dim_customers")}
    assert {extra["dbt_cloud_run_id"] for extra in events.values()} == {run_id}


@pytest.mark.usefixtures("airflow_db", "asset_conn")
def test_without_an_alias_nothing_is_read_or_emitted(emulator: Any) -> None:
    emulator.add_job(dbt_job(13))
    dag_run = run_asset_dag("operator", job_id=13, deferrable=True, poll_interval=0.2)
    assert states(dag_run) == {"dbt": "success"}
    assert recorded_events(dag_run.dag_id) == {}
    assert not [r for r in emulator.requests if "/artifacts/" in r.path]


@pytest.mark.usefixtures("airflow_db", "asset_conn")
def test_failed_run_leaves_the_succeeded_nodes_for_a_follow_up_task(emulator: Any) -> None:
    emulator.add_job(dbt_job(14, outcome="error", failing_nodes=["stg_orders"]))
    dag_run = run_asset_dag("follow_up", alias=ALIAS, job_id=14, deferrable=True, poll_interval=0.2, retries=0)
    assert states(dag_run) == {"dbt": "failed", "announce": "success"}
    (run,) = emulator.runs.values()
    succeeded = set(BUILT) - {f"model.analytics.{m}" for m in ("stg_orders", "fct_orders", "dim_customers")}
    events = recorded_events(dag_run.dag_id)
    assert set(events) == {uri(uid) for uid in succeeded}  # the failed node and the two it skipped: none
    assert all(extra["dbt_cloud_run_id"] == run["id"] for extra in events.values())
    tis = {ti.task_id: ti for ti in dag_run.get_task_instances()}
    assert {e["uri"] for e in xcom(tis["dbt"], FAILED_RUN_XCOM_KEY)} == {uri(uid) for uid in succeeded}


@pytest.mark.usefixtures("airflow_db", "asset_conn")
def test_failed_run_with_assets_on_failure_off_leaves_nothing(emulator: Any) -> None:
    emulator.add_job(dbt_job(15, outcome="error", failing_nodes=["stg_orders"]))
    dag_run = run_asset_dag(
        "follow_up", alias=ALIAS, job_id=15, deferrable=False, poll_interval=0.2, retries=0, assets_on_failure=False
    )
    assert states(dag_run) == {"dbt": "failed", "announce": "success"}
    assert recorded_events(dag_run.dag_id) == {}
    tis = {ti.task_id: ti for ti in dag_run.get_task_instances()}
    assert xcom(tis["dbt"], FAILED_RUN_XCOM_KEY) is None


@pytest.mark.usefixtures("airflow_db", "asset_conn")
def test_deps_only_job_emits_nothing_and_logs_why(
    emulator: Any, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    emulator.add_job(dbt_job(16, "dbt deps"))
    with caplog.at_level(logging.INFO):
        dag_run = run_asset_dag("operator", job_id=16, deferrable=True, poll_interval=0.2, asset_alias=ALIAS)
    assert states(dag_run) == {"dbt": "success"}
    assert recorded_events(dag_run.dag_id) == {}
    text = output(capfd, caplog)
    assert "No asset events: dbt Cloud run" in text and "ran no dbt step that builds or tests nodes" in text


@pytest.mark.usefixtures("airflow_db", "asset_conn")
def test_bad_manifest_fails_the_task_with_a_clear_error(
    emulator: Any, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    emulator.add_job(dbt_job(17, files={"manifest.json": "{not json"}))
    with caplog.at_level(logging.INFO):
        dag_run = run_asset_dag(
            "operator", job_id=17, deferrable=False, poll_interval=0.2, asset_alias=ALIAS, retries=0
        )
    assert states(dag_run) == {"dbt": "failed"}
    assert recorded_events(dag_run.dag_id) == {}
    text = output(capfd, caplog)
    assert "succeeded, but its asset events failed" in text and "is not valid JSON" in text


@pytest.mark.usefixtures("airflow_db", "airflow_conn")
def test_no_namespace_fails_with_how_to_set_it(
    emulator: Any, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    emulator.add_job(dbt_job(18))
    with caplog.at_level(logging.INFO):
        dag_run = run_asset_dag(
            "operator", job_id=18, deferrable=False, poll_interval=0.2, asset_alias=ALIAS, retries=0
        )
    assert states(dag_run) == {"dbt": "failed"}
    assert '"asset_namespace"' in output(capfd, caplog)


def test_alias_is_an_outlet_and_needs_waiting() -> None:
    from airflow_dbt_cloud_dlt.assets import asset_alias
    from airflow_dbt_cloud_dlt.operators import DbtCloudRunJobOperator, RunDbtCloudJobOperator
    from airflow_dbt_cloud_dlt.sensors import DbtCloudJobRunSensor

    op = RunDbtCloudJobOperator(task_id="t", job_id=1, asset_alias=ALIAS, outlets=[asset_alias("other")])
    assert op.outlets == [asset_alias("other"), asset_alias(ALIAS)]
    assert DbtCloudRunJobOperator(task_id="o", job_id=1, asset_alias=ALIAS).outlets == [asset_alias(ALIAS)]
    assert DbtCloudJobRunSensor(task_id="s", run_id=1, asset_alias=ALIAS).outlets == [asset_alias(ALIAS)]
    assert RunDbtCloudJobOperator(task_id="n", job_id=1).outlets == []
    with pytest.raises(ValueError, match="asset_alias needs wait_for_termination=True"):
        RunDbtCloudJobOperator(task_id="w", job_id=1, asset_alias=ALIAS, wait_for_termination=False)
    with pytest.raises(TypeError, match="asset_alias must be a non-empty string"):
        RunDbtCloudJobOperator(task_id="e", job_id=1, asset_alias="")
    with pytest.raises(ValueError, match=r"ns: asset_namespace 'mssql://h:1433'.*Supported warehouses"):
        DbtCloudJobRunSensor(task_id="ns", run_id=1, asset_alias=ALIAS, asset_namespace="mssql://h:1433")


def test_hook_reads_the_connections_asset_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_dbt_cloud_dlt.assets import UnsupportedWarehouseError
    from airflow_dbt_cloud_dlt.hooks import DbtCloudHook

    monkeypatch.setenv("AIRFLOW_CONN_NS_SET", connection_json("http://h", asset_namespace="postgresql://DB.internal"))
    monkeypatch.setenv("AIRFLOW_CONN_NS_UNSET", connection_json("http://h"))
    monkeypatch.setenv("AIRFLOW_CONN_NS_BAD", connection_json("http://h", asset_namespace="mssql://h:1433"))
    assert DbtCloudHook("ns_set").asset_namespace == "postgres://db.internal:5432"
    assert DbtCloudHook("ns_unset").asset_namespace is None
    with pytest.raises(UnsupportedWarehouseError, match="Supported warehouses"):
        DbtCloudHook("ns_bad").asset_namespace  # noqa: B018
