"""Faults are waited out (issue 13): the engine, a separate process on its OWN local Kafka
broker (stopped and started here; the session's broker is never touched), keeps running while
the broker is away, and loses or doubles nothing. Plus the poison pills that used to stop it:
a dead letter too large for its topic, and replay files whose dead letters shared keys."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition

from brokerstream.publish import publish, write_envelopes
from devtools.kafka.local_broker import LocalKafka, ensure_jars
from devtools.simulator.mt5 import Mt5DealSimulator
from pipelines.sinks import DEFAULT_MAX_MESSAGE_BYTES
from pipelines.topics import ensure_topics
from schemas.envelope import Envelope
from tests import batch_reference
from tests.helpers import T0, bound, mt5_deal
from tests.test_kafka_pipeline import SERVERS, Engine, _free_port, _metric

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

BIG = 1_040_000  # bytes: a raw message the broker takes, whose dead letter would not fit


def _wait(until: float, check: object, what: str, proc: subprocess.Popen[bytes] | None = None) -> None:
    while time.monotonic() < until:
        if proc is not None:
            assert proc.poll() is None, f"the engine exited ({proc.returncode}) while {what}"
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out: {what}")


def _dead_letter_topic(bootstrap: str, topic: str, expect: int) -> list[tuple[dict[str, bytes], int]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "faults",
                         "fetch.message.max.bytes": 2_000_000, "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(topic, 0, 0)])
    got: list[tuple[dict[str, bytes], int]] = []
    deadline = time.monotonic() + bound(60)
    while len(got) < expect and time.monotonic() < deadline:
        msg = consumer.poll(1)
        if msg is None or msg.error():
            continue
        headers = {str(pair[0]): pair[1] if isinstance(pair[1], bytes) else b""
                   for pair in (msg.headers() or [])}
        got.append((headers, len(msg.value() or b"")))
    consumer.close()
    return got


def test_broker_outage_mid_stream_is_waited_out(tmp_path: Path) -> None:
    ensure_jars()
    broker = LocalKafka(tmp_path / "kafka-home", progress=lambda _: None)
    bootstrap = broker.start().bootstrap
    try:
        sim = Mt5DealSimulator(list(SERVERS), accounts=300, seed=21, malformed_rate=0.01,
                               correction_rate=0.0)
        envelopes = list(sim.envelopes(12_000))
        poison = [
            Envelope("mt5.deals", b"\xff" * BIG, T0, "1", {"server": "ACME-MT5-Live"}),
            Envelope("mt5.deals", orjson.dumps(mt5_deal(Deal="77", Price="1.123456789")), T0, "70001",
                     {"server": "ACME-MT5-Live"}),
        ]
        first, second = envelopes[:6_000] + poison, envelopes[6_000:]
        write_envelopes(tmp_path / "all.jsonl", [*first, *second])
        engine = Engine(tmp_path / "engine", bootstrap, "f.")
        publish(bootstrap, first, topic_prefix="f.", extra={"message.max.bytes": "2000000"})
        port = _free_port()
        proc = engine.start("run", "--metrics-port", str(port))
        try:
            _wait(time.monotonic() + 120, lambda: _metric(port, "brokerstream_events_in_total") > 1_000,
                  "reading the first part", proc)
            broker.stop()
            outage_started = time.monotonic()
            time.sleep(20)
            _wait(time.monotonic() + 5, lambda: _metric(port, "brokerstream_ready") == 0.0,
                  "reporting not ready during the outage", proc)
            assert proc.poll() is None, "the engine exited during the outage"
            broker.start()
            print(f"broker away {time.monotonic() - outage_started:.1f} s")
            publish(bootstrap, second, topic_prefix="f.")
            total = len(first) + len(second)
            _wait(time.monotonic() + 180,
                  lambda: _metric(port, "brokerstream_events_in_total") >= total, "reading it all", proc)
            _wait(time.monotonic() + 60, lambda: _metric(port, "brokerstream_ready") == 1.0,
                  "becoming ready again", proc)
            time.sleep(2)  # an epoch or two: every sink flushed
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(bound(60))
        log = (engine.root / "engine.log").read_text(errors="replace")
        assert "Traceback" not in log, log[-3000:]
        assert log.count("waiting for the broker") <= 20, "an outage must be logged once per interval"

        want_deals, want_ops, want_dead = batch_reference.expected(
            batch_reference.load(tmp_path / "all.jsonl", SERVERS))
        got = engine.sql("SELECT (SELECT uniqExact(deal_key) FROM deals) AS deals, "
                         "(SELECT count() FROM deals_store) AS deal_rows, "
                         "(SELECT uniqExact(op_key) FROM balance_operations) AS ops, "
                         "(SELECT count() FROM dead_letters) AS dead, "
                         "(SELECT max(length(raw)) FROM dead_letters) AS biggest")[0]
        # the reference reads the 9-decimal deal as a deal: the engine makes it a dead letter
        want, want_dead = want_deals.height - 1, want_dead + 1
        assert int(got["deals"]) == want, "deals lost"
        assert int(got["deal_rows"]) == want, "deals doubled"
        assert int(got["ops"]) == want_ops.height
        assert int(got["dead"]) == want_dead and want_dead > 50
        assert int(got["biggest"]) == BIG  # stored whole in ClickHouse
        reasons = engine.sql("SELECT reason FROM dead_letters WHERE dl_key LIKE 'mt5.deals/%' "
                             "AND position(reason, 'decimal places') > 0")
        assert len(reasons) == 1 and "'Price'" in reasons[0]["reason"]

        # the dead-letter topic: every dead letter once (idempotent producer), the big one cut
        published = _dead_letter_topic(bootstrap, "f.dead_letters", want_dead)
        sources = [h["source"] for h, _ in published]
        assert len(sources) == want_dead == len(set(sources)), "dead letters lost or doubled on Kafka"
        cut = [(h, size) for h, size in published if "truncated" in h]
        assert len(cut) == 1 and int(cut[0][0]["truncated"]) == BIG
        assert cut[0][1] < DEFAULT_MAX_MESSAGE_BYTES
    finally:
        broker.stop()


def test_dead_letters_of_two_replay_files_have_their_own_keys(tmp_path: Path) -> None:
    bad = Envelope("mt5.deals", b"not json", T0, "1", {"server": "ACME-MT5-Live"})
    for name in ("a.jsonl", "b.jsonl"):
        write_envelopes(tmp_path / name, [bad, bad])
        with (tmp_path / name).open("ab") as fh:
            fh.write(b'{"topic": "mt5.deals", "value": "{}", "timestamp": 1000000000000000}\n')
    engine = Engine(tmp_path / "engine", "127.0.0.1:1", "")
    env = {**os.environ, "BROKERSTREAM_HOME": str(tmp_path / "home")}
    done = subprocess.run([sys.executable, "-m", "brokerstream.cli", "replay", str(tmp_path / "a.jsonl"),
                           str(tmp_path / "b.jsonl"), "--config", str(engine.config)],
                          env=env, capture_output=True, text=True, timeout=bound(300), check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = engine.sql("SELECT dl_key, stage, reason FROM dead_letters ORDER BY dl_key")
    assert len(rows) == 6 == len({r["dl_key"] for r in rows}), rows
    assert sum("message timestamp" in r["reason"] for r in rows) == 2
    assert sum("a.jsonl" in r["dl_key"] for r in rows) == sum("b.jsonl" in r["dl_key"] for r in rows) == 3


def test_producer_waits_out_a_stopped_broker_without_raising(tmp_path: Path) -> None:
    """The topic sink itself: a snapshot while the broker is away blocks, then completes once it
    is back (it used to raise after 30 s), with every message delivered once."""
    from pipelines.sinks import _TopicProducer

    ensure_jars()
    broker = LocalKafka(tmp_path / "kafka-home", progress=lambda _: None)
    bootstrap = broker.start().bootstrap
    try:
        ensure_topics(bootstrap, {"waits": 1})
        sink = _TopicProducer({"bootstrap.servers": bootstrap}, "waits",
                              lambda i: (None, str(i).encode(), []), log_every_s=5)
        sink.write_batch(list(range(100)))
        sink.snapshot()
        broker.stop()
        sink.write_batch(list(range(100, 200)))
        restarted: list[float] = []

        def restart() -> None:
            time.sleep(35)  # longer than the old 30 s limit
            broker.start()
            restarted.append(time.monotonic())

        import threading

        thread = threading.Thread(target=restart)
        thread.start()
        sink.snapshot()  # returns only once Kafka has all 200
        thread.join()
        assert restarted and time.monotonic() >= restarted[0]
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "w",
                             "auto.offset.reset": "earliest"})
        consumer.assign([TopicPartition("waits", 0, 0)])
        values: list[bytes] = []
        deadline = time.monotonic() + bound(30)
        while len(values) < 200 and time.monotonic() < deadline:
            msg = consumer.poll(1)
            if msg is not None and not msg.error():
                values.append(msg.value() or b"")
        consumer.close()
        assert sorted(int(v) for v in values) == list(range(200))
    finally:
        broker.stop()
