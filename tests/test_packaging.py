"""The built distributions, as a user installs them: the wheel alone in a clean venv, and the sdist's contents.

``make test-wheel`` builds ``dist/``, installs the wheel (no editable checkout) into ``.venv-wheel`` and runs
this module with ``WHEEL_VENV`` set; a normal test run skips it. Every check runs the wheel venv's Python in a
directory outside the checkout, so nothing can be imported from the source tree by accident.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DIST = ROOT / "dist"
WHEEL_VENV = os.environ.get("WHEEL_VENV")
pytestmark = pytest.mark.skipif(not WHEEL_VENV, reason="run by `make test-wheel`, which builds and installs the wheel")


def wheel_python(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    python = (ROOT / str(WHEEL_VENV) / "bin" / "python").absolute()  # not resolve(): that leaves the venv
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTHONPATH", "VIRTUAL_ENV"))}
    return subprocess.run([str(python), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def one(pattern: str) -> Path:
    (found,) = DIST.glob(pattern)
    return found


def test_the_wheel_venv_imports_the_installed_package_not_the_checkout(tmp_path: Path) -> None:
    done = wheel_python(["-c", "import airflow_dbt_cloud_dlt as p; print(p.__file__)"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "site-packages" in done.stdout and str(ROOT / "airflow_dbt_cloud_dlt") not in done.stdout


def test_version_is_the_one_the_provider_info_reports(tmp_path: Path) -> None:
    code = (
        "from importlib.metadata import version, metadata;"
        "from airflow_dbt_cloud_dlt.provider_info import get_provider_info;"
        "print(version('airflow-dbt-cloud-dlt'), get_provider_info()['versions'][0]);"
        "print(*metadata('airflow-dbt-cloud-dlt').get_all('Project-URL'), sep='\\n')"
    )
    done = wheel_python(["-c", code], tmp_path)
    assert done.returncode == 0, done.stderr
    installed, reported = done.stdout.splitlines()[0].split()
    assert installed == reported
    assert any(line.startswith("Documentation, https://") for line in done.stdout.splitlines())


def test_wheel_holds_every_module_and_the_type_marker() -> None:
    names = set(zipfile.ZipFile(one("*.whl")).namelist())
    sources = {str(p.relative_to(ROOT)) for p in (ROOT / "airflow_dbt_cloud_dlt").rglob("*.py")}
    assert sources <= names, f"missing from the wheel: {sorted(sources - names)}"
    assert "airflow_dbt_cloud_dlt/py.typed" in names
    assert any(n.endswith("licenses/LICENSE") or n.endswith("/LICENSE") for n in names)


def test_sdist_holds_license_changelog_and_example_dags() -> None:
    with tarfile.open(one("*.tar.gz")) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"LICENSE", "README.md", "CHANGELOG.md", "pyproject.toml"} <= names
    assert "example_dags/example_dlt_then_dbt_cloud.py" in names


def test_emulator_cli_runs_from_the_wheel(tmp_path: Path) -> None:
    done = wheel_python(["-m", "airflow_dbt_cloud_dlt.testing", "--help"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "--port" in done.stdout


def test_demo_runs_an_example_dag_end_to_end_from_the_wheel(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "example_dags", tmp_path / "example_dags")  # the demo looks in the cwd
    done = wheel_python(["-m", "airflow_dbt_cloud_dlt.demo"], tmp_path, timeout=400)
    sys.stdout.write(done.stdout[-3000:])
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert str(tmp_path / "example_dags") in done.stdout  # the copied DAGs ran, not the checkout's
    # `make demo` runs this same module: the chain, as it prints it
    assert "dlt        loaded 4 rows into raw.orders" in done.stdout
    assert "the dbt task deferred" in done.stdout
    assert "load_orders success, run_dbt_cloud_job success, summarize success" in done.stdout
    assert "ran dbt deps; dbt build --select source:raw.orders+" in done.stdout  # select_from_load
    assert "3 rebuilt, one asset event each: stg_orders, dim_customers, fct_orders" in done.stdout
    assert "scheduler  started example_dbt_cloud_assets_consumer (scheduled on the fct_orders Asset): success" in (
        done.stdout
    )
    assert re.search(r"model\.analytics\.fct_orders rebuilt by dbt Cloud run \d+: 4 rows", done.stdout)
    assert done.stdout.rstrip().endswith("Demo OK.")
