"""dbt Cloud credentials: what they hold, and how they are found (explicitly, or the dlt way)."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import math
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
#: The words ``verify`` accepts (any case); anything else must be a bool or the path of an existing CA bundle.
#: An empty value (``DBT_CLOUD__VERIFY=""``) means the default: verify.
VERIFY_WORDS = {"true": True, "1": True, "yes": True, "on": True, "": True}
VERIFY_WORDS.update(dict.fromkeys(("false", "0", "no", "off"), False))
DEFAULT_TIMEOUT = 30.0


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
    #: seconds that one whole HTTP answer may take (a finite number > 0)
    timeout: float = DEFAULT_TIMEOUT
    #: True, False, or the path of an existing CA bundle (see :func:`validate_verify`)
    verify: bool | str = True
    proxies: Mapping[str, str] | None = None

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).hostname or ""

    def __repr__(self) -> str:
        """The fields, with no token and with any password in a proxy URL replaced by ``***``."""
        shown = []
        for f in dataclasses.fields(self):
            if not f.repr:
                continue
            value = getattr(self, f.name)
            if f.name == "proxies" and value:
                value = {scheme: redact_url(url) for scheme, url in value.items()}
            shown.append(f"{f.name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"

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
    if not (token.isascii() and token.isprintable()):
        bad = next(i for i, ch in enumerate(token) if not (ch.isascii() and ch.isprintable()))
        raise DbtCloudConfigError(  # never the token itself: not even the offending character
            f"The dbt Cloud API token contains a character that is not printable ASCII (at position {bad + 1} of "
            f"{len(token)}); copy it again from dbt Cloud."
        )
    fields: dict[str, Any] = {"api_token": token, "base_url": normalize_base_url(values.get("base_url"))}
    for name in _ID_FIELDS:
        fields[name] = _optional_id(values.get(name), name)
    for name in _TEXT_FIELDS:
        text = values.get(name)
        if text not in (None, ""):
            fields[name] = str(text)
    fields["timeout"] = validate_timeout(values.get("timeout"))
    fields["verify"] = validate_verify(values.get("verify", True))
    fields["proxies"] = _proxies(values.get("proxies"))
    return DbtCloudCredentials(**fields)


def validate_timeout(value: object) -> float:
    """Seconds as a finite number > 0; None or "" means the default (30)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return DEFAULT_TIMEOUT
    seconds: float | None = None
    if not isinstance(value, bool):
        try:
            seconds = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):
            seconds = None
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        raise DbtCloudConfigError(
            f"Invalid timeout {str(value)[:40]!r}: give a finite number of seconds greater than 0, such as 30."
        )
    return seconds


def validate_verify(value: object) -> bool | str:
    """TLS verification: True, False, one of :data:`VERIFY_WORDS`, or the path of an existing CA bundle file.

    Both transports give each value the same meaning; anything else is a :class:`DbtCloudConfigError`.
    """
    if value is None or isinstance(value, bool):
        return True if value is None else value
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in VERIFY_WORDS:
            return VERIFY_WORDS[word]
        if Path(value.strip()).expanduser().is_file():
            return str(Path(value.strip()).expanduser())
        problem = "no such file" if not Path(value.strip()).expanduser().exists() else "not a file"
    else:
        problem = f"a {type(value).__name__}"
    raise DbtCloudConfigError(
        f"Invalid verify {str(value)[:80]!r} ({problem}): give true or false (also yes/no, on/off, "
        "1/0), or the path of an existing CA bundle file."
    )


def redact_url(url: str) -> str:
    """``url`` with the password of its user info (``user:password@``) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "***"
    if not password:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    return parts._replace(netloc=f"{parts.username or ''}:***@{netloc[-1]}").geturl()


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
