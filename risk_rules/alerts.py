"""The alert record every rule emits: explainable (rule, version, numbers, evidence) and with a
deterministic id, so a replay writes the same alert again rather than a new one."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

Category = Literal["aml", "fraud", "risk"]
Severity = Literal["low", "medium", "high", "critical"]
Mode = Literal["alert", "observe"]


def alert_id(
    rule_id: str,
    rule_version: int,
    subject: str,
    evidence: Iterable[str],
    window_start: datetime | None = None,
) -> str:
    """sha256 of the rule, its version, the subject, the evidence ids and the window start."""
    parts = [rule_id, str(rule_version), subject, *sorted(evidence)]
    if window_start is not None:
        parts.append(window_start.isoformat())
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


class Alert(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    alert_id: str
    rule_id: str
    rule_version: int
    category: Category
    severity: Severity
    tenant: str
    subject: str
    summary: str
    facts: dict[str, Any]
    evidence: list[str]
    event_time: datetime
    detected_at: datetime
    mode: Mode = "alert"
