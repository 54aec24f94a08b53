"""Notifications of new alerts: a Slack/Teams-compatible webhook and e-mail (SMTP).

For each new alert (mode `alert`) at or above `notify.min_severity`, of `notify.categories`:
  - a JSON POST to `notify.webhook_url`: `{"text": ...}` (what Teams' and Slack's incoming
    webhooks show) plus Slack `blocks` with the rule, subject, numbers and evidence;
  - an e-mail through `notify.smtp` (STARTTLS and login when configured; the password is read
    from the environment variable `password_env` names, at send time).

It never blocks or stops the engine: the dataflow's sink only offers alerts to a bounded queue
(`queue_size`; beyond, an alert is dropped and counted) and one background thread sends, each
channel retried `attempts` times with a doubling pause (`backoff_s` .. `max_backoff_s`, a
webhook's `Retry-After` honoured). Every failure is counted in Prometheus and logged at most
once per `log_every_s`.

Each alert is notified once: its `alert_id` (deterministic: a replay or a resume after a crash
raises the same id) is remembered in memory and, once its sending is over (sent or given up), in
`state_file`, one id a line, read again at start. So a restart does not notify again what was
sent before it. What was queued but not yet sent when the process died is sent after the
resume, when the engine replays it (at-least-once: an alert sent in the instant before a crash,
before its line was written, may be sent twice). The file keeps the last `JOURNAL_KEEP` ids.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import smtplib
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import orjson
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from prometheus_client import Counter, Gauge

from cases.model import severity_rank
from cases.settings import NotifySettings
from pipelines.sinks import EveryInterval
from pipelines.tables import ALERTS, TableRows
from risk_rules.alerts import Alert

log = logging.getLogger(__name__)

NOTIFY_SENT = Counter("brokerstream_notify_sent_total", "Alert notifications delivered, by channel",
                      ["channel"])
NOTIFY_FAILURES = Counter("brokerstream_notify_failures_total",
                          "Failed notification attempts (each retry counts), by channel", ["channel"])
NOTIFY_GIVEN_UP = Counter("brokerstream_notify_given_up_total",
                          "Alert notifications given up after every attempt failed, by channel", ["channel"])
NOTIFY_DROPPED = Counter("brokerstream_notify_dropped_total",
                         "Alerts not notified because the notification queue was full")
NOTIFY_QUEUE = Gauge("brokerstream_notify_queue", "Alerts waiting to be notified")

JOURNAL_KEEP = 100_000  # alert ids remembered across restarts
PART = "notify"


def notice_from_row(row: tuple[Any, ...]) -> Alert:
    """An `alerts_store` row (`ALERTS.columns` order) as the alert it stores."""
    values = dict(zip(ALERTS.columns, row, strict=True))
    facts = values["facts"]
    if isinstance(facts, str | bytes):
        try:
            facts = orjson.loads(facts)
        except orjson.JSONDecodeError:
            facts = {"facts": str(facts)}
    values["facts"] = facts if isinstance(facts, dict) else {"facts": facts}
    values["evidence"] = list(values["evidence"])
    return Alert(**values)


def notify_items(batch: TableRows) -> list[tuple[str, tuple[Any, ...]]]:
    """The dataflow's alert rows (mode `alert`) routed to the one notifier partition."""
    if batch.table is not ALERTS:
        return []
    return [(PART, row) for row in batch.rows if row[-1] == "alert"]


def _when(t: datetime) -> str:
    aware = t if t.tzinfo else t.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _facts_line(facts: dict[str, Any], limit: int = 8) -> str:
    items = list(facts.items())[:limit]
    return ", ".join(f"{k}={v}" for k, v in items) + (" …" if len(facts) > limit else "")


def headline(n: Alert) -> str:
    return (f"[{n.severity.upper()}] {n.category} alert {n.rule_id} v{n.rule_version} — "
            f"{n.tenant} {n.subject}: {n.summary}")


def webhook_payload(n: Alert, dashboard_url: str = "") -> dict[str, Any]:
    """Slack/Teams-compatible: `text` for both (and Slack's fallback), Slack `blocks` for detail."""
    link = f"{dashboard_url.rstrip('/')}/cases/{n.alert_id}" if dashboard_url else ""
    evidence = ", ".join(n.evidence[:10]) + (f" (+{len(n.evidence) - 10})" if len(n.evidence) > 10 else "")
    text = headline(n) + (f" <{link}|open the case>" if link else "")
    detail = (f"*{n.severity.upper()}* `{n.rule_id}` v{n.rule_version} ({n.category})\n"
              f"*{n.tenant}* · `{n.subject}`\n{n.summary}")
    context = f"event {_when(n.event_time)} · alert `{n.alert_id}`"
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": detail}},
        {"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*Facts*\n{_facts_line(n.facts) or '-'}"},
            {"type": "mrkdwn", "text": f"*Evidence*\n{evidence or '-'}"}]},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
    ]
    if link:
        blocks.append({"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": "Open the case"}, "url": link}]})
    return {"text": text, "blocks": blocks}


def email_message(n: Alert, sender: str, to: list[str], dashboard_url: str = "") -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = headline(n)[:200]
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["X-Brokerstream-Alert-Id"] = n.alert_id
    lines = [headline(n), "", f"tenant:    {n.tenant}", f"subject:   {n.subject}",
             f"rule:      {n.rule_id} v{n.rule_version} ({n.category})", f"severity:  {n.severity}",
             f"event:     {_when(n.event_time)}", f"detected:  {_when(n.detected_at)}",
             f"alert id:  {n.alert_id}", "", "facts:"]
    lines += [f"  {k}: {v}" for k, v in n.facts.items()]
    lines += ["", "evidence:"] + [f"  {e}" for e in n.evidence]
    if dashboard_url:
        lines += ["", f"case: {dashboard_url.rstrip('/')}/cases/{n.alert_id}"]
    msg.set_content("\n".join(lines) + "\n")
    return msg


class SentJournal:
    """Alert ids already notified, one a line in a file (appended; compacted at start)."""

    def __init__(self, path: Path, keep: int = JOURNAL_KEEP) -> None:
        self.path = path
        self.keep = keep
        self.ids: dict[str, None] = {}  # insertion-ordered set
        if path.exists():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                if line.strip():
                    self.ids[line.strip()] = None
            if len(self.ids) > keep:
                self.ids = dict.fromkeys(list(self.ids)[-keep:])
                self._rewrite()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def _rewrite(self) -> None:
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text("".join(f"{i}\n" for i in self.ids), encoding="utf-8")
        tmp.replace(self.path)

    def __contains__(self, alert_id: str) -> bool:
        return alert_id in self.ids

    def add(self, alert_id: str) -> None:
        with self._lock:
            self.ids[alert_id] = None
            with self.path.open("a", encoding="utf-8") as f:
                f.write(alert_id + "\n")
            if len(self.ids) > 2 * self.keep:
                self.ids = dict.fromkeys(list(self.ids)[-self.keep:])
                self._rewrite()


class _Retryable(Exception):
    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Notifier:
    """A bounded queue and one sender thread. `offer` never blocks."""

    def __init__(self, settings: NotifySettings, state_file: Path, *,
                 environ: Callable[[str], str | None] = os.environ.get) -> None:
        self.settings = settings
        self.journal = SentJournal(state_file)
        self._environ = environ
        self._queue: queue.Queue[Alert] = queue.Queue(maxsize=settings.queue_size)
        self._offered: dict[str, None] = {}  # queued or being sent (not yet in the journal)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._every = EveryInterval(settings.log_every_s)
        self._thread: threading.Thread | None = None
        self._min_rank = severity_rank(settings.min_severity)
        self._categories = set(settings.categories)

    # -- the engine's side ---------------------------------------------------------------------

    def wants(self, n: Alert) -> bool:
        return (n.mode == "alert" and severity_rank(n.severity) >= self._min_rank
                and n.category in self._categories)

    def offer(self, n: Alert) -> bool:
        """Queue `n` if it is to be notified and was not already; False otherwise. Never blocks."""
        if not self.wants(n):
            return False
        with self._lock:
            if n.alert_id in self._offered or n.alert_id in self.journal:
                return False
            try:
                self._queue.put_nowait(n)
            except queue.Full:
                NOTIFY_DROPPED.inc()
                if self._every("dropped"):
                    log.warning("notify: queue full (%d alerts waiting): alert %s not notified",
                                self.settings.queue_size, n.alert_id)
                return False
            self._offered[n.alert_id] = None
            self._idle.clear()
        NOTIFY_QUEUE.set(self._queue.qsize())
        return True

    def start(self) -> Notifier:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True, name="notify")
            self._thread.start()
        return self

    def stop(self, drain_s: float = 5.0) -> None:
        """Give the queue up to `drain_s` to empty, then stop the thread (not waiting longer
        than it takes to finish the current attempt)."""
        self._idle.wait(drain_s)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.settings.timeout_s + 1)

    def wait_idle(self, timeout_s: float) -> bool:
        """True once everything offered has been sent or given up (tests, shutdown)."""
        return self._idle.wait(timeout_s)

    # -- the sender thread --------------------------------------------------------------------

    def _channels(self) -> list[tuple[str, Callable[[Alert], None]]]:
        out: list[tuple[str, Callable[[Alert], None]]] = []
        if self.settings.webhook_url:
            out.append(("webhook", self._post))
        if self.settings.smtp is not None:
            out.append(("email", self._mail))
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                n = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            NOTIFY_QUEUE.set(self._queue.qsize())
            try:
                for channel, send in self._channels():
                    self._deliver(channel, send, n)
            except Exception:  # never let one alert stop the thread
                log.exception("notify: alert %s", n.alert_id)
            finally:
                with self._lock:
                    if not self._stop.is_set():  # sent or given up; a stop mid-retry: not done
                        with contextlib.suppress(OSError):
                            self.journal.add(n.alert_id)
                    self._offered.pop(n.alert_id, None)
                    if not self._offered:
                        self._idle.set()

    def _deliver(self, channel: str, send: Callable[[Alert], None], n: Alert) -> None:
        s = self.settings
        pause = s.backoff_s
        for attempt in range(1, s.attempts + 1):
            try:
                send(n)
                NOTIFY_SENT.labels(channel).inc()
                return
            except Exception as exc:
                NOTIFY_FAILURES.labels(channel).inc()
                final = attempt == s.attempts
                if self._every(f"fail:{channel}"):
                    skipped = self._every.suppressed.pop(f"fail:{channel}", 0)
                    log.warning("notify: %s failed for alert %s (attempt %d of %d): %s%s", channel,
                                n.alert_id, attempt, s.attempts, str(exc)[:300],
                                f" ({skipped} more failures since the last line)" if skipped else "")
                if final:
                    NOTIFY_GIVEN_UP.labels(channel).inc()
                    return
                wait = pause
                if isinstance(exc, _Retryable) and exc.retry_after_s is not None:
                    wait = exc.retry_after_s
                if self._stop.wait(min(wait, s.max_backoff_s)):
                    return
                pause = min(pause * 2, s.max_backoff_s)

    def _post(self, n: Alert) -> None:
        body = json.dumps(webhook_payload(n, self.settings.dashboard_url)).encode()
        request = urllib.request.Request(self.settings.webhook_url, data=body, method="POST",
                                         headers={"Content-Type": "application/json",
                                                  "User-Agent": "brokerstream-notify"})
        try:
            with urllib.request.urlopen(request, timeout=self.settings.timeout_s) as answer:
                answer.read()
        except urllib.error.HTTPError as exc:
            retry_after = exc.headers.get("Retry-After") if exc.headers else None
            seconds = float(retry_after) if retry_after and retry_after.isdigit() else None
            raise _Retryable(f"HTTP {exc.code} {exc.reason}", seconds) from None

    def _mail(self, n: Alert) -> None:
        smtp = self.settings.smtp
        assert smtp is not None
        password = ""
        if smtp.password_env:
            password = self._environ(smtp.password_env) or ""
            if not password:
                raise RuntimeError(f"${smtp.password_env} (notify.smtp.password_env) is not set")
        message = email_message(n, smtp.sender, smtp.to, self.settings.dashboard_url)
        with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_s) as client:
            if smtp.starttls:
                client.starttls(context=ssl.create_default_context())
            if smtp.username:
                client.login(smtp.username, password)
            client.send_message(message)


class _NotifyPart(StatefulSinkPartition[tuple[Any, ...], None]):
    def __init__(self, notifier: Notifier) -> None:
        self._notifier = notifier

    def write_batch(self, values: list[tuple[Any, ...]]) -> None:
        for row in values:
            try:
                self._notifier.offer(notice_from_row(row))
            except Exception:  # a malformed row must not stop the engine
                log.exception("notify: cannot read an alert row")

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        self._notifier.stop()


class NotifySink(FixedPartitionedSink[tuple[Any, ...], None]):
    """The dataflow's output to the notifier: one partition, so one notifier per cluster."""

    def __init__(self, settings: NotifySettings, state_file: Path) -> None:
        self._settings = settings
        self._state_file = state_file

    def list_parts(self) -> list[str]:
        return [PART]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _NotifyPart:
        return _NotifyPart(Notifier(self._settings, self._state_file).start())


def notify_state_file(settings: NotifySettings, home: Path) -> Path:
    return Path(settings.state_file).expanduser() if settings.state_file else home / "notify-sent.log"
