"""The connection as a new user meets it: a type name Airflow takes without a warning, old and official type
names still read, a stored port honoured, and form extras saved by either Airflow read in their types."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import AIRFLOW_2, TOKEN

from airflow_dbt_cloud_dlt import hooks
from airflow_dbt_cloud_dlt.api.errors import DbtCloudConfigError
from airflow_dbt_cloud_dlt.hooks import DbtCloudHook, connection_to_credentials
from airflow_dbt_cloud_dlt.provider_info import CONN_FIELDS, CONN_TYPE, get_provider_info

LEGACY_CONN_TYPE = "dbt_cloud_dlt"  # the type name of earlier releases

UNDERSCORE_WARNING = "shall not contain '_'"


def conn(**fields: Any) -> SimpleNamespace:
    return SimpleNamespace(**{"host": None, "port": None, "login": "1", "password": TOKEN, **fields})


def env_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, **fields: Any) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


# --- task 4: the connection type ------------------------------------------------------------------------


def test_conn_type_is_taken_without_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    from airflow.models.connection import Connection

    assert "_" not in CONN_TYPE and "-" not in CONN_TYPE  # "-" is read back as "_" (Connection._normalize_conn_type)
    assert DbtCloudHook.conn_type == CONN_TYPE
    caplog.set_level(logging.WARNING)
    uri = Connection(conn_id="x", conn_type=CONN_TYPE, host="https://ab123.us1.dbt.com", password="t").get_uri()
    again = Connection(uri=uri)
    assert again.conn_type == CONN_TYPE
    again.get_uri()
    Connection.from_json(json.dumps({"conn_type": CONN_TYPE, "host": "ab123.us1.dbt.com"}), conn_id="y").get_uri()
    assert UNDERSCORE_WARNING not in caplog.text


def test_provider_registers_the_new_type_first_and_keeps_the_old_one() -> None:
    from airflow.providers_manager import ProvidersManager

    types = get_provider_info()["connection-types"]
    assert [t["connection-type"] for t in types] == [CONN_TYPE, LEGACY_CONN_TYPE]
    registered = ProvidersManager().hooks
    assert registered[CONN_TYPE].hook_class_name == "airflow_dbt_cloud_dlt.hooks.DbtCloudHook"  # type: ignore[union-attr]
    legacy = registered[LEGACY_CONN_TYPE]
    assert legacy is not None and legacy.hook_class_name == "airflow_dbt_cloud_dlt.hooks.LegacyTypeDbtCloudHook"
    assert hooks.LegacyTypeDbtCloudHook.conn_type == LEGACY_CONN_TYPE


@pytest.mark.parametrize("conn_type", [CONN_TYPE, LEGACY_CONN_TYPE, "dbt_cloud"])
def test_connections_of_every_type_name_are_read(
    emulator: Any, monkeypatch: pytest.MonkeyPatch, conn_type: str
) -> None:
    extra = {f"extra__{conn_type}__job_id": "7"} if conn_type != "dbt_cloud" else {"job_id": 7}
    env_connection(
        monkeypatch, "typed", conn_type=conn_type, host=emulator.base_url, login="1", password=TOKEN, extra=extra
    )
    hook = DbtCloudHook("typed")
    assert hook.credentials.job_id == 7
    ok, message = hook.test_connection()
    assert ok, message


# --- task 3: the port field -------------------------------------------------------------------------------


def test_port_field_is_added_to_a_full_url_host(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    port = int(emulator.base_url.rsplit(":", 1)[1])
    env_connection(
        monkeypatch, "ported", conn_type=CONN_TYPE, host="http://127.0.0.1", port=port, login="1", password=TOKEN
    )
    hook = DbtCloudHook("ported")
    assert hook.credentials.base_url == f"http://127.0.0.1:{port}"
    ok, message = hook.test_connection()
    assert ok, message
    assert connection_to_credentials(conn(host="https://x.example.com", port=8443), {}).base_url == (
        "https://x.example.com:8443"
    )
    assert connection_to_credentials(conn(host="x.example.com", port="8443"), {}).base_url == (
        "https://x.example.com:8443"
    )
    assert connection_to_credentials(conn(host="https://x.example.com:8443/api/v2", port=8443), {}).base_url == (
        "https://x.example.com:8443"
    )


def test_a_port_that_contradicts_the_host_is_refused() -> None:
    with pytest.raises(DbtCloudConfigError) as info:
        connection_to_credentials(conn(host="https://x.example.com:9000", port=8443), {})
    assert str(info.value) == (
        "The connection's host 'https://x.example.com:9000' names port 9000, but its port field says 8443: clear "
        "the port field, or make the two agree."
    )
    with pytest.raises(DbtCloudConfigError, match="sets port 8443 but no host"):
        connection_to_credentials(conn(port=8443), {})


def test_port_zero_means_no_port_and_443_is_the_default() -> None:  # Airflow 3.3's UI turns no port into 0
    assert connection_to_credentials(conn(host="x.example.com", port=0), {}).base_url == "https://x.example.com"
    # port 443 is the README's work-around for Airflow 3.3.2's Test button; run links stay without it
    assert connection_to_credentials(conn(host="x.example.com", port=443), {}).base_url == "https://x.example.com"


# --- task 6: the connection form ---------------------------------------------------------------------------


def test_form_fields_declare_their_json_types() -> None:
    schema = {name: spec["schema"] for name, spec in CONN_FIELDS.items()}
    for name in ("job_id", "project_id", "environment_id"):
        assert schema[name]["type"] == ["integer", "null"] and schema[name]["minimum"] == 1
    assert schema["timeout"]["type"] == ["number", "null"]
    assert "null" in schema["verify"]["type"]


@pytest.mark.skipif(AIRFLOW_2, reason="Airflow 3's UI API")
def test_airflow3_form_metadata_gives_typed_fields() -> None:
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    (meta,) = [m for m in HookMetaService.hook_meta_data() if m.connection_type == CONN_TYPE]
    fields = meta.extra_fields or {}
    assert set(fields) == set(CONN_FIELDS)
    # the UI renders (and saves) a field by its first non-null type: a number field stores a JSON number
    first_type = {name: next(t for t in spec["schema"]["type"] if t != "null") for name, spec in fields.items()}
    assert first_type == {
        "job_id": "integer",
        "project_id": "integer",
        "environment_id": "integer",
        "timeout": "number",
        "verify": "string",
    }
    assert meta.standard_fields is not None and not meta.standard_fields.port.hidden  # type: ignore[union-attr]


def test_extras_saved_by_airflow3_form_are_read() -> None:
    # Airflow 3.3's form saves every field: an empty one as null, numbers as numbers
    saved = {"job_id": 678, "project_id": None, "environment_id": None, "timeout": None, "verify": None}
    creds = connection_to_credentials(conn(), saved)
    assert (creds.job_id, creds.project_id, creds.environment_id) == (678, None, None)
    assert creds.timeout == 30.0 and creds.verify is True


def test_extras_as_strings_blanks_and_floats_are_read() -> None:
    saved = {"job_id": " 678 ", "project_id": 7.0, "environment_id": "null", "timeout": "12.5", "verify": " False "}
    creds = connection_to_credentials(conn(), saved)
    assert (creds.job_id, creds.project_id, creds.environment_id) == (678, 7, None)
    assert creds.timeout == 12.5 and creds.verify is False
    blanks = connection_to_credentials(conn(), {"job_id": "", "timeout": "  ", "verify": ""})
    assert blanks.job_id is None and blanks.timeout == 30.0 and blanks.verify is True
    assert connection_to_credentials(conn(), None).job_id is None  # type: ignore[arg-type]


@pytest.mark.skipif(not AIRFLOW_2, reason="Airflow 2's connection form (wtforms)")
def test_airflow2_form_saves_only_set_fields_with_their_types() -> None:
    from airflow.providers_manager import ProvidersManager
    from airflow.www.views import ConnectionModelView
    from werkzeug.datastructures import MultiDict
    from wtforms import Form, StringField

    widgets = {
        key: widget.field
        for key, widget in ProvidersManager().connection_form_widgets.items()
        if key.startswith(f"extra__{CONN_TYPE}__")
    }
    assert set(widgets) == {f"extra__{CONN_TYPE}__{name}" for name in CONN_FIELDS}
    fields = {"conn_id": StringField(), "conn_type": StringField(), "extra": StringField(), **widgets}
    form_class = type("ConnectionForm", (Form,), fields)
    posted = {f"extra__{CONN_TYPE}__job_id": " 678 ", f"extra__{CONN_TYPE}__timeout": "12.5"}
    posted[f"extra__{CONN_TYPE}__project_id"] = ""  # a browser posts an empty field as ""; verify is not posted
    form = form_class(MultiDict({"conn_id": "c", "conn_type": CONN_TYPE, "extra": "", **posted}))
    assert form.validate(), form.errors
    view = SimpleNamespace(
        _iter_extra_field_names_and_sensitivity=lambda: ConnectionModelView._iter_extra_field_names_and_sensitivity(
            None  # type: ignore[arg-type]
        )
    )
    ConnectionModelView.process_form(view, form, True)  # type: ignore[arg-type]
    assert json.loads(form.extra.data) == {"job_id": 678, "timeout": 12.5}
    bad = form_class(MultiDict({"conn_id": "c", "conn_type": CONN_TYPE, f"extra__{CONN_TYPE}__job_id": "abc"}))
    assert not bad.validate() and "positive whole number" in str(bad.errors)
