"""What a scripted job does: :class:`JobScript` and :class:`StepScript`, the outcomes a run can end with, and
the command line's job specs (``JOB_ID[:OUTCOME[:RUN_SECONDS]]``) and demo job."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

STATUS_HUMANIZED = {1: "Queued", 2: "Starting", 3: "Running", 10: "Success", 20: "Error", 30: "Cancelled"}
OUTCOME_STATUS = {"success": 10, "error": 20, "cancelled": 30, "timeout": 30}
OUTCOME_HELP = {
    "success": "status 10 Success",
    "error": "status 20 Error: the failing step logs a dbt database error and run_results.json names the node",
    "cancelled": 'status 30 Cancelled, "Cancelled by user."',
    "timeout": "status 30 Cancelled, with dbt Cloud's timeout message",
}


@dataclass
class StepScript:
    """One run step; in an "error" run the first step with ``outcome="error"`` (else the last) fails.

    A failing step with ``outcome="error"`` and ``logs`` shows those logs as they are; any other failing
    step that invokes dbt shows its logs (without dbt's ``Done.`` summary) followed by dbt's error output.
    """

    name: str
    logs: str = ""
    outcome: str = "success"


@dataclass
class JobScript:
    """A job and the script its runs follow: Queued → Starting → Running → terminal per ``outcome``.

    ``outcome`` is "success", "error", "cancelled" or "timeout" (status 30 plus dbt's timeout message);
    ``outcome_sequence`` overrides it for the job's 1st, 2nd, ... run. Steps share ``run_seconds`` equally.
    ``serial=False`` lets runs of the job execute concurrently (otherwise a run waits, ``blocked_by`` the
    previous one). ``run_results`` is served, with a small manifest, as artifacts of finished runs; a run
    that fails in a dbt step serves a generated ``run_results.json`` when the script gives none.
    ``artifact_sizes`` adds big generated files (``{"target/big.json": 200_000_000}``) to those artifacts.

    ``project=True`` serves the example dbt project's artifacts (:mod:`.project`) instead: every step whose
    command builds nodes (``dbt build``, ``run``, ``seed``, ``snapshot``, ``test``, with ``--select`` and
    ``--exclude`` honoured) has a ``manifest.json`` (v12) and a ``run_results.json`` (v6) of what it built; other
    steps (``dbt deps``) have none. In an "error" run the failing step's ``failing_nodes`` (names; default the
    node named by the status message, else the step's last model) end in error and their descendants are
    skipped. ``files`` replaces artifacts by path with the given text, or removes them (``None``): bad or
    missing artifacts, for tests.
    """

    job_id: int
    account_id: int = 1
    project_id: int = 1
    environment_id: int = 1
    name: str = "emulated job"
    project_name: str = "analytics"
    environment_name: str = "prod"
    queue_seconds: float = 0.0
    start_seconds: float = 0.0
    run_seconds: float = 1.0
    outcome: str = "success"
    steps: list[StepScript] = field(default_factory=list)
    run_results: dict[str, Any] | None = None
    serial: bool = True
    outcome_sequence: list[str] = field(default_factory=list)
    timeout_seconds: int = 0
    status_message: str | None = None  # overrides the error/timeout status_message
    dbt_version: str = "latest"
    #: Further artifacts of finished runs, by path: generated JSON files of exactly this many bytes, streamed.
    artifact_sizes: dict[str, int] = field(default_factory=dict)
    #: Serve the example project's manifest.json and per-step run_results.json (see the class docstring).
    project: bool = False
    failing_nodes: list[str] = field(default_factory=list)
    #: Artifacts replaced (text) or removed (None) by path, in every step that has artifacts.
    files: dict[str, str | None] = field(default_factory=dict)
    #: What its runs report as ``href`` (to test a hostile answer); default: the run's page on the emulator.
    href: str | None = None
    #: The project's warehouse ``connection`` as the v3 project endpoint gives it (``{"type": "snowflake",
    #: "details": {...}}``), which the official provider's OpenLineage reads; default none (null).
    connection: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.steps = [StepScript(**s) if isinstance(s, dict) else s for s in self.steps]
        self.steps = self.steps or [StepScript("Invoke dbt with `dbt build`", "Running with dbt=1.9.0\nDone. PASS=1")]
        for outcome in (self.outcome, *self.outcome_sequence):
            if outcome not in OUTCOME_STATUS:
                raise ValueError(f"unknown outcome {outcome!r}; expected one of {sorted(OUTCOME_STATUS)}")
        if self.project and self.failing_nodes and self.status_message is None:
            from airflow_dbt_cloud_dlt.testing.project import example_project

            nodes = {node.name: node for node in example_project().nodes.values()}
            first = nodes.get(self.failing_nodes[0])
            if first is None:
                raise ValueError(f"failing node {self.failing_nodes[0]!r} is not in the example project")
            self.status_message = f"Runtime Error in {first.resource_type} {first.name} ({first.path})"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobScript:
        """Build from JSON (control route); unknown keys raise ``ValueError``."""
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown JobScript fields: {sorted(unknown)}")
        return cls(**data)


def default_demo_job() -> JobScript:
    """The CLI's demo job: job 1 "daily build" of the example dbt project (``dbt deps``, ``dbt build``), about
    three seconds a run. Its runs serve the project's artifacts, so ``--select`` really builds fewer nodes."""
    return JobScript(
        job_id=1,
        name="daily build",
        project_name="analytics",
        environment_name="prod",
        queue_seconds=0.5,
        start_seconds=0.5,
        run_seconds=2.0,
        steps=[
            StepScript("Invoke dbt with `dbt deps`", "Installing packages\nDone."),
            StepScript("Invoke dbt with `dbt build`", "Running with dbt=1.9.0\nDone."),
        ],
        project=True,
    )


def parse_job_spec(spec: str, account_id: int = 1) -> JobScript:
    """Parse the CLI's ``JOB_ID[:OUTCOME[:RUN_SECONDS]]``."""
    job_id, outcome, seconds = [*spec.split(":"), "", ""][:3]
    return JobScript(
        job_id=int(job_id),
        account_id=account_id,
        name=f"job {job_id}",
        outcome=outcome or "success",
        run_seconds=float(seconds) if seconds else 1.0,
    )
