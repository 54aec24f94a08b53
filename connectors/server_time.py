"""Trade-server time zones: turning a time a platform stamped on the server's wall clock into UTC.

MT4 stamps every time, and MT5 its server-local fields, in the trade server's zone. Most servers
follow daylight saving, so a fixed offset is an hour off for half of the year. A server's zone
is configured (`tenants[].servers[].timezone`) as

- an IANA name (`Europe/Helsinki`, `Europe/London`, `Etc/GMT-2` for a fixed UTC+2), read with
  `zoneinfo`; or
- a named broker convention (`CONVENTIONS`), e.g. `new-york-close` ("GMT+2/+3 with US DST"):
  UTC+2 in winter and UTC+3 in summer, switching at the same instants as New York, so the
  server's midnight is always 17:00 in New York (the FX day's close);
- or, as before, a fixed `utc_offset_minutes` (the fallback when no `timezone` is given).

A wall-clock time that is ambiguous (the repeated hour when clocks go back) or missing (the hour
skipped when they go forward) is resolved by PEP 495's `fold=0`, see `ServerClock.to_utc_ms`
and docs/data-contract.md ("Server time zones").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_NAIVE_EPOCH: Final = datetime(1970, 1, 1)
_MS: Final = timedelta(milliseconds=1)


class OffsetFrom(tzinfo):
    """A zone that is another zone shifted by a constant: `new-york-close` is New York + 7 h.

    It switches at the base zone's instants (the US DST dates for New York), and its fold
    semantics are the base zone's (a repeated or missing local hour maps onto the base zone's).
    """

    def __init__(self, name: str, base: str, shift: timedelta) -> None:
        self.name = name
        self.base_key = base
        self.base = ZoneInfo(base)
        self.shift = shift

    def _in_base(self, dt: datetime | None) -> datetime:
        if dt is None:
            raise ValueError(f"{self.name}: a wall-clock time is needed")
        return (dt.replace(tzinfo=None) - self.shift).replace(tzinfo=self.base, fold=dt.fold)

    def utcoffset(self, dt: datetime | None) -> timedelta:
        offset = self._in_base(dt).utcoffset()
        assert offset is not None  # a ZoneInfo always has one
        return offset + self.shift

    def dst(self, dt: datetime | None) -> timedelta | None:
        return self._in_base(dt).dst()

    def tzname(self, dt: datetime | None) -> str:
        return self.name

    def fromutc(self, dt: datetime) -> datetime:
        if dt.tzinfo is not self:
            raise ValueError("fromutc: dt.tzinfo is not self")
        local = dt.replace(tzinfo=UTC).astimezone(self.base)
        return (local.replace(tzinfo=None) + self.shift).replace(tzinfo=self, fold=local.fold)

    def __reduce__(self) -> tuple[type[OffsetFrom], tuple[str, str, timedelta]]:
        return OffsetFrom, (self.name, self.base_key, self.shift)

    def __repr__(self) -> str:
        return f"OffsetFrom({self.name!r}, {self.base_key!r}, {self.shift!r})"


# Named conventions brokers use for their servers' clocks (names compared case-insensitively).
_NEW_YORK_CLOSE = ("new-york-close", "America/New_York", timedelta(hours=7))
CONVENTIONS: Final[dict[str, tuple[str, str, timedelta]]] = {
    "new-york-close": _NEW_YORK_CLOSE,
    "gmt+2/+3 with us dst": _NEW_YORK_CLOSE,
    "gmt+2/+3 us dst": _NEW_YORK_CLOSE,
}


def resolve_zone(name: str) -> tzinfo:
    """The zone named by `name` (a convention or an IANA key); ValueError if none is."""
    text = name.strip()
    convention = CONVENTIONS.get(text.lower())
    if convention is not None:
        return OffsetFrom(*convention)
    if not text:
        raise ValueError("an empty time zone name")
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        # ValueError: a key that is not a relative path ("../x", "/etc/x")
        known = ", ".join(sorted({c[0] for c in CONVENTIONS.values()}))
        raise ValueError(f"unknown time zone {name!r}: expected an IANA name such as "
                         f"'Europe/Helsinki' or a convention ({known})") from None


@dataclass(frozen=True, slots=True)
class ServerClock:
    """How one server's wall-clock times become UTC: a zone, else a fixed offset."""

    zone: tzinfo | None = None
    offset_minutes: int = 0

    def to_utc_ms(self, local_ms: int) -> int:
        """Epoch ms of the server's wall clock (what MT4/MT5 send) -> UTC epoch ms.

        fold=0 resolves both edge cases (PEP 495): a time in the repeated hour is its *first*
        occurrence (the offset in force before the clocks went back); a time in the skipped
        hour is read with the offset in force before the clocks went forward, so it lands one
        hour later on the new wall clock (shifted forward), which is what a server clock that
        had not switched yet meant by it."""
        if self.zone is None:
            return local_ms - self.offset_minutes * 60_000
        try:
            wall = _NAIVE_EPOCH + local_ms * _MS
        except OverflowError:  # outside datetime's years 1..9999: no plausible time anyway
            return local_ms - self.offset_minutes * 60_000
        offset = wall.replace(tzinfo=self.zone).utcoffset()
        assert offset is not None  # every configured zone has one
        return local_ms - offset // _MS

    def from_utc_ms(self, utc_ms: int) -> int:
        """UTC epoch ms -> the server's wall clock as epoch ms (what the server would stamp)."""
        if self.zone is None:
            return utc_ms + self.offset_minutes * 60_000
        moment = datetime(1970, 1, 1, tzinfo=UTC) + utc_ms * _MS
        offset = moment.astimezone(self.zone).utcoffset()
        assert offset is not None
        return utc_ms + offset // _MS


UTC_CLOCK: Final = ServerClock()
