"""Tenants are isolated (issue 13): the dashboard page's logins and an attacker's attempts, the
server-side tenant limits of every query, and the ClickHouse users and row policies generated
for a server — checked on the embedded engine as far as it goes (chdb has no access control:
see the last tests)."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from pipelines.config import ConfigError, DashboardUser, parse_settings
from pipelines.store import Store
from services import tenant_grants as tg
from services.dashboard import auth as auth_module
from services.dashboard.auth import COOKIE, Authenticator, hash_password
from services.dashboard.definitions import load_dashboards, quote
from services.dashboard.server import create_app
from tests.conftest import SimulatedStore
from tests.dashboard_logins import ADMIN, OTHER, PASSWORDS, SECRET, USERS, VIEWER, auth_for, log_in
from tests.helpers import bound

REPO = Path(__file__).resolve().parent.parent
DASHBOARDS = load_dashboards()
CLICKHOUSE = [d for d in DASHBOARDS if all(p.datasource_type == "clickhouse" for p in d.panels)]
HEALTH = next(d for d in DASHBOARDS if any(p.datasource_type == "prometheus" for p in d.panels))
RISK = next(d for d in CLICKHOUSE if d.uid == "brokerstream-risk-desk")
COMPLIANCE = next(d for d in CLICKHOUSE if d.uid == "brokerstream-compliance")
TENANT_PANEL = next(p for p in RISK.panels if "${tenant" in p.sql and p.type == "table")


@pytest.fixture(scope="module")
def app(simulated_store: SimulatedStore) -> Any:
    return create_app(simulated_store.store, auth=auth_for(simulated_store.settings))


@pytest.fixture
def anonymous(app: Any) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@pytest.fixture
def viewer(app: Any) -> Iterator[TestClient]:
    with TestClient(app) as c:
        log_in(c, VIEWER)
        yield c


@pytest.fixture
def admin(app: Any) -> Iterator[TestClient]:
    with TestClient(app) as c:
        log_in(c, ADMIN)
        yield c


@pytest.fixture(scope="module")
def span(simulated_store: SimulatedStore) -> dict[str, str]:
    ms = lambda t: str(int(t.timestamp() * 1000))  # noqa: E731
    return {"from": ms(simulated_store.time_from), "to": ms(simulated_store.time_to)}


def _api_urls() -> list[str]:
    panel = f"/api/dashboards/{RISK.uid}/panels/{TENANT_PANEL.id}"
    return [
        "/api/me",
        "/api/dashboards",
        f"/api/dashboards/{RISK.uid}",
        "/api/extent",
        f"/api/variables/{RISK.uid}/tenant",
        panel,
        f"{panel}?var-tenant=zenith",
    ]


# ---- no session, forged sessions ------------------------------------------------------------


def test_no_cookie_is_401_on_the_api_and_a_redirect_on_pages(anonymous: TestClient) -> None:
    for url in _api_urls():
        r = anonymous.get(url)
        assert r.status_code == 401, url
        assert r.json() == {"error": "log in first (POST /login)"}
        assert "rows" not in r.text
    for url in ("/", f"/d/{RISK.uid}?var-tenant=acme"):
        r = anonymous.get(url, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next="), url
    login = anonymous.get("/login")
    assert login.status_code == 200 and 'action="/login"' in login.text
    # what needs no login holds no data
    assert anonymous.get("/healthz").json() == {"status": "ok"}
    assert anonymous.get("/static/app.js").status_code == 200


def _cookie_of(client: TestClient) -> str:
    value = client.cookies.get(COOKIE)
    assert value
    return value


def test_forged_tampered_and_expired_cookies_are_refused(
    anonymous: TestClient, viewer: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = _cookie_of(viewer)
    assert anonymous.get("/api/me", cookies={COOKIE: good}).json()["name"] == VIEWER
    salt = "brokerstream.dashboard.session.v1"
    payload = {"u": ADMIN, "h": "0" * 16}
    forged = [
        URLSafeTimedSerializer("not-the-secret-0123456789abcdefghij", salt=salt).dumps(payload),
        URLSafeTimedSerializer(SECRET, salt="another-use").dumps(payload),  # right key, other use
        URLSafeTimedSerializer(SECRET, salt=salt).dumps(payload),  # right key: wrong fingerprint
        good[:-2] + ("AA" if not good.endswith("AA") else "BB"),  # signature altered
        good.replace(good.split(".")[0], good.split(".")[0][::-1]),  # payload altered
        "",
        "garbage",
        "a.b.c",
        good + ".x",
    ]
    for value in forged:
        r = anonymous.get("/api/dashboards", cookies={COOKIE: value})
        assert r.status_code == 401, value
    # issued ten days ago: older than dashboard.session_hours (12 h)
    with monkeypatch.context() as m:
        m.setattr(TimestampSigner, "get_timestamp", lambda self: int(time.time()) - 10 * 86400)
        old = anonymous.app.state.page.auth.issue(anonymous.app.state.page.auth.identity_of(USERS[1]))
    assert anonymous.get("/api/me", cookies={COOKIE: old}).status_code == 401


def test_a_changed_password_or_removed_user_ends_the_session(
    simulated_store: SimulatedStore, viewer: TestClient
) -> None:
    cookie = _cookie_of(viewer)
    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    changed = [
        u
        if u.name != VIEWER
        else u.model_copy(update={"password_hash": hash_password("new-pw-123456", cheap)})
        for u in USERS
    ]
    tenants = [t.id for t in simulated_store.settings.tenants]
    for users in (changed, [u for u in USERS if u.name != VIEWER]):
        app = create_app(
            simulated_store.store, auth=Authenticator(users, tenants, secret=SECRET)
        )
        with TestClient(app) as c:
            assert c.get("/api/me", cookies={COOKIE: cookie}).status_code == 401


# ---- logging in ---------------------------------------------------------------------------------


def test_login_sets_a_hardened_cookie_and_logout_clears_it(anonymous: TestClient) -> None:
    r = anonymous.post(
        "/login",
        data={"name": VIEWER, "password": PASSWORDS[VIEWER], "next": "/d/x?a=1"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/d/x?a=1"
    header = r.headers["set-cookie"].lower()
    assert "httponly" in header and "samesite=lax" in header and "path=/" in header
    assert anonymous.get("/api/me").json() == {"name": VIEWER, "role": "viewer", "tenants": ["acme"]}
    assert anonymous.get("/api/me").headers["cache-control"] == "no-store"
    r = anonymous.post("/logout", follow_redirects=False)
    assert r.status_code == 303 and COOKIE in r.headers["set-cookie"]
    assert anonymous.get("/api/me").status_code == 401


def test_wrong_password_and_unknown_user_are_refused_alike(anonymous: TestClient) -> None:
    answers = []
    for name, password in (
        (VIEWER, "wrong-password"),
        ("nobody", "wrong-password"),
        (VIEWER, ""),
        (VIEWER, PASSWORDS[ADMIN]),
        (VIEWER.upper(), PASSWORDS[VIEWER]),
    ):
        r = anonymous.post("/login", data={"name": name, "password": password}, follow_redirects=False)
        assert r.status_code == 401 and "set-cookie" not in r.headers, name
        answers.append(r.text.replace(name, "NAME"))
        assert anonymous.get("/api/me").status_code == 401
    assert len(set(answers)) == 1  # nothing tells a wrong name from a wrong password


def test_repeated_failures_are_throttled(simulated_store: SimulatedStore) -> None:
    app = create_app(simulated_store.store, auth=auth_for(simulated_store.settings))
    with TestClient(app) as c:
        codes = [
            c.post("/login", data={"name": OTHER, "password": f"guess-{i}"}).status_code for i in range(7)
        ]
        assert codes == [401] * 5 + [429] * 2
        # the right password does not get through while throttled either
        assert c.post("/login", data={"name": OTHER, "password": PASSWORDS[OTHER]}).status_code == 429
        log_in(c, VIEWER)  # another name is not affected


def test_login_redirects_only_within_the_site_and_escapes_its_input(anonymous: TestClient) -> None:
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"):
        r = anonymous.post(
            "/login",
            data={"name": VIEWER, "password": PASSWORDS[VIEWER], "next": target},
            follow_redirects=False,
        )
        assert r.headers["location"] == "/", target
    page = anonymous.get("/login", params={"next": '/"><script>alert(1)</script>'}).text
    assert "<script>alert(1)" not in page
    page = anonymous.post(
        "/login", data={"name": "x", "password": "y", "next": '/"><img src=x onerror=alert(1)>'}
    ).text
    assert "<img src=x" not in page


def test_password_checks_take_the_same_time_for_any_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown name costs one argon2 verify with the configured hashes' parameters, like a
    known one; the session's fingerprint and signature are compared in constant time."""
    hasher = PasswordHasher(time_cost=2, memory_cost=16 * 1024, parallelism=1)
    users = [
        DashboardUser(name="real", password_hash=hash_password("right-password-1", hasher), tenants=["acme"])
    ]
    auth = Authenticator(users, ["acme"], secret=SECRET)
    verified: list[str] = []
    real_verify = PasswordHasher.verify

    def spy(self: PasswordHasher, hash_: str, password: str) -> bool:
        verified.append(hash_)
        return real_verify(self, hash_, password)

    monkeypatch.setattr(PasswordHasher, "verify", spy)
    assert auth.login("ghost", "whatever") is None and auth.login("real", "wrong") is None
    assert len(verified) == 2
    params = {h.split("$")[3] for h in verified}  # m=…,t=…,p=…
    assert params == {"m=16384,t=2,p=1"}
    monkeypatch.setattr(auth_module, "MAX_FAILURES", 10_000)

    def timed(name: str) -> float:
        started = time.perf_counter()
        auth.login(name, "not-the-password", address=name)
        return time.perf_counter() - started

    unknown = statistics.median(timed("ghost") for _ in range(9))
    known = statistics.median(timed("real") for _ in range(9))
    assert 0.5 < unknown / known < 2.0, (unknown, known)
    # both comparisons of a session cookie go through constant-time functions
    import hmac
    import secrets

    compared: list[str] = []
    real_hmac, real_secrets = hmac.compare_digest, secrets.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: compared.append("hmac") or real_hmac(a, b))
    monkeypatch.setattr(secrets, "compare_digest", lambda a, b: compared.append("fp") or real_secrets(a, b))
    identity = auth.identify(auth.issue(auth.identity_of(users[0])))
    assert identity is not None and identity.tenants == ("acme",)
    assert "hmac" in compared and "fp" in compared


# ---- what a viewer sees ------------------------------------------------------------------------


def test_another_tenant_in_the_parameter_is_403(viewer: TestClient, span: dict[str, str]) -> None:
    url = f"/api/dashboards/{RISK.uid}/panels/{TENANT_PANEL.id}"
    assert viewer.get(url, params={**span, "var-tenant": "acme"}).status_code == 200
    for asked in (
        {"var-tenant": "zenith"},
        {"tenant": "zenith"},
        {"var-tenant": "acme,zenith"},
        {"var-tenant": ["acme", "zenith"]},
        {"var-tenant": "no-such-tenant"},
        {"var-tenant": "acme') OR 1=1 --"},
    ):
        r = viewer.get(url, params={**span, **asked})
        assert r.status_code == 403, asked
        assert "not your tenant" in r.json()["error"] and "rows" not in r.json()
    assert viewer.get(f"/api/variables/{RISK.uid}/tenant", params=span).json()["values"] == ["acme"]


def test_every_panel_answers_a_viewer_with_their_tenant_only(
    viewer: TestClient, admin: TestClient, span: dict[str, str]
) -> None:
    """All tenants (the default) means the viewer's: every row that names its tenant names
    theirs, and the tenant-less panels equal the admin's answer for acme alone."""
    tenant_rows = 0
    for d in CLICKHOUSE:
        for panel in d.panels:
            url = f"/api/dashboards/{d.uid}/panels/{panel.id}"
            mine = viewer.get(url, params=span)
            assert mine.status_code == 200, (d.uid, panel.title, mine.text)
            body = mine.json()
            names = [c["name"] for c in body["columns"]]
            if "tenant" in names:
                i = names.index("tenant")
                assert {row[i] for row in body["rows"]} <= {"acme"}, (d.uid, panel.title)
                tenant_rows += len(body["rows"])
            # Where every FROM of the SQL has its tenant condition, the viewer's answer is the
            # admin's for acme; elsewhere (operations' Notional prices deals with every
            # tenant's exposure_history) the viewer's is computed from their rows alone.
            filtered = 0 < panel.sql.count("FROM ") <= panel.sql.count("${tenant")
            if filtered and "${account" not in panel.sql:
                theirs = admin.get(url, params={**span, "var-tenant": "acme"}).json()
                assert body["rows"] == theirs["rows"], (d.uid, panel.title)
    assert tenant_rows > 0


def test_a_variable_without_tenant_filter_still_lists_own_accounts_only(
    viewer: TestClient, admin: TestClient, simulated_store: SimulatedStore, span: dict[str, str]
) -> None:
    """The compliance board's account list has no tenant condition in its SQL: the table
    filters the server adds keep the other tenant's accounts out, and asking for one is refused."""
    store = simulated_store.store
    acme = {r[0] for r in store.query("SELECT account_key FROM accounts WHERE tenant = 'acme'")[1]}
    zenith = [
        r[0] for r in store.query("SELECT account_key FROM accounts WHERE tenant = 'zenith' LIMIT 1")[1]
    ]
    assert acme and zenith
    listed = viewer.get(f"/api/variables/{COMPLIANCE.uid}/account", params=span).json()["values"]
    assert listed and set(listed) <= acme
    everyone = admin.get(f"/api/variables/{COMPLIANCE.uid}/account", params=span).json()["values"]
    assert zenith[0] in everyone
    panel = next(p for p in COMPLIANCE.panels if "${account" in p.sql)
    r = viewer.get(
        f"/api/dashboards/{COMPLIANCE.uid}/panels/{panel.id}", params={**span, "var-account": zenith[0]}
    )
    assert r.status_code == 400 and "unknown value" in r.json()["error"]


def test_engine_health_is_for_admins(viewer: TestClient, admin: TestClient) -> None:
    listed = {d["uid"] for d in viewer.get("/api/dashboards").json()["dashboards"]}
    assert listed == {d.uid for d in CLICKHOUSE}
    assert viewer.get(f"/api/dashboards/{HEALTH.uid}").status_code == 403
    assert viewer.get(f"/d/{HEALTH.uid}").status_code == 403
    assert viewer.get(f"/api/dashboards/{HEALTH.uid}/panels/{HEALTH.panels[0].id}").status_code == 403
    assert HEALTH.uid in {d["uid"] for d in admin.get("/api/dashboards").json()["dashboards"]}
    assert admin.get(f"/api/dashboards/{HEALTH.uid}/panels/{HEALTH.panels[0].id}").status_code == 200


def test_the_extent_is_the_viewers_data(viewer: TestClient, simulated_store: SimulatedStore) -> None:
    lo = simulated_store.store.scalar("SELECT min(time) FROM deals_store WHERE tenant = 'acme'")
    extent = viewer.get("/api/extent").json()
    assert extent["from"] < int(lo.timestamp() * 1000) < extent["to"]


# ---- configuration and CLI ----------------------------------------------------------------------

BASE = {"tenants": [{"id": "acme", "servers": [{"name": "S", "platform": "mt5"}]}]}
HASH = USERS[0].password_hash


@pytest.mark.parametrize(
    ("users", "message"),
    [
        ([{"name": "a", "password_hash": "plaintext", "tenants": ["acme"]}], "password_hash"),
        ([{"name": "a", "password_hash": HASH}], "a viewer needs at least one tenant"),
        ([{"name": "a", "password_hash": HASH, "tenants": ["zenith"]}], "no tenant 'zenith'"),
        (
            [{"name": "a", "password_hash": HASH, "role": "admin", "tenants": ["acme"]}],
            "an admin sees every tenant",
        ),
        ([{"name": "a", "password_hash": HASH, "tenants": ["acme"]}] * 2, "listed twice"),
        ([{"name": "a", "password_hash": HASH, "tenants": ["acme"], "role": "root"}], "role"),
    ],
)
def test_bad_dashboard_users_name_the_problem(users: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_settings({**BASE, "dashboard": {"users": users}})
    with pytest.raises(ConfigError, match="session_secret"):
        parse_settings({**BASE, "dashboard": {"session_secret": "short"}})


def test_no_user_configured_means_no_page(settings: Any) -> None:
    from services.dashboard.server import DashboardError, start_dashboard_thread

    with pytest.raises(DashboardError, match=r"dashboard\.users"):
        start_dashboard_thread(settings, 0)


def test_hash_password_cli_reads_stdin() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "brokerstream.cli", "dashboard", "hash-password"],
        input="a-long-enough-password\n",
        capture_output=True,
        text=True,
        timeout=bound(60),
    )
    assert out.returncode == 0, out.stderr
    made = out.stdout.strip()
    assert made.startswith("$argon2id$") and PasswordHasher().verify(made, "a-long-enough-password")
    short = subprocess.run(
        [sys.executable, "-m", "brokerstream.cli", "dashboard", "hash-password"],
        input="short\n",
        capture_output=True,
        text=True,
        timeout=bound(60),
    )
    assert short.returncode == 2 and "12 characters" in short.stderr


# ---- ClickHouse users and row policies ----------------------------------------------------------

TENANTS = ["acme", "zenith"]
PASSWORDS_CH = {"acme": "acme-ch-password", "zenith": "zen'ith\\pw"}


def _objects(store: Store) -> list[tg.SchemaObject]:
    return tg.schema_objects(store.client, store.database)


def test_chdb_has_no_users_or_row_policies(store: Store) -> None:
    """What the docs say about the embedded engine: one user, `default`, from a read-only
    users.xml; creating users or row policies is refused, so no query runs as a tenant user."""
    assert store.scalar("SELECT currentUser()") == "default"
    assert store.query("SELECT name, type FROM system.user_directories")[1] == [("users_xml", "users_xml")]
    for sql in (
        "CREATE USER tenant_probe IDENTIFIED WITH sha256_password BY 'x'",
        f"CREATE ROW POLICY probe ON {store.database}.deals_store USING tenant = 'acme' TO ALL",
    ):
        with pytest.raises(Exception, match=r"ACCESS_DENIED|Not enough privileges"):
            store.client.command(sql)


def test_every_table_and_view_gets_policies_and_every_statement_parses(store: Store) -> None:
    objects = _objects(store)
    names = {o.name for o in objects}
    assert {
        "deals_store",
        "deals",
        "alerts",
        "quotes_1s_mv",
        "ib_payouts_monthly",
        "schema_migrations",
    } <= names
    assert all(o.has_tenant for o in objects if o.name not in tg.EXEMPT), "a table without tenant column"
    statements = tg.tenant_grants_sql(store.database, objects, TENANTS, PASSWORDS_CH)
    for statement in statements:  # ClickHouse's own parser: every statement is valid SQL
        store.query(f"EXPLAIN AST {statement}")
    db = f"`{store.database}`"
    for o in objects:
        on = f" ON {db}.`{o.name}` "
        policies = [s for s in statements if s.startswith("CREATE ROW POLICY") and on in s]
        grants = [
            s for s in statements if s.startswith("GRANT SELECT") and s.endswith(f"{on.strip()} TO {tg.ROLE}")
        ]
        if o.name in tg.EXEMPT:
            assert not policies and not grants, o.name
            continue
        assert (
            f"CREATE ROW POLICY OR REPLACE {tg.ALL_ROWS_POLICY}{on}AS permissive FOR SELECT USING 1 TO ALL"
            in policies
        ), o.name
        for t in TENANTS:
            assert (
                f"CREATE ROW POLICY OR REPLACE `tenant_{t}`{on}AS restrictive FOR SELECT "
                f"USING tenant = '{t}' TO `tenant_{t}`"
            ) in policies, (o.name, t)
        assert len(policies) == 1 + len(TENANTS)
        assert len(grants) == (0 if o.engine == "MaterializedView" else 1), o.name
    users = [s for s in statements if s.startswith("CREATE USER")]
    assert len(users) == 2 and all("SETTINGS PROFILE 'brokerstream_tenant'" in s for s in users)
    assert "BY 'zen\\'ith\\\\pw'" in next(s for s in users if "tenant_zenith" in s)
    assert statements.index(next(s for s in statements if s.startswith("REVOKE"))) < statements.index(
        next(s for s in statements if s.startswith("GRANT SELECT"))
    )


def test_policies_conditions_show_each_tenant_only_its_rows(simulated_store: SimulatedStore) -> None:
    """chdb cannot run a query as tenant_acme, so the row policies' own conditions are applied
    to every object the way ClickHouse applies a restrictive policy (a filter on each table
    read, views included), and every view and table is read through them."""
    store = simulated_store.store
    objects = _objects(store)
    for tenant in TENANTS:
        statements = tg.tenant_grants_sql(store.database, objects, [tenant], PASSWORDS_CH)
        conditions = {}
        for s in statements:
            if s.startswith("CREATE ROW POLICY OR REPLACE `tenant_"):
                name = s.split(" ON ")[1].split(" ")[0].split(".")[1].strip("`")
                conditions[name] = s.split(" USING ")[1].rsplit(" TO ", 1)[0]
        filters = (
            "{"
            + ", ".join(f"{quote(f'{store.database}.{n}')}: {quote(c)}" for n, c in conditions.items())
            + "}"
        )
        seen_rows = 0
        for o in objects:
            if o.name in tg.EXEMPT or o.engine == "Null":
                continue
            rows = store.client.query(
                f"SELECT tenant, count() FROM `{o.name}` GROUP BY tenant",
                settings={"additional_table_filters": filters},
            ).result_rows
            assert {r[0] for r in rows} <= {tenant}, (tenant, o.name, rows)
            seen_rows += sum(r[1] for r in rows)
        assert seen_rows > 0
        everyone = store.scalar("SELECT uniqExact(tenant) FROM deals")
        assert everyone == 2


def test_grants_refuse_what_they_cannot_protect(store: Store) -> None:
    objects = _objects(store)
    with pytest.raises(tg.GrantError, match="BROKERSTREAM_TENANT_ACME_CLICKHOUSE_PASSWORD"):
        tg.tenant_grants_sql(store.database, objects, ["acme"], {})
    bare = [*objects, tg.SchemaObject("fx_rates", "MergeTree", False)]
    with pytest.raises(tg.GrantError, match="no tenant column in fx_rates"):
        tg.tenant_grants_sql(store.database, bare, ["acme"], PASSWORDS_CH)
    with pytest.raises(tg.GrantError, match="migrate"):
        tg.tenant_grants_sql(store.database, [], ["acme"], PASSWORDS_CH)


def test_tenants_grants_cli_prints_sql_and_apply_explains_chdb(
    settings: Any,
    store: Store,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from brokerstream.cli import main

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(settings.model_dump(mode="json", exclude_defaults=True)))
    store.close()  # the CLI opens the same embedded store
    monkeypatch.delenv("BROKERSTREAM_TENANT_ACME_CLICKHOUSE_PASSWORD", raising=False)
    assert main(["tenants", "grants", "--tenant", "acme", "--config", str(config)]) == 2
    assert "BROKERSTREAM_TENANT_ACME_CLICKHOUSE_PASSWORD" in capsys.readouterr().err
    monkeypatch.setenv("BROKERSTREAM_TENANT_ACME_CLICKHOUSE_PASSWORD", "pw-acme-1")
    assert main(["tenants", "grants", "--tenant", "acme", "--config", str(config)]) == 0
    sql = capsys.readouterr().out
    assert "CREATE USER IF NOT EXISTS `tenant_acme`" in sql and "tenant_zenith" not in sql
    assert f"ON `{settings.clickhouse.database}`.`deals_store` AS restrictive" in sql
    assert main(["tenants", "grants", "--tenant", "nobody", "--config", str(config)]) == 2
    assert main(["tenants", "grants", "--apply", "--tenant", "acme", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "no access control" in err and "pw-acme-1" not in err


# ---- Grafana -------------------------------------------------------------------------------------


def test_grafana_has_one_org_and_clickhouse_data_source_per_tenant_user(tmp_path: Path) -> None:
    from brokerstream.cli import main
    from pipelines.config import load_settings

    deploy = REPO / "deploy" / "brokerstream.yaml"
    tenants = [t.id for t in load_settings(deploy).tenants]
    assert main(["tenants", "grafana", "--config", str(deploy), "--out", str(tmp_path)]) == 0
    committed = REPO / "dashboards" / "provisioning" / "tenants"
    for name in ("datasources.yaml", "dashboards.yaml"):
        assert (committed / name).read_text() == (tmp_path / name).read_text(), (
            f"regenerate: brokerstream tenants grafana --config deploy/brokerstream.yaml ({name})"
        )
    sources = yaml.safe_load((committed / "datasources.yaml").read_text())["datasources"]
    providers = yaml.safe_load((committed / "dashboards.yaml").read_text())["providers"]
    assert [s["jsonData"]["username"] for s in sources] == [f"tenant_{t}" for t in tenants]
    assert (
        [s["orgId"] for s in sources] == [p["orgId"] for p in providers] == list(range(2, 2 + len(tenants)))
    )
    assert all(
        s["type"] == "grafana-clickhouse-datasource" and s["uid"] == "brokerstream-clickhouse"
        for s in sources
    )
    compose = yaml.safe_load((REPO / "deploy" / "compose.yaml").read_text())
    grafana = compose["services"]["grafana"]
    for s in sources:
        assert s["secureJsonData"]["password"].lstrip("$") in grafana["environment"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in grafana["volumes"]}
    shown = {p.rsplit("/", 1)[1] for p in mounts if p.startswith(providers[0]["options"]["path"] + "/")}
    assert shown == {d.path.name for d in CLICKHOUSE if d.path}
    job = compose["services"]["grafana-tenants"]
    assert job["command"] == tenants
    init = compose["services"]["engine-init"]
    assert "brokerstream tenants grants --apply" in init["command"][0]
    for t in tenants:
        assert tg.password_env(t) in init["environment"]
