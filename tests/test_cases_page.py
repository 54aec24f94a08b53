"""The dashboard page's Cases view (services/dashboard/cases.py) over a real store: behind the
login, tenant-scoped (a viewer of acme neither sees nor acts on zenith's cases), the logged-in
user recorded as the actor, and no action without the CSRF token, JSON and this site's origin."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from pipelines.config import Settings
from pipelines.store import Store
from services.dashboard.cases import CSRF_HEADER, csrf_token
from services.dashboard.server import create_app
from tests.dashboard_logins import ADMIN, OTHER, VIEWER, auth_for, log_in
from tests.test_cases_store import write_account, write_alert


@pytest.fixture
def app_store(store: Store) -> Store:
    write_account(store, "mt5:ACME-MT5-Live:1001", "CRM-1")
    write_alert(store, "a1", "mt5:ACME-MT5-Live:1001", severity="critical")
    write_alert(store, "a2", "mt5:ACME-MT5-Live:1001", minutes=5)
    write_alert(store, "a3", "mt5:ACME-MT5-Live:2002", severity="medium")
    write_alert(store, "z1", "mt5:Zenith-MT5:1001", tenant="zenith")
    return store


def _client(store: Store, settings: Settings, user: str | None) -> TestClient:
    client = TestClient(create_app(store, auth=auth_for(settings)))
    if user:
        log_in(client, user)
    return client


@pytest.fixture
def viewer(app_store: Store, settings: Settings) -> Iterator[TestClient]:
    with _client(app_store, settings, VIEWER) as c:
        yield c


def _post(client: TestClient, ident: str, action: str, **body: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    token = client.get("/api/cases").json()["csrf"]
    r = client.post(f"/api/cases/{ident}/{action}", json=body, headers={CSRF_HEADER: token})
    return r.status_code, r.json()


def _case_of(client: TestClient, alert_id: str) -> str:
    r = client.get(f"/api/cases/{alert_id}")
    assert r.status_code == 200, r.text
    return str(r.json()["case"]["case_id"])


def test_nothing_without_a_login(app_store: Store, settings: Settings) -> None:
    with _client(app_store, settings, None) as c:
        assert c.get("/api/cases").status_code == 401
        assert c.get("/api/cases/a1").status_code == 401
        assert c.post("/api/cases/a1/note", json={"note": "x"}).status_code == 401
        r = c.get("/cases", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next=%2Fcases")
    assert app_store.scalar("SELECT count() FROM alert_actions_store WHERE action = 'note'") == 0


def test_the_queue_and_a_case_as_a_viewer_sees_them(viewer: TestClient) -> None:
    body = viewer.get("/api/cases").json()
    assert body["user"]["name"] == VIEWER
    assert [(c["tenant"], c["client"], c["alerts"], c["severity"]) for c in body["cases"]] == [
        ("acme", "client:CRM-1", 2, "critical"), ("acme", "mt5:ACME-MT5-Live:2002", 1, "medium")]
    case_id = body["cases"][0]["case_id"]
    detail = viewer.get(f"/api/cases/{case_id}").json()
    assert detail["case"]["alert_ids"] == ["a1", "a2"]
    assert [a["evidence"] for a in detail["alerts"]] == [["psp:skrill:a1-1", "psp:skrill:a1-2"],
                                                         ["psp:skrill:a2-1", "psp:skrill:a2-2"]]
    assert detail["alerts"][0]["facts"] == {"deposits": 4, "limit": "10000"}
    assert [h["action"] for h in detail["case"]["history"]] == ["open"]
    page = viewer.get(f"/cases/{case_id}")
    assert page.status_code == 200 and "/static/cases.js" in page.text
    assert viewer.get("/static/cases.js").status_code == 200
    assert viewer.get("/api/cases?status=bogus").status_code == 400
    assert viewer.get("/api/cases?severity=huge").status_code == 400


def test_an_analyst_works_a_case_through_the_page(viewer: TestClient) -> None:
    case_id = _case_of(viewer, "a2")
    assert _post(viewer, case_id, "assign", to="ana")[0] == 200
    assert _post(viewer, case_id, "acknowledge")[0] == 200
    assert _post(viewer, case_id, "note", note="asked for source of funds")[0] == 200
    status, body = _post(viewer, case_id, "close", reason="bored")
    assert status == 409 and "close needs a reason" in body["error"]
    status, body = _post(viewer, case_id, "close", reason="sar_filed", note="SAR filed")
    assert status == 200 and body["case"]["status"] == "closed"
    status, body = _post(viewer, case_id, "acknowledge")
    assert status == 409 and "closed" in body["error"]
    status, body = _post(viewer, case_id, "reopen", note="new deposits")
    assert status == 200 and body["case"]["status"] == "open" and not body["case"]["acknowledged"]
    history = body["case"]["history"]
    assert [(h["action"], h["actor"]) for h in history] == [
        ("open", "system"), ("assign", VIEWER), ("acknowledge", VIEWER), ("note", VIEWER),
        ("close", VIEWER), ("reopen", VIEWER)]
    assert history[4]["reason"] == "sar_filed" and history[4]["note"] == "SAR filed"
    assert _post(viewer, case_id, "frobnicate")[0] == 404
    [row] = [c for c in viewer.get("/api/cases").json()["cases"] if c["case_id"] == case_id]
    assert (row["assignee"], row["acknowledged"], row["notes"]) == ("ana", False, 3)


def test_a_viewer_can_neither_see_nor_act_on_another_tenants_case(
        app_store: Store, settings: Settings, viewer: TestClient) -> None:
    with _client(app_store, settings, OTHER) as other:
        zenith_case = _case_of(other, "z1")
        assert [c["case_id"] for c in other.get("/api/cases").json()["cases"]] == [zenith_case]
    assert zenith_case not in {c["case_id"] for c in viewer.get("/api/cases?status=all").json()["cases"]}
    for ident in (zenith_case, "z1"):
        assert viewer.get(f"/api/cases/{ident}").status_code == 404
        for action, body in (("note", {"note": "x"}), ("close", {"reason": "false_positive"}),
                             ("assign", {"to": "me"})):
            status, answer = _post(viewer, ident, action, **body)
            assert status == 404 and "no case or alert" in answer["error"]
    assert app_store.scalar(f"SELECT count() FROM alert_actions WHERE case_id = '{zenith_case}'") == 1
    with _client(app_store, settings, ADMIN) as admin:
        tenants = {c["tenant"] for c in admin.get("/api/cases").json()["cases"]}
        assert tenants == {"acme", "zenith"}
        assert _post(admin, zenith_case, "note", note="seen by ops")[0] == 200


def test_no_action_without_the_csrf_token_json_and_this_origin(
        app_store: Store, settings: Settings, viewer: TestClient) -> None:
    case_id = _case_of(viewer, "a1")
    token = viewer.get("/api/cases").json()["csrf"]
    url = f"/api/cases/{case_id}/note"
    # no token, a wrong one, another session's
    assert viewer.post(url, json={"note": "x"}).status_code == 403
    assert viewer.post(url, json={"note": "x"}, headers={CSRF_HEADER: "0" * 64}).status_code == 403
    with _client(app_store, settings, OTHER) as other:
        foreign = other.get("/api/cases").json()["csrf"]
    assert foreign != token
    assert viewer.post(url, json={"note": "x"}, headers={CSRF_HEADER: foreign}).status_code == 403
    # what an HTML form of another site can send: a form body, and its Origin
    r = viewer.post(url, data={"note": "x"}, headers={CSRF_HEADER: token})
    assert r.status_code == 415
    r = viewer.post(url, json={"note": "x"}, headers={CSRF_HEADER: token, "Origin": "https://evil.example"})
    assert r.status_code == 403
    r = viewer.post(url, json={"note": "x"}, headers={CSRF_HEADER: token, "Origin": "null"})
    assert r.status_code == 403
    assert app_store.scalar("SELECT count() FROM alert_actions WHERE action = 'note'") == 0
    r = viewer.post(url, json={"note": "x"}, headers={CSRF_HEADER: token, "Origin": "http://testserver"})
    assert r.status_code == 200
    assert token == csrf_token(viewer.cookies["brokerstream_session"])


def test_a_form_submitted_twice_is_one_action(viewer: TestClient, app_store: Store) -> None:
    case_id = _case_of(viewer, "a3")
    first = _post(viewer, case_id, "note", note="double click", action_id="p-0123456789abcdef")
    second = _post(viewer, case_id, "note", note="double click", action_id="p-0123456789abcdef")
    assert first[0] == second[0] == 200
    assert second[1]["case"]["notes"] == 1
    assert _post(viewer, case_id, "note", note="x", action_id="bad id!")[0] == 400
    assert app_store.scalar(f"SELECT count() FROM alert_actions WHERE case_id = '{case_id}' "
                            "AND action = 'note'") == 1


# -- the page in a real browser ----------------------------------------------------------------

from tests.test_dashboard_page import ARTIFACTS, NO_CHROMIUM, SKIP_BROWSER, _chromium  # noqa: E402


@pytest.mark.skipif(SKIP_BROWSER, reason=NO_CHROMIUM)
def test_the_cases_view_renders_in_chromium(app_store: Store, settings: Settings) -> None:
    """Logged in through the form as acme's viewer: the queue lists acme's cases only, and a
    case page shows its alerts and history; no script error. Screenshots in test-artifacts/."""
    import re

    from services.dashboard.server import bound_port, start_dashboard_thread
    from tests.dashboard_logins import with_logins

    server = start_dashboard_thread(with_logins(settings), 0)
    try:
        base = f"http://127.0.0.1:{bound_port(server)}"
        ARTIFACTS.mkdir(exist_ok=True)
        queue = _chromium(f"{base}/cases", ARTIFACTS / "cases-queue.png", user=VIEWER)
        assert queue.ready == "1" and queue.errors_count == "0", queue.errors_text
        listed = re.findall(r'<tr data-case="(C-[0-9a-f]+)"', queue.html)
        assert len(listed) == 2 and "zenith" not in queue.html.split('id="queue-table"')[1]
        case = _chromium(f"{base}/cases/{listed[0]}", ARTIFACTS / "cases-case.png", user=VIEWER)
        assert case.ready == "1" and case.errors_count == "0", case.errors_text
        assert re.findall(r'<tr data-alert="([^"]+)"', case.html) == ["a1", "a2"]
        assert "psp:skrill:a1-1" in case.html and "client:CRM-1" in case.html
    finally:
        server.should_exit = True
