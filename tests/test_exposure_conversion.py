"""Conversion between currencies: direct, inverse, through USD; missing rates; properties."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from risk_rules.exposure import (
    Instrument,
    InstrumentTable,
    MissingRate,
    PriceBook,
    Rates,
    UnknownInstrument,
    guess_instrument,
)
from tests.test_exposure_support import make_quote

D = Decimal
CENT_OF_A_MILLIONTH = D("1E-8")


def rates(*quotes: tuple[str, str, str]) -> Rates:
    return Rates.from_quotes(make_quote(symbol, bid, ask) for symbol, bid, ask in quotes)


def test_direct_inverse_and_cross_through_usd() -> None:
    r = rates(("EURUSD", "1.0850", "1.0852"), ("USDJPY", "150.00", "150.04"), ("GBPUSD", "1.2700", "1.2702"))
    assert r.rate("EUR", "USD") == D("1.0851")  # mid
    assert r.rate("USD", "USD") == 1
    # JPY -> USD = 1 / USDJPY
    assert r.convert(D("15002"), "JPY", "USD") == D("100")
    assert close(r.convert(D("1000"), "JPY", "USD"), D("6.66577789628"))
    # EURJPY P&L in JPY reaches USD through USDJPY; EUR -> JPY through USD as well
    assert r.rate("EUR", "JPY") == D("1.0851") * D("150.02")
    # GBP -> EUR through GBPUSD and EURUSD
    assert close(r.rate("GBP", "EUR"), D("1.2701") / D("1.0851"))


def test_a_quoted_cross_is_used_directly() -> None:
    r = rates(("EURUSD", "1.08", "1.08"), ("EURGBP", "0.85", "0.85"), ("GBPUSD", "1.27", "1.27"))
    assert close(r.rate("GBP", "EUR"), D(1) / D("0.85"))


def test_metal_and_index_cfds() -> None:
    table = InstrumentTable()
    gold = table.instrument("XAUUSD")
    assert (gold.base, gold.quote, gold.asset_class, gold.contract_size) == ("XAU", "USD", "metal", 100)
    ger40 = table.instrument("GER40")
    assert (ger40.quote, ger40.asset_class, ger40.contract_size) == ("EUR", "index", 1)
    r = rates(("EURUSD", "1.08", "1.10"), ("XAUUSD", "2000", "2001"), ("GER40", "18000", "18002"))
    assert r.rate(gold.quote, "USD") == 1  # gold P&L is in USD already
    assert r.convert(D("100"), ger40.quote, "USD") == D("109.0")  # EUR P&L through EURUSD
    assert r.rate("XAU", "USD") == D("2000.5")  # a metal converts like a currency
    assert r.pair_of("GER40") is None  # an index is not a rate


def test_missing_rate_is_explicit() -> None:
    r = rates(("EURUSD", "1.08", "1.08"))
    with pytest.raises(MissingRate) as caught:
        r.rate("JPY", "USD")
    assert (caught.value.from_ccy, caught.value.to_ccy) == ("JPY", "USD")
    with pytest.raises(MissingRate, match="through USD"):
        r.rate("JPY", "EUR")


def test_quote_sides_left_out_keep_their_previous_value() -> None:
    book = PriceBook()
    book.update("S1", "EURUSD", D("1.1"), D("1.2"))
    price = book.update("S1", "EURUSD", None, D("1.3"))  # cTrader: bid unchanged
    assert (price.bid, price.ask) == (D("1.1"), D("1.3"))
    assert book.update("S2", "XAUUSD", None, D("2000")).mid == D("2000")  # one side known
    assert book.price("S3", "EURUSD") == price  # another server's price when S3 has none
    r = Rates()
    r.update("EURUSD", None, D("1.2"))
    assert r.rate("EUR", "USD") == D("1.2")


def test_conservative_basis_takes_the_dealers_side() -> None:
    r = rates(("EURUSD", "1.0800", "1.0900"), ("USDJPY", "150", "151"))
    assert r.convert(D("100"), "EUR", "USD", basis="conservative") == D("108.00")
    assert r.convert(D("-100"), "EUR", "USD", basis="conservative") == D("-109.00")
    assert r.convert(D("151"), "JPY", "USD", basis="conservative") == D("1")
    assert r.convert(D("-150"), "JPY", "USD", basis="conservative") == D("-1")


def test_instrument_table_from_dict_and_guesses() -> None:
    table = InstrumentTable.from_dict({
        "DE40cash": {"base": "DE40", "quote": "EUR", "contract_size": "1", "asset_class": "index",
                     "margin_rate": "0.05"},
    }, guess=False)
    assert table.instrument("DE40cash").margin_rate == D("0.05")
    with pytest.raises(UnknownInstrument):
        table.instrument("EURUSD")
    assert guess_instrument("BTCUSD") == Instrument("BTCUSD", "BTC", "USD", D(1), "crypto")
    assert guess_instrument("USOIL") is not None
    assert guess_instrument("FOOBAR") is None


# ---- properties ---------------------------------------------------------------------------------

CURRENCIES = ["EUR", "GBP", "JPY", "CHF", "AUD", "CAD", "XAU"]
prices = st.decimals(min_value=D("0.001"), max_value=D("20000"), places=5)
amounts = st.decimals(min_value=D("-1E9"), max_value=D("1E9"), places=2)


@st.composite
def usd_markets(draw: st.DrawFn) -> Rates:
    """Every currency quoted against USD, as XXXUSD or USDXXX at random prices."""
    r = Rates()
    for ccy in CURRENCIES:
        price = draw(prices)
        if draw(st.booleans()):
            r.set_pair(ccy, "USD", price)
        else:
            r.set_pair("USD", ccy, price)
    return r


def close(a: Decimal, b: Decimal) -> bool:
    """Equal within output rounding (8 dp)."""
    return abs(a - b) <= CENT_OF_A_MILLIONTH


@settings(max_examples=300, deadline=None)
@given(market=usd_markets(), amount=amounts, a=st.sampled_from([*CURRENCIES, "USD"]),
       b=st.sampled_from([*CURRENCIES, "USD"]))
def test_round_trip_returns_the_amount(market: Rates, amount: Decimal, a: str, b: str) -> None:
    there = market.convert(amount, a, b)
    back = market.convert(there, b, a)
    assert close(back, amount)


@settings(max_examples=300, deadline=None)
@given(market=usd_markets(), amount=amounts, a=st.sampled_from(CURRENCIES), b=st.sampled_from(CURRENCIES))
def test_chain_through_any_currency_is_consistent(market: Rates, amount: Decimal, a: str, b: str) -> None:
    assert close(market.convert(market.convert(amount, a, b), b, "USD"), market.convert(amount, a, "USD"))


@settings(max_examples=200, deadline=None)
@given(market=usd_markets(), amount=amounts, a=st.sampled_from(CURRENCIES), b=st.sampled_from(CURRENCIES))
def test_quoted_crosses_consistent_with_usd_legs_agree(
    market: Rates, amount: Decimal, a: str, b: str
) -> None:
    # add the cross AB at the price its USD legs imply: the direct path and the USD path agree
    if a != b:
        market.set_pair(a, b, market.rate(a, "USD") * market.rate("USD", b))
    assert close(market.convert(market.convert(amount, a, b), b, "USD"), market.convert(amount, a, "USD"))
