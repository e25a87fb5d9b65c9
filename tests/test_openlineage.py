"""OpenLineage from dbt Cloud runs (issue 11, part 5).

- The dataset names OpenLineage's own dbt processor gives the example project's sources are the names this
  package's naming rule gives the tables dlt loaded (the dlt tables are the inputs of the models that read them).
- Under real Airflow (``dag.test()``, in a subprocess so that the OpenLineage provider's listener is loaded with a
  file transport from the start) against the emulator as a real HTTP server: the task's COMPLETE event has the
  models the run built as outputs and the dlt-loaded sources as inputs; the node events are the task's children.
- ``openlineage_inject_parent_job_info`` sends the task's OpenLineage parent run as the run's cause.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import attr
import pytest
from conftest import TESTS, connection_json

pytest.importorskip("airflow.providers.openlineage", reason="the openlineage extra is not installed")

from openlineage.common.provider.dbt import DbtCloudArtifactProcessor, ParentRunMetadata

from airflow_dbt_cloud_dlt.assets import dlt_table_asset_uri, parse_table_asset_uri
from airflow_dbt_cloud_dlt.lineage import _processor_class, parent_job_cause
from airflow_dbt_cloud_dlt.testing import JobScript, StepScript
from airflow_dbt_cloud_dlt.testing.project import example_project

DUCKDB_PATH = "/data/warehouse.duckdb"
NAMESPACE = f"duckdb://{DUCKDB_PATH}"
#: What `dbt build` of the example project builds that OpenLineage's processor has jobs for (it has none for
#: seeds), and the sources they read: the dlt-loaded raw.orders and raw.customers, and raw.payments.
BUILT = {"stg_orders", "stg_customers", "stg_payments", "fct_orders", "dim_customers", "customers_snapshot"}
SOURCES = {"orders", "customers", "payments"}
PARENT = ParentRunMetadata(
    run_id="01932f2e-0000-7000-8000-000000000000",
    job_name="dag.task",
    job_namespace="default",
    root_parent_run_id="01932f2e-0000-7000-8000-000000000001",
    root_parent_job_name="dag",
    root_parent_job_namespace="default",
)


def dlt_table(table: str, destination: str = "duckdb", **credentials: Any) -> tuple[str, str]:
    """(namespace, name) of a table dlt loaded into dataset ``raw``, by the package's naming rule."""
    named = parse_table_asset_uri(
        dlt_table_asset_uri(destination, credentials or {"database": DUCKDB_PATH}, "raw", table)
    )
    return named.namespace, named.openlineage_name


def process(processor_class: type, profile: dict[str, Any], namespace: str | None = None) -> Any:
    project = example_project()
    processor = processor_class(
        producer="test",
        job_namespace="default",
        manifest=project.manifest(generated_at="2026-01-01T00:00:00Z", invocation_id="1"),
        run_result=project.run_results("dbt build", generated_at="2026-01-01T00:00:00Z", invocation_id="1"),
        profile=profile,
        catalog=None,
    )
    if namespace:
        processor.namespace = namespace
    processor.dbt_run_metadata = PARENT
    return processor.parse()


def inputs_by_job(events: Any) -> dict[str, set[tuple[str, str]]]:
    """The inputs of each model's COMPLETE event, by model name."""
    return {
        e.job.name.split(".")[-3]: {(d.namespace, d.name) for d in e.inputs}
        for e in events.completes
        if e.job.name.endswith(".run")
    }


# --- the processor's names against the naming rule ---------------------------------------------------------------


def test_openlineages_own_processor_names_sources_as_the_rule_names_dlt_tables() -> None:
    """Stock ``DbtCloudArtifactProcessor``, the project's connection as dbt Cloud gives it (DuckDB here): the
    sources stg_orders and stg_customers read are the tables dlt loaded, named by the rule."""
    events = process(DbtCloudArtifactProcessor, {"type": "duckdb", "name": "c", "details": {"path": DUCKDB_PATH}})
    reads = inputs_by_job(events)
    assert reads["stg_orders"] == {dlt_table("orders")} == {(NAMESPACE, "warehouse.raw.orders")}
    assert reads["stg_customers"] == {dlt_table("customers")}


def test_the_rule_folds_names_where_the_processor_keeps_the_manifests_case() -> None:
    """Snowflake: dlt writes ORDERS, the manifest says warehouse.raw.orders. The stock processor keeps the
    manifest's case, so the dlt table and the dbt source would be two datasets; the package's processor (the
    stock one with the rule's names) makes them one."""
    snowflake = {"type": "snowflake", "name": "c", "details": {"account": "myorg-acct"}}
    dlt = dlt_table("orders", "snowflake", database="warehouse", host="myorg-acct")
    assert dlt == ("snowflake://myorg-acct", "WAREHOUSE.RAW.ORDERS")
    stock = inputs_by_job(process(DbtCloudArtifactProcessor, snowflake))["stg_orders"]
    assert stock == {("snowflake://myorg-acct", "warehouse.raw.orders")} != {dlt}
    ours = process(_processor_class(), {"type": "snowflake", "name": "c", "details": {}}, "snowflake://myorg-acct")
    assert inputs_by_job(ours)["stg_orders"] == {dlt}
    outputs = {d.name for e in ours.completes for d in e.outputs}
    assert "WAREHOUSE.ANALYTICS.STG_ORDERS" in outputs


# --- the parent job link ---------------------------------------------------------------------------------------


class _TI:
    dag_id, task_id, run_id, map_index, try_number = "dag", "task", "manual__1", -1, 1
    logical_date = None


def test_parent_job_cause_is_json_with_the_marker_and_fits(monkeypatch: pytest.MonkeyPatch) -> None:
    """The official's payload plus this package's marker, in 255 characters: the root run when it fits (only with
    very short names: two run ids and the marker take 160), else the parent alone, else None."""
    import airflow_dbt_cloud_dlt.lineage as lineage

    marker = "[af:0123abcd.0123456789abcdef01234567]"
    short = {"job_namespace": "d", "job_name": "d.t", "root_parent_job_namespace": "d", "root_parent_job_name": "d"}
    monkeypatch.setattr(
        lineage, "parent_run_metadata", lambda ti: ParentRunMetadata(**{**attr.asdict(PARENT), **short})
    )
    cause = parent_job_cause(_TI(), marker)
    assert cause is not None and len(cause) <= 255
    payload = json.loads(cause)
    assert payload["parent"] == {"run": {"runId": PARENT.run_id}, "job": {"namespace": "d", "name": "d.t"}}
    assert payload["root"] == {"run": {"runId": PARENT.root_parent_run_id}, "job": {"namespace": "d", "name": "d"}}
    assert payload["marker"] == marker
    monkeypatch.setattr(lineage, "parent_run_metadata", lambda ti: PARENT)
    payload = json.loads(parent_job_cause(_TI(), marker) or "{}")  # root dropped, the parent link kept
    assert payload == {
        "parent": {"run": {"runId": PARENT.run_id}, "job": {"namespace": "default", "name": "dag.task"}}
    } | {"marker": marker}
    huge = ParentRunMetadata(**{**attr.asdict(PARENT), "job_name": "t" * 250})
    monkeypatch.setattr(lineage, "parent_run_metadata", lambda ti: huge)
    assert parent_job_cause(_TI(), marker) is None  # the caller keeps its readable cause


# --- real Airflow, the OpenLineage listener and a file transport --------------------------------------------------

_ids = itertools.count()


def run_in_airflow(
    emulator: Any, tmp_path: Path, kind: str, kwargs: dict[str, Any], **extra: Any
) -> tuple[str, list[dict[str, Any]]]:
    """Run a one-task DAG of ``dbt_test_dags`` with ``dag.test()`` in a fresh process whose OpenLineage transport
    is a file; (dag_id, the events written)."""
    dag_id = f"ol_{kind}_{next(_ids)}_{os.getpid()}"
    events_file = tmp_path / "events.jsonl"
    env = dict(os.environ)
    env |= {
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events_file), "append": True}
        ),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "test-airflow",
        "AIRFLOW_CONN_DBT_CLOUD_DEFAULT": connection_json(emulator.base_url, **extra),
        "DBT_TEST_DAGS": json.dumps({dag_id: [kind, kwargs]}),
        "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS / "dags"), env.get("PYTHONPATH", "")]),
    }
    env.pop("OPENLINEAGE_DISABLED", None)
    code = textwrap.dedent(f"""
        import json, sys
        from dbt_test_dags import {kind}_dag
        dag_run = {kind}_dag({dag_id!r}, **json.loads({json.dumps(json.dumps(kwargs))}))
        dag_run = dag_run.test()
        states = {{ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}}
        open({str(tmp_path / "states.json")!r}, "w").write(json.dumps(states))
    """)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    states = json.loads((tmp_path / "states.json").read_text())  # a file: forked OpenLineage workers share stdout
    assert {s.rsplit(".", 1)[-1].lower() for s in states.values()} == {"success"}, done.stdout[-3000:]
    events = [json.loads(line) for line in events_file.read_text().splitlines()] if events_file.exists() else []
    return dag_id, events


def task_event(events: list[dict[str, Any]], job_name: str, state: str) -> dict[str, Any]:
    found = [e for e in events if e["job"]["name"] == job_name and e["eventType"] == state]
    assert len(found) == 1, [(e["job"]["name"], e["eventType"]) for e in events]
    return found[0]


def names(datasets: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(d["namespace"], d["name"]) for d in datasets}


def dbt_job(job_id: int) -> JobScript:
    steps = [StepScript("Invoke dbt with `dbt deps`"), StepScript("Invoke dbt with `dbt build`")]
    return JobScript(job_id=job_id, account_id=1, run_seconds=0.3, project=True, steps=steps)


def assert_run_lineage(events: list[dict[str, Any]], job_name: str) -> None:
    """The task's COMPLETE event: the built models as outputs, the sources (dlt tables) as inputs; and one event
    per dbt node, each a child of the task's run."""
    complete = task_event(events, job_name, "COMPLETE")
    outputs = {(NAMESPACE, f"warehouse.analytics.{model}") for model in BUILT}
    assert names(complete["outputs"]) == outputs
    assert names(complete["inputs"]) == {dlt_table(table) for table in SOURCES}
    assert {dlt_table("orders"), dlt_table("customers")} <= names(complete["inputs"])
    task_run = complete["run"]["runId"]
    nodes = [e for e in events if e["job"]["name"].startswith("warehouse.")]
    assert {e["job"]["name"].split(".")[-3] for e in nodes if e["job"]["name"].endswith(".build.run")} >= BUILT - {
        "customers_snapshot"
    }
    assert nodes and all(e["run"]["facets"]["parent"]["run"]["runId"] == task_run for e in nodes)
    stg_orders = task_event(events, "warehouse.analytics.analytics.stg_orders.build.run", "COMPLETE")
    assert names(stg_orders["inputs"]) == {dlt_table("orders")}


@pytest.mark.usefixtures("airflow_db")
@pytest.mark.parametrize(
    ("kind", "args"),
    [
        ("operator", {"deferrable": False, "poll_interval": 0.2}),
        ("operator", {"deferrable": True, "poll_interval": 0.2}),
        ("official", {"cls": "DbtCloudRunJobOperator", "check_interval": 0.2}),
    ],
)
def test_run_job_task_lineage_has_the_models_as_outputs_and_the_dlt_tables_as_inputs(
    emulator: Any, tmp_path: Path, kind: str, args: dict[str, Any]
) -> None:
    emulator.add_job(dbt_job(51))
    dag_id, events = run_in_airflow(emulator, tmp_path, kind, {"job_id": 51, **args}, asset_namespace=NAMESPACE)
    assert_run_lineage(events, f"{dag_id}.{'task' if kind == 'official' else 'dbt'}")


@pytest.mark.usefixtures("airflow_db")
@pytest.mark.parametrize("cls", [None, "DbtCloudJobRunSensor"])
def test_sensor_lineage_of_a_run_started_elsewhere(emulator: Any, tmp_path: Path, cls: str | None) -> None:
    from conftest import start_run

    run_id = start_run(emulator, 52, run_seconds=0.3, project=True, steps=[StepScript("Invoke dbt with `dbt build`")])
    emulator.advance(60)
    kind, args = ("official", {"cls": cls, "run_id": run_id}) if cls else ("sensor", {"run_id": run_id})
    dag_id, events = run_in_airflow(emulator, tmp_path, kind, {**args, "poke_interval": 0.2}, asset_namespace=NAMESPACE)
    assert_run_lineage(events, f"{dag_id}.{'task' if cls else 'wait'}")


@pytest.mark.usefixtures("airflow_db")
def test_without_asset_namespace_the_projects_connection_names_the_datasets(emulator: Any, tmp_path: Path) -> None:
    """No ``asset_namespace`` on the task or the connection: the namespace comes from the dbt Cloud project's
    warehouse connection (v3 project endpoint), as in the official provider, and names the same datasets."""
    job = dbt_job(57)
    job.connection = {"type": "duckdb", "name": "warehouse", "details": {"path": DUCKDB_PATH}}
    emulator.add_job(job)
    dag_id, events = run_in_airflow(emulator, tmp_path, "operator", {"job_id": 57, "poll_interval": 0.2})
    assert_run_lineage(events, f"{dag_id}.dbt")
    assert emulator.request_count("GET", "/api/v3/accounts/1/projects/1/") == 1


@pytest.mark.usefixtures("airflow_db")
def test_no_namespace_and_no_project_connection_gives_empty_lineage_not_a_failure(
    emulator: Any, tmp_path: Path
) -> None:
    """No ``asset_namespace``, and a project without a warehouse connection: no lineage, and the task still
    succeeds (reading lineage never fails a task)."""
    emulator.add_job(dbt_job(53))
    dag_id, events = run_in_airflow(emulator, tmp_path, "operator", {"job_id": 53, "poll_interval": 0.2})
    complete = task_event(events, f"{dag_id}.dbt", "COMPLETE")
    assert complete["inputs"] == [] and complete["outputs"] == []
    assert emulator.request_count("GET", "/api/v3/accounts/1/projects/1/") == 1


@pytest.mark.usefixtures("airflow_db")
@pytest.mark.parametrize("kind", ["official", "operator"])
def test_inject_parent_job_info_sends_the_tasks_openlineage_run_as_the_cause(
    emulator: Any, tmp_path: Path, kind: str
) -> None:
    emulator.add_job(dbt_job(54))
    args: dict[str, Any] = {"job_id": 54, "openlineage_inject_parent_job_info": True}
    args |= {"cls": "DbtCloudRunJobOperator", "check_interval": 0.2} if kind == "official" else {"poll_interval": 0.2}
    dag_id, events = run_in_airflow(emulator, tmp_path, kind, args, asset_namespace=NAMESPACE)
    task = f"{dag_id}.{'task' if kind == 'official' else 'dbt'}"
    complete = task_event(events, task, "COMPLETE")
    (run,) = emulator.runs.values()
    (post,) = [r for r in emulator.requests if r.method == "POST" and r.path.endswith("/jobs/54/run/")]
    assert post.body is not None and post.body["cause"] == run["trigger"]["cause"]
    cause = json.loads(post.body["cause"])
    assert cause["parent"] == {
        "run": {"runId": complete["run"]["runId"]},
        "job": {"namespace": "test-airflow", "name": task},
    }
    assert set(cause) == {"parent", "marker"}  # the root run does not fit beside the marker (see above)
    assert cause["marker"].startswith("[af:")  # exactly-once still finds this task's run
    assert "[afw:" in cause["marker"]  # and the orphaned-run reconciler knows the task waits for it


@pytest.mark.usefixtures("airflow_db")
def test_without_inject_the_cause_stays_readable(emulator: Any, tmp_path: Path) -> None:
    emulator.add_job(dbt_job(55))
    args = {"job_id": 55, "cls": "DbtCloudRunJobOperator", "check_interval": 0.2}
    dag_id, _ = run_in_airflow(emulator, tmp_path, "official", args, asset_namespace=NAMESPACE)
    (run,) = emulator.runs.values()
    assert run["trigger"]["cause"].startswith(f"Triggered via Apache Airflow by task 'task' in the {dag_id} DAG.")


@pytest.mark.usefixtures("airflow_db")
def test_a_retry_finds_its_run_by_the_marker_in_the_json_cause(emulator: Any, tmp_path: Path) -> None:
    """Exactly once with the parent job info: the first try dies right after the trigger, the retry attaches to
    the run that try started (its marker is in the JSON cause), and there is one run."""
    emulator.add_job(dbt_job(56))
    args = {"job_id": 56, "crash": "raise", "retries": 1, "retry_delay": 0, "poll_interval": 0.1}
    run_in_airflow(emulator, tmp_path, "operator", args | {"openlineage_inject_parent_job_info": True})
    (run,) = emulator.runs.values()
    assert run["status"] == 10 and json.loads(run["trigger"]["cause"])["marker"].startswith("[af:")
