"""The Grafana dashboards (dashboards/*.json): what Grafana needs to load them, every ClickHouse
panel's SQL run on a simulated brokerage (rows and columns as dashboards/expectations.yaml
says), every Prometheus panel's metrics registered by the engine or the webhook receiver, the
macro renderer shared with the built-in page, and the provisioning / deployment files."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.dashboard.definitions import (
    DASHBOARDS_DIR,
    Dashboard,
    Panel,
    load_dashboards,
    render_sql,
)
from tests.conftest import SimulatedStore
from tests.view_picks import busy_ib, rich_client

REPO = Path(__file__).resolve().parent.parent
DIR = REPO / "dashboards"
FILES = sorted(DIR.glob("*.json"))
DOCS: dict[str, dict[str, Any]] = {p.name: json.loads(p.read_text(encoding="utf-8")) for p in FILES}
EXPECTED: dict[str, dict[int, list[str]]] = yaml.safe_load((DIR / "expectations.yaml").read_text())
DATASOURCES = yaml.safe_load((DIR / "provisioning" / "datasources" / "brokerstream.yaml").read_text())
PROVIDERS = yaml.safe_load((DIR / "provisioning" / "dashboards" / "brokerstream.yaml").read_text())
COMPOSE = yaml.safe_load((REPO / "deploy" / "compose.yaml").read_text())

CH_TYPE = "grafana-clickhouse-datasource"
PANEL_TYPES = {"timeseries", "table", "stat", "barchart", "bargauge", "piechart"}
PROVISIONED = {(d["type"], d["uid"]) for d in DATASOURCES["datasources"]}
# The only macros the SQL may use: Grafana expands them, and so does render_sql for the page.
MACROS = {"$__timeFilter", "$__fromTime", "$__toTime", "$__interval_s"}
_DOLLAR = re.compile(r"\$\{[^}]*\}|\$\w+")

DASHBOARDS = load_dashboards(DIR)
CH_PANELS = [(d, p) for d in DASHBOARDS for p in d.panels if p.datasource_type == "clickhouse"]
PROM_PANELS = [(d, p) for d in DASHBOARDS for p in d.panels if p.datasource_type == "prometheus"]

# Panels where zero is the healthy answer (the simulated traffic has no unreadable message).
ZERO_IS_FINE = {("brokerstream-operations", 15)}


def _id(d: Dashboard, p: Panel) -> str:
    return f"{d.uid.removeprefix('brokerstream-')}-{p.id}-{p.title}"


def _panels(doc: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in doc.get("panels", []):
        out.append(p)
        out.extend(p.get("panels", []))
    return out


# -- (a) what Grafana needs ---------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DOCS))
def test_dashboard_json_is_what_grafana_needs(name: str) -> None:
    doc = DOCS[name]
    assert re.fullmatch(r"[a-z0-9-]{1,40}", doc["uid"]), "uid: Grafana allows 40 characters"
    assert doc["uid"].startswith("brokerstream-")
    assert doc["title"]
    assert isinstance(doc["schemaVersion"], int) and doc["schemaVersion"] >= 36
    assert doc["time"]["from"] and doc["time"]["to"]
    panels = _panels(doc)
    assert panels
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    uses_clickhouse = False
    for p in panels:
        where = f"{name} panel {p['id']} ({p.get('title')})"
        assert isinstance(p["id"], int) and p["id"] > 0, where
        assert p["title"], where
        assert p["type"] in PANEL_TYPES, where
        grid = p["gridPos"]
        assert all(isinstance(grid[k], int) for k in ("x", "y", "w", "h")), where
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24 and grid["h"] > 0, where
        assert "unit" in p["fieldConfig"]["defaults"], where
        ds = p["datasource"]
        assert _provisioned(ds, variables) in PROVISIONED, where
        assert p["targets"], where
        for t in p["targets"]:
            assert t["refId"], where
            assert t["datasource"] == ds, where
            if ds["type"] == CH_TYPE:
                uses_clickhouse = True
                assert t["editorType"] == "sql" and t["rawSql"].strip(), where
                series = p["type"] == "timeseries"
                assert t["format"] == (0 if series else 1), where
                assert t["queryType"] == ("timeseries" if series else "table"), where
                _check_sql(t["rawSql"], variables, where)
            else:
                assert t["expr"].strip(), where
        if ds["type"] == CH_TYPE:
            assert len(p["targets"]) == 1, f"{where}: one query per panel (the page runs one)"
    if uses_clickhouse:
        tenant = variables["tenant"]
        assert tenant["type"] == "query" and tenant["multi"] and tenant["includeAll"]
        assert _provisioned(tenant["datasource"], variables) in PROVISIONED
    before: set[str] = set()
    for v in doc["templating"]["list"]:  # a query may use the variables before it (chained)
        if v["type"] == "query":
            for token in _DOLLAR.findall(v["query"]):
                name, _, fmt = token[2:-1].partition(":")
                assert token.startswith("${") and name in before and fmt == "singlequote", (
                    f"variable {v['name']}: {token} (only variables defined before it, quoted)")
        before.add(v["name"])


def _provisioned(ds: dict[str, Any], variables: dict[str, Any]) -> tuple[str, str]:
    """(type, uid) a reference means where Grafana provisions the dashboards: `${datasource}`
    is the data-source variable's default (scripts/grafana_ready.py, tests/test_grafana_ready.py)."""
    m = re.fullmatch(r"\$\{(\w+)\}", ds["uid"])
    if m is None:
        return ds["type"], ds["uid"]
    var = variables[m.group(1)]
    assert var["type"] == "datasource" and var["query"] == ds["type"], var
    return ds["type"], var["current"]["value"]


def _check_sql(sql: str, variables: dict[str, Any], where: str) -> None:
    for token in _DOLLAR.findall(sql):
        if token.startswith("${"):
            name, _, fmt = token[2:-1].partition(":")
            assert name in variables and fmt == "singlequote", f"{where}: {token}"
        else:
            assert token in MACROS, f"{where}: macro {token} (only {sorted(MACROS)})"
    assert "tenant IN (${tenant:singlequote})" in sql, f"{where}: no tenant filter"
    # `… AS time` over a table with a `time` column: an unqualified `time` in WHERE would mean
    # the alias (the bucket), not the column, and the time filter would be wrong.
    if re.search(r"\bAS time\b", sql):
        assert not re.search(r"\$__timeFilter\(time\)", sql), f"{where}: qualify the time column"


def test_every_clickhouse_panel_has_its_expected_columns() -> None:
    have = {(d.uid, p.id) for d, p in CH_PANELS}
    listed = {(uid, pid) for uid, panels in EXPECTED.items() for pid in panels}
    assert have == listed


def test_definitions_read_the_json() -> None:
    assert DASHBOARDS_DIR == DIR
    assert [d.uid for d in DASHBOARDS] == [DOCS[p.name]["uid"] for p in FILES]
    for d in DASHBOARDS:
        doc = next(doc for doc in DOCS.values() if doc["uid"] == d.uid)
        assert len(d.panels) == len(_panels(doc))
        assert (d.time_from, d.time_to) == (doc["time"]["from"], doc["time"]["to"])
        for p in d.panels:
            assert len(p.grid) == 4 and p.sql
            if p.datasource_type == "clickhouse":
                assert p.format == ("time_series" if p.type == "timeseries" else "table")
    assert sum(len(d.panels) for d in DASHBOARDS) == len(CH_PANELS) + len(PROM_PANELS)


def test_load_dashboards_honours_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "one.json").write_text(json.dumps(DOCS["finance.json"]))
    monkeypatch.setenv("BROKERSTREAM_DASHBOARDS", str(tmp_path))
    [only] = load_dashboards()
    assert only.uid == "brokerstream-finance"


def test_provisioning_points_grafana_at_the_dashboards() -> None:
    assert DATASOURCES["apiVersion"] == 1
    wanted = {(CH_TYPE, "brokerstream-clickhouse"), ("prometheus", "brokerstream-prometheus")}
    assert wanted == PROVISIONED
    ch = next(d for d in DATASOURCES["datasources"] if d["type"] == CH_TYPE)
    assert {"host", "port", "protocol", "username", "defaultDatabase"} <= set(ch["jsonData"])
    assert "password" in ch["secureJsonData"]
    [provider] = PROVIDERS["providers"]
    assert provider["type"] == "file"
    path = provider["options"]["path"]
    grafana = COMPOSE["services"]["grafana"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in grafana["volumes"]}
    assert mounts[path] == "../dashboards"  # compose paths are relative to deploy/
    # org 1's files from git, inside volumes that grafana-tenants adds the tenant orgs' files to
    for kind in ("dashboards", "datasources"):
        assert (mounts[f"/etc/grafana/provisioning/{kind}/brokerstream.yaml"]
                == f"../dashboards/provisioning/{kind}/brokerstream.yaml")
    assert "grafana-clickhouse-datasource" in grafana["environment"]["GF_INSTALL_PLUGINS"]
    for value in re.findall(r"\$(\w+)", json.dumps(DATASOURCES)):
        assert value in grafana["environment"], f"${value} is not set for Grafana"


def test_deployment_files_agree() -> None:
    from pipelines.config import load_settings

    load_settings(REPO / "deploy" / "brokerstream.yaml")
    services = COMPOSE["services"]
    prometheus = yaml.safe_load((REPO / "deploy" / "prometheus.yml").read_text())
    targets = [t for job in prometheus["scrape_configs"] for sc in job["static_configs"]
               for t in sc["targets"]]
    for target in targets:
        host, port = target.split(":")
        assert host in services, target
        command = " ".join(services[host].get("command") or [])
        assert port in command, f"{target}: {host} does not listen on {port}"
    engines = [s for s in services if s.startswith("engine-") and s != "engine-init"]
    assert len(engines) >= 2
    for i, name in enumerate(sorted(engines)):
        cmd = services[name]["command"]
        assert cmd[0] == "run" and cmd[cmd.index("-i") + 1] == str(i)
        assert cmd[cmd.index("-a") + 1].split(";") == [f"{e}:2101" for e in sorted(engines)]
        assert services[name]["environment"]["BROKERSTREAM_METRICS_ADDR"] == "0.0.0.0"


# -- render_sql -------------------------------------------------------------------------------

T0 = datetime(2024, 11, 25, 0, 0, tzinfo=UTC)
T1 = datetime(2024, 11, 26, 12, 30, tzinfo=UTC)


def _render(sql: str, variables: dict[str, list[str]] | None = None, interval_s: int = 60) -> str:
    return render_sql(sql, time_from=T0, time_to=T1, variables=variables or {}, interval_s=interval_s)


def test_render_sql_expands_the_plugin_macros() -> None:
    assert _render("WHERE $__timeFilter(d.time)") == (
        "WHERE d.time >= toDateTime(1732492800) AND d.time <= toDateTime(1732624200)")
    assert _render("$__timeFilter( toDateTime(f(a, b)) ) AND 1") == (
        "toDateTime(f(a, b)) >= toDateTime(1732492800) AND "
        "toDateTime(f(a, b)) <= toDateTime(1732624200) AND 1")
    assert _render("$__fromTime, $__toTime, $__interval_s", interval_s=0) == (
        "toDateTime(1732492800), toDateTime(1732624200), 1")
    naive = render_sql("$__fromTime", time_from=T0.replace(tzinfo=None), time_to=T1, variables={},
                       interval_s=1)
    assert naive == "toDateTime(1732492800)"  # naive times are UTC


def test_render_sql_quotes_variable_values() -> None:
    tenants = _render("tenant IN (${tenant:singlequote})", {"tenant": ["acme", "zenith"]})
    assert tenants == "tenant IN ('acme','zenith')"
    evil = _render("x IN (${a:singlequote})", {"a": ["o'x\\", "') OR 1=1 --"]})
    assert evil == "x IN ('o\\'x\\\\','\\') OR 1=1 --')"
    assert _render("x IN (${a:singlequote})", {"a": []}) == "x IN (NULL)"
    # a value is never expanded again
    assert _render("${a:singlequote}", {"a": ["$__fromTime"]}) == "'$__fromTime'"


@pytest.mark.parametrize("sql", ["${tenant}", "$tenant", "${tenant:csv}", "$__timeGroup(t, 1h)",
                                 "${missing:singlequote}", "$__timeFilter(", "$__timeFilter()"])
def test_render_sql_refuses_what_it_does_not_know(sql: str) -> None:
    with pytest.raises(ValueError):
        _render(sql, {"tenant": ["acme"]})


def test_render_sql_wants_all_resolved() -> None:
    with pytest.raises(ValueError, match="resolve"):
        _render("${tenant:singlequote}", {"tenant": ["$__all"]})


def test_render_sql_runs(simulated_store: SimulatedStore) -> None:
    sql = _render("SELECT $__fromTime AS a, $__toTime AS b, $__interval_s AS c, ${t:singlequote} AS d",
                  {"t": ["it's"]})
    [row] = simulated_store.store.query(sql)[1]
    assert row == (T0.replace(tzinfo=None), T1.replace(tzinfo=None), 60, "it's")


# -- (b) every ClickHouse panel on the simulated brokerage -------------------------------------


@pytest.fixture(scope="module")
def panel_variables(simulated_store: SimulatedStore) -> dict[str, dict[str, list[str]]]:
    """Per dashboard: every variable's values as Grafana would send them — the tenant
    variable's "All" resolved to its query's values; the account variable set to an account
    with alerts, payments and logins; a text box at its default; the client variable (the
    client view) at a client of several accounts with positions, payments, alerts and logins;
    the ib variable (the partner view) at the top IB of the tree with the most rows."""
    store, lo, hi = simulated_store.store, simulated_store.time_from, simulated_store.time_to
    account = store.scalar("""
        SELECT account_key FROM accounts
        WHERE account_key IN (SELECT subject FROM alerts)
          AND (server, login) IN (SELECT server, login FROM balance_operations WHERE provider != '')
          AND (server, login) IN (SELECT server, login FROM logins)
        ORDER BY account_key IN (SELECT subject FROM alerts WHERE category IN ('aml', 'fraud')) DESC,
                 account_key
        LIMIT 1""")
    assert account, "the simulated data has no account with alerts, payments and logins"
    client, ib = rich_client(store), busy_ib(store)
    out: dict[str, dict[str, list[str]]] = {}
    for d in DASHBOARDS:
        chosen: dict[str, list[str]] = {}
        for v in d.variables:
            if v.type == "textbox":
                chosen[v.name] = [v.current[0] if v.current else v.query]
                continue
            sql = render_sql(v.query, time_from=lo, time_to=hi, variables=chosen, interval_s=60)
            values = [str(r[0]) for r in store.query(sql)[1]]
            assert values, f"{d.uid}: variable {v.name} lists nothing"
            if v.name == "account":
                assert account in values
                chosen[v.name] = [account]
            elif v.name == "client":
                [picked] = [x for x in values if x.split(" — ")[0] == client]
                chosen[v.name] = [picked]
            elif v.name == "ib":
                assert ib in values
                chosen[v.name] = [ib]
            else:
                chosen[v.name] = values
        out[d.uid] = chosen
    return out


def _meaningful(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        return value != 0
    return value != ""


@pytest.mark.parametrize(("dashboard", "panel"), CH_PANELS, ids=[_id(d, p) for d, p in CH_PANELS])
def test_clickhouse_panel_returns_rows(dashboard: Dashboard, panel: Panel, simulated_store: SimulatedStore,
                                       panel_variables: dict[str, dict[str, list[str]]]) -> None:
    store, lo, hi = simulated_store.store, simulated_store.time_from, simulated_store.time_to
    interval_s = max(int((hi - lo).total_seconds()) // 300, 1)  # ~300 points, as a wide panel
    sql = render_sql(panel.sql, time_from=lo, time_to=hi, variables=panel_variables[dashboard.uid],
                     interval_s=interval_s)
    columns, rows = store.query(sql)
    key = (dashboard.uid, panel.id)
    useful = [r for r in rows if any(_meaningful(v) for v in r)]
    assert columns == EXPECTED[dashboard.uid][panel.id]
    assert rows, "no rows"
    assert useful or key in ZERO_IS_FINE, f"only empty or zero values: {rows[:3]}"
    if panel.format == "time_series":
        assert columns[0] == "time"
        slack = max(timedelta(seconds=interval_s), timedelta(days=1))
        for row in rows:
            t = row[0]
            assert isinstance(t, (datetime, date)), row
            when = datetime(t.year, t.month, t.day, tzinfo=UTC) if not isinstance(t, datetime) else (
                t if t.tzinfo else t.replace(tzinfo=UTC))
            assert lo - slack <= when <= hi, f"time {t} outside the range"
            for name, value in zip(columns[1:], row[1:], strict=True):
                if name == "metric":
                    assert isinstance(value, str) and value, row
                else:
                    assert value is None or isinstance(value, (int, float, Decimal)), (name, value)


# -- (c) every Prometheus panel's metrics exist -----------------------------------------------


def _registered_metric_names() -> set[str]:
    from prometheus_client import REGISTRY

    import pipelines.metrics  # noqa: F401  (registers the engine's metrics)
    from connectors.psp.settings import PspSettings
    from services.webhooks import create_app

    class _Nowhere:
        async def publish(self, topic: str, key: bytes | None, value: bytes,
                          headers: list[tuple[str, bytes]], timestamp_ms: int) -> None:
            raise AssertionError("not used")

    receiver = create_app(PspSettings(), _Nowhere()).state.metrics.registry
    names: set[str] = set()
    for registry in (REGISTRY, receiver):
        for family in registry.collect():
            if family.type == "counter":
                names |= {family.name + "_total"}
            elif family.type == "histogram":
                names |= {family.name + s for s in ("_bucket", "_sum", "_count")}
            else:
                names.add(family.name)
    return names


@pytest.mark.parametrize(("dashboard", "panel"), PROM_PANELS, ids=[_id(d, p) for d, p in PROM_PANELS])
def test_prometheus_panel_metrics_exist(dashboard: Dashboard, panel: Panel) -> None:
    doc = next(doc for doc in DOCS.values() if doc["uid"] == dashboard.uid)
    exprs = [t["expr"] for p in _panels(doc) if p["id"] == panel.id for t in p["targets"]]
    known = _registered_metric_names()
    for expr in exprs:
        metrics = set(re.findall(r"\b(brokerstream_\w+)", expr))
        assert metrics, expr
        assert metrics <= known, f"not registered: {sorted(metrics - known)}"


def test_floating_pnl_series_ends_at_the_live_exposure(simulated_store: SimulatedStore) -> None:
    """exposure_history holds only changes; the risk desk's P&L series adds them up per key.
    Its last point must be what the latest-state views say now."""
    store, lo, hi = simulated_store.store, simulated_store.time_from, simulated_store.time_to
    [risk] = [d for d in DASHBOARDS if d.uid == "brokerstream-risk-desk"]
    [panel] = [p for p in risk.panels if p.id == 9]
    tenants = [r[0] for r in store.query("SELECT DISTINCT tenant FROM accounts")[1]]
    sql = render_sql(panel.sql, time_from=lo, time_to=hi, variables={"tenant": tenants}, interval_s=3600)
    last = {metric: value for _, metric, value in store.query(sql)[1]}
    now = dict(store.query("""
        SELECT concat(tenant, ' clients'), sum(floating_pnl_usd) FROM exposure GROUP BY tenant
        UNION ALL
        SELECT concat(tenant, ' broker'), sum(floating_pnl_usd) FROM broker_exposure GROUP BY tenant""")[1])
    assert last.keys() == now.keys()
    for metric, value in now.items():
        assert abs(last[metric] - value) < Decimal("0.01"), metric


def test_fields_a_platform_never_sends_say_so(simulated_store: SimulatedStore) -> None:
    """cTrader sends no group and no account margin: the compliance Account panel and the margin
    watch say "not sent by platform" instead of a blank (docs/data-contract.md, accounts)."""
    store, lo, hi = simulated_store.store, simulated_store.time_from, simulated_store.time_to
    ctrader = [r[0] for r in store.query(
        "SELECT account_key FROM accounts WHERE platform = 'ctrader' LIMIT 3")[1]]
    assert ctrader, "the simulated brokerage has cTrader accounts"
    tenants = [r[0] for r in store.query("SELECT DISTINCT tenant FROM accounts")[1]]
    [compliance] = [d for d in DASHBOARDS if d.uid == "brokerstream-compliance"]
    [account] = [p for p in compliance.panels if p.title == "Account"]
    sql = render_sql(account.sql, time_from=lo, time_to=hi, interval_s=3600,
                     variables={"tenant": tenants, "account": ctrader})
    names, rows = store.query(sql)
    assert rows and all(dict(zip(names, r, strict=True))["group"] == "not sent by platform" for r in rows)
    [risk] = [d for d in DASHBOARDS if d.uid == "brokerstream-risk-desk"]
    shown = []
    for panel in risk.panels:
        if panel.title == "Margin watch" or panel.title.startswith("Top accounts"):
            names, rows = store.query(render_sql(panel.sql, time_from=lo, time_to=hi, interval_s=3600,
                                                 variables={"tenant": tenants}))
            shown += [dict(zip(names, r, strict=True)) for r in rows]
    shown = [row for row in shown if str(row["account_key"]).startswith("ctrader:")]
    assert shown and all(row["margin_level"] == "not sent by platform" for row in shown)
