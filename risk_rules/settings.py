"""The `rules` section of the configuration: which rules file, and the offline reference data
the rules need (sanctions lists, IP geolocation). Paths are relative to the config file."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

# The rules shipped with the package (package data, so a wheel install has them too).
DEFAULT_RULES_FILE = str(resources.files("risk_rules").joinpath("default_rules.yaml"))


class SanctionsLists(BaseModel):
    """Lists in their public formats; any may be absent (none by default: no screening). Point
    these at the real downloads in production; the example configuration points them at the
    simulator's small synthetic lists for the demo and the tests."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ofac_sdn: str | None = Field(default=None, description="OFAC SDN CSV (sdn.csv)")
    ofac_alt: str | None = Field(default=None, description="OFAC alternate names CSV (alt.csv)")
    eu: str | None = Field(default=None, description="EU consolidated list CSV")


class RulesSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    file: str = Field(default=DEFAULT_RULES_FILE,
                      description="versioned rules file (risk_rules/default_rules.yaml; docs/rules.md)")
    # none by default (the IP rules then see no locations); the example configuration names the
    # simulator's synthetic plan
    geoip: str | None = Field(default=None,
                              description="offline IP -> location CSV: network,country,city,latitude,"
                                          "longitude,kind")
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
            "geoip": fix(self.geoip),
            "sanctions": self.sanctions.model_copy(update={
                "ofac_sdn": fix(self.sanctions.ofac_sdn), "ofac_alt": fix(self.sanctions.ofac_alt),
                "eu": fix(self.sanctions.eu)}),
        })
