"""The "dbt Cloud run" extra link of the operators and the sensor."""

from __future__ import annotations

from typing import Any

from ._compat import AIRFLOW_3, BaseOperatorLink, XCom


class DbtCloudRunLink(BaseOperatorLink):
    """Link from a task to its dbt Cloud run.

    Airflow 3 computes the link once, in the worker, on the very operator that ran (and stores it): the run
    URL is then an attribute of that operator, and a task that failed before any run existed gets an empty
    link without an XCom lookup (which Airflow 3 would log as an "XCom not found" error). Airflow 2 asks the
    webserver's copy of the operator, so there the URL is read from XCom ``run_url``; a missing one is None.
    """

    name = "dbt Cloud run"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        url = getattr(operator, "run_url", None)
        if url or AIRFLOW_3:
            return str(url or "")
        return str(XCom.get_value(ti_key=ti_key, key="run_url") or "")
