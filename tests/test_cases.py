"""The alert-case domain (cases/): transitions, filing linked alerts into one case, and the
state folded from the append-only action log."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cases import (
    CLOSE_REASONS,
    AlertRef,
    CaseAction,
    CaseState,
    TransitionError,
    apply,
    case_id_for,
    client_key,
    file_alerts,
    fold,
    fold_all,
)

T0 = datetime(2024, 11, 25, 9, 0, tzinfo=UTC)


def _alert(alert_id: str, subject: str = "mt5:ACME-MT5-Live:1001", tenant: str = "acme",
           severity: str = "high", minutes: int = 0, client_id: str = "") -> AlertRef:
    return AlertRef(tenant=tenant, alert_id=alert_id, subject=subject, severity=severity,
                    detected_at=T0 + timedelta(minutes=minutes), client_id=client_id)


def _opened(*alerts: AlertRef) -> tuple[CaseAction, CaseState]:
    [action] = file_alerts(alerts, {}, T0 + timedelta(hours=1))
    return action, apply(None, action)


_n = iter(range(1_000_000))


def _act(state: CaseState, kind: str, actor: str = "ana", minutes: int = 90, **fields: Any) -> CaseAction:
    return CaseAction(tenant=state.tenant, action_id=f"x{next(_n):06d}", case_id=state.case_id,
                      action=kind, actor=actor, at=T0 + timedelta(minutes=minutes), **fields)  # type: ignore[arg-type]


# -- transitions ------------------------------------------------------------------------------


def test_a_case_opens_with_its_alerts_client_and_severity() -> None:
    action, state = _opened(_alert("a1", severity="medium"), _alert("a2", severity="critical", minutes=5))
    assert action.action == "open" and action.actor == "system"
    assert state.status == "open" and state.alert_ids == ("a1", "a2")
    assert state.severity == "critical" and state.client == "mt5:ACME-MT5-Live:1001"
    assert state.raised_at == T0 and state.opened_at == T0 + timedelta(hours=1)
    assert state.assignee == "" and not state.acknowledged


def test_the_analyst_workflow() -> None:
    _, s = _opened(_alert("a1"))
    s = apply(s, _act(s, "assign", actor="lead", assignee="ana"))
    assert s.assignee == "ana"
    s = apply(s, _act(s, "acknowledge", actor="ana"))
    assert s.acknowledged and s.acknowledged_by == "ana"
    s = apply(s, _act(s, "note", note="client sent payslips"))
    s = apply(s, _act(s, "close", reason="false_positive", minutes=120))
    assert s.status == "closed" and s.close_reason == "false_positive"
    assert s.closed_at == T0 + timedelta(minutes=120)
    s = apply(s, _act(s, "reopen", note="new evidence", minutes=150))
    assert s.status == "open" and s.closed_at is None and s.close_reason == ""
    assert not s.acknowledged, "a reopened case is acknowledged again by whoever takes it"
    assert s.assignee == "ana", "the assignee stays"
    assert s.notes == 2 and len(s.history) == 6


@pytest.mark.parametrize(("setup", "kind", "fields", "message"), [
    ([], "reopen", {}, "only a closed case reopens"),
    ([], "close", {}, "close needs a reason"),
    ([], "close", {"reason": "bored"}, "not 'bored'"),
    ([], "close", {"reason": "other"}, "needs a note"),
    ([], "assign", {}, "needs an analyst"),
    ([], "note", {"note": "  "}, "needs text"),
    ([("assign", {"assignee": "ana"})], "assign", {"assignee": "ana"}, "already assigned to ana"),
    ([("acknowledge", {})], "acknowledge", {}, "acknowledged already by ana"),
    ([("close", {"reason": "escalated"})], "close", {"reason": "sar_filed"}, "closed already"),
    ([("close", {"reason": "escalated"})], "assign", {"assignee": "bo"}, "reopen it first"),
    ([("close", {"reason": "escalated"})], "acknowledge", {}, "is closed"),
])
def test_transitions_that_are_refused(setup: list[tuple[str, dict[str, str]]], kind: str,
                                      fields: dict[str, str], message: str) -> None:
    _, s = _opened(_alert("a1"))
    for step, step_fields in setup:
        s = apply(s, _act(s, step, **step_fields))
    with pytest.raises(TransitionError, match=message):
        apply(s, _act(s, kind, **fields))


def test_link_before_open_and_other_tenants_are_refused() -> None:
    action, s = _opened(_alert("a1"))
    # two filers racing open the same case id: the second open only adds its alerts
    [raced] = file_alerts([_alert("a1"), _alert("a2", minutes=1)], {}, T0 + timedelta(hours=1))
    assert raced.case_id == s.case_id and raced.action_id != action.action_id
    assert apply(s, raced).alert_ids == ("a1", "a2")
    [link] = file_alerts([_alert("a2")], {("acme", s.client): s.case_id}, T0)
    with pytest.raises(TransitionError, match="no case"):
        apply(None, link)
    with pytest.raises(TransitionError, match="another tenant"):
        apply(s, replace(_act(s, "note", note="x"), tenant="zenith"))
    with pytest.raises(TransitionError, match="actor"):
        apply(s, _act(s, "note", actor=" ", note="x"))


def test_every_close_reason_closes() -> None:
    for reason in CLOSE_REASONS:
        _, s = _opened(_alert("a1"))
        s = apply(s, _act(s, "close", reason=reason, note="why" if reason == "other" else ""))
        assert s.status == "closed" and s.close_reason == reason
        assert apply(s, _act(s, "note", note="after the close")).notes == (2 if reason == "other" else 1)


# -- filing (grouping) ---------------------------------------------------------------------------


def test_linked_alerts_on_one_client_share_a_case() -> None:
    alerts = [_alert("a1"), _alert("a2", minutes=3), _alert("b1", subject="mt5:ACME-MT5-Live:2002"),
              _alert("z1", tenant="zenith")]
    actions = file_alerts(alerts, {}, T0)
    assert [(a.action, a.alert_ids) for a in actions] == [
        ("open", ("a1", "a2")), ("open", ("b1",)), ("open", ("z1",))]
    # the same client in another tenant is another client
    assert len({a.case_id for a in actions}) == 3


def test_accounts_of_one_crm_client_share_a_case() -> None:
    mt5 = _alert("a1", subject="mt5:ACME-MT5-Live:1001", client_id="CRM-77")
    mt4 = _alert("a2", subject="mt4:ACME-MT4-Live:5005", client_id="CRM-77", minutes=1)
    [action] = file_alerts([mt5, mt4], {}, T0)
    assert action.client == "client:CRM-77" == client_key(mt4)
    assert action.alert_ids == ("a1", "a2")


def test_a_new_alert_joins_the_open_case_and_after_a_close_opens_a_new_one() -> None:
    _, s = _opened(_alert("a1"))
    [link] = file_alerts([_alert("a2", minutes=10)], {("acme", s.client): s.case_id}, T0 + timedelta(hours=2))
    assert link.action == "link" and link.case_id == s.case_id
    s = apply(s, link)
    assert s.alert_ids == ("a1", "a2")
    s = apply(s, _act(s, "close", reason="escalated", minutes=200))
    # the filer is given only open cases: the client's next alert opens another case
    [again] = file_alerts([_alert("a3", minutes=300)], {}, T0 + timedelta(hours=6))
    assert again.action == "open" and again.case_id != s.case_id
    assert again.case_id == case_id_for("acme", s.client, "a3")


def test_a_link_to_a_case_closed_meanwhile_opens_it_again() -> None:
    _, s = _opened(_alert("a1"))
    s = apply(s, _act(s, "close", reason="false_positive"))
    [link] = file_alerts([_alert("a9")], {("acme", s.client): s.case_id}, T0 + timedelta(hours=3))
    s = apply(s, link)
    assert s.status == "open" and s.close_reason == "" and "a9" in s.alert_ids


def test_filing_ids_are_deterministic() -> None:
    alerts = [_alert("a2", minutes=1), _alert("a1")]
    first = file_alerts(alerts, {}, T0)
    assert first == file_alerts(list(reversed(alerts)), {}, T0)
    assert first[0].alert_ids == ("a1", "a2"), "in detection order"


# -- folding -------------------------------------------------------------------------------------


def test_fold_orders_by_time_then_id_and_ignores_a_row_stored_twice() -> None:
    open_action, s = _opened(_alert("a1"))
    assign = _act(s, "assign", assignee="ana", minutes=70)
    close = _act(s, "close", reason="sar_filed", minutes=80)
    log = [close, assign, open_action, assign]
    state = fold(log)
    assert state is not None
    assert state.status == "closed" and state.assignee == "ana" and len(state.history) == 3


def test_an_action_invalid_at_its_place_is_kept_as_rejected() -> None:
    open_action, s = _opened(_alert("a1"))
    first = _act(s, "close", actor="ana", reason="false_positive", minutes=100)
    second = _act(s, "close", actor="bo", reason="sar_filed", minutes=100)  # the same moment
    state = fold([open_action, second, first])
    assert state is not None and state.close_reason == "false_positive"
    assert [e.rejected != "" for e in state.history] == [False, False, True]
    assert "closed already" in state.history[-1].rejected


def test_fold_all_and_a_log_without_open() -> None:
    a, s = _opened(_alert("a1"))
    b, t = _opened(_alert("b1", subject="x"))
    assert set(fold_all([a, b, _act(s, "note", note="n")])) == {s.case_id, t.case_id}
    assert fold([_act(s, "note", note="orphan")]) is None


# -- property: any valid sequence folds to the state of replaying it ------------------------------

ANALYSTS = ("ana", "bo", "cy")
steps = st.lists(st.tuples(
    st.sampled_from(["assign", "acknowledge", "note", "close", "reopen", "link"]),
    st.sampled_from(ANALYSTS), st.sampled_from(CLOSE_REASONS), st.integers(0, 3)), max_size=25)


def _reference(log: list[CaseAction]) -> dict[str, Any]:
    """What an analyst reading the log top to bottom would say, written without cases.model."""
    status, assignee, acked_by, reason, alerts = "open", "", "", "", []
    for a in log:
        if a.action in ("open", "link"):
            alerts += [i for i in a.alert_ids if i not in alerts]
            if a.action == "link" and status == "closed":
                status, reason = "open", ""
        elif a.action == "assign":
            assignee = a.assignee
        elif a.action == "acknowledge":
            acked_by = a.actor
        elif a.action == "close":
            status, reason = "closed", a.reason
        elif a.action == "reopen":
            status, acked_by, reason = "open", "", ""
    return {"status": status, "assignee": assignee, "acknowledged_by": acked_by,
            "close_reason": reason, "alert_ids": tuple(alerts)}


def valid_log(attempts: list[tuple[str, str, str, int]], seed: int = 0) -> list[CaseAction]:
    """A log made of the attempts the case allowed at each step (times strictly increasing)."""
    open_action, state = _opened(_alert("a0"))
    log = [open_action]
    for i, (kind, actor, reason, pick) in enumerate(attempts):
        at = T0 + timedelta(hours=2, seconds=i)
        fields: dict[str, Any] = {}
        if kind == "assign":
            fields["assignee"] = ANALYSTS[pick % 3]
        elif kind == "note":
            fields["note"] = f"note {i}"
        elif kind == "close":
            fields = {"reason": reason, "note": "because" if pick else ""}
        elif kind == "link":
            fields = {"alert_ids": (f"a{i + 1}",), "severity": "medium", "alert_time": at}
        action = CaseAction(tenant="acme", action_id=f"{seed}-{i:03d}", case_id=state.case_id,
                            action=kind, actor=actor, at=at, **fields)  # type: ignore[arg-type]
        try:
            state = apply(state, action)
        except TransitionError:
            continue
        log.append(action)
    return log


@settings(max_examples=150, deadline=None)
@given(attempts=steps, seed=st.integers(0, 2**32 - 1))
def test_any_valid_sequence_folds_to_the_state_of_replaying_it(
        attempts: list[tuple[str, str, str, int]], seed: int) -> None:
    log = valid_log(attempts)
    replayed: CaseState | None = None
    for action in log:
        replayed = apply(replayed, action)
    shuffled = log + log[: len(log) // 3]  # rows stored twice, in any order
    random.Random(seed).shuffle(shuffled)
    folded = fold(shuffled)
    assert folded == replayed
    assert folded is not None and all(not e.rejected for e in folded.history)
    ref = _reference(log)
    assert {k: getattr(folded, k) for k in ref} == ref
