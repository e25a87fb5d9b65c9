"""The run marker of a task instance in this Airflow deployment: what exactly-once triggering writes into a
run's ``cause`` and looks for on a retry (and what a clean-up of orphaned runs can recognise).

The marker is an HMAC of the task instance's identity (dag, task, run id, map index, and ``max_tries``, which
names the series of tries: retries keep it, a clear starts a new series with a new one) under a key that
belongs to this deployment. The key is the first of these that is set:

1. the environment variable ``DBT_CLOUD__MARKER_SECRET``;
2. the Airflow option ``[dbt_cloud] marker_secret`` (env ``AIRFLOW__DBT_CLOUD__MARKER_SECRET``);
3. ``[core] fernet_key``, which every component that reads connections shares and another Airflow does not;
4. ``[api] secret_key`` (``[webserver] secret_key`` on Airflow 2), when it is configured rather than the
   random value Airflow makes up per process when it is not.

With none of them the marker is keyed with a fixed, public key (one warning per process): a retry still finds
its run, but the marker no longer tells this deployment from another one that runs the same DAG. Every worker
and triggerer must resolve the same key; rotating it (a new Fernet key, say) makes a retry that runs across the
rotation start a new run instead of adopting the earlier try's. Set ``marker_secret`` to rule both out.
"""

from __future__ import annotations

import hmac
import os
from typing import Any

from airflow.configuration import conf

from ._compat import AIRFLOW_3
from .api.idempotency import (
    MARKER_PATTERN,
    WAITED_PATTERN,
    carries_marker,
    deployment_tag,
    task_marker,
    waited_token,
)

ENV_SECRET = "DBT_CLOUD__MARKER_SECRET"
#: The key when nothing is configured: public, so it binds nothing (see the module's doc).
UNBOUND_KEY = b"airflow-dbt-cloud-dlt: no marker secret configured"
_warned: list[bool] = []


def _configured(section: str, option: str) -> str:
    """The option's value, or "" when it is unset or only Airflow's made-up default."""
    value = str(conf.get(section, option, fallback="") or "").strip()
    try:
        default = conf.get_default_value(section, option)
    except Exception:  # an option this Airflow does not know
        default = None
    return "" if value == str(default or "").strip() else value


#: The environment variables that can change the key while a process runs (the config files are read once).
_KEY_ENV = (
    ENV_SECRET,
    "AIRFLOW__DBT_CLOUD__MARKER_SECRET",
    "AIRFLOW__CORE__FERNET_KEY",
    "AIRFLOW__API__SECRET_KEY",
    "AIRFLOW__WEBSERVER__SECRET_KEY",
)
_KEYS: dict[tuple[str | None, ...], tuple[bytes, str]] = {}


def marker_key() -> tuple[bytes, str]:
    """This deployment's marker key and where it came from (for the log; never the key itself).

    Looked up once per process and setting (reading the config costs ~0.1 ms, and the triggerer's reconciler
    computes the marker of every waiting task instance on each pass)."""
    settings = tuple(os.environ.get(name) for name in _KEY_ENV)
    found = _KEYS.get(settings)
    if found is None:
        found = _KEYS[settings] = _look_up_key()
    return found


def _look_up_key() -> tuple[bytes, str]:
    secret_key = ("api", "secret_key") if AIRFLOW_3 else ("webserver", "secret_key")
    candidates = [
        (os.environ.get(ENV_SECRET, "").strip(), f"env {ENV_SECRET}"),
        (str(conf.get("dbt_cloud", "marker_secret", fallback="") or "").strip(), "[dbt_cloud] marker_secret"),
        (str(conf.get("core", "fernet_key", fallback="") or "").strip(), "[core] fernet_key"),
        # Airflow 3 still answers [webserver] secret_key, with the [api] one: ask each version its own name.
        (_configured(*secret_key), f"[{secret_key[0]}] secret_key"),
    ]
    for value, source in candidates:
        if value:
            return value.encode(), source
    return UNBOUND_KEY, "none"


def _key() -> bytes:
    key, source = marker_key()
    if source == "none" and not _warned:
        _warned.append(True)
        from .api.core import log

        log.warning(
            "No marker secret is configured ([dbt_cloud] marker_secret, [core] fernet_key or [api] secret_key): "
            "dbt Cloud run markers cannot tell this Airflow from another one that runs the same DAG. Set "
            "[dbt_cloud] marker_secret (the same value on every worker and triggerer)."
        )
    return key


def task_instance_marker(dag_id: str, task_id: str, run_id: str, map_index: int | None, max_tries: int | None) -> str:
    """The marker, such as ``[af:1a2b3c4d.0123456789abcdef01234567]``, of one task instance's series of tries
    in this deployment. The arguments are the task instance table's columns, so the triggerer can compute the
    marker of any task instance it reads (``orphans``)."""
    return task_marker(_key(), dag_id, task_id, run_id, -1 if map_index is None else map_index, max_tries)


#: The reconciler's name for :func:`task_instance_marker` (``orphans``).
marker_for_task = task_instance_marker


def marker_of(ti: Any) -> str:
    """:func:`task_instance_marker` of a task instance object (``dag_id``, ``task_id``, ``run_id``, ``map_index``,
    ``max_tries``)."""
    return task_instance_marker(
        ti.dag_id, ti.task_id, ti.run_id, getattr(ti, "map_index", -1), getattr(ti, "max_tries", None)
    )


def waited_marker_of(cause: str, job_id: int) -> str | None:
    """The marker in ``cause`` when the run is one of this deployment's runs whose task waited for it and asked
    for it to be cancelled once nobody waits (its ``[afw:…]`` token checks out for ``job_id``), else None."""
    marker = deployment_marker_of(cause)
    if marker is None:
        return None
    token = waited_token(_key(), marker, job_id)
    return (
        marker if any(hmac.compare_digest(found.group(0), token) for found in WAITED_PATTERN.finditer(cause)) else None
    )


def waited_suffix(marker: str, job_id: int) -> str:
    """What follows ``marker`` in the cause of a run whose task waits for it: its ``[afw:…]`` token."""
    return waited_token(_key(), marker, job_id)


def is_marked_by(cause: str, ti: Any) -> bool:
    """True when a run's ``cause`` carries the marker of this task instance's series in this deployment."""
    return carries_marker(cause, marker_of(ti))


def deployment_marker_of(cause: str) -> str | None:
    """The marker in ``cause`` when it is one of this deployment's (its tag), else None."""
    tag = this_deployment_tag()
    return next((found.group(0) for found in MARKER_PATTERN.finditer(cause) if found.group(1) == tag), None)


def key_is_bound() -> bool:
    """False when no secret is configured: the public key's markers do not tell this deployment from another
    unconfigured one, so nothing should be cancelled on the strength of the tag alone."""
    return marker_key()[1] != "none"


def this_deployment_tag() -> str:
    """The deployment part of this deployment's markers (``[af:<tag>.…]``): runs of other deployments differ."""
    return deployment_tag(_key())


def is_this_deployments(cause: str) -> bool:
    """True when a run's ``cause`` carries a marker of this deployment (of any of its task instances): the
    cheap first filter of a search for runs this Airflow started, before :func:`is_marked_by` names the task
    instance. The tag is 32 bits: it filters, it does not prove."""
    return deployment_marker_of(cause) is not None
