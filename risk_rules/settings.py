"""The `rules` section of the configuration: which rules file, and the offline reference data
the rules need (sanctions lists, IP geolocation). Paths are relative to the config file."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

# The rules shipped with the package (package data, so a wheel install has them too).
DEFAULT_RULES_FILE = str(resources.files("risk_rules").joinpath("default_rules.yaml"))


# rules.geoip values that name a source rather than a file
GEOIP_AUTO = "auto"  # the file `brokerstream reference load --geoip` installed, else packaged
GEOIP_PACKAGED = "packaged"  # the iptocc package's registry country data (IPv4 and IPv6)
GEOIP_INSTALLED = "installed"  # the installed file only (fails at start when there is none)
GEOIP_NONE = "none"  # no geolocation: the IP rules see no countries
GEOIP_SOURCES = (GEOIP_AUTO, GEOIP_PACKAGED, GEOIP_INSTALLED, GEOIP_NONE)


class SanctionsLists(BaseModel):
    """Lists in their public formats (docs/reference-data.md). Named files win; else, with
    `installed` (the default), the lists `brokerstream reference load` installed under the
    brokerstream home; else nobody is screened, and the engine says so at start. No list is
    named by default; the example configuration names the simulator's small synthetic lists for
    the demo and the tests."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ofac_sdn: str | None = Field(default=None, description="OFAC SDN CSV (sdn.csv)")
    ofac_alt: str | None = Field(default=None, description="OFAC alternate names CSV (alt.csv)")
    eu: str | None = Field(default=None, description="EU consolidated list CSV")
    installed: bool = Field(default=True, description="without named files, screen against the "
                            "lists installed by `brokerstream reference load` (<home>/reference)")

    @property
    def named(self) -> bool:
        return self.ofac_sdn is not None or self.eu is not None

    @model_validator(mode="after")
    def _alt_needs_sdn(self) -> SanctionsLists:
        if self.ofac_alt is not None and self.ofac_sdn is None:
            raise ValueError("ofac_alt: the alternate names need their ofac_sdn file")
        return self


class RulesSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    file: str = Field(default=DEFAULT_RULES_FILE,
                      description="versioned rules file (risk_rules/default_rules.yaml; docs/rules.md)")
    # a source (auto / packaged / installed / none) or a file (.mmdb or the CSV layout); the
    # example configuration names the simulator's synthetic plan
    geoip: str | None = Field(default=GEOIP_AUTO,
                              description="IP geolocation: auto (installed file, else packaged), "
                                          "packaged, installed, none, or a .mmdb / CSV file "
                                          "network,country,city,latitude,longitude,kind")
    sanctions: SanctionsLists = SanctionsLists()
    shards: int = Field(default=64, ge=1, le=4096,
                        description="state partitions per key kind (account, ip, device, instrument)")
    dedup_days: float = Field(default=14, gt=0,
                              description="how long a deal or payment id is remembered as seen")

    def resolved(self, base: Path) -> RulesSettings:
        """Paths made absolute against the config file's folder."""

        def fix(p: str | None) -> str | None:
            return None if p is None else str((base / p).resolve())

        return self.model_copy(update={
            "file": fix(self.file),
            "geoip": self.geoip if self.geoip is None or self.geoip in GEOIP_SOURCES else fix(self.geoip),
            "sanctions": self.sanctions.model_copy(update={
                "ofac_sdn": fix(self.sanctions.ofac_sdn), "ofac_alt": fix(self.sanctions.ofac_alt),
                "eu": fix(self.sanctions.eu)}),
        })
