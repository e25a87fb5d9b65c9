"""Credentials: id validation, host normalisation, and resolution (mapping, dlt object, env vars, .dlt/*.toml)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import TOKEN
from dlt.helpers.dbt_cloud.configuration import DBTCloudConfiguration

from airflow_dbt_cloud_dlt.api.credentials import (
    DEFAULT_BASE_URL,
    DbtCloudCredentials,
    credentials_from_environment,
    normalize_base_url,
    resolve_credentials,
    validate_id,
)
from airflow_dbt_cloud_dlt.api.errors import DbtCloudConfigError


@pytest.mark.parametrize(("value", "expected"), [(5, 5), ("5", 5), (" 7 ", 7), ("70403111615000", 70403111615000)])
def test_validate_id_accepts(value: object, expected: int) -> None:
    assert validate_id(value, "job_id") == expected


@pytest.mark.parametrize("value", [0, -1, True, False, "abc", "../1", "1.5", "", "0", "-3", 1.0, None, "1 2"])
def test_validate_id_rejects_naming_the_field(value: object) -> None:
    with pytest.raises(DbtCloudConfigError) as info:
        validate_id(value, "run_id")
    assert "run_id" in str(info.value)
    assert repr(value) in str(info.value)
    assert "/runs/" in str(info.value)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, DEFAULT_BASE_URL),
        ("", DEFAULT_BASE_URL),
        ("ab123.us1.dbt.com", "https://ab123.us1.dbt.com"),
        ("  AB123.us1.dbt.com  ", "https://ab123.us1.dbt.com"),
        ("https://ab123.us1.dbt.com", "https://ab123.us1.dbt.com"),
        ("https://ab123.us1.dbt.com/", "https://ab123.us1.dbt.com"),
        ("https://cloud.getdbt.com/api/v2", "https://cloud.getdbt.com"),
        ("https://cloud.getdbt.com/api/v2/", "https://cloud.getdbt.com"),
        ("https://emea.dbt.com/api", "https://emea.dbt.com"),
        ("cloud.getdbt.com/api/v3/", "https://cloud.getdbt.com"),
        ("https://h.example.com:8443", "https://h.example.com:8443"),
        ("h.example.com:8443", "https://h.example.com:8443"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080/api/v2", "http://127.0.0.1:8080"),
        ("http://localhost:9000", "http://localhost:9000"),
        ("http://[::1]:8080", "http://[::1]:8080"),
        ("[::1]:8080", "https://[::1]:8080"),
        ("https://[::1]", "https://[::1]"),
    ],
)
def test_normalize_base_url(given: str | None, expected: str) -> None:
    assert normalize_base_url(given) == expected


@pytest.mark.parametrize("url", ["http://example.com", "http://ab123.us1.dbt.com:8080", "http://10.0.0.1"])
def test_plain_http_refused_off_loopback(url: str) -> None:
    with pytest.raises(DbtCloudConfigError, match="plain http") as info:
        normalize_base_url(url)
    assert "https" in str(info.value)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("not a host!", "Malformed dbt Cloud host 'not a host!'"),
        ("https://", "Malformed dbt Cloud host 'https://'"),
        ("ftp://x", "the scheme must be https"),
        ("https://user:pw@h", "must not contain a user name or password"),
        ("https://user@h.example.com", "must not contain a user name or password"),
        ("h:99999", "the port is not valid"),
        ("https://h/path", "must not carry a path"),
        ("https://h/api/v2/accounts/1/", "must not carry a path"),
        ("https://h/?x=1", "must not carry a path"),
        ("https://-bad-.example.com", "Malformed dbt Cloud host"),
    ],
)
def test_normalize_base_url_rejects_malformed(value: str, fragment: str) -> None:
    with pytest.raises(DbtCloudConfigError) as info:
        normalize_base_url(value)
    assert fragment in str(info.value)
    assert "ab123.us1.dbt.com" in str(info.value)  # every message shows a working example


def test_credentials_in_url_are_not_echoed() -> None:
    with pytest.raises(DbtCloudConfigError) as info:
        normalize_base_url(f"https://user:{TOKEN}@h.example.com")
    assert TOKEN not in str(info.value) and "api_token" in str(info.value)


def test_resolve_from_mapping() -> None:
    creds = resolve_credentials(
        {
            "api_token": f" {TOKEN} ",
            "account_id": "1",
            "job_id": 5,
            "base_url": "ab1.us1.dbt.com",
            "timeout": "2.5",
            "verify": "false",
            "git_branch": "main",
        }
    )
    assert creds == DbtCloudCredentials(
        api_token=TOKEN,
        account_id=1,
        job_id=5,
        base_url="https://ab1.us1.dbt.com",
        timeout=2.5,
        verify=False,
        git_branch="main",
    )
    assert creds.host == "ab1.us1.dbt.com"
    assert creds.cause == "Triggered via API"


def test_resolve_returns_credentials_object_unchanged() -> None:
    creds = DbtCloudCredentials(api_token=TOKEN, account_id=3)
    assert resolve_credentials(creds) is creds
    assert creds.with_overrides(job_id="9").job_id == 9
    with pytest.raises(DbtCloudConfigError, match="job_id"):
        creds.with_overrides(job_id="x")


def test_resolve_from_dlt_configuration_object() -> None:
    config = DBTCloudConfiguration()
    config.api_token = TOKEN
    config.account_id = "12"
    config.job_id = "34"
    config.run_id = "56"
    config.git_sha = "abc123"
    config.schema_override = "ci_schema"
    creds = resolve_credentials(config)
    assert (creds.api_token, creds.account_id, creds.job_id, creds.run_id) == (TOKEN, 12, 34, 56)
    assert (creds.git_sha, creds.schema_override, creds.cause) == ("abc123", "ci_schema", "Triggered via API")
    assert creds.base_url == DEFAULT_BASE_URL


def test_resolve_from_object_shaped_like_dlt_config() -> None:
    class Config:
        api_token = TOKEN
        account_id = "7"
        job_id = None

    creds = resolve_credentials(Config())
    assert (creds.account_id, creds.job_id) == (7, None)


def test_resolve_rejects_unsupported_type() -> None:
    with pytest.raises(DbtCloudConfigError, match="Unsupported credentials of type int"):
        resolve_credentials(42)


def _write_dlt(tmp_path: Path, name: str, body: str) -> None:
    (tmp_path / ".dlt").mkdir(exist_ok=True)
    (tmp_path / ".dlt" / name).write_text(body)


def test_env_wins_over_secrets_which_wins_over_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _write_dlt(tmp_path, "config.toml", '[dbt_cloud]\naccount_id = 1\njob_id = 2\nrun_id = 3\ncause = "from config"\n')
    _write_dlt(tmp_path, "secrets.toml", '[dbt_cloud]\napi_token = "secret-token"\njob_id = 20\nrun_id = 30\n')
    creds = resolve_credentials(None)
    assert (creds.api_token, creds.account_id, creds.job_id, creds.run_id) == ("secret-token", 1, 20, 30)
    assert creds.cause == "from config"

    monkeypatch.setenv("DBT_CLOUD__API_TOKEN", TOKEN)
    monkeypatch.setenv("DBT_CLOUD__RUN_ID", "300")
    monkeypatch.setenv("DBT_CLOUD__BASE_URL", "http://127.0.0.1:5000")
    monkeypatch.setenv("DBT_CLOUD__TIMEOUT", "0.5")
    creds = resolve_credentials(None)
    assert (creds.api_token, creds.account_id, creds.job_id, creds.run_id) == (TOKEN, 1, 20, 300)
    assert (creds.base_url, creds.timeout) == ("http://127.0.0.1:5000", 0.5)


def test_environment_without_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DBT_CLOUD__API_TOKEN", TOKEN)
    monkeypatch.setenv("DBT_CLOUD__ACCOUNT_ID", "4")
    assert credentials_from_environment().account_id == 4


def test_environment_bad_id_names_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DBT_CLOUD__API_TOKEN", TOKEN)
    monkeypatch.setenv("DBT_CLOUD__JOB_ID", "../1")
    with pytest.raises(DbtCloudConfigError, match="job_id"):
        resolve_credentials(None)


def test_missing_token_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for given in (None, {"account_id": 1}, {"api_token": "  "}):
        with pytest.raises(DbtCloudConfigError) as info:
            resolve_credentials(given)
        message = str(info.value)
        assert message.startswith("No dbt Cloud API token")
        assert "DBT_CLOUD__API_TOKEN" in message
        assert ".dlt/secrets.toml" in message


def test_unknown_field_rejected() -> None:
    with pytest.raises(DbtCloudConfigError) as info:
        resolve_credentials({"api_token": TOKEN, "acount_id": 1})
    assert "['acount_id']" in str(info.value)
    assert "account_id" in str(info.value)


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"timeout": "soon"}, "Invalid timeout 'soon'"),
        ({"api_token": "two words"}, "white space"),
        ({"account_id": "abc"}, "account_id"),
        ({"base_url": "http://example.com"}, "plain http"),
    ],
)
def test_invalid_values(values: dict[str, object], fragment: str) -> None:
    with pytest.raises(DbtCloudConfigError, match=fragment):
        resolve_credentials({"api_token": TOKEN, **values})


def test_repr_and_str_never_show_token() -> None:
    creds = resolve_credentials({"api_token": TOKEN, "account_id": 1, "job_id": 2})
    for text in (repr(creds), str(creds), f"{creds}", repr([creds])):
        assert TOKEN not in text
        assert "api_token" not in text
    assert "account_id=1" in repr(creds)


def test_proxies_from_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DBT_CLOUD__API_TOKEN", TOKEN)
    monkeypatch.setenv("DBT_CLOUD__PROXIES", '{"https": "http://proxy.internal:3128"}')
    try:
        creds = resolve_credentials(None)
    except DbtCloudConfigError as error:  # acceptable too: a clear message that names the field
        assert "proxies" in str(error)
    else:
        assert creds.proxies == {"https": "http://proxy.internal:3128"}


def test_plain_http_to_a_dot_localhost_alias_is_refused() -> None:
    with pytest.raises(DbtCloudConfigError, match="Refusing plain http"):
        normalize_base_url("http://emulator.localhost:8765")
