"""Alert cases: the append-only action log compliance works alerts with, folded into each
case's state, and the filing of linked alerts into one case (plain Python: no storage)."""

from cases.grouping import AlertRef, case_id_for, client_key, file_alerts
from cases.model import (
    ACTION_KINDS,
    ANALYST_ACTIONS,
    CLOSE_REASONS,
    SEVERITIES,
    CaseAction,
    CaseState,
    HistoryEntry,
    TransitionError,
    apply,
    fold,
    fold_all,
    severity_rank,
    validate,
)

__all__ = [
    "ACTION_KINDS", "ANALYST_ACTIONS", "CLOSE_REASONS", "SEVERITIES", "AlertRef", "CaseAction",
    "CaseState", "HistoryEntry", "TransitionError", "apply", "case_id_for", "client_key",
    "file_alerts", "fold", "fold_all", "severity_rank", "validate",
]
