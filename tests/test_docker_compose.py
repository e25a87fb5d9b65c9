"""docker-compose.yaml, checked statically (no Docker here): the services, how they find each other and the
provider, and that its versions and connection agree with the Makefile and the library."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.specifiers import SpecifierSet

from airflow_dbt_cloud_dlt.api.credentials import normalize_base_url

REPO = Path(__file__).parent.parent
REPO_MOUNT = "/opt/airflow-dbt-cloud-dlt"
AIRFLOW_COMMANDS = {
    "airflow-api-server": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
}
EMULATOR = "dbt-cloud-emulator"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yaml").read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def as_list(value: str | list[str] | None) -> list[str]:
    return [] if value is None else [value] if isinstance(value, str) else list(value)


def option(args: list[str], name: str) -> str | None:
    """The value after ``name`` in an argument list."""
    return args[args.index(name) + 1] if name in args else None


def mounts(service: dict[str, Any]) -> dict[str, tuple[Path, str]]:
    """Container path -> (host path, mode) of the service's bind mounts (short syntax)."""
    found = {}
    for volume in service.get("volumes", []):
        source, target, *mode = volume.split(":")
        if source.startswith((".", "/")):
            found[target] = ((REPO / source).resolve(), mode[0] if mode else "rw")
    return found


def test_the_stack_has_its_services(services: dict[str, Any]) -> None:
    assert set(services) == {"postgres", EMULATOR, "airflow-init", *AIRFLOW_COMMANDS}


@pytest.mark.parametrize("name", sorted(AIRFLOW_COMMANDS))
def test_airflow_service_runs_its_component(services: dict[str, Any], name: str) -> None:
    assert as_list(services[name]["command"]) == [AIRFLOW_COMMANDS[name]]
    assert services[name]["healthcheck"]["test"]


def test_init_migrates_the_db_first(services: dict[str, Any]) -> None:
    assert as_list(services["airflow-init"]["command"])[-2:] == ["db", "migrate"]
    assert services["airflow-init"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in AIRFLOW_COMMANDS:
        depends = services[name]["depends_on"]
        assert depends["airflow-init"] == {"condition": "service_completed_successfully"}
        assert depends["postgres"] == {"condition": "service_healthy"}


def test_image_is_the_airflow_version_the_makefile_pins(services: dict[str, Any]) -> None:
    pinned = re.search(r"^AIRFLOW3\s*\??=\s*(\S+)", (REPO / "Makefile").read_text(), re.MULTILINE)
    assert pinned, "Makefile: no AIRFLOW3 variable"
    requires_python = re.search(r'^requires-python\s*=\s*"([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M)
    assert requires_python
    images = {services[name]["image"] for name in [*AIRFLOW_COMMANDS, "airflow-init", EMULATOR]}
    assert len(images) == 1, images
    match = re.fullmatch(r"apache/airflow:(\d+\.\d+\.\d+)-python(\d+\.\d+)", images.pop())
    assert match, "expected an official tag such as apache/airflow:3.3.2-python3.11"
    assert match[1] == pinned[1]
    assert SpecifierSet(requires_python[1]).contains(f"{match[2]}.0")


@pytest.mark.parametrize("name", sorted(AIRFLOW_COMMANDS))
def test_airflow_service_installs_the_provider_from_the_mounted_repository(services: dict[str, Any], name: str) -> None:
    service = services[name]
    assert mounts(service)[REPO_MOUNT] == (REPO.resolve(), "ro")
    startup = "\n".join(as_list(service["entrypoint"]) + as_list(service["command"]))
    install = next(line for line in startup.splitlines() if "pip install" in line)
    assert "[demo]" in install  # dlt and duckdb, for example_dlt_then_dbt_cloud
    assert 'apache-airflow==$${AIRFLOW_VERSION}"' in install  # pip must not move Airflow
    assert f"{REPO_MOUNT}/airflow_dbt_cloud_dlt" in startup  # built from the mounted repository
    assert (REPO / "airflow_dbt_cloud_dlt" / "__init__.py").is_file()
    assert re.search(r'exec .*/entrypoint "\$\$@"', startup), "the image's entrypoint must still run the command"


@pytest.mark.parametrize("name", sorted(AIRFLOW_COMMANDS))
def test_example_dags_are_the_dags_folder(services: dict[str, Any], name: str) -> None:
    folder = services[name]["environment"].get("AIRFLOW__CORE__DAGS_FOLDER", "/opt/airflow/dags")
    assert mounts(services[name])[folder] == ((REPO / "example_dags").resolve(), "ro")
    assert services[name]["environment"]["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"


def test_no_single_dollar_reaches_compose_interpolation(compose: dict[str, Any]) -> None:
    """``$X`` in a command would be replaced by compose from the host's environment: shell variables need ``$$``."""
    text = (REPO / "docker-compose.yaml").read_text()
    assert not re.search(r"(?<!\$)\$(?!\$)", text.replace("$$", ""))


def test_emulator_serves_https_on_all_interfaces(services: dict[str, Any]) -> None:
    emulator = services[EMULATOR]
    args = as_list(emulator.get("entrypoint")) + as_list(emulator["command"])
    assert args[:3] == ["python", "-m", "airflow_dbt_cloud_dlt.testing"]
    assert option(args, "--host") == "0.0.0.0"
    assert "--tls" in args
    assert mounts(emulator)[REPO_MOUNT][0] == REPO.resolve()
    assert emulator["environment"]["PYTHONPATH"] == REPO_MOUNT
    assert emulator["healthcheck"]["test"]


@pytest.mark.parametrize("name", sorted(AIRFLOW_COMMANDS))
def test_connection_points_at_the_emulator_and_the_library_accepts_it(services: dict[str, Any], name: str) -> None:
    args = as_list(services[EMULATOR].get("entrypoint")) + as_list(services[EMULATOR]["command"])
    conn = json.loads(services[name]["environment"]["AIRFLOW_CONN_DBT_CLOUD_DEFAULT"])
    assert conn["conn_type"] == "dbtclouddlt"
    url = urlsplit(conn["host"])
    assert (url.scheme, url.hostname, str(url.port)) == ("https", EMULATOR, option(args, "--port"))
    assert normalize_base_url(conn["host"]) == conn["host"]  # plain http to a non-loopback host is refused
    token = services[EMULATOR]["environment"]["DBT_CLOUD_EMULATOR_TOKEN"]
    assert "--token" not in args  # a token on the command line shows in `ps`
    assert (conn["login"], conn["password"]) == (option(args, "--account"), token)
    verify = conn.get("extra", {}).get("verify", True)
    if isinstance(verify, str):  # a CA bundle: it must be on a volume the service has
        assert any(verify.startswith(target) for target in [v.split(":")[1] for v in services[name]["volumes"]])
    else:  # the emulator's certificate names only 127.0.0.1 and localhost, not dbt-cloud-emulator
        assert verify is False


@pytest.mark.parametrize("name", ["airflow-scheduler", "airflow-triggerer"])
def test_components_that_call_dbt_cloud_wait_for_the_emulator(services: dict[str, Any], name: str) -> None:
    """Tasks run in the scheduler (LocalExecutor); deferred waits run in the triggerer."""
    assert services[name]["depends_on"][EMULATOR] == {"condition": "service_healthy"}
    assert services[name]["environment"]["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"


def test_components_share_secrets_and_find_the_api_server(services: dict[str, Any]) -> None:
    envs = [services[name]["environment"] for name in AIRFLOW_COMMANDS]
    for key in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"):
        assert len({env[key] for env in envs}) == 1 and envs[0][key], key
    execution_api = urlsplit(envs[0]["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    published = {port.split(":")[-1]: port.split(":")[-2] for port in services["airflow-api-server"]["ports"]}
    assert (execution_api.hostname, str(execution_api.port), execution_api.path) == (
        "airflow-api-server",
        "8080",
        "/execution/",
    )
    assert urlsplit(envs[0]["AIRFLOW__API__BASE_URL"]).port == int(published["8080"])
    db = urlsplit(envs[0]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    postgres = services["postgres"]["environment"]
    expected = ("postgres", postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], "/" + postgres["POSTGRES_DB"])
    assert (db.hostname, db.username, db.password, db.path) == expected


def test_no_login_is_needed(services: dict[str, Any]) -> None:
    env = services["airflow-api-server"]["environment"]
    assert env["AIRFLOW__CORE__AUTH_MANAGER"].endswith("SimpleAuthManager")
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] == "True"


def test_emulator_certificate_names_the_host_the_connection_uses(services: dict[str, Any]) -> None:
    command = as_list(services[EMULATOR]["command"])
    hostnames = [command[i + 1] for i, arg in enumerate(command) if arg == "--cert-hostname"]
    conn = json.loads(services["airflow-triggerer"]["environment"]["AIRFLOW_CONN_DBT_CLOUD_DEFAULT"])
    assert urlsplit(conn["host"]).hostname in hostnames
    assert conn["extra"]["verify"].endswith("/ca.pem")
