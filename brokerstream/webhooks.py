"""The payment-provider webhook receiver: verify, de-duplicate, publish to Kafka, then answer.

``POST /webhooks/{provider}`` for skrill, praxis, coinspaid, nuvei and stripe; ``GET /healthz``;
``GET /metrics`` (Prometheus). Rules, in order:

* a provider we don't know, or one without a ``psp.providers`` entry -> 404;
* a body over ``psp.max_body_bytes`` -> 413 (the Content-Length header and the bytes read);
* a bad or missing signature, a foreign merchant/key, or a stale signed timestamp -> 401, and
  nothing is published;
* a body that can't be read (no transaction id or status to de-duplicate on) -> 400;
* a notification already acknowledged (same provider id + status) -> 200, not published again;
* otherwise the raw body goes to topic ``psp.<provider>`` (keyed by the account login, else the
  transaction id; headers ``provider``, ``content-type``, ``received_at``, ``server``), and the
  provider gets its 2xx only after Kafka confirmed the write (acks=all, idempotent producer).
  No confirmation within ``psp.publish_timeout_s`` -> 503, so the provider re-sends: nothing
  acknowledged is ever lost.

Full card numbers are masked (BIN + last 4 kept) before anything is written; a masked body
carries the header ``pan_masked: 1``. Duplicates are stopped twice: a bounded in-memory LRU of
acknowledged ids (and concurrent identical requests share one publish), and — after a restart,
or for a re-send the LRU has forgotten — downstream, where the operation key and version make
the copy harmless (see `connectors.psp.common`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

from confluent_kafka import KafkaException, Producer
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

from connectors.fields import Rejected
from connectors.psp.common import Routing, SignatureError, provider_modules, scrub_pans
from connectors.psp.settings import PspSettings

if TYPE_CHECKING:
    from brokerstream.config import Settings

log = logging.getLogger(__name__)


class PublishError(Exception):
    """Kafka did not confirm the write (error or timeout): the provider must re-send."""


class Publisher(Protocol):
    """Writes one message and returns only once it is durably stored (raises otherwise)."""

    async def publish(self, topic: str, key: bytes | None, value: bytes,
                      headers: list[tuple[str, bytes]], timestamp_ms: int) -> None: ...


class KafkaPublisher:
    """A confluent-kafka producer (acks=all, idempotent) whose deliveries resolve asyncio
    futures: messages are produced from the event loop, a background thread polls the producer
    and hands the delivery reports back with ``loop.call_soon_threadsafe`` (batched)."""

    def __init__(self, bootstrap: str, *, timeout_s: float = 10.0,
                 extra: Mapping[str, str] | None = None) -> None:
        self.timeout_s = timeout_s
        self._producer = Producer({
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": "true",
            "linger.ms": "2",
            "compression.type": "lz4",
            "message.timeout.ms": str(int(timeout_s * 1000)),
            "queue.buffering.max.messages": "200000",
            **dict(extra or {}),
        })
        self._done: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None], Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="kafka-publisher-poll",
                                        daemon=True)
        self._thread.start()

    async def publish(self, topic: str, key: bytes | None, value: bytes,
                      headers: list[tuple[str, bytes]], timestamp_ms: int) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        def on_delivery(err: Any, _msg: Any) -> None:  # runs in the poll thread
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
            self._producer.poll(0.05)
            self._hand_over()
        self._hand_over()

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
        """Flush what is queued and stop the poll thread; returns messages left unsent."""
        left: int = self._producer.flush(timeout_s)
        self._stop.set()
        self._thread.join(timeout=5)
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


def _received_at(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def create_app(settings: Settings | PspSettings, publisher: Publisher, *,
               clock: Callable[[], float] = time.time) -> FastAPI:
    """The receiver as an ASGI app. `settings` is the engine Settings (or just its `psp`
    section); `clock` is the wall clock used for the stale checks (tests move it)."""
    psp: PspSettings = settings if isinstance(settings, PspSettings) else settings.psp
    prefix = "" if isinstance(settings, PspSettings) else settings.kafka.topic_prefix
    modules: dict[str, ModuleType] = provider_modules()
    secrets = {name: psp.secret_for(name) for name in psp.providers}
    metrics = _Metrics()
    seen = _Seen(psp.dedupe_cache_size)
    inflight: dict[str, asyncio.Future[bool]] = {}

    app = FastAPI(title="brokerstream webhooks", docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.metrics = metrics

    def refuse(provider: str, status: int, reason: str, detail: str = "") -> Response:
        metrics.rejected.labels(provider, reason).inc()
        if detail:
            log.info("webhook %s refused (%d %s): %s", provider, status, reason, detail)
        body: dict[str, str] = {"error": reason}
        if detail and status != 401:
            body["detail"] = detail
        return JSONResponse(body, status_code=status)

    async def read_body(request: Request, limit: int) -> bytes | None:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                return None
        return bytes(body)

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
        body = await read_body(request, psp.max_body_bytes)
        if body is None:
            return refuse(provider, 413, "too_large", f"over {psp.max_body_bytes} bytes")
        now = clock()
        secret = secrets.get(provider, "")
        headers = request.headers
        try:
            module.verify_for(body, headers, cfg, secret, now)
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
        if key in seen:
            metrics.duplicates.labels(provider).inc()
            return ack(module, body, secret, now)
        pending = inflight.get(key)
        if pending is not None:  # the same notification is being published right now
            ok = await asyncio.shield(pending)
            if ok:
                metrics.duplicates.labels(provider).inc()
                return ack(module, body, secret, now)
            return refuse(provider, 503, "kafka_unavailable", "the identical request failed")
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        inflight[key] = done
        ok = False
        try:
            value, masked = scrub_pans(body, module.CONTENT_TYPE.endswith("urlencoded"))
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
                                      out_headers, int(now * 1000)),
                    psp.publish_timeout_s + 2.0,
                )
            except (PublishError, TimeoutError, KafkaException, BufferError) as exc:
                return refuse(provider, 503, "kafka_unavailable", str(exc) or type(exc).__name__)
            except Exception as exc:  # whatever went wrong, unconfirmed means "send it again"
                log.exception("publishing a %s webhook failed", provider)
                return refuse(provider, 503, "kafka_unavailable", type(exc).__name__)
            ok = True
            seen.add(key)
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
        return {"status": "ok", "providers": sorted(psp.providers)}

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def run_webhooks(settings: Settings, port: int, host: str = "127.0.0.1") -> None:
    """Serve the receiver with uvicorn until interrupted, publishing to the configured Kafka
    (the local broker when ``kafka.bootstrap`` is ``local``); creates missing topics first."""
    import uvicorn

    from brokerstream.engine import ensure_kafka_topics, kafka_bootstrap

    bootstrap = kafka_bootstrap(settings)
    ensure_kafka_topics(settings, bootstrap)
    publisher = KafkaPublisher(bootstrap, timeout_s=settings.psp.publish_timeout_s,
                               extra=settings.kafka.extra)
    try:
        app = create_app(settings, publisher)
        log.info("webhook receiver on http://%s:%d, Kafka %s, providers %s", host, port,
                 bootstrap, ", ".join(sorted(settings.psp.providers)) or "(none configured)")
        uvicorn.run(app, host=host, port=port, log_level=settings.log_level, access_log=False)
    finally:
        left = publisher.close()
        if left:
            log.warning("%d webhook messages were still unconfirmed at shutdown", left)
