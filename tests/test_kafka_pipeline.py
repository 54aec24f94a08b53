"""The Kafka path on a real broker: raw MT5 deals -> engine process -> embedded ClickHouse.

The engine runs as a separate process (as in production, and so it can be SIGKILLed); its
embedded store is read back through `brokerstream sql` once it has stopped, since one chdb
data directory belongs to one process at a time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest
import yaml
from confluent_kafka import Consumer, TopicPartition

from brokerstream.publish import publish, read_envelopes, write_envelopes
from devtools.simulator.mt5 import Mt5DealSimulator
from tests import batch_reference
from tests.conftest import TEST_CONFIG
from tests.helpers import bound
from tests.test_replay import assert_same

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

SERVERS = {"ACME-MT5-Live": "acme", "Zenith-MT5": "zenith"}


class Engine:
    """One engine installation: its config file, home, embedded store and recovery dir."""

    def __init__(self, root: Path, bootstrap: str, prefix: str) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        doc: dict[str, Any] = dict(TEST_CONFIG)
        doc["kafka"] = {"bootstrap": bootstrap, "topic_prefix": prefix, "partitions": 3,
                        "consume_batch": 2000}
        doc["clickhouse"] = {"dsn": f"chdb://{root / 'ch'}"}
        doc["pipeline"] = {"batch_rows": 20_000, "epoch_s": 0.5, "recovery_dir": str(root / "rec")}
        self.config = root / "brokerstream.yaml"
        self.config.write_text(yaml.safe_dump(doc))
        self.env = {**os.environ, "BROKERSTREAM_HOME": str(root / "home")}
        self.env.pop("BROKERSTREAM_CLICKHOUSE", None)

    def cmd(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "brokerstream.cli", *args, "--config", str(self.config)]

    def run(self, *args: str, timeout: float = 600) -> str:
        done = subprocess.run(self.cmd(*args), env=self.env, capture_output=True, text=True,
                              timeout=bound(timeout), check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        log = (self.root / "engine.log").open("ab")
        return subprocess.Popen(self.cmd(*args), env=self.env, stdout=log, stderr=log)

    def sql(self, query: str) -> list[dict[str, Any]]:
        out = self.run("sql", "--format", "json", query)
        return [orjson.loads(line) for line in out.splitlines() if line.strip()]

    def frame(self, query: str) -> pl.DataFrame:
        rows = self.sql(query)
        return pl.DataFrame(rows).with_columns(
            [pl.col(c).cast(pl.Decimal(38, 8)) for c in ("lots", "signed_lots", "notional", "price",
                                                         "amount") if rows and c in rows[0]]
        )


def _sim_file(path: Path, n: int, seed: int) -> Path:
    sim = Mt5DealSimulator(list(SERVERS), accounts=400, seed=seed, malformed_rate=0.01,
                           correction_rate=0.01)
    write_envelopes(path, sim.envelopes(n))
    return path


def _check_against_reference(engine: Engine, sim: Path) -> tuple[int, int, int]:
    want_deals, want_ops, want_dead = batch_reference.expected(batch_reference.load(sim, SERVERS))
    deals = engine.frame("SELECT deal_key AS key, tenant, toInt64(login) AS login, lots, signed_lots, "
                         "notional, price FROM deals")
    ops = engine.frame("SELECT op_key AS key, tenant, toInt64(login) AS login, amount "
                       "FROM balance_operations")
    assert_same(deals, want_deals)
    assert_same(ops, want_ops)
    dead = engine.sql("SELECT count() AS n FROM dead_letters")[0]["n"]
    assert dead == want_dead
    return want_deals.height, want_ops.height, want_dead


def _prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}."


def test_kafka_end_to_end_equals_reference_and_replay(kafka_bootstrap: str, tmp_path: Path) -> None:
    sim = _sim_file(tmp_path / "sim.jsonl", 20_000, seed=11)
    prefix = _prefix()
    live = Engine(tmp_path / "live", kafka_bootstrap, prefix)
    assert publish(kafka_bootstrap, read_envelopes(sim), topic_prefix=prefix) == 20_000
    live.run("run", "--exit-at-end")
    n_deals, n_ops, n_dead = _check_against_reference(live, sim)
    assert n_deals + n_ops + n_dead <= 20_000 and n_dead > 100

    # Every dead letter is also on the dead-letter topic, raw bytes and reason intact.
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": "t",
                         "enable.partition.eof": True, "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(prefix + "dead_letters", 0, 0)])
    got = []
    while True:
        msg = consumer.poll(10)
        assert msg is not None, "timed out reading the dead-letter topic"
        if msg.error():
            break
        got.append(dict(msg.headers() or []))
    consumer.close()
    assert len(got) == n_dead
    assert all(h["reason"] and h["source"].startswith(b"mt5.deals/") for h in got)

    # The file path gives the same tables as the Kafka path.
    replay = Engine(tmp_path / "replay", kafka_bootstrap, prefix)
    replay.run("replay", str(sim))
    columns = ("deal_key, tenant, platform, server, login, deal_id, order_id, position_id, symbol, "
               "platform_symbol, side, entry, lots, signed_lots, contract_size, units, price, notional, "
               "profit, swap, commission, fee, currency, reason, canceled, comment, external_id, time, "
               "event, version")
    q_deals = f"SELECT {columns} FROM deals ORDER BY deal_key"
    q_ops = "SELECT * EXCEPT (source, ingested_at) FROM balance_operations ORDER BY op_key"
    assert live.sql(q_deals) == replay.sql(q_deals)
    assert live.sql(q_ops) == replay.sql(q_ops)


def _metric(port: int, name: str) -> float:
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1).read().decode()
    except OSError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_sigkill_mid_stream_then_resume_loses_and_doubles_nothing(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    n = 150_000
    sim = _sim_file(tmp_path / "sim.jsonl", n, seed=12)
    prefix = _prefix()
    engine = Engine(tmp_path / "engine", kafka_bootstrap, prefix)
    publish(kafka_bootstrap, read_envelopes(sim), topic_prefix=prefix)

    port = _free_port()
    proc = engine.start("run", "--exit-at-end", "--metrics-port", str(port))
    deadline = time.monotonic() + bound(120)
    written = 0.0
    while time.monotonic() < deadline and proc.poll() is None:
        written = _metric(port, "brokerstream_sink_rows_total")
        if written > 20_000:  # well into the stream, several flushes done
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the engine finished before it could be killed: raise n"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(bound(30))
    assert 0 < written < n, f"killed after {written} rows"

    resumed = engine.run("run", "--exit-at-end")  # resumes from the last snapshot
    try:
        n_deals, n_ops, n_dead = _check_against_reference(engine, sim)
    except AssertionError:
        log = (engine.root / "engine.log").read_text(errors="replace")[-4000:]
        print(f"--- resumed run said:\n{resumed}\n--- killed run log:\n{log}")
        raise
    stored = engine.sql("SELECT (SELECT count() FROM deals_store) AS raw, (SELECT count() FROM deals) AS n")
    print(f"killed after {written:.0f} rows; deals {n_deals}, ops {n_ops}, dead letters {n_dead}; "
          f"deal rows stored {stored[0]['raw']} for {stored[0]['n']} deals")
    assert Decimal(stored[0]["n"]) == n_deals
