"""The Grafana dashboards in `dashboards/*.json`, read as plain definitions, and their SQL
rendered the way Grafana's ClickHouse data source plugin renders it.

One definition, two renderers: Grafana reads the JSON files through its provisioning; the
built-in page (and the tests) read the same files with `load_dashboards` and expand each
panel's SQL with `render_sql` before running it on the Store.

The SQL of the dashboards uses only these macros and variables, all of which `render_sql`
expands exactly as the plugin (grafana/clickhouse-datasource, pkg/macros/macros.go) and
Grafana's variable interpolation do:

* ``$__timeFilter(col)`` -> ``col >= toDateTime(<from>) AND col <= toDateTime(<to>)``
  (Unix seconds);
* ``$__fromTime`` / ``$__toTime`` -> ``toDateTime(<from>)`` / ``toDateTime(<to>)``;
* ``$__interval_s`` -> the panel's interval in whole seconds (at least 1);
* ``${name:singlequote}`` (and ``${name:sqlstring}``) -> the variable's values as quoted
  string literals separated by commas: ``'acme','zenith'``; used as ``tenant IN (...)``.

A variable's own `query` uses no variables, so it can be run first to list its values.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, Literal

ENV_DIR = "BROKERSTREAM_DASHBOARDS"
# the `dashboards` room is package data (importlib.resources: a wheel install has it too)
DASHBOARDS_DIR = Path(os.environ.get(ENV_DIR) or str(resources.files("dashboards")))

CLICKHOUSE_TYPE = "grafana-clickhouse-datasource"
PROMETHEUS_TYPE = "prometheus"
CLICKHOUSE_UID = "brokerstream-clickhouse"
PROMETHEUS_UID = "brokerstream-prometheus"
ALL_VALUE = "$__all"

DatasourceType = Literal["clickhouse", "prometheus"]
Format = Literal["table", "time_series"]


@dataclass(frozen=True)
class Variable:
    """A dashboard variable (Grafana `templating.list` entry)."""

    name: str
    label: str = ""
    type: str = "query"  # query | custom | textbox | constant | datasource | interval
    query: str = ""  # SQL (ClickHouse) or Grafana's label_values() helper (Prometheus) listing the values
    datasource_type: DatasourceType | None = "clickhouse"
    multi: bool = False
    include_all: bool = False
    current: tuple[str, ...] = ()  # the default selection; ("$__all",) = all
    description: str = ""


@dataclass(frozen=True)
class Panel:
    """One panel with its single query: SQL for ClickHouse panels, PromQL for Prometheus (which
    only Grafana runs: the built-in page has its own definitions of those, engine_health.py)."""

    id: int
    title: str
    type: str  # timeseries | table | stat | barchart | bargauge | piechart
    datasource_type: DatasourceType
    sql: str
    format: Format
    grid: tuple[int, int, int, int]  # x, y, w, h (Grafana gridPos, 24 columns wide)
    unit: str = ""
    description: str = ""
    legend: str = ""  # Prometheus: the target's legendFormat (`{{topic}}`)


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    panels: list[Panel]
    variables: list[Variable]
    refresh: str = ""
    time_from: str = "now-6h"
    time_to: str = "now"
    tags: tuple[str, ...] = ()
    description: str = ""
    path: Path | None = field(default=None, compare=False)


def _datasource_type(ds: Any, default: DatasourceType | None) -> DatasourceType | None:
    kind = ds.get("type") if isinstance(ds, dict) else None
    if kind == CLICKHOUSE_TYPE:
        return "clickhouse"
    if kind == PROMETHEUS_TYPE:
        return "prometheus"
    return default


def _as_list(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    return (str(value),)


def _variable(doc: dict[str, Any]) -> Variable:
    query = doc.get("query", "")
    if isinstance(query, dict):  # newer Grafana: {"query": "...", "refId": ...}
        query = query.get("query") or query.get("rawSql") or ""
    current = doc.get("current") or {}
    return Variable(
        name=str(doc["name"]),
        label=str(doc.get("label") or ""),
        type=str(doc.get("type", "query")),
        query=str(query or ""),
        datasource_type=_datasource_type(doc.get("datasource"), None),
        multi=bool(doc.get("multi", False)),
        include_all=bool(doc.get("includeAll", False)),
        current=_as_list(current.get("value")) if isinstance(current, dict) else (),
        description=str(doc.get("description") or ""),
    )


def _panel(doc: dict[str, Any]) -> Panel | None:
    targets = doc.get("targets") or []
    if doc.get("type") == "row" or not targets:
        return None
    target = targets[0]
    ds_type = _datasource_type(target.get("datasource"), None) or _datasource_type(
        doc.get("datasource"), None)
    if ds_type is None:
        raise ValueError(f"panel {doc.get('id')} ({doc.get('title')!r}): unknown data source")
    if ds_type == "clickhouse":
        sql = str(target.get("rawSql") or "")
        fmt: Format = "time_series" if target.get("format") == 0 else "table"
        legend = ""
    else:
        sql = str(target.get("expr") or "")
        fmt = "table" if target.get("format") == "table" or target.get("instant") else "time_series"
        legend = str(target.get("legendFormat") or "")
    grid = doc.get("gridPos") or {}
    unit = ((doc.get("fieldConfig") or {}).get("defaults") or {}).get("unit") or ""
    return Panel(
        id=int(doc["id"]),
        title=str(doc.get("title") or ""),
        type=str(doc.get("type") or ""),
        datasource_type=ds_type,
        sql=sql,
        format=fmt,
        grid=(int(grid.get("x", 0)), int(grid.get("y", 0)), int(grid.get("w", 12)),
              int(grid.get("h", 8))),
        unit=str(unit),
        description=str(doc.get("description") or ""),
        legend=legend,
    )


def _panels(docs: list[dict[str, Any]]) -> list[Panel]:
    out: list[Panel] = []
    for doc in docs:
        panel = _panel(doc)
        if panel is not None:
            out.append(panel)
        out.extend(_panels(doc.get("panels") or []))  # panels inside a collapsed row
    return out


_DS_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def _resolve_datasources(node: Any, plugins: dict[str, str]) -> None:
    """Give every `{"uid": "${datasource}"}` reference the plugin type of its data-source
    variable (scripts/grafana_ready.py writes them with it; a hand-written one may not have
    it). The page has one store and one metrics source, so the type is all it needs."""
    if isinstance(node, list):
        for item in node:
            _resolve_datasources(item, plugins)
    elif isinstance(node, dict):
        ds = node.get("datasource")
        if isinstance(ds, dict) and not ds.get("type"):
            m = _DS_VARIABLE.fullmatch(str(ds.get("uid") or ""))
            if m and (m.group(1) or m.group(2)) in plugins:
                node["datasource"] = {**ds, "type": plugins[m.group(1) or m.group(2)]}
        for key in ("panels", "targets"):
            _resolve_datasources(node.get(key), plugins)


def load_dashboard(path: Path) -> Dashboard:
    doc = json.loads(path.read_text(encoding="utf-8"))
    # Grafana's data-source pickers (`datasource`, `prometheus`): resolved here, not shown
    listed = (doc.get("templating") or {}).get("list", [])
    plugins = {str(v["name"]): str(v.get("query") or "") for v in listed if v.get("type") == "datasource"}
    _resolve_datasources(doc.get("panels"), plugins)
    _resolve_datasources(listed, plugins)
    time = doc.get("time") or {}
    return Dashboard(
        uid=str(doc["uid"]),
        title=str(doc.get("title") or doc["uid"]),
        panels=_panels(doc.get("panels") or []),
        variables=[_variable(v) for v in listed if v.get("type") != "datasource"],
        refresh=str(doc.get("refresh") or ""),
        time_from=str(time.get("from", "now-6h")),
        time_to=str(time.get("to", "now")),
        tags=tuple(str(t) for t in doc.get("tags") or ()),
        description=str(doc.get("description") or ""),
        path=path,
    )


def load_dashboards(directory: Path | str | None = None) -> list[Dashboard]:
    """Every dashboard (`*.json`) in `directory` (default: $BROKERSTREAM_DASHBOARDS, else the
    repository's dashboards/), in file-name order."""
    if directory is None:
        directory = os.environ.get(ENV_DIR) or DASHBOARDS_DIR
    return [load_dashboard(p) for p in sorted(Path(directory).glob("*.json"))]


# -- rendering ------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"\$__timeFilter\s*\("
    r"|\$__fromTime(?!\w)|\$__toTime(?!\w)|\$__interval_s(?!\w)"
    r"|\$\{(?P<braced>[A-Za-z_]\w*)(?::(?P<fmt>[A-Za-z_]\w*))?\}"
    r"|\$(?P<bare>[A-Za-z_]\w*)"
)
_QUOTING_FORMATS = ("singlequote", "sqlstring")


def quote(value: str) -> str:
    """A ClickHouse string literal: backslashes and single quotes escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _epoch_s(t: datetime) -> int:
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return int(t.timestamp())


def _closing_paren(sql: str, start: int) -> int:
    """Index of the parenthesis closing the one just before `start` (quotes respected)."""
    depth = 1
    i = start
    quote_char = ""
    while i < len(sql):
        c = sql[i]
        if quote_char:
            if c == "\\":
                i += 1
            elif c == quote_char:
                quote_char = ""
        elif c in ("'", '"', "`"):
            quote_char = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError(f"$__timeFilter( without its closing parenthesis: {sql[start - 14:start + 40]!r}")


def render_sql(sql: str, *, time_from: datetime, time_to: datetime,
               variables: dict[str, list[str]], interval_s: int) -> str:
    """`sql` with the dashboards' macros and variables expanded as Grafana's ClickHouse plugin
    does (see the module docstring). `variables` maps each variable name to its chosen values,
    `$__all` already resolved to the variable's values by the caller; an empty list renders
    as NULL (so `tenant IN (NULL)` matches nothing). Anything else that looks like a macro or
    a variable (`$__other`, `${x}` without a quoting format, `$x`) raises ValueError: nothing
    reaches the database unexpanded or unquoted."""
    start_s, end_s = _epoch_s(time_from), _epoch_s(time_to)
    interval = str(max(int(interval_s), 1))
    out: list[str] = []
    pos = 0
    while True:
        m = _TOKEN.search(sql, pos)
        if m is None:
            out.append(sql[pos:])
            break
        out.append(sql[pos:m.start()])
        token = m.group(0)
        if token.startswith("$__timeFilter"):
            end = _closing_paren(sql, m.end())
            column = render_sql(sql[m.end():end], time_from=time_from, time_to=time_to,
                                variables=variables, interval_s=interval_s).strip()
            if not column:
                raise ValueError("$__timeFilter() needs a column")
            out.append(f"{column} >= toDateTime({start_s}) AND {column} <= toDateTime({end_s})")
            pos = end + 1
            continue
        pos = m.end()
        if token == "$__fromTime":
            out.append(f"toDateTime({start_s})")
        elif token == "$__toTime":
            out.append(f"toDateTime({end_s})")
        elif token == "$__interval_s":
            out.append(interval)
        elif m.group("braced"):
            name, fmt = m.group("braced"), m.group("fmt")
            if fmt not in _QUOTING_FORMATS:
                raise ValueError(f"{token}: variables must be written ${{{name}:singlequote}}")
            if name not in variables:
                raise ValueError(f"{token}: no value given for variable {name!r}")
            values = variables[name]
            if ALL_VALUE in values:
                raise ValueError(f"{token}: resolve {ALL_VALUE} to the variable's values first")
            out.append(",".join(quote(str(v)) for v in values) if values else "NULL")
        else:
            raise ValueError(f"unsupported macro or variable {token!r}")
    return "".join(out)
