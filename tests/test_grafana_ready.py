"""Grafana readiness (issue 17): every dashboard against a JSON schema of what Grafana 11 imports
(its dashboard JSON model), the data-source variables and `pluginVersion`s that
scripts/grafana_ready.py writes, the import form (`__inputs`) and the provisioned form, the
script's idempotency, and the provisioned alert rules (schema of Grafana 11's alerting file
provisioning, every SQL run on a simulated brokerage and checked against a computation of its
own, every PromQL metric exported by the engine)."""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml

from services.dashboard.definitions import load_dashboards, render_sql
from tests.conftest import SimulatedStore
from tests.test_dashboards import _registered_metric_names

REPO = Path(__file__).resolve().parent.parent
DIR = REPO / "dashboards"
IMPORT_DIR = REPO / "deploy" / "grafana-import"
SCRIPT = REPO / "scripts" / "grafana_ready.py"
ALERTING = DIR / "provisioning" / "alerting" / "brokerstream.yaml"
FILES = sorted(DIR.glob("*.json"))
DOCS = {p.name: json.loads(p.read_text(encoding="utf-8")) for p in FILES}
IMPORTS = {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(IMPORT_DIR.glob("*.json"))}
COMPOSE = yaml.safe_load((REPO / "deploy" / "compose.yaml").read_text())
PROVISIONED_SOURCES = [
    *yaml.safe_load((DIR / "provisioning" / "datasources" / "brokerstream.yaml").read_text())["datasources"],
    *yaml.safe_load((DIR / "provisioning" / "tenants" / "datasources.yaml").read_text())["datasources"],
]
CH = "grafana-clickhouse-datasource"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("grafana_ready", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["grafana_ready"] = module  # dataclasses/NamedTuple look their module up
    spec.loader.exec_module(module)
    return module


GR = _script()

# -- what Grafana 11 imports: its dashboard JSON model -----------------------------------------
# (grafana.com/docs/grafana/latest/dashboards/build-dashboards/view-dashboard-json-model/ and
# the ClickHouse plugin's query model, grafana/clickhouse-datasource src/types/sql.ts)

_DS_REF = {"type": "object", "required": ["type", "uid"],
           "properties": {"type": {"type": "string", "minLength": 1},
                          "uid": {"type": "string", "minLength": 1}}}
_CLICKHOUSE_TARGET = {
    "required": ["refId", "datasource", "editorType", "format", "queryType", "rawSql", "pluginVersion"],
    "properties": {
        "editorType": {"enum": ["sql", "builder"]},
        "format": {"enum": [0, 1, 2, 3, 4]},  # time series, table, logs, traces, auto
        "queryType": {"enum": ["table", "timeseries", "logs", "traces"]},
        "rawSql": {"type": "string", "minLength": 1},
        "pluginVersion": {"type": "string", "pattern": r"^4\.\d+\.\d+$"},  # v4: no v3 migration
    },
}
_PROMETHEUS_TARGET = {"required": ["refId", "expr"],
                      "properties": {"expr": {"type": "string", "minLength": 1}}}
_TARGET = {
    "type": "object",
    "required": ["refId"],
    "properties": {"refId": {"type": "string", "minLength": 1}, "datasource": _DS_REF,
                   "hide": {"type": "boolean"}},
    "allOf": [
        {"if": {"properties": {"datasource": {"properties": {"type": {"const": CH}}}},
                "required": ["datasource"]},
         "then": _CLICKHOUSE_TARGET},
        {"if": {"properties": {"datasource": {"properties": {"type": {"const": "prometheus"}}}},
                "required": ["datasource"]},
         "then": _PROMETHEUS_TARGET},
    ],
}
_GRID = {"type": "object", "required": ["x", "y", "w", "h"],
         "properties": {"x": {"type": "integer", "minimum": 0, "maximum": 23},
                        "y": {"type": "integer", "minimum": 0},
                        "w": {"type": "integer", "minimum": 1, "maximum": 24},
                        "h": {"type": "integer", "minimum": 1}}}
_PANEL: dict[str, Any] = {
    "type": "object",
    "required": ["id", "type", "title", "gridPos"],
    "properties": {
        "id": {"type": "integer", "minimum": 1},
        "type": {"type": "string", "minLength": 1},
        "title": {"type": "string"},
        "description": {"type": "string"},
        "gridPos": _GRID,
        "datasource": _DS_REF,
        "targets": {"type": "array", "items": _TARGET},
        "fieldConfig": {"type": "object", "required": ["defaults", "overrides"],
                        "properties": {"defaults": {"type": "object"}, "overrides": {"type": "array"}}},
        "options": {"type": "object"},
        "transformations": {"type": "array"},
        "pluginVersion": {"type": "string", "pattern": r"^\d+\.\d+\.\d+$"},
        "panels": {"type": "array"},
        "collapsed": {"type": "boolean"},
    },
    "if": {"properties": {"type": {"not": {"const": "row"}}}},
    "then": {"required": ["id", "type", "title", "gridPos", "datasource", "targets", "pluginVersion"]},
}
_VARIABLE: dict[str, Any] = {
    "type": "object",
    "required": ["name", "type"],
    "properties": {
        "name": {"type": "string", "pattern": r"^[A-Za-z_]\w*$"},
        "type": {"enum": ["query", "custom", "textbox", "constant", "datasource", "interval", "adhoc",
                          "groupby"]},
        "label": {"type": "string"},
        "datasource": _DS_REF,
        "query": {"type": ["string", "object"]},
        "current": {"type": "object", "properties": {"text": {}, "value": {}}},
        "hide": {"enum": [0, 1, 2]},
        "refresh": {"enum": [0, 1, 2]},
        "multi": {"type": "boolean"},
        "includeAll": {"type": "boolean"},
        "options": {"type": "array"},
        "regex": {"type": "string"},
        "sort": {"type": "integer", "minimum": 0, "maximum": 8},
        "skipUrlSync": {"type": "boolean"},
    },
    "allOf": [
        {"if": {"properties": {"type": {"const": "datasource"}}},
         "then": {"required": ["query", "current"],
                  "properties": {"query": {"type": "string", "minLength": 1}}}},
        {"if": {"properties": {"type": {"const": "query"}}}, "then": {"required": ["datasource", "query"]}},
    ],
}
DASHBOARD_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["uid", "title", "schemaVersion", "panels", "templating", "time", "__requires"],
    "properties": {
        "__inputs": {"type": "array", "items": {
            "type": "object", "required": ["name", "label", "type", "pluginId", "pluginName"],
            "properties": {"name": {"type": "string", "pattern": r"^[A-Z][A-Z0-9_]*$"},
                           "type": {"enum": ["datasource", "constant"]}}}},
        "__elements": {"type": "object"},
        "__requires": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["type", "id", "name", "version"],
            "properties": {"type": {"enum": ["grafana", "datasource", "panel", "app"]}}}},
        "id": {"type": ["integer", "null"]},
        "uid": {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,40}$"},
        "title": {"type": "string", "minLength": 1},
        "description": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "editable": {"type": "boolean"},
        "graphTooltip": {"enum": [0, 1, 2]},
        "timezone": {"type": "string"},
        "schemaVersion": {"type": "integer", "minimum": 36, "maximum": 41},  # 41: Grafana 11.6/12.0
        "version": {"type": "integer"},
        "refresh": {"type": ["string", "boolean"]},
        "fiscalYearStartMonth": {"type": "integer", "minimum": 0, "maximum": 11},
        "liveNow": {"type": "boolean"},
        "weekStart": {"type": "string"},
        "time": {"type": "object", "required": ["from", "to"],
                 "properties": {"from": {"type": "string"}, "to": {"type": "string"}}},
        "timepicker": {"type": "object"},
        "links": {"type": "array"},
        "annotations": {"type": "object", "properties": {"list": {"type": "array"}}},
        "templating": {"type": "object", "required": ["list"],
                       "properties": {"list": {"type": "array", "items": _VARIABLE}}},
        "panels": {"type": "array", "items": _PANEL},
    },
}


def _validate(doc: Any, schema: dict[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:10])


def _panels(doc: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in doc.get("panels", []):
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def _refs(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every data source reference of panels, queries and variables (not Grafana's built-in
    annotation), with where it is."""
    out = []
    for p in _panels(doc):
        if "datasource" in p:
            out.append((f"panel {p['id']}", p["datasource"]))
        out += [(f"panel {p['id']} {t['refId']}", t["datasource"]) for t in p.get("targets", [])
                if "datasource" in t]
    out += [(f"variable {v['name']}", v["datasource"]) for v in doc["templating"]["list"]
            if "datasource" in v]
    return out


def test_the_schema_rejects_what_grafana_would_not_load() -> None:
    """The schema is not a rubber stamp: the old form (no pluginVersion) and a broken grid fail."""
    doc = copy.deepcopy(DOCS["risk-desk.json"])
    _validate(doc, DASHBOARD_SCHEMA)
    for breakage in ("no panel pluginVersion", "no query pluginVersion", "grid", "format", "variable"):
        bad = copy.deepcopy(doc)
        panel = bad["panels"][0]
        if breakage == "no panel pluginVersion":
            del panel["pluginVersion"]
        elif breakage == "no query pluginVersion":
            del panel["targets"][0]["pluginVersion"]
        elif breakage == "grid":
            panel["gridPos"]["w"] = 30
        elif breakage == "format":
            panel["targets"][0]["format"] = "table"
        else:
            bad["templating"]["list"][0]["name"] = "data source"
        with pytest.raises(AssertionError):
            _validate(bad, DASHBOARD_SCHEMA)


@pytest.mark.parametrize("name", sorted(DOCS))
def test_provisioned_form_is_what_grafana_11_imports(name: str) -> None:
    doc = DOCS[name]
    _validate(doc, DASHBOARD_SCHEMA)
    assert "__inputs" not in doc, "the provisioned form has no inputs (Grafana provisioning ignores them)"
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    sources = {(s["type"], s["uid"]) for s in PROVISIONED_SOURCES}
    used = set()
    for where, ref in _refs(doc):
        m = re.fullmatch(r"\$\{(\w+)\}", ref["uid"])
        assert m, f"{name} {where}: {ref} is a fixed data source, not a data-source variable"
        var = variables.get(m.group(1))
        assert var is not None and var["type"] == "datasource", f"{name} {where}: no variable {m.group(1)}"
        assert var["query"] == ref["type"], f"{name} {where}: {ref} vs the variable's {var['query']}"
        # provisioned with a fixed uid: the variable's default is that data source, in every org
        assert (var["query"], var["current"]["value"]) in sources, f"{name}: {var['current']}"
        used.add(var["name"])
    ds_vars = [v for v in doc["templating"]["list"] if v["type"] == "datasource"]
    assert {v["name"] for v in ds_vars} == used, "a data-source variable no panel uses"
    assert doc["templating"]["list"][: len(ds_vars)] == ds_vars, "data-source variables come first"
    for p in _panels(doc):
        if p["type"] == "row":
            continue
        assert p["pluginVersion"] == GR.GRAFANA_VERSION, p["title"]
        for t in p["targets"]:
            if t["datasource"]["type"] == CH:
                assert t["pluginVersion"] == GR.CLICKHOUSE_PLUGIN_VERSION, p["title"]
                assert t["queryType"] == GR.QUERY_TYPES[t["format"]], p["title"]
    ids = [p["id"] for p in _panels(doc)]
    assert len(ids) == len(set(ids)), "panel ids unique"
    required = {(r["type"], r["id"]) for r in doc["__requires"]}
    assert {("panel", p["type"]) for p in _panels(doc) if p["type"] != "row"} <= required
    assert {("datasource", v["query"]) for v in ds_vars} <= required
    assert {r["version"] for r in doc["__requires"] if r["type"] == "grafana"} == {GR.GRAFANA_VERSION}


def test_uids_are_unique() -> None:
    uids = [d["uid"] for d in DOCS.values()]
    assert len(uids) == len(set(uids))
    assert sorted(IMPORTS) == sorted(DOCS), "one import form per dashboard (run scripts/grafana_ready.py)"
    assert [IMPORTS[n]["uid"] for n in sorted(IMPORTS)] == [DOCS[n]["uid"] for n in sorted(DOCS)]


@pytest.mark.parametrize("name", sorted(DOCS))
def test_import_form_asks_for_the_data_source(name: str) -> None:
    """Imported into a Grafana that has its own ClickHouse (and Prometheus): Grafana asks for
    each `__inputs` data source and replaces `${DS_…}` everywhere (its import does exactly
    that string substitution); every panel then reads the chosen one."""
    doc = IMPORTS[name]
    _validate(doc, DASHBOARD_SCHEMA)
    assert doc["id"] is None
    inputs = {i["name"]: i for i in doc["__inputs"]}
    ds_vars = {v["name"]: v for v in doc["templating"]["list"] if v["type"] == "datasource"}
    assert len(inputs) == len(ds_vars)
    for var in ds_vars.values():
        m = re.fullmatch(r"\$\{(DS_\w+)\}", var["current"]["value"])
        assert m and inputs[m.group(1)]["pluginId"] == var["query"]
    text = json.dumps(doc)
    assert "brokerstream-clickhouse" not in text and "brokerstream-prometheus" not in text
    chosen = {n: f"their-{i['pluginId']}" for n, i in inputs.items()}
    imported = json.loads(re.sub(r"\$\{(DS_\w+)\}", lambda m: chosen[m.group(1)], text))
    imported = {k: v for k, v in imported.items() if k != "__inputs"}
    assert "${DS_" not in json.dumps(imported)
    for var in (v for v in imported["templating"]["list"] if v["type"] == "datasource"):
        assert var["current"]["value"] == f"their-{var['query']}"
    # apart from the defaults and the export keys, it is the provisioned dashboard
    strip = {"__inputs", "__elements", "id"}
    provisioned = {k: v for k, v in DOCS[name].items() if k not in strip}
    back = {k: v for k, v in doc.items() if k not in strip}
    for a, b in zip(back["templating"]["list"], provisioned["templating"]["list"], strict=True):
        if a["type"] == "datasource":
            a["current"] = b["current"]
    assert back == provisioned


def test_the_script_is_idempotent_and_the_committed_files_are_its_output(tmp_path: Path) -> None:
    check = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True,
                           timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    for doc in DOCS.values():
        assert GR.ready(doc) == doc
        assert GR.ready(GR.ready(doc)) == GR.ready(doc)
    # run on a copy: nothing changes the second time
    work, out = tmp_path / "d", tmp_path / "imp"
    work.mkdir()
    for name, doc in DOCS.items():
        (work / name).write_text(GR.dumps(doc))
    assert GR.main(["--dashboards", str(work), "--import-dir", str(out)]) == 0
    assert {p.name: p.read_text() for p in out.glob("*.json")} == {
        p.name: p.read_text() for p in IMPORT_DIR.glob("*.json")}
    before = {p: p.read_bytes() for p in [*work.glob("*.json"), *out.glob("*.json")]}
    assert GR.main(["--dashboards", str(work), "--import-dir", str(out)]) == 0
    assert {p: p.read_bytes() for p in [*work.glob("*.json"), *out.glob("*.json")]} == before
    # an import form whose dashboard is gone is removed
    (out / "gone.json").write_text("{}")
    assert GR.main(["--dashboards", str(work), "--import-dir", str(out), "--check"]) == 1
    assert GR.main(["--dashboards", str(work), "--import-dir", str(out)]) == 0
    assert not (out / "gone.json").exists()


def _old_form(doc: dict[str, Any]) -> dict[str, Any]:
    """A dashboard as it was before the script (and as a branch may still add panels): fixed
    data source uids, no data-source variables, no pluginVersion, no __requires."""
    old = copy.deepcopy(doc)
    old.pop("__requires")
    variables = {v["name"]: v for v in old["templating"]["list"] if v["type"] == "datasource"}
    old["templating"]["list"] = [v for v in old["templating"]["list"] if v["type"] != "datasource"]
    text = json.dumps(old)
    for name, var in variables.items():
        text = text.replace(f'"${{{name}}}"', json.dumps(var["current"]["value"]))
    old = json.loads(text)
    for p in _panels(old):
        p.pop("pluginVersion", None)
        for t in p.get("targets", []):
            t.pop("pluginVersion", None)
    return old


def test_the_script_turns_the_old_form_and_new_panels_into_the_ready_form() -> None:
    for name, doc in DOCS.items():
        old = _old_form(doc)
        assert "${" not in json.dumps([p.get("datasource") for p in _panels(old)])
        assert GR.ready(old, name) == doc, name
    # a merged branch's new panel: old-style references, no id, an id that is taken, no queryType
    finance = _old_form(DOCS["finance.json"])
    top = max(p["id"] for p in _panels(finance))
    fixed = {"type": CH, "uid": "brokerstream-clickhouse"}
    new: list[dict[str, Any]] = [
        {"type": "table", "title": f"New {i}", "gridPos": {"x": 0, "y": 99, "w": 12, "h": 8},
         "datasource": dict(fixed), "fieldConfig": {"defaults": {"unit": ""}, "overrides": []},
         "targets": [{"refId": "A", "datasource": dict(fixed), "editorType": "sql", "format": 1,
                      "rawSql": "SELECT 1 FROM accounts"}]}
        for i in range(2)]
    new[1]["id"] = 1
    finance["panels"] += new
    ready = GR.ready(finance, "finance.json")
    _validate(ready, DASHBOARD_SCHEMA)
    assert [p["id"] for p in ready["panels"][-2:]] == [top + 1, top + 2]
    assert ready["panels"][0]["id"] == DOCS["finance.json"]["panels"][0]["id"]  # kept
    assert all(p["datasource"]["uid"] == "${datasource}" for p in ready["panels"][-2:])
    assert ready["panels"][-1]["targets"][0] == {**new[1]["targets"][0], "queryType": "table",
                                                   "datasource": {"type": CH, "uid": "${datasource}"},
                                                   "pluginVersion": GR.CLICKHOUSE_PLUGIN_VERSION}
    assert GR.ready(ready, "finance.json") == ready
    with pytest.raises(GR.NotReady, match="unknown data source"):
        GR.ready({**finance, "panels": [{**new[0], "datasource": {"type": "mysql", "uid": "x"}}]})


def test_the_pinned_versions_are_what_compose_runs() -> None:
    grafana = COMPOSE["services"]["grafana"]
    assert grafana["image"] == f"grafana/grafana:{GR.GRAFANA_VERSION}"
    assert grafana["environment"]["GF_INSTALL_PLUGINS"] == f"{CH} {GR.CLICKHOUSE_PLUGIN_VERSION}"
    assert GR.GRAFANA_VERSION.startswith("11.")


def test_the_built_in_page_resolves_the_variables(tmp_path: Path) -> None:
    dashboards = load_dashboards(DIR)
    for d in dashboards:
        doc = next(doc for doc in DOCS.values() if doc["uid"] == d.uid)
        kinds = {p["id"]: p["targets"][0]["datasource"]["type"] for p in _panels(doc) if p.get("targets")}
        assert {p.id: p.datasource_type for p in d.panels} == {
            i: "clickhouse" if k == CH else "prometheus" for i, k in kinds.items()}
        assert all(v.type != "datasource" for v in d.variables), "data-source pickers are Grafana's"
    # a hand-written `${datasource}` without its type resolves through the variable
    doc = copy.deepcopy(DOCS["risk-desk.json"])
    for p in _panels(doc):
        p["datasource"] = {"uid": "${datasource}"}
        for t in p["targets"]:
            t["datasource"] = {"uid": "${datasource}"}
    (tmp_path / "risk.json").write_text(json.dumps(doc))
    [risk] = load_dashboards(tmp_path)
    assert {p.datasource_type for p in risk.panels} == {"clickhouse"}


# -- alert rules ----------------------------------------------------------------------------------
# Grafana 11 alerting file provisioning (grafana.com/docs/grafana/latest/alerting/set-up/
# provision-alerting-resources/file-provisioning/)

_DURATION = {"type": "string", "pattern": r"^(\d+[smhdw])+$"}
_QUERY = {
    "type": "object",
    "required": ["refId", "datasourceUid", "model"],
    "properties": {
        "refId": {"type": "string", "minLength": 1},
        "datasourceUid": {"type": "string", "minLength": 1},
        "queryType": {"type": "string"},
        "relativeTimeRange": {"type": "object", "required": ["from", "to"],
                              "properties": {"from": {"type": "integer", "minimum": 0},
                                             "to": {"type": "integer", "minimum": 0}}},
        "model": {"type": "object", "required": ["refId"]},
    },
    "if": {"properties": {"datasourceUid": {"not": {"const": "__expr__"}}}},
    "then": {"required": ["refId", "datasourceUid", "model", "relativeTimeRange"]},
    "else": {"properties": {"model": {"required": ["refId", "type", "expression"], "properties": {
        "type": {"enum": ["math", "reduce", "resample", "classic_conditions", "threshold", "sql"]}}}}},
}
_RULE = {
    "type": "object",
    "required": ["uid", "title", "condition", "data", "noDataState", "execErrState", "for"],
    "properties": {
        "uid": {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,40}$"},
        "title": {"type": "string", "minLength": 1},
        "condition": {"type": "string"},
        "data": {"type": "array", "minItems": 1, "items": _QUERY},
        "noDataState": {"enum": ["Alerting", "NoData", "OK", "KeepLast"]},
        "execErrState": {"enum": ["Alerting", "Error", "OK", "KeepLast"]},
        "for": _DURATION,
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        "isPaused": {"type": "boolean"},
    },
    "additionalProperties": False,
}
ALERTING_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["apiVersion", "groups"],
    "properties": {
        "apiVersion": {"const": 1},
        "groups": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["orgId", "name", "folder", "interval", "rules"],
            "properties": {"orgId": {"type": "integer", "minimum": 1}, "name": {"type": "string"},
                           "folder": {"type": "string"}, "interval": _DURATION,
                           "rules": {"type": "array", "minItems": 1, "items": _RULE}},
            "additionalProperties": False}},
        "deleteRules": {"type": "array"},
    },
    "additionalProperties": False,
}
ALERTS = yaml.safe_load(ALERTING.read_text())
RULES = [r for g in ALERTS["groups"] for r in g["rules"]]


def _queries(kind: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(r, q) for r in RULES for q in r["data"] if q["model"].get("datasource", {}).get("type") == kind]


def test_alert_rules_are_grafana_11_file_provisioning() -> None:
    _validate(ALERTS, ALERTING_SCHEMA)
    uids = [r["uid"] for r in RULES]
    assert len(uids) == len(set(uids))
    sources = {s["uid"]: s["type"] for s in PROVISIONED_SOURCES if s.get("orgId", 1) == 1}
    dashboards = {d["uid"]: {p["id"] for p in _panels(d)} for d in DOCS.values()}
    for rule in RULES:
        refs = {q["refId"] for q in rule["data"]}
        assert rule["condition"] in refs, rule["uid"]
        for q in rule["data"]:
            assert q["model"]["refId"] == q["refId"]
            if q["datasourceUid"] == "__expr__":
                assert q["model"]["expression"] in refs - {q["refId"]}, rule["uid"]
            else:
                uid = q["datasourceUid"]
                assert q["model"]["datasource"] == {"type": sources[uid], "uid": uid}, rule["uid"]
        uid = rule["annotations"].get("__dashboardUid__")
        assert uid in dashboards, rule["uid"]
        if "__panelId__" in rule["annotations"]:
            assert int(rule["annotations"]["__panelId__"]) in dashboards[uid], rule["uid"]
    titles = " / ".join(r["title"] for r in RULES)
    for wanted in ("limit breach", "high-severity", "lag"):
        assert wanted in titles.lower(), f"no rule for {wanted}"
    for rule, q in _queries(CH):
        _validate(q["model"], _CLICKHOUSE_TARGET)
        assert q["model"]["pluginVersion"] == GR.CLICKHOUSE_PLUGIN_VERSION, rule["uid"]


def test_compose_mounts_the_alert_rules() -> None:
    mounts = {m.split(":")[1]: m.split(":")[0] for m in COMPOSE["services"]["grafana"]["volumes"]}
    assert (mounts["/etc/grafana/provisioning/alerting/brokerstream.yaml"]
            == "../dashboards/provisioning/alerting/brokerstream.yaml")


def test_alert_promql_names_exported_metrics() -> None:
    known = _registered_metric_names()
    queries = _queries("prometheus")
    assert queries
    for rule, q in queries:
        metrics = set(re.findall(r"\b(brokerstream_\w+)", q["model"]["expr"]))
        assert metrics and metrics <= known, (rule["uid"], sorted(metrics - known))
        assert "$__" not in q["model"]["expr"], "alert queries have no dashboard interval"


def _sql(rule_uid: str) -> str:
    [(_, q)] = [(r, q) for r, q in _queries(CH) if r["uid"] == rule_uid]
    return str(q["model"]["rawSql"])


def _run(store: Any, sql: str, lo: datetime, hi: datetime) -> list[dict[str, Any]]:
    names, rows = store.query(render_sql(sql, time_from=lo, time_to=hi, variables={}, interval_s=60))
    return [dict(zip(names, r, strict=True)) for r in rows]


def test_every_alert_sql_runs_on_real_data(simulated_store: SimulatedStore) -> None:
    store, hi = simulated_store.store, simulated_store.time_to
    for _, q in _queries(CH):
        rng = q["relativeTimeRange"]
        rows = _run(store, q["model"]["rawSql"], hi - timedelta(seconds=rng["from"]),
                    hi - timedelta(seconds=rng["to"]))
        for row in rows:  # Grafana's numeric-table rule: string labels and one number
            numbers = [k for k, v in row.items() if isinstance(v, float)]
            assert len(numbers) == 1 and all(isinstance(v, str) for k, v in row.items() if k not in numbers)


def test_limit_breach_rule_fires_for_the_open_breaches(simulated_store: SimulatedStore) -> None:
    store, lo, hi = simulated_store.store, simulated_store.time_from, simulated_store.time_to
    got = {(r["tenant"], r["rule_id"], r["subject"]): r["breached"]
           for r in _run(store, _sql("brokerstream-limit-breach"), lo, hi)}
    # independently: every limit event in event order, the last one of each key decides
    _, raw = store.query("SELECT tenant, rule_id, subject, facts, event_time, alert_id FROM alerts "
                         "WHERE rule_id LIKE 'limit.%' AND mode = 'alert'")
    last: dict[tuple[str, str, str], tuple[Any, str, str]] = {}
    for tenant, rule_id, subject, facts, at, alert_id in raw:
        key = (tenant, rule_id, subject)
        if key not in last or (at, alert_id) > last[key][:2]:
            last[key] = (at, alert_id, json.loads(facts)["kind"])
    want = {k: 1.0 if v[2] == "breach" else 0.0 for k, v in last.items()}
    assert got == want
    assert any(v == 1.0 for v in got.values()), "the simulated brokerage ends with a limit breached"


def _epoch(t: datetime) -> int:
    return int((t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp())


def test_high_severity_rule_counts_the_new_alerts(simulated_store: SimulatedStore) -> None:
    store, lo, hi = simulated_store.store, simulated_store.time_from, simulated_store.time_to
    _, raw = store.query("SELECT tenant, category, rule_id, severity, mode, detected_at FROM alerts")
    for window in (hi - lo, timedelta(days=1)):
        start = hi - window
        got = {(r["tenant"], r["category"], r["rule_id"]): r["alerts"]
               for r in _run(store, _sql("brokerstream-high-severity-alerts"), start, hi)}
        want: dict[tuple[str, str, str], float] = defaultdict(float)
        for tenant, category, rule_id, severity, mode, detected in raw:
            if (category in ("aml", "fraud") and severity in ("high", "critical") and mode == "alert"
                    and _epoch(start) <= _epoch(detected) <= _epoch(hi)):
                want[(tenant, category, rule_id)] += 1
        assert got == dict(want), window
        if window == hi - lo:
            assert got, "the simulated brokerage raises high-severity AML/fraud alerts"
