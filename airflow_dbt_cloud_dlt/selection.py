"""Run only what dlt changed: ``select_from_load`` of the run-job operator (issue 11, part 4).

Given the tables a dlt load wrote, :func:`plan_selection` reads the job's latest ``manifest.json`` (the "get job
artifact" endpoint, streamed to a temporary file and read with ijson as :mod:`.dbt_assets` does), finds the dbt
sources that are those tables, and rewrites each node-building dbt step of the job (``build``, ``run``, ``test``,
``seed``, ``snapshot``) to select ``source:<source>.<table>+`` of just those sources, intersected with the step's
own ``--select`` (dbt's ``a,b``). Steps that select nothing (``dbt deps``, ``docs generate``, ``source freshness``,
``retry``...) stay as they are.

Matching a dlt table to a dbt source, by database, schema and identifier, follows each warehouse's case rules
(:data:`CASE_RULES`):

- the dlt side is the table's Asset URI (:mod:`.assets`), which already folds names the way the warehouse folds
  unquoted identifiers; that is the table dlt really wrote, because dlt's naming convention writes snake_case
  names that the warehouse stores folded (upper case on Snowflake, lower case elsewhere);
- the dbt side is what the source's relation resolves to. A *quoted* name part (the source's ``quoting``, else the
  adapter's default: dbt quotes on Postgres, Redshift, DuckDB, Databricks and BigQuery and not on Snowflake) is
  taken as written where the warehouse compares quoted names case-sensitively (Postgres, Snowflake, and BigQuery
  always); an unquoted one is folded like the dlt side. DuckDB, Databricks and Redshift (by default) compare
  identifiers case-insensitively, quoted or not, so both sides are lower-cased there.

So on Postgres a source ``identifier: Orders`` (quoted by default) is the table ``"Orders"``, not the ``orders`` dlt
wrote, and it does not match (a log line says why). The namespace (which warehouse) is compared when the task or
its connection sets ``asset_namespace``; otherwise only the warehouse kind (the manifest's adapter) is.

What can happen, and what :func:`plan_selection` says (:class:`SelectionPlan`): sources matched (the new steps);
nothing reads the changed tables (``skip``: the operator skips the task); the manifest cannot be read
(``fallback``: the operator runs the whole job, or fails when told to). An expression dbt would reject, in the
job's steps or made from a source's name, raises :class:`InvalidSelectError`.

Importing this module imports neither Airflow nor ijson.
"""

from __future__ import annotations

import logging
import re
import shlex
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .assets import TableName, UnsupportedWarehouseError, parse_table_asset_uri, resolve_namespace

if TYPE_CHECKING:
    from .api.client import DbtCloudClient

log = logging.getLogger(__name__)

__all__ = [
    "CASE_RULES",
    "SELECTING_COMMANDS",
    "DbtSource",
    "InvalidSelectError",
    "SelectionPlan",
    "changed_tables",
    "check_select",
    "match_sources",
    "plan_selection",
    "read_manifest_sources",
    "select_steps",
]

#: dbt commands whose ``--select`` chooses the nodes a step builds or tests: these steps get the selection.
SELECTING_COMMANDS = frozenset({"build", "run", "test", "seed", "snapshot"})
#: Flags that give a step's selection, and the YAML-selector flag this module cannot intersect with.
_SELECT_FLAGS = ("--select", "-s", "--models", "-m")
_SELECTOR_FLAGS = ("--selector",)
#: dbt's selector methods (dbt-core ``MethodName``, 1.9).
DBT_METHODS = frozenset(
    [
        "fqn",
        "tag",
        "group",
        "access",
        "source",
        "path",
        "file",
        "package",
        "config",
        "test_name",
        "test_type",
        "resource_type",
        "state",
        "exposure",
        "metric",
        "result",
        "source_status",
        "wildcard",
        "version",
        "semantic_model",
        "saved_query",
        "unit_test",
    ]
)
#: dbt's own pattern of one selection criterion (dbt-core ``selector_spec.RAW_SELECTOR_PATTERN``).
_CRITERION = re.compile(
    r"\A(?P<childrens_parents>@)?(?P<parents>(?P<parents_depth>\d*)\+)?"
    r"((?P<method>[\w.]+):)?(?P<value>.*?)(?P<children>\+(?P<children_depth>\d*))?\Z"
)
#: A source or table name that ``source:<source>.<table>`` can name exactly (no glob, separator or operator).
_PLAIN_NAME = re.compile(r"\A[\w$-]+\Z")
#: Children in the manifest's child_map that are not run by dbt, so do not count as reading a source.
_NOT_RUN = ("exposure.", "metric.", "semantic_model.", "saved_query.")

Fold = Literal["upper", "lower", "exact"]


@dataclass(frozen=True)
class CaseRule:
    """How a warehouse compares a name part: ``unquoted`` and ``quoted`` folds, and whether dbt quotes by default."""

    unquoted: Fold
    quoted: Fold
    dbt_quotes_by_default: bool


#: Per warehouse (the naming rule's kinds, which are the dbt adapter types): see the module docstring.
CASE_RULES: dict[str, CaseRule] = {
    "postgres": CaseRule("lower", "exact", True),
    "redshift": CaseRule("lower", "lower", True),  # case-insensitive unless enable_case_sensitive_identifier
    "snowflake": CaseRule("upper", "exact", False),
    "bigquery": CaseRule("exact", "exact", True),  # dataset and table names are case-sensitive
    "databricks": CaseRule("lower", "lower", True),  # Unity Catalog stores names in lower case
    "duckdb": CaseRule("lower", "lower", True),  # identifiers are case-insensitive, quoted or not
}


def _fold(value: str, how: Fold) -> str:
    return value.upper() if how == "upper" else value.lower() if how == "lower" else value


class InvalidSelectError(ValueError):
    """A select expression dbt would reject (in the job's steps, or one this module would have to write)."""


# --- select expressions ------------------------------------------------------------------------------------------


def check_criterion(text: str, where: str) -> None:
    """Raise :class:`InvalidSelectError` for one criterion (``tag:x+``, ``source:raw.orders``) dbt would reject,
    with dbt's wording where it has one."""
    found = _CRITERION.match(text)
    if not text or found is None:
        raise InvalidSelectError(f"{where}: Invalid selector spec {text!r}: an empty criterion (a stray comma?).")
    if found.group("childrens_parents") and found.group("parents"):
        raise InvalidSelectError(f'{where}: Invalid node spec {text!r} - "@" prefix and "+" prefix are not compatible')
    method = found.group("method")
    if method is not None and method.split(".")[0] not in DBT_METHODS:
        raise InvalidSelectError(
            f"{where}: '{method.split('.')[0]}' is not a valid method name (in {text!r}); dbt's methods are "
            f"{', '.join(sorted(DBT_METHODS))}."
        )
    if not found.group("value"):
        raise InvalidSelectError(f"{where}: Invalid selector spec {text!r}: the selector has no value.")


def check_select(terms: Iterable[str], where: str) -> None:
    """Check select terms (space-separated unions of comma-separated intersections) as dbt would."""
    for term in terms:
        for part in term.split(","):
            check_criterion(part, where)


def source_selector(source_name: str, table_name: str) -> str:
    """``source:<source>.<table>+``; a name that selector cannot name exactly raises :class:`InvalidSelectError`."""
    for label, name in (("source", source_name), ("table", table_name)):
        if not _PLAIN_NAME.match(name):
            raise InvalidSelectError(
                f"dbt source {source_name}.{table_name}: the {label} name {name!r} cannot be selected exactly with "
                "source:<source>.<table> (it has a space, dot, comma, glob or graph operator). Rename it in the "
                "project, or select by steps_override instead of select_from_load."
            )
    selector = f"source:{source_name}.{table_name}+"
    check_criterion(selector, f"dbt source {source_name}.{table_name}")
    return selector


def _split_step(step: str) -> list[str]:
    try:
        return shlex.split(step)
    except ValueError as error:
        raise InvalidSelectError(f"job step {step!r} cannot be parsed as a command line ({error}).") from None


def _subcommand(words: Sequence[str]) -> str | None:
    if not words or words[0] != "dbt":
        return None
    return next((word for word in words[1:] if not word.startswith("-")), None)


def select_steps(steps: Sequence[str], selectors: Sequence[str]) -> tuple[list[str], list[int]]:
    """Each selecting dbt step of ``steps`` with its selection intersected with ``selectors`` (a union); the
    others as they are. Returns the new steps and the indexes of those that changed.

    ``dbt build --select tag:daily`` with ``[source:raw.orders+]`` becomes
    ``dbt build --select tag:daily,source:raw.orders+``; without a ``--select`` it becomes
    ``dbt build --select source:raw.orders+``. ``--exclude`` and every other flag stay.
    """
    if not selectors:
        raise ValueError("select_steps needs at least one selector")
    check_select(selectors, "select_from_load")
    out: list[str] = []
    changed: list[int] = []
    for index, step in enumerate(steps):
        words = _split_step(step)
        if _subcommand(words) not in SELECTING_COMMANDS:
            out.append(step)
            continue
        for flag in _SELECTOR_FLAGS:
            if any(word == flag or word.startswith(flag + "=") for word in words):
                raise InvalidSelectError(
                    f"job step {step!r} selects with a YAML selector ({flag}), which dbt does not combine with "
                    "--select, so select_from_load cannot intersect with it. Give the step's selection as --select "
                    "(steps_override), or run the job without select_from_load."
                )
        kept: list[str] = []
        existing: list[str] = []
        taking = False
        for word in words:
            flag, eq, value = word.partition("=")
            if word in _SELECT_FLAGS:
                taking = True
                continue
            if eq and flag in ("--select", "--models"):
                existing.extend(value.split())
                taking = False
                continue
            if taking and not word.startswith("-"):
                existing.extend(word.split())
                continue
            taking = False
            kept.append(word)
        check_select(existing, f"job step {step!r}")
        terms = [f"{mine},{theirs}" for mine in existing for theirs in selectors] if existing else list(selectors)
        out.append(shlex.join([*kept, "--select", *terms]))
        changed.append(index)
    return out, changed


# --- the changed tables -----------------------------------------------------------------------------------------


def changed_tables(value: Any, *, namespace: str | None = None) -> list[TableName]:
    """The tables of ``select_from_load``: a list of Asset URIs, ``LoadedTable``s, mappings with a ``uri``, dlt
    ``LoadInfo``s (named through their destination; ``namespace`` overrides it), or one of these; a rendered
    template's string of such a list. Duplicates are dropped."""
    if isinstance(value, str):
        from ._tasks import _literal  # the operator's own reading of a rendered template (Airflow is loaded)

        text = value.strip()
        value = _literal(text) if text[:1] in ("[", "(") else ([text] if text else [])
    is_load_info = hasattr(value, "load_packages")  # dlt's LoadInfo is a NamedTuple: not a list of tables
    items = list(value) if isinstance(value, list | tuple | set | frozenset) and not is_load_info else [value]
    found: dict[str, TableName] = {}
    for item in items:
        if hasattr(item, "load_packages"):  # a dlt LoadInfo
            from .assets import loaded_tables

            uris = [table.uri for table in loaded_tables(item, namespace=namespace)]
        elif isinstance(item, str):
            uris = [item]
        elif isinstance(item, Mapping) and isinstance(item.get("uri"), str):
            uris = [item["uri"]]
        elif isinstance(getattr(item, "uri", None), str):
            uris = [item.uri]
        else:
            raise ValueError(
                "select_from_load takes the tables a dlt load wrote: Asset URIs, LoadedTable objects, dicts with a "
                f"'uri', or a dlt LoadInfo (or a list of them); got {str(item)[:200]!r} ({type(item).__name__})."
            )
        for uri in uris:
            try:
                table = parse_table_asset_uri(uri.strip())
            except (UnsupportedWarehouseError, ValueError) as error:
                raise ValueError(f"select_from_load: {uri!r} is not a table Asset URI: {error}") from None
            found.setdefault(table.uri, table)
    return list(found.values())


# --- the manifest's sources ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DbtSource:
    """One source of the manifest: how dbt selects it, the relation it names, and how many nodes read it."""

    unique_id: str
    source_name: str
    name: str
    database: str | None
    schema: str | None
    identifier: str
    quoting: tuple[tuple[str, bool | None], ...] = ()
    readers: int = 0

    def quoted(self, part: str) -> bool | None:
        return dict(self.quoting).get(part)


def read_manifest_sources(path: Path, where: str = "manifest.json") -> tuple[str, list[DbtSource]]:
    """(adapter_type, sources with their reader counts) of a manifest (v12 or older), read as streams: the
    ``sources`` mapping, then the ``child_map`` entries of those sources."""
    from .dbt_assets import MANIFEST_VERSION, DbtArtifactError, _metadata, _stream

    metadata = _metadata(path, "manifest", MANIFEST_VERSION, where)
    sources: dict[str, DbtSource] = {}
    for uid, node in _stream(path, "sources", where, pairs=True):
        if not isinstance(node, Mapping) or not node.get("name") or not node.get("source_name"):
            raise DbtArtifactError(f"{where} has a source without a name: {str(node)[:200]}")
        given = node.get("quoting")
        quoting: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
        sources[uid] = DbtSource(
            unique_id=uid,
            source_name=str(node["source_name"]),
            name=str(node["name"]),
            database=node.get("database"),
            schema=node.get("schema"),
            identifier=str(node.get("identifier") or node["name"]),
            quoting=tuple((part, quoting.get(part)) for part in ("database", "schema", "identifier")),
        )
    readers: dict[str, int] = {}
    for uid, children in _stream(path, "child_map", where, pairs=True):
        if uid in sources and isinstance(children, list):
            readers[uid] = sum(1 for child in children if not str(child).startswith(_NOT_RUN))
    out = [replace(source, readers=readers.get(uid, 0)) for uid, source in sources.items()]
    return str(metadata.get("adapter_type") or ""), out


def _source_key(source: DbtSource, warehouse: str) -> tuple[str, str, str] | None:
    """(database, schema, identifier) as the warehouse resolves the source's relation; None when it lacks a part."""
    rule = CASE_RULES[warehouse]
    parts = []
    for part, value in (("database", source.database), ("schema", source.schema), ("identifier", source.identifier)):
        if not value:
            return None
        quoted = source.quoted(part)
        quoted = rule.dbt_quotes_by_default if quoted is None else quoted
        parts.append(_fold(str(value).strip().strip('"`'), rule.quoted if quoted else rule.unquoted))
    return parts[0], parts[1], parts[2]


@dataclass
class Match:
    """What :func:`match_sources` found for the changed tables."""

    sources: list[DbtSource] = field(default_factory=list)  # matched and read by something
    unread: list[DbtSource] = field(default_factory=list)  # matched, but no node reads them
    unmatched: list[TableName] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # near misses (case, namespace), for the log


def match_sources(
    tables: Sequence[TableName], sources: Sequence[DbtSource], adapter_type: str, namespace: str | None = None
) -> Match:
    """The manifest sources that are the changed tables; see the module docstring for the rules."""
    if not adapter_type:
        raise UnsupportedWarehouseError("the manifest names no adapter_type, so its sources cannot be matched")
    warehouse = _warehouse_kind(adapter_type)
    dbt_ns = resolve_namespace(namespace, warehouse=warehouse) if namespace else None
    by_key: dict[tuple[str, str, str], list[DbtSource]] = {}
    by_lower: dict[tuple[str, ...], list[DbtSource]] = {}
    for source in sources:
        key = _source_key(source, warehouse)
        if key is not None:
            by_key.setdefault(key, []).append(source)
            by_lower.setdefault(tuple(p.lower() for p in key), []).append(source)
    found = Match()
    for table in tables:
        if table.warehouse != warehouse:
            found.unmatched.append(table)
            found.notes.append(f"{table.uri} is a {table.warehouse} table; the dbt project runs on {warehouse}")
            continue
        if dbt_ns is not None and table.namespace != dbt_ns:
            found.unmatched.append(table)
            found.notes.append(f"{table.uri} is in warehouse {table.namespace}, the dbt project's is {dbt_ns}")
            continue
        hits = by_key.get((table.database, table.schema, table.table), [])
        if not hits:
            found.unmatched.append(table)
            for near in by_lower.get((table.database.lower(), table.schema.lower(), table.table.lower()), []):
                found.notes.append(
                    f"source {near.source_name}.{near.name} names {near.database}.{near.schema}.{near.identifier}, "
                    f"which {warehouse} does not resolve to the table dlt wrote, {table.openlineage_name} "
                    "(quoted names are case-sensitive there)"
                )
        for source in hits:
            target = found.sources if source.readers else found.unread
            if source not in target:
                target.append(source)
    return found


def _warehouse_kind(adapter_type: str) -> str:
    from .assets import _warehouse_of

    kind = _warehouse_of(adapter_type)
    if kind not in CASE_RULES:  # pragma: no cover - CASE_RULES covers every warehouse of the naming rule
        raise UnsupportedWarehouseError(f"no case rules for warehouse {kind!r}")
    return kind


# --- the plan -----------------------------------------------------------------------------------------------------


@dataclass
class SelectionPlan:
    """What the run should be: ``steps`` (the new ``steps_override``), or ``skip``, or ``fallback`` (run the job
    as it is); ``reason`` says why, for the log."""

    steps: list[str] | None = None
    selectors: list[str] = field(default_factory=list)
    skip: bool = False
    fallback: bool = False
    reason: str = ""
    notes: list[str] = field(default_factory=list)


def plan_selection(
    client: DbtCloudClient,
    job_id: int,
    tables: Sequence[TableName],
    *,
    steps: Sequence[str] | None = None,
    namespace: str | None = None,
) -> SelectionPlan:
    """The selective run of job ``job_id`` for ``tables`` (see the module docstring).

    ``steps`` are the steps the run would have (the task's ``steps_override``); default the job's
    ``execute_steps``. A manifest that cannot be read (absent, malformed, too new, an adapter the naming rule does
    not know) gives ``fallback`` with the reason; the caller decides whether that runs the whole job.
    """
    from .api import core
    from .api.errors import DbtCloudError
    from .dbt_assets import DbtArtifactError

    if not tables:
        return SelectionPlan(skip=True, reason="the load changed no tables")
    if steps is None:
        steps = [str(step) for step in client.get_job(job_id).get("execute_steps") or []]
    where = f"the latest manifest.json of dbt Cloud job {job_id}"
    try:
        with tempfile.TemporaryDirectory(prefix=f"dbt-cloud-job-{job_id}-") as tmp:
            target = Path(tmp) / "manifest.json"
            client.download(core.get_job_artifact(client.account_id, job_id, "manifest.json"), target)
            adapter_type, sources = read_manifest_sources(target, where)
        found = match_sources(tables, sources, adapter_type, namespace)
    except (DbtCloudError, DbtArtifactError, UnsupportedWarehouseError) as error:
        return SelectionPlan(fallback=True, reason=f"{where} cannot be read: {error}")
    names = ", ".join(table.uri for table in tables)
    if not found.sources:
        unread = "; ".join(f"source {s.source_name}.{s.name} has no models or tests reading it" for s in found.unread)
        return SelectionPlan(
            skip=True,
            reason=f"nothing in the dbt project reads the changed tables ({names})" + (f": {unread}" if unread else ""),
            notes=found.notes,
        )
    selectors = [source_selector(s.source_name, s.name) for s in found.sources]
    new_steps, changed = select_steps(steps, selectors)
    if not changed:
        raise InvalidSelectError(
            f"dbt Cloud job {job_id} has no step that selects nodes (dbt build, run, test, seed or snapshot): "
            f"its steps are {list(steps)}. select_from_load has nothing to narrow."
        )
    return SelectionPlan(
        steps=new_steps,
        selectors=selectors,
        reason=f"the load changed {names}; read by {', '.join(s.unique_id for s in found.sources)}",
        notes=found.notes,
    )
