"""The daily report pack of one tenant for one UTC day: broker P&L by book and symbol, client
deposits and withdrawals, payments, IB payouts, new accounts and their KYC, alerts opened and
closed. Every figure comes from a query of reports/queries.py.

Broker P&L (realised, from the deals of the day; open positions' floating P&L is the
exposure dashboards' view): per book and symbol,
``broker_trading = -(clients' profit + swap) x the book's B-book share`` (the broker is the
clients' counterparty for that share; an A-book passes the trades on) and
``charges = -(commission + fee)`` (what the clients paid, whatever the book);
``broker_pnl = broker_trading + charges``. The book of an account comes from the
configuration's `exposure.routing` (as the exposure step places it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from reports import queries as q
from reports.model import Cell, Column, Money, Report, Section
from reports.statement import Reader, rows_of, utc
from risk_rules.exposure.routing import BookRouting
from schemas.identity import parse_account_key
from schemas.money import EXACT

ZERO = Decimal(0)

# (tenant, server, platform, group, account_key, login) -> (book, B-book share)
BookOf = Callable[[str, str, str, str, str, int], tuple[str, Decimal]]


def routing_books(routing: BookRouting) -> BookOf:
    """Books as the configuration's `exposure.routing` places accounts."""
    def book_of(tenant: str, server: str, platform: str, group: str, account_key: str,
                login: int) -> tuple[str, Decimal]:
        book = routing.book_for(tenant=tenant, server=server, platform=platform, group=group,
                                account_key=account_key, login=login)
        return book, routing.b_share(book)
    return book_of


@dataclass(frozen=True, slots=True)
class BookLine:
    book: str
    symbol: str
    currency: str
    share: Decimal
    deals: int
    lots: Decimal
    client_pnl: Decimal  # profit + swap
    charges: Decimal  # what the clients paid: -(commission + fee)

    @property
    def broker_trading(self) -> Decimal:
        return EXACT.multiply(-self.client_pnl, self.share)

    @property
    def broker_pnl(self) -> Decimal:
        return self.broker_trading + self.charges


def broker_pnl(reader: Reader, tenant: str, day: date, book_of: BookOf) -> list[BookLine]:
    sums: dict[tuple[str, str, str], list[Decimal]] = {}
    shares: dict[str, Decimal] = {}
    for r in rows_of(reader, q.DAILY_CLIENT_PNL, {"tenant": tenant, "day": day}):
        platform, server, login = parse_account_key(r["account_key"])
        book, share = book_of(tenant, server, platform, r["account_group"] or "", r["account_key"], login)
        shares[book] = share
        acc = sums.setdefault((book, r["symbol"], r["currency"]), [ZERO, ZERO, ZERO, ZERO])
        acc[0] += r["deals"]
        acc[1] += r["lots"]
        acc[2] += r["profit"] + r["swap"]
        acc[3] -= r["commission"] + r["fee"]
    return [BookLine(book, symbol, currency, shares[book], int(v[0]), v[1], v[2], v[3])
            for (book, symbol, currency), v in sorted(sums.items())]


BOOK_COLUMNS = (
    Column("book"), Column("symbol"), Column("currency"), Column("b_share", "quantity"),
    Column("deals", "count"), Column("lots", "quantity"), Column("client_pnl", "money"),
    Column("broker_trading", "money"), Column("charges", "money"), Column("broker_pnl", "money"),
)
CASH_COLUMNS = (
    Column("currency"), Column("deposit_count", "count"), Column("deposits", "money"),
    Column("withdrawal_count", "count"), Column("withdrawals", "money"), Column("net", "money"),
)
PAYMENT_COLUMNS = (
    Column("provider"), Column("kind"), Column("status"), Column("currency"),
    Column("payments", "count"), Column("amount", "money"),
)
IB_COLUMNS = (
    Column("ib_id"), Column("currency"), Column("own", "money"), Column("override", "money"),
    Column("total", "money"), Column("total_usd", "money"), Column("earn_rows", "count"),
    Column("reversal_rows", "count"),
)
ACCOUNT_COLUMNS = (
    Column("registered", "time"), Column("login", "count"), Column("server"), Column("name"),
    Column("group"), Column("country"), Column("currency"), Column("kyc_status"),
)
KYC_COLUMNS = (Column("kyc_status"), Column("accounts", "count"))
ALERT_COLUMNS = (Column("category"), Column("rule_id"), Column("opened", "count"),
                 Column("closed", "count"))
SUMMARY_COLUMNS = (Column("figure"), Column("currency"), Column("value", "money"))


def daily_pack(reader: Reader, tenant: str, day: date, book_of: BookOf,
               generated_at: datetime | None = None) -> Report:
    params = {"tenant": tenant, "day": day}
    books = broker_pnl(reader, tenant, day, book_of)
    cash = rows_of(reader, q.DAILY_CASH, params)
    payments = rows_of(reader, q.DAILY_PAYMENTS, params)
    ibs = rows_of(reader, q.DAILY_IB_PAYOUTS, params)
    accounts = rows_of(reader, q.DAILY_NEW_ACCOUNTS, params)
    kyc = rows_of(reader, q.DAILY_KYC, params)
    alerts = rows_of(reader, q.DAILY_ALERTS, params)

    summary: list[tuple[Cell, ...]] = []
    for currency in sorted({b.currency for b in books} | {r["currency"] for r in cash}):
        mine = [b for b in books if b.currency == currency]
        summary.append(("clients' realised P&L", currency,
                        Money(sum((b.client_pnl for b in mine), ZERO), currency)))
        summary.append(("broker P&L", currency, Money(sum((b.broker_pnl for b in mine), ZERO), currency)))
        for r in cash:
            if r["currency"] == currency:
                summary += [("deposits", currency, Money(r["deposits"], currency)),
                            ("withdrawals", currency, Money(r["withdrawals"], currency)),
                            ("net deposits", currency, Money(r["net"], currency))]
    for currency in sorted({r["currency"] for r in ibs}):
        summary.append(("IB payouts", currency,
                        Money(sum((r["total"] for r in ibs if r["currency"] == currency), ZERO), currency)))
    summary += [("new accounts", "", len(accounts)),
                ("alerts opened", "", sum(int(r["opened"]) for r in alerts)),
                ("alerts closed", "", sum(int(r["closed"]) for r in alerts))]

    def usd(value: Decimal) -> Money:
        return Money(value, "USD")

    return Report(
        title="Daily report", tenant=tenant, period=f"{day} (UTC day)",
        generated_at=generated_at or datetime.now(UTC),
        sections=(
            Section("summary", "Summary", SUMMARY_COLUMNS, summary,
                    queries=("daily_client_pnl", "daily_cash", "daily_ib_payouts", "daily_new_accounts",
                             "daily_alerts"),
                    note="Totals of the sections that follow, per currency."),
            Section("broker_pnl", "Broker P&L by book and symbol (realised)", BOOK_COLUMNS,
                    [(b.book, b.symbol, b.currency, b.share, b.deals, b.lots, Money(b.client_pnl, b.currency),
                      Money(b.broker_trading, b.currency), Money(b.charges, b.currency),
                      Money(b.broker_pnl, b.currency)) for b in books],
                    queries=("daily_client_pnl",),
                    note="client_pnl = clients' profit + swap of the day's deals; broker_trading = "
                         "-client_pnl x b_share of the book; charges = -(commission + fee) the "
                         "clients paid; broker_pnl = broker_trading + charges. Book from "
                         "exposure.routing."),
            Section("cash", "Client deposits and withdrawals", CASH_COLUMNS,
                    [(r["currency"], int(r["deposit_count"]), Money(r["deposits"], r["currency"]),
                      int(r["withdrawal_count"]), Money(r["withdrawals"], r["currency"]),
                      Money(r["net"], r["currency"])) for r in cash],
                    queries=("daily_cash",),
                    note="The platforms' balance operations (kind balance): what reached the accounts."),
            Section("payments", "Payments (payment providers)", PAYMENT_COLUMNS,
                    [(r["provider"], r["kind"], r["status"], r["currency"], int(r["payments"]),
                      Money(r["amount"], r["currency"])) for r in payments],
                    queries=("daily_payments",)),
            Section("ib_payouts", "IB payouts", IB_COLUMNS,
                    [(r["ib_id"], r["currency"], Money(r["own"], r["currency"]),
                      Money(r["override"], r["currency"]), Money(r["total"], r["currency"]),
                      usd(r["total_usd"]), int(r["earn_rows"]), int(r["reversal_rows"])) for r in ibs],
                    queries=("daily_ib_payouts",),
                    note="own: tier 1 (the IB's clients); override: tiers 2+ (its sub-IBs' clients)."),
            Section("new_accounts", "New accounts", ACCOUNT_COLUMNS,
                    [(utc(r["registered"]), int(r["login"]), r["server"], r["name"], r["group"],
                      r["country"], r["currency"], r["kyc_status"]) for r in accounts],
                    queries=("daily_new_accounts",),
                    note="Registered that day; KYC status as it is now (accounts keeps the latest state)."),
            Section("kyc", "New accounts by KYC status", KYC_COLUMNS,
                    [(r["kyc_status"], int(r["accounts"])) for r in kyc], queries=("daily_kyc",)),
            Section("alerts", "Alerts opened and closed", ALERT_COLUMNS,
                    [(r["category"], r["rule_id"], int(r["opened"]), int(r["closed"])) for r in alerts],
                    queries=("daily_alerts",),
                    note="closed: a limit back under its recovery level, a margin level recovered. "
                         "AML and fraud alerts are closed in case management, outside the store."),
        ),
    )
