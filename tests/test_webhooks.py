"""The webhook receiver: HTTP rules with an in-process recording publisher, and one end-to-end
run through a real local Kafka broker (marked ``kafka``).

Payload builders and signatures come from tests/test_psp_connectors.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient

from connectors.psp import skrill
from pipelines.config import Settings, parse_settings
from schemas.envelope import Envelope
from services.webhooks import KafkaPublisher, PublishError, create_app
from tests.test_psp_connectors import (
    CONFIG,
    NOW,
    PAN,
    SECRETS,
    coinspaid_doc,
    coinspaid_request,
    nuvei_form,
    praxis_doc,
    praxis_request,
    skrill_form,
    stripe_event,
    stripe_request,
)

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@dataclass
class Message:
    topic: str
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]
    timestamp_ms: int


class RecordingPublisher:
    """Keeps what would have gone to Kafka; can be told to fail or to be slow."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.fail = 0
        self.delay = 0.0
        self.calls = 0

    async def publish(self, topic: str, key: bytes | None, value: bytes,
                      headers: list[tuple[str, bytes]], timestamp_ms: int) -> None:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            self.fail -= 1
            raise PublishError("broker unavailable")
        self.messages.append(Message(topic, key, value, dict(headers), timestamp_ms))


def make_cfg(kafka: dict[str, Any] | None = None, **psp: Any) -> Settings:
    doc: dict[str, Any] = {**CONFIG, "psp": {**CONFIG["psp"], **psp}}
    if kafka:
        doc["kafka"] = kafka
    return parse_settings(doc, "test")


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def client(publisher: RecordingPublisher) -> Iterator[TestClient]:
    with TestClient(create_app(make_cfg(), publisher, clock=lambda: NOW)) as c:
        yield c


def requests_for(provider: str) -> tuple[bytes, dict[str, str]]:
    """A valid, signed notification for each provider (account ACME-MT5-Live:1001)."""
    if provider == "skrill":
        return skrill_form(), FORM
    if provider == "praxis":
        return praxis_request(praxis_doc())
    if provider == "coinspaid":
        body = orjson.dumps(coinspaid_doc())
        return body, coinspaid_request(body)
    if provider == "nuvei":
        return nuvei_form(), FORM
    body = orjson.dumps(stripe_event())
    return body, stripe_request(body)


PROVIDERS = ["skrill", "praxis", "coinspaid", "nuvei", "stripe"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_valid_notification_is_published_then_acknowledged(
    provider: str, client: TestClient, publisher: RecordingPublisher
) -> None:
    body, headers = requests_for(provider)
    r = client.post(f"/webhooks/{provider}", content=body, headers=headers)
    assert r.status_code == 200, r.text
    [msg] = publisher.messages
    assert msg.topic == f"psp.{provider}"
    assert msg.value == body  # the raw body, byte for byte
    assert msg.key == b"1001"
    assert msg.headers["provider"] == provider.encode()
    assert msg.headers["server"] == b"ACME-MT5-Live"
    assert msg.headers["content-type"] == headers["Content-Type"].encode()
    assert msg.headers["received_at"] == b"2025-11-24T16:00:00.000Z"
    assert msg.timestamp_ms == NOW * 1000


def test_each_provider_gets_the_answer_it_expects(client: TestClient) -> None:
    r = client.post("/webhooks/skrill", content=skrill_form(), headers=FORM)
    assert (r.text, r.headers["content-type"].split(";")[0]) == ("OK", "text/plain")
    r = client.post("/webhooks/praxis", content=praxis_request(praxis_doc())[0],
                    headers=praxis_request(praxis_doc())[1])
    answer = r.json()
    assert answer == {"status": 0, "description": "Ok", "version": "1.3", "timestamp": NOW}
    expected = hashlib.sha384(f"0{NOW}{SECRETS['praxis']}".encode()).hexdigest()
    assert r.headers["GT-Authentication"] == expected
    body = orjson.dumps(stripe_event())
    assert client.post("/webhooks/stripe", content=body,
                       headers=stripe_request(body)).json() == {"received": True}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_bad_signature_is_401_and_writes_nothing(
    provider: str, client: TestClient, publisher: RecordingPublisher
) -> None:
    body, headers = requests_for(provider)
    tampered = body.replace(b"1001", b"1002")
    assert tampered != body
    assert client.post(f"/webhooks/{provider}", content=tampered,
                       headers=headers).status_code == 401
    unsigned = {k: v for k, v in headers.items() if k == "Content-Type"}
    if provider in ("skrill", "nuvei"):  # the signature is a form field
        body = body.split(b"&md5sig=")[0].split(b"&advanceResponseChecksum=")[0]
    assert client.post(f"/webhooks/{provider}", content=body, headers=unsigned).status_code == 401
    assert publisher.calls == 0
    metrics = client.get("/metrics").text
    assert f'brokerstream_webhook_requests_total{{code="401",provider="{provider}"}} 2.0' in metrics


def test_stale_signature_is_401(publisher: RecordingPublisher) -> None:
    app = create_app(make_cfg(), publisher, clock=lambda: NOW + 301)
    with TestClient(app) as client:
        body = orjson.dumps(stripe_event())
        r = client.post("/webhooks/stripe", content=body, headers=stripe_request(body))
        assert r.status_code == 401 and r.json() == {"error": "stale"}
        metrics = client.get("/metrics").text
    assert 'brokerstream_webhook_rejected_total{provider="stripe",reason="stale"} 1.0' in metrics
    assert publisher.calls == 0


def test_malformed_body_is_400(client: TestClient, publisher: RecordingPublisher) -> None:
    body = b"this is not json"  # correctly signed (CoinsPaid signs the raw body) but unreadable
    r = client.post("/webhooks/coinspaid", content=body, headers=coinspaid_request(body))
    assert r.status_code == 400 and r.json()["error"] == "malformed"
    body = orjson.dumps({k: v for k, v in coinspaid_doc().items() if k != "status"})
    r = client.post("/webhooks/coinspaid", content=body, headers=coinspaid_request(body))
    assert r.status_code == 400 and "status" in r.json()["detail"]
    r = client.post("/webhooks/skrill", content=b"\xff\xfe=\x00", headers=FORM)
    assert r.status_code == 400
    assert publisher.calls == 0


def test_too_large_is_413_by_header_and_by_bytes_read(publisher: RecordingPublisher) -> None:
    with TestClient(create_app(make_cfg(max_body_bytes=2048), publisher,
                               clock=lambda: NOW)) as client:
        big = b"x" * 4096
        r = client.post("/webhooks/stripe", content=big, headers={"Content-Type": "a/b"})
        assert r.status_code == 413

        def chunks() -> Iterator[bytes]:  # no Content-Length: only the bytes read tell
            for _ in range(8):
                yield b"y" * 512

        r = client.post("/webhooks/stripe", content=chunks())
        assert r.status_code == 413
        r = client.post("/webhooks/skrill", content=b"x", headers={"Content-Length": "abc"})
        assert r.status_code == 400
    assert publisher.calls == 0


def test_unknown_or_unconfigured_provider_is_404(publisher: RecordingPublisher) -> None:
    only_skrill = {"providers": {"skrill": CONFIG["psp"]["providers"]["skrill"]}}
    with TestClient(create_app(make_cfg(**only_skrill), publisher)) as client:
        assert client.post("/webhooks/paypal", content=b"{}").status_code == 404
        assert client.post("/webhooks/stripe", content=b"{}").status_code == 404
        assert client.get("/healthz").json() == {"status": "ok", "providers": ["skrill"],
                                                 "kafka": "unknown"}
        metrics = client.get("/metrics").text
    assert 'brokerstream_webhook_requests_total{code="404",provider="unknown"} 1.0' in metrics
    assert 'reason="not_configured"' in metrics


def test_duplicate_is_acknowledged_but_not_published_again(
    client: TestClient, publisher: RecordingPublisher
) -> None:
    for _ in range(3):
        assert client.post("/webhooks/skrill", content=skrill_form(), headers=FORM).text == "OK"
    # the next status of the same transaction is new
    assert client.post("/webhooks/skrill", content=skrill_form("-3"), headers=FORM).text == "OK"
    assert [m.value for m in publisher.messages] == [skrill_form(), skrill_form("-3")]
    metrics = client.get("/metrics").text
    assert 'brokerstream_webhook_duplicates_total{provider="skrill"} 2.0' in metrics
    assert 'brokerstream_webhook_published_total{provider="skrill"} 2.0' in metrics


def test_kafka_not_confirming_is_503_and_the_retry_goes_through(
    client: TestClient, publisher: RecordingPublisher
) -> None:
    publisher.fail = 1
    body, headers = requests_for("stripe")
    r = client.post("/webhooks/stripe", content=body, headers=headers)
    assert r.status_code == 503 and publisher.messages == []
    r = client.post("/webhooks/stripe", content=body, headers=headers)  # the PSP re-sends
    assert r.status_code == 200 and len(publisher.messages) == 1


def test_slow_kafka_times_out_with_503(publisher: RecordingPublisher) -> None:
    publisher.delay = 5.0
    app = create_app(make_cfg(publish_timeout_s=0.2), publisher, clock=lambda: NOW)

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            body, headers = requests_for("skrill")
            return await asyncio.wait_for(c.post("/webhooks/skrill", content=body,
                                                 headers=headers), 10)

    started = asyncio.run(asyncio.wait_for(go(), 15))
    assert started.status_code == 503


def test_concurrent_identical_requests_publish_once(publisher: RecordingPublisher) -> None:
    publisher.delay = 0.2
    app = create_app(make_cfg(), publisher, clock=lambda: NOW)

    async def go() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            body, headers = requests_for("coinspaid")
            rs = await asyncio.gather(*(c.post("/webhooks/coinspaid", content=body,
                                               headers=headers) for _ in range(5)))
            return [r.status_code for r in rs]

    assert asyncio.run(go()) == [200] * 5
    assert len(publisher.messages) == 1


def test_full_card_numbers_are_masked_before_publishing(
    client: TestClient, publisher: RecordingPublisher
) -> None:
    doc = praxis_doc(card={"card_number": PAN, "card_exp": "12/2024"})
    body, headers = praxis_request(doc)
    assert client.post("/webhooks/praxis", content=body, headers=headers).status_code == 200
    [msg] = publisher.messages
    assert PAN.encode() not in msg.value and b"411111******1111" in msg.value
    assert msg.headers["pan_masked"] == b"1"
    assert orjson.loads(msg.value)["transaction"]["tid"] == 5501


# -- end to end through a real broker ------------------------------------------------------


@pytest.mark.kafka
def test_real_kafka_every_acknowledged_webhook_exactly_once(kafka_bootstrap: str) -> None:
    """Signed webhooks (each sent twice) through the app and the real KafkaPublisher into the
    session's local broker (conftest: LocalKafka + ensure_jars, stopped at the end), consumed
    back: every acknowledged notification is in Kafka exactly once."""
    from confluent_kafka import Consumer

    from pipelines.topics import ensure_topics

    prefix = f"t{uuid.uuid4().hex[:8]}."
    cfg = make_cfg(kafka={"bootstrap": kafka_bootstrap, "topic_prefix": prefix})
    topics = [f"{prefix}psp.{p}" for p in PROVIDERS]
    ensure_topics(kafka_bootstrap, dict.fromkeys(topics, 3))
    publisher = KafkaPublisher(kafka_bootstrap, timeout_s=15)
    sent: list[bytes] = []
    with TestClient(create_app(cfg, publisher, clock=lambda: NOW)) as client:
        for i in range(40):  # 40 transactions x 2 states, every notification sent twice
            for status in ("0", "2"):
                body = skrill_form(status, transaction_id=f"ACME-MT5-Live:1001:dep-{i}",
                                   mb_transaction_id=str(900_000 + i))
                for _ in range(2):
                    r = client.post("/webhooks/skrill", content=body, headers=FORM)
                    assert r.status_code == 200
                sent.append(body)
        for provider in PROVIDERS[1:]:
            body, headers = requests_for(provider)
            for _ in range(2):
                assert client.post(f"/webhooks/{provider}", content=body,
                                   headers=headers).status_code == 200
            sent.append(body)
    assert publisher.close() == 0

    consumer = Consumer({"bootstrap.servers": kafka_bootstrap,
                         "group.id": f"test-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe(topics)
    received: list[tuple[str, bytes, dict[str, bytes]]] = []
    idle = 0
    try:
        for _ in range(300):  # until everything arrived, then 2 s without anything more
            msg = consumer.poll(0.2)
            if msg is None or msg.error() is not None:
                idle = idle + 1 if len(received) >= len(sent) else 0
                if idle >= 10:
                    break
                continue
            pairs = cast(list[tuple[str, Any]], msg.headers() or [])
            received.append((msg.topic() or "", msg.value() or b"",
                             {k: v for k, v in pairs if isinstance(v, bytes)}))
    finally:
        consumer.close()
    counts = Counter(value for _, value, _ in received)
    assert sorted(counts) == sorted(sent)
    assert set(counts.values()) == {1}  # exactly once
    assert all(h["server"] == b"ACME-MT5-Live" for _, _, h in received)
    # and what the normaliser reads back from them
    first = next(v for t, v, _ in received if t == f"{prefix}psp.skrill")
    ops = skrill.read_skrill(Envelope("psp.skrill", first, NOW * 1000), cfg)
    assert ops[0].op_key.startswith("psp:skrill:ACME-MT5-Live:1001:dep-")
