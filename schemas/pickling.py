"""Cheaper pickles for the values recovery snapshots are full of.

Every epoch the dataflow pickles the state of every key that changed: position books, rule
windows, exposure aggregates, holding hundreds of thousands of Decimals and UTC datetimes.
Pickle saves each as a call to rebuild an object (an aware datetime also pickles its timezone
object: ~6.5 µs). Here:

- a UTC datetime pickles as its microseconds since the epoch (~1 µs; reads back equal, same
  instant, same `UTC` tzinfo); other datetimes pickle as before;
- a canonical record (`schemas.events.Canonical`) pickles as its class and a tuple of plain
  values (`pack`): Decimals as their exact strings, datetimes as microseconds. State that holds
  many records can keep packed tuples, which pickle with no object rebuild calls at all.
"""

from __future__ import annotations

import copyreg
import types
import typing
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from operator import itemgetter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from schemas.events import Canonical

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


def utc_from_micros(micros: int) -> datetime:
    return _EPOCH + micros * _MICRO


def utc_micros(value: datetime) -> int:
    return (value - _EPOCH) // _MICRO


def _reduce_datetime(value: datetime) -> tuple[Any, ...] | str:
    if value.tzinfo is UTC:
        return utc_from_micros, (utc_micros(value),)
    return value.__reduce_ex__(4)


def register() -> None:
    """Install the datetime reducer (idempotent; done on import of `schemas.events`)."""
    copyreg.pickle(datetime, _reduce_datetime)


class _Layout:
    """Where a record class keeps its Decimals and datetimes, in field order."""

    def __init__(self, cls: type[Canonical]) -> None:
        self.names = tuple(cls.model_fields)
        one = itemgetter(*self.names)
        self.values: Callable[[dict[str, Any]], tuple[Any, ...]] = (
            (lambda d: (one(d),)) if len(self.names) == 1 else one)
        kinds = [_kind(cls.model_fields[n].annotation) for n in self.names]
        self.decimals = tuple(i for i, k in enumerate(kinds) if k is Decimal)
        self.times = tuple(i for i, k in enumerate(kinds) if k is datetime)


def _kind(annotation: Any) -> type | None:
    options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    for kind in (Decimal, datetime):
        if kind in options:
            return kind
    return None


_LAYOUTS: dict[type, _Layout] = {}


def _layout(cls: type[Canonical]) -> _Layout:
    layout = _LAYOUTS.get(cls)
    if layout is None:
        layout = _LAYOUTS[cls] = _Layout(cls)
    return layout


def pack(record: Canonical) -> tuple[Any, ...]:
    """A record's field values as plain strings, ints and bools (see `unpack`)."""
    layout = _layout(type(record))
    values = list(layout.values(record.__dict__))
    for i in layout.decimals:
        if values[i] is not None:
            values[i] = str(values[i])
    for i in layout.times:
        value = values[i]
        if value is not None:
            values[i] = utc_micros(value) if value.tzinfo is UTC else value
    return tuple(values)


def unpack(cls: type[Canonical], packed: tuple[Any, ...]) -> Any:
    """The record `pack` was given (equal field by field)."""
    layout = _layout(cls)
    values = list(packed)
    for i in layout.decimals:
        if values[i] is not None:
            values[i] = Decimal(values[i])
    for i in layout.times:
        if type(values[i]) is int:
            values[i] = utc_from_micros(values[i])
    return cls.trusted(dict(zip(layout.names, values, strict=True)))
