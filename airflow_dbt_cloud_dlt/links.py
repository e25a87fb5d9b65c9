"""The "dbt Cloud run" extra link: opens the run page that the operator pushed to XCom."""

from __future__ import annotations

from typing import Any

from ._compat import BaseOperatorLink, XCom


class DbtCloudRunLink(BaseOperatorLink):
    """Link from a task to its dbt Cloud run."""

    name = "dbt Cloud run"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        return str(XCom.get_value(ti_key=ti_key, key="run_url") or "")
