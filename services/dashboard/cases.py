"""The Cases view of the dashboard page: the open-case queue, a case with its alerts, evidence
and history, and the analyst actions (assign, acknowledge, note, close, reopen).

Behind the page's login like everything else, and tenant-scoped on the server: a viewer lists,
opens and acts on their tenants' cases only (another tenant's case id answers 404, the same as
one that does not exist). The logged-in user is the actor of every action.

Cross-site requests cannot act (CSRF): the session cookie is SameSite=Lax (as the login form
relies on: another site's POST carries no cookie), and on top of that every POST must
  - be JSON (`Content-Type: application/json`: a cross-site HTML form cannot send it, and a
    cross-site fetch of it needs a CORS preflight this server never grants),
  - carry `X-CSRF-Token`, a value derived from the session cookie that only this site's GET
    answers (`/api/cases`, `/api/cases/{id}`) hand out, and
  - come from this site when the browser says where it comes from (`Origin`).
Each form submission carries its own `action_id`, so a double click or a retried request is
recorded once.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, Response

from cases import CLOSE_REASONS, SEVERITIES, CaseState, TransitionError
from pipelines.cases_store import STATUSES, CaseDetail, CaseNotFound, CaseRepository, CaseRow, StoreError
from services.dashboard.auth import COOKIE, Identity

CSRF_HEADER = "X-CSRF-Token"
_ACTION_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
# URL action -> the log's action
PAGE_ACTIONS = {"assign": "assign", "acknowledge": "acknowledge", "ack": "acknowledge", "note": "note",
                "close": "close", "reopen": "reopen"}


def csrf_token(cookie: str) -> str:
    """The token that goes with a session cookie (a keyed digest of it: only someone who can
    read this site's answers for that session has it)."""
    return hashlib.sha256(b"brokerstream.csrf.v1\0" + cookie.encode()).hexdigest()


def _short(exc: Exception) -> str:
    return " ".join(str(exc).split())[:300]


def _ms(value: datetime | None) -> int | None:
    return int(value.astimezone(UTC).timestamp() * 1000) if value else None


def _row_json(row: CaseRow, now: datetime) -> dict[str, Any]:
    return {"case_id": row.case_id, "tenant": row.tenant, "client": row.client, "status": row.status,
            "severity": row.severity, "alerts": row.alerts, "assignee": row.assignee,
            "acknowledged": row.acknowledged, "acknowledged_by": row.acknowledged_by,
            "opened_at": _ms(row.opened_at), "raised_at": _ms(row.raised_at),
            "closed_at": _ms(row.closed_at), "close_reason": row.close_reason,
            "last_action_at": _ms(row.last_action_at), "age_s": int(row.age(now).total_seconds()),
            "actions": row.actions, "notes": row.notes}


def _state_json(s: CaseState) -> dict[str, Any]:
    return {"case_id": s.case_id, "tenant": s.tenant, "client": s.client, "status": s.status,
            "severity": s.severity, "alert_ids": list(s.alert_ids), "assignee": s.assignee,
            "acknowledged": s.acknowledged, "acknowledged_by": s.acknowledged_by,
            "acknowledged_at": _ms(s.acknowledged_at), "opened_at": _ms(s.opened_at),
            "raised_at": _ms(s.raised_at), "closed_at": _ms(s.closed_at), "close_reason": s.close_reason,
            "notes": s.notes,
            "history": [{"action_id": e.action.action_id, "at": _ms(e.action.at), "actor": e.action.actor,
                         "action": e.action.action, "alert_ids": list(e.action.alert_ids),
                         "assignee": e.action.assignee, "reason": e.action.reason, "note": e.action.note,
                         "rejected": e.rejected} for e in s.history]}


def _detail_json(d: CaseDetail) -> dict[str, Any]:
    return {"case": _state_json(d.state),
            "alerts": [{"alert_id": a.alert_id, "rule_id": a.rule_id, "rule_version": a.rule_version,
                        "category": a.category, "severity": a.severity, "subject": a.subject,
                        "summary": a.summary, "facts": a.facts, "evidence": a.evidence,
                        "event_time": _ms(a.event_time), "detected_at": _ms(a.detected_at)}
                       for a in d.alerts]}


def register_cases(app: FastAPI, page: Any, page_user: Callable[[Request], Identity | None],
                   to_login: Callable[[Request], Response], api_error: type[Exception],
                   static_dir: Any) -> None:
    """Add the Cases view's pages and API to the dashboard app (services/dashboard/server.py).
    `page` is the app's shared state (its store, lock and logins); `api_error(status, message)`
    the app's JSON error."""
    html = static_dir / "cases.html"

    def repository() -> CaseRepository:
        categories = getattr(app.state, "case_categories", None) or ("aml", "fraud")
        return CaseRepository(page.store, categories)

    def user(request: Request) -> tuple[Identity, str]:
        cookie = request.cookies.get(COOKIE) or ""
        who = page_user(request)
        if who is None:
            raise api_error(401, "log in first (POST /login)")
        return who, cookie

    def scope(who: Identity) -> tuple[str, ...] | None:
        return None if who.admin else who.tenants

    def checked_post(request: Request, cookie: str) -> None:
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            raise api_error(415, "send the action as JSON (Content-Type: application/json)")
        origin = request.headers.get("origin")
        if origin and origin != "null":
            host = request.headers.get("host", "")
            if urlparse(origin).netloc != host:
                raise api_error(403, "cross-site request refused")
        elif origin == "null":
            raise api_error(403, "cross-site request refused")
        token = request.headers.get(CSRF_HEADER, "")
        if not token or not secrets.compare_digest(token, csrf_token(cookie)):
            raise api_error(403, f"missing or wrong {CSRF_HEADER} (reload the page)")

    @app.get("/cases", include_in_schema=False)
    @app.get("/cases/{case_id}", include_in_schema=False)
    def cases_page(request: Request, case_id: str = "") -> Response:
        if page_user(request) is None:
            return to_login(request)
        return FileResponse(html, headers={"Cache-Control": "no-cache"})

    @app.get("/api/cases")
    def queue(request: Request) -> dict[str, Any]:
        who, cookie = user(request)
        params = request.query_params
        status = params.get("status") or "open"
        if status not in STATUSES:
            raise api_error(400, f"status must be one of {', '.join(STATUSES)}")
        severity = params.get("severity") or None
        if severity is not None and severity not in SEVERITIES:
            raise api_error(400, f"severity must be one of {', '.join(SEVERITIES)}")
        assignee = params.get("assignee") or None
        now = datetime.now(UTC)
        try:
            with page.lock:
                rows = repository().list_cases(status=status, assignee=assignee, severity=severity,
                                               tenants=scope(who))
        except StoreError as exc:
            raise api_error(502, f"the store failed: {_short(exc)}") from None
        return {"cases": [_row_json(r, now) for r in rows], "now": _ms(now), "user": who.public(),
                "csrf": csrf_token(cookie), "reasons": list(CLOSE_REASONS)}

    @app.get("/api/cases/{ident}")
    def one_case(ident: str, request: Request) -> dict[str, Any]:
        who, cookie = user(request)
        try:
            with page.lock:
                detail = repository().detail(ident, scope(who))
        except CaseNotFound as exc:
            raise api_error(404, str(exc)) from None
        except StoreError as exc:
            raise api_error(502, f"the store failed: {_short(exc)}") from None
        return {**_detail_json(detail), "now": _ms(datetime.now(UTC)), "user": who.public(),
                "csrf": csrf_token(cookie), "reasons": list(CLOSE_REASONS)}

    @app.post("/api/cases/{ident}/{action}")
    async def act(ident: str, action: str, request: Request) -> dict[str, Any]:
        who, cookie = user(request)
        checked_post(request, cookie)
        kind = PAGE_ACTIONS.get(action)
        if kind is None:
            raise api_error(404, f"no action {action!r} (one of {', '.join(sorted(set(PAGE_ACTIONS)))})")
        try:
            body = await request.json()
        except ValueError:
            raise api_error(400, "the body is not JSON") from None
        if not isinstance(body, dict):
            raise api_error(400, "the body must be a JSON object")
        fields = {k: body.get(k, "") for k in ("to", "reason", "note", "text", "action_id")}
        if not all(isinstance(v, str) for v in fields.values()):
            raise api_error(400, "every field is a string")
        action_id = fields["action_id"] or None
        if action_id is not None and not _ACTION_ID.match(action_id):
            raise api_error(400, "action_id: 8 to 64 letters, digits, - or _")
        try:
            with page.lock:
                detail = repository().act(
                    ident, kind, who.name, tenants=scope(who), assignee=fields["to"],
                    reason=fields["reason"], note=fields["note"] or fields["text"], action_id=action_id)
        except CaseNotFound as exc:
            raise api_error(404, str(exc)) from None
        except TransitionError as exc:
            raise api_error(409, str(exc)) from None
        except StoreError as exc:
            raise api_error(502, f"the action was not recorded: {_short(exc)}") from None
        return {**_detail_json(detail), "now": _ms(datetime.now(UTC)), "user": who.public(),
                "csrf": csrf_token(cookie), "reasons": list(CLOSE_REASONS)}
