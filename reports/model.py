"""The typed report model every statement and report pack is built as, and that every file
format writes the same way (reports/formats.py): a header (tenant, period, generated-at and a
few details), then sections, the first of which is the summary.

Cells are typed: money carries its currency and is shown with the currency's ISO 4217 minor
units (schemas/money.py), never through a binary float.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from schemas.money import minor_digits, round_minor

ColumnKind = Literal["text", "money", "quantity", "count", "time"]
NUMERIC_KINDS: frozenset[str] = frozenset({"money", "quantity", "count"})


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in a currency: shown rounded half-even to the currency's minor unit."""

    amount: Decimal
    currency: str

    @property
    def shown(self) -> Decimal:
        return round_minor(self.amount, self.currency) + 0  # + 0: no negative zero

    @property
    def digits(self) -> int:
        return minor_digits(self.currency)

    def __str__(self) -> str:
        return f"{self.shown:f}"


Cell = str | int | Decimal | Money | datetime | date | None


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    kind: ColumnKind = "text"

    @property
    def numeric(self) -> bool:
        return self.kind in NUMERIC_KINDS


@dataclass(frozen=True, slots=True)
class Section:
    """One table of a report. `queries` names the queries (reports/queries.py) its figures
    come from: the data contract lists each (docs/data-contract.md, "Reports")."""

    key: str
    title: str
    columns: tuple[Column, ...]
    rows: Sequence[tuple[Cell, ...]]
    queries: tuple[str, ...] = ()
    note: str = ""

    def __post_init__(self) -> None:
        for row in self.rows:
            if len(row) != len(self.columns):
                raise ValueError(f"section {self.key}: a row of {len(row)} cells for "
                                 f"{len(self.columns)} columns")

    def dicts(self) -> list[dict[str, Cell]]:
        names = [c.name for c in self.columns]
        return [dict(zip(names, row, strict=True)) for row in self.rows]


@dataclass(frozen=True, slots=True)
class Report:
    """A statement or report pack: `sections[0]` is the summary (first sheet / first page)."""

    title: str
    tenant: str
    period: str
    generated_at: datetime
    sections: tuple[Section, ...]
    details: tuple[tuple[str, str], ...] = field(default=())

    @property
    def header(self) -> list[tuple[str, str]]:
        return [("report", self.title), ("tenant", self.tenant), ("period", self.period),
                ("generated_at", text(self.generated_at)), *self.details]

    def section(self, key: str) -> Section:
        for s in self.sections:
            if s.key == key:
                return s
        raise KeyError(key)


def text(value: Cell) -> str:
    """The one text form of a cell, in every format: money to its minor unit, quantities
    without trailing zeros, times as `YYYY-MM-DD HH:MM:SS` UTC."""
    if value is None:
        return ""
    if isinstance(value, Money):
        return str(value)
    if isinstance(value, Decimal):
        shown = value.normalize()
        return f"{shown:f}" if shown else "0"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)
