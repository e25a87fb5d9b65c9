"""Provider registration for Airflow (entry point ``apache_airflow_provider``). Imports nothing heavy."""

from __future__ import annotations

from typing import Any

from ._version import __version__

CONN_TYPE = "dbt_cloud_dlt"
_INTEGRATION = "dbt Cloud (airflow-dbt-cloud-dlt)"
_PKG = "airflow_dbt_cloud_dlt"
#: Shown by the connection form; Airflow 3.2+ reads them from here, 2.x from the hook's classmethods.
UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "port"],
    "relabeling": {"host": "Access URL", "login": "Account ID", "password": "API Token"},
    "placeholders": {
        "host": "ab123.us1.dbt.com (default: cloud.getdbt.com)",
        "login": "12345",
        "extra": '{"job_id": 678, "timeout": 30, "verify": true, "proxies": {"https": "http://proxy:3128"}}',
    },
}
CONN_FIELDS: dict[str, Any] = {
    "job_id": {"label": "Default job id", "schema": {"type": ["integer", "null"]}},
    "project_id": {"label": "Project id", "schema": {"type": ["integer", "null"]}},
    "environment_id": {"label": "Environment id", "schema": {"type": ["integer", "null"]}},
    "timeout": {
        "label": "Request timeout (s)",
        "description": "Seconds to wait for one API answer (default 30).",
        "schema": {"type": ["number", "null"]},
    },
    "verify": {
        "label": "TLS verification",
        "description": "true (default), false (testing only), or the path of a CA bundle.",
        "schema": {"type": ["string", "boolean", "null"]},
    },
}


def get_provider_info() -> dict[str, Any]:
    """What Airflow needs to know about this provider."""
    return {
        "package-name": "airflow-dbt-cloud-dlt",
        "name": "dbt Cloud (dlt-compatible)",
        "description": "Trigger and monitor dbt Cloud job runs, blocking or deferred, with dlt-compatible helpers.",
        "versions": [__version__],
        "integrations": [{"integration-name": _INTEGRATION, "tags": ["dbt"]}],
        "hooks": [{"integration-name": _INTEGRATION, "python-modules": [f"{_PKG}.hooks"]}],
        "operators": [{"integration-name": _INTEGRATION, "python-modules": [f"{_PKG}.operators"]}],
        "sensors": [{"integration-name": _INTEGRATION, "python-modules": [f"{_PKG}.sensors"]}],
        "triggers": [{"integration-name": _INTEGRATION, "python-modules": [f"{_PKG}.triggers"]}],
        "connection-types": [
            {
                "connection-type": CONN_TYPE,
                "hook-class-name": f"{_PKG}.hooks.DbtCloudHook",
                "hook-name": "dbt Cloud (dlt-compatible)",
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
                "conn-fields": CONN_FIELDS,
            }
        ],
        "extra-links": [f"{_PKG}.links.DbtCloudRunLink"],
    }
