"""Reference data the rules read: where `brokerstream reference load` installs it, and which
sanctions lists and geo-IP source a configuration ends up with (docs/reference-data.md).

Installed files live in `<home>/reference/` (home: $BROKERSTREAM_HOME or
~/.local/share/brokerstream): `sdn.csv`, `alt.csv`, `eu.csv`, `geoip.mmdb` or `geoip.csv`, and
`manifest.json` (what was installed from where, when, its sha256 and counts).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pipelines.config import home_dir
from risk_rules.engine import ConfigError
from risk_rules.geoip import GeoIPError, GeoLookup, PackagedGeoIP, open_geoip
from risk_rules.reference import Checked
from risk_rules.sanctions import ListEntry, Screener, load_eu, load_ofac
from risk_rules.settings import (
    GEOIP_AUTO,
    GEOIP_INSTALLED,
    GEOIP_NONE,
    GEOIP_PACKAGED,
    RulesSettings,
)

log = logging.getLogger("brokerstream.reference")

INSTALLED_NAMES = {"ofac_sdn": "sdn.csv", "ofac_alt": "alt.csv", "eu": "eu.csv"}
GEOIP_NAMES = ("geoip.mmdb", "geoip.csv")
MANIFEST = "manifest.json"


def reference_dir(home: Path | None = None) -> Path:
    return (home or home_dir()) / "reference"


@dataclass(frozen=True)
class ListFiles:
    ofac_sdn: str | None
    ofac_alt: str | None
    eu: str | None
    origin: str  # "configured" / "installed in <dir>" / "none"

    @property
    def any(self) -> bool:
        return self.ofac_sdn is not None or self.eu is not None


def sanctions_files(rules: RulesSettings, home: Path | None = None) -> ListFiles:
    """The lists to screen against: the named files, else the installed ones, else none."""
    s = rules.sanctions
    if s.named:
        return ListFiles(s.ofac_sdn, s.ofac_alt, s.eu, "configured")
    ref = reference_dir(home)
    if s.installed:
        found = {k: str(ref / n) if (ref / n).is_file() else None for k, n in INSTALLED_NAMES.items()}
        if found["ofac_sdn"] or found["eu"]:
            return ListFiles(found["ofac_sdn"], found["ofac_alt"] if found["ofac_sdn"] else None,
                             found["eu"], f"installed in {ref}")
    return ListFiles(None, None, None, "none")


def load_screener(rules: RulesSettings, home: Path | None = None) -> tuple[Screener | None, str]:
    """The screener over the lists in force and a line saying what it screens against; None
    (and a loud warning in the log) when no list is configured or installed."""
    files = sanctions_files(rules, home)
    if not files.any:
        log.warning(
            "SANCTIONS SCREENING IS OFF: no sanctions list is configured (rules.sanctions) or "
            "installed in %s. Nobody is screened until lists are loaded: "
            "`brokerstream reference load --ofac-sdn sdn.csv --ofac-alt alt.csv --eu eu.csv` "
            "(docs/reference-data.md).", reference_dir(home))
        return None, "no sanctions lists: nobody is screened"
    entries: list[ListEntry] = []
    try:
        if files.ofac_sdn:
            entries += load_ofac(files.ofac_sdn, files.ofac_alt)
        if files.eu:
            entries += load_eu(files.eu)
    except (OSError, KeyError, ValueError) as exc:
        raise ConfigError(f"rules.sanctions: cannot read the lists ({files.origin}): {exc}") from None
    if not entries:
        log.warning("SANCTIONS SCREENING IS OFF: the lists (%s) hold no individuals", files.origin)
        return None, f"sanctions lists ({files.origin}) hold no individuals: nobody is screened"
    screener = Screener(entries)
    named = ", ".join(p for p in (files.ofac_sdn, files.ofac_alt, files.eu) if p)
    return screener, (f"sanctions: {len(entries):,} listed individuals, {screener.size:,} names "
                      f"({files.origin}: {named})")


def installed_geoip(home: Path | None = None) -> Path | None:
    ref = reference_dir(home)
    return next((ref / n for n in GEOIP_NAMES if (ref / n).is_file()), None)


def load_geoip(rules: RulesSettings, home: Path | None = None) -> tuple[GeoLookup | None, str]:
    """The geo-IP lookup `rules.geoip` names and a line saying what it is."""
    spec = rules.geoip or GEOIP_NONE
    if spec == GEOIP_NONE:
        log.warning("IP geolocation is off (rules.geoip: none): the IP rules see no countries")
        return None, "geo-IP: none"
    path: str | Path | None = spec
    if spec in (GEOIP_AUTO, GEOIP_INSTALLED):
        path = installed_geoip(home)
        if path is None and spec == GEOIP_INSTALLED:
            raise ConfigError(f"rules.geoip: installed, but no geo-IP file is installed in "
                              f"{reference_dir(home)} (brokerstream reference load --geoip FILE)")
    if path is None or spec == GEOIP_PACKAGED:
        packaged = PackagedGeoIP()
        return packaged, f"geo-IP: {packaged.description}"
    try:
        geo = open_geoip(path)
    except FileNotFoundError:
        raise ConfigError(f"rules.geoip: {path} not found") from None
    except (OSError, GeoIPError) as exc:
        raise ConfigError(f"rules.geoip: {exc}") from None
    return geo, f"geo-IP: {getattr(geo, 'description', path)}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def install(checked: list[Checked], home: Path | None = None) -> tuple[Path, list[str]]:
    """Copy checked files into the reference directory (each through a temporary file and an
    atomic rename, so an engine starting meanwhile reads the old file or the new one) and record
    them in the manifest. Returns the directory and one line per installed file."""
    ref = reference_dir(home)
    ref.mkdir(parents=True, exist_ok=True)
    manifest_path = ref / MANIFEST
    manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}
    lines = []
    now = datetime.now(UTC).isoformat(timespec="seconds")
    for c in checked:
        if c.kind == "geoip":
            name = "geoip.mmdb" if c.path.suffix.lower() == ".mmdb" else "geoip.csv"
        else:
            name = INSTALLED_NAMES[c.kind]
        target = ref / name
        fd, tmp = tempfile.mkstemp(dir=ref, prefix=f".{name}.")
        os.close(fd)
        shutil.copyfile(c.path, tmp)
        os.replace(tmp, target)
        if c.kind == "geoip":  # one geo-IP file at a time
            for other in GEOIP_NAMES:
                if other != name and (ref / other).exists():
                    (ref / other).unlink()
                    manifest.pop(other, None)
        manifest[name] = {"kind": c.kind, "source": str(c.path.resolve()), "installed_at": now,
                          "bytes": target.stat().st_size, "sha256": _sha256(target),
                          "counts": c.counts}
        lines.append(f"{name:<11} {c.summary()}  (from {c.path})")
    tmp_manifest = ref / f".{MANIFEST}.tmp"
    tmp_manifest.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp_manifest, manifest_path)
    return ref, lines
