"""The payment-provider webhook receiver: verify, de-duplicate, publish to Kafka, then answer.

``POST /webhooks/{provider}`` for skrill, praxis, coinspaid, nuvei and stripe; ``GET /healthz``
(alive), ``GET /readyz`` (503 while Kafka is unreachable); ``GET /metrics`` (Prometheus).
Rules, in order:

* request line and headers not complete within ``receiver.header_timeout_s`` -> 408 and closed
  (enforced in the HTTP protocol, `receiver_protocol`: uvicorn has no such timeout); larger than
  ``receiver.max_header_bytes`` -> 431; a connection beyond ``receiver.max_connections`` -> 503;
  the body not complete within ``receiver.body_timeout_s`` -> 408; a client gone mid-body ->
  one log line;

* a provider we don't know, or one without a ``psp.providers`` entry -> 404;
* a body over ``psp.max_body_bytes`` -> 413 (the Content-Length header and the bytes read);
* a bad or missing signature, a foreign merchant/key, or a stale signed timestamp -> 401, and
  nothing is published;
* a body that can't be read (no transaction id or status to de-duplicate on) -> 400;
* a notification already acknowledged (same provider id + status) -> 200, not published again;
* Kafka known to be unreachable -> 503 at once (``Retry-After``), nothing produced;
* a body that can't be masked with certainty (too deep, undecodable, too large) -> 422, and a
  dead letter *without* the body (reason, provider, transaction id) on ``dead_letters``;
* otherwise the raw body goes to topic ``psp.<provider>`` (keyed by the account login, else the
  transaction id; headers ``provider``, ``content-type``, ``received_at``, ``server``), and the
  provider gets its 2xx only after Kafka confirmed the write (acks=all, idempotent producer).
  No confirmation within ``psp.publish_timeout_s`` -> 503, so the provider re-sends: nothing
  acknowledged is ever lost.

Full card numbers are masked (BIN + last 4 kept) before anything is written, in every key and
spelling (`connectors.psp.masking`); a masked body carries the header ``pan_masked: 1``.
Duplicates are stopped twice: a bounded in-memory LRU of acknowledged ids (and concurrent
identical requests share one publish), and — after a restart, or for a re-send the LRU has
forgotten — downstream, where the operation key and version make
the copy harmless (see `connectors.psp.common`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import resource
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

from confluent_kafka import KafkaError, KafkaException, Producer
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.requests import ClientDisconnect

from connectors.fields import Rejected
from connectors.psp.common import MaskingError, Routing, SignatureError, mask_body, provider_modules
from connectors.psp.replay_guard import ReplayGuard
from connectors.psp.settings import PspSettings
from pipelines.config import ReceiverConfig

if TYPE_CHECKING:
    import uvicorn

    from pipelines.config import Settings

log = logging.getLogger(__name__)


class PublishError(Exception):
    """Kafka did not confirm the write (error or timeout): the provider must re-send."""


class Publisher(Protocol):
    """Writes one message and returns only once it is durably stored (raises otherwise)."""

    async def publish(self, topic: str, key: bytes | None, value: bytes,
                      headers: list[tuple[str, bytes]], timestamp_ms: int) -> None: ...


class KafkaHealth:
    """Whether Kafka answers, as the publisher last saw it: a metadata probe (`KafkaPublisher`
    runs one every ``probe_s``, and with backoff from 0.25 s while Kafka is down), delivery
    reports and librdkafka's all-brokers-down error. Logs the outage once per `log_every_s`."""

    def __init__(self, log_every_s: float = 30.0) -> None:
        self.log_every_s = log_every_s
        self.up = True  # until something says otherwise: a restart must not refuse blindly
        self.down_since: float | None = None
        self.reason = ""
        self.outages = 0
        self.refused = 0  # webhooks answered 503 because of the outage
        self._logged_at = 0.0
        self._lock = threading.Lock()

    def mark_up(self) -> None:
        with self._lock:
            if self.up:
                return
            down_for = time.monotonic() - (self.down_since or time.monotonic())
            self.up, self.down_since, self.reason = True, None, ""
            refused, self.refused = self.refused, 0
        log.warning("Kafka reachable again after %.1fs (%d webhooks answered 503 meanwhile)",
                    down_for, refused)

    def mark_down(self, reason: str) -> None:
        now = time.monotonic()
        with self._lock:
            self.reason = reason
            if not self.up:
                return
            self.up, self.down_since, self.outages = False, now, self.outages + 1
            self._logged_at = now
        log.warning("Kafka unreachable (%s): webhooks are answered 503 until it is back", reason)

    def down_for(self) -> float:
        since = self.down_since
        return 0.0 if since is None else time.monotonic() - since

    def report(self) -> None:
        """While down, one warning per `log_every_s` (not one per refused webhook)."""
        now = time.monotonic()
        with self._lock:
            if self.up or now - self._logged_at < self.log_every_s:
                return
            self._logged_at = now
            refused = self.refused
        log.warning("Kafka still unreachable after %.0fs (%s); %d webhooks answered 503 so far",
                    self.down_for(), self.reason, refused)


# Delivery errors that mean "no broker answers" rather than "this message was bad".
_OUTAGE_CODES = frozenset({KafkaError._MSG_TIMED_OUT, KafkaError._TRANSPORT,
                           KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT,
                           KafkaError.REQUEST_TIMED_OUT, KafkaError.NOT_ENOUGH_REPLICAS})


class KafkaPublisher:
    """A confluent-kafka producer (acks=all, idempotent) whose deliveries resolve asyncio
    futures: messages are produced from the event loop, a background thread polls the producer
    and hands the delivery reports back with ``loop.call_soon_threadsafe`` (batched).

    A second thread watches Kafka (`health`): librdkafka reconnects by itself (backoff 0.1 s
    to 2 s) and retries within ``timeout_s``; the receiver answers 503 at once while Kafka is
    known to be down. A fatal producer error (idempotence state lost) replaces the producer."""

    def __init__(self, bootstrap: str, *, timeout_s: float = 10.0,
                 extra: Mapping[str, str] | None = None, probe_s: float = 2.0,
                 log_every_s: float = 30.0) -> None:
        self.timeout_s = timeout_s
        self.probe_s = probe_s
        self.health = KafkaHealth(log_every_s)
        self._fatal = False
        self._config: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": "true",
            "linger.ms": "2",
            "compression.type": "lz4",
            "message.timeout.ms": str(int(timeout_s * 1000)),
            "queue.buffering.max.messages": "200000",
            "reconnect.backoff.ms": "100",
            "reconnect.backoff.max.ms": "2000",
            **dict(extra or {}),
            "error_cb": self._on_error,
        }
        self._producer = Producer(self._config)
        self._done: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None], Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="kafka-publisher-poll",
                                        daemon=True)
        self._thread.start()
        self._watcher = threading.Thread(target=self._watch, name="kafka-publisher-watch",
                                         daemon=True)
        self._watcher.start()

    @property
    def ready(self) -> bool:
        return self.health.up

    def _on_error(self, err: KafkaError) -> None:  # librdkafka's thread
        if err.fatal():
            self._fatal = True
        if err.code() == KafkaError._ALL_BROKERS_DOWN:
            self.health.mark_down(err.str())

    async def publish(self, topic: str, key: bytes | None, value: bytes,
                      headers: list[tuple[str, bytes]], timestamp_ms: int) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        health = self.health

        def on_delivery(err: Any, _msg: Any) -> None:  # runs in the poll thread
            if err is None:
                health.mark_up()
            elif err.code() in _OUTAGE_CODES:
                health.mark_down(err.str())
            with self._lock:
                self._done.append((loop, fut, err))

        kafka_headers: list[tuple[str, str | bytes | None]] = list(headers)
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, headers=kafka_headers,
                                       timestamp=timestamp_ms, on_delivery=on_delivery)
                break
            except BufferError:  # local queue full: give deliveries a moment
                if time.monotonic() > deadline:
                    raise PublishError("producer queue full") from None
                await asyncio.sleep(0.005)
            except KafkaException as exc:
                raise PublishError(str(exc)) from None
        try:
            await asyncio.wait_for(fut, max(0.1, deadline - time.monotonic()) + 1.0)
        except TimeoutError:
            raise PublishError(f"no delivery report within {self.timeout_s:g}s") from None

    def _poll(self) -> None:
        while not self._stop.is_set():
            producer = self._producer
            producer.poll(0.05)
            if self._fatal:
                self._replace(producer)
            self._hand_over()
        self._hand_over()

    def _replace(self, old: Producer) -> None:
        """After a fatal error the producer accepts nothing more: fail what it holds (those
        webhooks are answered 503 and re-sent) and carry on with a new one."""
        self._fatal = False
        log.error("the Kafka producer hit a fatal error; replacing it")
        with contextlib.suppress(KafkaException):
            old.purge()
        old.poll(0)
        self._producer = Producer(self._config)

    def _watch(self) -> None:
        """Probe Kafka with a metadata request: every `probe_s` while it is up, with backoff
        (0.25 s doubling to `probe_s`) while it is down."""
        delay = 0.0
        while not self._stop.wait(delay):
            try:
                self._producer.list_topics(timeout=max(1.0, min(self.probe_s, 5.0)))
            except KafkaException as exc:
                self.health.mark_down(f"metadata request failed: {exc.args[0]}"
                                      if exc.args else "metadata request failed")
            else:
                self.health.mark_up()
            self.health.report()
            delay = self.probe_s if self.health.up else min(max(delay * 2, 0.25), self.probe_s)

    def _hand_over(self) -> None:
        with self._lock:
            done, self._done = self._done, []
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[None], Any]]] = {}
        for loop, fut, err in done:
            by_loop.setdefault(loop, []).append((fut, err))
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_resolve, items)

    def close(self, timeout_s: float = 10.0) -> int:
        """Flush what is queued and stop the threads; returns messages left unsent."""
        left: int = self._producer.flush(timeout_s)
        self._stop.set()
        self._thread.join(timeout=5)
        self._watcher.join(timeout=10)
        self._producer = None  # type: ignore[assignment]  # let librdkafka disconnect now
        return left


def _resolve(items: list[tuple[asyncio.Future[None], Any]]) -> None:
    for fut, err in items:
        if fut.done():
            continue
        if err is None:
            fut.set_result(None)
        else:
            fut.set_exception(PublishError(str(err)))


class _Seen:
    """A bounded LRU of acknowledged (provider, dedupe id)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, key: str) -> bool:
        if key in self._ids:
            self._ids.move_to_end(key)
            return True
        return False

    def add(self, key: str) -> None:
        if self.size <= 0:
            return
        self._ids[key] = None
        self._ids.move_to_end(key)
        while len(self._ids) > self.size:
            self._ids.popitem(last=False)


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("brokerstream_webhook_requests_total",
                                "Webhook requests, by provider and HTTP status code",
                                ["provider", "code"], registry=self.registry)
        self.latency = Histogram("brokerstream_webhook_request_seconds",
                                 "Webhook handling time, reading the body to answering",
                                 ["provider"], registry=self.registry,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                          0.5, 1, 2.5, 5, 10))
        self.rejected = Counter("brokerstream_webhook_rejected_total",
                                "Webhooks not accepted, by provider and reason",
                                ["provider", "reason"], registry=self.registry)
        self.published = Counter("brokerstream_webhook_published_total",
                                 "Webhooks written to Kafka and acknowledged", ["provider"],
                                 registry=self.registry)
        self.duplicates = Counter("brokerstream_webhook_duplicates_total",
                                  "Webhooks acknowledged without publishing (already seen)",
                                  ["provider"], registry=self.registry)
        self.pans_masked = Counter("brokerstream_webhook_pans_masked_total",
                                   "Full card numbers masked before publishing", ["provider"],
                                   registry=self.registry)
        self.dead_letters = Counter("brokerstream_webhook_dead_letters_total",
                                    "Refused webhooks recorded on the dead-letter topic (no body)",
                                    ["provider", "reason"], registry=self.registry)
        self.connections_refused = Counter(
            "brokerstream_webhook_connections_refused_total",
            "Connections answered and closed by the HTTP protocol, by reason (header_timeout, "
            "header_too_large, over_capacity)", ["reason"], registry=self.registry)
        self.connections = Gauge("brokerstream_webhook_open_connections",
                                 "Open HTTP connections to the receiver", registry=self.registry)
        self.kafka_up = Gauge("brokerstream_webhook_kafka_up",
                              "1 while the receiver can reach Kafka, else 0",
                              registry=self.registry)
        self.kafka_down_seconds = Gauge("brokerstream_webhook_kafka_down_seconds",
                                        "How long Kafka has been unreachable (0 while it is up)",
                                        registry=self.registry)
        self.kafka_outages = Gauge("brokerstream_webhook_kafka_outages",
                                   "Kafka outages seen since the receiver started",
                                   registry=self.registry)


def _received_at(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def create_app(settings: Settings | PspSettings, publisher: Publisher, *,
               clock: Callable[[], float] = time.time,
               kafka_clock: Callable[[], float] | None = None) -> FastAPI:
    """The receiver as an ASGI app. `settings` is the engine Settings (or just its `psp`
    section); `clock` is the wall clock used for the stale checks and `received_at` (tests move
    it; the demo gives its simulated clock); `kafka_clock` (default `clock`) stamps the Kafka
    messages (the demo's is the wall clock: Kafka refuses messages stamped over an hour ahead)."""
    stamp = kafka_clock or clock
    psp: PspSettings = settings if isinstance(settings, PspSettings) else settings.psp
    prefix = "" if isinstance(settings, PspSettings) else settings.kafka.topic_prefix
    receiver = ReceiverConfig() if isinstance(settings, PspSettings) else settings.receiver
    dl_topic = prefix + ("dead_letters" if isinstance(settings, PspSettings)
                         else settings.kafka.dead_letter_topic)
    # The Kafka publisher's view of Kafka; test doubles and other publishers have none.
    health: KafkaHealth | None = getattr(publisher, "health", None)
    modules: dict[str, ModuleType] = provider_modules()
    secrets = {name: psp.secret_for(name) for name in psp.providers}
    metrics = _Metrics()
    seen = _Seen(psp.dedupe_cache_size)
    inflight: dict[str, asyncio.Future[bool]] = {}
    guard = ReplayGuard(psp)  # first sightings on disk: replays and edited copies refused

    app = FastAPI(title="brokerstream webhooks", docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.metrics = metrics
    if health is not None:
        metrics.kafka_up.set_function(lambda: 1.0 if health.up else 0.0)
        metrics.kafka_down_seconds.set_function(health.down_for)
        metrics.kafka_outages.set_function(lambda: float(health.outages))

    def refuse(provider: str, status: int, reason: str, detail: str = "",
               headers: Mapping[str, str] | None = None) -> Response:
        metrics.rejected.labels(provider, reason).inc()
        if detail and reason != "kafka_unavailable":  # that one is logged once per interval
            log.info("webhook %s refused (%d %s): %s", provider, status, reason, detail)
        body: dict[str, str] = {"error": reason}
        if detail and status != 401:
            body["detail"] = detail
        return JSONResponse(body, status_code=status, headers=dict(headers or {}))

    async def read_body(request: Request, limit: int) -> bytes | None:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                return None
        return bytes(body)

    async def dead_letter(provider: str, route: Routing, dedupe: str, exc: MaskingError,
                          size: int, now: float) -> bool:
        """Record a refused body on the dead-letter topic — what and why, never its bytes (it
        may hold a card number we could not mask). False when Kafka didn't confirm."""
        headers = [("reason", f"{exc.code}: {exc.reason}"[:500].encode()),
                   ("source", f"webhooks/{provider}".encode()), ("stage", b"decode"),
                   ("provider", provider.encode()), ("received_at", _received_at(now).encode()),
                   ("dedupe_id", dedupe[:200].encode()), ("body_bytes", str(size).encode()),
                   ("raw_omitted", b"1")]
        try:
            await asyncio.wait_for(publisher.publish(dl_topic, route.key.encode() or None, b"",
                                                     headers, int(stamp() * 1000)),
                                   psp.publish_timeout_s + 2.0)
        except Exception as exc2:  # unconfirmed: the provider gets a 503 and sends it again
            log.warning("recording a refused %s webhook as a dead letter failed: %s", provider,
                        exc2 or type(exc2).__name__)
            return False
        metrics.dead_letters.labels(provider, exc.code).inc()
        return True

    async def handle(provider: str, request: Request) -> Response:
        module = modules.get(provider)
        cfg = psp.providers.get(provider)
        label = provider if module is not None else "unknown"
        if module is None or cfg is None:
            return refuse(label, 404, "unknown_provider" if module is None else "not_configured")
        declared = request.headers.get("content-length", "")
        if declared:
            if not re.fullmatch(r"[0-9]{1,15}", declared):
                return refuse(provider, 400, "bad_content_length", declared[:20])
            if int(declared) > psp.max_body_bytes:
                return refuse(provider, 413, "too_large", f"{declared} bytes declared")
        try:
            async with asyncio.timeout(receiver.body_timeout_s):
                body = await read_body(request, psp.max_body_bytes)
        except TimeoutError:
            return refuse(provider, 408, "body_timeout",
                          f"body not received within {receiver.body_timeout_s:g}s",
                          {"connection": "close"})
        except ClientDisconnect:  # nobody to answer: one line, no traceback
            metrics.rejected.labels(provider, "client_disconnected").inc()
            log.info("webhook %s: the client disconnected before sending the whole body",
                     provider)
            return Response(status_code=400)
        if body is None:
            return refuse(provider, 413, "too_large", f"over {psp.max_body_bytes} bytes")
        now = clock()
        secret = secrets.get(provider, "")
        headers = request.headers
        try:
            module.verify_for(body, headers, cfg, secret, now)
            repeat = guard.admit(provider, body, headers, now)  # True: published already
        except SignatureError as exc:
            return refuse(provider, 401, exc.code, exc.reason)
        except Rejected as exc:
            return refuse(provider, 400, "malformed", exc.reason)
        try:
            dedupe: str = module.dedupe_id(body, headers)
            route: Routing = module.routing(body, headers)
        except Rejected as exc:
            return refuse(provider, 400, "malformed", exc.reason)
        key = f"{provider}:{dedupe}"
        if key in seen or repeat:
            metrics.duplicates.labels(provider).inc()
            return ack(module, body, secret, now)
        pending = inflight.get(key)
        if pending is not None:  # the same notification is being published right now
            ok = await asyncio.shield(pending)
            if ok:
                metrics.duplicates.labels(provider).inc()
                return ack(module, body, secret, now)
            return refuse(provider, 503, "kafka_unavailable", "the identical request failed")
        if health is not None and not health.up:  # don't hold the PSP for a timeout: re-send later
            health.refused += 1
            return refuse(provider, 503, "kafka_unavailable", "Kafka is unreachable",
                          {"retry-after": "30"})
        try:
            value, masked = mask_body(body, module.CONTENT_TYPE.endswith("urlencoded"),
                                      psp.max_body_bytes)
        except MaskingError as exc:
            if not await dead_letter(provider, route, dedupe, exc, len(body), now):
                return refuse(provider, 503, "kafka_unavailable", "dead letter not confirmed")
            return refuse(provider, 422, "unmaskable", exc.reason)
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        inflight[key] = done
        ok = False
        try:
            out_headers = [
                ("provider", provider.encode()),
                ("content-type", (request.headers.get("content-type")
                                  or module.CONTENT_TYPE).encode()),
                ("received_at", _received_at(now).encode()),
                ("server", route.server.encode()),
            ]
            if masked:
                metrics.pans_masked.labels(provider).inc(masked)
                out_headers.append(("pan_masked", b"1"))
            try:
                await asyncio.wait_for(
                    publisher.publish(prefix + module.TOPIC, route.key.encode() or None, value,
                                      out_headers, int(stamp() * 1000)),
                    psp.publish_timeout_s + 2.0,
                )
            except (PublishError, TimeoutError, KafkaException, BufferError) as exc:
                return refuse(provider, 503, "kafka_unavailable", str(exc) or type(exc).__name__)
            except Exception as exc:  # whatever went wrong, unconfirmed means "send it again"
                log.exception("publishing a %s webhook failed", provider)
                return refuse(provider, 503, "kafka_unavailable", type(exc).__name__)
            ok = True
            seen.add(key)
            guard.published(provider, body, headers)
            metrics.published.labels(provider).inc()
            return ack(module, body, secret, now)
        finally:
            inflight.pop(key, None)
            done.set_result(ok)

    def ack(module: ModuleType, body: bytes, secret: str, now: float) -> Response:
        content, media_type, extra = module.ack(body, secret, now)
        return Response(content=content, media_type=media_type, headers=extra)

    async def webhook(request: Request) -> Response:
        started = time.perf_counter()
        provider: str = request.path_params["provider"]
        response = await handle(provider, request)
        label = provider if provider in modules else "unknown"
        metrics.requests.labels(label, str(response.status_code)).inc()
        metrics.latency.labels(label).observe(time.perf_counter() - started)
        return response

    # a plain Starlette route: no FastAPI parameter solving on the hot path
    app.router.add_route("/webhooks/{provider}", webhook, methods=["POST"])

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        """Alive (the process answers); says whether Kafka is reachable but stays 200."""
        kafka = "unknown" if health is None else "up" if health.up else "down"
        return {"status": "ok", "providers": sorted(psp.providers), "kafka": kafka}

    @app.get("/readyz")
    async def readyz() -> Response:
        """Ready to acknowledge webhooks: 503 while Kafka is unreachable (take it out of the
        load balancer; PSPs would be answered 503 anyway)."""
        if health is None or health.up:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "kafka_unavailable", "reason": health.reason,
                             "down_for_s": round(health.down_for(), 1)}, status_code=503)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


_408 = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"connection: close\r\ncontent-length: 24\r\n\r\nrequest headers too slow")
_431 = (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; "
        b"charset=utf-8\r\nconnection: close\r\ncontent-length: 24\r\n\r\nrequest headers too large")


async def _over_capacity(scope: Any, receive: Any, send: Any) -> None:
    """What a connection beyond ``receiver.max_connections`` is served: 503, then closed."""
    await send({"type": "http.response.start", "status": 503,
                "headers": [(b"content-type", b"application/json"), (b"connection", b"close"),
                            (b"retry-after", b"5")]})
    await send({"type": "http.response.body", "body": b'{"error":"over_capacity"}'})


def receiver_protocol(receiver: ReceiverConfig,
                      on_refused: Callable[[str], None] = lambda _reason: None,
                      on_count: Callable[[int], None] = lambda _n: None) -> type[asyncio.Protocol]:
    """uvicorn's httptools HTTP/1.1 protocol plus what uvicorn lacks (its issue #157): a deadline
    for the request line and headers (from the connection's or the request's first byte; 408,
    closed), a size cap on them (431), and a connection cap (503 to the connections beyond it,
    served without touching the app). `timeout_keep_alive` only covers idle time between
    requests and is reset by every byte, so a client dribbling headers would hold its
    connection forever. The body deadline is the app's (``body_timeout_s``)."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    header_timeout, max_head = receiver.header_timeout_s, receiver.max_header_bytes
    cap = receiver.max_connections

    class ReceiverProtocol(HttpToolsProtocol):
        _head_timer: asyncio.TimerHandle | None = None
        _head_bytes = 0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            on_count(len(self.connections))
            if len(self.connections) > cap:
                self.app = _over_capacity  # this connection only
                on_refused("over_capacity")
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)
            on_count(len(self.connections))

        def _arm(self) -> None:
            if self._head_timer is None:
                self._head_bytes = 0
                self._head_timer = self.loop.call_later(header_timeout, self._head_timeout)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def on_message_begin(self) -> None:  # the first byte of a request
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._head_timer is not None and not self.transport.is_closing():
                self._head_bytes += len(data)  # still inside the request line and headers
                if self._head_bytes > max_head:
                    self._refuse(_431, "header_too_large")

        def _head_timeout(self) -> None:
            self._head_timer = None
            self._refuse(_408, "header_timeout")

        def _refuse(self, answer: bytes, reason: str) -> None:
            self._disarm()
            if self.transport.is_closing():
                return
            on_refused(reason)
            if self.cycle is None or self.cycle.response_complete:  # never inside a response
                self.transport.write(answer)
            self.transport.close()

    return ReceiverProtocol


def server_config(app: FastAPI, receiver: ReceiverConfig, *, host: str = "127.0.0.1",
                  port: int = 0, log_level: str = "info") -> uvicorn.Config:
    """uvicorn settings for the receiver: the protocol above (header deadline, connection cap),
    the keep-alive timeout, no access log."""
    import uvicorn

    metrics: _Metrics = app.state.metrics
    protocol = receiver_protocol(
        receiver, on_refused=lambda reason: metrics.connections_refused.labels(reason).inc(),
        on_count=metrics.connections.set)
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                          http=protocol, loop="auto", timeout_keep_alive=max(1, round(receiver.keep_alive_s)),
                          backlog=min(4096, receiver.max_connections))


def raise_open_files_limit(wanted: int) -> int:
    """Lift the soft RLIMIT_NOFILE towards `wanted` (at most the hard limit): a cap of N
    connections needs N descriptors. Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return int(soft)


def run_webhooks(settings: Settings, port: int, host: str = "127.0.0.1", *, bootstrap: str) -> None:
    """Serve the receiver with uvicorn until interrupted, publishing to Kafka at `bootstrap` (the
    caller resolves it: `brokerstream.engine.kafka_bootstrap`); creates missing topics first."""
    import uvicorn

    from pipelines.topics import ensure_kafka_topics

    ensure_kafka_topics(settings, bootstrap)
    receiver = settings.receiver
    limit = raise_open_files_limit(receiver.max_connections + 256)
    if limit < receiver.max_connections + 64:
        log.warning("open-files limit %d is below receiver.max_connections %d", limit,
                    receiver.max_connections)
    publisher = KafkaPublisher(bootstrap, timeout_s=settings.psp.publish_timeout_s,
                               extra=settings.kafka.extra, probe_s=receiver.kafka_probe_s,
                               log_every_s=receiver.kafka_log_every_s)
    try:
        app = create_app(settings, publisher)
        log.info("webhook receiver on http://%s:%d, Kafka %s, providers %s", host, port,
                 bootstrap, ", ".join(sorted(settings.psp.providers)) or "(none configured)")
        uvicorn.Server(server_config(app, receiver, host=host, port=port,
                                     log_level=settings.log_level)).run()
    finally:
        left = publisher.close()
        if left:
            log.warning("%d webhook messages were still unconfirmed at shutdown", left)
