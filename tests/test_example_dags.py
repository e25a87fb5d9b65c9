"""The example DAGs: they parse cleanly and cheaply, have the documented shape, and really run
(``dag.test()``, deferred waits run in line) against the local dbt Cloud emulator."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from conftest import xcom

from airflow_dbt_cloud_dlt.operators import RunDbtCloudJobOperator
from airflow_dbt_cloud_dlt.sensors import DbtCloudRunSensor
from airflow_dbt_cloud_dlt.testing import JobScript, StepScript
from airflow_dbt_cloud_dlt.triggers import DbtCloudRunTrigger

EXAMPLE_DAGS = Path(__file__).parent.parent / "example_dags"
AIRFLOW_2 = version("apache-airflow").startswith("2.")
EXPECTED_TASKS = {
    "example_dbt_cloud_assets": {"run_dbt_cloud_job"},
    "example_dbt_cloud_deferred": {"run_dbt_cloud_job"},
    "example_dbt_cloud_openlineage": {"run_dbt_cloud_job"},
    "example_dbt_cloud_sensor": {"trigger", "wait_for_run"},
    "example_dlt_then_dbt_cloud": {"load_orders", "run_dbt_cloud_job", "summarize"},
}


def load_dagbag() -> Any:
    """A DagBag of example_dags/ only. Airflow 3 moved DagBag and never adds its own examples to it."""
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 2
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef,attr-defined,unused-ignore]

        return DagBag(dag_folder=str(EXAMPLE_DAGS), include_examples=False)
    return DagBag(dag_folder=str(EXAMPLE_DAGS))


@pytest.fixture(scope="module")
def dagbag() -> Any:
    return load_dagbag()


WATCHER_EXAMPLE = "example_dbt_cloud_job_watcher.py"  # Airflow 3 only: on 2.11 it defines no DAG


def test_every_example_file_loads_without_import_errors(dagbag: Any) -> None:
    assert dagbag.import_errors == {}
    files = {path.name for path in EXAMPLE_DAGS.glob("*.py")}
    # the official provider's example (dag id "example_dbt_cloud") is tested in test_official_example.py
    assert files == {f"{dag_id}.py" for dag_id in EXPECTED_TASKS} | {"example_official_dbt_cloud.py", WATCHER_EXAMPLE}
    with_dags = files - {WATCHER_EXAMPLE} if AIRFLOW_2 else files
    assert {Path(dag.fileloc).name for dag in dagbag.dags.values()} == with_dags
    watcher_dags = set() if AIRFLOW_2 else {"example_dbt_cloud_job_watcher", "example_dbt_cloud_job_failure_alert"}
    assert set(dagbag.dags) == {
        *EXPECTED_TASKS,
        "example_dbt_cloud",
        "example_dbt_cloud_assets_consumer",
        *watcher_dags,
    }


def test_assets_example_emits_through_an_alias_and_a_dag_is_scheduled_on_one_model(dagbag: Any) -> None:
    from airflow_dbt_cloud_dlt.assets import asset, asset_alias

    task = dagbag.dags["example_dbt_cloud_assets"].get_task("run_dbt_cloud_job")
    assert task.asset_alias == "dbt_cloud_models" and task.outlets == [asset_alias("dbt_cloud_models")]
    consumer = dagbag.dags["example_dbt_cloud_assets_consumer"]
    assert set(consumer.task_ids) == {"report"}
    fct_orders = asset(f"duckdb:{task.asset_namespace.removeprefix('duckdb://')}/warehouse/analytics/fct_orders")
    assert _scheduled_on(consumer) == [fct_orders]


@pytest.mark.skipif(AIRFLOW_2, reason="AssetWatcher is Airflow 3 only")
def test_watcher_example_schedules_two_dags_on_watched_assets(dagbag: Any) -> None:
    from airflow_dbt_cloud_dlt.triggers import DbtCloudJobRunWatcher

    watchers = {}
    for dag_id, task_id in [
        ("example_dbt_cloud_job_watcher", "report"),
        ("example_dbt_cloud_job_failure_alert", "alert"),
    ]:
        dag = dagbag.dags[dag_id]
        assert set(dag.task_ids) == {task_id} and dag.catchup is False
        (asset,) = _scheduled_on(dag)
        (watcher,) = asset.watchers
        watchers[dag_id] = watcher.trigger
    assert all(isinstance(t, DbtCloudJobRunWatcher) for t in watchers.values())
    assert watchers["example_dbt_cloud_job_watcher"].statuses == ["cancelled", "error", "success"]
    assert watchers["example_dbt_cloud_job_failure_alert"].statuses == ["cancelled", "error"]


def _scheduled_on(dag: Any) -> list[Any]:
    """The Assets (Datasets) a DAG is scheduled on."""
    condition = getattr(dag.timetable, "asset_condition", None) or getattr(dag.timetable, "dataset_condition", None)
    return list(getattr(condition, "objects", [condition]))


@pytest.mark.parametrize("dag_id", sorted(EXPECTED_TASKS))
def test_example_has_the_expected_tasks(dagbag: Any, dag_id: str) -> None:
    dag = dagbag.dags[dag_id]
    assert set(dag.task_ids) == EXPECTED_TASKS[dag_id]
    assert type(dag.timetable).__name__ == "NullTimetable"  # schedule=None: runs only when triggered
    assert dag.catchup is False


@pytest.mark.parametrize(
    "dag_id",
    [
        "example_dbt_cloud_assets",
        "example_dbt_cloud_deferred",
        "example_dbt_cloud_openlineage",
        "example_dlt_then_dbt_cloud",
    ],
)
def test_dbt_task_triggers_and_waits_deferred(dagbag: Any, dag_id: str) -> None:
    task = dagbag.dags[dag_id].get_task("run_dbt_cloud_job")
    assert isinstance(task, RunDbtCloudJobOperator)
    assert task.deferrable is True
    assert task.wait_for_termination is True
    assert task.dbt_cloud_conn_id == "dbt_cloud_default"
    assert task.job_id == "{{ params.job_id }}"


def test_sensor_example_triggers_without_waiting_then_senses_deferred(dagbag: Any) -> None:
    dag = dagbag.dags["example_dbt_cloud_sensor"]
    trigger, wait = dag.get_task("trigger"), dag.get_task("wait_for_run")
    assert isinstance(trigger, RunDbtCloudJobOperator)
    assert trigger.wait_for_termination is False
    assert isinstance(wait, DbtCloudRunSensor)
    assert wait.deferrable is True
    assert wait.run_id == "{{ ti.xcom_pull(task_ids='trigger', key='run_id') }}"
    assert wait.upstream_task_ids == {"trigger"}


def test_dlt_example_runs_load_then_dbt_then_summary(dagbag: Any) -> None:
    dag = dagbag.dags["example_dlt_then_dbt_cloud"]
    assert dag.get_task("run_dbt_cloud_job").upstream_task_ids == {"load_orders"}
    assert dag.get_task("summarize").upstream_task_ids == {"load_orders", "run_dbt_cloud_job"}


def test_parsing_the_examples_does_not_import_dlt_duckdb_or_requests() -> None:
    """DAG files are parsed again and again: heavy imports belong inside the tasks."""
    code = (
        "import runpy, sys\n"
        "try:\n    import airflow.sdk\nexcept ImportError:\n    import airflow.decorators\n"
        "before = set(sys.modules)\n"
        f"for path in {sorted(str(p) for p in EXAMPLE_DAGS.glob('*.py'))!r}:\n"
        "    runpy.run_path(path)\n"
        "print(sorted({name.split('.')[0] for name in set(sys.modules) - before} & {'dlt', 'duckdb', 'requests'}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout


def test_importing_the_task_modules_leaves_the_hook_and_the_api_core_to_run_time() -> None:
    """DAG parsing imports the operators: the hook and the API core (≈14 ms) load when a task runs."""
    code = (
        "import sys\n"
        "import airflow_dbt_cloud_dlt.operators, airflow_dbt_cloud_dlt.sensors, airflow_dbt_cloud_dlt.triggers\n"
        "heavy = ('hooks', 'api.core', 'api.official', 'api.client', 'api.aio')\n"
        "print(sorted(name for name in heavy if f'airflow_dbt_cloud_dlt.{name}' in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout


def test_importing_the_task_modules_does_not_load_openlineage() -> None:
    """OpenLineage (the provider, its client, the dbt processor) and this package's lineage module load only when
    OpenLineage's listener asks a finished task for its lineage, not when DAG parsing imports the operators."""
    code = (
        "import sys\n"
        "try:\n    import airflow.sdk\nexcept ImportError:\n    import airflow.models\n"
        "before = set(sys.modules)\n"
        "import airflow_dbt_cloud_dlt.operators, airflow_dbt_cloud_dlt.sensors, airflow_dbt_cloud_dlt.triggers\n"
        "new = set(sys.modules) - before\n"
        "print(sorted(n for n in new if n.startswith(('openlineage', 'airflow.providers.openlineage', "
        "'airflow_dbt_cloud_dlt.lineage'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout


# --- end to end: dag.test() against the emulator ------------------------------------------------------------


@pytest.fixture
def example_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    """Airflow 3.3's ``dag.test()`` runs only DAGs found in a configured DAG bundle: add example_dags/ as one."""
    if AIRFLOW_2:
        return
    local = "airflow.dag_processing.bundles.local.LocalDagBundle"
    bundles = [
        {"name": "dags-folder", "classpath": local, "kwargs": {}},
        {"name": "example-dags", "classpath": local, "kwargs": {"path": str(EXAMPLE_DAGS), "refresh_interval": 0}},
    ]
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps(bundles))


def xcom_value(ti: Any, key: str = "return_value") -> Any:
    return xcom(ti, key)


@pytest.mark.usefixtures("airflow_db", "airflow_conn", "example_bundle")
@pytest.mark.parametrize("dag_id", sorted(EXPECTED_TASKS))
def test_example_runs_against_the_emulator(
    dag_id: str, emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The DAG param picks the job; the wait runs in the trigger (in line, under ``dag.test()``)."""
    # still running when the wait starts; the assets example's job builds the emulator's example dbt project
    emulator.add_job(JobScript(job_id=7, account_id=1, run_seconds=1.5, project=dag_id == "example_dbt_cloud_assets"))
    waits: list[DbtCloudRunTrigger] = []
    original_run = DbtCloudRunTrigger.run

    async def spy(self: DbtCloudRunTrigger) -> AsyncIterator[Any]:
        waits.append(self)
        async for event in original_run(self):
            yield event

    monkeypatch.setattr(DbtCloudRunTrigger, "run", spy)
    duckdb_path = tmp_path / "demo.duckdb"
    for name, value in {
        "DBT_CLOUD_POLL_INTERVAL": "0.2",  # read when the DAG file is parsed
        "DEMO_DUCKDB_PATH": str(duckdb_path),
        "DLT_DATA_DIR": str(tmp_path / "dlt"),  # dlt's pipeline state, instead of ~/.dlt
        "RUNTIME__DLTHUB_TELEMETRY": "false",
        "DBT_CLOUD_ASSET_NAMESPACE": f"duckdb://{tmp_path}/warehouse.duckdb",
    }.items():
        monkeypatch.setenv(name, value)
    dag = load_dagbag().dags[dag_id]
    if AIRFLOW_2 and dag_id in ("example_dbt_cloud_assets", "example_dlt_then_dbt_cloud"):  # 2.11's dag.test()
        # does not sync a DatasetAlias
        dag.sync_to_db()

    dag_run = dag.test(run_conf={"job_id": 7})

    tis = {ti.task_id: ti for ti in dag_run.get_task_instances()}
    assert {task_id: ti.state for task_id, ti in tis.items()} == dict.fromkeys(EXPECTED_TASKS[dag_id], "success")
    runs = list(emulator.runs.values())
    assert [(run["job_definition_id"], run["status"]) for run in runs] == [(7, 10)]
    cause = runs[0]["trigger"]["cause"]
    if dag_id == "example_dbt_cloud_openlineage":  # the task's OpenLineage parent run, and the marker
        parent = json.loads(cause)["parent"]
        assert parent["job"]["name"] == f"{dag_id}.run_dbt_cloud_job" and parent["run"]["runId"]
    else:
        assert f"Triggered by Airflow: {dag_id}." in cause
    assert [(w.conn_id, w.run_id, w.poll_interval) for w in waits] == [("dbt_cloud_default", runs[0]["id"], 0.2)]
    if dag_id == "example_dlt_then_dbt_cloud":
        summary = xcom_value(tis["summarize"])
        assert summary == {"rows": 4, "run_id": runs[0]["id"], "status": "Success", "run_url": runs[0]["href"]}
        assert duckdb_path.is_file()
        # the dlt load's asset event; the job has no manifest yet, so select_from_load ran it whole
        assert _recorded_event_uris(dag_id) == {f"duckdb:{duckdb_path}/demo/raw/orders"}
        assert "steps_override" not in runs[0]["trigger"] or not runs[0]["trigger"]["steps_override"]
    if dag_id == "example_dbt_cloud_assets":
        rebuilt = _recorded_event_uris(dag_id)
        assert len(rebuilt) == 7 and f"duckdb:{tmp_path}/warehouse.duckdb/warehouse/analytics/fct_orders" in rebuilt


@pytest.mark.usefixtures("airflow_db", "airflow_conn", "example_bundle")
def test_a_dag_scheduled_on_a_model_is_queued_when_and_only_when_a_run_rebuilt_it(
    emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The consumer example is scheduled on fct_orders: a run that did not build it queues nothing for it, a run
    that did queues it (the scheduler then starts it from that queue)."""
    for job_id, select in ((8, "stg_payments"), (9, "stg_orders+")):
        steps = [StepScript(f"Invoke dbt with `dbt build --select {select}`")]
        emulator.add_job(JobScript(job_id=job_id, account_id=1, run_seconds=0.3, project=True, steps=steps))
    monkeypatch.setenv("DBT_CLOUD_POLL_INTERVAL", "0.2")
    monkeypatch.setenv("DBT_CLOUD_ASSET_NAMESPACE", f"duckdb://{tmp_path}/warehouse.duckdb")
    fct_orders = f"duckdb:{tmp_path}/warehouse.duckdb/warehouse/analytics/fct_orders"
    bag = load_dagbag()
    if AIRFLOW_2:
        bag.sync_to_db()
    else:
        from airflow.dag_processing.bundles.manager import DagBundlesManager
        from airflow.dag_processing.dagbag import sync_bag_to_db

        DagBundlesManager().sync_bundles_to_db()  # the "example-dags" bundle, as the DAG processor registers it
        sync_bag_to_db(bag, "example-dags", None)
    producer = bag.dags["example_dbt_cloud_assets"]

    assert str(producer.test(run_conf={"job_id": 8}).state).endswith("success")
    assert _queued_for(fct_orders) == set()  # stg_payments only: fct_orders was not rebuilt
    assert str(producer.test(run_conf={"job_id": 9}).state).endswith("success")
    assert _queued_for(fct_orders) == {"example_dbt_cloud_assets_consumer"}


def _queued_for(uri: str) -> set[str]:
    """DAGs that the scheduler is to start because the Asset (Dataset) ``uri`` was updated."""
    from airflow.utils.session import create_session

    with create_session() as session:
        if AIRFLOW_2:
            from airflow.models.dataset import DatasetDagRunQueue, DatasetModel

            rows = session.query(DatasetDagRunQueue.target_dag_id).join(
                DatasetModel, DatasetModel.id == DatasetDagRunQueue.dataset_id
            )
            return {row[0] for row in rows.filter(DatasetModel.uri == uri)}
        from airflow.models.asset import AssetDagRunQueue, AssetModel

        rows = session.query(AssetDagRunQueue.target_dag_id).join(
            AssetModel, AssetModel.id == AssetDagRunQueue.asset_id
        )
        return {row[0] for row in rows.filter(AssetModel.uri == uri)}


def _recorded_event_uris(dag_id: str) -> set[str]:
    from airflow.utils.session import create_session

    with create_session() as session:
        if AIRFLOW_2:
            from airflow.models.dataset import DatasetEvent

            return {e.dataset.uri for e in session.query(DatasetEvent).filter(DatasetEvent.source_dag_id == dag_id)}
        from airflow.models.asset import AssetEvent

        return {e.asset.uri for e in session.query(AssetEvent).filter(AssetEvent.source_dag_id == dag_id)}
