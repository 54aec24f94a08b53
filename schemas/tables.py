"""Where each canonical record is stored: table name and column order.

Columns not listed (`ingested_at`) are filled by ClickHouse."""

from __future__ import annotations

from operator import itemgetter
from typing import Any

from schemas.events import Account, BalanceOperation, DeadLetter, Deal, Login, Quote

# Account updates are not stored as such: the dataflow merges them into `Account` rows.
TABLES: dict[type, tuple[str, tuple[str, ...]]] = {
    Deal: ("deals_store", tuple(Deal.model_fields)),
    BalanceOperation: ("balance_operations_store", tuple(BalanceOperation.model_fields)),
    DeadLetter: ("dead_letters_store", tuple(DeadLetter.model_fields)),
    Login: ("logins_store", tuple(Login.model_fields)),
    Quote: ("quotes_in", tuple(Quote.model_fields)),
    Account: ("accounts_store", tuple(Account.model_fields)),
}

COLUMNS_BY_TABLE: dict[str, tuple[str, ...]] = {table: cols for table, cols in TABLES.values()}
_GETTERS: dict[type, tuple[str, Any]] = {
    kind: (table, itemgetter(*columns)) for kind, (table, columns) in TABLES.items()
}


def to_row(record: Any) -> tuple[str, tuple[Any, ...]]:
    """(table, values in column order) for a canonical record."""
    table, getter = _GETTERS[type(record)]
    return table, getter(record.__dict__)
