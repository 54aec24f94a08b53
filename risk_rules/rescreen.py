"""Screening the whole client base again after a list update (`brokerstream sanctions rescreen`).

Everyone who moves money is screened: account holders (name and date of birth), the payer of
every approved PSP deposit and the beneficiary of every pending or approved PSP payout that names
one, unless that name is the holder's own. A hit is new unless an alert of `sanctions_screening`
already names the same tenant, subject, party and list entry (raised live by the rule or by an
earlier rescreen): only new hits become alerts, so a second run raises nothing.

A rescreen alert's evidence is the subject's evidence (the account, or the payment) plus the
list entry (`list-entry:<list>:<id>`): its id differs from the live rule's alert on the same
account, so a list update that adds an entry for an already-alerted client adds an alert rather
than replacing the earlier one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from risk_rules import names
from risk_rules.alerts import Alert, alert_id
from risk_rules.engine import RuleSettings
from risk_rules.sanctions import SanctionsParams, SanctionsScreening, Screener, sanctions_hit

RULE_ID = SanctionsScreening.rule_id
HOLDER = "account holder"


@dataclass(frozen=True)
class Party:
    """One name to screen: an account holder, or a payer/beneficiary of an account's payments."""

    tenant: str
    subject: str  # the account key
    party: str  # "account holder" / "payer" / "beneficiary"
    name: str
    event_time: datetime  # when the name was last seen
    evidence: tuple[str, ...]  # the account key, or the id of the last payment under the name
    date_of_birth: date | None = None


KnownKey = tuple[str, str, str, str]  # tenant, subject, party, list entry


def known_key(tenant: str, subject: str, facts: dict[str, Any]) -> KnownKey:
    return tenant, subject, str(facts.get("party", "")), str(facts.get("entry", ""))


@dataclass
class Result:
    screened: int = 0
    hits: int = 0
    unchanged: int = 0
    alerts: list[Alert] = field(default_factory=list)


def third_parties(parties: Iterable[Party], holders: dict[str, str]) -> list[Party]:
    """Payers and beneficiaries whose name is not the holder's own (the holder is screened as
    the holder, as the live rule does), one per spelling that normalises alike ("AL-QARRADI" and
    "Al Qarradi"): the last seen."""
    latest: dict[tuple[str, str, str, str], Party] = {}
    for p in parties:
        norm = names.normalise(p.name)
        holder = holders.get(p.subject)
        if p.party != HOLDER and holder and names.normalise(holder) == norm:
            continue
        key = (p.tenant, p.subject, p.party, norm)
        if key not in latest or p.event_time > latest[key].event_time:
            latest[key] = p
    return list(latest.values())


def rescreen(
    parties: Iterable[Party],
    screener: Screener,
    rule: RuleSettings,
    known: set[KnownKey],
    detected_at: datetime,
    progress: Callable[[int], None] | None = None,
) -> Result:
    """Screen every party; alerts for hits not in `known` (which learns them as it goes)."""
    params = SanctionsParams.model_validate(rule.params)
    out = Result()
    for p in parties:
        out.screened += 1
        if progress is not None:
            progress(out.screened)
        matches = screener.screen(p.name, p.date_of_birth, params.min_score)
        if not matches:
            continue
        out.hits += 1
        m = matches[0]
        key = (p.tenant, p.subject, p.party, m.entry.entry_id)
        if key in known:
            out.unchanged += 1
            continue
        known.add(key)
        evidence = [*p.evidence, f"list-entry:{m.entry.source}:{m.entry.entry_id}"]
        hit = sanctions_hit(m, p.party, p.name, p.subject, p.tenant, evidence, p.event_time,
                            params.min_score)
        hit.facts["rescreen"] = True
        out.alerts.append(Alert(
            alert_id=alert_id(rule.id, rule.version, hit.subject, hit.evidence),
            rule_id=rule.id, rule_version=rule.version, category=SanctionsScreening.category,
            severity=rule.severity, tenant=hit.tenant, subject=hit.subject, summary=hit.summary,
            facts=hit.facts, evidence=list(hit.evidence), event_time=hit.event_time,
            detected_at=detected_at, mode=rule.mode,
        ))
    return out
