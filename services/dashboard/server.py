"""The built-in dashboard page: the dashboards/ definitions rendered without Grafana.

One definition, two renderers: Grafana reads `dashboards/*.json` through its ClickHouse and
Prometheus data sources; this page reads the same files (`definitions.load_dashboards`), runs
each ClickHouse panel's SQL (macros and variables expanded by `definitions.render_sql`) on the
Store. Their Prometheus panels (engine health) are Grafana's, PromQL included; here each has a
definition of its own (`engine_health`): this process's current metrics or a query on the
Store, no PromQL. The browser side is plain JS in `static/` (no build step, no CDN), its
charts drawn by Apache ECharts, vendored in `static/vendor/`.

Only the definitions' SQL is ever run: requests name a dashboard, a panel id, a time range and
variable values, and a variable value must be one of the variable's own query results. Queries
run with `readonly=2` (the server refuses writes) and a time limit.

Every page and API call needs a login (`auth.py`: users, argon2 hashes and signed session
cookies from `dashboard` in the configuration). A viewer sees only their tenants, enforced here,
on the server, twice: the `tenant` variable accepts only their tenants (any other value is a
403), and every query of theirs runs with ClickHouse's `additional_table_filters` restricting
every table, view and materialized view of the database to `tenant IN (<theirs>)` (a table
without a tenant column to nothing), so a panel or a variable that forgets its tenant filter
(the compliance board's `account` list) still returns only their rows. The engine-health
dashboards (this process's metrics, every tenant's traffic together) are for admins.

The embedded store (chdb) belongs to one process, so the page runs where the engine runs:
`start_dashboard_thread` serves it from a daemon thread of the calling process (`brokerstream
run --dashboard-port`, `brokerstream demo`); `brokerstream dashboard` serves a store no engine
holds, or a ClickHouse server.
"""

from __future__ import annotations

import html
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import parse_qs, urlencode

from fastapi import Depends, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import REGISTRY, CollectorRegistry

from pipelines.store import Store
from services.dashboard import engine_health, partners
from services.dashboard.auth import COOKIE, Authenticator, Identity, Throttled
from services.dashboard.definitions import (
    ALL_VALUE,
    Dashboard,
    Panel,
    Variable,
    load_dashboards,
    quote,
    render_sql,
)

if TYPE_CHECKING:
    import uvicorn

    from pipelines.config import Settings

log = logging.getLogger(__name__)

STATIC_DIR = Path(str(resources.files("services.dashboard").joinpath("static")))  # package data
MAX_ROWS = 5_000  # rows sent to the browser per panel; more is flagged `truncated`
QUERY_SETTINGS = {"readonly": 2, "max_execution_time": 30}
DEFAULT_POINTS = 500  # data points per time series panel: sets $__interval_s, as Grafana does
# "All data": the event-time span of the fact tables (the _store tables: no FINAL needed).
EXTENT_SQL = (
    "SELECT min(t0), max(t1) FROM ("
    " SELECT min(time) AS t0, max(time) AS t1 FROM deals_store"
    " UNION ALL SELECT min(time), max(time) FROM balance_operations_store"
    " UNION ALL SELECT min(time), max(time) FROM logins_store) WHERE t0 > toDateTime64(0, 3)"
    " HAVING count() > 0"  # no data yet: no row (an empty aggregate would be 1970)
)
_NICE_INTERVALS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600,
                     43200, 86400, 172800, 604800, 2592000)
_RELATIVE = re.compile(r"^now(?:-(\d+)([smhdwMy]))?(?:/([smhdwMy]))?$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "M": 2592000, "y": 31536000}
_LEADING_COMMENTS = re.compile(r"^(?:\s+|--[^\n]*\n?|/\*.*?\*/)*", re.S)
TENANT_VARIABLE = "tenant"  # the dashboards' tenant selector: only the user's own tenants pass
TEXTBOX_MAX = 200  # characters of a text box variable (the client view's search)
# Every object of the page's database and whether it has a tenant column: what a viewer's
# queries are filtered on. Read again before each of their queries, so a table created while
# the page runs is never read unfiltered.
OBJECTS_SQL = ("SELECT table, max(name = 'tenant') FROM system.columns "
               "WHERE database = currentDatabase() GROUP BY table")


class DashboardError(RuntimeError):
    """The page could not start (port taken, store not reachable): said plainly."""


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# ---- helpers ---------------------------------------------------------------------------

def _grid(panel: Panel) -> dict[str, int]:
    x, y, w, h = panel.grid
    return {"x": x, "y": y, "w": w, "h": h}


def is_single_select(sql: str) -> bool:
    """True for one SELECT (or WITH ... SELECT) statement: nothing else is run."""
    body = _LEADING_COMMENTS.sub("", sql).rstrip().rstrip(";").rstrip()
    if ";" in re.sub(r"'(?:[^'\\]|\\.)*'", "''", body):  # a second statement
        return False
    first = re.match(r"\(*\s*([A-Za-z]+)", body)
    return first is not None and first.group(1).upper() in ("SELECT", "WITH")


def _round_down(t: datetime, unit: str) -> datetime:
    if unit == "y":
        return t.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
    if unit == "M":
        return t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if unit == "w":  # ISO weeks start on Monday
        return (t - timedelta(days=t.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    t = t.replace(microsecond=0)
    if unit == "s":
        return t
    t = t.replace(second=0)
    if unit == "m":
        return t
    t = t.replace(minute=0)
    return t if unit == "h" else t.replace(hour=0)


def _round_up(t: datetime, unit: str) -> datetime:
    """The end of `t`'s period (Grafana rounds a range's `to` up: now/d ends at midnight)."""
    start = _round_down(t, unit)
    if unit == "y":
        nxt = start.replace(year=start.year + 1)
    elif unit == "M":
        nxt = start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    else:
        nxt = start + timedelta(seconds=_UNIT_S[unit])
    return nxt - timedelta(milliseconds=1)


def parse_time(text: str, now: datetime, *, is_end: bool = False) -> datetime:
    """Grafana's URL forms: `now`, `now-6h` (s m h d w M y), rounded `now/d`, `now-1d/d`,
    epoch milliseconds, ISO 8601. A rounded range end is the end of its period."""
    text = text.strip()
    rel = _RELATIVE.match(text)
    if rel:
        n, unit, rounding = rel.groups()
        t = now - timedelta(seconds=int(n) * _UNIT_S[unit]) if n else now
        if rounding:
            t = _round_up(t, rounding) if is_end else _round_down(t, rounding)
        return t
    if re.fullmatch(r"\d{9,14}", text):
        return datetime.fromtimestamp(int(text) / 1000, UTC)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, f"cannot read the time {text!r} (use now-6h, epoch ms or ISO 8601)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def interval_for(span_s: float, points: int = DEFAULT_POINTS) -> int:
    """The bucket width for about `points` points over `span_s`, rounded to a nice value."""
    raw = max(1.0, span_s / max(1, points))
    return next((n for n in _NICE_INTERVALS_S if n >= raw), math.ceil(raw))


def _column_type(values: Sequence[Any]) -> str:
    for v in values:
        if v is None:
            continue
        if isinstance(v, datetime | date):
            return "time"
        if isinstance(v, bool):
            return "boolean"
        if isinstance(v, int | float | Decimal):
            return "number"
        return "string"
    return "string"


def _json_value(v: Any) -> Any:
    if v is None or isinstance(v, bool | str | int):
        return v
    if isinstance(v, datetime):
        aware = v if v.tzinfo else v.replace(tzinfo=UTC)  # ClickHouse hands UTC as naive
        return int(aware.timestamp() * 1000)
    if isinstance(v, date):
        return int(datetime(v.year, v.month, v.day, tzinfo=UTC).timestamp() * 1000)
    if isinstance(v, float | Decimal):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, list | tuple):
        return [_json_value(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _json_value(x) for k, x in v.items()}
    return str(v)


def _short(message: str, limit: int = 600) -> str:
    message = " ".join(message.split())
    return message if len(message) <= limit else message[:limit] + " …"


# ---- the app ---------------------------------------------------------------------------

def _prometheus_only_for_admins(d: Dashboard) -> bool:
    return any(p.datasource_type == "prometheus" for p in d.panels)


class _Page:
    """State shared by the request handlers: the store (one lock: a chdb or HTTP session runs
    one query at a time), the definitions, cached variable values and the metric registries."""

    def __init__(self, store: Store | Callable[[], Store], dashboards: list[Dashboard],
                 registries: Sequence[CollectorRegistry], clock: Callable[[], float],
                 default_range: tuple[str, str] | None, auth: Authenticator) -> None:
        self.auth = auth
        self._store_or_factory = store
        self._store: Store | None = store if isinstance(store, Store) else None
        self.dashboards = {d.uid: d for d in dashboards}
        self.registries = tuple(registries)
        self.clock = clock
        self.default_range = default_range
        self.lock = threading.Lock()
        self._readonly = True
        self._variables: dict[tuple[str, str, str, tuple[str, ...] | None, str], tuple[float, list[str]]] = {}
        self._extent: dict[tuple[tuple[str, ...] | None, str],
                           tuple[float, tuple[datetime, datetime] | None]] = {}
        self.partners = partners.PartnerScopes()  # partner logins: their trees (partners.py)

    @property
    def store(self) -> Store:
        if self._store is None:
            factory = self._store_or_factory
            assert callable(factory)
            self._store = factory()
        return self._store

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    @staticmethod
    def scope(who: Identity) -> tuple[str, ...] | None:
        """The tenants `who`'s queries are limited to; None: every row (an admin)."""
        return None if who.admin else who.tenants

    def table_filters(self, tenants: tuple[str, ...]) -> str:
        """`additional_table_filters` (a ClickHouse Map literal) limiting every table, view and
        materialized view of the database to `tenants`; an object without a tenant column
        shows nothing. Called under the lock."""
        database = self.store.database
        rows = self.store.client.query(OBJECTS_SQL).result_rows
        allowed = f"tenant IN ({','.join(quote(t) for t in tenants) or 'NULL'})"
        entries = [f"{quote(f'{database}.{name}')}: {quote(allowed if has_tenant else '0')}"
                   for name, has_tenant in rows]
        return "{" + ", ".join(entries) + "}"

    def partner_scope(self, who: Identity) -> partners.PartnerScope:
        """A partner's tree and clients, read with their tenant's filters."""
        viewer = Identity(who.name, "viewer", who.tenants)
        return self.partners.scope(who, lambda sql: self.run(sql, viewer)[1])

    def run(self, sql: str, who: Identity) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run one of the definitions' SELECTs for `who`: a viewer's with their tenant filters,
        a partner's with their tree's (partners.py)."""
        if not is_single_select(sql):
            raise ApiError(400, "the panel's SQL is not a single SELECT; it is not run")
        tenants = self.scope(who)
        tree = self.partner_scope(who) if partners.is_partner(who) else None
        with self.lock:
            client = self.store.client
            settings: dict[str, Any] = dict(QUERY_SETTINGS) if self._readonly else {}
            if tree is not None:
                settings["additional_table_filters"] = partners.table_filters(
                    self.store.database, self.store.client.query(OBJECTS_SQL).result_rows, tree)
            elif tenants is not None:
                settings["additional_table_filters"] = self.table_filters(tenants)
            try:
                result = client.query(sql, settings=settings or None)
            except Exception as exc:
                readonly_user = "readonly" in str(exc).lower() and "setting" in str(exc).lower()
                if readonly_user and tenants is not None:
                    # Without its filters a viewer's query is not run at all.
                    raise ApiError(503, "the page's ClickHouse user may not change settings "
                                   "(readonly=1), so it cannot limit a viewer to their tenants: "
                                   "give it readonly=2") from None
                # A server user that is readonly=1 already may not set `readonly`: it is safe
                # without, then.
                if self._readonly and readonly_user:
                    self._readonly = False
                    result = client.query(sql)
                else:
                    raise
            return list(result.column_names), [tuple(r) for r in result.result_rows]

    def dashboard(self, uid: str, who: Identity) -> Dashboard:
        found = self.dashboards.get(uid)
        if found is None:
            raise ApiError(404, f"no dashboard {uid!r}")
        if not who.admin and _prometheus_only_for_admins(found):
            raise ApiError(403, f"{found.title}: the engine's own metrics are for admins")
        if partners.is_partner(who) and uid != partners.PARTNER_DASHBOARD:
            raise ApiError(403, f"{found.title}: a partner login sees its partner dashboard only")
        return found

    def visible(self, who: Identity) -> list[Dashboard]:
        if partners.is_partner(who):
            return [d for d in self.dashboards.values() if d.uid == partners.PARTNER_DASHBOARD]
        return [d for d in self.dashboards.values() if who.admin or not _prometheus_only_for_admins(d)]

    def extent(self, who: Identity) -> tuple[datetime, datetime] | None:
        """The event-time span ("all data") of `who`'s tenants' data, cached a few seconds."""
        now = time.monotonic()
        key = (self.scope(who), who.ib)
        cached = self._extent.get(key)
        if cached is not None and now - cached[0] < 5:
            return cached[1]
        try:
            _, rows = self.run(EXTENT_SQL, who)
            lo, hi = rows[0] if rows else (None, None)
        except Exception as exc:
            log.debug("no data extent: %s", exc)
            lo = hi = None
        span = None
        if isinstance(lo, datetime) and isinstance(hi, datetime):
            lo, hi = (v if v.tzinfo else v.replace(tzinfo=UTC) for v in (lo, hi))
            pad = max(timedelta(minutes=1), (hi - lo) / 50)  # a margin, as a chart wants
            span = (lo - pad, hi + pad)
        if len(self._extent) > 256:
            self._extent.clear()
        self._extent[key] = (now, span)
        return span

    def time_range(self, dashboard: Dashboard, frm: str | None, to: str | None,
                   who: Identity) -> tuple[datetime, datetime]:
        default_from, default_to = self.default_range or (dashboard.time_from, dashboard.time_to)
        if _prometheus_only_for_admins(dashboard) and "all" in (frm, to):
            # engine health is wall-clock time (metrics now, rows by ingested_at), not the
            # data's event time that "all data" spans (the demo's clock runs ahead)
            frm, to = dashboard.time_from, dashboard.time_to
        frm = frm or default_from or "now-6h"
        to = to or default_to or "now"
        now = self.now()
        if frm == "all" or to == "all":
            span = self.extent(who)
            if span is None:
                return now - timedelta(hours=1), now
            lo, hi = span
            return ((lo if frm == "all" else parse_time(frm, now)),
                    (hi if to == "all" else parse_time(to, now, is_end=True)))
        start, end = parse_time(frm, now), parse_time(to, now, is_end=True)
        if end <= start:
            raise ApiError(400, "the time range ends before it starts")
        return start, end

    def variable_values(self, dashboard: Dashboard, var: Variable, start: datetime,
                        end: datetime, who: Identity,
                        earlier: dict[str, list[str]] | None = None) -> list[str]:
        """The values a variable offers `who` (cached 30 s per rendered query and scope): also
        the only values a request may choose. `earlier`: the chosen values of the variables
        before it, which its query may use (a chained variable, as in Grafana). The tenant
        variable offers only `who`'s tenants; the ib variable a partner only its tree."""
        values = self._variable_values(dashboard, var, start, end, who, earlier or {})
        tenants = self.scope(who)
        if var.name == TENANT_VARIABLE and tenants is not None:
            values = [v for v in values if v in tenants]
        if var.name == partners.IB_VARIABLE and partners.is_partner(who):
            tree = self.partner_scope(who).tree
            values = [v for v in tree if v in values]
        return values

    def _variable_values(self, dashboard: Dashboard, var: Variable, start: datetime,
                         end: datetime, who: Identity, earlier: dict[str, list[str]]) -> list[str]:
        values: list[str]
        if var.type == "custom":
            return [v.strip() for v in var.query.split(",") if v.strip()]
        if var.type in ("constant", "textbox"):
            return [var.query]
        if var.datasource_type == "prometheus":
            m = re.fullmatch(r"\s*label_values\(\s*(?:([a-zA-Z_:][\w:]*)\s*,\s*)?([a-zA-Z_]\w*)\s*\)\s*",
                             var.query)
            return engine_health.label_values(self.registries, *m.groups()) if m else []
        sql = render_sql(var.query, time_from=start, time_to=end, variables=earlier, interval_s=60)
        key = (dashboard.uid, var.name, sql, self.scope(who), who.ib)
        cached = self._variables.get(key)
        if cached is not None and time.monotonic() - cached[0] < 30:
            return cached[1]
        _, rows = self.run(sql, who)
        values = [str(r[0]) for r in rows if r and r[0] is not None]
        if len(self._variables) > 256:  # queries with time macros differ at every request
            self._variables.clear()
        self._variables[key] = (time.monotonic(), values)
        return values

    def chosen_variables(self, dashboard: Dashboard, request: Request, start: datetime,
                         end: datetime, who: Identity, until: str | None = None) -> dict[str, list[str]]:
        """Each variable's values from `var-<name>` (Grafana's URL) or `<name>`; every value
        must be one the variable's query returns (a text box takes any text); none or
        `$__all`/`All` means all (of `who`'s). A tenant that is not `who`'s is refused with 403,
        whether it exists or not, and so is an IB outside a partner's tree. `until`: stop
        before that variable (the values its query may use)."""
        chosen: dict[str, list[str]] = {}
        tenants = self.scope(who)
        for var in dashboard.variables:
            if var.name == until:
                break
            asked = request.query_params.getlist(f"var-{var.name}") or request.query_params.getlist(var.name)
            if var.type == "textbox":  # free text, used quoted (render_sql): never split, never listed
                text = asked[0] if asked else (var.current[0] if var.current else var.query)
                if len(text) > TEXTBOX_MAX:
                    raise ApiError(400, f"{var.name}: at most {TEXTBOX_MAX} characters")
                chosen[var.name] = [text]
                continue
            allowed = self.variable_values(dashboard, var, start, end, who, chosen)
            # `tenant=acme,zenith` too, unless the comma is part of a value
            asked = [v for a in asked for v in ([a] if a in allowed else a.split(",")) if v]
            if var.name == TENANT_VARIABLE and tenants is not None:
                foreign = [v for v in asked if v not in tenants and v not in (ALL_VALUE, "All", "all")]
                if foreign:
                    raise ApiError(403, f"{var.name}: not your tenant(s): {', '.join(map(repr, foreign))}")
            if var.name == partners.IB_VARIABLE and partners.is_partner(who):
                foreign = [v for v in asked if v not in allowed and v not in (ALL_VALUE, "All", "all")]
                if foreign:
                    raise ApiError(403, f"{var.name}: not in your partner tree: "
                                        f"{', '.join(map(repr, foreign))}")
            if not asked:  # the definition's default selection
                asked = [v for v in var.current if v == ALL_VALUE or v in allowed]
                if not asked:
                    asked = [ALL_VALUE] if var.include_all or var.multi or not allowed else allowed[:1]
            if any(v in (ALL_VALUE, "All", "all") for v in asked):
                chosen[var.name] = allowed
                continue
            unknown = [v for v in asked if v not in allowed]
            if unknown:
                raise ApiError(400, f"{var.name}: unknown value(s) {', '.join(map(repr, unknown))}")
            chosen[var.name] = asked if var.multi else asked[:1]
        return chosen


def _panel_json(panel: Panel, dashboard_uid: str) -> dict[str, Any]:
    query = panel.sql
    if panel.datasource_type == "prometheus":  # what this page reads instead of the PromQL
        found = engine_health.definition(dashboard_uid, panel.id)
        query = engine_health.describe(found) if found else f"{panel.sql} (Grafana only)"
    return {
        "id": panel.id, "title": panel.title, "type": panel.type,
        "datasource": panel.datasource_type, "format": panel.format, "grid": _grid(panel),
        "unit": panel.unit, "description": panel.description,
        "query": query,
    }


def _dashboard_json(d: Dashboard) -> dict[str, Any]:
    return {
        "uid": d.uid, "title": d.title, "refresh": d.refresh or "",
        "time": {"from": d.time_from, "to": d.time_to},
        "variables": [{"name": v.name, "label": v.label or v.name, "type": v.type, "multi": v.multi,
                       "include_all": v.include_all, "current": list(v.current),
                       "description": v.description} for v in d.variables],
        "panels": [_panel_json(p, d.uid)
                   for p in sorted(d.panels, key=lambda p: (_grid(p)["y"], _grid(p)["x"]))],
    }


def _builtin_panel(page: _Page, d: Dashboard, panel: Panel, start: datetime, end: datetime,
                   interval_s: int, who: Identity) -> dict[str, Any]:
    """A Prometheus panel on this page: its built-in definition (engine_health), the metrics
    now or a query on the Store; a panel without one needs Prometheus (Grafana)."""
    found = engine_health.definition(d.uid, panel.id)
    if found is None:
        return {"columns": [], "rows": [], "unsupported": "needs Prometheus: this panel has no built-in "
                "definition (services/dashboard/engine_health.py); Grafana shows it"}
    extra = {k: v for k, v in (("unit", found.unit), ("note", found.note)) if v}
    if isinstance(found, engine_health.Current):
        rows = engine_health.current_values(found, page.registries, panel.legend)
        columns = [{"name": "series", "type": "string"}, {"name": "value", "type": "number"}]
        return {**extra, "columns": columns, "rows": rows}
    sql = render_sql(found.sql, time_from=start, time_to=end, variables={}, interval_s=interval_s)
    try:
        names, result = page.run(sql, who)
    except ApiError:
        raise
    except Exception as exc:
        log.info("panel %s/%s failed: %s", d.uid, panel.id, exc)
        raise ApiError(502, f"query failed: {_short(str(exc))}") from None
    columns = [{"name": n, "type": _column_type([r[i] for r in result[:50]])} for i, n in enumerate(names)]
    return {**extra, "columns": columns, "rows": [[_json_value(v) for v in r] for r in result[:MAX_ROWS]]}


def _api_user(request: Request) -> Identity:
    """The logged-in user of an API call (from the signed session cookie), or 401."""
    page: _Page = request.app.state.page
    who = page.auth.identify(request.cookies.get(COOKIE))
    if who is None:
        raise ApiError(401, "log in first (POST /login)")
    return who


# Every API route takes this: no route reaches the store without a logged-in user.
User = Annotated[Identity, Depends(_api_user)]


def _safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this site only (no `//host`, no scheme)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def create_app(store: Store | Callable[[], Store], *, auth: Authenticator,
               dashboards_dir: Path | None = None,
               registry: CollectorRegistry | Sequence[CollectorRegistry] = REGISTRY,
               clock: Callable[[], float] = time.time,
               default_range: tuple[str, str] | None = None) -> FastAPI:
    """The page as an ASGI app over `store` (or a factory, called at the first query), for the
    users `auth` knows (there is no way to serve it without logins).
    `registry`: where the engine-health panels' metrics are (this process's). `default_range`
    replaces the dashboards' own time range when the URL has none (the demo uses ("all",
    "all"): its simulated clock runs ahead of the wall clock)."""
    registries = [registry] if isinstance(registry, CollectorRegistry) else list(registry)
    page = _Page(store, load_dashboards(dashboards_dir), registries, clock, default_range, auth)
    app = FastAPI(title="brokerstream dashboards", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.page = page

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> Response:
        headers = {"WWW-Authenticate": 'Cookie realm="brokerstream"'} if exc.status == 401 else None
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=headers)

    @app.middleware("http")
    async def no_store(request: Request, call_next: Callable[[Request], Any]) -> Response:
        response: Response = await call_next(request)
        # tenant data must not linger in shared caches or the browser's back/forward cache
        if not request.url.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    def page_user(request: Request) -> Identity | None:
        return auth.identify(request.cookies.get(COOKIE))

    def to_login(request: Request) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)

    index = STATIC_DIR / "index.html"
    login_page = (STATIC_DIR / "login.html").read_text(encoding="utf-8")

    def render_login(target: str, message: str = "", status: int = 200) -> HTMLResponse:
        body = (login_page.replace("{{next}}", html.escape(_safe_next(target), quote=True))
                .replace("{{message}}", html.escape(message))
                .replace("{{message_hidden}}", "" if message else "hidden"))
        return HTMLResponse(body, status_code=status)

    @app.get("/login", include_in_schema=False)
    def login_form(request: Request) -> Response:
        return render_login(request.query_params.get("next") or "/")

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=10)
        name = (form.get("name") or [""])[0].strip()
        password = (form.get("password") or [""])[0]
        target = _safe_next((form.get("next") or ["/"])[0])
        address = request.client.host if request.client else ""
        try:
            who = auth.login(name, password, address) if name and password else None
        except Throttled as exc:
            log.warning("dashboard: login of %r from %s throttled", name, address)
            return render_login(target, str(exc), 429)
        if who is None:
            log.info("dashboard: failed login of %r from %s", name, address)
            return render_login(target, "Wrong name or password.", 401)
        response = RedirectResponse(target, status_code=303)
        # HttpOnly: no script reads it. Lax: sent when following a link to the page, never
        # with another site's POST or its fetches (the API only reads; /login and /logout are
        # the POSTs), so no cross-site request acts as the user.
        response.set_cookie(COOKIE, auth.issue(who), max_age=int(auth.session_s), httponly=True,
                            samesite="lax", secure=auth.secure_cookie, path="/")
        return response

    @app.post("/logout", include_in_schema=False)
    def logout() -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax", secure=auth.secure_cookie)
        return response

    @app.get("/", include_in_schema=False)
    def home(request: Request) -> Response:
        if page_user(request) is None:
            return to_login(request)
        return FileResponse(index, headers={"Cache-Control": "no-cache"})

    @app.get("/d/{uid}", include_in_schema=False)
    @app.get("/d/{uid}/{slug}", include_in_schema=False)
    def dashboard_page(uid: str, request: Request, slug: str = "") -> Response:
        who = page_user(request)
        if who is None:
            return to_login(request)
        page.dashboard(uid, who)
        return FileResponse(index, headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/api/me")
    def me(who: User) -> dict[str, Any]:
        return who.public()

    @app.get("/api/dashboards")
    def dashboards(who: User) -> dict[str, Any]:
        return {"dashboards": [_dashboard_json(d) for d in page.visible(who)],
                "default_range": list(page.default_range) if page.default_range else None,
                "user": who.public()}

    @app.get("/api/dashboards/{uid}")
    def one_dashboard(uid: str, who: User) -> dict[str, Any]:
        return _dashboard_json(page.dashboard(uid, who))

    @app.get("/api/extent")
    def extent(who: User) -> dict[str, Any]:
        span = page.extent(who)
        return {"from": _json_value(span[0]) if span else None, "to": _json_value(span[1]) if span else None}

    @app.get("/api/variables/{uid}/{name}")
    def variable(uid: str, name: str, request: Request, who: User) -> dict[str, Any]:
        d = page.dashboard(uid, who)
        var = next((v for v in d.variables if v.name == name), None)
        if var is None:
            raise ApiError(404, f"dashboard {uid!r} has no variable {name!r}")
        start, end = page.time_range(d, request.query_params.get("from"), request.query_params.get("to"), who)
        try:
            earlier = page.chosen_variables(d, request, start, end, who, until=name)
            values = page.variable_values(d, var, start, end, who, earlier)
        except ApiError:
            raise
        except Exception as exc:
            raise ApiError(502, f"variable query failed: {_short(str(exc))}") from None
        return {"name": name, "values": values, "multi": var.multi, "include_all": var.include_all}

    @app.get("/api/dashboards/{uid}/panels/{panel_id}")
    def panel_data(uid: str, panel_id: str, request: Request,
                   who: User) -> dict[str, Any]:
        d = page.dashboard(uid, who)
        panel = next((p for p in d.panels if str(p.id) == panel_id), None)
        if panel is None:
            raise ApiError(404, f"dashboard {uid!r} has no panel {panel_id!r}")
        params = request.query_params
        start, end = page.time_range(d, params.get("from"), params.get("to"), who)
        try:
            points = min(2000, max(20, int(params.get("points") or DEFAULT_POINTS)))
        except ValueError:
            raise ApiError(400, "points must be a number") from None
        interval_s = interval_for((end - start).total_seconds(), points)
        started = time.perf_counter()
        base = {"from": _json_value(start), "to": _json_value(end), "interval_s": interval_s}
        if panel.datasource_type == "prometheus":
            body = _builtin_panel(page, d, panel, start, end, interval_s, who)
            return {**base, **body, "truncated": False,
                    "took_ms": round((time.perf_counter() - started) * 1000, 1)}
        try:
            variables = page.chosen_variables(d, request, start, end, who)
        except ApiError:
            raise
        except Exception as exc:
            raise ApiError(502, f"variable query failed: {_short(str(exc))}") from None
        sql = render_sql(panel.sql, time_from=start, time_to=end, variables=variables, interval_s=interval_s)
        try:
            names, rows = page.run(sql, who)
        except ApiError:
            raise
        except Exception as exc:
            log.info("panel %s/%s failed: %s", uid, panel.id, exc)
            raise ApiError(502, f"query failed: {_short(str(exc))}") from None
        truncated = len(rows) > MAX_ROWS
        rows = rows[:MAX_ROWS]
        columns = [{"name": n, "type": _column_type([r[i] for r in rows[:50]])} for i, n in enumerate(names)]
        return {**base, "columns": columns, "rows": [[_json_value(v) for v in r] for r in rows],
                "truncated": truncated, "took_ms": round((time.perf_counter() - started) * 1000, 1)}

    # -- the Cases view (issue 16): services/dashboard/cases.py --
    from services.dashboard.cases import register_cases

    register_cases(app, page, page_user, to_login, ApiError, STATIC_DIR)
    return app


# ---- serving ---------------------------------------------------------------------------

def _serve(app: FastAPI, host: str, port: int,
           log_level: str = "warning") -> tuple[uvicorn.Server, threading.Thread]:
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level,
                                           access_log=False))
    failed: list[BaseException] = []

    def run() -> None:
        try:
            server.run()
        except BaseException as exc:  # uvicorn exits with SystemExit when it cannot bind
            failed.append(exc)

    thread = threading.Thread(target=run, daemon=True, name="dashboard-page")
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    if not server.started:
        server.should_exit = True
        raise DashboardError(f"the dashboard page could not listen on {host}:{port} "
                             "(is the port in use? choose another with --dashboard-port)")
    return server, thread


def bound_port(server: uvicorn.Server) -> int:
    """The port a started server listens on (useful with port 0)."""
    for srv in getattr(server, "servers", []):
        for sock in srv.sockets:
            return int(sock.getsockname()[1])
    return int(server.config.port)


def authenticator(settings: Settings) -> Authenticator:
    """The logins of `settings.dashboard`; without any user the page does not start."""
    if not settings.dashboard.users:
        raise DashboardError(
            "the dashboard page needs at least one login: add dashboard.users to the configuration "
            "(name, password_hash from `brokerstream dashboard hash-password`, tenants, role) — see "
            "docs/production.md, Tenant isolation")
    problems = partners.check_partner_logins(settings)
    if problems:
        raise DashboardError("; ".join(problems))
    return Authenticator.from_config(settings.dashboard, [t.id for t in settings.tenants])


def start_dashboard_thread(settings: Settings, port: int, host: str = "127.0.0.1", *,
                           default_range: tuple[str, str] | None = None,
                           database: str | None = None,
                           registries: Sequence[CollectorRegistry] = ()) -> uvicorn.Server:
    """Serve the page from a daemon thread of this process (the one holding the embedded
    store) on the configured ClickHouse; returns the started uvicorn server (stop it with
    `server.should_exit = True`). `registries`: more metrics than prometheus_client's default
    registry (the webhook receiver's). Raises DashboardError when it cannot listen or no
    login is configured."""
    dsn, db = settings.clickhouse_dsn(), database or settings.clickhouse.database
    app = create_app(lambda: Store(dsn, db), auth=authenticator(settings), default_range=default_range,
                     registry=[REGISTRY, *registries])
    app.state.case_categories = settings.cases.categories  # which alerts are filed into cases
    server, _ = _serve(app, host, port)
    return server


def run_dashboard(settings: Settings, port: int, host: str = "127.0.0.1", *,
                  database: str | None = None) -> None:
    """`brokerstream dashboard`: open the store here and serve the page until interrupted."""
    import uvicorn

    from pipelines.store import open_store

    dsn, db = settings.clickhouse_dsn(), database or settings.clickhouse.database
    auth = authenticator(settings)
    try:
        # The embedded store is ours alone here: bring its schema up, so an empty store shows
        # empty panels rather than missing tables. A server may give a read-only user.
        store = open_store(dsn, db) if dsn.startswith("chdb:") else Store(dsn, db)
    except Exception as exc:
        hint = (" — is an engine (brokerstream run / demo) using it? The embedded store opens in "
                "one process only: start the engine with --dashboard-port instead"
                if dsn.startswith("chdb:") else "")
        raise DashboardError(f"cannot open ClickHouse {dsn}: {_short(str(exc), 300)}{hint}") from None
    try:
        app = create_app(store, auth=auth)
        app.state.case_categories = settings.cases.categories  # which alerts are filed into cases
        uvicorn.run(app, host=host, port=port, log_level=settings.log_level, access_log=False)
    finally:
        store.close()
