"""Checks of downloaded reference files in their published formats, before they are installed
(`brokerstream reference load`, docs/reference-data.md). Each check reads the whole file and
either returns what it holds or raises `ReferenceFormatError` with the file, the row and the
reason on one line.

- OFAC SDN `sdn.csv` (no header; 12 columns): ent_num, SDN_Name, SDN_Type, Program, Title,
  Call_Sign, Vess_type, Tonnage, GRT, Vess_flag, Vess_owner, Remarks. SDN_Type is
  "individual", "vessel", "aircraft" or `-0-` (an entity); `-0-` is OFAC's empty value. The
  file may end with a DOS end-of-file character (0x1A) on a line of its own.
- OFAC `alt.csv` (no header; 5 columns): ent_num, alt_num, alt_type (aka / fka / nka),
  alt_name, alt_remarks.
- EU consolidated financial sanctions list, CSV (FSF "1.1" layout: `;`-separated with a header
  row, one row per name / address / birth date / identification detail of an entity): needs
  Entity_LogicalId, NameAlias_WholeName and Entity_SubjectType (P / E) or
  Entity_SubjectType_ClassificationCode (person / enterprise).
- Geo-IP: a `.mmdb` MaxMind DB file or the CSV `network,country,city,latitude,longitude,kind`
  (`risk_rules.geoip`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from risk_rules.geoip import CsvGeoIP, GeoIPError, MmdbGeoIP

SDN_COLUMNS = ("ent_num", "SDN_Name", "SDN_Type", "Program", "Title", "Call_Sign", "Vess_type",
               "Tonnage", "GRT", "Vess_flag", "Vess_owner", "Remarks")
ALT_COLUMNS = ("ent_num", "alt_num", "alt_type", "alt_name", "alt_remarks")
SDN_TYPES = frozenset({"individual", "vessel", "aircraft", "-0-", ""})
ALT_TYPES = frozenset({"aka", "fka", "nka", "-0-", ""})
EU_NEEDED = ("Entity_LogicalId", "NameAlias_WholeName")
EU_TYPES = ("Entity_SubjectType", "Entity_SubjectType_ClassificationCode")
EOF_MARK = "\x1a"


class ReferenceFormatError(ValueError):
    """A reference file not in its published format: file, row and reason on one line."""


@dataclass
class Checked:
    """What a checked file holds, for the install summary."""

    kind: str  # ofac_sdn / ofac_alt / eu / geoip
    path: Path
    counts: dict[str, int] = field(default_factory=dict)
    ent_nums: set[str] = field(default_factory=set)  # OFAC: the entries, to check alt.csv against

    def summary(self) -> str:
        return ", ".join(f"{v:,} {k}" for k, v in self.counts.items())


def read_text(path: str | Path) -> str:
    """A published CSV's text: UTF-8 (with or without BOM), else Windows-1252 (older OFAC
    files), never failing on a stray byte."""
    raw = Path(path).read_bytes()
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")


def _rows(path: Path, delimiter: str = ",") -> list[tuple[int, list[str]]]:
    try:
        text = read_text(path)
    except OSError as exc:
        raise ReferenceFormatError(f"{path}: cannot read: {exc.strerror or exc}") from None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    out = []
    try:
        for row in reader:
            if not row or (len(row) == 1 and row[0].strip() in ("", EOF_MARK)):
                continue
            out.append((reader.line_num, row))
    except csv.Error as exc:
        raise ReferenceFormatError(f"{path}: row {reader.line_num}: not CSV: {exc}") from None
    if not out:
        raise ReferenceFormatError(f"{path}: row 1: the file has no rows")
    return out


def ofac_value(v: str) -> str:
    """A field of an OFAC file, `-0-` (OFAC's empty value) as empty."""
    v = v.strip()
    return "" if v == "-0-" else v


def _ofac_rows(path: Path, columns: tuple[str, ...], layout: str) -> Iterator[tuple[str, list[str]]]:
    """The rows of an OFAC file (where each stands, for the errors), each with `columns`."""
    for line, row in _rows(path):
        where = f"{path}: row {line}"
        if len(row) != len(columns):
            raise ReferenceFormatError(
                f"{where}: {len(row)} columns, the {layout} layout has {len(columns)} "
                f"({', '.join(columns)})")
        yield where, row


def check_ofac_sdn(path: str | Path) -> Checked:
    path = Path(path)
    checked = Checked("ofac_sdn", path, {"entries": 0, "individuals": 0})
    for where, row in _ofac_rows(path, SDN_COLUMNS, "SDN"):
        ent = row[0].strip()
        if not ent.isdigit():
            raise ReferenceFormatError(f"{where}: ent_num {ent!r} is not a number")
        if not ofac_value(row[1]):
            raise ReferenceFormatError(f"{where}: SDN_Name is empty")
        kind = row[2].strip().lower()
        if kind not in SDN_TYPES:
            raise ReferenceFormatError(f"{where}: SDN_Type {row[2].strip()!r} is not individual, "
                                       "vessel, aircraft or -0-")
        if ent in checked.ent_nums:
            raise ReferenceFormatError(f"{where}: ent_num {ent} is listed twice")
        checked.ent_nums.add(ent)
        checked.counts["entries"] += 1
        checked.counts["individuals"] += kind == "individual"
    return checked


def check_ofac_alt(path: str | Path, sdn: Checked | None = None) -> Checked:
    path = Path(path)
    checked = Checked("ofac_alt", path, {"aliases": 0})
    unknown = 0
    for where, row in _ofac_rows(path, ALT_COLUMNS, "ALT"):
        ent, alt = row[0].strip(), row[1].strip()
        if not ent.isdigit() or not alt.isdigit():
            raise ReferenceFormatError(f"{where}: ent_num {ent!r} / alt_num {alt!r} are not numbers")
        if row[2].strip().lower() not in ALT_TYPES:
            raise ReferenceFormatError(f"{where}: alt_type {row[2].strip()!r} is not aka, fka or nka")
        if not ofac_value(row[3]):
            raise ReferenceFormatError(f"{where}: alt_name is empty")
        if sdn is not None and ent not in sdn.ent_nums:
            unknown += 1
        checked.counts["aliases"] += 1
    if sdn is not None and unknown == checked.counts["aliases"]:
        raise ReferenceFormatError(f"{path}: row 1: no alias belongs to an entry of {sdn.path} "
                                   "(an alt.csv of another SDN file?)")
    if unknown:
        checked.counts["aliases of entries not in sdn.csv"] = unknown
    return checked


def check_eu(path: str | Path) -> Checked:
    path = Path(path)
    rows = _rows(path, ";")
    header_line, header = rows[0]
    header = [h.strip() for h in header]
    missing = [c for c in EU_NEEDED if c not in header]
    if missing or not any(c in header for c in EU_TYPES):
        need = [*missing] + ([] if any(c in header for c in EU_TYPES) else [" or ".join(EU_TYPES)])
        raise ReferenceFormatError(
            f"{path}: row {header_line}: not the EU consolidated list CSV: the header lacks "
            f"{', '.join(need)} (is it ';'-separated?)")
    col = {c: header.index(c) for c in (*EU_NEEDED, *EU_TYPES) if c in header}
    entities: set[str] = set()
    persons: set[str] = set()
    names = 0
    for line, row in rows[1:]:
        where = f"{path}: row {line}"
        if len(row) < len(header):
            raise ReferenceFormatError(f"{where}: {len(row)} fields, the header has {len(header)}")
        eid = row[col["Entity_LogicalId"]].strip()
        if not eid.isdigit():
            raise ReferenceFormatError(f"{where}: Entity_LogicalId {eid!r} is not a number")
        kinds = {row[col[c]].strip().lower() for c in EU_TYPES if c in col} - {""}
        if kinds - {"p", "e", "person", "enterprise"}:
            raise ReferenceFormatError(f"{where}: subject type {sorted(kinds)} is not P/person "
                                       "or E/enterprise")
        entities.add(eid)
        if kinds & {"p", "person"}:
            persons.add(eid)
        names += bool(row[col["NameAlias_WholeName"]].strip())
    if not entities:
        raise ReferenceFormatError(f"{path}: row {header_line + 1}: the list has no entries")
    return Checked("eu", path, {"entities": len(entities), "persons": len(persons),
                                "name rows": names})


def check_geoip(path: str | Path) -> Checked:
    path = Path(path)
    try:
        if path.suffix.lower() == ".mmdb":
            mmdb = MmdbGeoIP(path)
            return Checked("geoip", path, {"nodes": mmdb.node_count})
        table = CsvGeoIP(path)
    except GeoIPError as exc:
        raise ReferenceFormatError(str(exc)) from None
    except OSError as exc:
        raise ReferenceFormatError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return Checked("geoip", path, {"networks": table.rows})
