"""Reading raw fields as the platforms send them (MT5 Web API sends every value as a string).

Every failure raises `Rejected` with a reason a person can act on; the dataflow turns it into
a dead letter. A value is accepted only if its column can hold it *exactly*: decimals are
checked against the column's precision and scale (`PRICE`, `MONEY`), ids and logins against
UInt64, times against the plausible window (`plausible_times`). Nothing is rounded on the way
in; only values the connectors compute (units, notional) are rounded to the column's 8 places.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal, DecimalException, Inexact, InvalidOperation
from typing import Any, Literal

import orjson

from connectors.server_time import ServerClock

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Stage = Literal["decode", "validate", "route", "store"]


class Rejected(Exception):
    """A raw message that cannot be interpreted."""

    def __init__(self, reason: str, stage: Stage = "validate") -> None:
        super().__init__(reason)
        self.reason = reason
        self.stage = stage


def decode_json_object(raw: bytes, *, unwrap_answer: bool = False) -> dict[str, Any]:
    """The message as a JSON object, else `Rejected(..., "decode")` (the dead letters' reasons:
    "not JSON: ..." / "expected a JSON object, got ..."). `unwrap_answer`: an MT5 Web API reply
    `{"retcode":..,"answer":{..}}` gives its answer."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Rejected(f"not JSON: {exc}", "decode") from None
    if unwrap_answer and isinstance(doc, dict) and isinstance(doc.get("answer"), dict):
        doc = doc["answer"]
    if not isinstance(doc, dict):
        raise Rejected(f"expected a JSON object, got {type(doc).__name__}", "decode")
    return doc


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
        except ValueError:  # also a string of more than 4,300 digits
            pass
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise Rejected(f"field {name!r}: expected an integer, got {_show(value)}")


def _show(value: Any) -> str:
    """The value for a reason text: a 1 MB field must not make a 2 MB dead letter."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text):,} characters)"


def _shown(raw: Any, number: Decimal) -> str:
    return _plain(number) if raw is None else _show(raw)


def _plain(number: Decimal) -> str:
    text = str(number)
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text):,} characters)"


# -- ids --------------------------------------------------------------------------------------

UINT64_END = 2**64
LOGIN_END = 2**63  # logins are UInt64 columns; the platforms' own are signed 64-bit at most


def as_id(value: Any, name: str, *, zero: bool = False, end: int = UINT64_END) -> int:
    """A platform ticket (deal, order, position): a positive integer below 2^64 (0 too when
    `zero`, for "none"). Anything else names no fact and would make a key no platform has."""
    number = as_int(value, name)
    if not (0 if zero else 1) <= number < end:
        shown = number if abs(number) < 10**30 else _show(value)
        if zero:
            raise Rejected(f"field {name!r} is out of range: {shown} (0 to {end - 1})")
        raise Rejected(f"field {name!r} must be a positive ticket below {end}, got {shown}")
    return number


def as_login(value: Any, name: str) -> int:
    """A trading account number: 0 to 2^63 - 1 (stored as UInt64)."""
    return as_id(value, name, zero=True, end=LOGIN_END)


def optional_id(doc: Mapping[str, Any], name: str) -> str:
    """An optional ticket kept as text: "" when absent, else the number (0 = none is kept)."""
    value = doc.get(name)
    if value is None or value == "":
        return ""
    return str(as_id(value, name, zero=True))


# -- decimals ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DecimalColumn:
    """A ClickHouse Decimal(precision, scale) column, and the largest magnitude we accept in it
    (`limit`, at most what the column holds: a plausibility bound)."""

    precision: int
    scale: int
    limit: Decimal

    @property
    def type_name(self) -> str:
        return f"Decimal({self.precision}, {self.scale})"


# Prices, lots and contract sizes are Decimal(18, 8) (the column holds < 10^10); money and
# notionals Decimal(38, 8) (< 10^30). The limits are tighter: no real value comes near them.
PRICE_LIMIT = Decimal("1E9")
MONEY_LIMIT = Decimal("1E24")
PRICE = DecimalColumn(18, 8, PRICE_LIMIT)
MONEY = DecimalColumn(38, 8, MONEY_LIMIT)

_Q8 = Decimal("1E-8")
# Exact arithmetic for what the columns hold: 80 digits never round a product of two
# Decimal(38, 8) values, and Inexact is trapped where a value must fit unchanged.
_WIDE = Context(prec=80, traps=[InvalidOperation])
_EXACT = Context(prec=80, traps=[InvalidOperation, Inexact])


def fit_decimal(number: Decimal, name: str, column: DecimalColumn = MONEY,
                raw: Any = None) -> Decimal:
    """`number` if `column` holds it exactly, else Rejected naming the field and why.

    The one check of scale and precision for every connector: a 9th decimal place would make
    the store's Arrow conversion fail ("Rescaling Decimal value would cause data loss").
    `raw` is what the message said, shown in the reason (formatted only when rejecting)."""
    if not number.is_finite():
        raise Rejected(f"field {name!r}: {_shown(raw, number)} is not a finite number")
    if abs(number) >= column.limit:
        raise Rejected(f"field {name!r}: {_shown(raw, number)} is out of range "
                       f"(limit {column.limit:,.0f})")
    try:
        number.quantize(_Q8 if column.scale == 8 else Decimal(1).scaleb(-column.scale),
                        context=_EXACT)
    except DecimalException:
        raise Rejected(f"field {name!r}: {_shown(raw, number)} has more than the "
                       f"{column.scale} decimal places its column ({column.type_name}) "
                       "stores") from None
    return number


def as_decimal(value: Any, name: str, column: DecimalColumn = MONEY) -> Decimal:
    if isinstance(value, bool):
        raise Rejected(f"field {name!r}: expected a number, got {value!r}")
    if isinstance(value, str | int):
        try:
            number = Decimal(value)
        except (InvalidOperation, ValueError):
            raise Rejected(f"field {name!r}: expected a number, got {_show(value)}") from None
    elif isinstance(value, float):
        # JSON numbers arrive as floats: their shortest repr is what the platform printed.
        number = Decimal(repr(value))
    elif isinstance(value, Decimal):
        number = value
    else:
        raise Rejected(f"field {name!r}: expected a number, got {_show(value)}")
    if not number.is_finite():
        raise Rejected(f"field {name!r}: {_show(value)} is not a finite number")
    return fit_decimal(number, name, column, value)


def optional_decimal(doc: Mapping[str, Any], name: str, column: DecimalColumn = MONEY) -> Decimal:
    value = doc.get(name)
    if value is None or value == "":
        return Decimal(0)
    return as_decimal(value, name, column)


def optional_str(doc: Mapping[str, Any], name: str) -> str:
    value = doc.get(name)
    return "" if value is None else str(value)


def quantize8(value: Decimal) -> Decimal:
    """Round a computed value to the 8 places the tables store (half-even, like ClickHouse)."""
    return value.quantize(_Q8, context=_WIDE)


def mul8(a: Decimal, b: Decimal) -> Decimal:
    """a x b computed exactly, then rounded once to 8 places (the default 28-digit context
    would round large products first, and double rounding is not exact half-even)."""
    return _WIDE.multiply(a, b).quantize(_Q8, context=_WIDE)


def div8(a: Decimal, b: Decimal) -> Decimal:
    return _WIDE.divide(a, b).quantize(_Q8, context=_WIDE)


# -- times ------------------------------------------------------------------------------------

# DateTime64(3, 'UTC') holds 1900..2299; versions (ms x 4 + rank) must stay below 2^64.
COLUMN_FIRST_MS = int((datetime(1900, 1, 1, tzinfo=UTC) - EPOCH).total_seconds()) * 1000
COLUMN_END_MS = int((datetime(2300, 1, 1, tzinfo=UTC) - EPOCH).total_seconds()) * 1000
DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """Event times accepted: from `first` to `ahead_days` after the wall clock."""

    first: datetime
    ahead_days: int

    @property
    def first_ms(self) -> int:
        return int((self.first - EPOCH).total_seconds()) * 1000


def _window_from_env() -> TimeWindow:
    first = os.environ.get("BROKERSTREAM_TIMES_FROM", "2000-01-01")
    ahead = os.environ.get("BROKERSTREAM_TIMES_AHEAD_DAYS", "3660")
    try:
        moment = datetime.fromisoformat(first)
        days = int(ahead)
    except ValueError:
        raise ValueError(f"BROKERSTREAM_TIMES_FROM={first!r} / BROKERSTREAM_TIMES_AHEAD_DAYS="
                         f"{ahead!r}: expected a date (YYYY-MM-DD) and a number of days") from None
    return TimeWindow(moment if moment.tzinfo else moment.replace(tzinfo=UTC), days)


_window = _window_from_env()
_first_ms = _window.first_ms


def plausible_times(first: datetime | None = None, ahead_days: int | None = None) -> TimeWindow:
    """The window of plausible event times; with arguments, set it (for this process).

    Default: 2000-01-01 to 3660 days after now, or `BROKERSTREAM_TIMES_FROM` (a date) and
    `BROKERSTREAM_TIMES_AHEAD_DAYS`. Wide ahead on purpose: the live simulator's clock runs
    days ahead of the wall clock per minute. A time outside is a dead letter."""
    global _window, _first_ms
    if first is not None or ahead_days is not None:
        start = first or _window.first
        _window = TimeWindow(start if start.tzinfo else start.replace(tzinfo=UTC),
                             _window.ahead_days if ahead_days is None else ahead_days)
        _first_ms = _window.first_ms
    return _window


def plausible_ms_bounds() -> tuple[int, float]:
    """The UTC epoch ms range `check_time_ms` accepts now (for checks over whole columns)."""
    return _first_ms, time.time() * 1000 + _window.ahead_days * DAY_MS


def check_time_ms(ms: int, name: str) -> int:
    """UTC epoch ms of an event time, if plausible; Rejected otherwise."""
    if _first_ms <= ms and ms <= time.time() * 1000 + _window.ahead_days * DAY_MS:
        return ms
    shown = ms if abs(ms) < 10**20 else _show(ms)
    if COLUMN_FIRST_MS <= ms < COLUMN_END_MS:
        shown = f"{shown} ms ({from_epoch_ms(ms).isoformat(timespec='milliseconds')})"
    raise Rejected(f"field {name!r}: {shown} is not a plausible time (accepted: "
                   f"{_window.first.date()} to {_window.ahead_days} days from now)")


def event_time(ms: int, name: str, utc_offset_minutes: int = 0) -> datetime:
    """Epoch ms stamped in a server's zone -> UTC datetime, checked to be plausible."""
    return from_epoch_ms(check_time_ms(ms - utc_offset_minutes * 60_000, name))


def server_event_time(ms: int, name: str, clock: ServerClock) -> datetime:
    """Epoch ms of a server's wall clock (MT4 times, MT5 server-local fields) -> UTC datetime,
    through the server's zone (DST-aware) or fixed offset, checked to be plausible."""
    return from_epoch_ms(check_time_ms(clock.to_utc_ms(ms), name))


def check_time(moment: datetime, name: str) -> datetime:
    """A parsed (aware) datetime, checked to be plausible."""
    check_time_ms(int((moment - EPOCH) // timedelta(milliseconds=1)), name)
    return moment


def from_epoch_ms(ms: int, utc_offset_minutes: int = 0) -> datetime:
    """Epoch milliseconds stamped in a server's zone -> UTC datetime (exact, no float).
    Unchecked: for times already known to be in range (see `event_time`)."""
    return EPOCH + timedelta(milliseconds=ms - utc_offset_minutes * 60_000)
