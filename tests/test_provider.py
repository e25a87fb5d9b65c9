"""Provider registration: schema-valid provider info, discovery by Airflow, lazy imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import resources

import jsonschema

from airflow_dbt_cloud_dlt.provider_info import get_provider_info


def test_provider_info_is_valid_for_airflow() -> None:
    schema = json.loads(resources.files("airflow").joinpath("provider_info.schema.json").read_text())
    info = get_provider_info()
    jsonschema.validate(info, schema)
    # not "dbt_cloud": both providers can coexist; the old name stays registered for stored connections
    assert [t["connection-type"] for t in info["connection-types"]] == ["dbtclouddlt", "dbt_cloud_dlt"]


def test_airflow_discovers_the_provider() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "airflow-dbt-cloud-dlt" in manager.providers
    assert "airflow_dbt_cloud_dlt.links.DbtCloudRunLink" in manager.extra_links_class_names
    hook = manager.hooks["dbtclouddlt"]
    assert hook is not None and hook.hook_class_name == "airflow_dbt_cloud_dlt.hooks.DbtCloudHook"


def test_providers_list_cli_shows_the_package() -> None:
    command = [sys.executable, "-m", "airflow", "providers", "list", "-o", "json"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert "airflow-dbt-cloud-dlt" in result.stdout, result.stderr[-2000:]


def test_providers_page_links_to_this_projects_documentation() -> None:
    """Airflow builds the providers page's link from the ``Documentation`` project URL (else its own site)."""
    from airflow_dbt_cloud_dlt._compat import AIRFLOW_3

    if AIRFLOW_3:
        from airflow.providers_manager import ProvidersManager

        url = ProvidersManager().providers["airflow-dbt-cloud-dlt"].data["documentation-url"]
    else:
        from airflow.utils.docs import get_doc_url_for_provider

        url = get_doc_url_for_provider("airflow-dbt-cloud-dlt", "0")
    assert url == "https://github.com/airflow-dbt-cloud-dlt/airflow-dbt-cloud-dlt#readme"


def test_importing_the_package_and_helpers_does_not_import_airflow() -> None:
    code = (
        "import sys, airflow_dbt_cloud_dlt\n"
        "from airflow_dbt_cloud_dlt import run_dbt_cloud_job, get_dbt_cloud_run_status\n"
        "from airflow_dbt_cloud_dlt import provider_info\n"
        "provider_info.get_provider_info()\n"
        "print(sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"
