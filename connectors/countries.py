"""Country names and codes -> ISO 3166-1 alpha-2.

Platforms keep the country as free text: MT5 stores a country *name* ("Germany"), MT4 and CRMs
whatever was typed. `country_code` accepts an alpha-2 code as it is, an alpha-3 code, the ISO
English short name, the official name, and the common variants people and platforms use
("United States of America", "USA", "UK", "Russia", "South Korea", "Korea, South", "Ivory Coast",
"Czech Republic", "Turkey", "Holland", ...). Matching ignores case, accents, punctuation, "&" vs
"and", "St." vs "Saint", a leading "The", and the order around one comma ("Korea, Republic of" =
"Republic of Korea"). Anything else is unknown: None.

The ISO 3166-1 entries (codes, English short, official and common names) come from `pycountry`
(the Debian iso-codes data); this module adds Kosovo's widely used user-assigned code XK and the
variants below. The lookup tables are built once, at import: a lookup is a dict lookup.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from operator import attrgetter
from typing import Final

import pycountry


def _iso_entries() -> list[tuple[str, ...]]:
    """alpha-2, alpha-3, ISO short name, then the official and common names (pycountry's copy of
    the Debian iso-codes data), in alpha-2 order."""
    entries = []
    for c in sorted(pycountry.countries, key=attrgetter("alpha_2")):
        others = (getattr(c, "official_name", None), getattr(c, "common_name", None))
        entries.append((c.alpha_2, c.alpha_3, c.name, *(n for n in others if n)))
    return entries


# Kosovo is not in ISO 3166-1; XK is the user-assigned code banks, the EU and platforms use.
_EXTRA: Final[tuple[tuple[str, ...], ...]] = (("XK", "XKX", "Kosovo", "Republic of Kosovo"),)

# Names and codes people and platforms use that are not in the ISO data.
VARIANTS: Final[dict[str, str]] = {
    # codes
    "UK": "GB", "EL": "GR", "UAE": "AE", "USA": "US",
    # United States, United Kingdom
    "U.S.": "US", "U.S.A.": "US", "America": "US", "US Minor Outlying Islands": "UM",
    "Great Britain": "GB", "Britain": "GB", "England": "GB", "Scotland": "GB", "Wales": "GB",
    "Northern Ireland": "GB", "U.K.": "GB",
    # short or former names
    "Russia": "RU", "Korea": "KR", "Korea, South": "KR", "Korea (South)": "KR", "S. Korea": "KR",
    "Korea, North": "KP", "Korea (North)": "KP", "N. Korea": "KP",
    "Turkey": "TR", "Ivory Coast": "CI",
    "Macedonia": "MK", "Republic of Macedonia": "MK", "FYROM": "MK",
    "Former Yugoslav Republic of Macedonia": "MK", "Macedonia, the Former Yugoslav Republic of": "MK",
    "Swaziland": "SZ", "Burma": "MM", "Holland": "NL",
    "Emirates": "AE", "Palestine": "PS", "Palestinian Territories": "PS",
    "Palestinian Territory": "PS", "Palestinian Territory, Occupied": "PS",
    "Vatican": "VA", "Vatican City": "VA", "Holy See": "VA", "Vatican City State": "VA",
    "Brunei": "BN", "Cape Verde": "CV", "Micronesia": "FM", "Macau": "MO",
    "DR Congo": "CD", "DRC": "CD", "Congo-Kinshasa": "CD", "Congo (Kinshasa)": "CD",
    "Democratic Republic of Congo": "CD", "Zaire": "CD",
    "Republic of Congo": "CG", "Congo-Brazzaville": "CG", "Congo (Brazzaville)": "CG",
    "East Timor": "TL", "Falkland Islands": "FK", "Malvinas": "FK", "Cocos Islands": "CC",
    "Keeling Islands": "CC", "Saint Martin": "MF", "Sint Maarten": "SX",
    "Saint Helena": "SH", "Bonaire": "BQ", "Caribbean Netherlands": "BQ",
    "Bosnia": "BA", "Bosnia-Herzegovina": "BA", "Trinidad": "TT",
    "Saint Kitts": "KN", "Saint Vincent": "VC", "Saint Vincent and Grenadines": "VC",
    "Sao Tome": "ST", "Heard and McDonald Islands": "HM", "Wallis and Futuna Islands": "WF",
    "South Georgia": "GS", "Svalbard": "SJ", "BVI": "VG",
    "Hong Kong SAR": "HK", "Hong Kong SAR China": "HK", "Macao SAR China": "MO",
    "Republic of China": "TW", "Chinese Taipei": "TW", "Mainland China": "CN", "PRC": "CN",
    "Persia": "IR", "Lao PDR": "LA", "Lao": "LA", "Gambia, The": "GM", "Bahamas, The": "BS",
    "Kirghizia": "KG", "Byelorussia": "BY", "Belorussia": "BY", "Moldavia": "MD",
    "Vietnam, Socialist Republic of": "VN", "Republic of Ireland": "IE", "Eire": "IE",
    "Aland": "AX", "Reunion Island": "RE", "St. Barts": "BL", "Saint Barts": "BL",
}

_SPACES = re.compile(r"\s+")
_DROP = re.compile(r"[.'’`\"()\[\]]")
_BREAK = re.compile(r"[-/_,;:]")


def _fold(text: str) -> str:
    """Case, accents, punctuation and common spelling differences removed."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).casefold()
    text = text.replace("&", " and ")
    text = _DROP.sub("", text)
    text = _BREAK.sub(" ", text)
    words = _SPACES.sub(" ", text).strip().split(" ")
    if words and words[0] == "the":
        words = words[1:]
    words = ["saint" if w in ("st", "ste") else w for w in words]
    return " ".join(words)


def _keys(name: str) -> list[str]:
    """The folded name, and the name turned around one comma ("Korea, Republic of")."""
    keys = [_fold(name)]
    head, sep, tail = name.partition(",")
    if sep and "," not in tail:
        keys.append(_fold(f"{tail} {head}"))
    return keys


def _build() -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    alpha2: dict[str, str] = {}
    alpha3: dict[str, str] = {}
    names: dict[str, str] = {}
    for code, code3, *country_names in [*_iso_entries(), *_EXTRA]:
        alpha2[code] = country_names[0]
        alpha3[code3] = code
        for name in country_names:
            for key in _keys(name):
                names.setdefault(key, code)
    for name, code in VARIANTS.items():
        for key in _keys(name):
            names[key] = code  # variants win over accidental collisions
    return alpha2, alpha3, names


COUNTRY_NAMES, _ALPHA3, _NAMES = _build()
"""`COUNTRY_NAMES`: alpha-2 -> ISO English short name."""


@lru_cache(maxsize=4096)
def country_code(text: str | None) -> str | None:
    """ISO 3166-1 alpha-2 code of a country code or name; None when unknown or empty."""
    if text is None:
        return None
    raw = text.strip()
    if not raw:
        return None
    upper = raw.upper()
    if len(upper) == 2 and upper in COUNTRY_NAMES:
        return upper
    if len(upper) == 3 and upper in _ALPHA3:
        return _ALPHA3[upper]
    for key in _keys(raw):
        code = _NAMES.get(key)
        if code is not None:
            return code
    return None
