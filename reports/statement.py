"""The account statement a client receives: per account (one CRM client's accounts, or one
login), the opening balance at the start of the period, every deal and balance operation in
it, the closing balance, and the check that opening + movements = closing.

Balance is defined as the platforms define it (reports/queries.py): balance operations other
than credit, plus the profit, swap, commission and fee of every deal that is not canceled.
The opening is the balance of everything before `from`; the closing is computed by its own
query (everything before the day after `to`), so the check compares two independent sums.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from reports import queries as q
from reports.model import Cell, Column, Money, Report, Section

ZERO = Decimal(0)
# The movement categories of `period_movements`, in the statement's order; all but credit
# move the balance.
BALANCE_MOVEMENTS = ("deposits", "withdrawals", "other_operations", "profit", "swap", "commission",
                     "fees")


class Reader(Protocol):
    """What the reports read through (pipelines.store.Store)."""

    def query(self, sql: str, parameters: dict[str, Any] | None = None
              ) -> tuple[list[str], list[tuple[Any, ...]]]: ...


class ReportError(ValueError):
    """A request the data cannot answer (no such client, ambiguous login): one line, exit 2."""


class NotFound(ReportError):
    """No account of that client or login (in that tenant)."""


@dataclass(frozen=True, slots=True)
class Period:
    """Whole UTC days, both included: [first 00:00, day after last 00:00)."""

    first: date
    last: date

    def __post_init__(self) -> None:
        if self.last < self.first:
            raise ReportError(f"--to {self.last} is before --from {self.first}")

    @property
    def start(self) -> datetime:
        return datetime(self.first.year, self.first.month, self.first.day, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        return datetime(self.last.year, self.last.month, self.last.day, tzinfo=UTC) + timedelta(days=1)

    def label(self) -> str:
        return f"{self.first} to {self.last} (UTC)"


@dataclass(frozen=True, slots=True)
class StatementAccount:
    account_key: str
    platform: str
    server: str
    login: int
    currency: str
    name: str
    group: str
    client_id: str


@dataclass(frozen=True, slots=True)
class AccountSummary:
    """One account's statement figures (exact Decimals: rounded only when shown)."""

    account: StatementAccount
    opening: Decimal
    movements: dict[str, Decimal]  # BALANCE_MOVEMENTS + "credit"
    closing: Decimal
    opening_credit: Decimal
    closing_credit: Decimal

    @property
    def moved(self) -> Decimal:
        return sum((self.movements.get(k, ZERO) for k in BALANCE_MOVEMENTS), ZERO)

    @property
    def balanced(self) -> bool:
        return self.opening + self.moved == self.closing


def ch_time(value: datetime) -> str:
    """A UTC instant as a DateTime64(3, 'UTC') query parameter."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def rows_of(reader: Reader, query: q.Query, params: dict[str, Any]) -> list[dict[str, Any]]:
    columns, rows = reader.query(query.sql, params)
    return [dict(zip(columns, row, strict=True)) for row in rows]


def find_accounts(reader: Reader, tenant: str, *, client: str | None = None,
                  login: int | None = None, server: str | None = None) -> list[StatementAccount]:
    if client is not None:
        found = rows_of(reader, q.CLIENT_ACCOUNTS, {"tenant": tenant, "client": client})
        if not found:
            raise NotFound(f"no accounts of client {client!r} in tenant {tenant}")
    else:
        if login is None:
            raise ReportError("give --client ID or --login LOGIN")
        found = rows_of(reader, q.LOGIN_ACCOUNTS, {"tenant": tenant, "login": login,
                                                    "server": server or ""})
        if not found:
            where = f" on server {server}" if server else ""
            raise NotFound(f"no account {login}{where} in tenant {tenant}")
        if len(found) > 1:
            servers = ", ".join(r["server"] for r in found)
            raise ReportError(f"login {login} is on several servers ({servers}): add --server")
    return [StatementAccount(r["account_key"], r["platform"], r["server"], int(r["login"]), r["currency"],
                    r["name"], r["group"], r["client_id"]) for r in found]


def balances_at(reader: Reader, tenant: str, keys: Sequence[str], at: datetime
                ) -> dict[str, tuple[Decimal, Decimal]]:
    """account_key -> (balance, credit) of everything before `at`."""
    found = rows_of(reader, q.BALANCE_AT, {"tenant": tenant, "accounts": list(keys), "at": ch_time(at)})
    return {r["account_key"]: (r["balance"], r["credit"]) for r in found}


def summarise(reader: Reader, tenant: str, accounts: Sequence[StatementAccount], period: Period
              ) -> list[AccountSummary]:
    keys = [a.account_key for a in accounts]
    opening = balances_at(reader, tenant, keys, period.start)
    closing = balances_at(reader, tenant, keys, period.end)
    moves: dict[str, dict[str, Decimal]] = {}
    for r in rows_of(reader, q.PERIOD_MOVEMENTS, {"tenant": tenant, "accounts": keys,
                                                  "t_from": ch_time(period.start),
                                                  "t_to": ch_time(period.end)}):
        moves.setdefault(r["account_key"], {})[r["category"]] = r["amount"]
    out = []
    for a in accounts:
        ob, oc = opening.get(a.account_key, (ZERO, ZERO))
        cb, cc = closing.get(a.account_key, (ZERO, ZERO))
        out.append(AccountSummary(a, ob, moves.get(a.account_key, {}), cb, oc, cc))
    return out


SUMMARY_COLUMNS = (
    Column("login", "count"), Column("server"), Column("currency"), Column("opening_balance", "money"),
    *(Column(name, "money") for name in BALANCE_MOVEMENTS), Column("closing_balance", "money"),
    Column("check"), Column("opening_credit", "money"), Column("credit_change", "money"),
    Column("closing_credit", "money"),
)


def _summary_row(login: Cell, server: str, currency: str, opening: Decimal,
                 movements: dict[str, Decimal], closing: Decimal, credit: tuple[Decimal, Decimal, Decimal]
                 ) -> tuple[Cell, ...]:
    moved = sum((movements.get(k, ZERO) for k in BALANCE_MOVEMENTS), ZERO)
    diff = opening + moved - closing
    check = "OK" if diff == 0 else f"MISMATCH {diff:f}"
    m = [Money(movements.get(k, ZERO), currency) for k in BALANCE_MOVEMENTS]
    return (login, server, currency, Money(opening, currency), *m, Money(closing, currency), check,
            Money(credit[0], currency), Money(credit[1], currency), Money(credit[2], currency))


def summary_section(summaries: Sequence[AccountSummary]) -> Section:
    rows = []
    for s in summaries:
        a = s.account
        rows.append(_summary_row(a.login, a.server, a.currency, s.opening, s.movements, s.closing,
                                 (s.opening_credit, s.movements.get("credit", ZERO), s.closing_credit)))
    currencies = sorted({s.account.currency for s in summaries})
    if len(summaries) > 1:  # a client's total per currency
        for currency in currencies:
            mine = [s for s in summaries if s.account.currency == currency]
            total = {k: sum((s.movements.get(k, ZERO) for s in mine), ZERO)
                     for k in (*BALANCE_MOVEMENTS, "credit")}
            rows.append(_summary_row(
                "TOTAL", "", currency, sum((s.opening for s in mine), ZERO), total,
                sum((s.closing for s in mine), ZERO),
                (sum((s.opening_credit for s in mine), ZERO), total["credit"],
                 sum((s.closing_credit for s in mine), ZERO))))
    return Section(
        "summary", "Summary: balance per account", SUMMARY_COLUMNS, rows,
        queries=("balance_at", "period_movements"),
        note="opening_balance: every balance operation (credit excluded) and the profit, swap, "
             "commission and fee of every deal before the period; closing_balance: the same up to "
             "the end of the period, summed separately. check: opening + movements = closing. "
             "Credit is not balance (shown apart). Amounts rounded half-even to the currency's "
             "minor unit; the check is on the exact values.")


DEAL_COLUMNS = (
    Column("time", "time"), Column("login", "count"), Column("deal"), Column("position"),
    Column("symbol"), Column("side"), Column("entry"), Column("lots", "quantity"),
    Column("price", "quantity"), Column("profit", "money"), Column("swap", "money"),
    Column("commission", "money"), Column("fee", "money"), Column("currency"),
)

OPERATION_COLUMNS = (
    Column("time", "time"), Column("login", "count"), Column("ticket"), Column("kind"),
    Column("amount", "money"), Column("currency"), Column("comment"),
)

RECONCILIATION_COLUMNS = (
    Column("login", "count"), Column("server"), Column("currency"), Column("reported_at", "time"),
    Column("platform_balance", "money"), Column("computed_balance", "money"),
    Column("difference", "money"),
)


def client_statement(reader: Reader, tenant: str, period: Period, *, client: str | None = None,
                     login: int | None = None, server: str | None = None,
                     generated_at: datetime | None = None) -> Report:
    """The statement of `client` (every account with that CRM client id) or of one `login`."""
    accounts = find_accounts(reader, tenant, client=client, login=login, server=server)
    keys = [a.account_key for a in accounts]
    summaries = summarise(reader, tenant, accounts, period)
    params = {"tenant": tenant, "accounts": keys, "t_from": ch_time(period.start),
              "t_to": ch_time(period.end)}
    deals = [(utc(r["time"]), int(r["login"]), r["deal_id"], r["position_id"], r["symbol"], r["side"],
              r["entry"], r["lots"], r["price"], Money(r["profit"], r["currency"]),
              Money(r["swap"], r["currency"]), Money(r["commission"], r["currency"]),
              Money(r["fee"], r["currency"]), r["currency"])
             for r in rows_of(reader, q.PERIOD_DEALS, params)]
    operations = [(utc(r["time"]), int(r["login"]), r["op_id"], r["kind"],
                   Money(r["amount"], r["currency"]), r["currency"], r["comment"])
                  for r in rows_of(reader, q.PERIOD_OPERATIONS, params)]
    reported = rows_of(reader, q.PLATFORM_BALANCE, {"tenant": tenant, "accounts": keys})
    by_key = {a.account_key: a for a in accounts}
    reconciliation: list[tuple[Cell, ...]] = []
    history_from = None
    for r in reported:
        history_from = r["history_from"]
        a = by_key[r["account_key"]]
        if r["balance"] is None:
            continue
        at = utc(r["updated_at"])
        computed = balances_at(reader, tenant, [a.account_key], at + timedelta(milliseconds=1))
        value = computed.get(a.account_key, (ZERO, ZERO))[0]
        reconciliation.append((a.login, a.server, a.currency, at, Money(r["balance"], a.currency),
                               Money(value, a.currency), Money(r["balance"] - value, a.currency)))
    who = ("client", client) if client is not None else ("login", f"{login} ({accounts[0].server})")
    names = sorted({a.name for a in accounts if a.name})
    details = [who, ("name", ", ".join(names)),
               ("accounts", ", ".join(a.account_key for a in accounts))]
    if history_from is not None and utc(history_from).year > 1970:
        details.append(("history_from", utc(history_from).strftime("%Y-%m-%d %H:%M:%S")))
    return Report(
        title="Account statement", tenant=tenant, period=period.label(),
        generated_at=generated_at or datetime.now(UTC),
        details=tuple(details),
        sections=(
            summary_section(summaries),
            Section("deals", "Deals", DEAL_COLUMNS, deals, queries=("period_deals",),
                    note="Every deal of the period that is not canceled; money in the account currency."),
            Section("operations", "Balance and credit operations", OPERATION_COLUMNS, operations,
                    queries=("period_operations",),
                    note="kind balance: deposits (+) and withdrawals (-); credit operations do not "
                         "move the balance."),
            Section("reconciliation", "The platform's last reported balance", RECONCILIATION_COLUMNS,
                    reconciliation, queries=("platform_balance", "balance_at"),
                    note="difference: what the platform's balance holds that the stored history "
                         "does not explain (money from before history_from, or records not received)."),
        ),
    )
