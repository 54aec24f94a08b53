"""Alert cases: the action log and the state it folds to.

A case is never updated in place. Every step an analyst (or the filing of a new alert) takes is
an immutable `CaseAction`; the case's state is what folding its actions in order gives
(`fold`). So the history *is* the state: nothing can change a case without leaving a row that
says who, when and what.

Transitions (`apply` raises `TransitionError` with a one-line reason otherwise):

| action      | allowed when                      | effect                                          |
|-------------|-----------------------------------|-------------------------------------------------|
| open        | always (see below)                | open, with its first alert(s) and client        |
| link        | the case exists                   | the alert(s) join; a closed case opens again    |
| assign      | open; a new assignee              | assignee set (it survives close and reopen)     |
| acknowledge | open and not yet acknowledged     | acknowledged by the actor                       |
| note        | always (open or closed)           | a note in the history                           |
| close       | open; a known reason              | closed; `other` needs a note                    |
| reopen      | closed                            | open again, acknowledgement cleared             |

A second `open` of the same case id (ids are deterministic: two filers raced on the same
alerts) adds its alerts like a `link`.

Order: actions fold by (`at`, `action_id`), the same order the SQL view `cases` uses, so the
Python state and the view agree. An action that is invalid at its place in the log (two
analysts closing at the same moment: both rows are stored) is kept in the history marked
`rejected` and changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal, get_args

ActionKind = Literal["open", "link", "assign", "acknowledge", "note", "close", "reopen"]
CloseReason = Literal["false_positive", "escalated", "sar_filed", "duplicate", "other"]
Status = Literal["open", "closed"]
Severity = Literal["low", "medium", "high", "critical"]

ACTION_KINDS: tuple[str, ...] = get_args(ActionKind)
CLOSE_REASONS: tuple[str, ...] = get_args(CloseReason)
SEVERITIES: tuple[str, ...] = get_args(Severity)  # lowest first
# What an analyst may do (open and link are the filing of alerts, see cases.grouping).
ANALYST_ACTIONS: tuple[str, ...] = ("assign", "acknowledge", "note", "close", "reopen")
MAX_NOTE = 4000


def severity_rank(severity: str) -> int:
    """1 (low) .. 4 (critical); 0 for a value that is not a severity."""
    return SEVERITIES.index(severity) + 1 if severity in SEVERITIES else 0


class TransitionError(ValueError):
    """An action the case's state does not allow, with the reason in one line."""


@dataclass(frozen=True, slots=True)
class CaseAction:
    """One row of `alert_actions`: who did what to which case, when."""

    tenant: str
    action_id: str
    case_id: str
    action: ActionKind
    actor: str
    at: datetime
    alert_ids: tuple[str, ...] = ()
    client: str = ""  # open/link: the client the alerts are about (see cases.grouping)
    severity: str = ""  # open/link: the highest severity of the alerts
    alert_time: datetime | None = None  # open/link: when the earliest of the alerts was raised
    assignee: str = ""  # assign
    reason: str = ""  # close
    note: str = ""  # note (required), close/reopen (optional)

    @property
    def order(self) -> tuple[datetime, str]:
        return (self.at, self.action_id)


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    action: CaseAction
    rejected: str = ""  # why the fold did not apply it ('' = applied)


@dataclass(frozen=True, slots=True)
class CaseState:
    case_id: str
    tenant: str
    client: str
    status: Status
    alert_ids: tuple[str, ...]
    severity: str
    opened_at: datetime
    raised_at: datetime  # the earliest alert's detection time: what a case's age counts from
    assignee: str = ""
    acknowledged_by: str = ""
    acknowledged_at: datetime | None = None
    closed_at: datetime | None = None
    close_reason: str = ""
    last_action_at: datetime | None = None
    notes: int = 0
    history: tuple[HistoryEntry, ...] = field(default=())

    @property
    def acknowledged(self) -> bool:
        return bool(self.acknowledged_by)


def _higher(a: str, b: str) -> str:
    return a if severity_rank(a) >= severity_rank(b) else b


def validate(state: CaseState | None, action: CaseAction) -> None:
    """Raise TransitionError if `action` may not follow `state` (None: no case yet)."""
    kind = action.action
    if kind not in ACTION_KINDS:
        raise TransitionError(f"unknown action {kind!r} (one of {', '.join(ACTION_KINDS)})")
    if not action.actor.strip():
        raise TransitionError("an action needs an actor")
    if len(action.note) > MAX_NOTE:
        raise TransitionError(f"a note is at most {MAX_NOTE} characters")
    if kind == "open":
        if not action.alert_ids:
            raise TransitionError("a case opens with at least one alert")
        if state is None:
            return
    elif state is None:
        raise TransitionError(f"no case {action.case_id}")
    if state.tenant != action.tenant:
        raise TransitionError(f"case {state.case_id} belongs to another tenant")
    if kind in ("open", "link"):
        if not action.alert_ids:
            raise TransitionError(f"{kind} needs at least one alert")
    elif kind == "assign":
        if state.status != "open":
            raise TransitionError(f"case {state.case_id} is closed: reopen it first")
        if not action.assignee.strip():
            raise TransitionError("assign needs an analyst (--to)")
        if action.assignee == state.assignee:
            raise TransitionError(f"case {state.case_id} is already assigned to {state.assignee}")
    elif kind == "acknowledge":
        if state.status != "open":
            raise TransitionError(f"case {state.case_id} is closed")
        if state.acknowledged:
            raise TransitionError(f"case {state.case_id} was acknowledged already by {state.acknowledged_by}")
    elif kind == "note":
        if not action.note.strip():
            raise TransitionError("a note needs text")
    elif kind == "close":
        if state.status == "closed":
            raise TransitionError(f"case {state.case_id} is closed already")
        if action.reason not in CLOSE_REASONS:
            raise TransitionError(f"close needs a reason: one of {', '.join(CLOSE_REASONS)}"
                                  + (f" (not {action.reason!r})" if action.reason else ""))
        if action.reason == "other" and not action.note.strip():
            raise TransitionError("close with reason 'other' needs a note saying why")
    elif kind == "reopen" and state.status != "closed":
        raise TransitionError(f"case {state.case_id} is open: only a closed case reopens")


def apply(state: CaseState | None, action: CaseAction) -> CaseState:
    """The state after `action` (validated first: TransitionError if it may not follow)."""
    validate(state, action)
    entry = HistoryEntry(action)
    if state is None:  # open
        return CaseState(
            case_id=action.case_id, tenant=action.tenant, client=action.client, status="open",
            alert_ids=tuple(dict.fromkeys(action.alert_ids)), severity=action.severity,
            opened_at=action.at, raised_at=action.alert_time or action.at,
            last_action_at=action.at, history=(entry,))
    at, history = action.at, (*state.history, entry)
    kind = action.action
    if kind in ("open", "link"):  # a second open of one case: two filers raced; it adds its alerts
        raised = action.alert_time or action.at
        return replace(state, last_action_at=at, history=history, status="open",
                       alert_ids=tuple(dict.fromkeys((*state.alert_ids, *action.alert_ids))),
                       severity=_higher(state.severity, action.severity),
                       raised_at=min(state.raised_at, raised),
                       closed_at=None if state.status == "closed" else state.closed_at,
                       close_reason="" if state.status == "closed" else state.close_reason)
    if kind == "assign":
        return replace(state, last_action_at=at, history=history, assignee=action.assignee)
    if kind == "acknowledge":
        return replace(state, last_action_at=at, history=history, acknowledged_by=action.actor,
                       acknowledged_at=action.at)
    if kind == "note":
        return replace(state, last_action_at=at, history=history, notes=state.notes + 1)
    if kind == "close":
        return replace(state, last_action_at=at, history=history, status="closed", closed_at=action.at,
                       close_reason=action.reason, notes=state.notes + (1 if action.note else 0))
    # reopen
    return replace(state, last_action_at=at, history=history, status="open", closed_at=None, close_reason="",
                   acknowledged_by="", acknowledged_at=None,
                   notes=state.notes + (1 if action.note else 0))


def fold(actions: Iterable[CaseAction]) -> CaseState | None:
    """The state of one case from its action log, in (at, action_id) order; an action invalid
    at its place is kept in the history as rejected. None if there is no `open`."""
    state: CaseState | None = None
    pending: list[HistoryEntry] = []  # rejected before the open (only in a damaged log)
    seen: set[str] = set()
    for action in sorted(actions, key=lambda a: a.order):
        if action.action_id in seen:  # a retried write that was stored twice
            continue
        seen.add(action.action_id)
        try:
            state = apply(state, action)
        except TransitionError as exc:
            entry = HistoryEntry(action, rejected=str(exc))
            if state is None:
                pending.append(entry)
            else:
                state = replace(state, history=(*state.history, entry))
    if state is not None and pending:
        state = replace(state, history=tuple(sorted((*pending, *state.history),
                                                    key=lambda e: e.action.order)))
    return state


def fold_all(actions: Iterable[CaseAction]) -> dict[str, CaseState]:
    """Every case of a mixed log, by case id."""
    by_case: dict[str, list[CaseAction]] = {}
    for action in actions:
        by_case.setdefault(action.case_id, []).append(action)
    out = {}
    for case_id, log in by_case.items():
        state = fold(log)
        if state is not None:
            out[case_id] = state
    return out
