"""dbt Cloud API conventions for the emulator: envelopes, error bodies (reference §8), query parsing (§4.4),
trigger validation (§6) and the generic filtering/paging of list endpoints (§4.3)."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Json = dict[str, Any]
Query = dict[str, Any]

MAX_LIMIT = 100  # limit > 100 answers 400: the live behaviour is unverified, strict is safer for clients
MAX_CAUSE = 255  # not in the spec, but the live API rejects longer causes (apache/airflow#34676)
_MSG_400 = "The request was invalid. Please double check the provided data and try again."
_MSG_404 = "The requested resource was not found. Please check that you have the proper permissions."
_SCHEMAS = "is not valid under any of the given schemas"


class ApiError(Exception):
    """An error answer: ``status``, JSON ``body`` and extra headers."""

    def __init__(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, dict(headers or {})


def fields(value: Any, names: str) -> Json:
    """``fields(None, "a b")`` → ``{"a": None, "b": None}``: compact object templates."""
    return dict.fromkeys(names.split(), value)


def ok(data: Any, extra: Json | None = None) -> Json:
    status = {"code": 200, "is_success": True, "user_message": "Success!", "developer_message": ""}
    return {"status": status, "data": data} | ({} if extra is None else {"extra": extra})


def error_body(code: int, message: str, developer_message: str | None = "") -> Json:
    status = {"code": code, "is_success": False, "user_message": message, "developer_message": developer_message}
    return {"status": status, "data": None}


def invalid(data: Any) -> ApiError:
    return ApiError(400, error_body(400, _MSG_400) | {"data": data, "extra": {}, "error_code": None})


def not_found() -> ApiError:
    return ApiError(404, error_body(404, _MSG_404))


def unauthorized() -> ApiError:
    return ApiError(401, error_body(401, "Invalid token.", None), {"WWW-Authenticate": "Token"})


def forbidden() -> ApiError:
    return ApiError(403, error_body(403, "Access denied: Token is not scoped to account.", None))


def unexpected(names: Sequence[str]) -> ApiError:
    listed = ", ".join(repr(n) for n in names)
    verb = "was" if len(names) == 1 else "were"
    return invalid(f"Additional properties are not allowed ({listed} {verb} unexpected)")


def params(base: Mapping[str, str] | None = None, **kinds: str) -> dict[str, str]:
    """``params(int="a b", ints="c")`` → ``{"a": "int", "b": "int", "c": "ints"}`` (merged onto ``base``)."""
    out = dict(base or {})
    for kind, names in kinds.items():
        out |= fields(kind, names)
    return out


PAGING = params(limit="limit", offset="offset", str="order_by", include="include_related", state="state")
TRIGGER_FIELDS = params(
    str="cause git_sha git_branch schema_override dbt_version_override target_name_override",
    int="azure_pull_request_id github_pull_request_id gitlab_merge_request_id non_native_pull_request_id "
    "threads_override timeout_seconds_override",
    bool="generate_docs_override",
    strs="steps_override",
)


def _as_list(values: list[str], name: str) -> list[Any]:
    """Expand repeated keys, JSON lists (``[1, 2]``), Python-literal lists (``['a']``) and comma lists."""
    out: list[Any] = []
    for raw in values:
        value = raw.strip()
        if not value.startswith("["):
            out.extend(part.strip() for part in value.split(",") if part.strip())
            continue
        try:
            parsed = json.loads(value)
        except ValueError:
            try:
                parsed = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                parsed = None
        if not isinstance(parsed, list):
            raise invalid({name: f"'{raw}' {_SCHEMAS}"})
        out.extend(parsed)
    return out


def _to_int(value: Any, name: str, message: str = "is not of type 'integer'") -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    raise invalid({name: f"'{value}' {message}"})


def parse_query(raw: Mapping[str, list[str]], spec: Mapping[str, str]) -> Query:
    """Validate and convert query parameters; unknown ones are a 400, as on ``GET .../runs/`` live."""
    unknown = [k for k in raw if k not in spec]
    if unknown:
        raise unexpected(unknown)
    q: Query = {}
    for name, values in raw.items():
        kind, last = spec[name], values[-1]
        if kind in ("int", "limit", "offset"):
            q[name] = number = _to_int(last, name)
            if kind == "limit" and number > MAX_LIMIT:
                raise invalid({name: f"Ensure this value is less than or equal to {MAX_LIMIT}."})
            if (kind == "limit" and number < 1) or (kind == "offset" and number < 0):
                raise invalid({name: f"Ensure this value is greater than or equal to {int(kind == 'limit')}."})
        elif kind == "ints":
            q[name] = [_to_int(v, name, _SCHEMAS) for v in _as_list(values, name)]
        elif kind in ("strs", "include"):
            q[name] = [str(v).strip().strip("'\"") for v in _as_list(values, name)]
        elif kind == "bool":
            if last.lower() not in ("true", "false", "1", "0"):
                raise invalid({name: f"'{last}' is not of type 'boolean'"})
            q[name] = last.lower() in ("true", "1")
        elif kind == "state":
            q[name] = {"1": "active", "2": "deleted"}.get(last, last)
            if q[name] not in ("active", "deleted", "all"):
                raise invalid({name: f"'{last}' {_SCHEMAS}"})
        else:
            q[name] = last
    return q


def matches(obj: Mapping[str, Any], q: Query) -> bool:
    """Apply Django-style filters (``x``, ``x__in``, ``x__icontains``, ``x__gt``; ``pk`` is ``id``) to ``obj``.

    Filters on fields the object does not carry are accepted and ignored; ``state=deleted`` matches nothing.
    """
    for key, want in q.items():
        if key in PAGING:
            continue
        name, _, op = key.partition("__")
        name = "id" if name == "pk" else name
        if name not in obj:
            continue
        have = obj[name]
        if op == "in":
            hit = have in want
        elif op == "icontains":
            hit = str(want).lower() in str(have).lower()
        elif op == "gt":
            hit = have is not None and have > want
        else:
            hit = have == want
        if not hit:
            return False
    return q.get("state") != "deleted"


def ordered(items: list[Any], q: Query, allowed: Sequence[str], key: Callable[[Any, str], Any]) -> list[Any]:
    """Sort by ``order_by`` (``-`` prefix reverses); ``key(item, field)`` must not return None."""
    order = q.get("order_by", "id")
    name = order.lstrip("-")
    if name not in allowed:
        raise invalid({"order_by": f"'{order}' is not one of {list(allowed)}"})
    return sorted(items, key=lambda item: key(item, name), reverse=order.startswith("-"))


def paged(items: Sequence[Any], q: Query, render: Callable[[Any], Json], echo: Json, state: str) -> Json:
    """List envelope with ``extra.filters`` (echo incl. defaults), ``order_by`` and ``pagination``."""
    limit, offset = q.get("limit", MAX_LIMIT), q.get("offset", 0)
    page = items[offset : offset + limit]
    filters = {"limit": limit, "offset": offset, "state": q.get("state", state)} | echo
    filters |= {k: v for k, v in q.items() if k not in PAGING}
    pagination = {"count": len(page), "total_count": len(items)}
    return ok(
        [render(x) for x in page], {"filters": filters, "order_by": q.get("order_by", "id"), "pagination": pagination}
    )


def validate_trigger(body: Any) -> Json:
    """Validate a trigger body (``TriggerRunRequestRequest``, unknown fields rejected, cause ≤ 255 chars).

    ``null`` for an optional field counts as absent: Airflow's hook always sends ``"steps_override": null``
    and ``"schema_override": null``, which the live API accepts.
    """
    if not isinstance(body, dict):
        raise invalid({"non_field_errors": f"Invalid data. Expected a dictionary, but got {type(body).__name__}."})
    unknown = [k for k in body if k not in TRIGGER_FIELDS]
    if unknown:
        raise unexpected(unknown)
    errors: Json = {}
    if body.get("cause") is None:
        errors["cause"] = "None is not of type 'string'" if "cause" in body else "'cause' is a required property"
    for name, value in body.items():
        kind = TRIGGER_FIELDS[name]
        if value is None:
            continue
        if kind == "str" and not isinstance(value, str):
            errors[name] = f"{value!r} is not of type 'string'"
        elif kind == "str" and not value:
            errors[name] = "'' is too short"
        elif kind == "int" and (not isinstance(value, int) or isinstance(value, bool)):
            errors[name] = f"{value!r} is not of type 'integer'"
        elif kind == "bool" and not isinstance(value, bool):
            errors[name] = f"{value!r} is not of type 'boolean'"
        elif kind == "strs" and not (
            isinstance(value, list) and value and all(isinstance(v, str) and v for v in value)
        ):
            errors[name] = f"{value!r} is not a non-empty array of non-empty strings"
        elif name == "cause" and len(value) > MAX_CAUSE:
            errors[name] = f"Ensure this field has no more than {MAX_CAUSE} characters."
    if errors:
        raise invalid(errors)
    return {k: v for k, v in body.items() if v is not None}


def form_to_trigger(raw: Mapping[str, list[str]]) -> Json:
    """Give a form-urlencoded trigger body JSON types (validation happens afterwards)."""
    out: Json = {}
    for name, values in raw.items():
        kind, last = TRIGGER_FIELDS.get(name), values[-1]
        if kind == "strs":
            out[name] = values
        elif kind == "int" and re.fullmatch(r"-?\d+", last):
            out[name] = int(last)
        elif kind == "bool" and last.lower() in ("true", "false"):
            out[name] = last.lower() == "true"
        else:
            out[name] = last
    return out


def hms(seconds: float) -> str:
    s = max(0, int(seconds + 1e-6))  # 1e-6: float noise must not turn 20 s into "00:00:19"
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def humanize(seconds: float) -> str:
    s = max(0, int(seconds + 1e-6))
    parts = [(s // 86400, "day"), (s % 86400 // 3600, "hour"), (s % 3600 // 60, "minute"), (s % 60, "second")]
    return ", ".join([f"{n} {unit}{'' if n == 1 else 's'}" for n, unit in parts if n][:2]) or "0 seconds"
