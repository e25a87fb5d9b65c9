"""Airflow 3.x names first, Airflow 2.11 names as the fallback. The only module that knows both."""

from __future__ import annotations

try:  # Airflow 3
    from airflow.sdk import BaseHook, BaseOperator, BaseOperatorLink, BaseSensorOperator, Context
    from airflow.sdk.exceptions import (
        AirflowException,
        AirflowFailException,
        AirflowSensorTimeout,
        AirflowSkipException,
    )
    from airflow.sdk.execution_time.xcom import XCom
    from airflow.sdk.log import amask_secret, mask_secret

    AIRFLOW_3 = True
except ImportError:  # Airflow 2.11
    from airflow.exceptions import (  # type: ignore[no-redef,attr-defined,unused-ignore]
        AirflowException,
        AirflowFailException,
        AirflowSensorTimeout,
        AirflowSkipException,
    )
    from airflow.hooks.base import BaseHook  # type: ignore[no-redef,attr-defined,unused-ignore]
    from airflow.models.baseoperator import BaseOperator  # type: ignore[no-redef,attr-defined,unused-ignore]
    from airflow.models.baseoperatorlink import BaseOperatorLink  # type: ignore[no-redef,attr-defined,unused-ignore]
    from airflow.models.xcom import XCom  # type: ignore[no-redef,attr-defined,unused-ignore]
    from airflow.sensors.base import BaseSensorOperator  # type: ignore[no-redef,attr-defined,unused-ignore]
    from airflow.utils.context import Context  # type: ignore[no-redef,attr-defined,unused-ignore]
    from airflow.utils.log.secrets_masker import mask_secret  # type: ignore[no-redef,attr-defined,unused-ignore]

    async def amask_secret(secret: str, name: str | None = None) -> None:  # type: ignore[misc,unused-ignore]
        """Airflow 2's masker lives in this process: the sync call does not block."""
        mask_secret(secret, name)

    AIRFLOW_3 = False

__all__ = [
    "AIRFLOW_3",
    "AirflowException",
    "AirflowFailException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "BaseHook",
    "BaseOperator",
    "BaseOperatorLink",
    "BaseSensorOperator",
    "Context",
    "XCom",
    "amask_secret",
    "mask_secret",
]
