"""The emulator's example dbt project: dlt-loaded sources, staging and mart models, a seed, a snapshot, tests.

It renders a ``manifest.json`` (schema v12) and, for a dbt command with ``--select``/``--exclude``, a
``run_results.json`` (schema v6) that lists only the nodes that command would build, so a selective run really
builds fewer nodes. The sources are the tables the example DAG's dlt pipeline loads into DuckDB (dataset
``raw``): ``raw.orders`` and ``raw.customers``; ``raw.payments`` is loaded by another tool.

Selection follows dbt for the simple forms: plain names and globs (``stg_*``), ``source:raw``,
``source:raw.orders``, ``tag:``, ``resource_type:``, ``path:``, ``fqn:``; ``+`` before or after for ancestors or
descendants (``N+`` for a depth); space for union, comma for intersection; ``--exclude``. Build selects tests
whose parents are selected (dbt's default "eager" indirect selection). A method dbt does not know raises
:class:`SelectionError` with dbt's wording.

Routes call :func:`example_project` once, then ``project.manifest(...)`` and
``project.run_results(command, ...)`` for the step's command.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Json = dict[str, Any]

MANIFEST_SCHEMA = "https://schemas.getdbt.com/dbt/manifest/v12.json"
RUN_RESULTS_SCHEMA = "https://schemas.getdbt.com/dbt/run-results/v6.json"
DBT_VERSION = "1.9.0"
ADAPTER = "duckdb"
EXECUTABLE = ("model", "seed", "snapshot", "test")
COMMAND_TYPES = {
    "build": ("model", "seed", "snapshot", "test"),
    "run": ("model",),
    "test": ("test",),
    "seed": ("seed",),
    "snapshot": ("snapshot",),
}
_METHODS = ("source", "tag", "resource_type", "path", "fqn", "package", "config.materialized")


class SelectionError(ValueError):
    """A selection dbt would reject (dbt's own wording where it has one)."""


@dataclass(frozen=True)
class Node:
    """One node of the project: what the manifest and run_results say about it."""

    resource_type: str  # model, seed, snapshot, test, source
    name: str
    parents: tuple[str, ...] = ()  # unique_ids
    schema: str = ""
    tags: tuple[str, ...] = ()
    materialized: str = "view"
    rows: int = 0
    path: str = ""
    source_name: str = ""  # sources
    test: tuple[str, str] = ("", "")  # tests: (generic test name, column)
    description: str = ""


@dataclass
class Project:
    """A dbt project as the emulator serves it; build one with :func:`example_project`."""

    name: str
    database: str
    nodes: dict[str, Node] = field(default_factory=dict)

    # --- structure --------------------------------------------------------------------------------------------

    def children(self) -> dict[str, list[str]]:
        """child_map: every unique_id to the nodes that read it."""
        out: dict[str, list[str]] = {uid: [] for uid in self.nodes}
        for uid, node in self.nodes.items():
            for parent in node.parents:
                out[parent].append(uid)
        return {uid: sorted(kids) for uid, kids in out.items()}

    def order(self, selected: Iterable[str]) -> list[str]:
        """``selected`` in an order dbt could run them (parents first, then by unique_id)."""
        chosen = set(selected)
        done: list[str] = []
        seen: set[str] = set()
        while len(done) < len(chosen):
            ready = sorted(
                uid for uid in chosen - seen if all(p in seen or p not in chosen for p in self.nodes[uid].parents)
            )
            if not ready:  # pragma: no cover - the example project has no cycles
                raise SelectionError("dependency cycle")
            done += ready
            seen.update(ready)
        return done

    def _walk(self, start: str, edges: Mapping[str, Sequence[str]], depth: int | None) -> set[str]:
        found: set[str] = set()
        frontier, level = [start], 0
        while frontier and (depth is None or level < depth):
            frontier = [n for uid in frontier for n in edges.get(uid, ()) if n not in found]
            found.update(frontier)
            level += 1
        return found

    # --- selection --------------------------------------------------------------------------------------------

    def _match(self, method: str, value: str) -> set[str]:
        out: set[str] = set()
        for uid, node in self.nodes.items():
            fqn = self._fqn(uid)
            if method == "source":
                if (
                    node.resource_type == "source" and fnmatch.fnmatchcase(f"{node.source_name}.{node.name}", value)
                ) or (node.resource_type == "source" and fnmatch.fnmatchcase(node.source_name, value)):
                    out.add(uid)
            elif method == "tag":
                if any(fnmatch.fnmatchcase(tag, value) for tag in node.tags):
                    out.add(uid)
            elif method == "resource_type":
                if node.resource_type == value:
                    out.add(uid)
            elif method == "path":
                if node.path == value or node.path.startswith(value.rstrip("/") + "/"):
                    out.add(uid)
            elif method == "config.materialized":
                if node.resource_type != "source" and node.materialized == value:
                    out.add(uid)
            elif method == "package":
                if value == self.name:
                    out.add(uid)
            elif (
                node.resource_type != "source"
                and (  # fqn, the default method for plain names
                    fnmatch.fnmatchcase(node.name, value)
                    or fnmatch.fnmatchcase(".".join(fqn), value)
                    or any(fnmatch.fnmatchcase(".".join(fqn[: i + 1]), value) for i in range(1, len(fqn)))
                )
            ):
                out.add(uid)
        return out

    def _criterion(self, text: str) -> set[str]:
        found = re.fullmatch(r"(?:(\d*)(\+))?([^+]+?)(?:(\+)(\d*))?", text)
        if not found or not found.group(3):
            raise SelectionError(f"Invalid selector spec {text!r}")
        up_depth, up, body, down, down_depth = found.groups()
        method, value = ("fqn", body)
        if ":" in body:
            method, _, value = body.partition(":")
            if method not in _METHODS:
                raise SelectionError(f"'{method}' is not a valid method name")
        chosen = self._match(method, value)
        parents = {uid: self.nodes[uid].parents for uid in self.nodes}
        result = set(chosen)
        for uid in chosen:
            if up:
                result |= self._walk(uid, parents, int(up_depth) if up_depth else None)
            if down:
                result |= self._walk(uid, self.children(), int(down_depth) if down_depth else None)
        return result

    def select(self, select: str | Sequence[str] | None = None, exclude: str | Sequence[str] | None = None) -> set[str]:
        """unique_ids a selection names (sources included), before indirect test selection."""

        def spec(value: str | Sequence[str] | None) -> list[str]:
            return value.split() if isinstance(value, str) else [s for part in value or () for s in part.split()]

        def term_set(term: str) -> set[str]:  # a term is an intersection of comma-separated criteria
            found: set[str] | None = None
            for part in filter(None, term.split(",")):
                matched = self._criterion(part)
                found = matched if found is None else found & matched
            return found or set()

        terms = spec(select)
        chosen: set[str] = set(self.nodes) if not terms else set()
        for term in terms:  # terms are a union
            chosen |= term_set(term)
        for term in spec(exclude):
            chosen -= term_set(term)
        return chosen

    def executed(
        self, which: str, select: str | Sequence[str] | None = None, exclude: str | Sequence[str] | None = None
    ) -> list[str]:
        """The nodes ``dbt <which>`` builds for the selection, in run order (tests selected eagerly)."""
        if which not in COMMAND_TYPES:
            raise SelectionError(f"dbt {which} does not build nodes; expected one of {sorted(COMMAND_TYPES)}")
        chosen = self.select(select, exclude)
        excluded = self.select(None, exclude) ^ set(self.nodes) if exclude else set()
        if "test" in COMMAND_TYPES[which]:  # eager: a test runs when any parent it tests is selected
            for uid, node in self.nodes.items():
                if node.resource_type == "test" and set(node.parents) & chosen and uid not in excluded:
                    chosen.add(uid)
        return self.order(uid for uid in chosen if self.nodes[uid].resource_type in COMMAND_TYPES[which])

    # --- artifacts ----------------------------------------------------------------------------------------------

    def _fqn(self, uid: str) -> list[str]:
        node = self.nodes[uid]
        if node.resource_type == "source":
            return [self.name, "sources", node.source_name, node.name]
        folders = node.path.rsplit("/", 1)[0].split("/")[1:] if "/" in node.path else []
        return [self.name, *folders, node.name]

    def relation_name(self, uid: str) -> str | None:
        node = self.nodes[uid]
        if node.resource_type == "test":
            return None
        return f'"{self.database}"."{node.schema}"."{node.name}"'

    def _node_json(self, uid: str) -> Json:
        node = self.nodes[uid]
        sql = f"select * from {{{{ ref('{node.parents[0].rsplit('.', 1)[-1]}') }}}}" if node.parents else ""
        base: Json = {
            "database": self.database,
            "schema": node.schema,
            "name": node.name,
            "resource_type": node.resource_type,
            "package_name": self.name,
            "path": node.path.split("/", 1)[-1],
            "original_file_path": node.path,
            "unique_id": uid,
            "fqn": self._fqn(uid),
            "description": node.description,
            "tags": list(node.tags),
            "meta": {},
            "columns": {},
            "relation_name": self.relation_name(uid),
        }
        if node.resource_type == "source":
            return base | {
                "source_name": node.source_name,
                "source_description": "Loaded by dlt",
                "loader": "dlt",
                "identifier": node.name,
                "quoting": {},
                "loaded_at_field": "_dlt_load_id",
                "freshness": {"warn_after": {"count": 1, "period": "day"}, "error_after": {}, "filter": None},
                "external": None,
                "source_meta": {},
                "config": {"enabled": True},
                "patch_path": None,
                "unrendered_config": {},
                "created_at": 1700000000.0,
            }
        checksum = hashlib.sha256(f"{uid}:{sql}".encode()).hexdigest()
        parents = [p for p in node.parents]
        out = base | {
            "alias": node.name,
            "checksum": {"name": "sha256", "checksum": checksum},
            "config": {"enabled": True, "materialized": node.materialized, "tags": list(node.tags)},
            "build_path": None,
            "unrendered_config": {},
            "created_at": 1700000000.0,
            "config_call_dict": {},
            "raw_code": sql,
            "language": "sql",
            "refs": [
                {"name": p.rsplit(".", 1)[-1], "package": None, "version": None}
                for p in parents
                if not p.startswith("source.")
            ],
            "sources": [[self.nodes[p].source_name, self.nodes[p].name] for p in parents if p.startswith("source.")],
            "metrics": [],
            "depends_on": {"macros": [], "nodes": parents},
            "compiled_path": f"target/compiled/{self.name}/{node.path}",
            "compiled": True,
            "compiled_code": sql.replace("{{ ref('", f'"{self.database}"."{node.schema}"."').replace("') }}", '"'),
            "extra_ctes_injected": True,
            "extra_ctes": [],
            "contract": {"enforced": False, "alias_types": True, "checksum": None},
        }
        if node.resource_type == "test":
            test_name, column = node.test
            out["test_metadata"] = {"name": test_name, "kwargs": {"column_name": column}, "namespace": None}
            out["column_name"] = column
            out["attached_node"] = parents[0] if parents else None
            out["config"] |= {"severity": "ERROR", "materialized": "test"}
            out["alias"] = node.name
        if node.resource_type == "snapshot":
            out["config"] |= {"strategy": "check", "unique_key": "customer_id", "check_cols": "all"}
        if node.resource_type == "seed":  # seeds are loaded, not compiled
            for key in ("language", "refs", "sources", "metrics", "compiled_path", "compiled", "compiled_code"):
                out.pop(key)
            for key in ("extra_ctes_injected", "extra_ctes", "contract"):
                out.pop(key)
            out["depends_on"] = {"macros": []}
            out["root_path"] = None
        return out

    def manifest(self, *, generated_at: str | None = None, invocation_id: str | None = None) -> Json:
        """The project's ``manifest.json`` (schema v12)."""
        metadata: Json = {
            "dbt_schema_version": MANIFEST_SCHEMA,
            "dbt_version": DBT_VERSION,
            "generated_at": generated_at,
            "invocation_id": invocation_id,
            "env": {},
            "project_name": self.name,
            "project_id": hashlib.md5(self.name.encode()).hexdigest(),
            "user_id": None,
            "send_anonymous_usage_stats": False,
            "adapter_type": ADAPTER,
        }
        nodes = {uid: self._node_json(uid) for uid, n in self.nodes.items() if n.resource_type != "source"}
        sources = {uid: self._node_json(uid) for uid, n in self.nodes.items() if n.resource_type == "source"}
        empty: Json = {}
        return {
            "metadata": metadata,
            "nodes": nodes,
            "sources": sources,
            "macros": empty,
            "docs": {},
            "exposures": {},
            "metrics": {},
            "groups": {},
            "selectors": {},
            "disabled": {},
            "parent_map": {uid: list(n.parents) for uid, n in self.nodes.items()},
            "child_map": self.children(),
            "group_map": {},
            "saved_queries": {},
            "semantic_models": {},
            "unit_tests": {},
        }

    def run_results(
        self,
        command: str,
        *,
        generated_at: str | None = None,
        invocation_id: str | None = None,
        failing: Iterable[str] = (),
    ) -> Json:
        """``run_results.json`` (schema v6) of one dbt command, e.g. ``dbt build --select source:raw.orders+``.

        Nodes named in ``failing`` (names or unique_ids) end in error; the nodes downstream of them are skipped.
        """
        which, select, exclude = parse_dbt_command(command)
        run = self.executed(which, select, exclude)
        failed = {uid for uid in run if uid in set(failing) or self.nodes[uid].name in set(failing)}
        broken: set[str] = set()
        results: list[Json] = []
        for uid in run:
            node = self.nodes[uid]
            upstream_broken = any(p in failed or p in broken for p in node.parents)
            if upstream_broken:
                broken.add(uid)
            status = "skipped" if upstream_broken else ("error" if uid in failed else "success")
            if node.resource_type == "test" and status == "success":
                status = "pass"
            if node.resource_type == "test" and uid in failed:
                status = "fail"
            took = 0.0 if status == "skipped" else round(0.05 + (len(uid) % 7) / 20, 2)
            timing = [
                {"name": s, "started_at": generated_at, "completed_at": generated_at} for s in ("compile", "execute")
            ]
            rows = node.rows if node.resource_type != "test" else 0
            message = {
                "success": f"OK {'INSERT ' + str(rows) if node.resource_type == 'seed' else 'CREATE ' + node.materialized.upper()}",
                "pass": None,
                "error": f"Runtime Error in {node.resource_type} {node.name} ({node.path})\n  division by zero",
                "fail": "Got 1 result, configured to fail if != 0",
                "skipped": None,
            }[status]
            results.append(
                {
                    "status": status,
                    "timing": [] if status == "skipped" else timing,
                    "thread_id": "Thread-1",
                    "execution_time": took,
                    "adapter_response": {}
                    if status == "skipped"
                    else {"_message": "OK", "code": "OK", "rows_affected": rows},
                    "message": message,
                    "failures": (1 if status == "fail" else 0) if node.resource_type == "test" else None,
                    "unique_id": uid,
                    "compiled": status != "skipped",
                    "compiled_code": self._node_json(uid).get("compiled_code"),
                    "relation_name": self.relation_name(uid),
                    "batch_results": None,
                }
            )
        metadata: Json = {
            "dbt_schema_version": RUN_RESULTS_SCHEMA,
            "dbt_version": DBT_VERSION,
            "generated_at": generated_at,
            "invocation_id": invocation_id,
            "env": {},
        }
        args: Json = {"which": which, "invocation_command": command, "select": select, "exclude": exclude}
        elapsed = round(sum(float(r["execution_time"]) for r in results), 2)
        return {"metadata": metadata, "results": results, "elapsed_time": elapsed, "args": args}


def parse_dbt_command(command: str) -> tuple[str, list[str], list[str]]:
    """(subcommand, select terms, exclude terms) of ``dbt <sub> [--select|-s|-m|--models ...] [--exclude ...]``."""
    words = shlex.split(command)
    if words and words[0] == "dbt":
        words = words[1:]
    if not words:
        raise SelectionError(f"not a dbt command: {command!r}")
    which, select, exclude = words[0], list[str](), list[str]()
    target: list[str] | None = None
    for word in words[1:]:
        if word in ("--select", "-s", "-m", "--models"):
            target = select
        elif word in ("--exclude",):
            target = exclude
        elif word.startswith("-"):
            target = None  # another flag; its value (if any) is ignored
        elif target is not None:
            target.append(word)
    return which, select, exclude


def example_project(
    *, database: str = "warehouse", schema: str = "analytics", source_schema: str = "raw", name: str = "analytics"
) -> Project:
    """The example project: sources ``raw.orders``, ``raw.customers`` (dlt) and ``raw.payments``, and below them
    a seed, staging and mart models, a snapshot and tests. ``database`` is the DuckDB catalog (the file's stem)."""
    p = name

    def src(table: str) -> tuple[str, Node]:
        return f"source.{p}.{source_schema}.{table}", Node(
            "source",
            table,
            schema=source_schema,
            source_name=source_schema,
            path="models/staging/sources.yml",
            description=f"{table}, loaded by dlt",
        )

    def model(kind: str, node: str, parents: Sequence[str], folder: str, rows: int, **kw: Any) -> tuple[str, Node]:
        return f"{kind}.{p}.{node}", Node(
            kind,
            node,
            tuple(parents),
            schema=schema,
            path=f"{folder}/{node}.{'csv' if kind == 'seed' else 'sql'}",
            rows=rows,
            **kw,
        )

    def test(test_name: str, node: str, column: str, parents: Sequence[str]) -> tuple[str, Node]:
        name_ = (
            f"{test_name}_{node}_{column}"
            if not node.startswith("source_")
            else f"source_{test_name}_{node[7:]}_{column}"
        )
        return f"test.{p}.{name_}.{hashlib.md5(name_.encode()).hexdigest()[:10]}", Node(
            "test",
            name_,
            tuple(parents),
            schema=f"{schema}_dbt_test__audit",
            path=f"models/{name_}.sql",
            test=(test_name, column),
            materialized="test",
        )

    orders, customers, payments = (f"source.{p}.{source_schema}.{t}" for t in ("orders", "customers", "payments"))
    seed = f"seed.{p}.country_codes"
    stg_o, stg_c, stg_p = (f"model.{p}.stg_{t}" for t in ("orders", "customers", "payments"))
    fct, dim = f"model.{p}.fct_orders", f"model.{p}.dim_customers"
    items = [
        src("orders"),
        src("customers"),
        src("payments"),
        model("seed", "country_codes", [], "seeds", 5, materialized="seed"),
        model("model", "stg_orders", [orders], "models/staging", 4, tags=("staging", "orders")),
        model("model", "stg_customers", [customers], "models/staging", 3, tags=("staging",)),
        model("model", "stg_payments", [payments], "models/staging", 4, tags=("staging", "payments")),
        model("model", "fct_orders", [stg_o, stg_p], "models/marts", 4, tags=("marts", "orders"), materialized="table"),
        model("model", "dim_customers", [stg_c, stg_o, seed], "models/marts", 3, tags=("marts",), materialized="table"),
        model("snapshot", "customers_snapshot", [customers], "snapshots", 3, materialized="snapshot"),
        test("not_null", "source_raw_orders", "order_id", [orders]),
        test("unique", "stg_orders", "order_id", [stg_o]),
        test("not_null", "stg_orders", "order_id", [stg_o]),
        test("unique", "stg_customers", "customer_id", [stg_c]),
        test("not_null", "fct_orders", "amount", [fct]),
        test("relationships", "fct_orders", "customer_id", [fct, dim]),
        test("unique", "dim_customers", "customer_id", [dim]),
    ]
    return Project(name, database, dict(items))
