"""Compact pickles of canonical records and UTC datetimes (schemas/pickling.py): whatever goes
into a recovery snapshot comes back equal, value for value and type for type."""

from __future__ import annotations

import pickle
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from schemas.events import Account, AccountUpdate, Canonical, Deal
from schemas.pickling import pack, unpack
from tests.test_exposure_support import random_history


def _exact(record: Canonical) -> dict[str, Any]:
    # Decimal == ignores the exponent (1.10 == 1.1): compare the text and the type too
    return {k: (type(v), str(v), v.tzinfo if isinstance(v, datetime) else None)
            for k, v in record.__dict__.items()}


def _roundtrips(record: Canonical) -> None:
    for copy in (pickle.loads(pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL)),
                 unpack(type(record), pack(record))):
        assert type(copy) is type(record)
        assert copy == record and _exact(copy) == _exact(record)
        assert copy.model_fields_set == set(type(record).model_fields)
    # packed values are plain: pickling them rebuilds no objects
    assert all(type(v) in (str, int, bool, type(None), date) for v in pack(record))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32), steps=st.integers(min_value=1, max_value=80))
def test_deals_of_any_history_pickle_back_exactly(seed: int, steps: int) -> None:
    history = random_history(seed, steps, accounts=4)
    for record in history.events:
        _roundtrips(record)


def test_optional_decimals_times_and_dates() -> None:
    at = datetime(2024, 11, 24, 10, 15, 0, 123456, tzinfo=UTC)
    update = AccountUpdate.model_validate({
        "account_key": "mt5:S:1", "tenant": "acme", "platform": "mt5", "server": "S", "login": 1,
        "origin": "crm", "event": "kyc_status", "balance": Decimal("100.50"), "equity": None,
        "date_of_birth": date(1980, 2, 29), "last_access": None, "time": at, "version": 4,
        "source": "crm.accounts/0/1"})
    _roundtrips(update)
    account = Account.model_validate({
        "account_key": "mt5:S:1", "tenant": "acme", "platform": "mt5", "server": "S", "login": 1,
        "balance": Decimal("-0.00000001"), "first_seen": at, "updated_at": at, "version": 4,
        "source": "x"})
    _roundtrips(account)


def test_datetimes_keep_their_instant_and_zone() -> None:
    parsed = TypeAdapter(datetime).validate_python("2024-11-24T10:15:00Z")  # pydantic's own UTC tzinfo
    values = [
        datetime(2024, 11, 24, 10, 15, 0, 1, tzinfo=UTC), datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2024, 11, 24, 10, 15), datetime(2024, 11, 24, 12, 15, tzinfo=timezone(timedelta(hours=2))),
        parsed,
    ]
    for value in values:
        copy = pickle.loads(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
        assert copy == value and copy.tzinfo == value.tzinfo and copy.utcoffset() == value.utcoffset()


def test_a_deal_pickles_smaller_than_pydantics_default() -> None:
    history = random_history(1, 5, accounts=1)
    deal = next(e for e in history.events if isinstance(e, Deal))
    default = pickle.dumps(deal.__getstate__(), protocol=pickle.HIGHEST_PROTOCOL)
    assert len(pickle.dumps(deal, protocol=pickle.HIGHEST_PROTOCOL)) < len(default) / 2
