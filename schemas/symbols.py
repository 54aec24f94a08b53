"""Symbols reference: canonical names and specifications of what brokers trade.

Brokers decorate symbols (`EURUSD.r`, `XAUUSD.e`, `EURUSDm`, `US30.cash`) and give one
instrument several names (`US500` / `SPX500`, `GER40` / `DE40`, `USOIL` / `WTI`); canonical
events carry one plain name and keep the platform's beside it.

- `SymbolInfo`: one instrument -- canonical name, base, quote (profit) currency, contract size
  (units per lot), digits and asset class.
- `SymbolBook`: the reference. `lookup(platform_symbol)` finds an instrument by its name or an
  alias, after removing the broker's decoration: first the explicit suffixes of the book (a
  list in its configuration, matched without regard to case, longest first), then the generic
  rules (anything after a separator `. _ # ! -`, or a lower-case tail after an upper-case stem),
  and leading `#`/`_` prefixes. The shipped defaults are `symbols_default.yaml`; a broker's own
  file in the same form extends them (`SymbolBook.from_yaml(path, base=SymbolBook.default())`)
  and can be made the process-wide book with `set_default_book`.
- `canonical_symbol(platform_symbol)`: the book's name of a known instrument (aliases resolved),
  otherwise the name with its decoration removed by the generic rules, upper-cased.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Final, Literal, get_args

import yaml

# The asset classes, for every room: the reference's own (also the commission plans' symbol
# groups), and the coarser ones an instrument table may name where the reference's grade is not
# known (exposure's instruments configuration: `fx` is any currency pair, `commodity` energy and
# the like, `stock`, `other`).
AssetClass = Literal["fx_major", "fx_minor", "fx_exotic", "metal", "index", "crypto", "energy"]
InstrumentClass = AssetClass | Literal["fx", "commodity", "stock", "other"]
ASSET_CLASSES: Final[tuple[str, ...]] = get_args(AssetClass)
# Classes whose name is base + quote (EURUSD, XAUUSD, DOGEUSD): both can be derived from it, and
# a position holds the base (+units) against the quote (-cost).
_PAIR_CLASSES: Final = frozenset({"fx_major", "fx_minor", "fx_exotic", "metal", "crypto"})
PAIR_CLASSES: Final[frozenset[str]] = _PAIR_CLASSES | {"fx"}

DEFAULT_FILE: Final = "symbols_default.yaml"

# A suffix is whatever follows a separator, or trailing lower-case letters after an
# upper-case stem (`EURUSDm`, `GBPUSDpro`).
_SEPARATED = re.compile(r"^([A-Za-z0-9]+)[._#!-].*$")
_LOWER_TAIL = re.compile(r"^([A-Z0-9]{3,}?)[a-z]+$")
_PREFIXES = "#_.!-+"
_CODE = re.compile(r"^[A-Z0-9]{2,12}$")
_CACHE_LIMIT = 65_536
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # a safe loader: plain data only


@dataclass(frozen=True, slots=True)
class SymbolInfo:
    """One instrument as the reference knows it."""

    name: str
    base: str  # what one unit is: currency, metal or crypto code; an index's or energy's own name
    quote: str  # profit currency: prices and P&L are in it
    contract_size: Decimal  # units per lot
    digits: int
    asset_class: AssetClass


class SymbolBookError(ValueError):
    """A symbols reference that cannot be used, with the entry at fault named."""


def generic_symbol(platform_symbol: str) -> str:
    """The platform's name without its decoration, by the generic rules only (upper-cased)."""
    name = platform_symbol.strip()
    match = _SEPARATED.match(name)
    if match:
        name = match.group(1)
    match = _LOWER_TAIL.match(name)
    if match:
        name = match.group(1)
    return name.upper()


# -- reading a book from its configuration ------------------------------------------------------

_ENTRY_KEYS: Final = frozenset({"class", "base", "quote", "contract_size", "digits", "aliases"})
_CLASS_KEYS: Final = frozenset({"contract_size", "digits"})
_TOP_KEYS: Final = frozenset({"suffixes", "classes", "symbols", "aliases"})


def _contract_size(value: Any, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise SymbolBookError(f"{where}: contract_size must be a number, got {value!r}")
    try:
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        raise SymbolBookError(f"{where}: contract_size must be a number, got {value!r}") from None
    if not number.is_finite() or number <= 0 or number >= Decimal("1E9"):
        raise SymbolBookError(f"{where}: contract_size must be positive and below 1e9, got {value!r}")
    return number


def _digits(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10:
        raise SymbolBookError(f"{where}: digits must be an integer from 0 to 10, got {value!r}")
    return value


def _code(value: Any, where: str, what: str) -> str:
    text = str(value).strip().upper() if isinstance(value, str | int) else ""
    if not _CODE.match(text):
        raise SymbolBookError(f"{where}: {what} must be a code of 2-12 letters or digits, got {value!r}")
    return text


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SymbolBookError(f"{where} must be a mapping, got {type(value).__name__}")
    return value


def _names(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
        raise SymbolBookError(f"{where} must be a list of names")
    return [str(v).strip() for v in value if str(v).strip()]


def _classes(doc: Mapping[str, Any], base: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    classes = {name: dict(values) for name, values in base.items()}
    for name, values in _mapping(doc, "classes").items():
        where = f"classes.{name}"
        if name not in ASSET_CLASSES:
            raise SymbolBookError(f"{where}: unknown asset class (known: {', '.join(ASSET_CLASSES)})")
        values = _mapping(values, where)
        unknown = set(values) - _CLASS_KEYS
        if unknown:
            raise SymbolBookError(f"{where}: unknown keys {sorted(unknown)}")
        merged = classes.setdefault(name, {})
        if "contract_size" in values:
            merged["contract_size"] = _contract_size(values["contract_size"], where)
        if "digits" in values:
            merged["digits"] = _digits(values["digits"], where)
    return classes


def _symbol(
    name: str, values: Mapping[str, Any], classes: Mapping[str, Mapping[str, Any]],
    known: SymbolInfo | None,
) -> SymbolInfo:
    where = f"symbols.{name}"
    unknown = set(values) - _ENTRY_KEYS
    if unknown:
        raise SymbolBookError(f"{where}: unknown keys {sorted(unknown)}")
    asset_class = values.get("class")
    if asset_class is None:
        if known is None:
            raise SymbolBookError(f"{where}: needs a class ({', '.join(ASSET_CLASSES)})")
        # A known symbol: only what the entry names changes.
        info = known
        if "base" in values:
            info = replace(info, base=_code(values["base"], where, "base"))
        if "quote" in values:
            info = replace(info, quote=_code(values["quote"], where, "quote"))
        if "contract_size" in values:
            info = replace(info, contract_size=_contract_size(values["contract_size"], where))
        if "digits" in values:
            info = replace(info, digits=_digits(values["digits"], where))
        return info
    if asset_class not in ASSET_CLASSES:
        raise SymbolBookError(f"{where}: unknown class {asset_class!r} (known: {', '.join(ASSET_CLASSES)})")
    defaults = classes.get(asset_class, {})
    if "contract_size" not in values and "contract_size" not in defaults:
        raise SymbolBookError(f"{where}: no contract_size, and class {asset_class} has no default")
    if "digits" not in values and "digits" not in defaults:
        raise SymbolBookError(f"{where}: no digits, and class {asset_class} has no default")
    contract_size = (_contract_size(values["contract_size"], where) if "contract_size" in values
                     else defaults["contract_size"])
    digits = _digits(values["digits"], where) if "digits" in values else defaults["digits"]
    if asset_class in _PAIR_CLASSES:
        if ("base" not in values or "quote" not in values) and len(name) < 6:
            raise SymbolBookError(f"{where}: name too short to split into base and quote: name them")
        base = _code(values["base"], where, "base") if "base" in values else name[:-3]
        quote = _code(values["quote"], where, "quote") if "quote" in values else name[-3:]
    else:
        if "quote" not in values:
            raise SymbolBookError(f"{where}: an {asset_class} needs its quote (profit) currency")
        base = _code(values["base"], where, "base") if "base" in values else name
        quote = _code(values["quote"], where, "quote")
    return SymbolInfo(name, base, quote, contract_size, digits, asset_class)


# -- the book -----------------------------------------------------------------------------------


class SymbolBook:
    """Instruments by canonical name and alias, and the suffixes brokers decorate them with."""

    def __init__(
        self,
        symbols: Iterable[SymbolInfo],
        aliases: Mapping[str, str] | None = None,
        suffixes: Iterable[str] = (),
        classes: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self._symbols: dict[str, SymbolInfo] = {}
        for info in symbols:
            self._symbols[info.name.upper()] = info
        self._aliases: dict[str, str] = {}
        self._index: dict[str, SymbolInfo] = dict(self._symbols)
        for alias, name in (aliases or {}).items():
            key, target = alias.strip().upper(), self._symbols.get(name.strip().upper())
            if target is None:
                raise SymbolBookError(f"alias {alias!r} names {name!r}, which is not in the book")
            if key in self._symbols and self._symbols[key] is not target:
                raise SymbolBookError(f"alias {alias!r} of {name!r} is itself a symbol of the book")
            self._aliases[key] = target.name
            self._index[key] = target
        self._suffixes = tuple(sorted({s.lower() for s in suffixes if s}, key=lambda s: (-len(s), s)))
        self._classes = {name: dict(values) for name, values in (classes or {}).items()}
        self._cache: dict[str, SymbolInfo | None] = {}

    # -- building -------------------------------------------------------------------------------

    @classmethod
    def from_mapping(cls, doc: Any, base: SymbolBook | None = None) -> SymbolBook:
        """A book from its configuration (the form of `symbols_default.yaml`); with `base`, the
        configuration extends that book: its symbols, aliases and suffixes are added, and an
        entry without a class changes only the fields it names on the base's symbol."""
        doc = _mapping(doc, "the symbols configuration")
        unknown = set(doc) - _TOP_KEYS
        if unknown:
            raise SymbolBookError(f"unknown top-level keys {sorted(unknown)} (known: {sorted(_TOP_KEYS)})")
        classes = _classes(doc.get("classes"), base._classes if base else {})
        symbols: dict[str, SymbolInfo] = dict(base._symbols) if base else {}
        aliases: dict[str, str] = dict(base._aliases) if base else {}
        own: dict[str, str] = {}  # aliases this configuration declares
        for raw_name, values in _mapping(doc.get("symbols"), "symbols").items():
            name = _code(raw_name, f"symbols.{raw_name}", "a symbol name")
            values = _mapping(values, f"symbols.{name}")
            symbols[name] = _symbol(name, values, classes, symbols.get(name))
            aliases.pop(name, None)  # a name of its own is no longer the base's alias of another
            for alias in _names(values.get("aliases"), f"symbols.{name}.aliases"):
                own[alias.upper()] = name
        for alias, name in _mapping(doc.get("aliases"), "aliases").items():
            own[str(alias).strip().upper()] = str(name).strip().upper()
        for alias, name in own.items():
            if alias in symbols and alias != name:
                raise SymbolBookError(f"alias {alias!r} of {name!r} is itself a symbol of the book")
        aliases.update(own)
        suffixes = [*(base._suffixes if base else ()), *_names(doc.get("suffixes"), "suffixes")]
        return cls(symbols.values(), aliases, suffixes, classes)

    @classmethod
    def from_yaml(cls, path: str | Path, base: SymbolBook | None = None) -> SymbolBook:
        text = Path(path).read_text(encoding="utf-8")
        try:
            doc = _load_yaml(text)
        except yaml.YAMLError as exc:
            raise SymbolBookError(f"{path}: not valid YAML: {exc}") from None
        try:
            return cls.from_mapping(doc, base)
        except SymbolBookError as exc:
            raise SymbolBookError(f"{path}: {exc}") from None

    @classmethod
    def default(cls) -> SymbolBook:
        """The shipped reference (`schemas/symbols_default.yaml`), read once."""
        return _shipped()

    # -- reading --------------------------------------------------------------------------------

    @property
    def symbols(self) -> Mapping[str, SymbolInfo]:
        return dict(self._symbols)

    @property
    def aliases(self) -> Mapping[str, str]:
        return dict(self._aliases)

    @property
    def suffixes(self) -> tuple[str, ...]:
        return self._suffixes

    def lookup(self, platform_symbol: str) -> SymbolInfo | None:
        """The instrument a platform's symbol name stands for, or None when the book lacks it."""
        try:
            return self._cache[platform_symbol]
        except KeyError:
            pass
        info = self._find(platform_symbol)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[platform_symbol] = info
        return info

    def canonical(self, platform_symbol: str) -> str:
        info = self.lookup(platform_symbol)
        return info.name if info is not None else generic_symbol(platform_symbol)

    def _candidates(self, name: str) -> Iterator[str]:
        yield name
        lower = name.lower()
        for suffix in self._suffixes:
            if len(lower) > len(suffix) and lower.endswith(suffix):
                yield name[: -len(suffix)]
        yield generic_symbol(name)

    def _find(self, platform_symbol: str) -> SymbolInfo | None:
        name = platform_symbol.strip().lstrip(_PREFIXES)
        if not name:
            return None
        for candidate in self._candidates(name):
            info = self._index.get(candidate.upper().replace("/", ""))
            if info is not None:
                return info
        return None


@lru_cache(maxsize=1)
def _shipped() -> SymbolBook:
    text = resources.files("schemas").joinpath(DEFAULT_FILE).read_text(encoding="utf-8")
    try:
        return SymbolBook.from_mapping(_load_yaml(text))
    except SymbolBookError as exc:
        raise SymbolBookError(f"{DEFAULT_FILE}: {exc}") from None


# -- the process-wide book ------------------------------------------------------------------------

_book: SymbolBook | None = None


def default_book() -> SymbolBook:
    """The book connectors use: the one set with `set_default_book`, else the shipped one."""
    return _book if _book is not None else _shipped()


def set_default_book(book: SymbolBook | None) -> None:
    """Make `book` the process-wide reference (None: back to the shipped defaults)."""
    global _book
    _book = book
    canonical_symbol.cache_clear()


def symbol_info(platform_symbol: str) -> SymbolInfo | None:
    """`default_book().lookup(platform_symbol)`."""
    return default_book().lookup(platform_symbol)


@lru_cache(maxsize=65_536)
def canonical_symbol(platform_symbol: str) -> str:
    """The canonical name of a platform's symbol: the book's name of a known instrument (aliases
    resolved), otherwise the name without its decoration by the generic rules."""
    return default_book().canonical(platform_symbol)
