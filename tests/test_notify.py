"""Notifications of new alerts (pipelines/notify.py) against real local listeners: an HTTP
server (stdlib, in a thread) standing in for the Slack/Teams webhook and an SMTP server
(aiosmtpd, in a thread). Severity threshold, once per alert (also across a restart), retries
with backoff, a full queue that drops instead of blocking, and failures counted."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword
from prometheus_client import REGISTRY

from cases.settings import NotifySettings
from pipelines.config import parse_settings
from pipelines.notify import Notifier, NotifySink, notice_from_row, notify_items
from pipelines.rules_step import alert_row
from pipelines.tables import ALERTS, DEALS, TableRows
from risk_rules.alerts import Alert
from tests.conftest import TEST_CONFIG

T0 = datetime(2024, 11, 25, 9, 0, tzinfo=UTC)
HANG = 30.0  # a generous bound for waiting on the sender thread (never a timing assertion)


def _alert(alert_id: str, severity: str = "high", mode: str = "alert", category: str = "aml") -> Alert:
    return Alert(alert_id=alert_id, rule_id="structuring", rule_version=2, category=category,  # type: ignore[arg-type]
                 severity=severity, tenant="acme", subject="mt5:ACME-MT5-Live:1001",  # type: ignore[arg-type]
                 summary="3 deposits totalling 28,960 USD in 4 h, each between 90% and 100% of 10,000",
                 facts={"deposits": 3, "total": "28960.00", "threshold": "10000"},
                 evidence=["mt5:ACME-MT5-Live:11495365", "mt5:ACME-MT5-Live:11495376"],
                 event_time=T0, detected_at=T0, mode=mode)  # type: ignore[arg-type]


def _notice(alert_id: str, **kw: Any) -> Any:
    return notice_from_row(alert_row(_alert(alert_id, **kw))[1])


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# -- the listeners ------------------------------------------------------------------------------


class Hook:
    """A local webhook: records each POST's JSON; answers `fail` times with `status`, then 200;
    `hold` makes it wait until released."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.fail = 0
        self.status = 500
        self.retry_after: str | None = None
        self.hold = threading.Event()
        self.hold.set()
        self.requests = 0
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.hold.wait(HANG)
                with hook.lock:
                    hook.requests += 1
                    failing = hook.fail > 0
                    if failing:
                        hook.fail -= 1
                    else:
                        assert self.headers["Content-Type"] == "application/json"
                        hook.bodies.append(json.loads(body))
                self.send_response(hook.status if failing else 200)
                if failing and hook.retry_after is not None:
                    self.send_header("Retry-After", hook.retry_after)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/compliance"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.hold.set()
        self.server.shutdown()
        self.server.server_close()


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[Envelope, bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        self.messages.append((envelope, envelope.original_content or b""))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    yield h
    h.close()


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()

    def check(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"alerts", b"s3cret-pass")
        return AuthResult(success=ok)

    port = _free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port, authenticator=check,
                            auth_require_tls=False)
    controller.start()
    yield box, port
    controller.stop()


def _settings(hook: Hook | None = None, smtp_port: int | None = None, **kw: Any) -> NotifySettings:
    doc: dict[str, Any] = {"backoff_s": 0.01, "max_backoff_s": 0.05, "attempts": 4, "timeout_s": 5, **kw}
    if hook is not None:
        doc["webhook_url"] = hook.url
    if smtp_port is not None:
        doc["smtp"] = {"host": "127.0.0.1", "port": smtp_port, "from": "brokerstream@acme.example",
                       "to": ["compliance@acme.example", "mlro@acme.example"], "username": "alerts",
                       "password_env": "TEST_NOTIFY_SMTP_PASSWORD"}
    return NotifySettings.model_validate(doc)


def _notifier(settings: NotifySettings, tmp_path: Path, **kw: Any) -> Notifier:
    env = {"TEST_NOTIFY_SMTP_PASSWORD": "s3cret-pass", **kw}
    return Notifier(settings, tmp_path / "notify-sent.log", environ=env.get).start()


# -- tests -----------------------------------------------------------------------------------


def test_a_high_alert_goes_to_the_webhook_and_by_mail(hook: Hook, mailbox: tuple[Mailbox, int],
                                                      tmp_path: Path) -> None:
    box, port = mailbox
    n = _notifier(_settings(hook, port, dashboard_url="https://dash.acme.example/"), tmp_path)
    try:
        assert n.offer(_notice("al-1", severity="high"))
        assert n.offer(_notice("al-2", severity="critical"))
        assert not n.offer(_notice("al-3", severity="medium")), "below notify.min_severity"
        assert not n.offer(_notice("al-4", mode="observe")), "observe-only: not for compliance"
        assert not n.offer(_notice("al-1")), "once per alert"
        assert n.wait_idle(HANG)
    finally:
        n.stop()
    assert [b["text"].split(" — ")[0] for b in hook.bodies] == ["[HIGH] aml alert structuring v2",
                                                                "[CRITICAL] aml alert structuring v2"]
    body = hook.bodies[0]
    assert "acme mt5:ACME-MT5-Live:1001: 3 deposits totalling 28,960 USD" in body["text"]
    assert "https://dash.acme.example/cases/al-1" in body["text"]
    blocks = json.dumps(body["blocks"])
    assert "mt5:ACME-MT5-Live:11495365" in blocks and "total=28960.00" in blocks
    assert [b["type"] for b in body["blocks"]] == ["section", "section", "context", "actions"]
    assert len(box.messages) == 2
    envelope, raw = box.messages[0]
    assert envelope.mail_from == "brokerstream@acme.example"
    assert envelope.rcpt_tos == ["compliance@acme.example", "mlro@acme.example"]
    mail = message_from_bytes(raw)
    assert mail["Subject"].startswith("[HIGH] aml alert structuring v2")
    assert mail["X-Brokerstream-Alert-Id"] == "al-1"
    text = mail.get_payload(decode=True).decode()
    assert "mt5:ACME-MT5-Live:11495376" in text and "threshold: 10000" in text


def test_failures_are_retried_with_backoff_and_counted(hook: Hook, tmp_path: Path) -> None:
    hook.fail = 2
    before = _metric("brokerstream_notify_failures_total", channel="webhook")
    sent = _metric("brokerstream_notify_sent_total", channel="webhook")
    n = _notifier(_settings(hook), tmp_path)
    try:
        assert n.offer(_notice("r-1"))
        assert n.wait_idle(HANG)
        hook.fail, hook.status, hook.retry_after = 1, 429, "0"  # Slack's rate limit, Retry-After honoured
        assert n.offer(_notice("r-2"))
        assert n.wait_idle(HANG)
    finally:
        n.stop()
    assert [b["text"][:40] for b in hook.bodies] == [_notice_text("r-1"), _notice_text("r-2")]
    assert hook.requests == 5
    assert _metric("brokerstream_notify_failures_total", channel="webhook") - before == 3
    assert _metric("brokerstream_notify_sent_total", channel="webhook") - sent == 2


def _notice_text(alert_id: str) -> str:
    from pipelines.notify import headline

    return headline(_notice(alert_id))[:40]


def test_an_unreachable_channel_is_given_up_without_stopping_anything(tmp_path: Path,
                                                                    mailbox: tuple[Mailbox, int]) -> None:
    box, port = mailbox
    dead = f"http://127.0.0.1:{_free_port()}/nobody-listens"
    given_up = _metric("brokerstream_notify_given_up_total", channel="webhook")
    n = _notifier(_settings(None, port, webhook_url=dead, attempts=3), tmp_path)
    try:
        assert n.offer(_notice("g-1"))
        assert n.wait_idle(HANG)
    finally:
        n.stop()
    assert _metric("brokerstream_notify_given_up_total", channel="webhook") - given_up == 1
    assert len(box.messages) == 1, "the other channel still gets it"
    assert "g-1" in (tmp_path / "notify-sent.log").read_text().split(), "not retried forever"


def test_a_missing_smtp_password_is_a_counted_failure(mailbox: tuple[Mailbox, int], tmp_path: Path) -> None:
    box, port = mailbox
    failures = _metric("brokerstream_notify_failures_total", channel="email")
    n = _notifier(_settings(None, port, attempts=2), tmp_path, TEST_NOTIFY_SMTP_PASSWORD="")
    try:
        assert n.offer(_notice("p-1"))
        assert n.wait_idle(HANG)
    finally:
        n.stop()
    assert box.messages == []
    assert _metric("brokerstream_notify_failures_total", channel="email") - failures == 2


def test_a_full_queue_drops_instead_of_blocking(hook: Hook, tmp_path: Path) -> None:
    hook.hold.clear()  # the webhook answers nothing until released
    dropped = _metric("brokerstream_notify_dropped_total")
    n = _notifier(_settings(hook, queue_size=2), tmp_path)
    try:
        accepted = [n.offer(_notice(f"q-{i}")) for i in range(6)]
        # one may already be in the sender's hands (then three fit), the rest are dropped
        assert accepted[:2] == [True, True] and sum(accepted) in (2, 3)
        assert _metric("brokerstream_notify_dropped_total") - dropped == 6 - sum(accepted)
        hook.hold.set()
        assert n.wait_idle(HANG)
    finally:
        n.stop()
    assert len(hook.bodies) == sum(accepted)


def test_an_alert_is_not_notified_again_after_a_restart(hook: Hook, tmp_path: Path) -> None:
    first = _notifier(_settings(hook), tmp_path)
    assert first.offer(_notice("s-1"))
    assert first.wait_idle(HANG)
    first.stop()
    again = _notifier(_settings(hook), tmp_path)
    try:
        assert not again.offer(_notice("s-1")), "the engine replays it after a resume: not sent twice"
        assert again.offer(_notice("s-2"))
        assert again.wait_idle(HANG)
    finally:
        again.stop()
    assert [b["text"][:40] for b in hook.bodies] == [_notice_text("s-1"), _notice_text("s-2")]


def test_the_sink_takes_the_dataflows_alert_rows(hook: Hook, tmp_path: Path) -> None:
    rows = [alert_row(_alert("k-1"))[1], alert_row(_alert("k-2", mode="observe"))[1],
            alert_row(_alert("k-3", category="risk", severity="critical"))[1]]
    items = notify_items(TableRows(ALERTS, rows)) + notify_items(TableRows(DEALS, [("x",)]))
    assert [row[0] for _, row in items] == ["k-1", "k-3"]
    sink = NotifySink(_settings(hook), tmp_path / "sent.log")
    [part_name] = sink.list_parts()
    part = sink.build_part("notify", part_name, None)
    part.write_batch([row for _, row in items] + [("broken",)])  # a bad row is logged, not raised
    part.close()
    assert sorted(b["text"][:40] for b in hook.bodies) == sorted(
        [_notice_text("k-1"), headline_of(_alert("k-3", category="risk", severity="critical"))])


def headline_of(alert: Alert) -> str:
    from pipelines.notify import headline

    return headline(notice_from_row(alert_row(alert)[1]))[:40]


def test_the_settings_fail_at_start_naming_the_field() -> None:
    from pipelines.config import ConfigError

    for notify, field in (({"min_severity": "urgent"}, "notify.min_severity"),
                          ({"webhook_url": "slack.com/x"}, "notify.webhook_url"),
                          ({"smtp": {"host": "mx", "from": "a@b", "to": ["nobody"]}}, "notify.smtp.to"),
                          ({"smtp": {"host": "mx", "from": "a@b", "to": ["c@d"], "password_env": "P"}},
                           "notify.smtp")):
        with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
            parse_settings({**TEST_CONFIG, "notify": notify})
    ok = parse_settings({**TEST_CONFIG, "notify": {"webhook_url": "https://hooks.slack.com/services/T/B/X",
                                                   "smtp": {"host": "mx", "from": "a@b", "to": ["c@d"]}}})
    assert ok.notify.enabled and ok.notify.smtp is not None and ok.notify.smtp.sender == "a@b"
    assert not parse_settings(TEST_CONFIG).notify.enabled


def test_the_live_dataflow_has_the_notifier(tmp_path: Path) -> None:
    from pipelines.dataflow import FileInput, KafkaInput, build_flow

    doc = {**TEST_CONFIG, "clickhouse": {"dsn": f"chdb://{tmp_path}"},
           "notify": {"webhook_url": "http://127.0.0.1:9/x"}}
    settings = parse_settings(doc)

    def step_ids(flow: Any) -> set[str]:
        return {s.step_id for s in flow.substeps}

    (tmp_path / "x.jsonl").write_text("", encoding="utf-8")
    live = build_flow(settings, KafkaInput("127.0.0.1:9", ["mt5.deals"]), lambda: None)  # type: ignore[arg-type, return-value]
    replay = build_flow(settings, FileInput([tmp_path / "x.jsonl"]), lambda: None)  # type: ignore[arg-type, return-value]
    assert "brokerstream.notify" in step_ids(live)
    assert "brokerstream.notify" not in step_ids(replay), "a replay of history notifies nobody"


# -- the live engine, end to end ---------------------------------------------------------------


@pytest.mark.kafka
def test_the_live_engine_notifies_each_high_alert_once_across_a_restart(
        hook: Hook, chdb_dir: Path, kafka_bootstrap: str, tmp_path: Path) -> None:
    """Simulated traffic through Kafka and the engine (brokerstream run): the webhook receives
    every stored high/critical alert exactly once; the engine run again over the same topics
    (raising high alerts again, with the same ids) notifies nobody again."""
    import uuid

    from brokerstream.engine import run_kafka
    from brokerstream.publish import publish
    from devtools.simulator.brokerage import Brokerage
    from pipelines.config import load_settings
    from pipelines.store import Store
    from pipelines.topics import ensure_kafka_topics
    from tests.conftest import EXAMPLE_CONFIG

    base = load_settings(EXAMPLE_CONFIG)
    sim = Brokerage(base, seed=11, accounts=200, days=2, events=15_000, typology_rate=15)
    envelopes = list(sim.envelopes(15_000))
    prefix = f"n{uuid.uuid4().hex[:8]}."
    settings = sim.settings.model_copy(update={
        "clickhouse": base.clickhouse.model_copy(update={"dsn": f"chdb://{chdb_dir}",
                                                         "database": f"n_{uuid.uuid4().hex[:10]}"}),
        "kafka": base.kafka.model_copy(update={"bootstrap": kafka_bootstrap, "topic_prefix": prefix,
                                               "partitions": 2}),
        "cases": sim.settings.cases.model_copy(update={"file_every_s": 0}),
        "notify": _settings(hook, state_file=str(tmp_path / "sent.log"))})
    ensure_kafka_topics(settings, kafka_bootstrap)
    publish(kafka_bootstrap, envelopes, topic_prefix=prefix)
    run_kafka(settings, exit_at_end=True, recovery=False)
    store = Store(settings.clickhouse_dsn(), settings.clickhouse.database)
    try:
        found = store.query("SELECT alert_id, rule_id, category, severity FROM alerts "
                            "WHERE mode = 'alert' AND severity IN ('high', 'critical')")[1]
    finally:
        store.close()
    high = {r[0] for r in found}
    assert high, "the simulated traffic raised no high alert"
    sent = [b["blocks"][2]["elements"][0]["text"].split("`")[1] for b in hook.bodies]
    assert sorted(sent) == sorted(high), "each high alert once, nothing else"

    def raised() -> float:  # the engine's own count of alerts raised (this process's registry)
        return sum(_metric("brokerstream_alerts_total", rule_id=rule, category=category,
                           severity=severity, mode="alert")
                   for rule, category, severity in {r[1:] for r in found})

    before = raised()
    run_kafka(settings, exit_at_end=True, recovery=False)  # alerts raised again, with the same ids
    assert raised() > before, "the second run raised high alerts again"
    # none notified again. The second live run may also raise alerts the first did not (which
    # margin crossings a check sees, and how partitions interleave, follow the consumed
    # batches): those are new alerts, notified once
    again = [b["blocks"][2]["elements"][0]["text"].split("`")[1] for b in hook.bodies[len(sent):]]
    assert not set(again) & set(sent), f"notified again: {set(again) & set(sent)}"
    assert len(again) == len(set(again)), again
