"""The client view and the partner view (issue 16): their figures recomputed independently with
polars from the base tables (every stored version, deduplicated here, not through the views
or the dashboards' SQL) and from the simulated commissions files; the client search; partner
logins limited to their own tree on the server; the partner tree tables."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import polars as pl
import pytest
from fastapi.testclient import TestClient

from commissions import parse_commissions
from commissions.config import CommissionConfig
from pipelines.config import ConfigError, DashboardConfig, DashboardUser, parse_settings
from pipelines.partner_tables import tier_rows, tree_rows
from services.dashboard.auth import Authenticator, Identity, hash_password
from services.dashboard.partners import subtree, table_filters
from services.dashboard.server import DashboardError, authenticator, create_app
from tests.conftest import SimulatedStore
from tests.dashboard_logins import CHEAP, PASSWORDS, SECRET, USERS, VIEWER, log_in
from tests.simulated_store import simulated_partner_configs
from tests.view_picks import busy_ib, client_value, rich_client

CLIENT, PARTNER = "brokerstream-client", "brokerstream-partner"
PARTNER_USER, ZENITH_PARTNER = "ib-partner", "zenith-partner"


# ---- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def configs(simulated_store: SimulatedStore) -> dict[str, CommissionConfig]:
    docs = simulated_partner_configs(simulated_store.settings)
    return {tenant: parse_commissions(doc) for tenant, doc in docs.items()}


def _descendants(config: CommissionConfig, ib: str, at: datetime) -> set[str]:
    """The IB and every IB below it at `at`, from the commissions file's tree."""
    tree = config.build_tree()
    return {i for i in tree.ibs if ib in {x.ib_id for x in tree.chain(i, at)}}


@pytest.fixture(scope="module")
def sub_ib(configs: dict[str, CommissionConfig], simulated_store: SimulatedStore) -> str:
    """An acme IB one level below the top with sub-IBs of its own and commission rows."""
    paid = {r[0] for r in simulated_store.store.query(
        "SELECT DISTINCT ib_id FROM ib_commissions WHERE tenant = 'acme'")[1]}
    now = datetime.now(UTC)
    config = configs["acme"]
    tree = config.build_tree()
    found = sorted(ib.id for ib in config.ibs if len(tree.chain(ib.id, now)) == 2
                   and len(_descendants(config, ib.id, now)) >= 3 and ib.id in paid)
    assert found, "the simulated acme tree has no second-level IB with a downline"
    return found[0]


@pytest.fixture(scope="module")
def app(simulated_store: SimulatedStore, sub_ib: str, configs: dict[str, CommissionConfig]) -> Any:
    zenith_ib = configs["zenith"].ibs[0].id
    partners = [
        DashboardUser(name=PARTNER_USER, password_hash=hash_password(PASSWORDS[VIEWER], CHEAP),
                      role="partner", tenants=["acme"], ib=sub_ib),
        DashboardUser(name=ZENITH_PARTNER, password_hash=hash_password(PASSWORDS[VIEWER], CHEAP),
                      role="partner", tenants=["zenith"], ib=zenith_ib),
    ]
    auth = Authenticator([*USERS, *partners], [t.id for t in simulated_store.settings.tenants], secret=SECRET)
    return create_app(simulated_store.store, auth=auth)


def _client(app: Any, name: str) -> Iterator[TestClient]:
    with TestClient(app) as c:
        r = c.post("/login", data={"name": name, "password": PASSWORDS.get(name, PASSWORDS[VIEWER]),
                                   "next": "/"}, follow_redirects=False)
        assert r.status_code == 303, r.text
        yield c


@pytest.fixture
def admin(app: Any) -> Iterator[TestClient]:
    with TestClient(app) as c:
        log_in(c, USERS[0].name)
        yield c


@pytest.fixture
def partner(app: Any) -> Iterator[TestClient]:
    yield from _client(app, PARTNER_USER)


@pytest.fixture
def zenith_partner(app: Any) -> Iterator[TestClient]:
    yield from _client(app, ZENITH_PARTNER)


@pytest.fixture
def viewer(app: Any) -> Iterator[TestClient]:
    yield from _client(app, VIEWER)


@pytest.fixture(scope="module")
def span(simulated_store: SimulatedStore) -> dict[str, str]:
    """Wider than the data: every row of the simulated history is in range."""
    ms = lambda t: str(int(t.timestamp() * 1000))  # noqa: E731
    return {"from": ms(simulated_store.time_from - timedelta(hours=1)),
            "to": ms(simulated_store.time_to + timedelta(hours=1))}


def _panel(c: TestClient, uid: str, title: str, params: dict[str, Any]) -> pl.DataFrame:
    from services.dashboard.definitions import load_dashboards

    [d] = [d for d in load_dashboards() if d.uid == uid]
    [panel] = [p for p in d.panels if p.title == title]
    r = c.get(f"/api/dashboards/{uid}/panels/{panel.id}", params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    names = [col["name"] for col in body["columns"]]
    return pl.DataFrame(body["rows"], schema=names, orient="row") if names else pl.DataFrame()


def _frame(store: Any, sql: str) -> pl.DataFrame:
    names, rows = store.query(sql)
    return pl.DataFrame(rows, schema=names, orient="row", infer_schema_length=None)


def _latest(frame: pl.DataFrame, key: str) -> pl.DataFrame:
    """The newest version of each `key` (what ReplacingMergeTree keeps), deletes dropped."""
    out = frame.sort("version").group_by(key).last()
    return out.filter(pl.col("is_deleted") == 0) if "is_deleted" in out.columns else out


# ---- the client view --------------------------------------------------------------------------------


def test_client_view_figures_match_the_base_tables(admin: TestClient, simulated_store: SimulatedStore,
                                                   span: dict[str, str]) -> None:
    store = simulated_store.store
    client = rich_client(store)
    params = {**span, "var-client": client_value(store, client)}
    accounts = _latest(_frame(store, "SELECT account_key, tenant, server, login, client_id, balance, version "
                                     "FROM accounts_store"), "account_key")
    mine = accounts.filter(pl.when(pl.col("client_id") == "").then(pl.col("account_key"))
                           .otherwise(pl.col("client_id")) == client)
    assert mine.height > 1

    # balances, per account
    shown = _panel(admin, CLIENT, "Accounts", params)
    assert sorted(shown["account_key"].to_list()) == sorted(mine["account_key"].to_list())
    want = {k: Decimal(str(b)) for k, b in zip(mine["account_key"], mine["balance"], strict=True)}
    got = {k: Decimal(str(b)) for k, b in zip(shown["account_key"], shown["balance"], strict=True)}
    assert got == want

    # deposits and withdrawals as the platforms booked them, per currency
    ops = _latest(_frame(store, "SELECT op_key, server, login, kind, amount, currency, version, is_deleted "
                                "FROM balance_operations_store"), "op_key")
    ops = ops.join(mine.select("server", "login"), on=["server", "login"]).filter(pl.col("kind") == "balance")
    expected = ops.group_by("currency").agg(
        pl.col("amount").filter(pl.col("amount") > 0).sum().alias("deposits"),
        (-pl.col("amount").filter(pl.col("amount") < 0).sum()).alias("withdrawals"))
    money = _panel(admin, CLIENT, "Money in and out by currency", params)
    for row in expected.iter_rows(named=True):
        [line] = money.filter(pl.col("currency") == row["currency"]).iter_rows(named=True)
        assert Decimal(str(line["deposits"])) == row["deposits"]
        assert Decimal(str(line["withdrawals"])) == row["withdrawals"]
    assert expected["deposits"].sum() > 0

    # open positions: positions whose deals' signed lots do not add up to zero
    keys = mine["account_key"].to_list()
    deals = _latest(_frame(store, "SELECT deal_key, platform, server, login, position_id, side, lots, "
                                  "canceled, version, is_deleted FROM deals_store"), "deal_key")
    deals = deals.with_columns(account_key=pl.concat_str(
        ["platform", "server", pl.col("login").cast(pl.String)], separator=":"))
    open_positions = (deals.filter(pl.col("account_key").is_in(keys) & ~pl.col("canceled"))
                      .with_columns(signed=pl.when(pl.col("side") == "buy").then(pl.col("lots"))
                                    .otherwise(-pl.col("lots")))
                      .group_by("account_key", "position_id").agg(pl.col("signed").sum())
                      .filter(pl.col("signed") != 0))
    totals = _panel(admin, CLIENT, "Client totals", params).row(0, named=True)
    listed = _panel(admin, CLIENT, "Open positions", params)
    assert totals["accounts"] == mine.height
    assert totals["open_positions"] == open_positions.height == listed.height > 0
    assert set(zip(listed["account_key"], listed["position_id"], strict=True)) == set(
        zip(open_positions["account_key"], open_positions["position_id"], strict=True))


def test_the_client_search_matches_name_login_email_and_client_id(
    admin: TestClient, viewer: TestClient, simulated_store: SimulatedStore, span: dict[str, str]
) -> None:
    store = simulated_store.store
    client = rich_client(store)
    name, email, login, tenant = store.query(
        "SELECT name, email, login, tenant FROM accounts WHERE if(client_id = '', account_key, client_id) = "
        "%(c)s ORDER BY updated_at DESC LIMIT 1", {"c": client})[1][0]
    value = client_value(store, client)
    url = f"/api/variables/{CLIENT}/client"
    every = admin.get(url, params=span).json()["values"]
    assert value in every and len(every) > 100
    for text in (client, name.upper(), email.split("@")[0], str(login)):
        found = admin.get(url, params={**span, "var-search": text}).json()["values"]
        assert value in found and len(found) < len(every), text
    assert admin.get(url, params={**span, "var-search": "no such client at all"}).json()["values"] == []
    # quotes and commas are text, not SQL, not a second value
    assert admin.get(url, params={**span, "var-search": "x' OR 1=1 --, y"}).json()["values"] == []
    assert admin.get(url, params={**span, "var-search": "x" * 201}).status_code == 400
    # another tenant's client is not found by a viewer
    seen = viewer.get(url, params={**span, "var-search": email}).json()["values"]
    assert (value in seen) == (tenant == "acme")
    # the panels follow the chosen client
    ident = _panel(admin, CLIENT, "Identity and KYC", {**span, "var-search": email, "var-client": value})
    assert ident["client"].to_list() == [client]


# ---- the partner view ---------------------------------------------------------------------------------


def _monthly(store: Any, tree: set[str]) -> dict[tuple[str, str], tuple[Decimal, Decimal, Decimal]]:
    """Own, override and total per (month, IB) of `tree`, summed from the stored rows."""
    rows = _frame(store, "SELECT commission_id, ib_id, tier, deal_time, amount FROM ib_commissions_store")
    rows = rows.unique("commission_id").filter(pl.col("ib_id").is_in(list(tree)))
    sums = rows.with_columns(month=pl.col("deal_time").dt.truncate("1mo").dt.date().cast(pl.String)).group_by(
        "month", "ib_id").agg(own=pl.col("amount").filter(pl.col("tier") == 1).sum(),
                              override=pl.col("amount").filter(pl.col("tier") > 1).sum(),
                              total=pl.col("amount").sum())
    return {(r["month"], r["ib_id"]): (r["own"], r["override"], r["total"])
            for r in sums.iter_rows(named=True)}


def _shown_monthly(frame: pl.DataFrame) -> dict[tuple[str, str], tuple[Decimal, Decimal, Decimal]]:
    out = {}
    for r in frame.iter_rows(named=True):
        month = datetime.fromtimestamp(r["month"] / 1000, UTC).date().isoformat()
        out[(month, r["ib_id"])] = tuple(Decimal(str(r[k])).quantize(Decimal("0.01"))
                                         for k in ("own", "override", "total"))
    return out  # type: ignore[return-value]


def _cents(d: dict[tuple[str, str], tuple[Decimal, Decimal, Decimal]]) -> dict[Any, Any]:
    return {k: tuple(Decimal(v).quantize(Decimal("0.01")) for v in vs) for k, vs in d.items()}


def test_partner_commissions_by_month_match_the_rows_and_the_tree(
    admin: TestClient, simulated_store: SimulatedStore, configs: dict[str, CommissionConfig],
    span: dict[str, str]
) -> None:
    store = simulated_store.store
    top = busy_ib(store)
    [tenant] = [t for t, c in configs.items() if any(ib.id == top for ib in c.ibs)]
    tree = _descendants(configs[tenant], top, datetime.now(UTC))
    params = {**span, "var-ib": top}
    shown_tree = _panel(admin, PARTNER, "Partner tree", params)
    assert set(shown_tree["ib_id"]) == tree and len(tree) > 3
    monthly = _shown_monthly(_panel(admin, PARTNER, "Commissions by month", params))
    expected = _cents(_monthly(store, tree))
    assert monthly == expected and len({m for m, _ in monthly}) == 2  # November and December
    # own + override of the IB itself, over the whole range
    earnings = _panel(admin, PARTNER, "Earnings", params).row(0, named=True)
    mine = [v for (_, ib), v in expected.items() if ib == top]
    assert Decimal(str(earnings["own"])).quantize(Decimal("0.01")) == sum(v[0] for v in mine)
    assert Decimal(str(earnings["override"])).quantize(Decimal("0.01")) == sum(v[1] for v in mine)


def test_progress_to_the_next_tier_follows_the_plan(
    admin: TestClient, simulated_store: SimulatedStore, configs: dict[str, CommissionConfig],
    span: dict[str, str]
) -> None:
    store = simulated_store.store
    top = busy_ib(store)
    [config] = [c for c in configs.values() if any(ib.id == top for ib in c.ibs)]
    progress = _panel(admin, PARTNER, "Progress to the next volume tier", {**span, "var-ib": top})
    end = simulated_store.time_to + timedelta(hours=1)
    month = end.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    rows = _frame(store, "SELECT commission_id, ib_id, kind, lots, deal_time FROM ib_commissions_store")
    rows = rows.unique("commission_id").filter(pl.col("deal_time") >= month.replace(tzinfo=None))
    lots = {r["ib_id"]: r["lots"] for r in rows.group_by("ib_id").agg(
        lots=pl.col("lots").filter(pl.col("kind") == "earn").sum()
        - pl.col("lots").filter(pl.col("kind") == "reversal").sum()).iter_rows(named=True)}
    tree, plans = config.build_tree(), config.plan_index()
    reached = 0
    for r in progress.iter_rows(named=True):
        have = lots.get(r["ib_id"], Decimal(0))
        assert Decimal(str(r["lots_this_month"] or 0)) == have
        version = plans[tree.plan_of(r["ib_id"], end)].versions[-1]
        starts = [t.from_lots for t in version.volume_tiers]
        tier = sum(1 for s in starts if s <= have)
        assert r["tier"] == tier == version.tier_for(have), r
        if tier < len(starts):
            assert Decimal(str(r["next_tier_from_lots"])) == starts[tier]
            assert Decimal(str(r["lots_to_next"])) == starts[tier] - have
        else:
            assert r["next_tier"] is None
        reached += tier > 0
    assert reached, "no IB of the tree reached a tier: the simulated plans have tiers for this"


def test_tree_and_tier_rows_from_the_configuration(configs: dict[str, CommissionConfig]) -> None:
    loaded = datetime(2024, 1, 1, tzinfo=UTC)
    config = configs["acme"]
    rows = tree_rows(config, loaded)
    assert {r.ib_id for r in rows} == {ib.id for ib in config.ibs}
    for r in rows:
        assert r.path.split(">")[-1] == r.ib_id and r.depth == r.path.count(">")
        assert (r.parent == "") == (r.depth == 0)
    tiers = tier_rows(config, loaded)
    master = [t for t in tiers if t.plan_id == "sim-master" and t.symbol_group == "fx_major"]
    assert [(t.tier, t.from_lots, t.per_lot, t.set_at_tier) for t in master] == [
        (0, 0, 10, True), (1, 500, 11, True), (2, 1500, 12, True)]
    metal = [t for t in tiers if t.plan_id == "sim-master" and t.symbol_group == "metal"]
    assert [(t.tier, t.per_lot, t.set_at_tier) for t in metal] == [(0, 7, True), (1, 7, False), (2, 7, False)]


# ---- partner logins --------------------------------------------------------------------------------------


def test_a_partner_sees_its_tree_and_nothing_else(
    partner: TestClient, admin: TestClient, simulated_store: SimulatedStore, sub_ib: str,
    configs: dict[str, CommissionConfig], span: dict[str, str]
) -> None:
    store = simulated_store.store
    tree = _descendants(configs["acme"], sub_ib, datetime.now(UTC))
    me = partner.get("/api/me").json()
    assert me == {"name": PARTNER_USER, "role": "partner", "tenants": ["acme"], "ib": sub_ib}
    assert [d["uid"] for d in partner.get("/api/dashboards").json()["dashboards"]] == [PARTNER]
    for uid in (CLIENT, "brokerstream-finance", "brokerstream-risk-desk", "brokerstream-engine-health"):
        assert partner.get(f"/api/dashboards/{uid}").status_code == 403, uid
        assert partner.get(f"/api/dashboards/{uid}/panels/1", params=span).status_code == 403, uid
        assert partner.get(f"/d/{uid}").status_code == 403, uid
        assert partner.get(f"/api/variables/{uid}/tenant", params=span).status_code == 403, uid
    # the ib variable: its own IB first, then its downline; the tenant: its own
    ibs = partner.get(f"/api/variables/{PARTNER}/ib", params=span).json()["values"]
    assert ibs[0] == sub_ib and set(ibs) == tree
    assert partner.get(f"/api/variables/{PARTNER}/tenant", params=span).json()["values"] == ["acme"]
    # by default it sees its own numbers: the admin's for its IB
    for title in ("Earnings", "Commissions by month", "Partner tree", "Clients", "Reversals"):
        mine = _panel(partner, PARTNER, title, span)
        theirs = _panel(admin, PARTNER, title, {**span, "var-ib": sub_ib, "var-tenant": "acme"})
        assert mine.height > 0, title
        assert mine.equals(theirs), title
    monthly = _shown_monthly(_panel(partner, PARTNER, "Commissions by month", span))
    assert monthly == _cents(_monthly(store, tree))
    # another IB - its master, another tree, another tenant's - is refused, whatever the panel
    master = configs["acme"].build_tree().parent(sub_ib, datetime.now(UTC))
    other_top = next(ib.id for ib in configs["acme"].ibs if ib.parent is None and ib.id != master)
    zenith_ib = configs["zenith"].ibs[0].id
    for asked in ({"var-ib": master}, {"var-ib": other_top}, {"var-ib": zenith_ib},
                  {"var-ib": [sub_ib, str(master)]}, {"var-tenant": "zenith"}, {"var-ib": "x' OR 1=1 --"}):
        r = partner.get(f"/api/dashboards/{PARTNER}/panels/1", params={**span, **asked})
        assert r.status_code == 403, asked
        assert "rows" not in r.json()
    # a sub-IB of its tree may be looked at
    below = next(ib for ib in ibs if ib != sub_ib)
    r = partner.get(f"/api/dashboards/{PARTNER}/panels/1", params={**span, "var-ib": below})
    assert r.status_code == 200


def test_a_partners_queries_are_limited_to_its_tree_in_the_database(
    app: Any, simulated_store: SimulatedStore, sub_ib: str, configs: dict[str, CommissionConfig]
) -> None:
    """Even SQL that forgets every filter sees only the partner's tree: the server adds
    table filters to each of its queries (not only to the variables)."""
    page = app.state.page
    who = Identity(PARTNER_USER, "partner", ("acme",), sub_ib)
    tree = _descendants(configs["acme"], sub_ib, datetime.now(UTC))
    scope = page.partner_scope(who)
    assert set(scope.tree) == tree and scope.accounts
    ibs = {r[0] for r in page.run("SELECT DISTINCT ib_id FROM ib_commissions", who)[1]}
    assert ibs and ibs <= tree
    assert {r[0] for r in page.run("SELECT DISTINCT tenant FROM ib_commissions_store", who)[1]} == {"acme"}
    accounts = {r[0] for r in page.run("SELECT account_key FROM accounts", who)[1]}
    assert accounts and accounts <= set(scope.accounts)
    dealt = {r[0] for r in page.run(
        "SELECT DISTINCT concat(platform, ':', server, ':', toString(login)) FROM deals", who)[1]}
    assert dealt <= set(scope.accounts)
    for table in ("balance_operations", "logins", "alerts", "positions", "commission_issues", "dead_letters",
                  "exposure", "quotes_1s_store"):
        assert page.run(f"SELECT count() FROM {table}", who)[1] == [(0,)], table
    # the clients are those of the tree, as the stored rows and the Agent fields say
    store = simulated_store.store
    paid = {r[0] for r in store.query(
        "SELECT DISTINCT account_key FROM ib_commissions WHERE tier = 1 AND tenant = 'acme' AND ib_id IN "
        f"({','.join(repr(i) for i in tree)})")[1]}
    assert paid <= set(scope.accounts)


def test_partner_tenant_isolation(zenith_partner: TestClient, configs: dict[str, CommissionConfig],
                                  span: dict[str, str]) -> None:
    zenith_ib = configs["zenith"].ibs[0].id
    assert zenith_partner.get(f"/api/variables/{PARTNER}/tenant", params=span).json()["values"] == ["zenith"]
    tree = zenith_partner.get(f"/api/variables/{PARTNER}/ib", params=span).json()["values"]
    assert tree[0] == zenith_ib and all(i in {ib.id for ib in configs["zenith"].ibs} for i in tree)
    for title in ("Partner tree", "Clients", "Commissions by month"):
        frame = _panel(zenith_partner, PARTNER, title, span)
        assert frame.height > 0, title
        if "account_key" in frame.columns:
            assert all(":Zenith-" in k for k in frame["account_key"]), title
    acme_ib = configs["acme"].ibs[0].id
    r = zenith_partner.get(f"/api/dashboards/{PARTNER}/panels/1", params={**span, "var-ib": acme_ib})
    assert r.status_code == 403


def test_subtree_and_filters_are_plain_functions() -> None:
    rows = [("A", "A", "p1"), ("B", "A>B", "p2"), ("C", "A>B>C", "p3"), ("D", "D", "p1"), ("AB", "AB", "p9")]
    assert subtree("B", rows) == (["B", "C"], ["p2", "p3"])
    assert subtree("A", rows) == (["A", "B", "C"], ["p1", "p2", "p3"])
    assert subtree("Z", rows) == (["Z"], [])  # an IB no longer in the tree sees only itself
    from services.dashboard.partners import PartnerScope

    scope = PartnerScope("acme", "B", ("B", "C"), (), ("p2",))
    filters = table_filters("db", [("ib_commissions", 1), ("alerts", 1), ("schema_migrations", 0),
                                   ("accounts", 1)], scope)
    assert "'db.ib_commissions': 'tenant = \\'acme\\' AND ib_id IN (\\'B\\',\\'C\\')'" in filters
    assert "'db.alerts': '0'" in filters and "'db.schema_migrations': '0'" in filters
    assert "account_key IN (NULL)" in filters  # no clients: no account


# ---- configuration ------------------------------------------------------------------------------------

BASE = {"tenants": [{"id": "acme", "servers": [{"name": "S", "platform": "mt5"}]},
                    {"id": "zenith", "servers": [{"name": "Z", "platform": "mt5"}]}]}
HASH = USERS[0].password_hash


@pytest.mark.parametrize(("user", "message"), [
    ({"role": "partner", "tenants": ["acme"]}, r"a partner needs `ib`"),
    ({"role": "partner", "tenants": ["acme", "zenith"], "ib": "IB-1"}, r"exactly one tenant"),
    ({"role": "partner", "ib": "IB-1"}, r"a partner needs"),
    ({"role": "viewer", "tenants": ["acme"], "ib": "IB-1"}, r"`ib` is for role: partner only"),
    ({"role": "partner", "tenants": ["acme"], "ib": "bad id!"}, r"dashboard\.users\.0\.ib"),
])
def test_bad_partner_logins_name_the_field(user: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        parse_settings({**BASE, "dashboard": {"users": [{"name": "p", "password_hash": HASH, **user}]}})
    assert "dashboard.users.0" in str(caught.value)


def test_a_partner_of_an_unknown_ib_stops_the_page(tmp_path: Any,
                                                  configs: dict[str, CommissionConfig]) -> None:
    import yaml

    path = tmp_path / "acme.yaml"
    path.write_text(yaml.safe_dump(configs["acme"].model_dump(mode="json", by_alias=True)), encoding="utf-8")
    user = {"name": "p", "password_hash": HASH, "role": "partner", "tenants": ["acme"]}
    ok = parse_settings({**BASE, "commissions": [str(path)],
                         "dashboard": {"users": [{**user, "ib": configs["acme"].ibs[0].id}]}})
    assert isinstance(authenticator(ok), Authenticator)
    for settings, message in (
        ({**BASE, "commissions": [str(path)], "dashboard": {"users": [{**user, "ib": "IB-404"}]}},
         r"dashboard\.users\.p\.ib: no IB 'IB-404' in tenant 'acme'"),
        ({**BASE, "dashboard": {"users": [{**user, "ib": "IB-404"}]}},
         r"dashboard\.users\.p\.ib: tenant 'acme' has no commissions file"),
    ):
        with pytest.raises(DashboardError, match=message):
            authenticator(parse_settings(settings))
    assert DashboardConfig(users=[DashboardUser(**{**user, "ib": "IB-1"})]).users[0].ib == "IB-1"
