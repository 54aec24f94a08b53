"""Records -> tables: every ClickHouse table the dataflow writes, declared once.

A `Table` is a registry entry (name, column order). Steps emit rows as `(Table, values)` pairs
(`Row`), grouped per batch into `TableRows` for the sink; consumers ask `rows.table is ALERTS`
instead of comparing names. Columns not listed (`ingested_at`) are filled by ClickHouse.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from operator import attrgetter, itemgetter
from typing import Any

import pyarrow as pa

from commissions.engine import Issue
from commissions.rows import ROW_COLUMNS, CommissionRow
from pipelines.withdrawal_step import DECISION_COLUMNS
from reconciliation.breaks import BREAK_COLUMNS
from risk_rules.exposure.rows import PositionRow
from schemas.events import Account, BalanceOperation, DeadLetter, Deal, Login, Quote


@dataclass(frozen=True, eq=False, repr=False, slots=True)  # eq=False: hashed by identity (cheap)
class Table:
    """A table the dataflow writes: its name and the order of the values in its rows."""

    name: str
    columns: tuple[str, ...]

    def __repr__(self) -> str:
        return f"Table({self.name!r})"

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        # pickled by name (rows cross workers, snapshots): unpickled it is the registry's entry
        return table_named, (self.name,)


Values = tuple[Any, ...]
Row = tuple[Table, Values]  # one row, for its table


@dataclass(frozen=True, slots=True)
class TableRows:
    """One batch of rows for one table, in its column order: a list of tuples, or an Arrow table
    a columnar reader built. What the steps hand the ClickHouse sink."""

    table: Table
    rows: list[Values] | pa.Table


# -- the canonical records (account updates are not stored as such: the account stage merges
# them into `Account` rows) --
DEALS = Table("deals_store", tuple(Deal.model_fields))
BALANCE_OPERATIONS = Table("balance_operations_store", tuple(BalanceOperation.model_fields))
DEAD_LETTERS = Table("dead_letters_store", tuple(DeadLetter.model_fields))
LOGINS = Table("logins_store", tuple(Login.model_fields))
QUOTES = Table("quotes_in", tuple(Quote.model_fields))
ACCOUNTS = Table("accounts_store", tuple(Account.model_fields))
# -- commissions (commissions/rows.py; issues: `issue_row`) --
COMMISSIONS = Table("ib_commissions_store", ROW_COLUMNS)
COMMISSION_ISSUES = Table("commission_issues_store", ("tenant", "key", "version", "reason"))
# -- rows the exposure step builds (pipelines/exposure_step.py) --
POSITIONS = Table("positions_store", tuple(PositionRow.model_fields))
_EXPOSURE_COLUMNS = ("side", "tenant", "book", "symbol", "net_lots", "net_units", "net_notional_usd",
                     "floating_pnl_usd", "as_of")
EXPOSURE = Table("exposure_store", _EXPOSURE_COLUMNS)
EXPOSURE_HISTORY = Table("exposure_history", _EXPOSURE_COLUMNS)
CURRENCY_EXPOSURE = Table("currency_exposure_store",
                          ("side", "tenant", "book", "currency", "net_amount", "net_usd", "as_of"))
CORRECTION_ISSUES = Table("correction_issues_store",
                          ("tenant", "account_key", "deal_key", "version", "event", "position_ref",
                           "deal_time", "reason", "detected_at"))
# -- alerts: the rules (pipelines/rules_step.alert_row), exposure limits and margin, recon --
ALERTS = Table("alerts_store",
               ("alert_id", "rule_id", "rule_version", "category", "severity", "tenant", "subject",
                "summary", "facts", "evidence", "event_time", "detected_at", "mode"))
# -- reconciliation breaks (pipelines/recon_step.py) and withdrawal decisions --
RECONCILIATION_BREAKS = Table("reconciliation_breaks_store", BREAK_COLUMNS)
WITHDRAWAL_DECISIONS = Table("withdrawal_decisions_store", DECISION_COLUMNS)

ALL_TABLES: tuple[Table, ...] = (
    DEALS, BALANCE_OPERATIONS, DEAD_LETTERS, LOGINS, QUOTES, ACCOUNTS, COMMISSIONS, COMMISSION_ISSUES,
    POSITIONS, EXPOSURE, EXPOSURE_HISTORY, CURRENCY_EXPOSURE, ALERTS, CORRECTION_ISSUES,
    RECONCILIATION_BREAKS, WITHDRAWAL_DECISIONS,
)
# The sink opens one writer per table name (pipelines/sinks.py).
COLUMNS_BY_TABLE: dict[str, tuple[str, ...]] = {t.name: t.columns for t in ALL_TABLES}
TABLE_BY_NAME: dict[str, Table] = {t.name: t for t in ALL_TABLES}


def table_named(name: str) -> Table:
    return TABLE_BY_NAME[name]


# The table of each record type: pydantic records keep their values in __dict__, read by key;
# the commission rows are slotted dataclasses, read by attribute.
TABLES: dict[type, Table] = {
    Deal: DEALS, BalanceOperation: BALANCE_OPERATIONS, DeadLetter: DEAD_LETTERS, Login: LOGINS,
    Quote: QUOTES, Account: ACCOUNTS, CommissionRow: COMMISSIONS,
}
_GETTERS: dict[type, tuple[Table, Any]] = {
    kind: (table, itemgetter(*table.columns)) for kind, table in TABLES.items() if kind is not CommissionRow
}
_ATTR_GETTERS: dict[type, tuple[Table, Any]] = {CommissionRow: (COMMISSIONS, attrgetter(*ROW_COLUMNS))}


def to_row(record: Any) -> Row:
    """(table, values in column order) for a canonical record."""
    kind = type(record)
    if kind in _ATTR_GETTERS:
        table, getter = _ATTR_GETTERS[kind]
        return table, getter(record)
    table, getter = _GETTERS[kind]
    return table, getter(record.__dict__)


def issue_row(tenant: str, issue: Issue) -> Row:
    return COMMISSION_ISSUES, (tenant, issue.key, issue.version, issue.reason)


def table_batches(rows: Iterable[Row]) -> list[TableRows]:
    """(table, row) pairs -> one `TableRows` per table, rows in their order."""
    by_table: dict[Table, list[Values]] = {}
    for table, row in rows:
        batch = by_table.get(table)
        if batch is None:
            by_table[table] = [row]
        else:
            batch.append(row)
    return [TableRows(table, batch) for table, batch in by_table.items()]
