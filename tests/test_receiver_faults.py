"""The receiver under abuse and faults: slow and oversized headers, slow bodies, clients that
vanish mid-body, a connection cap (a real uvicorn server on loopback, raw sockets), and a Kafka
outage with a private local broker stopped and started again (marked ``kafka``).

Nothing here asserts timing: deadlines are configured short and waited for generously.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from pipelines.config import ReceiverConfig
from services.webhooks import create_app, server_config
from tests.helpers import bound
from tests.test_psp_connectors import NOW, skrill_form
from tests.test_webhooks import FORM, RecordingPublisher, make_cfg

GENEROUS = 20.0  # seconds we are prepared to wait for a 0.5 s deadline on a busy machine


@contextlib.contextmanager
def serve(app: FastAPI, receiver: ReceiverConfig) -> Iterator[int]:
    """`app` behind the receiver's uvicorn set-up (server_config) in a thread; yields the port."""
    import uvicorn

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(server_config(app, receiver, log_level="info"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + GENEROUS
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(GENEROUS)
        sock.close()


def connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=GENEROUS)
    s.settimeout(GENEROUS)
    return s


def read_all(s: socket.socket) -> bytes:
    """Everything until the server closes the connection (or GENEROUS seconds)."""
    out = b""
    with contextlib.suppress(ConnectionResetError, TimeoutError):
        while chunk := s.recv(65536):
            out += chunk
    return out


def read_response(s: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(rest) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        rest += chunk
    return int(head.split(b" ")[1]), rest


def post(port: int, path: str, body: bytes, headers: dict[str, str]) -> int:
    with connect(port) as s:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n{head}"
                  "\r\n".encode() + body)
        return read_response(s)[0]


def honest(port: int, i: int) -> int:
    body = skrill_form(transaction_id=f"ACME-MT5-Live:1001:dep-f{i}",
                       mb_transaction_id=str(800_000 + i))
    return post(port, "/webhooks/skrill", body, FORM)


def wait_for(check: Callable[[], bool], timeout_s: float = GENEROUS) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


FAST = ReceiverConfig(header_timeout_s=0.5, body_timeout_s=0.5, max_connections=200,
                      max_header_bytes=4096)


@pytest.fixture
def fast_server() -> Iterator[tuple[int, RecordingPublisher, FastAPI]]:
    publisher = RecordingPublisher()
    app = create_app(make_cfg(), publisher, clock=lambda: NOW)
    with serve(app, FAST) as port:
        yield port, publisher, app


def metric(app: FastAPI, name: str, **labels: str) -> float:
    value = app.state.metrics.registry.get_sample_value(name, labels)
    return float(value or 0.0)


def test_slow_or_silent_headers_get_408_and_are_closed(
    fast_server: tuple[int, RecordingPublisher, FastAPI]
) -> None:
    port, _, app = fast_server
    with connect(port) as silent, connect(port) as dribbling:
        dribbling.sendall(b"POST /webhooks/skrill HTTP/1.1\r\nHost: t\r\n")
        with contextlib.suppress(OSError):  # a header line that never ends
            dribbling.sendall(b"X-Slow: a")
        for s in (silent, dribbling):
            answer = read_all(s)  # returns because the server closed the connection
            assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert metric(app, "brokerstream_webhook_connections_refused_total",
                  reason="header_timeout") >= 2
    assert honest(port, 1) == 200  # and the server is fine


def test_keep_alive_connection_gets_a_header_deadline_for_its_next_request(
    fast_server: tuple[int, RecordingPublisher, FastAPI]
) -> None:
    port, _, _ = fast_server
    with connect(port) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_response(s)[0] == 200
        s.sendall(b"GET /healthz HTTP/1.1\r\nHo")  # then nothing more
        assert read_all(s).startswith(b"HTTP/1.1 408 ")


def test_oversized_headers_get_431(fast_server: tuple[int, RecordingPublisher, FastAPI]) -> None:
    port, _, _ = fast_server
    with connect(port) as s:
        s.sendall(b"POST /webhooks/skrill HTTP/1.1\r\nHost: t\r\n" + b"X-Big: " + b"a" * 8000)
        assert read_all(s).startswith(b"HTTP/1.1 431 ")


def test_slow_body_gets_408(fast_server: tuple[int, RecordingPublisher, FastAPI]) -> None:
    port, publisher, _ = fast_server
    with connect(port) as s:
        s.sendall(b"POST /webhooks/skrill HTTP/1.1\r\nHost: t\r\nContent-Length: 500\r\n"
                  b"Content-Type: application/x-www-form-urlencoded\r\n\r\nstatus=2")
        status, body = read_response(s)
        assert status == 408 and b"body_timeout" in body
    assert publisher.messages == []


def test_client_gone_mid_body_is_one_log_line(
    fast_server: tuple[int, RecordingPublisher, FastAPI], caplog: pytest.LogCaptureFixture
) -> None:
    port, publisher, app = fast_server
    caplog.set_level(logging.INFO)
    with connect(port) as s:
        s.sendall(b"POST /webhooks/skrill HTTP/1.1\r\nHost: t\r\nContent-Length: 500\r\n"
                  b"Content-Type: application/x-www-form-urlencoded\r\n\r\nstatus=2&merch")
        time.sleep(0.1)
    assert wait_for(lambda: metric(app, "brokerstream_webhook_rejected_total",
                                   provider="skrill", reason="client_disconnected") == 1)
    time.sleep(0.2)  # anything logged after the fact would show up now
    gone = [r for r in caplog.records if "disconnected" in r.getMessage()]
    assert len(gone) == 1 and gone[0].name == "services.webhooks"
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert publisher.messages == []


def test_connections_over_the_cap_get_503_and_honest_requests_go_on() -> None:
    publisher = RecordingPublisher()
    app = create_app(make_cfg(), publisher, clock=lambda: NOW)
    capped = ReceiverConfig(header_timeout_s=60, max_connections=3)
    with serve(app, capped) as port:
        idle = [connect(port) for _ in range(3)]  # hold the cap
        assert wait_for(lambda: metric(app, "brokerstream_webhook_open_connections") >= 3)
        body = skrill_form(transaction_id="ACME-MT5-Live:1001:dep-cap")
        assert post(port, "/webhooks/skrill", body, FORM) == 503
        assert metric(app, "brokerstream_webhook_connections_refused_total",
                      reason="over_capacity") == 1
        assert publisher.messages == []
        for s in idle:
            s.close()
        assert wait_for(lambda: metric(app, "brokerstream_webhook_open_connections") <= 1)
        assert post(port, "/webhooks/skrill", body, FORM) == 200
    assert len(publisher.messages) == 1


def test_honest_requests_succeed_among_slow_clients(
    fast_server: tuple[int, RecordingPublisher, FastAPI]
) -> None:
    port, publisher, _ = fast_server
    slow = [connect(port) for _ in range(100)]
    try:
        for s in slow[::2]:
            s.sendall(b"POST /webhooks/skrill HTTP/1.1\r\nHost: t\r\n")
        codes = Counter(honest(port, 100 + i) for i in range(20))
        assert codes == {200: 20}
    finally:
        for s in slow:
            s.close()
    assert len(publisher.messages) == 20


# -- Kafka down for a while, then back ------------------------------------------------------------


@pytest.mark.kafka
def test_kafka_outage_503_until_back_then_nothing_lost_or_doubled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A private broker (stopping the session's would break other tests): acknowledged before
    the outage, refused (non-2xx, /readyz 503, kafka_up 0, a warning per interval) during it,
    and the PSP's re-sends acknowledged once it's back: each notification in Kafka once."""
    from confluent_kafka import Consumer

    from devtools.kafka.local_broker import LocalKafka, ensure_jars
    from pipelines.topics import ensure_topics
    from services.webhooks import KafkaPublisher

    ensure_jars(lambda _m: None)
    caplog.set_level(logging.INFO, logger="services.webhooks")
    broker = LocalKafka(tmp_path / "home", progress=lambda _m: None)
    state = broker.start()
    publisher: KafkaPublisher | None = None
    try:
        prefix = f"o{uuid.uuid4().hex[:8]}."
        topic = f"{prefix}psp.skrill"
        ensure_topics(state.bootstrap, {topic: 1})
        cfg = make_cfg(kafka={"bootstrap": state.bootstrap, "topic_prefix": prefix},
                       publish_timeout_s=3)
        publisher = KafkaPublisher(state.bootstrap, timeout_s=3, probe_s=0.5, log_every_s=1)

        def body(i: int) -> bytes:
            return skrill_form(transaction_id=f"ACME-MT5-Live:1001:out-{i}",
                               mb_transaction_id=str(700_000 + i))

        with TestClient(create_app(cfg, publisher, clock=lambda: NOW)) as client:
            def send(i: int) -> int:
                return client.post("/webhooks/skrill", content=body(i), headers=FORM).status_code

            def metric_text() -> str:
                return client.get("/metrics").text

            assert send(0) == 200
            assert client.get("/readyz").status_code == 200
            broker.stop()
            during = [send(1)]  # possibly before the outage is noticed: waits, then 503
            assert wait_for(lambda: client.get("/readyz").status_code == 503, 60)
            assert client.get("/healthz").json()["kafka"] == "down"
            assert "brokerstream_webhook_kafka_up 0.0" in metric_text()
            during += [send(i) for i in range(2, 6)]
            assert all(code == 503 for code in during), during
            assert wait_for(lambda: any("still unreachable" in r.getMessage()
                                        for r in caplog.records), 10)
            broker.start()
            assert wait_for(lambda: client.get("/readyz").status_code == 200, 90)
            assert "brokerstream_webhook_kafka_up 1.0" in metric_text()
            after = [send(i) for i in range(0, 8)]  # the PSP re-sends; 0 is a duplicate
            assert after == [200] * 8
            assert any("reachable again" in r.getMessage() for r in caplog.records)
        assert publisher.close() == 0
        publisher = None

        consumer = Consumer({"bootstrap.servers": state.bootstrap,
                             "group.id": f"t-{uuid.uuid4().hex}",
                             "auto.offset.reset": "earliest", "enable.auto.commit": False})
        consumer.subscribe([topic])
        got: list[bytes] = []
        try:
            deadline = time.monotonic() + bound(60)
            while time.monotonic() < deadline and len(got) < 8:
                msg = consumer.poll(0.5)
                if msg is not None and msg.error() is None:
                    got.append(msg.value() or b"")
            extra = consumer.poll(2.0)  # anything doubled would be here by now
            if extra is not None and extra.error() is None:
                got.append(extra.value() or b"")
        finally:
            consumer.close()
        counts: Counter[Any] = Counter(got)
        assert sorted(counts) == sorted(body(i) for i in range(8))
        assert set(counts.values()) == {1}
    finally:
        if publisher is not None:
            publisher.close(timeout_s=1)
        broker.stop()
