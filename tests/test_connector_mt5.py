"""MT5 deals as the Web API sends them -> canonical records (or a dead letter with a reason)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from connectors.fields import Rejected
from connectors.mt5 import read_mt5_deal
from connectors.registry import Normaliser
from connectors.routing import Router
from pipelines.config import Settings
from schemas.events import BalanceOperation, DeadLetter, Deal, event_version
from tests.helpers import T0, envelope, mt5_deal


@pytest.fixture
def router(settings: Settings) -> Router:
    return Router(settings)


def test_buy_deal_with_string_values(router: Router) -> None:
    deal = read_mt5_deal(envelope(mt5_deal()), router)
    assert isinstance(deal, Deal)
    assert deal.deal_key == "mt5:ACME-MT5-Live:5001"
    assert (deal.tenant, deal.platform, deal.login) == ("acme", "mt5", 70001)
    assert (deal.symbol, deal.platform_symbol) == ("EURUSD", "EURUSD.r")
    assert (deal.side, deal.entry) == ("buy", "in")
    assert deal.lots == Decimal("1")
    assert deal.signed_lots == Decimal("1")
    assert deal.units == Decimal("100000")
    assert deal.notional == Decimal("108500.00000000")
    assert deal.commission == Decimal("-7.00")
    assert deal.time == datetime(2024, 11, 24, tzinfo=UTC)
    assert deal.version == event_version(T0, "add")
    # the record satisfies its own schema when validated the slow, strict way
    Deal.model_validate(deal.model_dump())


def test_closing_sell_is_negative_signed_lots(router: Router) -> None:
    deal = read_mt5_deal(envelope(mt5_deal(Action=1, Entry=1, Volume=2500, VolumeExt=25000000,
                                           Profit="-12.34")), router)
    assert isinstance(deal, Deal)
    assert (deal.side, deal.entry) == ("sell", "out")
    assert deal.signed_lots == Decimal("-0.25")
    assert deal.profit == Decimal("-12.34")


def test_xauusd_quarter_lot_example_from_the_reference(router: Router) -> None:
    raw = mt5_deal(Symbol="XAUUSD", Volume="2500", VolumeExt="25000000", ContractSize="100.00",
                   Price="2650.15", Digits="2")
    deal = read_mt5_deal(envelope(raw), router)
    assert isinstance(deal, Deal)
    assert deal.lots == Decimal("0.25")
    assert deal.units == Decimal("25")
    assert deal.notional == Decimal("66253.75")


def test_volume_ext_is_more_precise_than_volume(router: Router) -> None:
    deal = read_mt5_deal(envelope(mt5_deal(Volume="1", VolumeExt="12345")), router)
    assert isinstance(deal, Deal)
    assert deal.lots == Decimal("0.00012345")


def test_volume_used_when_volume_ext_absent(router: Router) -> None:
    deal = read_mt5_deal(envelope(mt5_deal(Volume="100", VolumeExt=None)), router)
    assert isinstance(deal, Deal)
    assert deal.lots == Decimal("0.01")


def test_numbers_as_json_numbers_are_accepted(router: Router) -> None:
    raw = {"Deal": 7, "Login": 70001, "Action": 1, "Entry": 0, "Symbol": "GBPUSD",
           "ContractSize": 100000, "Price": 1.2651, "Volume": 10000, "TimeMsc": T0, "Profit": 0}
    deal = read_mt5_deal(envelope(raw), router)
    assert isinstance(deal, Deal)
    assert deal.price == Decimal("1.2651")


def test_web_api_answer_wrapper_is_unwrapped(router: Router) -> None:
    deal = read_mt5_deal(envelope({"retcode": "0 Done", "answer": mt5_deal()}), router)
    assert isinstance(deal, Deal)


@pytest.mark.parametrize(("profit", "expected"), [("1000.00", "1000.00"), ("-250.50", "-250.50")])
def test_balance_operation_sign(router: Router, profit: str, expected: str) -> None:
    op = read_mt5_deal(envelope(mt5_deal(Action=2, Symbol="", Volume="0", Profit=profit)), router)
    assert isinstance(op, BalanceOperation)
    assert op.kind == "balance"
    assert op.amount == Decimal(expected)
    assert op.op_key == "mt5:ACME-MT5-Live:5001"
    assert op.currency == "USD"


@pytest.mark.parametrize(("action", "kind"), [(3, "credit"), (6, "bonus"), (7, "commission"),
                                               (12, "interestrate"), (17, "tax"), (18, "agent")])
def test_every_money_action_is_a_balance_operation(router: Router, action: int, kind: str) -> None:
    op = read_mt5_deal(envelope(mt5_deal(Action=action, Profit="5.00")), router)
    assert isinstance(op, BalanceOperation)
    assert op.kind == kind


def test_canceled_deal_counts_no_lots(router: Router) -> None:
    deal = read_mt5_deal(envelope(mt5_deal(Action=13)), router)
    assert isinstance(deal, Deal)
    assert deal.canceled and deal.side == "buy" and deal.signed_lots == 0


@pytest.mark.parametrize(("entry", "name"), [(2, "inout"), (3, "out_by")])
def test_reversal_and_close_by_entries(router: Router, entry: int, name: str) -> None:
    deal = read_mt5_deal(envelope(mt5_deal(Entry=entry)), router)
    assert isinstance(deal, Deal)
    assert deal.entry == name


def test_update_and_delete_are_newer_versions_of_the_same_key(router: Router) -> None:
    add = read_mt5_deal(envelope(mt5_deal(), event="add"), router)
    upd = read_mt5_deal(envelope(mt5_deal(Price="1.08600"), event="update", ts=T0), router)
    dele = read_mt5_deal(envelope(mt5_deal(), event="delete", ts=T0), router)
    assert add.version < upd.version < dele.version
    assert dele.is_deleted and not upd.is_deleted
    assert isinstance(dele, Deal) and dele.deal_key == add.deal_key  # type: ignore[union-attr]


def test_unknown_reason_and_extra_fields_are_kept_not_rejected(router: Router) -> None:
    deal = read_mt5_deal(envelope(mt5_deal(Reason=42, NewField="x", Flags=2**40)), router)
    assert isinstance(deal, Deal)
    assert deal.reason == "unknown_42"


def test_server_time_offset_is_applied(settings: Settings) -> None:
    from pipelines.config import parse_settings

    doc = settings.model_dump()
    doc["tenants"][0]["servers"][0]["utc_offset_minutes"] = 120
    deal = read_mt5_deal(envelope(mt5_deal()), Router(parse_settings(doc)))
    assert deal.time == datetime(2024, 11, 23, 22, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "server", "event", "reason"),
    [
        (b'{"Deal": "1", ', "ACME-MT5-Live", None, "not JSON"),
        (b"[1, 2]", "ACME-MT5-Live", None, "expected a JSON object"),
        (mt5_deal(Login=None), "ACME-MT5-Live", None, "missing field 'Login'"),
        (mt5_deal(Volume="12x", VolumeExt=None), "ACME-MT5-Live", None, "'Volume': expected an integer"),
        (mt5_deal(Action=99), "ACME-MT5-Live", None, "unknown Action 99"),
        (mt5_deal(Entry=7), "ACME-MT5-Live", None, "unknown Entry 7"),
        (mt5_deal(Price="NaN"), "ACME-MT5-Live", None, "not a finite number"),
        (mt5_deal(Volume="0", VolumeExt="0"), "ACME-MT5-Live", None, "positive volume"),
        (mt5_deal(ContractSize=None), "ACME-MT5-Live", None, "missing field 'ContractSize'"),
        (mt5_deal(), None, None, "missing 'server' header"),
        (mt5_deal(), "NOPE", None, "not assigned to any tenant"),
        (mt5_deal(), "ACME-MT4-Live", None, "configured as mt4"),
        (mt5_deal(), "ACME-MT5-Live", "upsert", "'event' header"),
    ],
)
def test_unreadable_messages_become_dead_letters_with_reasons(
    router: Router, raw: dict[str, str] | bytes, server: str | None, event: str | None, reason: str
) -> None:
    env = envelope(raw, server=server, event=event, offset=17)
    with pytest.raises(Rejected, match=reason):
        read_mt5_deal(env, router)
    [dl] = Normaliser(router)(env)
    assert isinstance(dl, DeadLetter)
    assert reason in dl.reason
    assert dl.raw == env.value and dl.dl_key == "mt5.deals/0/17"


def test_topic_without_connector_is_a_dead_letter(router: Router) -> None:
    [dl] = Normaliser(router)(envelope(mt5_deal(), topic="mt9.deals"))
    assert isinstance(dl, DeadLetter) and "no connector" in dl.reason


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    overrides=st.dictionaries(
        st.sampled_from(["Deal", "Login", "Action", "Entry", "Volume", "VolumeExt", "Price",
                         "ContractSize", "TimeMsc", "Time", "Profit", "Symbol", "Reason"]),
        _json_values, max_size=5,
    ),
    garbage=st.binary(max_size=40),
    use_garbage=st.booleans(),
)
def test_fuzz_never_crashes_the_flow(
    settings: Settings, overrides: dict[str, object], garbage: bytes, use_garbage: bool
) -> None:
    doc: dict[str, object] = dict(mt5_deal())
    doc.update(overrides)
    raw = garbage if use_garbage else json.dumps(doc).encode()
    out = Normaliser(Router(settings))(envelope(raw))
    assert len(out) == 1
    record = out[0]
    if isinstance(record, Deal):
        assert record.lots > 0 and record.notional >= 0
        Deal.model_validate(record.model_dump())
    elif isinstance(record, BalanceOperation):
        BalanceOperation.model_validate(record.model_dump())
    else:
        assert isinstance(record, DeadLetter) and record.reason
