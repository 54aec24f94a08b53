"""Filing alerts into cases: linked alerts on one client share one case.

"Linked" means: the same tenant and the same client, while that client's case is open.
The client is the CRM / platform client id of the account the alert is about
(`accounts.client_id`: MT5 `ClientID`, or the CRM's), else the alert's subject itself (the
account key `platform:server:login`, or whatever else a rule keys on: an IP, a card
fingerprint). So two accounts of one CRM client land in one case; an account without a client
id is its own client.

An alert is filed once, by the first read or action after it is stored (`file_alerts`): it joins
its client's open case (a `link` action), or opens a new case (an `open` action) when the client
has none open, e.g. because the last one was closed. The ids are deterministic (a case id from
its tenant, client and first alert; an action id from the case and the alerts), so two filers
racing write the same rows, which the store collapses.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from cases.model import ActionKind, CaseAction, severity_rank

FILING_ACTOR = "system"  # the actor of open/link actions


@dataclass(frozen=True, slots=True)
class AlertRef:
    """What filing needs to know of an alert."""

    tenant: str
    alert_id: str
    subject: str
    severity: str
    detected_at: datetime
    client_id: str = ""  # the subject account's client id, '' when none is known


def client_key(alert: AlertRef) -> str:
    """The client an alert is about: `client:<id>` when its account has a client id, else
    the subject."""
    return f"client:{alert.client_id}" if alert.client_id else alert.subject


def _digest(*parts: str, size: int = 16) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:size]


def case_id_for(tenant: str, client: str, first_alert_id: str) -> str:
    return "C-" + _digest(tenant, client, first_alert_id, size=10)


def file_alerts(alerts: Iterable[AlertRef], open_cases: Mapping[tuple[str, str], str],
                at: datetime, actor: str = FILING_ACTOR) -> list[CaseAction]:
    """The open/link actions that file `alerts` (not yet in any case): one action per tenant
    and client, joining `open_cases[(tenant, client)]` when there is one, else opening a case."""
    groups: dict[tuple[str, str], list[AlertRef]] = {}
    for alert in sorted(alerts, key=lambda a: (a.detected_at, a.alert_id)):
        groups.setdefault((alert.tenant, client_key(alert)), []).append(alert)
    actions = []
    for (tenant, client), members in groups.items():
        ids = tuple(dict.fromkeys(a.alert_id for a in members))
        severity = max((a.severity for a in members), key=severity_rank)
        raised = min(a.detected_at for a in members)
        existing = open_cases.get((tenant, client))
        case_id = existing or case_id_for(tenant, client, ids[0])
        kind: ActionKind = "link" if existing else "open"
        actions.append(CaseAction(
            tenant=tenant, action_id=f"{kind}-{_digest(case_id, *sorted(ids))}", case_id=case_id,
            action=kind, actor=actor, at=at, alert_ids=ids, client=client, severity=severity,
            alert_time=raised))
    return actions
