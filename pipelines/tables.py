"""Where each canonical record is stored: table name and column order.

Columns not listed (`ingested_at`) are filled by ClickHouse."""

from __future__ import annotations

from operator import attrgetter, itemgetter
from typing import Any

from commissions.engine import Issue
from commissions.rows import ROW_COLUMNS, CommissionRow
from pipelines.exposure_step import (
    ALERT_COLUMNS,
    CORRECTION_ISSUE_COLUMNS,
    CURRENCY_COLUMNS,
    EXPOSURE_COLUMNS,
    POSITION_COLUMNS,
)
from pipelines.withdrawal_step import DECISION_COLUMNS
from pipelines.withdrawal_step import TABLE as WITHDRAWAL_TABLE
from reconciliation.breaks import BREAK_COLUMNS
from schemas.events import Account, BalanceOperation, DeadLetter, Deal, Login, Quote

# Account updates are not stored as such: the dataflow merges them into `Account` rows.
TABLES: dict[type, tuple[str, tuple[str, ...]]] = {
    Deal: ("deals_store", tuple(Deal.model_fields)),
    BalanceOperation: ("balance_operations_store", tuple(BalanceOperation.model_fields)),
    DeadLetter: ("dead_letters_store", tuple(DeadLetter.model_fields)),
    Login: ("logins_store", tuple(Login.model_fields)),
    Quote: ("quotes_in", tuple(Quote.model_fields)),
    Account: ("accounts_store", tuple(Account.model_fields)),
    CommissionRow: ("ib_commissions_store", ROW_COLUMNS),
}

COLUMNS_BY_TABLE: dict[str, tuple[str, ...]] = {table: cols for table, cols in TABLES.values()}
ISSUE_COLUMNS = ("tenant", "key", "version", "reason")
COLUMNS_BY_TABLE["commission_issues_store"] = ISSUE_COLUMNS

# Rows the exposure step builds itself (pipelines/exposure_step.py), in these column orders.
COLUMNS_BY_TABLE["positions_store"] = POSITION_COLUMNS
COLUMNS_BY_TABLE["exposure_store"] = EXPOSURE_COLUMNS
COLUMNS_BY_TABLE["exposure_history"] = EXPOSURE_COLUMNS
COLUMNS_BY_TABLE["currency_exposure_store"] = CURRENCY_COLUMNS
COLUMNS_BY_TABLE["alerts_store"] = ALERT_COLUMNS
COLUMNS_BY_TABLE["correction_issues_store"] = CORRECTION_ISSUE_COLUMNS
# -- reconciliation (issue 16): rows the recon step builds (pipelines/recon_step.py) --
COLUMNS_BY_TABLE["reconciliation_breaks_store"] = BREAK_COLUMNS
# withdrawal decisions (pipelines/withdrawal_step.py)
COLUMNS_BY_TABLE[WITHDRAWAL_TABLE] = DECISION_COLUMNS

# Pydantic records keep their values in __dict__; the commission rows are slotted dataclasses.
_GETTERS: dict[type, tuple[str, Any]] = {
    kind: (table, itemgetter(*columns)) for kind, (table, columns) in TABLES.items()
}
_ATTR_GETTERS: dict[type, tuple[str, Any]] = {  # dataclass rows, read by attribute
    CommissionRow: ("ib_commissions_store", attrgetter(*ROW_COLUMNS)),
}


def to_row(record: Any) -> tuple[str, tuple[Any, ...]]:
    """(table, values in column order) for a canonical record."""
    kind = type(record)
    if kind in _ATTR_GETTERS:
        table, getter = _ATTR_GETTERS[kind]
        return table, getter(record)
    table, getter = _GETTERS[kind]
    return table, getter(record.__dict__)


def issue_row(tenant: str, issue: Issue) -> tuple[str, tuple[Any, ...]]:
    return "commission_issues_store", (tenant, issue.key, issue.version, issue.reason)
