#!/usr/bin/env python3
"""Rewrite the Grafana dashboards (`dashboards/*.json`) into the form Grafana 11 loads without
migrating anything, and write their import form (`deploy/grafana-import/*.json`).

Idempotent: run it after adding or merging panels; a second run changes nothing.

    .venv/bin/python scripts/grafana_ready.py            # rewrite in place + import forms
    .venv/bin/python scripts/grafana_ready.py --check    # exit 1 if a file is not ready

The provisioned form (dashboards/*.json, what deploy/compose.yaml provisions and what the
built-in page reads):
* data-source variables `datasource` (ClickHouse) and, where a panel uses Prometheus,
  `prometheus`, first in `templating.list`, their default the provisioned data source
  (uid `brokerstream-clickhouse` / `brokerstream-prometheus`, dashboards/provisioning/);
* every panel, query and variable data source is `${datasource}` / `${prometheus}`, so one
  dropdown switches every panel;
* `pluginVersion` on every panel (the Grafana version: core panels) and on every ClickHouse
  query (the plugin version: without it the plugin migrates the query as a v3 one on open),
  each ClickHouse query with the fields that plugin version reads: `editorType`, `format`,
  `queryType`, `rawSql`, `refId`;
* panel ids kept where they are unique (dashboards/expectations.yaml and links use them);
  a new panel without an id, or with a taken one, gets the next free id;
* `__requires`: the Grafana, data source and panel plugins the dashboard needs.

The import form (deploy/grafana-import/, for Dashboards > New > Import into an existing
Grafana) is the same plus `__inputs`: Grafana asks for a ClickHouse (and Prometheus) data source
at import and makes it the variables' default. It lives outside dashboards/ because Grafana's
file provisioning would load it too (same uids) and `${DS_…}` means nothing there.

Standard library only: it runs before the virtualenv exists.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path
from typing import Any, NamedTuple

GRAFANA_VERSION = "11.6.1"  # deploy/compose.yaml runs grafana/grafana:<this>
CLICKHOUSE_PLUGIN_VERSION = "4.20.0"  # GF_INSTALL_PLUGINS pins it (needs Grafana >= 11.6.0)
PROMETHEUS_PLUGIN_VERSION = "1.0.0"  # core plugin: Grafana's own exports say 1.0.0

REPO = Path(__file__).resolve().parent.parent
DASHBOARDS = REPO / "dashboards"
IMPORT_DIR = REPO / "deploy" / "grafana-import"


class Source(NamedTuple):
    """One data source the dashboards use: its plugin, variable, import input and the
    provisioned instance (dashboards/provisioning/datasources/brokerstream.yaml)."""

    type: str
    variable: str
    input: str
    uid: str
    name: str
    plugin_name: str
    plugin_version: str


SOURCES = (
    Source("grafana-clickhouse-datasource", "datasource", "DS_CLICKHOUSE", "brokerstream-clickhouse",
           "brokerstream ClickHouse", "ClickHouse", CLICKHOUSE_PLUGIN_VERSION),
    Source("prometheus", "prometheus", "DS_PROMETHEUS", "brokerstream-prometheus",
           "brokerstream Prometheus", "Prometheus", PROMETHEUS_PLUGIN_VERSION),
)
BY_TYPE = {s.type: s for s in SOURCES}
PANEL_NAMES = {"timeseries": "Time series", "table": "Table", "stat": "Stat", "barchart": "Bar chart",
               "bargauge": "Bar gauge", "piechart": "Pie chart", "gauge": "Gauge", "text": "Text"}
# the ClickHouse plugin's `format` (grafana/sqlds) and the queryType it pairs with
QUERY_TYPES = {0: "timeseries", 1: "table", 2: "logs", 3: "traces"}
_VARIABLE_REF = re.compile(r"^\$\{(\w+)\}$|^\$(\w+)$|^\[\[(\w+)\]\]$")


class NotReady(Exception):
    """A dashboard this script cannot make ready (says which and why)."""


def _panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for p in panels:
        out.append(p)
        out.extend(_panels(p.get("panels") or []))  # a collapsed row holds its panels
    return out


def _source_of(ref: Any, where: str) -> Source | None:
    """Which of SOURCES a data source reference means (None: Grafana's own, e.g. annotations)."""
    if ref is None:
        return None
    if isinstance(ref, str):  # pre-8.3 form: the data source's name or a variable
        ref = {"uid": ref}
    if not isinstance(ref, dict):
        raise NotReady(f"{where}: data source {ref!r}")
    kind, uid = ref.get("type"), str(ref.get("uid") or "")
    if kind in BY_TYPE:
        return BY_TYPE[kind]
    if kind in ("grafana", "datasource", "dashboard") or uid.startswith("-- "):
        return None  # built-in (annotations), mixed, or dashboard: not ours to rewrite
    m = _VARIABLE_REF.match(uid)
    name = next((g for g in m.groups() if g), "") if m else ""
    for s in SOURCES:
        if uid in (s.uid, s.name) or name in (s.variable, s.input):
            return s
    raise NotReady(f"{where}: unknown data source {ref!r}")


def _point(holder: dict[str, Any], key: str, where: str) -> Source | None:
    source = _source_of(holder.get(key), where)
    if source is not None:
        holder[key] = {"type": source.type, "uid": f"${{{source.variable}}}"}
    return source


def _variable(source: Source) -> dict[str, Any]:
    return {
        "name": source.variable,
        "label": source.plugin_name,
        "type": "datasource",
        "query": source.type,
        "current": {"selected": False, "text": source.name, "value": source.uid},
        "hide": 0,
        "includeAll": False,
        "multi": False,
        "options": [],
        "refresh": 1,
        "regex": "",
        "skipUrlSync": False,
        "description": f"The {source.plugin_name} data source every panel reads",
    }


def ready(doc: dict[str, Any], name: str = "dashboard") -> dict[str, Any]:
    """The provisioned form of one dashboard (a new dict; `doc` is not changed)."""
    doc = copy.deepcopy(doc)
    used: dict[str, Source] = {}
    panels = _panels(doc.get("panels") or [])

    taken: set[int] = set()
    needs_id: list[dict[str, Any]] = []
    for p in panels:
        pid = p.get("id")
        if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 and pid not in taken:
            taken.add(pid)
        else:
            needs_id.append(p)
    next_id = max(taken, default=0) + 1
    for p in needs_id:
        p["id"] = next_id
        next_id += 1

    for p in panels:
        where = f"{name} panel {p['id']} ({p.get('title', '')})"
        if p.get("type") == "row":
            continue
        targets = p.get("targets") or []
        if p.get("datasource") is None and targets:
            p["datasource"] = copy.deepcopy(targets[0].get("datasource"))
        panel_source = _point(p, "datasource", where)
        for i, t in enumerate(targets):
            t.setdefault("refId", chr(ord("A") + i))
            if t.get("datasource") is None and panel_source is not None:
                t["datasource"] = dict(p["datasource"])
            source = _point(t, "datasource", where)
            if source is None:
                continue
            used[source.type] = source
            if source.type == "grafana-clickhouse-datasource":
                fmt = t.get("format")
                if fmt not in QUERY_TYPES:
                    fmt = 0 if p.get("type") == "timeseries" else 1
                t["format"] = fmt
                t["queryType"] = QUERY_TYPES[fmt]
                t.setdefault("editorType", "sql")
                t.setdefault("rawSql", "")
                t["pluginVersion"] = CLICKHOUSE_PLUGIN_VERSION
        if panel_source is not None:
            used[panel_source.type] = panel_source
        p["pluginVersion"] = GRAFANA_VERSION

    templating = doc.setdefault("templating", {}).setdefault("list", [])
    ours = {s.variable for s in SOURCES}
    kept = [v for v in templating if v.get("name") not in ours]
    for v in kept:
        source = _point(v, "datasource", f"{name} variable {v.get('name')}")
        if source is not None:
            used[source.type] = source
    for a in (doc.get("annotations") or {}).get("list", []):
        source = _point(a, "datasource", f"{name} annotation {a.get('name')}")
        if source is not None:
            used[source.type] = source
    doc["templating"]["list"] = [_variable(s) for s in SOURCES if s.type in used] + kept

    requires: list[dict[str, str]] = [
        {"type": "grafana", "id": "grafana", "name": "Grafana", "version": GRAFANA_VERSION}]
    requires += [{"type": "datasource", "id": s.type, "name": s.plugin_name, "version": s.plugin_version}
                 for s in SOURCES if s.type in used]
    kinds = sorted({str(p["type"]) for p in panels if p.get("type") != "row"})
    requires += [{"type": "panel", "id": k, "name": PANEL_NAMES.get(k, k), "version": ""} for k in kinds]
    rest = {k: v for k, v in doc.items() if k not in ("__inputs", "__elements", "__requires", "id")}
    return {"__requires": requires, **rest}


def import_form(doc: dict[str, Any]) -> dict[str, Any]:
    """The form for Grafana's Import page: the provisioned form plus `__inputs`; each
    data-source variable defaults to the data source chosen at import."""
    out = copy.deepcopy(doc)
    variables = {v["name"]: v for v in out["templating"]["list"] if v.get("type") == "datasource"}
    inputs = []
    for s in SOURCES:
        if s.variable in variables:
            inputs.append({"name": s.input, "label": s.plugin_name, "type": "datasource",
                           "pluginId": s.type, "pluginName": s.plugin_name,
                           "description": f"the {s.plugin_name} data source holding brokerstream's data"})
            variables[s.variable]["current"] = {"selected": False, "text": f"${{{s.input}}}",
                                                "value": f"${{{s.input}}}"}
    rest = {k: v for k, v in out.items() if k != "__requires"}
    return {"__inputs": inputs, "__elements": {}, "__requires": out["__requires"], "id": None, **rest}


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def plan(directory: Path, import_dir: Path) -> dict[Path, str]:
    """Every file the script owns and the text it should have ('' = delete)."""
    files: dict[Path, str] = {}
    uids: dict[str, str] = {}
    for path in sorted(directory.glob("*.json")):
        doc = ready(json.loads(path.read_text(encoding="utf-8")), path.name)
        uid = str(doc.get("uid") or "")
        if not uid or uid in uids:
            raise NotReady(f"{path.name}: uid {uid!r} {'missing' if not uid else 'also in ' + uids[uid]}")
        uids[uid] = path.name
        files[path] = dumps(doc)
        files[import_dir / path.name] = dumps(import_form(doc))
    if import_dir.is_dir():
        for stale in import_dir.glob("*.json"):
            files.setdefault(stale, "")
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--dashboards", type=Path, default=DASHBOARDS, help="folder of dashboard JSON")
    parser.add_argument("--import-dir", type=Path, default=IMPORT_DIR, help="where the import forms go")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file would change")
    args = parser.parse_args(argv)
    try:
        files = plan(args.dashboards, args.import_dir)
    except (NotReady, json.JSONDecodeError) as exc:
        print(f"grafana_ready: {exc}", file=sys.stderr)
        return 2
    changed = [p for p, text in files.items()
               if (p.read_text(encoding="utf-8") if p.exists() else "") != text]
    for path in changed:
        shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
        if args.check:
            print(f"not ready: {shown}")
            continue
        if files[path]:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(files[path], encoding="utf-8")
            print(f"wrote {shown}")
        else:
            path.unlink()
            print(f"removed {shown}")
    dashboards = sum(1 for p in files if p.parent == args.dashboards)
    print(f"{dashboards} dashboards: {len(changed)} file(s) {'to change' if args.check else 'changed'}"
          f" (Grafana {GRAFANA_VERSION}, ClickHouse plugin {CLICKHOUSE_PLUGIN_VERSION})")
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
