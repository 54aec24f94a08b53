"""`brokerstream demo`: a simulated brokerage publishing live into the local Kafka, the engine
consuming it, and a status line of what has landed in the embedded ClickHouse."""

from __future__ import annotations

import os
import signal
import threading
import time

from brokerstream.config import Settings, home_dir
from brokerstream.engine import ensure_kafka_topics, prepare_store, run_kafka
from brokerstream.publish import publish
from brokerstream.simulator.mt5 import Mt5DealSimulator
from brokerstream.store import Store

STATUS_SQL = (
    "SELECT (SELECT count() FROM deals), (SELECT count() FROM balance_operations), "
    "(SELECT count() FROM dead_letters), (SELECT max(time) FROM deals)"
)


def _publisher(settings: Settings, bootstrap: str, events: int, rate: float, seed: int,
               counter: list[int]) -> None:
    servers = [s.name for t in settings.tenants for s in t.servers if s.platform == "mt5"]
    now_ms = int(time.time() * 1000)
    # Deal tickets continue from the clock, so a second demo run adds deals instead of
    # re-sending the first run's tickets (which the tables would rightly treat as the same deals).
    sim = Mt5DealSimulator(servers, accounts=2_000, seed=seed, malformed_rate=0.002,
                           start_ms=now_ms, first_deal=now_ms // 100)

    def progress(n: int) -> None:
        counter[0] = n

    total = events if events > 0 else 10**12
    counter[0] = publish(bootstrap, sim.envelopes(total), rate=rate, progress=progress,
                         topic_prefix=settings.kafka.topic_prefix)


def _status(settings: Settings, published: list[int], stop: threading.Event) -> None:
    store = Store(settings.clickhouse_dsn(), settings.clickhouse.database)
    while not stop.wait(5):
        deals, ops, dead, last = store.query(STATUS_SQL)[1][0]
        print(f"[demo] published {published[0]:>9,} | deals {deals:>9,} | balance ops {ops:>7,} | "
              f"dead letters {dead:>5,} | latest deal {last:%H:%M:%S}", flush=True)
    store.close()


def run_demo(settings: Settings, *, events: int, rate: float, seed: int, duration: float = 0) -> int:
    broker = None
    if settings.kafka.bootstrap == "local":
        from brokerstream.kafka.local_broker import LocalKafka, ensure_jars

        ensure_jars()
        local = LocalKafka(home_dir())
        broker = None if local.status() else local  # stop at the end only what we started
        state = local.start()
        bootstrap = state.bootstrap
        print(f"[demo] local Kafka at {bootstrap}", flush=True)
    else:
        bootstrap = settings.kafka.bootstrap
    settings = settings.model_copy(
        update={"kafka": settings.kafka.model_copy(update={"bootstrap": bootstrap})}
    )
    ensure_kafka_topics(settings, bootstrap)
    prepare_store(settings).close()
    print(f"[demo] ClickHouse: {settings.clickhouse_dsn()}", flush=True)
    print(f"[demo] simulating {events or 'endless':,} MT5 events at {rate:,.0f}/s; Ctrl-C stops."
          if events else f"[demo] simulating endless MT5 events at {rate:,.0f}/s; Ctrl-C stops.",
          flush=True)
    print("[demo] after it stops, try: brokerstream sql \"SELECT symbol, sum(signed_lots) AS net_lots "
          "FROM deals GROUP BY symbol ORDER BY symbol\"", flush=True)

    published = [0]
    stop = threading.Event()
    threading.Thread(target=_publisher, args=(settings, bootstrap, events, rate, seed, published),
                     daemon=True, name="simulator").start()
    threading.Thread(target=_status, args=(settings, published, stop), daemon=True,
                     name="status").start()
    if duration > 0:
        # The same clean stop as Ctrl-C: inputs end, sinks flush, the snapshot is consistent.
        threading.Timer(duration, lambda: os.kill(os.getpid(), signal.SIGTERM)).start()
    try:
        run_kafka(settings, recovery_dir=home_dir() / "demo-recovery")
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        if broker is not None:
            broker.stop()
    print("[demo] stopped. The data stays in the embedded ClickHouse; query it with `brokerstream sql`.")
    return 0
