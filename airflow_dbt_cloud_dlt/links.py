"""The "dbt Cloud run" extra link of the operators and the sensor."""

from __future__ import annotations

from typing import Any

from ._compat import AIRFLOW_3, BaseOperatorLink, XCom
from .api.reporting import is_web_link


class DbtCloudRunLink(BaseOperatorLink):
    """Link from a task to its dbt Cloud run.

    Airflow 3 computes the link once, in the worker, on the very operator that ran (and stores it): the run
    URL is then an attribute of that operator, and a task that failed before any run existed gets an empty
    link without an XCom lookup (which Airflow 3 would log as an "XCom not found" error). Airflow 2 asks the
    webserver's copy of the operator, so there the URL is read from XCom ``run_url``; a missing one is None.
    The URL is on the connection's host (:func:`.api.reporting.run_url`); anything but an https link (or http to
    loopback) is shown as no link.
    """

    name = "dbt Cloud run"
    #: The XCom key that holds the run's URL.
    url_xcom_key = "run_url"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        url = getattr(operator, "run_url", None)
        if not url and not AIRFLOW_3:
            url = XCom.get_value(ti_key=ti_key, key=self.url_xcom_key)
        return str(url) if is_web_link(url) else ""  # only https (http to loopback) links reach the UI


class DbtCloudRunJobOperatorLink(DbtCloudRunLink):
    """The same link under the official provider's name ("Monitor Job Run") and XCom key (``job_run_url``)."""

    name = "Monitor Job Run"
    url_xcom_key = "job_run_url"
