"""Reading raw fields as the platforms send them (MT5 Web API sends every value as a string).

Every failure raises `Rejected` with a reason a person can act on; the dataflow turns it into
a dead letter.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Stage = Literal["decode", "validate", "route"]


class Rejected(Exception):
    """A raw message that cannot be interpreted."""

    def __init__(self, reason: str, stage: Stage = "validate") -> None:
        super().__init__(reason)
        self.reason = reason
        self.stage = stage


def required(doc: Mapping[str, Any], name: str) -> Any:
    value = doc.get(name)
    if value is None or value == "":
        raise Rejected(f"missing field {name!r}")
    return value


def as_int(value: Any, name: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise Rejected(f"field {name!r}: expected an integer, got {value!r}")


# Largest magnitudes the tables hold: Decimal(18, 8) for prices and lots, Decimal(38, 8) for money.
PRICE_LIMIT = Decimal("1E9")
MONEY_LIMIT = Decimal("1E24")


def as_decimal(value: Any, name: str, limit: Decimal = MONEY_LIMIT) -> Decimal:
    if isinstance(value, bool):
        raise Rejected(f"field {name!r}: expected a number, got {value!r}")
    if isinstance(value, str | int):
        try:
            number = Decimal(value)
        except InvalidOperation:
            raise Rejected(f"field {name!r}: expected a number, got {value!r}") from None
    elif isinstance(value, float):
        # JSON numbers arrive as floats: their shortest repr is what the platform printed.
        number = Decimal(repr(value))
    else:
        raise Rejected(f"field {name!r}: expected a number, got {value!r}")
    if not number.is_finite():
        raise Rejected(f"field {name!r}: {value!r} is not a finite number")
    if abs(number) >= limit:
        raise Rejected(f"field {name!r}: {value!r} is out of range (limit {limit:,.0f})")
    return number


def optional_decimal(doc: Mapping[str, Any], name: str) -> Decimal:
    value = doc.get(name)
    if value is None or value == "":
        return Decimal(0)
    return as_decimal(value, name)


def optional_str(doc: Mapping[str, Any], name: str) -> str:
    value = doc.get(name)
    return "" if value is None else str(value)


def from_epoch_ms(ms: int, utc_offset_minutes: int = 0) -> datetime:
    """Epoch milliseconds stamped in a server's zone -> UTC datetime (exact, no float)."""
    return EPOCH + timedelta(milliseconds=ms - utc_offset_minutes * 60_000)


def quantize8(value: Decimal) -> Decimal:
    """Round to the 8 decimal places the tables store (half-even, like ClickHouse)."""
    return value.quantize(Decimal("1E-8"))
