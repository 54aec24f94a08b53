"""Symbols reference: canonical names, suffix mapping, shipped defaults, broker overrides, and the
contract sizes that rely on it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.contract_sizes import contract_size_for
from schemas.symbols import (
    ASSET_CLASSES,
    SymbolBook,
    SymbolBookError,
    SymbolInfo,
    canonical_symbol,
    default_book,
    generic_symbol,
    set_default_book,
    symbol_info,
)

BOOK = SymbolBook.default()


def old_canonical_symbol(platform_symbol: str) -> str:
    """The rules canonical_symbol applied before the reference existed."""
    name = platform_symbol.strip()
    match = re.match(r"^([A-Za-z0-9]+)[._#!-].*$", name)
    if match:
        name = match.group(1)
    match = re.match(r"^([A-Z0-9]{3,}?)[a-z]+$", name)
    if match:
        name = match.group(1)
    return name.upper()


@pytest.fixture
def restore_default_book() -> Iterator[None]:
    yield
    set_default_book(None)


# -- canonical names --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("platform", "canonical"),
    [("EURUSD.r", "EURUSD"), ("XAUUSD.e", "XAUUSD"), ("EURUSDm", "EURUSD"), ("US30.cash", "US30")],
)
def test_existing_cases_keep_their_names(platform: str, canonical: str) -> None:
    assert canonical_symbol(platform) == canonical == old_canonical_symbol(platform)


@pytest.mark.parametrize(
    ("platform", "canonical"),
    [
        # explicit suffixes the generic rules miss
        ("US30Cash", "US30"), ("EURUSD+", "EURUSD"), ("EURUSDPRO", "EURUSD"), ("EURUSDecn", "EURUSD"),
        ("GBPUSD.ECN", "GBPUSD"), ("USDJPY_i", "USDJPY"), ("XAUUSDmicro", "XAUUSD"),
        # generic rules
        ("EURUSD.r.cash", "EURUSD"), ("GBPJPY-ecn", "GBPJPY"), ("EURGBP#", "EURGBP"),
        ("AUDUSDx", "AUDUSD"),
        # prefixes, separators, case
        ("#US30", "US30"), ("EUR/USD", "EURUSD"), ("eurusd", "EURUSD"), (" EURUSD ", "EURUSD"),
        # aliases
        ("GOLD", "XAUUSD"), ("GOLDm", "XAUUSD"), ("SILVER.r", "XAGUSD"), ("SPX500", "US500"),
        ("USTEC.cash", "NAS100"), ("US100", "NAS100"), ("DE40", "GER40"), ("GER30", "GER40"),
        ("FTSE100", "UK100"), ("JPN225", "JP225"), ("WS30", "US30"), ("WTI", "USOIL"),
        ("XTIUSD.r", "USOIL"), ("BRENT", "UKOIL"), ("XBRUSD", "UKOIL"), ("XNGUSD", "NATGAS"),
        # unknown: the generic rules only, as before
        ("FOOBAR.x", "FOOBAR"), ("ABCm", "ABC"), ("", ""), ("BTCUSDT", "BTCUSDT"),
    ],
)
def test_suffixes_and_aliases(platform: str, canonical: str) -> None:
    assert canonical_symbol(platform) == canonical


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=14) | st.from_regex(r"[A-Z]{3,7}[0-9]{0,3}([._#!-][a-z]{1,4}|[a-z]{1,4})?",
                                            fullmatch=True))
def test_unknown_symbols_read_as_before(name: str) -> None:
    assert generic_symbol(name) == old_canonical_symbol(name)
    info = BOOK.lookup(name)
    expected = info.name if info is not None else old_canonical_symbol(name)
    assert canonical_symbol(name) == expected
    assert isinstance(contract_size_for(name), Decimal)


# -- the shipped reference --------------------------------------------------------------------------


def info(name: str) -> SymbolInfo:
    found = BOOK.lookup(name)
    assert found is not None, name
    return found


def test_fx() -> None:
    majors = {"EURUSD", "GBPUSD", "USDJPY", "USDCHF", "AUDUSD", "USDCAD", "NZDUSD"}
    assert {n for n, i in BOOK.symbols.items() if i.asset_class == "fx_major"} == majors
    eurusd = info("EURUSD.r")
    assert eurusd == SymbolInfo("EURUSD", "EUR", "USD", Decimal(100_000), 5, "fx_major")
    assert (info("USDJPY").digits, info("USDJPY").quote) == (3, "JPY")
    for cross in ("EURJPY", "EURGBP", "EURCHF", "GBPJPY", "AUDJPY", "EURAUD", "CHFJPY"):
        assert info(cross).asset_class == "fx_minor"
        assert info(cross).digits == (3 if cross.endswith("JPY") else 5)
    for exotic in ("USDTRY", "USDZAR", "USDMXN", "EURPLN"):
        assert (info(exotic).asset_class, info(exotic).contract_size) == ("fx_exotic", Decimal(100_000))


def test_metals_indices_crypto_energies() -> None:
    assert info("XAUUSD") == SymbolInfo("XAUUSD", "XAU", "USD", Decimal(100), 2, "metal")
    assert (info("XAGUSD").contract_size, info("XAGUSD").digits) == (Decimal(5000), 3)
    assert (info("XPTUSD").base, info("XPTUSD").asset_class) == ("XPT", "metal")
    quotes = {"US30": "USD", "US500": "USD", "SPX500": "USD", "NAS100": "USD", "USTEC": "USD",
              "GER40": "EUR", "DE40": "EUR", "UK100": "GBP", "JP225": "JPY"}
    for name, quote in quotes.items():
        found = info(name)
        assert (found.quote, found.asset_class, found.contract_size) == (quote, "index", Decimal(1))
    assert info("US30") == SymbolInfo("US30", "US30", "USD", Decimal(1), 1, "index")
    for coin in ("BTCUSD", "ETHUSD", "LTCUSD", "XRPUSD", "DOGEUSD"):
        found = info(coin)
        assert (found.asset_class, found.quote, found.base) == ("crypto", "USD", coin[:-3])
    assert info("USOIL") == SymbolInfo("USOIL", "USOIL", "USD", Decimal(1000), 2, "energy")
    assert info("UKOIL").quote == "USD" and info("NATGAS").contract_size == Decimal(10_000)


def test_every_shipped_entry_is_consistent() -> None:
    assert set(ASSET_CLASSES) == {i.asset_class for i in BOOK.symbols.values()}
    for name, found in BOOK.symbols.items():
        assert found.name == name and found.contract_size > 0 and 0 <= found.digits <= 10
        assert re.fullmatch(r"[A-Z]{3}", found.quote), name
        assert BOOK.lookup(name) is found
    for alias, name in BOOK.aliases.items():
        assert alias not in BOOK.symbols and BOOK.lookup(alias) is BOOK.symbols[name]
    assert ".r" in BOOK.suffixes and "m" in BOOK.suffixes
    assert list(BOOK.suffixes) == sorted(BOOK.suffixes, key=lambda s: (-len(s), s))


def test_unknown_symbols_are_none() -> None:
    assert BOOK.lookup("FOOBAR") is None
    assert BOOK.lookup("") is None and BOOK.lookup("#") is None
    assert symbol_info("EURUSDm") is default_book().lookup("EURUSD")


def test_shipped_file_is_package_data() -> None:
    path = Path(__file__).resolve().parent.parent / "schemas" / "symbols_default.yaml"
    assert SymbolBook.from_yaml(path).symbols == BOOK.symbols


# -- broker configuration ---------------------------------------------------------------------------

BROKER = {
    "suffixes": ["ZX", "+live"],
    "classes": {"index": {"digits": 2}},
    "symbols": {
        "XAUUSD": {"contract_size": 10, "aliases": ["GOLDSPOT"]},  # change one field only
        "NAS100": {"class": "index", "quote": "USD", "contract_size": "0.1"},
        "SOYUSD": {"class": "energy", "quote": "USD", "base": "SOY", "contract_size": 5000},
        "USDRUB": {"class": "fx_exotic", "digits": 4},
    },
    "aliases": {"DAXCASH": "GER40"},
}


def test_broker_file_extends_the_defaults() -> None:
    book = SymbolBook.from_mapping(BROKER, base=BOOK)
    assert book.canonical("EURUSDZX") == "EURUSD" and book.canonical("GBPUSD+LIVE") == "GBPUSD"
    assert book.canonical("EURUSD.r") == "EURUSD"  # the default suffixes still apply
    gold = book.lookup("GOLDSPOT+live")
    assert gold == SymbolInfo("XAUUSD", "XAU", "USD", Decimal(10), 2, "metal")
    assert book.lookup("GOLD") == gold  # the default alias follows the changed symbol
    assert book.lookup("USTEC") == SymbolInfo("NAS100", "NAS100", "USD", Decimal("0.1"), 2, "index")
    assert book.lookup("SOYUSD") == SymbolInfo("SOYUSD", "SOY", "USD", Decimal(5000), 2, "energy")
    assert book.lookup("USDRUB") == SymbolInfo("USDRUB", "USD", "RUB", Decimal(100_000), 4, "fx_exotic")
    assert book.canonical("DAXCASH") == "GER40"
    assert info("US30").digits == 1  # defined before the class default changed: unchanged
    assert book.lookup("US30") == info("US30")
    assert info("XAUUSD").contract_size == Decimal(100)  # the base book is untouched
    assert BOOK.lookup("EURUSDZX") is None and BOOK.lookup("GBPUSD+live") is None


def test_broker_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "acme-symbols.yaml"
    path.write_text("suffixes: ['.acme']\nsymbols:\n  GER40: {digits: 2}\n", encoding="utf-8")
    book = SymbolBook.from_yaml(path, base=BOOK)
    assert book.lookup("DE40.acme") == SymbolInfo("GER40", "GER40", "EUR", Decimal(1), 2, "index")
    path.write_text("symbols: [1, 2\n", encoding="utf-8")
    with pytest.raises(SymbolBookError, match="not valid YAML"):
        SymbolBook.from_yaml(path)


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ({"symbols": {"ABCDEF": {"class": "fx"}}}, "symbols.ABCDEF: unknown class 'fx'"),
        ({"symbols": {"ABCDEF": {"class": "fx_minor", "size": 1}}}, r"unknown keys \['size'\]"),
        ({"symbols": {"US30": {"class": "index"}}}, "needs its quote"),
        ({"symbols": {"NEWIDX": {"quote": "USD"}}}, "symbols.NEWIDX: needs a class"),
        ({"symbols": {"ABCDEF": {"class": "fx_minor", "contract_size": 0}}},
         "contract_size must be positive"),
        ({"symbols": {"ABCDEF": {"class": "fx_minor", "contract_size": "lots"}}}, "must be a number"),
        ({"symbols": {"ABCDEF": {"class": "fx_minor", "digits": 11}}}, "digits must be an integer"),
        ({"symbols": {"AB": {"class": "crypto"}}}, "name too short"),
        ({"symbols": {"ABCDEF": {"class": "fx_minor"}}, "aliases": {"XYZ": "NOPE"}},
         "alias 'XYZ' names 'NOPE', which is not in the book"),
        ({"symbols": {"ABCDEF": {"class": "fx_minor", "aliases": ["GHIJKL"]},
                      "GHIJKL": {"class": "fx_minor"}}}, "alias 'GHIJKL' of 'ABCDEF' is itself a symbol"),
        ({"classes": {"bonds": {"digits": 2}}}, "classes.bonds: unknown asset class"),
        ({"suffix": [".r"]}, "unknown top-level keys"),
        ({"symbols": ["EURUSD"]}, "symbols must be a mapping"),
    ],
)
def test_bad_configuration_is_refused(doc: dict[str, Any], reason: str) -> None:
    with pytest.raises(SymbolBookError, match=reason):
        SymbolBook.from_mapping({"classes": {"fx_minor": {"contract_size": 100000, "digits": 5},
                                             "index": {"contract_size": 1, "digits": 1},
                                             "crypto": {"contract_size": 1, "digits": 2}}, **doc})


def test_process_wide_book(restore_default_book: None) -> None:
    assert contract_size_for("XAUUSD.r") == Decimal(100)
    assert canonical_symbol("GOLDSPOT") == "GOLDSPOT"
    set_default_book(SymbolBook.from_mapping(BROKER, base=BOOK))
    assert canonical_symbol("GOLDSPOT") == "XAUUSD"
    assert contract_size_for("XAUUSD.r") == Decimal(10)
    set_default_book(None)
    assert canonical_symbol("GOLDSPOT") == "GOLDSPOT"
    assert contract_size_for("XAUUSD.r") == Decimal(100)


# -- contract sizes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("symbol", "size"),
    [
        # from the reference
        ("EURUSD.r", 100_000), ("XAUUSD", 100), ("GOLD", 100), ("XAGUSDm", 5_000), ("US30.cash", 1),
        ("GER40", 1), ("BTCUSD", 1), ("USOIL", 1_000), ("BRENT", 1_000), ("NATGAS", 10_000),
        # not in it: the class fallback, as before
        ("XAUCHF", 100), ("XPDEUR", 100), ("CL", 1_000), ("CRUDE", 1_000), ("BTCUSDT", 1),
        ("SHIBUSD", 1), ("AUS500", 1), ("VIX", 1), ("NZDSGD", 100_000), ("FOO", 100_000),
    ],
)
def test_contract_sizes(symbol: str, size: int) -> None:
    assert contract_size_for(symbol) == Decimal(size)
