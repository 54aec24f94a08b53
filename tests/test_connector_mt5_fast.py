"""The fast reader of plain MT5 trades gives exactly what the general reader gives (the reference):
the same record, the same field values to the character (Decimal exponents included), or it
declines and the general reader decides."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.mt5 import read_mt5_deal
from connectors.mt5_fast import read_mt5_trade_fast
from connectors.registry import Normaliser
from connectors.routing import Router
from tests.helpers import T0, envelope, mt5_deal
from tests.test_poison_pills import SETTINGS, VALUES, dumps, mutate

ROUTER = Router(SETTINGS)
SERVER = SETTINGS.tenants[0].servers[0].name
_VALUES = st.one_of(VALUES, st.sampled_from(["1", "0", "1.5", "13", "14", "2", "3", "0100", "100000"]))


def _fields(record: Any) -> dict[str, str]:
    # repr: Decimal("1.50") and Decimal("1.5") are equal, but not the same stored text
    return {name: repr(value) for name, value in record.__dict__.items()}


def _same(env: Any) -> None:
    fast = read_mt5_trade_fast(env, ROUTER)
    if fast is None:
        return
    assert _fields(fast) == _fields(read_mt5_deal(env, ROUTER))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fast_trades_equal_the_general_reader(data: st.DataObject) -> None:
    doc = mutate(data.draw, mt5_deal(Action=data.draw(st.sampled_from(["0", "1", "13", "14", "2"]))))
    event = data.draw(st.sampled_from([None, "add", "update", "delete", "bogus"]))
    _same(envelope(dumps(doc), server=SERVER, event=event,
                   ts=T0 + data.draw(st.integers(0, 10**6))))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(mt5_deal())), _VALUES, max_size=6))
def test_any_values_in_known_fields_agree(fields: dict[str, Any]) -> None:
    doc = {**mt5_deal(), **fields}
    _same(envelope(dumps(doc), server=SERVER))


def test_the_common_case_takes_the_fast_path_and_the_rest_does_not() -> None:
    assert read_mt5_trade_fast(envelope(mt5_deal(), server=SERVER), ROUTER) is not None
    # a balance operation, a number instead of a string, a 9th decimal: the general reader
    for doc in (mt5_deal(Action="2"), {**mt5_deal(), "Price": 1.085}, mt5_deal(Price="1.085000001")):
        assert read_mt5_trade_fast(envelope(orjson.dumps(doc), server=SERVER), ROUTER) is None
    normalise = Normaliser(ROUTER)
    [dl] = normalise(envelope(mt5_deal(Price="1.085000001"), server=SERVER))
    assert "Price" in getattr(dl, "reason", "")
