"""Statements and report packs (reports/) on the simulated store: every figure recomputed in
plain Python from the raw `*_store` tables (every version written, latest kept, deletes
dropped: not the views, not reports/queries.py), the three formats carrying the same figures,
the payout run adding up to ib_payouts_monthly, and the CLI's one-line errors."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from openpyxl import load_workbook
from pypdf import PdfReader

from pipelines.store import Store
from reports.daily import daily_pack, routing_books
from reports.formats import read_csv, to_csv, write
from reports.model import Money, Report, text
from reports.payout_run import payout_run
from reports.statement import BALANCE_MOVEMENTS, Period, client_statement
from risk_rules.exposure.routing import BookRouting
from schemas.identity import account_key
from tests.conftest import SimulatedStore

ZERO = Decimal(0)
CREDIT = {"credit", "so_compensation_credit"}


def utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def latest(store: Store, table: str, key: str, columns: str, *, versioned: bool = True,
           deletes: bool = True) -> list[dict[str, Any]]:
    """Every fact of a raw *_store table once: its highest version, unless that one is a delete."""
    extra = (", version" if versioned else "") + (", is_deleted" if deletes else "")
    names, rows = store.query(f"SELECT {key} AS k{extra}, {columns} FROM {table}")
    best: dict[Any, dict[str, Any]] = {}
    for values in rows:
        row = dict(zip(names, values, strict=True))
        old = best.get(row["k"])
        if old is None or (versioned and row["version"] >= old["version"]):
            best[row["k"]] = row
    return [r for r in best.values() if not (deletes and r["is_deleted"])]


@pytest.fixture(scope="module")
def raw(simulated_store: SimulatedStore) -> dict[str, list[dict[str, Any]]]:
    store = simulated_store.store
    return {
        "deals": latest(store, "deals_store", "deal_key",
                        "tenant, platform, server, login, symbol, lots, profit, swap, commission, fee, "
                        "currency, canceled, time"),
        "ops": latest(store, "balance_operations_store", "op_key",
                      "tenant, platform, server, login, kind, amount, currency, provider, status, time"),
        "accounts": latest(store, "accounts_store", "account_key",
                           "tenant, platform, server, login, client_id, `group`, currency, kyc_status, "
                           "registration, first_seen", deletes=False),
        "commissions": latest(store, "ib_commissions_store", "commission_id",
                              "tenant, ib_id, tier, amount, amount_usd, currency, kind, deal_time",
                              versioned=False, deletes=False),
        "alerts": latest(store, "alerts_store", "alert_id", "tenant, rule_id, category, facts, mode, "
                         "event_time", versioned=False, deletes=False),
    }


def key(row: dict[str, Any]) -> str:
    return account_key(row['platform'], row['server'], row['login'])


def period_of(sim: SimulatedStore) -> Period:
    first = sim.time_from.date() + timedelta(days=4)
    return Period(first, first + timedelta(days=6))


def busiest_client(raw: dict[str, list[dict[str, Any]]], period: Period) -> tuple[str, str]:
    """(tenant, client id) of the client with several accounts and the most records in the period."""
    accounts = defaultdict(set)
    for a in raw["accounts"]:
        if a["client_id"]:
            accounts[(a["tenant"], a["client_id"])].add(a["k"])
    records = Counter(key(r) for r in raw["deals"] + raw["ops"]
                      if period.start <= utc(r["time"]) < period.end and r["platform"] != "psp")
    best = max((c for c, keys in accounts.items() if len(keys) > 1),
               key=lambda c: (sum(records[k] for k in accounts[c]), c))
    return best


def recompute_statement(raw: dict[str, list[dict[str, Any]]], keys: set[str], period: Period
                        ) -> dict[str, dict[str, Decimal]]:
    """Per account: opening, each movement, credit, closing; from the raw rows alone."""
    out: dict[str, dict[str, Decimal]] = {k: defaultdict(Decimal) for k in keys}
    for op in raw["ops"]:
        k, t = key(op), utc(op["time"])
        if k not in keys or op["platform"] == "psp" or t >= period.end:
            continue
        credit = op["kind"] in CREDIT
        if t < period.start:
            out[k]["opening_credit" if credit else "opening"] += op["amount"]
        elif credit:
            out[k]["credit"] += op["amount"]
        elif op["kind"] == "balance":
            out[k]["deposits" if op["amount"] >= 0 else "withdrawals"] += op["amount"]
        else:
            out[k]["other_operations"] += op["amount"]
    for d in raw["deals"]:
        k, t = key(d), utc(d["time"])
        if k not in keys or d["canceled"] or t >= period.end:
            continue
        if t < period.start:
            out[k]["opening"] += d["profit"] + d["swap"] + d["commission"] + d["fee"]
        else:
            for name, column in (("profit", "profit"), ("swap", "swap"), ("commission", "commission"),
                                 ("fees", "fee")):
                out[k][name] += d[column]
    for figures in out.values():
        figures["closing"] = figures["opening"] + sum((figures[m] for m in BALANCE_MOVEMENTS), ZERO)
        figures["closing_credit"] = figures["opening_credit"] + figures["credit"]
    return out


@pytest.fixture(scope="module")
def statement(simulated_store: SimulatedStore, raw: dict[str, list[dict[str, Any]]]
              ) -> tuple[Report, str, str, Period]:
    period = period_of(simulated_store)
    tenant, client = busiest_client(raw, period)
    report = client_statement(simulated_store.store, tenant, period, client=client,
                              generated_at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC))
    return report, tenant, client, period


def test_client_statement_ties_to_the_raw_tables(statement: tuple[Report, str, str, Period],
                                                 raw: dict[str, list[dict[str, Any]]]) -> None:
    report, tenant, client, period = statement
    accounts = {a["k"]: a for a in raw["accounts"] if a["tenant"] == tenant and a["client_id"] == client}
    expected = recompute_statement(raw, set(accounts), period)
    rows = [r for r in report.sections[0].dicts() if r["login"] != "TOTAL"]
    assert len(rows) == len(accounts) > 1
    moved_somewhere = False
    for row in rows:
        k = next(k for k, a in accounts.items()
                 if a["login"] == row["login"] and a["server"] == row["server"])
        want = expected[k]
        for name in ("opening", "closing"):
            money = row[f"{name}_balance"]
            assert isinstance(money, Money) and money.amount == want[name], (k, name)
        for name in (*BALANCE_MOVEMENTS,):
            money = row[name]
            assert isinstance(money, Money) and money.amount == want[name], (k, name)
            moved_somewhere |= money.amount != 0
        assert row["closing_credit"].amount == want["closing_credit"]  # type: ignore[union-attr]
        # opening + movements = closing (the closing is summed by its own query)
        assert row["check"] == "OK"
        assert want["opening"] + sum((want[m] for m in BALANCE_MOVEMENTS), ZERO) == want["closing"]
    assert moved_somewhere
    totals = [r for r in report.sections[0].dicts() if r["login"] == "TOTAL"]
    for total in totals:
        mine = [r for r in rows if r["currency"] == total["currency"]]
        assert total["closing_balance"].amount == sum(  # type: ignore[union-attr]
            (r["closing_balance"].amount for r in mine), ZERO)  # type: ignore[union-attr]
    # the lines: every deal (not canceled) and platform operation of the period
    deals = [d for d in raw["deals"] if key(d) in accounts and not d["canceled"]
             and period.start <= utc(d["time"]) < period.end]
    ops = [o for o in raw["ops"] if key(o) in accounts and o["platform"] != "psp"
           and period.start <= utc(o["time"]) < period.end]
    assert len(report.section("deals").rows) == len(deals) > 0
    assert len(report.section("operations").rows) == len(ops)
    assert sum((r["profit"].amount for r in report.section("deals").dicts()), ZERO) == sum(  # type: ignore[union-attr]
        (d["profit"] for d in deals), ZERO)


def test_statement_of_one_login(simulated_store: SimulatedStore,
                                statement: tuple[Report, str, str, Period]) -> None:
    report, tenant, _, period = statement
    first = report.sections[0].dicts()[0]
    one = client_statement(simulated_store.store, tenant, period, login=int(first["login"]),  # type: ignore[arg-type]
                           server=str(first["server"]))
    assert one.sections[0].rows == [report.sections[0].rows[0]]


def assert_same_figures(report: Report, tmp_path: Path) -> None:
    """The CSV, the XLSX read back with openpyxl and the PDF's text carry the same figures."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    header, sections = read_csv(to_csv(report))
    assert header["tenant"] == report.tenant and header["period"] == report.period
    for section in report.sections:
        assert [list(r.values()) for r in sections[section.key]] == [
            [text(v) for v in row] for row in section.rows]

    xlsx = write(report, "xlsx", tmp_path / "r.xlsx")
    book = load_workbook(xlsx, read_only=True)
    assert book.sheetnames[0] == "summary"
    for section in report.sections:
        values = [list(r) for r in book[section.key].iter_rows(values_only=True)]
        start = next(i for i, r in enumerate(values) if r and r[0] == section.title) + 2
        got = values[start:start + len(section.rows)]
        for row, cells in zip(section.rows, got, strict=True):
            for value, cell in zip(row, cells, strict=False):
                if isinstance(value, Money):  # a number in the sheet, the same digits
                    assert Decimal(str(cell)).quantize(value.shown) == value.shown
                elif isinstance(value, datetime):
                    assert cell == value.replace(tzinfo=None)
                elif isinstance(value, Decimal):  # lots and prices: the same number
                    assert Decimal(str(cell)) == value
                else:
                    assert (cell if cell is not None else "") == (value if value is not None else ""), value
    first = [r for r in book["summary"].iter_rows(values_only=True)][:4]
    assert first[1][:2] == ("tenant", report.tenant) and first[2][:2] == ("period", report.period)

    pdf = write(report, "pdf", tmp_path / "r.pdf")
    content = "\n".join(page.extract_text() for page in PdfReader(pdf).pages)
    flat = content.replace(",", "")
    assert f"tenant: {report.tenant}" in content and f"period: {report.period}" in content
    for section in report.sections:
        for row in section.rows[:60]:
            for value in row:
                if isinstance(value, Money | int | datetime):
                    assert text(value) in flat, (section.key, text(value))


def test_csv_xlsx_and_pdf_carry_the_same_figures(statement: tuple[Report, str, str, Period],
                                                 simulated_store: SimulatedStore,
                                                 raw: dict[str, list[dict[str, Any]]],
                                                 tmp_path: Path) -> None:
    report = statement[0]
    assert read_csv(to_csv(report))[0]["generated_at"] == "2025-01-02 03:04:05"
    assert_same_figures(report, tmp_path / "statement")
    day = statement[3].first
    assert_same_figures(daily_pack(simulated_store.store, statement[1], day,
                                   routing_books(BookRouting())), tmp_path / "daily")
    from reports.payout_run import ib_rows, ib_statement
    ib = next(c for c in raw["commissions"] if c["tenant"] == statement[1])
    month = utc(ib["deal_time"]).strftime("%Y-%m")
    rows = ib_rows(simulated_store.store, ib["ib_id"], month, statement[1])
    assert_same_figures(ib_statement(rows, ib["ib_id"], month, statement[1]), tmp_path / "ib")


def test_money_is_shown_in_the_currencys_minor_units(tmp_path: Path) -> None:
    from reports.model import Column, Section

    report = Report("t", "acme", "p", datetime(2025, 1, 1, tzinfo=UTC), sections=(
        Section("summary", "s", (Column("currency"), Column("amount", "money")), [
            ("JPY", Money(Decimal("1234.5"), "JPY")), ("USD", Money(Decimal("-0.004"), "USD")),
            ("KWD", Money(Decimal("1.23456"), "KWD")), ("EUR", Money(Decimal("0.125"), "EUR"))]),))
    _, sections = read_csv(to_csv(report))
    assert [r["amount"] for r in sections["summary"]] == ["1234", "0.00", "1.235", "0.12"]
    sheet = load_workbook(write(report, "xlsx", tmp_path / "m.xlsx"))["summary"]
    formats = {row[0].value: row[1].number_format for row in sheet.iter_rows(min_row=8) if row[0].value}
    assert formats == {"JPY": "#,##0", "USD": "#,##0.00", "KWD": "#,##0.000", "EUR": "#,##0.00"}


def test_daily_pack_ties_to_the_raw_tables(simulated_store: SimulatedStore,
                                           raw: dict[str, list[dict[str, Any]]]) -> None:
    days = Counter((d["tenant"], utc(d["time"]).date()) for d in raw["deals"])
    (tenant, day), _ = days.most_common(1)[0]
    groups = sorted({a["group"] for a in raw["accounts"] if a["tenant"] == tenant and a["group"]})
    routing = BookRouting(books={"A": Decimal(0), "B": Decimal(1), "H": Decimal("0.5")},
                          rules=[{"group": groups[0], "book": "A"}, {"group": groups[-1], "book": "H"}])
    report = daily_pack(simulated_store.store, tenant, day, routing_books(routing))
    accounts = {a["k"]: a for a in raw["accounts"]}

    # broker P&L by book and symbol
    want: dict[tuple[str, str], list[Decimal]] = defaultdict(lambda: [ZERO, ZERO, ZERO])
    for d in raw["deals"]:
        if d["tenant"] != tenant or d["canceled"] or utc(d["time"]).date() != day:
            continue
        account = accounts.get(key(d))
        group = account["group"] if account else ""
        book = "A" if group == groups[0] else "H" if group == groups[-1] else "B"
        share = routing.books[book]
        acc = want[(book, d["symbol"])]
        acc[0] += d["profit"] + d["swap"]
        acc[1] += -(d["commission"] + d["fee"])
        acc[2] += -(d["profit"] + d["swap"]) * share - (d["commission"] + d["fee"])
    got = {(r["book"], r["symbol"]): r for r in report.section("broker_pnl").dicts()}
    assert set(got) == set(want) and {b for b, _ in want} >= {"B"}
    for k, (client_pnl, charges, broker) in want.items():
        assert got[k]["client_pnl"].amount == client_pnl  # type: ignore[union-attr]
        assert got[k]["charges"].amount == charges  # type: ignore[union-attr]
        assert got[k]["broker_pnl"].amount == broker  # type: ignore[union-attr]

    # deposits / withdrawals / net
    cash: dict[str, list[Decimal]] = defaultdict(lambda: [ZERO, ZERO])
    for op in raw["ops"]:
        if op["tenant"] == tenant and op["platform"] != "psp" and op["kind"] == "balance" \
                and utc(op["time"]).date() == day:
            cash[op["currency"]][0 if op["amount"] >= 0 else 1] += op["amount"]
    rows = {r["currency"]: r for r in report.section("cash").dicts()}
    assert set(rows) == set(cash)
    for currency, (deposits, withdrawals) in cash.items():
        assert rows[currency]["deposits"].amount == deposits  # type: ignore[union-attr]
        assert rows[currency]["withdrawals"].amount == withdrawals  # type: ignore[union-attr]
        assert rows[currency]["net"].amount == deposits + withdrawals  # type: ignore[union-attr]

    # IB payouts of the day
    ibs: dict[tuple[str, str], list[Decimal]] = defaultdict(lambda: [ZERO, ZERO])
    for c in raw["commissions"]:
        if c["tenant"] == tenant and utc(c["deal_time"]).date() == day:
            ibs[(c["ib_id"], c["currency"])][0 if c["tier"] == 1 else 1] += c["amount"]
    got_ibs = {(r["ib_id"], r["currency"]): r for r in report.section("ib_payouts").dicts()}
    assert set(got_ibs) == set(ibs) and ibs
    for k, (own, override) in ibs.items():
        assert got_ibs[k]["own"].amount == own and got_ibs[k]["override"].amount == override  # type: ignore[union-attr]

    # new accounts and KYC
    new = [a for a in accounts.values() if a["tenant"] == tenant
           and utc(a["registration"] or a["first_seen"]).date() == day]
    assert len(report.section("new_accounts").rows) == len(new)
    assert {r["kyc_status"]: r["accounts"] for r in report.section("kyc").dicts()} == dict(
        Counter(a["kyc_status"] or "unknown" for a in new))

    # alerts opened / closed
    import json
    opened, closed = Counter(), Counter()
    for a in raw["alerts"]:
        if a["tenant"] != tenant or a["mode"] != "alert" or utc(a["event_time"]).date() != day:
            continue
        closes = (a["rule_id"].startswith("limit.") and json.loads(a["facts"]).get("kind") == "recovered") \
            or a["rule_id"] == "margin.margin_recovered"
        (closed if closes else opened)[a["rule_id"]] += 1
    alerts = report.section("alerts").dicts()
    assert {r["rule_id"]: r["opened"] for r in alerts if r["opened"]} == dict(opened)
    assert {r["rule_id"]: r["closed"] for r in alerts if r["closed"]} == dict(closed)

    # the summary is the sections' totals
    summary = {(r["figure"], r["currency"]): r["value"] for r in report.sections[0].dicts()}
    assert summary[("new accounts", "")] == len(new)
    assert summary[("alerts opened", "")] == sum(opened.values())
    for currency, (deposits, withdrawals) in cash.items():
        assert summary[("net deposits", currency)].amount == deposits + withdrawals  # type: ignore[union-attr]
    broker_total = sum((v[2] for v in want.values()), ZERO)
    assert sum((m.amount for (f, _), m in summary.items() if f == "broker P&L"), ZERO) == broker_total  # type: ignore[union-attr]


def test_payout_run_adds_up_to_ib_payouts_monthly(simulated_store: SimulatedStore,
                                                  raw: dict[str, list[dict[str, Any]]],
                                                  tmp_path: Path) -> None:
    store = simulated_store.store
    month = date(simulated_store.time_from.year, simulated_store.time_from.month, 1)
    run = payout_run(store, month, tmp_path, "csv")
    _, views = store.query("SELECT currency, sum(total), count(DISTINCT tenant, ib_id) "
                           "FROM ib_payouts_monthly WHERE month = {m:Date} GROUP BY currency", {"m": month})
    assert run.totals() == {c: t for c, t, _ in views}
    raw_totals: dict[str, Decimal] = defaultdict(Decimal)
    for c in raw["commissions"]:
        if utc(c["deal_time"]).strftime("%Y-%m") == run.month:
            raw_totals[c["currency"]] += c["amount"]
    assert run.totals() == dict(raw_totals)
    assert len(run.files) == sum(n for _, _, n in views) > 0 and not run.mismatches
    header, sections = read_csv(run.summary_file.read_bytes().decode())
    assert header["period"].startswith(run.month)
    lines = sections["summary"]
    assert all(r["check"] == "OK" for r in lines if r["tenant"] != "TOTAL")
    for currency, total in run.totals().items():
        shown = text(Money(total, currency))
        assert any(r["tenant"] == "TOTAL" and r["currency"] == currency and r["total"] == shown
                   for r in lines)
    one = read_csv(run.files[0].read_bytes().decode())[1]
    assert one["summary"][-1]["period"].startswith("month ")


# -- the command line ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def config(simulated_store: SimulatedStore, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("reports") / "config.yaml"
    path.write_text(yaml.safe_dump(simulated_store.settings.model_dump(mode="json")), encoding="utf-8")
    return path


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from brokerstream.cli import main

    try:
        code = main(args)
    except SystemExit as exc:  # argparse's own errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_writes_every_format(config: Path, statement: tuple[Report, str, str, Period], tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    report, tenant, client, period = statement
    for fmt in ("csv", "xlsx", "pdf"):
        out = tmp_path / f"s.{fmt}"
        code, stdout, err = run_cli(["statement", "client", "--client", client, "--from", str(period.first),
                                     "--to", str(period.last), "--format", fmt, "--out", str(out),
                                     "--config", str(config)], capsys)
        # the summary (with the elapsed time) on stderr: stdout stays for data
        assert code == 0 and "balance check OK" in err and not stdout and out.stat().st_size > 0
    _, sections = read_csv((tmp_path / "s.csv").read_bytes().decode())
    assert [list(r.values()) for r in sections["summary"]] == [
        [text(v) for v in row] for row in report.sections[0].rows]
    code, stdout, _ = run_cli(["report", "daily", "--date", str(period.first), "--tenant", tenant,
                               "--format", "xlsx", "--out", str(tmp_path / "daily"), "--config", str(config)],
                              capsys)
    assert code == 0 and (tmp_path / "daily" / f"daily-{tenant}-{period.first}.xlsx").exists()
    ib = simulated_store_ib(config)
    code, stdout, err = run_cli(["commissions", "statement", "--ib", ib[0], "--month", ib[1],
                                 "--format", "pdf", "--out", str(tmp_path / "ib.pdf"),
                                 "--config", str(config)], capsys)
    assert code == 0 and "lines written" in err and ib[0] in stdout
    text_pdf = "\n".join(p.extract_text() for p in PdfReader(tmp_path / "ib.pdf").pages)
    assert f"ib: {ib[0]}" in text_pdf and f"month {ib[1]}" in text_pdf


def simulated_store_ib(config: Path) -> tuple[str, str]:
    from pipelines.config import load_settings
    from pipelines.store import open_reader

    settings = load_settings(config)
    store = open_reader(settings.clickhouse_dsn(), settings.clickhouse.database)
    try:
        _, rows = store.query("SELECT ib_id, formatDateTime(month, '%Y-%m') FROM ib_payouts_monthly "
                              "ORDER BY earn_rows LIMIT 1")
    finally:
        store.close()
    return rows[0][0], rows[0][1]


D = ["--from", "2024-12-01", "--to", "2024-12-02"]


@pytest.mark.parametrize("args, message", [
    (["statement", "client", "--client", "C-1", "--from", "2024-12-01", "--to", "2024-13-01"],
     "--to must be a date"),
    (["statement", "client", "--client", "C-1", "--from", "2024-12-05", "--to", "2024-12-01"],
     "is before --from"),
    (["statement", "client", *D], "exactly one of --client"),
    (["statement", "client", "--client", "nobody", *D], "no client 'nobody'"),
    (["statement", "client", "--login", "12x", *D], "--login must be"),
    (["statement", "client", "--client", "C-1", *D, "--tenant", "x"], "no tenant 'x'"),
    (["statement", "client", "--client", "C-1", "--from", "2024-12-01"], "required: --to"),
    (["statement", "client", "--client", "C-1", *D, "--format", "doc"], "invalid choice"),
    (["report", "daily", "--date", "2024-02-30", "--out", "x"], "--date must be a date"),
    (["commissions", "statement", "--ib", "IB-1", "--month", "2026-13"], "--month must be a month"),
    (["commissions", "statement", "--ib", "IB-nobody", "--month", "2024-11"], "no IB 'IB-nobody'"),
    (["commissions", "payout-run", "--month", "2024-1", "--out", "x"], "--month must be a month"),
    (["commissions", "statement", "--ib", "IB-1", "--month", "2024-11", "--database", "no_such_db"],
     "no database no_such_db in"),
])
def test_bad_arguments_exit_2_with_one_line(args: list[str], message: str, config: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli([*args, "--config", str(config)], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_a_read_never_creates_a_database(config: Path, simulated_store: SimulatedStore, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    store = simulated_store.store
    code, _, err = run_cli(["report", "daily", "--date", "2024-12-01", "--out", str(tmp_path / "d"),
                            "--database", "never_made", "--config", str(config)], capsys)
    assert code == 2 and "no database never_made" in err
    assert store.scalar("SELECT count() FROM system.databases WHERE name = 'never_made'") == 0
    assert not (tmp_path / "d").exists()
    doc = yaml.safe_load(config.read_text())
    doc["clickhouse"]["dsn"] = f"chdb://{tmp_path / 'no-such-dir'}"
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(doc))
    code, _, err = run_cli(["statement", "client", "--client", "C-1", "--from", "2024-12-01", "--to",
                            "2024-12-02", "--config", str(other)], capsys)
    assert code == 2 and f"in {tmp_path / 'no-such-dir'}" in err and not (tmp_path / "no-such-dir").exists()


# -- properties of the model and the CSV --------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from reports.model import Column, Section  # noqa: E402
from schemas.money import minor_digits  # noqa: E402

amounts = st.decimals(min_value=Decimal("-1e12"), max_value=Decimal("1e12"), places=8, allow_nan=False)
currencies = st.sampled_from(["USD", "EUR", "JPY", "KWD", "CLF", "USDT"])
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(texts, amounts, currencies), max_size=8))
def test_csv_round_trips_and_money_has_the_minor_digits(rows: list[tuple[str, Decimal, str]]) -> None:
    cells = [(label, Money(amount, currency)) for label, amount, currency in rows]
    report = Report("r", "t", "p", datetime(2025, 1, 1, tzinfo=UTC), sections=(
        Section("summary", "s", (Column("label"), Column("amount", "money")), cells),
        Section("empty", "e", (Column("x"),), [])))
    header, sections = read_csv(to_csv(report))
    assert header["tenant"] == "t" and sections["empty"] == []
    assert [(r["label"], r["amount"]) for r in sections["summary"]] == [
        (label, text(m)) for label, m in cells]
    for (_, amount, currency), row in zip(rows, sections["summary"], strict=True):
        shown = Decimal(row["amount"])
        digits = minor_digits(currency)
        assert -shown.as_tuple().exponent == digits  # type: ignore[operator]
        assert abs(shown - amount) <= Decimal(1).scaleb(-digits) / 2
