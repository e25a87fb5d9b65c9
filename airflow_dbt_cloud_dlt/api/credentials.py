"""dbt Cloud credentials: what they hold, and how they are found (explicitly, or the dlt way)."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import DbtCloudConfigError

DEFAULT_HOST = "cloud.getdbt.com"
DEFAULT_BASE_URL = f"https://{DEFAULT_HOST}"
#: Shared multi-tenant hosts from before per-account access URLs. A 401 from one of them usually means the
#: account lives on a cell host such as ``ab123.us1.dbt.com``.
LEGACY_HOSTS = frozenset({DEFAULT_HOST, "emea.dbt.com", "au.dbt.com"})
DEFAULT_CAUSE = "Triggered via API"
ENV_PREFIX = "DBT_CLOUD__"
CONFIG_SECTION = "dbt_cloud"

_ID_FIELDS = ("account_id", "job_id", "run_id", "project_id", "environment_id")
_TEXT_FIELDS = ("cause", "git_sha", "git_branch", "schema_override")
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_DIGITS = re.compile(r"[0-9]{1,19}")
_API_SUFFIXES = ("", "/", "/api", "/api/", "/api/v2", "/api/v2/", "/api/v3", "/api/v3/")


def validate_id(value: object, name: str) -> int:
    """Return ``value`` as a positive integer id, or raise a clear error (no request is ever sent)."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()) and int(value) > 0:
        return int(value)
    raise DbtCloudConfigError(
        f"Invalid dbt Cloud {name} {value!r}: it must be a positive whole number, such as 12345 "
        f"(the number that follows /{name.removesuffix('_id')}s/ in dbt Cloud URLs)."
    )


def _optional_id(value: object, name: str) -> int | None:
    return None if value is None or value == "" else validate_id(value, name)


def is_loopback(host: str) -> bool:
    if host == "localhost":  # not "*.localhost": a container alias of that form may be another machine
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _valid_hostname(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    return len(host) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels)


def normalize_base_url(value: str | None) -> str:
    """Turn a bare host or a URL into ``scheme://host[:port]``.

    Bare hosts get https. Plain http is allowed only to loopback addresses, where the local emulator runs.
    A trailing ``/api`` or ``/api/v2`` is accepted and dropped, since people paste API URLs.
    """
    text = (value or "").strip()
    if not text:
        return DEFAULT_BASE_URL
    example = "Use a host such as 'ab123.us1.dbt.com' or a URL such as 'https://ab123.us1.dbt.com'"
    parts = urlsplit(text if "://" in text else f"https://{text}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise DbtCloudConfigError(f"Malformed dbt Cloud host {text!r}: the port is not valid. {example}.") from None
    if parts.scheme not in ("http", "https"):
        raise DbtCloudConfigError(f"Malformed dbt Cloud host {text!r}: the scheme must be https. {example}.")
    if parts.username or parts.password:
        raise DbtCloudConfigError(
            "Malformed dbt Cloud host: it must not contain a user name or password; put the API token in "
            f"the credentials' api_token (the connection's password). {example}."
        )
    if not host or not _valid_hostname(host):
        raise DbtCloudConfigError(f"Malformed dbt Cloud host {text!r}. {example}.")
    if parts.path not in _API_SUFFIXES or parts.query or parts.fragment:
        raise DbtCloudConfigError(f"Malformed dbt Cloud host {text!r}: it must not carry a path. {example}.")
    if parts.scheme == "http" and not is_loopback(host):
        raise DbtCloudConfigError(
            f"Refusing plain http to {host!r}: the API token would travel unencrypted. Use https "
            "(plain http is allowed only to loopback addresses such as the local emulator)."
        )
    netloc = f"[{host}]" if ":" in host else host
    default_port = {"https": 443, "http": 80}[parts.scheme]
    return f"{parts.scheme}://{netloc}" + (f":{port}" if port and port != default_port else "")


@dataclasses.dataclass(frozen=True)
class DbtCloudCredentials:
    """Everything needed to talk to one dbt Cloud account. ``repr`` never shows the token."""

    api_token: str = dataclasses.field(repr=False)
    account_id: int | None = None
    job_id: int | None = None
    run_id: int | None = None
    project_id: int | None = None
    environment_id: int | None = None
    cause: str = DEFAULT_CAUSE
    git_sha: str | None = None
    git_branch: str | None = None
    schema_override: str | None = None
    base_url: str = DEFAULT_BASE_URL
    #: seconds to wait for one HTTP answer
    timeout: float = 30.0
    #: True, False, or the path of a CA bundle
    verify: bool | str = True
    proxies: Mapping[str, str] | None = None

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).hostname or ""

    def with_overrides(self, **changes: Any) -> DbtCloudCredentials:
        """A copy with some fields replaced (validated like the originals)."""
        return credentials_from_mapping({**dataclasses.asdict(self), **changes})


FIELD_NAMES = tuple(f.name for f in dataclasses.fields(DbtCloudCredentials))
CredentialsLike = DbtCloudCredentials | Mapping[str, Any] | Any | None


def credentials_from_mapping(values: Mapping[str, Any]) -> DbtCloudCredentials:
    """Validate and convert a mapping of credential fields; unknown keys are an error."""
    unknown = sorted(set(values) - set(FIELD_NAMES))
    if unknown:
        raise DbtCloudConfigError(
            f"Unknown dbt Cloud credential field(s) {unknown}; known fields are {list(FIELD_NAMES)}."
        )
    token = str(values.get("api_token") or "").strip()
    if not token:
        raise DbtCloudConfigError(
            "No dbt Cloud API token: pass credentials={'api_token': ...}, set DBT_CLOUD__API_TOKEN, add "
            "api_token to [dbt_cloud] in .dlt/secrets.toml, or set the Airflow connection's password."
        )
    if any(ch.isspace() for ch in token):
        raise DbtCloudConfigError("The dbt Cloud API token contains white space; copy it again from dbt Cloud.")
    fields: dict[str, Any] = {"api_token": token, "base_url": normalize_base_url(values.get("base_url"))}
    for name in _ID_FIELDS:
        fields[name] = _optional_id(values.get(name), name)
    for name in _TEXT_FIELDS:
        text = values.get(name)
        if text not in (None, ""):
            fields[name] = str(text)
    try:
        fields["timeout"] = float(values.get("timeout") or 30.0)
    except (TypeError, ValueError):
        raise DbtCloudConfigError(f"Invalid timeout {values.get('timeout')!r}: give seconds, such as 30.") from None
    verify = values.get("verify", True)
    if isinstance(verify, str) and verify.strip().lower() in ("true", "false"):
        verify = verify.strip().lower() == "true"
    fields["verify"] = True if verify is None else verify
    fields["proxies"] = _proxies(values.get("proxies"))
    return DbtCloudCredentials(**fields)


def _proxies(value: Any) -> dict[str, str] | None:
    """Proxies as a mapping; a string (from an env var) is read as JSON."""
    if not value:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    if not isinstance(value, Mapping):
        raise DbtCloudConfigError(
            'Invalid proxies: give a mapping such as {"https": "http://proxy:3128"} (JSON in an env var).'
        )
    return {str(scheme): str(url) for scheme, url in value.items()}


def _read_toml_section(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    with path.open("rb") as handle:
        import tomllib  # only when a dlt TOML file is read: not at DAG parse

        section = tomllib.load(handle).get(CONFIG_SECTION, {})
    return dict(section) if isinstance(section, Mapping) else {}


def credentials_from_environment(project_dir: str | Path | None = None) -> DbtCloudCredentials:
    """Resolve credentials the dlt way: ``DBT_CLOUD__*`` env vars win over ``[dbt_cloud]`` in
    ``.dlt/secrets.toml``, which wins over ``.dlt/config.toml`` (all relative to the working directory)."""
    dlt_dir = Path(project_dir or os.getcwd()) / ".dlt"
    values: dict[str, Any] = {}
    for file_name in ("config.toml", "secrets.toml"):
        values.update(_read_toml_section(dlt_dir / file_name))
    for name in FIELD_NAMES:
        env_value = os.environ.get(ENV_PREFIX + name.upper())
        if env_value is not None:
            values[name] = env_value
    return credentials_from_mapping({k: v for k, v in values.items() if k in FIELD_NAMES})


def resolve_credentials(credentials: CredentialsLike = None) -> DbtCloudCredentials:
    """Accept a :class:`DbtCloudCredentials`, a mapping, dlt's ``DBTCloudConfiguration``, or nothing."""
    if isinstance(credentials, DbtCloudCredentials):
        return credentials
    if credentials is None:
        return credentials_from_environment()
    if isinstance(credentials, Mapping):
        return credentials_from_mapping(credentials)
    if hasattr(credentials, "api_token"):  # dlt's DBTCloudConfiguration, or any object shaped like it
        return credentials_from_mapping(
            {name: getattr(credentials, name) for name in FIELD_NAMES if getattr(credentials, name, None)}
        )
    raise DbtCloudConfigError(
        f"Unsupported credentials of type {type(credentials).__name__}: pass a mapping, DbtCloudCredentials, "
        "dlt's DBTCloudConfiguration, or None to read DBT_CLOUD__* env vars and .dlt/*.toml."
    )
