"""The emulator's responses and trigger validation against dbt Labs' official OpenAPI spec.

The spec (OpenAPI 3.0.3) marks no field nullable although live responses carry ``null`` for many
(``started_at``, ``trigger``, ``job``, ...). The validator therefore lets every *property* be null, but keeps
types, ``required`` and enums strict. The spec lives in the repository's sibling ``shared/`` folder; it is
read from there at test time, never copied.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from airflow_dbt_cloud_dlt.testing import DbtCloudEmulator, JobScript, StepScript

SPEC_DIR = Path(__file__).resolve().parents[2] / "shared/reference/dbt-cloud-openapi"
pytestmark = pytest.mark.skipif(
    not (SPEC_DIR / "openapi-v2.yaml").is_file(),
    reason=f"dbt Labs' OpenAPI spec is not at {SPEC_DIR} (CI places the project's shared/ folder beside the "
    "clone; the spec is dbt Labs' published openapi-v2.yaml from github.com/dbt-labs/dbt-cloud-openapi-spec)",
)
TOKEN = "contract-token"
A = "/api/v2/accounts/1"


def _allow_null_properties(node: Any) -> Any:
    """Wrap every property schema as ``anyOf: [null, schema]``; everything else stays as strict as the spec."""
    if isinstance(node, list):
        return [_allow_null_properties(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _allow_null_properties(value) for key, value in node.items()}
    if isinstance(out.get("properties"), dict):
        out["properties"] = {name: {"anyOf": [{"type": "null"}, schema]} for name, schema in out["properties"].items()}
    return out


@functools.cache
def _spec(version: str) -> dict[str, Any]:
    path = SPEC_DIR / f"openapi-{version}.yaml"
    if not path.is_file():  # a missing spec must fail loudly, not skip
        pytest.fail(f"official dbt Cloud OpenAPI spec not found at {path}")
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


@functools.cache
def _registry(version: str, nullable: bool) -> Registry[Any]:
    document = _allow_null_properties(_spec(version)) if nullable else copy.deepcopy(_spec(version))
    registry: Registry[Any] = Registry().with_resource(
        "spec.json", Resource.from_contents(document, default_specification=DRAFT7)
    )
    return registry


def validator(version: str, schema_name: str, *, nullable: bool = True) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(
        {"$ref": f"spec.json#/components/schemas/{schema_name}"}, registry=_registry(version, nullable)
    )


def response_schema(version: str, path: str, method: str = "get") -> str:
    """The component schema name the spec documents for a 200 response of ``method path``."""
    content = _spec(version)["paths"][path][method]["responses"]["200"]["content"]["application/json"]
    ref: str = content["schema"]["$ref"]
    return ref.rsplit("/", 1)[-1]


def assert_conforms(version: str, path: str, body: Any, method: str = "get") -> None:
    errors = sorted(validator(version, response_schema(version, path, method)).iter_errors(body), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:10])


@pytest.fixture(scope="module")
def emu() -> Iterator[DbtCloudEmulator]:
    with DbtCloudEmulator(accounts={1: TOKEN}) as emulator:
        steps = [StepScript("Invoke dbt with `dbt seed`", "ok"), StepScript("Invoke dbt with `dbt build`", "x")]
        emulator.add_job(JobScript(job_id=42, project_id=7, environment_id=9, run_seconds=30, steps=steps))
        emulator.add_job(JobScript(job_id=43, project_id=7, environment_id=9, outcome="error", serial=False))
        yield emulator


@pytest.fixture(scope="module")
def api(emu: DbtCloudEmulator) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Token {TOKEN}"
    return session


@pytest.fixture(scope="module")
def runs(emu: DbtCloudEmulator, api: requests.Session) -> dict[str, int]:
    """Runs in every state: queued, blocked, running (with steps), failed, cancelled."""
    trigger = f"{emu.base_url}{A}/jobs/{{}}/run/"
    failed = api.post(trigger.format(43), json={"cause": "fails"}).json()["data"]["id"]
    running = api.post(trigger.format(42), json={"cause": "c", "git_branch": "main", "threads_override": 4}).json()
    queued = api.post(trigger.format(42), json={"cause": "q", "steps_override": ["dbt run"]}).json()["data"]["id"]
    emu.advance(10)
    cancelled = api.post(trigger.format(42), json={"cause": "to cancel"}).json()["data"]["id"]
    api.post(f"{emu.base_url}{A}/runs/{cancelled}/cancel/")
    return {"failed": failed, "running": running["data"]["id"], "queued": queued, "cancelled": cancelled}


def test_validator_is_strict_apart_from_nulls() -> None:
    run_validator = validator("v2", "RunResponseEnveloped")
    ok = {"status": {"code": 200, "is_success": True, "user_message": "", "developer_message": ""}, "data": None}
    assert run_validator.is_valid(ok)
    assert run_validator.is_valid({**ok, "data": {"created_at": "x", "updated_at": "x", "started_at": None}})
    assert not run_validator.is_valid({"status": ok["status"]})  # data is required
    assert not run_validator.is_valid({**ok, "data": {"created_at": "x"}})  # updated_at is required
    assert not run_validator.is_valid({**ok, "data": {"created_at": "x", "updated_at": "x", "status": "10"}})
    bad_enum = {"created_at": "x", "updated_at": "x", "retry_not_supported_reason": "NOPE"}
    assert not run_validator.is_valid({**ok, "data": bad_enum})
    assert not validator("v2", "TriggerRunRequestRequest", nullable=False).is_valid({"cause": None})


@pytest.mark.parametrize("state", ["failed", "running", "queued", "cancelled"])
@pytest.mark.parametrize("include", ["", "trigger,job,run_steps,environment"])
def test_get_run(emu: DbtCloudEmulator, api: requests.Session, runs: dict[str, int], state: str, include: str) -> None:
    response = api.get(f"{emu.base_url}{A}/runs/{runs[state]}/", params={"include_related": include})
    assert response.status_code == 200
    if include:
        assert response.json()["data"]["trigger"] is not None and response.json()["data"]["job"] is not None
    assert_conforms("v2", "/api/v2/accounts/{account_id}/runs/{id}/", response.json())


def test_nested_objects_are_validated(emu: DbtCloudEmulator, api: requests.Session, runs: dict[str, int]) -> None:
    """Guard against a vacuous validator: breaking a nested field of a real response must be caught."""
    path = "/api/v2/accounts/{account_id}/runs/{id}/"
    params = {"include_related": "trigger,job,run_steps,environment"}
    good = api.get(f"{emu.base_url}{A}/runs/{runs['running']}/", params=params).json()
    assert good["data"]["run_steps"]
    run_validator = validator("v2", response_schema("v2", path))
    assert run_validator.is_valid(good)
    breakages = [
        ("trigger", "cause_category", "bogus"),
        ("job", "settings", {"threads": 4}),
        ("job", "triggers", {"schedule": "no"}),
        ("environment", "type", "prod"),
    ]
    for parent, key, value in breakages:
        broken = copy.deepcopy(good)
        broken["data"][parent][key] = value
        assert not run_validator.is_valid(broken), (parent, key)
    broken = copy.deepcopy(good)
    broken["data"]["run_steps"][0]["index"] = "1"
    assert not run_validator.is_valid(broken)
    del broken["data"]["run_steps"][0]["index"]
    assert not run_validator.is_valid(broken)


def test_list_runs(emu: DbtCloudEmulator, api: requests.Session, runs: dict[str, int]) -> None:
    variants: list[dict[str, Any]] = [
        {},
        {"include_related": "trigger,job", "order_by": "-id", "limit": 2, "offset": 1},
    ]
    for params in variants:
        body = api.get(f"{emu.base_url}{A}/runs/", params=params).json()
        assert body["data"]
        assert_conforms("v2", "/api/v2/accounts/{account_id}/runs/", body)


def test_trigger_cancel_and_rerun(emu: DbtCloudEmulator, api: requests.Session, runs: dict[str, int]) -> None:
    body = {"cause": "contract", "schema_override": "s", "generate_docs_override": True, "steps_override": ["dbt x"]}
    triggered = api.post(f"{emu.base_url}{A}/jobs/43/run/", json=body).json()
    assert_conforms("v2", "/api/v2/accounts/{account_id}/jobs/{job_id}/run/", triggered, "post")
    cancelled = api.post(f"{emu.base_url}{A}/runs/{triggered['data']['id']}/cancel/").json()
    assert cancelled["data"]["status"] == 30
    assert_conforms("v2", "/api/v2/accounts/{account_id}/runs/{run_id}/cancel/", cancelled, "post")
    rerun = api.post(f"{emu.base_url}{A}/jobs/42/rerun/").json()
    assert_conforms("v2", "/api/v2/accounts/{account_id}/jobs/{job_id}/rerun/", rerun, "post")


def test_artifacts_list(emu: DbtCloudEmulator, api: requests.Session, runs: dict[str, int]) -> None:
    body = api.get(f"{emu.base_url}{A}/runs/{runs['failed']}/artifacts/").json()
    assert_conforms("v2", "/api/v2/accounts/{account_id}/runs/{run_id}/artifacts/", body)


def test_jobs_and_account(emu: DbtCloudEmulator, api: requests.Session) -> None:
    for include in ("", "environment,project"):
        job = api.get(f"{emu.base_url}{A}/jobs/42/", params={"include_related": include}).json()
        assert_conforms("v2", "/api/v2/accounts/{account_id}/jobs/{id}/", job)
        jobs = api.get(f"{emu.base_url}{A}/jobs/", params={"include_related": include}).json()
        assert len(jobs["data"]) == 2
        assert_conforms("v2", "/api/v2/accounts/{account_id}/jobs/", jobs)
    account = api.get(f"{emu.base_url}{A}/").json()
    assert_conforms("v2", "/api/v2/accounts/{account_id}/", account)


def test_v3_projects_and_environments(emu: DbtCloudEmulator, api: requests.Session) -> None:
    projects = api.get(f"{emu.base_url}/api/v3/accounts/1/projects/").json()
    assert [p["id"] for p in projects["data"]] == [7]
    assert_conforms("v3", "/api/v3/accounts/{account_id}/projects/", projects)
    environments = api.get(f"{emu.base_url}/api/v3/accounts/1/projects/7/environments/").json()
    assert [e["id"] for e in environments["data"]] == [9]
    assert_conforms("v3", "/api/v3/accounts/{account_id}/projects/{project_id}/environments/", environments)


_VALID_VALUES: dict[str, list[Any]] = {
    "string": ["main", "a"],
    "integer": [0, 123456789012],
    "boolean": [True, False],
    "array": [["dbt build"], ["dbt seed", "dbt run -s a+"]],
}
_INVALID_VALUES: dict[str, list[Any]] = {
    "string": ["", 5, True, ["x"], {"a": 1}],
    "integer": ["5", 1.5, True, [1]],
    "boolean": ["true", 1, 0],
    "array": ["dbt run", [""], [1], [None]],
}


def _trigger_bodies() -> Iterator[dict[str, Any]]:
    properties = _spec("v2")["components"]["schemas"]["TriggerRunRequestRequest"]["properties"]
    for name, schema in properties.items():
        for value in _VALID_VALUES[schema["type"]] + _INVALID_VALUES[schema["type"]]:
            yield {"cause": "contract", name: value} if name != "cause" else {"cause": value}
    yield {}
    yield {"cause": "c", "unknown_field": 1}
    yield {"cause": "c", **{name: _VALID_VALUES[s["type"]][0] for name, s in properties.items() if name != "cause"}}


def test_trigger_bodies_match_the_spec(emu: DbtCloudEmulator, api: requests.Session) -> None:
    """Accepted exactly when the body conforms to ``TriggerRunRequestRequest``.

    Documented exceptions: ``cause`` over 255 characters conforms to the spec (no maxLength) but is rejected,
    as live (apache/airflow#34676); ``null`` for an optional field is accepted as "not given", as live
    (Airflow's hook always sends ``steps_override``/``schema_override`` as null); an empty ``steps_override``
    (no minItems in the spec) is rejected, a deliberate strictness of the emulator.
    """
    schema = {**_spec("v2")["components"]["schemas"]["TriggerRunRequestRequest"], "additionalProperties": False}
    request_validator = jsonschema.Draft7Validator(schema)  # unknown fields: 400 live too (§8), spec is silent
    bodies = [*_trigger_bodies(), {"cause": "x" * 255}]
    checked = 0
    for body in bodies:
        response = api.post(f"{emu.base_url}{A}/jobs/43/run/", json=body)
        assert response.status_code in (200, 400), response.text
        conforms = request_validator.is_valid(body)
        assert (response.status_code == 200) == conforms, (body, response.json()["data"])
        checked += 1
    assert checked > 50
    too_long = api.post(f"{emu.base_url}{A}/jobs/43/run/", json={"cause": "x" * 256})
    assert request_validator.is_valid({"cause": "x" * 256}) and too_long.status_code == 400
    with_nulls = {"cause": "airflow", "steps_override": None, "schema_override": None}
    assert not request_validator.is_valid(with_nulls)
    assert request_validator.is_valid({k: v for k, v in with_nulls.items() if v is not None})
    assert api.post(f"{emu.base_url}{A}/jobs/43/run/", json=with_nulls).status_code == 200
    assert api.post(f"{emu.base_url}{A}/jobs/43/run/", json={"cause": None}).status_code == 400
    assert request_validator.is_valid({"cause": "c", "steps_override": []})
    assert api.post(f"{emu.base_url}{A}/jobs/43/run/", json={"cause": "c", "steps_override": []}).status_code == 400


def test_what_the_official_hook_reads(emu: DbtCloudEmulator, api: requests.Session, runs: dict[str, int]) -> None:
    """The endpoints that the official provider's hook methods call, beyond those above."""
    accounts = api.get(f"{emu.base_url}/api/v2/accounts/").json()
    assert [a["id"] for a in accounts["data"]] == [1]
    assert_conforms("v2", "/api/v2/accounts/", accounts)
    project = api.get(f"{emu.base_url}/api/v3/accounts/1/projects/7/").json()
    assert_conforms("v3", "/api/v3/accounts/{account_id}/projects/{id}/", project)
    environment = api.get(f"{emu.base_url}/api/v3/accounts/1/projects/7/environments/9/").json()
    assert_conforms("v3", "/api/v3/accounts/{account_id}/projects/{project_id}/environments/{id}/", environment)
    assert api.get(f"{emu.base_url}/api/v3/accounts/1/projects/7/environments/8/").status_code == 404
    run_results = api.get(f"{emu.base_url}{A}/runs/{runs['failed']}/artifacts/run_results.json")
    assert run_results.status_code == 200 and "results" in run_results.json()


def test_list_pages_follow_extra_pagination(emu: DbtCloudEmulator, api: requests.Session, runs: dict[str, int]) -> None:
    """Every list page conforms, and the pages, read by ``offset += count``, add up to ``total_count``."""
    lists = [
        ("v2", "/api/v2/accounts/{account_id}/jobs/", f"{A}/jobs/", {}),
        ("v2", "/api/v2/accounts/{account_id}/runs/", f"{A}/runs/", {"job_definition_id": 42}),
        ("v2", "/api/v2/accounts/{account_id}/runs/", f"{A}/runs/", {"job_definition_id": 42, "status__in": "[1,2,3]"}),
        ("v2", "/api/v2/accounts/{account_id}/runs/", f"{A}/runs/", {"status": 30, "order_by": "-created_at"}),
        ("v3", "/api/v3/accounts/{account_id}/projects/", "/api/v3/accounts/1/projects/", {}),
        (
            "v3",
            "/api/v3/accounts/{account_id}/projects/{project_id}/environments/",
            "/api/v3/accounts/1/projects/7/environments/",
            {"name__icontains": "PRO"},
        ),
    ]
    for version, template, path, filters in lists:
        offset, seen, total = 0, [], None
        while total is None or offset < total:
            body = api.get(f"{emu.base_url}{path}", params={**filters, "limit": 1, "offset": offset}).json()
            assert_conforms(version, template, body)
            pagination = body["extra"]["pagination"]
            assert pagination["count"] == len(body["data"]) and body["extra"]["filters"]["offset"] == offset
            total = pagination["total_count"]
            seen += [item["id"] for item in body["data"]]
            offset += pagination["count"]
            if not pagination["count"]:
                break
        assert len(seen) == len(set(seen)) == total and total >= 1, (path, filters, seen)


def test_run_step_command_is_the_specs_object(
    emu: DbtCloudEmulator, api: requests.Session, runs: dict[str, int]
) -> None:
    """The run's steps carry ``run_step_command`` as the spec's ``RunStepCommand`` object, not a bare string."""
    params = {"include_related": "run_steps"}
    steps = api.get(f"{emu.base_url}{A}/runs/{runs['failed']}/", params=params).json()["data"]["run_steps"]
    command_validator = validator("v2", "RunStepCommand", nullable=False)
    assert steps and all(command_validator.is_valid(step["run_step_command"]) for step in steps)
    assert [step["run_step_command"]["run_step_id"] for step in steps] == [step["id"] for step in steps]
