"""Provider registration for Airflow (entry point ``apache_airflow_provider``). Imports nothing heavy."""

from __future__ import annotations

from typing import Any

from ._version import __version__

#: The connection type. Airflow warns about a "_" in a connection type (it is the scheme of the connection's URI,
#: RFC 3986) and turns "-" into "_" when it reads a URI or JSON, so the name has neither.
CONN_TYPE = "dbtclouddlt"
#: The type name of earlier releases: connections stored under it keep working (the hook is registered under it too).
LEGACY_CONN_TYPE = "dbt_cloud_dlt"
#: The official provider's type: this package's hook reads its connections unchanged.
OFFICIAL_CONN_TYPE = "dbt_cloud"
#: The connection id that hooks and tasks use when none is given (the official provider's too).
DEFAULT_CONN_ID = "dbt_cloud_default"
_INTEGRATION = "dbt Cloud (airflow-dbt-cloud-dlt)"
_PKG = "airflow_dbt_cloud_dlt"
#: Shown by the connection form; Airflow 3.2+ reads them from here, 2.x from the hook's classmethods.
UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema"],
    "relabeling": {"host": "Access URL", "login": "Account ID", "password": "API Token"},
    "placeholders": {
        "host": "ab123.us1.dbt.com (default: cloud.getdbt.com)",
        "port": "443 (optional)",
        "login": "12345",
        "extra": '{"job_id": 678, "timeout": 30, "verify": true, "proxies": {"https": "http://proxy:3128"}}',
    },
}
_ID_SCHEMA = {"type": ["integer", "null"], "minimum": 1}
#: Extra fields of the connection form. Airflow 3's form keeps each field's first non-null JSON type (an integer
#: or number field stores a JSON number, not a string) and saves every field, an empty one as null; the hook
#: reads null, "" and numbers given as strings as well. Airflow 2 reads them from the hook's classmethod.
CONN_FIELDS: dict[str, Any] = {
    "job_id": {
        "label": "Default job id",
        "description": "The job that operators and helpers run when they name none (optional).",
        "schema": _ID_SCHEMA,
    },
    "project_id": {"label": "Project id", "description": "Optional.", "schema": _ID_SCHEMA},
    "environment_id": {"label": "Environment id", "description": "Optional.", "schema": _ID_SCHEMA},
    "timeout": {
        "label": "Request timeout (s)",
        "description": "Seconds to wait for one API answer (default 30).",
        "schema": {"type": ["number", "null"], "exclusiveMinimum": 0},
    },
    "verify": {
        "label": "TLS verification",
        "description": "true (default), false (testing only), or the path of a CA bundle.",
        "schema": {"type": ["string", "boolean", "null"]},
    },
}


def _connection_type(conn_type: str, hook_class: str, hook_name: str) -> dict[str, Any]:
    return {
        "connection-type": conn_type,
        "hook-class-name": f"{_PKG}.hooks.{hook_class}",
        "hook-name": hook_name,
        "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
        "conn-fields": CONN_FIELDS,
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
            _connection_type(CONN_TYPE, "DbtCloudHook", "dbt Cloud (dlt-compatible)"),
            _connection_type(LEGACY_CONN_TYPE, "LegacyTypeDbtCloudHook", "dbt Cloud (dlt-compatible, old type name)"),
        ],
        "extra-links": [f"{_PKG}.links.DbtCloudRunLink", f"{_PKG}.links.DbtCloudRunJobOperatorLink"],
    }
