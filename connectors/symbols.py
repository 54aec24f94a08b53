"""Canonical symbol names: brokers decorate symbols (`EURUSD.r`, `XAUUSD.e`, `EURUSDm`,
`US30.cash`); canonical events carry the plain name and keep the platform's beside it."""

from __future__ import annotations

import re
from functools import lru_cache

# A suffix is whatever follows a separator, or trailing lower-case letters after an
# upper-case stem (`EURUSDm`, `GBPUSDpro`).
_SEPARATED = re.compile(r"^([A-Za-z0-9]+)[._#!-].*$")
_LOWER_TAIL = re.compile(r"^([A-Z0-9]{3,}?)[a-z]+$")


@lru_cache(maxsize=65_536)
def canonical_symbol(platform_symbol: str) -> str:
    name = platform_symbol.strip()
    match = _SEPARATED.match(name)
    if match:
        name = match.group(1)
    match = _LOWER_TAIL.match(name)
    if match:
        name = match.group(1)
    return name.upper()
