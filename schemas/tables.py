"""Where each canonical record is stored: table name and column order.

Columns not listed (`ingested_at`) are filled by ClickHouse."""

from __future__ import annotations

from typing import Any

from schemas.events import BalanceOperation, DeadLetter, Deal

DEAL_COLUMNS: tuple[str, ...] = tuple(Deal.model_fields)
BALANCE_COLUMNS: tuple[str, ...] = tuple(BalanceOperation.model_fields)
DEAD_LETTER_COLUMNS: tuple[str, ...] = tuple(DeadLetter.model_fields)

TABLES: dict[type, tuple[str, tuple[str, ...]]] = {
    Deal: ("deals_store", DEAL_COLUMNS),
    BalanceOperation: ("balance_operations_store", BALANCE_COLUMNS),
    DeadLetter: ("dead_letters_store", DEAD_LETTER_COLUMNS),
}

COLUMNS_BY_TABLE: dict[str, tuple[str, ...]] = {table: cols for table, cols in TABLES.values()}


def to_row(record: Any) -> tuple[str, tuple[Any, ...]]:
    """(table, values in column order) for a canonical record."""
    table, columns = TABLES[type(record)]
    values = record.__dict__
    return table, tuple(values[c] for c in columns)
