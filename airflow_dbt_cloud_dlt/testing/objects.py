"""The API's JSON objects, per the spec's schemas: runs with their steps, jobs, projects, environments and
accounts. Projects and environments derive from the jobs that declare them."""

from __future__ import annotations

import copy
import math
from typing import Any

from airflow_dbt_cloud_dlt.testing import _api as api
from airflow_dbt_cloud_dlt.testing._api import Json, fields
from airflow_dbt_cloud_dlt.testing.dbt_output import failing_step_log, has_run_results
from airflow_dbt_cloud_dlt.testing.scripts import STATUS_HUMANIZED, JobScript
from airflow_dbt_cloud_dlt.testing.state import EmulatorState, Phase, Run, command, status_message

ALL_RELATED = {"trigger", "job", "run_steps", "environment"}
_COLOR = {1: "gray", 2: "gray", 3: "blue", 10: "green", 20: "red", 30: "gray"}
_FINAL_STEP_STATUS = {"error": 20, "cancelled": 30, "timeout": 30}

# Constant parts of the objects, per the spec's schemas (RunResponse, HumanReadableJobDefinitionResponse, ...).
RUN_CONST = fields(
    None,
    "owner_thread_id executed_by_thread_id deferring_run_id is_running artifact_s3_path last_checked_at "
    "last_heartbeat_at should_start_at used_repo_cache audit",
) | fields(False, "has_docs_generated has_sources_generated")
_STEP_CONST = fields(None, "status_message log_path debug_log_path run_step_invocation") | {
    "log_location": "db",
    "log_archive_type": "db_flushed",
}
_JOB_CONST = (
    fields(
        None,
        "dbt_version deferring_environment_id deferring_job_definition_id lifecycle_webhooks_url schedule account "
        "job_completion_trigger_condition fusion_readiness",
    )
    | fields(
        False,
        "generate_docs generate_sources run_generate_sources is_deferrable lifecycle_webhooks run_compare_changes "
        "run_lint triggers_on_draft_pr",
    )
    | {"description": "", "job_type": "other", "compare_changes_flags": "--select state:modified", "state": 1}
    | {"run_failure_count": 0, "errors_on_lint_failure": True, "cost_optimization_features": []}
    | {"settings": {"threads": 4, "target_name": "default"}}
    | {"triggers": fields(False, "github_webhook schedule git_provider_webhook on_merge")}
)
_PROJECT_CONST = fields(
    None,
    "connection_id repository_id semantic_layer_config_id dbt_project_subdirectory docs_job_id freshness_job_id "
    "connection repository docs_job freshness_job fusion_readiness",
) | {"description": "", "state": 1, "type": 0, "environments": [], "group_permissions": [], "default_version": "latest"}
_ENV_CONST = (
    fields(
        None, "credentials_id connection_id extended_attributes_id custom_branch project credentials fusion_readiness"
    )
    | fields(False, "use_custom_branch supports_docs is_deferrable")
    | {"type": "deployment", "state": 1}
)
_ACCOUNT_CONST = (
    fields(
        None,
        "lock_reason lock_cause unlocked_at billing_email_address enterprise_login_slug starter_repo_url "
        "trial_end_date static_subdomain vanity_subdomain run_locked_until docs_job_id freshness_job_id "
        "copilot_locked_until",
    )
    | fields(False, "locked pending_cancel business_critical agent_credit_locked")
    | fields(0, "explorer_seats analyst_seats read_only_seats develop_pod_memory_request_mebibytes")
    | {"plan": "enterprise", "run_slots": 5, "developer_seats": 10, "it_seats": 1, "state": 1, "queue_limit": 50}
    | {"pod_memory_request_mebibytes": 600, "run_duration_limit_seconds": 86400, "git_auth_level": "team"}
    | {"account_migration_events": [], "groups": []}
)


def by_field(obj: Json, name: str) -> Any:
    """Sort key for ``api.ordered`` over rendered objects."""
    return (obj.get(name) or "", obj["id"])


def run_obj(state: EmulatorState, run: Run, now: float, include: set[str]) -> Json:
    """A run as ``GET .../runs/{id}/`` returns it, with the ``include_related`` objects asked for."""
    if state.base_url is None:
        raise RuntimeError("the emulator has not been started")
    st, j = state.phase(run, now), run.job
    status, end = st.status, st.finished if st.finished is not None else now
    latest, saved = state.is_latest(run), has_run_results(run, status)
    can_retry = status == 20 and latest and saved
    reason = "RETRY_NOT_FAILED_RUN" if status != 20 else "RETRY_NOT_LATEST_RUN" if not latest else None
    reason = None if can_retry else reason or "RETRY_NO_RUN_RESULTS"
    created, started = run.created, st.started
    events = (created, st.dequeued, started, st.finished)
    queued_until, ran = (started if started is not None else end), (end - started if started is not None else 0)
    trigger = {"id": run.id + 10_000_000, "cause": "", "job_definition_id": j.job_id}
    trigger |= fields(None, " ".join(api.TRIGGER_FIELDS)) | run.trigger | {"cause_category": run.cause_category}
    trigger |= {"created_at": state.wall(created), "updated_at": state.wall(created)}
    return (
        RUN_CONST
        | {"id": run.id, "trigger_id": trigger["id"], "account_id": j.account_id, "job_definition_id": j.job_id}
        | {"environment_id": j.environment_id, "project_id": j.project_id, "job_id": j.job_id}
        | {"status": status, "status_humanized": STATUS_HUMANIZED[status]}
        | {"status_message": status_message(run, status) if status >= 20 else None}
        | {"dbt_version": run.trigger.get("dbt_version_override", j.dbt_version)}
        | {"git_branch": run.trigger.get("git_branch"), "git_sha": run.trigger.get("git_sha")}
        | {"in_progress": status < 10, "is_complete": status >= 10, "is_success": status == 10}
        | {"is_error": status == 20, "is_cancelled": status == 30, "blocked_by": st.blocked_by}
        | {"artifacts_saved": saved and status in (10, 20), "notifications_sent": status >= 10}
        | {"created_at": state.wall(created), "updated_at": state.wall(max(t for t in events if t is not None))}
        | {"dequeued_at": state.wall(st.dequeued), "started_at": state.wall(started)}
        | {"finished_at": state.wall(st.finished)}
        | {"trigger": trigger if "trigger" in include else None}
        | {"job": job_obj(state, j) if "job" in include else None}
        | {"environment": env_obj(state, j.account_id, j.environment_id) if "environment" in include else None}
        | {"run_steps": _steps(state, run, st, now) if "run_steps" in include else []}
        | {"duration": api.hms(end - created), "duration_humanized": api.humanize(end - created)}
        | {"queued_duration": api.hms(queued_until - created)}
        | {"queued_duration_humanized": api.humanize(queued_until - created)}
        | {"run_duration": api.hms(ran), "run_duration_humanized": api.humanize(ran)}
        | {"created_at_humanized": f"{api.humanize(now - created)} ago"}
        | {"finished_at_humanized": None if st.finished is None else f"{api.humanize(now - st.finished)} ago"}
        | {"retrying_run_id": run.retrying_run_id, "can_retry": can_retry, "retry_not_supported_reason": reason}
        | {"href": j.href or f"{state.base_url}/deploy/{j.account_id}/projects/{j.project_id}/runs/{run.id}/"}
    )


def _steps(state: EmulatorState, run: Run, st: Phase, now: float) -> list[Json]:
    """The steps started by ``now``; each gets an equal share of ``run_seconds``."""
    if st.started is None:
        return []
    steps = run.ran_steps()
    share, end, out = run.job.run_seconds / len(steps), min(now, st.finish), []
    for i, step in enumerate(steps):
        last = i == len(steps) - 1
        s0 = st.started + i * share
        s1 = st.started + run.job.run_seconds if last else st.started + (i + 1) * share
        if s0 > end:
            break
        logs = step.logs
        if run.cancelled_at is not None and s1 > run.cancelled_at:
            status, s1 = 30, run.cancelled_at
        elif s1 <= now:
            status = _FINAL_STEP_STATUS.get(run.outcome, 10) if last else 10
            logs = failing_step_log(run, logs, step.outcome == "error") if status == 20 else logs
        else:  # running: a share of the log lines proportional to progress
            status, lines = 3, logs.splitlines()
            logs = "\n".join(lines[: math.ceil(len(lines) * (now - s0) / max(share, 1e-9))])
        done = None if status == 3 else s1
        took = (done or now) - s0
        out.append(
            _STEP_CONST
            | {"id": run.step_id0 + i, "run_id": run.id, "account_id": run.job.account_id, "index": i + 1}
            | {"status": status, "status_humanized": STATUS_HUMANIZED[status], "status_color": _COLOR[status]}
            | {"name": step.name, "logs": logs, "debug_logs": logs, "truncated_debug_logs": logs}
            | {"created_at": state.wall(s0), "updated_at": state.wall(done or now), "started_at": state.wall(s0)}
            | {"finished_at": state.wall(done), "duration": api.hms(took), "duration_humanized": api.humanize(took)}
            | {"run_step_command": {"run_step_id": run.step_id0 + i, "dbt_command": command(step.name)}}
        )
    return out


def job_obj(state: EmulatorState, j: JobScript, include: set[str] | frozenset[str] = frozenset()) -> Json:
    return copy.deepcopy(_JOB_CONST) | {
        "id": j.job_id,
        "account_id": j.account_id,
        "project_id": j.project_id,
        "environment_id": j.environment_id,
        "name": j.name,
        "raw_dbt_version": j.dbt_version,
        # Only the dbt commands: dbt Cloud adds its own setup steps (clone, profile, deps) to a run.
        "execute_steps": [command(s.name) for s in j.steps if s.name.startswith("Invoke dbt")],
        "execution": {"timeout_seconds": j.timeout_seconds},
        "created_at": state.created(j.job_id),
        "updated_at": state.created(j.job_id),
        "project": project_obj(state, j.account_id, j.project_id) if "project" in include else None,
        "environment": env_obj(state, j.account_id, j.environment_id) if "environment" in include else None,
    }


def project_obj(state: EmulatorState, account: int, project_id: int) -> Json | None:
    j = state.first_job(account, "project_id").get(project_id)
    if j is None:
        return None
    created = state.created(j.job_id)
    ids = {"id": project_id, "name": j.project_name, "account_id": account}
    project = copy.deepcopy(_PROJECT_CONST) | ids | {"created_at": created, "updated_at": created}
    if j.connection is not None:
        project["connection"] = copy.deepcopy(j.connection)
    return project


def env_obj(state: EmulatorState, account: int, env_id: int) -> Json | None:
    j = state.first_job(account, "environment_id").get(env_id)
    if j is None:
        return None
    created = state.created(j.job_id)
    deployment = "production" if "prod" in j.environment_name.lower() else "staging"
    return _ENV_CONST | {
        "id": env_id,
        "account_id": account,
        "project_id": j.project_id,
        "name": j.environment_name,
        "dbt_version": j.dbt_version,
        "raw_dbt_version": j.dbt_version,
        "deployment_type": deployment,
        "created_at": created,
        "updated_at": created,
    }


def account_obj(state: EmulatorState, account: int) -> Json:
    created = state.wall(state.mono0, "T")
    names = {"id": account, "name": f"Emulated account {account}", "identifier": f"act_emulated_{account}"}
    return copy.deepcopy(_ACCOUNT_CONST) | names | {"created_at": created, "updated_at": created}
