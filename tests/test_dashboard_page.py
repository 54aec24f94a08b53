"""The built-in dashboard page (services/dashboard/server.py and static/) over the simulated
brokerage's store: the API answers every ClickHouse panel with rows, runs only the
definitions' SQL, and the page itself, loaded in headless Chromium after logging in through its
form, draws every panel without an error, every chart by ECharts (static/vendor/). Screenshots
go to test-artifacts/dashboard-<uid>.png.
Logins and tenant isolation have their own tests: tests/test_tenant_isolation.py."""

from __future__ import annotations

import base64
import html
import json
import os
import shutil
import struct
import subprocess
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from brokerstream.cli import build_parser
from services.dashboard.definitions import Dashboard, load_dashboards
from services.dashboard.server import bound_port, create_app, is_single_select, start_dashboard_thread
from tests.dashboard_logins import ADMIN, PASSWORDS, VIEWER, auth_for, log_in, with_logins
from tests.helpers import bound
from tests.view_picks import busy_ib, client_value, rich_client

if TYPE_CHECKING:
    from tests.conftest import SimulatedStore

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"
DASHBOARDS = load_dashboards()
CLICKHOUSE = [d for d in DASHBOARDS if all(p.datasource_type == "clickhouse" for p in d.panels)]
PROMETHEUS = [d for d in DASHBOARDS if any(p.datasource_type == "prometheus" for p in d.panels)]


def _ms(t: Any) -> int:
    return int(t.timestamp() * 1000)


@pytest.fixture(scope="module")
def page_params(simulated_store: SimulatedStore) -> dict[str, str]:
    """The simulated history's time range (it lies in the past), and an account for the
    compliance drill-down that has alerts, payments and logins, so that its panels have rows."""
    store = simulated_store.store
    account = store.scalar(
        "SELECT account_key FROM accounts WHERE account_key IN (SELECT subject FROM alerts) "
        "AND (server, login) IN (SELECT server, login FROM logins) "
        "AND (server, login) IN (SELECT server, login FROM balance_operations) "
        "ORDER BY account_key LIMIT 1")
    params = {"from": str(_ms(simulated_store.time_from - timedelta(hours=1))),
              "to": str(_ms(simulated_store.time_to + timedelta(hours=1)))}
    if account:
        params["var-account"] = account
    # the client and partner views: a client and an IB with every kind of data
    params["var-client"] = client_value(store, rich_client(store))
    params["var-ib"] = busy_ib(store)
    return params


@pytest.fixture(scope="module")
def client(simulated_store: SimulatedStore) -> Iterator[TestClient]:
    """The API as an admin sees it (every tenant, engine health too)."""
    app = create_app(simulated_store.store, auth=auth_for(simulated_store.settings))
    with TestClient(app) as c:
        log_in(c, ADMIN)
        yield c


def _may_be_empty(dashboard: Dashboard, params: dict[str, str]) -> set[int]:
    """Panels allowed no rows: the per-account ones when no account has everything."""
    if "var-account" in params:
        return set()
    return {p.id for p in dashboard.panels if "${account" in p.sql}


# ---- API -----------------------------------------------------------------------------------

def test_definitions_and_index(client: TestClient) -> None:
    listed = client.get("/api/dashboards").json()["dashboards"]
    assert {d["uid"] for d in listed} == {d.uid for d in DASHBOARDS}
    assert len(CLICKHOUSE) >= 4 and PROMETHEUS
    for d in listed:
        assert d["panels"] and all(set(p["grid"]) == {"x", "y", "w", "h"} for p in d["panels"])
    home = client.get("/")
    assert home.status_code == 200 and "app.js" in home.text
    assert client.get(f"/d/{DASHBOARDS[0].uid}").status_code == 200
    assert client.get("/d/no-such-dashboard").status_code == 404
    for name in ("app.js", "app.css"):
        assert client.get(f"/static/{name}").status_code == 200
    # the chart library is served by the page itself (no CDN: the page works offline)
    assert "/static/vendor/echarts.common.min.js" in home.text
    lib = client.get("/static/vendor/echarts.common.min.js")
    assert lib.status_code == 200 and "Apache Software Foundation" in lib.text[:2000]
    assert "cdn" not in home.text.lower() and "https://" not in home.text
    assert client.get("/healthz").json()["status"] == "ok"


@pytest.mark.parametrize("dashboard", CLICKHOUSE, ids=lambda d: d.uid)
def test_every_clickhouse_panel_answers_rows(client: TestClient, page_params: dict[str, str],
                                             dashboard: Dashboard) -> None:
    may_be_empty = _may_be_empty(dashboard, page_params)
    for var in dashboard.variables:
        values = client.get(f"/api/variables/{dashboard.uid}/{var.name}", params=page_params).json()
        assert values["values"], f"{dashboard.uid}: variable {var.name} has no values"
    for panel in dashboard.panels:
        r = client.get(f"/api/dashboards/{dashboard.uid}/panels/{panel.id}", params=page_params)
        assert r.status_code == 200, f"{dashboard.uid} / {panel.title}: {r.text}"
        body = r.json()
        assert body["columns"], panel.title
        if panel.id not in may_be_empty:
            assert body["rows"], f"{dashboard.uid} / {panel.title}: no rows"
        assert all(len(row) == len(body["columns"]) for row in body["rows"])
        if panel.type == "timeseries" and body["rows"]:
            assert any(c["type"] == "time" for c in body["columns"]), panel.title


def test_variables_tenant_filter_and_bad_requests(client: TestClient, page_params: dict[str, str]) -> None:
    # a dashboard whose other variables do not depend on the tenant (the client list does)
    d = next(d for d in CLICKHOUSE if any(v.name == "tenant" for v in d.variables)
             and not any("${tenant" in v.query for v in d.variables))
    panel = next(p for p in d.panels if "${tenant" in p.sql)
    url = f"/api/dashboards/{d.uid}/panels/{panel.id}"
    tenants = client.get(f"/api/variables/{d.uid}/tenant", params=page_params).json()["values"]
    assert tenants == ["acme", "zenith"]
    everyone = client.get(url, params=page_params).json()
    assert client.get(url, params={**page_params, "var-tenant": "All"}).json()["rows"] == everyone["rows"]
    both = client.get(url + "?" + urlencode({**page_params, "var-tenant": tenants}, doseq=True)).json()
    assert both["rows"] == everyone["rows"]
    # Grafana's `var-tenant` and the short `tenant` are the same
    one = client.get(url, params={**page_params, "tenant": "zenith"}).json()
    assert one["rows"] == client.get(url, params={**page_params, "var-tenant": "zenith"}).json()["rows"]
    # only values the variable's own query returns are accepted: nothing else reaches the SQL
    r = client.get(url, params={**page_params, "var-tenant": "acme') OR 1=1 --"})
    assert r.status_code == 400 and "unknown value" in r.json()["error"]
    assert client.get(f"/api/dashboards/{d.uid}/panels/9999", params=page_params).status_code == 404
    assert client.get(f"/api/dashboards/{d.uid}/panels/abc").status_code == 404
    assert client.get("/api/dashboards/no-such/panels/1").status_code == 404
    assert client.get(f"/api/variables/{d.uid}/nope").status_code == 404
    r = client.get(url, params={"from": "yesterday-ish", "to": "now"})
    assert r.status_code == 400 and "cannot read the time" in r.json()["error"]
    assert client.get(url, params={"from": "now", "to": "now-1h"}).status_code == 400


def test_sql_is_never_taken_from_the_request(client: TestClient, page_params: dict[str, str],
                                             simulated_store: SimulatedStore) -> None:
    d = CLICKHOUSE[0]
    panel = d.panels[0]
    url = f"/api/dashboards/{d.uid}/panels/{panel.id}"
    plain = client.get(url, params=page_params).json()
    sneaky = {**page_params, "sql": "SELECT 42 AS answer", "rawSql": "SELECT 42 AS answer",
              "query": "DROP TABLE deals", "expr": "up"}
    assert client.get(url, params=sneaky).json()["rows"] == plain["rows"]
    assert client.post(url, json={"sql": "DROP TABLE deals"}).status_code == 405
    assert client.put(url, content="DROP TABLE deals").status_code == 405
    assert client.delete(url).status_code == 405
    assert simulated_store.store.scalar("SELECT count() FROM deals") > 0
    # the definitions' own SQL must be one SELECT
    assert is_single_select("-- note\nWITH x AS (SELECT 1) SELECT * FROM x")
    assert is_single_select("SELECT ';' AS semicolon;")
    for bad in ("INSERT INTO deals SELECT * FROM deals", "SELECT 1; DROP TABLE deals", "DROP TABLE deals",
                "/* SELECT */ ALTER TABLE deals DELETE WHERE 1", "SYSTEM SHUTDOWN"):
        assert not is_single_select(bad), bad


def _grafana_json(uid: str, panels: list[dict[str, Any]]) -> str:
    return json.dumps({"uid": uid, "title": uid, "refresh": "", "time": {"from": "now-1h", "to": "now"},
                       "templating": {"list": []}, "panels": panels})


def _ch_panel(pid: int, title: str, sql: str, x: int = 0) -> dict[str, Any]:
    ds = {"type": "grafana-clickhouse-datasource", "uid": "${datasource}"}
    return {"id": pid, "title": title, "type": "table", "datasource": ds,
            "gridPos": {"x": x, "y": 0, "w": 8, "h": 6},
            "targets": [{"refId": "A", "datasource": ds, "rawSql": sql, "format": 1}]}


def _prom_panel(pid: int, title: str, expr: str, kind: str = "timeseries") -> dict[str, Any]:
    ds = {"type": "prometheus", "uid": "${prometheus}"}
    return {"id": pid, "title": title, "type": kind, "datasource": ds,
            "gridPos": {"x": 0, "y": 6, "w": 12, "h": 6},
            "targets": [{"refId": "A", "datasource": ds, "expr": expr}]}


@pytest.fixture(scope="module")
def probe_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Dashboards that exercise the failure paths: a failing query, a statement that is not a
    SELECT, Prometheus panels without a built-in definition, next to panels that work."""
    directory = tmp_path_factory.mktemp("probe-dashboards")
    (directory / "probe.json").write_text(_grafana_json("probe", [
        _ch_panel(1, "works", "SELECT 1 AS one"),
        _ch_panel(2, "fails", "SELECT * FROM no_such_table", x=8),
        _ch_panel(3, "not a select", "CREATE TABLE dash_probe (x UInt8) ENGINE = Memory", x=16),
        _prom_panel(4, "rate", "sum by (topic) (rate(probe_events_total[1m]))"),
        _prom_panel(5, "no definition either", "predict_linear(probe_events_total[1h], 3600)", "stat"),
    ]))
    return directory


def test_failures_are_json_errors_and_unmapped_prometheus_panels(simulated_store: SimulatedStore,
                                                                probe_dir: Path) -> None:
    app = create_app(simulated_store.store, auth=auth_for(simulated_store.settings), dashboards_dir=probe_dir,
                     registry=CollectorRegistry())
    with TestClient(app) as c:
        log_in(c, ADMIN)
        url = "/api/dashboards/probe/panels/{}"
        assert c.get(url.format(1)).json()["rows"] == [[1]]
        r = c.get(url.format(2))
        assert r.status_code == 502 and "no_such_table" in r.json()["error"].lower()
        r = c.get(url.format(3))
        assert r.status_code == 400 and "not a single SELECT" in r.json()["error"]
        assert not simulated_store.store.scalar("SELECT count() FROM system.tables WHERE name = 'dash_probe'")
        # no PromQL is evaluated here: a Prometheus panel without a built-in definition
        # (services/dashboard/engine_health.py) is Grafana's
        for pid in (4, 5):
            body = c.get(url.format(pid)).json()
            assert body["unsupported"].startswith("needs Prometheus") and body["rows"] == []


def test_cli_has_the_dashboard_commands() -> None:
    parser = build_parser()
    args = parser.parse_args(["dashboard", "--port", "8123", "--database", "brokerstream_demo"])
    assert (args.port, args.host, args.database) == (8123, "127.0.0.1", "brokerstream_demo")
    assert parser.parse_args(["run", "--dashboard-port", "8050"]).dashboard_port == 8050
    assert parser.parse_args(["run"]).dashboard_port is None
    assert parser.parse_args(["demo"]).dashboard_port == 8050
    assert parser.parse_args(["demo", "--dashboard-port", "0"]).dashboard_port == 0
    assert parser.parse_args(["dashboard"]).action == "serve"
    assert parser.parse_args(["dashboard", "hash-password"]).action == "hash-password"
    args = parser.parse_args(["tenants", "grants", "--tenant", "acme", "--tenant", "zenith"])
    assert (args.action, args.tenant, args.apply) == ("grants", ["acme", "zenith"], False)


# ---- the page in headless Chromium ---------------------------------------------------------------

CHART_TYPES = {"timeseries", "barchart", "bargauge", "piechart"}  # drawn by ECharts (stat: its sparkline)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
NO_CHROMIUM = "no chromium binary (scripts/test installs it as root: apt-get install chromium)"
# In CI the browser test must run: a missing browser fails there instead of skipping.
SKIP_BROWSER = CHROMIUM is None and not os.environ.get("CI")


class _DomReport(HTMLParser):
    """What the test needs from the dumped DOM: each panel's state, error boxes, #errors."""

    def __init__(self) -> None:
        super().__init__()
        self.panels: dict[str, str] = {}
        self.error_boxes = 0
        self.errors_count = ""
        self.errors_text = ""
        self.ready = ""
        self.html = ""
        self.user_tenants: str | None = None
        self.options: list[str] = []
        # per panel: the ECharts instances in it and the SVG shapes they drew
        self.charts: dict[str, int] = {}
        self.shapes: dict[str, int] = {}
        self._in_errors = False
        self._panel: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "body":
            self.ready = a.get("data-ready") or ""
        if tag == "section" and "panel" in classes:
            self._panel = a.get("data-panel-id") or "?"
            self.panels[self._panel] = a.get("data-state") or ""
            self.charts[self._panel] = self.shapes[self._panel] = 0
        if self._panel is not None:
            if a.get("data-chart") == "echarts" and "_echarts_instance_" in a:
                self.charts[self._panel] += 1
            if tag in ("path", "rect", "circle", "text"):
                self.shapes[self._panel] += 1
        if "panel-error" in classes:
            self.error_boxes += 1
        if a.get("id") == "user":
            self.user_tenants = a.get("data-tenants") or ""
        if tag == "input" and (a.get("name") or "").startswith("var-tenant"):
            self.options.append(a.get("name") or "")
        if a.get("id") == "errors":
            self.errors_count = a.get("data-count") or ""
            self._in_errors = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "pre":
            self._in_errors = False
        if tag == "section":
            self._panel = None

    def handle_data(self, data: str) -> None:
        if self._in_errors:
            self.errors_text += data


def _login_url(url: str, user: str) -> str:
    """A page that logs `user` in through the dashboard's own form (POST /login, as a person
    would) and lands on `url`: headless Chromium has no other way to carry a session."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    fields = "".join(f'<input name="{k}" value="{html.escape(v, quote=True)}">'
                     for k, v in (("name", user), ("password", PASSWORDS[user]), ("next", target)))
    form = (f'<form method="post" action="{parts.scheme}://{parts.netloc}/login">{fields}</form>'
            "<script>document.forms[0].submit()</script>")
    return "data:text/html;base64," + base64.b64encode(form.encode()).decode()


def _chromium(url: str, screenshot: Path, user: str | None = ADMIN) -> _DomReport:
    assert CHROMIUM is not None
    screenshot.unlink(missing_ok=True)
    out = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--virtual-time-budget=15000",
         "--window-size=1600,2400", f"--screenshot={screenshot}", "--dump-dom",
         _login_url(url, user) if user else url],
        capture_output=True, text=True, timeout=bound(60), check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    report = _DomReport()
    report.feed(out.stdout)
    report.html = out.stdout
    return report


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


@pytest.fixture(scope="module")
def served(simulated_store: SimulatedStore) -> Iterator[str]:
    """The page as the engine serves it: start_dashboard_thread in this process, any port."""
    server = start_dashboard_thread(with_logins(simulated_store.settings), 0)
    try:
        yield f"http://127.0.0.1:{bound_port(server)}"
    finally:
        server.should_exit = True


@pytest.mark.skipif(SKIP_BROWSER, reason=NO_CHROMIUM)
def test_every_dashboard_renders_in_chromium(served: str, page_params: dict[str, str]) -> None:
    with urllib.request.urlopen(f"{served}/healthz", timeout=10) as r:
        assert json.load(r)["status"] == "ok"
    ARTIFACTS.mkdir(exist_ok=True)
    pages = [(d, {**page_params, "refresh": "off"}) for d in CLICKHOUSE]
    # engine health: this process's own metrics (the simulated replay ran here), wall clock
    pages += [(d, {"from": "now-1h", "to": "now", "refresh": "off"}) for d in PROMETHEUS]
    with ThreadPoolExecutor(3) as pool:
        reports = list(pool.map(
            lambda item: _chromium(f"{served}/d/{item[0].uid}?{urlencode(item[1])}",
                                   ARTIFACTS / f"dashboard-{item[0].uid}.png"), pages))
    for (d, params), report in zip(pages, reports, strict=True):
        assert report.ready == "1", f"{d.uid}: the page did not finish loading"
        assert report.errors_count == "0" and not report.errors_text.strip(), f"{d.uid}: {report.errors_text}"
        assert report.error_boxes == 0, f"{d.uid}: {report.panels}"
        assert set(report.panels) == {str(p.id) for p in d.panels}, d.uid
        prometheus = any(p.datasource_type == "prometheus" for p in d.panels)
        allowed = {"ok", "empty", "unsupported"} if prometheus else {"ok"}
        may_be_empty = _may_be_empty(d, params)
        for pid, state in report.panels.items():
            ok = state in allowed or (state == "empty" and int(pid) in may_be_empty)
            assert ok, f"{d.uid}: panel {pid} is {state!r}"
        # every chart drawn is ECharts' (SVG renderer): an instance with shapes in it
        for p in d.panels:
            if p.type in CHART_TYPES and report.panels[str(p.id)] == "ok":
                pid = str(p.id)
                drawn = (report.charts[pid], report.shapes[pid])
                assert drawn[0] >= 1 and drawn[1] > 3, f"{d.uid}: {p.title!r}: no ECharts chart {drawn}"
        assert sum(report.charts.values()) > 0 or not any(p.type in CHART_TYPES for p in d.panels), d.uid
        shot = ARTIFACTS / f"dashboard-{d.uid}.png"
        assert shot.exists() and shot.stat().st_size > 30_000, f"{shot} missing or blank"
        assert _png_size(shot) == (1600, 2400)


@pytest.mark.skipif(SKIP_BROWSER, reason=NO_CHROMIUM)
def test_the_page_shows_failures(simulated_store: SimulatedStore, probe_dir: Path, tmp_path: Path) -> None:
    """The checks above can fail: a failing query is an error box, its request is in #errors,
    a Prometheus panel without a built-in definition is a note, and the working panel still
    renders."""
    from services.dashboard.server import _serve

    app = create_app(simulated_store.store, auth=auth_for(simulated_store.settings), dashboards_dir=probe_dir,
                     registry=CollectorRegistry())
    server, _ = _serve(app, "127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{bound_port(server)}/d/probe?refresh=off"
        report = _chromium(url, tmp_path / "probe.png")
    finally:
        server.should_exit = True
    assert report.panels == {"1": "ok", "2": "error", "3": "error", "4": "unsupported", "5": "unsupported"}
    assert report.error_boxes == 2
    assert report.errors_count == "2" and "no_such_table" in report.errors_text.lower()


@pytest.mark.skipif(SKIP_BROWSER, reason=NO_CHROMIUM)
def test_chromium_login_wall_and_a_viewers_page(served: str, page_params: dict[str, str],
                                                tmp_path: Path) -> None:
    """Without a session the browser lands on the login form; a viewer logged in through it sees
    their dashboards drawn, their own tenant only, and no engine-health dashboard."""
    risk = next(d for d in CLICKHOUSE if any(v.name == "tenant" for v in d.variables))
    url = f"{served}/d/{risk.uid}?{urlencode({**page_params, 'refresh': 'off'})}"
    wall = _chromium(url, tmp_path / "wall.png", user=None)
    assert 'id="login"' in wall.html and not wall.panels
    report = _chromium(url, ARTIFACTS / "dashboard-viewer.png", user=VIEWER)
    assert report.ready == "1" and report.errors_count == "0", report.errors_text
    assert report.user_tenants == "acme"
    assert set(report.panels) == {str(p.id) for p in risk.panels}
    assert report.error_boxes == 0 and set(report.panels.values()) <= {"ok", "empty"}, report.panels
    assert "zenith" not in report.html  # neither in the tenant menu nor in any table
    health = next(d for d in PROMETHEUS)
    refused = _chromium(f"{served}/d/{health.uid}", tmp_path / "health.png", user=VIEWER)
    assert not refused.panels and "admins" in refused.html
