"""One account, one ordered stream: no table may depend on how the input happened to be batched.

Each account here has its account records (an MT5 user, an MT4 user, CRM `account_opened` +
`ib_assigned`) next to its first deal. The same replay file runs twice through the real dataflow
(`build_flow` over the replay `FileInput`, into a fresh database of the session's chdb):

- `kafka.consume_batch: 1` — every record is its own batch, so each stage sees the file's order;
- `kafka.consume_batch: 1000` — the whole file is one batch: an account record and the
  account's first deal reach every consumer in the same batch.

Both runs must write the same rows into every table (FINAL, all columns but the insertion
time), with one stated exception: the tenant exposure stage writes a snapshot once per batch
when the event time crossed a `snapshot_interval_s` boundary (pipelines/exposure_step.py), so
the *times* of snapshots (`as_of`, `version`, the rows of `exposure_history`, when a margin
alert fires) follow the batches; what is in the positions and exposure, and each account's
final margin state, may not. Two files: the account records before the first deal
(`account_first`), and the first deal before them (`deal_first`). Per stage: the account state
(`accounts`), the position books
(positions and exposure: book A/B and netting/hedging come from the account's group; margin
alerts from its balance and leverage), the account-keyed rules (AML/fraud alerts that read the
account's fields: country, IB link) and the commission inputs (`ib_commissions`: the IB comes
from the user record's Agent or the CRM's `ib_assigned`). A last test checks that the
record-by-record run of `account_first` is the right answer, not merely a stable one.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from brokerstream.engine import run_replay
from brokerstream.publish import write_envelopes
from pipelines.config import Settings, parse_settings
from pipelines.store import Store
from schemas.envelope import Envelope
from tests.conftest import REPO, TEST_CONFIG
from tests.helpers import T0, mt5_deal
from tests.test_connector_crm import crm_event
from tests.test_connector_mt4 import trade_record, user_record
from tests.test_connector_mt5_accounts import imt_user, tick

MT5 = "ACME-MT5-Live"
MT4 = "ACME-MT4-Live"  # UTC+2 in TEST_CONFIG: MT4 times are the server's wall clock
MT4_OFFSET_S = 2 * 3600
START = T0 + 3_600_000  # 2024-11-24 01:00 UTC
ORDERS = ("account_first", "deal_first")
WHOLE_FILE = 1000  # consume_batch that puts the whole file in one batch
TIME_COLUMNS = frozenset({"ingested_at", "applied_at"})
SNAPSHOT_COLUMNS = frozenset({"as_of", "version"})  # when the exposure stage took the snapshot

# accounts: login -> what its records say
NETTING_A = 71001  # MT5 user: A-book netting group, Agent 7003 (-> IB-3), balance 500 at 1:100
MT4_A = 81001  # MT4 user: A-book group, agent 8002 (-> IB-2)
CRM_ONLY = 71002  # no platform user record: CRM account_opened (country IR), ib_assigned IB-4
HEDGING_B = 71003  # MT5 user: B-book hedging group, Agent 7003 (-> IB-3): mirrors NETTING_A


# -- the replay files -------------------------------------------------------------------------

Make = Callable[[int], Envelope]  # envelope timestamp (ms) -> the envelope


def _env(topic: str, login: int, value: dict[str, Any], ts: int, event: str | None = "add",
         server: str | None = MT5) -> Envelope:
    headers = {} if server is None else {"server": server}
    if event is not None:
        headers["event"] = event
    return Envelope(topic=topic, value=orjson.dumps(value), timestamp_ms=ts, key=str(login),
                    headers=headers)


def _mt5_user(login: int, group: str, agent: str, balance: str) -> Make:
    def make(ts: int) -> Envelope:
        doc = imt_user(Login=str(login), Group=group, Agent=agent, Balance=balance, Leverage="100",
                       Name=f"Client {login}", ClientID=str(login + 100_000), Country="Germany")
        return _env("mt5.users", login, doc, ts)
    return make


def _mt5_deal(deal: int, login: int, symbol: str, side: str, lots: str, price: str) -> Make:
    volume = int(Decimal(lots) * 10_000)

    def make(ts: int) -> Envelope:
        doc = mt5_deal(Deal=deal, Order=deal + 50_000, PositionID=deal, Login=login, Symbol=symbol,
                       Action=0 if side == "buy" else 1, Entry=0, Volume=volume,
                       VolumeExt=volume * 10_000, Price=price, Time=ts // 1000, TimeMsc=ts,
                       Value=str(Decimal(lots) * 100_000 * Decimal(price)))
        return _env("mt5.deals", login, doc, ts)
    return make


def _mt4_user(login: int, group: str, agent: int) -> Make:
    def make(ts: int) -> Envelope:
        doc = user_record(login=login, group=group, agent_account=agent, name=f"Client {login}",
                          regdate=ts // 1000 + MT4_OFFSET_S - 86_400, lastdate=ts // 1000 + MT4_OFFSET_S)
        return _env("mt4.users", login, doc, ts, server=MT4)
    return make


def _mt4_open(order: int, login: int) -> Make:
    def make(ts: int) -> Envelope:
        server_s = ts // 1000 + MT4_OFFSET_S
        doc = trade_record(order=order, login=login, symbol="EURUSD", open_time=server_s,
                           timestamp=server_s, open_price=1.08501, close_price=1.08501, profit=0.0)
        return _env("mt4.trades", login, doc, ts, server=MT4)
    return make


def _crm(login: int, **fields: Any) -> Make:
    def make(ts: int) -> Envelope:
        when = datetime.fromtimestamp(ts / 1000, UTC).isoformat()
        doc = crm_event(login=login, server=MT5, time=when, event_id=f"crm-{login}-{ts}", **fields)
        return _env("crm.accounts", login, doc, ts, event=None, server=None)
    return make


def _ticks(bump: str) -> list[Make]:
    def one(symbol: str, bid: Decimal) -> Make:
        def make(ts: int) -> Envelope:
            doc = tick(symbol=symbol, time=str(ts // 1000), time_msc=str(ts),
                       bid=str(bid + Decimal(bump)), ask=str(bid + Decimal(bump) + Decimal("0.00012")))
            return _env("mt5.ticks", 0, doc, ts, event=None)
        return make
    return [one("EURUSD", Decimal("1.08490")), one("GBPUSD", Decimal("1.26490"))]


CRM_OPENED = {"event": "account_opened", "name": "Reza Client", "country": "IR",
              "client_id": "C-71002"}
CRM_IB = {"event": "ib_assigned", "ib_id": "IB-4", "client_id": None, "name": None, "email": None,
          "country": None, "date_of_birth": None, "kyc_status": None}


def history(order: str) -> list[Envelope]:
    """The timeline (seconds after START): every envelope's time is its slot's, so the file is in
    time order either way; `deal_first` moves each account's first deal ahead of its account
    records (the slots keep their times, the records change places)."""
    a_ticks, z_ticks = _ticks("0"), _ticks("0.00030")
    slots: list[tuple[float, list[Make]]] = [
        (0, a_ticks),
        # an A-book netting MT5 account, Agent 7003
        (10, [_mt5_user(NETTING_A, "real\\A-netting", "7003", "500.00"),
              _mt5_deal(9101, NETTING_A, "EURUSD", "buy", "1", "1.08500")]),
        # an MT4 A-book account, agent 8002
        (20, [_mt4_user(MT4_A, "real\\A-mt4", 8002), _mt4_open(1101, MT4_A)]),
        # an MT5 account the platform has said nothing about: the CRM opens it and assigns IB-4
        (30, [_crm(CRM_ONLY, **CRM_OPENED), _crm(CRM_ONLY, **CRM_IB),
              _mt5_deal(9201, CRM_ONLY, "EURUSD", "buy", "1", "1.08505")]),
        # a B-book hedging account of the same IB, mirroring NETTING_A's trades within seconds
        (40, [_mt5_user(HEDGING_B, "real\\B-std", "7003", "100000.00"),
              _mt5_deal(9301, HEDGING_B, "GBPUSD", "buy", "1", "1.26500")]),
        (43, [_mt5_deal(9102, NETTING_A, "GBPUSD", "sell", "1", "1.26490")]),
        (60, [_mt5_deal(9302, HEDGING_B, "GBPUSD", "buy", "1", "1.26510")]),
        (62, [_mt5_deal(9103, NETTING_A, "GBPUSD", "sell", "1", "1.26500")]),
        (80, [_mt5_deal(9303, HEDGING_B, "GBPUSD", "buy", "1", "1.26520")]),
        (82, [_mt5_deal(9104, NETTING_A, "GBPUSD", "sell", "1", "1.26510")]),
        # a second EURUSD buy: one position (netting) or two (hedging)
        (100, [_mt5_deal(9105, NETTING_A, "EURUSD", "buy", "0.5", "1.08520")]),
        (120, z_ticks),
    ]
    out: list[Envelope] = []
    for at, makes in slots:
        if order == "deal_first" and len(makes) > 1 and at in (10, 20, 30, 40):
            makes = [makes[-1], *makes[:-1]]  # the first deal, then the account records
        for i, make in enumerate(makes):
            out.append(make(START + int(at * 1000) + i * 200))
    return out


# -- the runs ---------------------------------------------------------------------------------


def _settings(chdb_dir: Path, commissions: Path, consume_batch: int) -> Settings:
    doc: dict[str, Any] = dict(TEST_CONFIG)
    doc["clickhouse"] = {"dsn": f"chdb://{chdb_dir}", "database": f"o_{uuid.uuid4().hex[:12]}"}
    doc["kafka"] = {"consume_batch": consume_batch}
    doc["commissions"] = [str(commissions)]
    doc["exposure"] = {
        "routing": {"default_book": "B", "rules": [{"group": "real\\A-*", "book": "A"}]},
        "modes": {"default": "hedging", "rules": [{"group": "*netting*", "mode": "netting"}]},
        "margin": {"default": {"margin_call": 100, "stop_out": 50}},
    }
    return parse_settings(doc, "account order test config")


def _commissions_file(directory: Path) -> Path:
    """examples/commissions.yaml, with the platforms' agent logins of two IBs."""
    doc = yaml.safe_load((REPO / "examples" / "commissions.yaml").read_text())
    agents = {"IB-3": ["7003"], "IB-2": ["8002"]}
    for ib in doc["ibs"]:
        if ib["id"] in agents:
            ib["agent_logins"] = agents[ib["id"]]
    path = directory / "commissions.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


Tables = dict[str, tuple[list[str], list[tuple[Any, ...]]]]  # table -> (columns, rows)


def read_tables(store: Store) -> Tables:
    """Every table of the database (views and Null tables hold nothing of their own): FINAL,
    without insertion-time columns, sorted by all columns."""
    _, tables = store.query("SELECT name, engine FROM system.tables WHERE database = currentDatabase() "
                            "AND engine NOT IN ('View', 'MaterializedView', 'Null') ORDER BY name")
    out: Tables = {}
    for name, engine in tables:
        if name == "schema_migrations":
            continue
        _, cols = store.query("SELECT name, type FROM system.columns WHERE database = currentDatabase() "
                              "AND table = {t:String} ORDER BY position", {"t": name})
        kept = [(c, kind) for c, kind in cols if c not in TIME_COLUMNS]
        exprs = [f"finalizeAggregation(`{c}`) AS `{c}`" if kind.startswith("AggregateFunction(")
                 else f"`{c}`" for c, kind in kept]
        final = " FINAL" if engine.startswith(("Replacing", "Aggregating")) else ""
        _, rows = store.query(f"SELECT * FROM (SELECT {', '.join(exprs)} FROM `{name}`{final}) "
                              f"ORDER BY ALL")
        out[name] = [c for c, _ in kept], rows
    return out


Runs = dict[tuple[str, int], Tables]


@pytest.fixture(scope="module")
def databases(
    chdb_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[tuple[str, int], Settings]]:
    """Each order's file replayed record by record and as one batch (4 small replays): the
    settings of each run, by (order, consume_batch)."""
    directory = tmp_path_factory.mktemp("account_order")
    commissions = _commissions_file(directory)
    out: dict[tuple[str, int], Settings] = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("BROKERSTREAM_CLICKHOUSE", raising=False)
        for order in ORDERS:
            path = directory / f"{order}.jsonl"
            write_envelopes(path, history(order))
            for batch in (1, WHOLE_FILE):
                settings = out[order, batch] = _settings(chdb_dir, commissions, batch)
                run_replay(settings, [path])
        yield out


def _store(settings: Settings) -> Store:
    return Store(settings.clickhouse.dsn, settings.clickhouse.database)


@pytest.fixture(scope="module")
def runs(databases: dict[tuple[str, int], Settings]) -> Runs:
    out: Runs = {}
    for run, settings in databases.items():
        store = _store(settings)
        try:
            out[run] = read_tables(store)
        finally:
            store.close()
    return out


def assert_same_rows(runs: Runs, order: str, table: str,
                     where: Callable[[dict[str, Any]], bool] | None = None,
                     ignore: frozenset[str] = frozenset()) -> None:
    """The one-batch run wrote exactly the rows of the record-by-record run (`ignore`: columns
    left out of the comparison)."""
    columns, rows = runs[order, 1][table]
    assert runs[order, WHOLE_FILE][table][0] == columns
    keep = [i for i, c in enumerate(columns) if c not in ignore]

    def kept(table_rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        return [tuple(r[i] for i in keep) for r in table_rows
                if where is None or where(dict(zip(columns, r, strict=True)))]

    want, got = kept(rows), kept(runs[order, WHOLE_FILE][table][1])
    only_want = [r for r in want if r not in got]
    only_got = [r for r in got if r not in want]
    assert not only_want and not only_got, (
        f"{table} ({order}): {len(want)} rows record by record, {len(got)} in one batch\n"
        f"  only record by record: {only_want[:4]}\n  only in one batch: {only_got[:4]}")


# -- per stage --------------------------------------------------------------------------------


@pytest.mark.parametrize("order", ORDERS)
def test_account_state_does_not_depend_on_batching(runs: Runs, order: str) -> None:
    assert_same_rows(runs, order, "accounts_store")


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("table", ["positions_store", "exposure_store", "currency_exposure_store"])
def test_position_books_do_not_depend_on_batching(runs: Runs, order: str, table: str) -> None:
    assert_same_rows(runs, order, table, ignore=SNAPSHOT_COLUMNS)


@pytest.mark.parametrize("order", ORDERS)
def test_exposure_history_ends_in_the_same_exposure(runs: Runs, order: str) -> None:
    """History rows follow the batches (one snapshot per batch at most); its latest snapshot
    per key is the same in both runs."""
    def latest(run: tuple[str, int]) -> dict[tuple[Any, ...], tuple[Any, ...]]:
        columns, rows = runs[run]["exposure_history"]
        at = columns.index("as_of")
        key = [columns.index(c) for c in ("side", "tenant", "book", "symbol")]
        out: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        for row in sorted(rows, key=lambda r: r[at]):
            out[tuple(row[i] for i in key)] = tuple(v for i, v in enumerate(row) if i != at)
        return out

    assert latest((order, 1)) == latest((order, WHOLE_FILE))


def _risk_alert(row: dict[str, Any]) -> bool:
    return str(row["rule_id"]).startswith(("margin.", "limit."))


@pytest.mark.parametrize("order", ORDERS)
def test_margin_state_does_not_depend_on_batching(runs: Runs, order: str) -> None:
    """Each account's margin state after the input (its latest margin alert) is the same; how
    many crossings a batch's single check sees in between follows the batches."""
    def final_state(run: tuple[str, int]) -> dict[str, str]:
        columns, rows = runs[run]["alerts_store"]
        c = {name: i for i, name in enumerate(columns)}
        out: dict[str, str] = {}
        for row in sorted(rows, key=lambda r: r[c["event_time"]]):
            if str(row[c["rule_id"]]).startswith("margin."):
                out[row[c["subject"]]] = row[c["rule_id"]]
        return out

    assert final_state((order, 1)) == final_state((order, WHOLE_FILE))


@pytest.mark.parametrize("order", ORDERS)
def test_account_rules_do_not_depend_on_batching(runs: Runs, order: str) -> None:
    assert_same_rows(runs, order, "alerts_store", lambda row: not _risk_alert(row))


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("table", ["ib_commissions_store", "commission_issues_store"])
def test_commissions_do_not_depend_on_batching(runs: Runs, order: str, table: str) -> None:
    assert_same_rows(runs, order, table)


# written by the exposure stage's snapshots: compared above without their snapshot times;
# the partner tree and plan tiers: written at start from the commissions files, stamped with
# the start time (`loaded_at`), compared below without it
SNAPSHOT_TABLES = frozenset({"positions_store", "exposure_store", "currency_exposure_store",
                             "exposure_history", "alerts_store", "ib_tree_store",
                             "ib_plan_tiers_store"})


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("table", ["ib_tree_store", "ib_plan_tiers_store"])
def test_the_partner_tables_are_the_same(runs: Runs, order: str, table: str) -> None:
    assert_same_rows(runs, order, table, ignore=frozenset({"loaded_at"}))


@pytest.mark.parametrize("order", ORDERS)
def test_every_other_table_is_the_same(runs: Runs, order: str) -> None:
    a, b = runs[order, 1], runs[order, WHOLE_FILE]
    assert set(a) == set(b)
    differing = sorted(t for t in a if t not in SNAPSHOT_TABLES and a[t] != b[t])
    assert not differing, f"tables that depend on batching ({order}): {differing}"


# -- the record-by-record run is the right answer ----------------------------------------------


def test_record_by_record_run_books_accounts_by_their_records(
    databases: dict[tuple[str, int], Settings],
) -> None:
    """Not only stable: in `account_first` order, record by record, every deal is
    booked with its account's group and paid to its account's IB."""
    store = _store(databases["account_first", 1])
    try:
        _, positions = store.query(
            "SELECT account_key, group, book, mode, symbol, side, lots FROM positions "
            "ORDER BY account_key, symbol, position_id")
        _, tier1 = store.query("SELECT deal_key, ib_id FROM ib_commissions WHERE tier = 1 AND kind = 'earn' "
                               "ORDER BY deal_key")
        rules = {r[0] for r in store.query("SELECT rule_id FROM alerts")[1]}
        dead = store.scalar("SELECT count() FROM dead_letters")
        _, account = store.query("SELECT group, agent, country FROM accounts "
                                 f"WHERE account_key = 'mt5:{MT5}:{CRM_ONLY}'")
    finally:
        store.close()
    netting = f"mt5:{MT5}:{NETTING_A}"
    assert (netting, "real\\A-netting", "A", "netting", "EURUSD", "buy", Decimal("1.5")) in positions
    assert (netting, "real\\A-netting", "A", "netting", "GBPUSD", "sell", Decimal("3")) in positions
    assert (f"mt4:{MT4}:{MT4_A}", "real\\A-mt4", "A", "hedging", "EURUSD", "buy", Decimal("1")) in positions
    hedging = [p for p in positions if p[0] == f"mt5:{MT5}:{HEDGING_B}"]
    assert hedging == [(hedging[0][0], "real\\B-std", "B", "hedging", "GBPUSD", "buy", Decimal("1"))] * 3
    assert (f"mt5:{MT5}:{CRM_ONLY}", "", "B", "hedging", "EURUSD", "buy", Decimal("1")) in positions
    assert {
        (f"mt5:{MT5}:9101", "IB-3"), (f"mt5:{MT5}:9105", "IB-3"), (f"mt5:{MT5}:9301", "IB-3"),
        (f"mt4:{MT4}:1101:in", "IB-2"), (f"mt5:{MT5}:9201", "IB-4"),
    } <= set(tier1)
    assert account == [("", "IB-4", "IR")]
    assert dead == 0
    # AML/fraud rules reading account fields; the margin of the 500 USD account
    assert {"high_risk_jurisdiction", "mirror_trades"} <= rules
    assert rules & {"margin.margin_call", "margin.stop_out"}
