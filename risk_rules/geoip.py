"""Offline IP -> location lookups for the IP rules (shared IP, impossible travel, geo mismatch).

- `PackagedGeoIP` (the default): the `iptocc` package's data, the country each IPv4 and IPv6
  block is assigned to by the five Regional Internet Registries, refreshed with every release of
  the package (`pip install -U iptocc` updates it). Country only: no city, no coordinates (the
  point is not `located`, so impossible travel skips it), no kind of address.
- `MmdbGeoIP`: a MaxMind DB file (`.mmdb`: GeoLite2/GeoIP2 City or Country, DB-IP, IPinfo's
  mmdb exports) through `maxminddb`: country, city and coordinates where the file has them,
  and the kind of address where it says (GeoIP2 `traits.connection_type` / `user_type` /
  `is_hosting_provider`, IPinfo `type`).
- `CsvGeoIP`: a CSV `network,country,city,latitude,longitude,kind` (IPv4 and IPv6 networks),
  e.g. the simulator's synthetic plan or a broker's own export.

Every lookup returns a `GeoPoint` or None (unknown, private or not an address). `GeoPoint.kind`
is "mobile", "hosting", "residential" or "" (the source does not say).
"""

from __future__ import annotations

import csv
import ipaddress
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KINDS = ("", "mobile", "hosting", "residential")


class GeoIPError(ValueError):
    """A geo-IP file that cannot be used: the file, the row and the reason on one line."""


@dataclass(frozen=True)
class GeoPoint:
    country: str
    city: str
    latitude: float
    longitude: float
    kind: str = ""  # residential / mobile / hosting, "" when the source does not say

    @property
    def located(self) -> bool:
        """Whether the point has coordinates (a country-only source gives none)."""
        return not (math.isnan(self.latitude) or math.isnan(self.longitude))


GeoLookup = Callable[[str], GeoPoint | None]


class PackagedGeoIP:
    """Country of an IPv4/IPv6 address from the `iptocc` package's registry data."""

    description = "packaged RIR country data (iptocc)"

    def __init__(self) -> None:
        import iptocc

        self._lookup = iptocc.country_code

    def __call__(self, ip: str) -> GeoPoint | None:
        try:
            country = self._lookup(ip)
        except (ValueError, TypeError):
            return None
        if not country:
            return None
        return GeoPoint(country, "", math.nan, math.nan, "")


def _kind_of(record: dict[str, Any]) -> str:
    traits = record.get("traits") or {}
    connection = str(traits.get("connection_type") or record.get("connection_type") or "").lower()
    user_type = str(traits.get("user_type") or record.get("type") or "").lower()
    if traits.get("is_hosting_provider") or user_type in ("hosting", "content_delivery_network"):
        return "hosting"
    if connection == "cellular" or user_type in ("cellular", "mobile"):
        return "mobile"
    if user_type in ("residential", "isp") or connection in ("cable/dsl", "cable", "dsl"):
        return "residential"
    return ""


class MmdbGeoIP:
    """A MaxMind DB file (`.mmdb`) read with `maxminddb` (memory-mapped)."""

    def __init__(self, path: str | Path) -> None:
        import maxminddb

        try:
            self._reader = maxminddb.open_database(str(path))
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            raise GeoIPError(f"{path}: not a readable MaxMind DB file: {exc}") from None
        meta = self._reader.metadata()
        self.node_count = int(meta.node_count)
        self.description = f"{path} ({meta.database_type}, IPv{meta.ip_version}, {meta.node_count:,} nodes)"

    def __call__(self, ip: str) -> GeoPoint | None:
        try:
            record = self._reader.get(ip)
        except ValueError:
            return None
        if not isinstance(record, dict):
            return None
        rec: dict[str, Any] = dict(record)
        country = rec.get("country") or rec.get("registered_country") or {}
        code = country.get("iso_code") if isinstance(country, dict) else None
        code = code or rec.get("country_code") or rec.get("country")
        if not isinstance(code, str) or not code:
            return None
        city = rec.get("city") or {}
        city_name = (city.get("names") or {}).get("en", "") if isinstance(city, dict) else str(city)
        location = rec.get("location")
        where: dict[str, Any] = location if isinstance(location, dict) else rec
        return GeoPoint(code.upper(), city_name, _coordinate(where.get("latitude")),
                        _coordinate(where.get("longitude")), _kind_of(rec))


def _coordinate(value: Any) -> float:
    return float(value) if isinstance(value, int | float | str) and value != "" else math.nan


class CsvGeoIP:
    """Offline IP -> location from a CSV `network,country,city,latitude,longitude,kind` with
    IPv4 and IPv6 networks (the simulator's `geoip_synthetic.csv`, or a broker's own export).
    A bad row fails the load with the file, the row number and what is wrong."""

    COLUMNS = ("network", "country", "city", "latitude", "longitude", "kind")

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        # (IP version, prefix length) -> network address as int -> point
        self._nets: dict[tuple[int, int], dict[int, GeoPoint]] = {}
        self.rows = 0
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in ("network", "country", "latitude", "longitude")
                       if c not in (reader.fieldnames or [])]
            if missing:
                raise GeoIPError(f"{path}: row 1: the header lacks {', '.join(missing)} "
                                 f"(expected {','.join(self.COLUMNS)})")
            for row in reader:
                self._add(row, reader.line_num)
        self._lens = {v: sorted((p for ver, p in self._nets if ver == v), reverse=True) for v in (4, 6)}
        self.description = f"{path} ({self.rows:,} networks)"

    def _add(self, row: dict[str, str], line: int) -> None:
        where = f"{self.path}: row {line}"
        try:
            net = ipaddress.ip_network((row.get("network") or "").strip(), strict=False)
        except ValueError as exc:
            raise GeoIPError(f"{where}: network: {exc}") from None
        country = (row.get("country") or "").strip().upper()
        if len(country) != 2 or not country.isalpha():
            raise GeoIPError(f"{where}: country {country!r} is not an ISO 3166 alpha-2 code")
        try:
            lat = float(row.get("latitude") or "nan")
            lon = float(row.get("longitude") or "nan")
        except ValueError:
            raise GeoIPError(f"{where}: latitude/longitude {row.get('latitude')!r},"
                             f"{row.get('longitude')!r} are not numbers") from None
        if not (math.isnan(lat) or -90 <= lat <= 90) or not (math.isnan(lon) or -180 <= lon <= 180):
            raise GeoIPError(f"{where}: latitude/longitude {lat},{lon} out of range")
        kind = (row.get("kind") or "").strip().lower()
        if kind not in KINDS:
            raise GeoIPError(f"{where}: kind {kind!r} is not one of mobile, hosting, residential")
        point = GeoPoint(country, (row.get("city") or "").strip(), lat, lon, kind)
        self._nets.setdefault((net.version, net.prefixlen), {})[int(net.network_address)] = point
        self.rows += 1

    def __call__(self, ip: str) -> GeoPoint | None:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return None
        bits = 32 if addr.version == 4 else 128
        value = int(addr)
        for plen in self._lens[addr.version]:
            shift = bits - plen
            point = self._nets[(addr.version, plen)].get(value >> shift << shift)
            if point is not None:
                return point
        return None


def open_geoip(path: str | Path) -> GeoLookup:
    """A file source: `.mmdb` through maxminddb, anything else as the CSV layout."""
    if str(path).lower().endswith(".mmdb"):
        return MmdbGeoIP(path)
    return CsvGeoIP(path)
