"""The project's one money module: ISO 4217 minor units from the maintained table, rounding."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

import commissions.money
import schemas.money
from connectors.psp.common import ISO_EXPONENTS, minor_units
from schemas.money import (
    MINOR_DIGITS,
    from_minor_units,
    is_whole_minor,
    minor_digits,
    minor_unit,
    round_minor,
    split_rounded,
)


@pytest.mark.parametrize(("currency", "digits"), [
    ("USD", 2), ("EUR", 2), ("GBP", 2), ("HUF", 2),
    ("JPY", 0), ("KRW", 0), ("VND", 0), ("CLP", 0), ("ISK", 0), ("XAF", 0), ("XOF", 0),
    ("PYG", 0), ("RWF", 0), ("UGX", 0), ("VUV", 0), ("XPF", 0), ("GNF", 0), ("KMF", 0),
    ("BHD", 3), ("KWD", 3), ("JOD", 3), ("TND", 3), ("OMR", 3), ("IQD", 3), ("LYD", 3),
    ("CLF", 4), ("UYW", 4),
])
def test_iso_minor_units(currency: str, digits: int) -> None:
    assert minor_digits(currency) == digits
    assert minor_digits(currency.lower()) == digits
    assert minor_unit(currency) == D(1).scaleb(-digits)


def test_the_table_is_the_maintained_iso_list() -> None:
    assert len(MINOR_DIGITS) > 150  # every active code, not a hand-kept list of 16
    assert schemas.money.ISO4217_PUBLISHED >= "2024-01-01"


@pytest.mark.parametrize("currency", ["XAU", "XDR", "USDT", "BTC", "ZZZ"])
def test_codes_without_an_iso_minor_unit_count_in_hundredths(currency: str) -> None:
    assert minor_digits(currency) == 2


def test_round_half_even_in_zero_three_and_four_decimal_currencies() -> None:
    assert [round_minor(D(x), "JPY") for x in ("12.5", "13.5", "-12.5", "0.4")] == [
        D("12"), D("14"), D("-12"), D("0")]
    assert round_minor(D("1500.5"), "KRW") == D("1500")
    assert round_minor(D("1.0005"), "KWD") == D("1.000") and round_minor(D("1.0015"), "BHD") == D("1.002")
    assert round_minor(D("2.12345"), "JOD") == D("2.123") and round_minor(D("0.0035"), "TND") == D("0.004")
    assert round_minor(D("1.000050"), "CLF") == D("1.0000")
    assert round_minor(D("1.000150"), "CLF") == D("1.0002")
    assert round_minor(D("0.125"), "USD") == D("0.12")
    assert str(round_minor(D("7"), "KWD")) == "7.000"


def test_whole_minor_units() -> None:
    assert is_whole_minor(D("10.005"), "KWD") and not is_whole_minor(D("10.005"), "USD")
    assert not is_whole_minor(D("10.5"), "JPY") and is_whole_minor(D("10"), "JPY")


def test_split_rounded_in_minor_units_of_the_currency() -> None:
    rows = split_rounded([D("0.5"), D("0.5"), D("0.5")], D("1.5"), "JPY")
    assert sum(rows) <= D("2") and all(abs(r - D("0.5")) < 1 for r in rows)
    rows = split_rounded([D("0.0005"), D("0.0005")], D("0.001"), "BHD")
    assert sum(rows) <= D("0.001")


def test_minor_unit_amounts_from_providers() -> None:
    assert from_minor_units(1234, "USD") == D("12.34")
    assert from_minor_units(1234, "JPY") == D("1234")
    assert from_minor_units(1234, "KWD") == D("1.234")
    assert from_minor_units(12345, "CLF") == D("1.2345")
    assert from_minor_units(1234, "BTC", {"BTC": 8}) == D("0.00001234")
    # the PSP connectors read minor units from the same table
    assert minor_units("1234", "amount", "BHD", ISO_EXPONENTS) == D("1.234")
    assert minor_units(5, "amount", "KRW", ISO_EXPONENTS) == D("5")


def test_one_module() -> None:
    # commissions use the project's money module, not a table of their own
    assert commissions.money.round_minor is schemas.money.round_minor
    assert commissions.money.minor_unit is schemas.money.minor_unit
    assert not hasattr(commissions.money, "_MINOR_DIGITS")
