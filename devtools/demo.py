"""`brokerstream demo`: the whole simulated brokerage against the engine, on one machine.

A seeded brokerage (two tenants; MT4, MT5 and cTrader servers; an IB hierarchy; quotes,
trading, payments, logins, injected suspicious behaviour) publishes live into the local Kafka;
its payment webhooks are posted, signed, to the webhook receiver running here; the engine
consumes every raw topic into the embedded ClickHouse, IB commissions included; a status line
shows what has landed, and a summary what the run did when it stops.

One simulated clock (devtools/simulator/clock.py) runs the whole demo: the simulated time runs
days ahead of the wall clock within minutes, and every source (platform deals and accounts,
quotes, logins, CRM, the payment providers' webhooks), the receiver's freshness checks and
`received_at`, the Kafka message timestamps (the demo's topics accept stamps far ahead of the
wall clock), and the engine's detection and case-filing times all read it, so ages, versions and
detection times agree with the events' own times, as in a replay of the same events.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import yaml
from prometheus_client import CollectorRegistry

from brokerstream.engine import prepare_store, run_kafka
from brokerstream.publish import publish
from connectors.psp.settings import PspSettings
from devtools.simulator.brokerage import Stats
from devtools.simulator.clock import SimClock
from pipelines.config import Settings, home_dir
from pipelines.store import Store
from pipelines.topics import all_topics, ensure_topics
from schemas.envelope import Envelope

DEMO_DATABASE = "brokerstream_demo"
STATUS_SQL = (
    "SELECT (SELECT count() FROM deals), (SELECT count() FROM balance_operations), "
    "(SELECT count() FROM accounts), (SELECT count() FROM logins), "
    "(SELECT count() FROM ib_commissions), (SELECT count() FROM dead_letters), "
    "(SELECT max(time) FROM deals), (SELECT count() FROM alerts)"
)
# what the final summary counts, by table (views: one row per stored record)
SUMMARY_TABLES = ("deals", "balance_operations", "accounts", "logins", "ib_commissions", "alerts",
                  "withdrawal_decisions", "reconciliation_breaks", "dead_letters")
# a simulated day passes in seconds of wall time: the simulated providers' freshness windows
# are widened to two simulated days, or a webhook would be stale before it reached the receiver
SIM_TOLERANCE_S = 2 * 86_400
# envelopes published before the simulation waits for the engine's first rows (the accounts'
# initial sync, the first simulated seconds)
WARM_UP = 1_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_receiver(settings: Settings, bootstrap: str, port: int, clock: SimClock
                    ) -> tuple[CollectorRegistry, Callable[[], None]]:
    """The webhook receiver in this process (uvicorn in a thread), publishing to Kafka, judging
    and stamping webhooks by the simulated clock; returns its metrics' registry (the dashboard
    page shows them) and how to stop it (before Kafka stops: its producer would otherwise log
    every reconnection attempt)."""
    import uvicorn

    from services.webhooks import KafkaPublisher, create_app

    publisher = KafkaPublisher(bootstrap, timeout_s=settings.psp.publish_timeout_s)
    app = create_app(settings, publisher, clock=clock.seconds)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False))
    thread = threading.Thread(target=server.run, daemon=True, name="webhooks")
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    registry: CollectorRegistry = app.state.metrics.registry

    def stop() -> None:
        server.should_exit = True
        thread.join(10)
        publisher.close(timeout_s=5)

    return registry, stop


def demo_logins(settings: Settings) -> tuple[Settings, dict[str, str]]:
    """The demo's dashboard logins, made fresh each run (passwords printed, never stored): `admin`
    (every tenant) and one viewer per tenant, named after it, who sees only that tenant."""
    from pipelines.config import DashboardConfig, DashboardUser
    from services.dashboard.auth import hash_password

    viewers = {(t.id if t.id != "admin" else f"{t.id}-viewer"): t.id for t in settings.tenants}
    passwords = {name: secrets.token_urlsafe(12) for name in ["admin", *viewers]}
    users = [DashboardUser(name="admin", password_hash=hash_password(passwords["admin"]), role="admin")]
    users += [DashboardUser(name=name, password_hash=hash_password(passwords[name]), tenants=[tenant])
              for name, tenant in viewers.items()]
    # issue 16: one partner login per tenant, the first top-level IB of its commissions file
    from commissions import load_commissions

    for path in settings.commissions:
        config = load_commissions(path)
        top = next((ib.id for ib in config.ibs if ib.parent is None), None)
        if top is not None:
            name = f"{config.tenant}-partner"
            passwords[name] = secrets.token_urlsafe(12)
            users.append(DashboardUser(name=name, password_hash=hash_password(passwords[name]),
                                       role="partner", tenants=[config.tenant], ib=top))
    # sessions last as long as this run: a random secret, said so, not warned about
    page = DashboardConfig(users=users, session_secret=secrets.token_urlsafe(32))
    return settings.model_copy(update={"dashboard": page}), passwords


def _partner_ib(settings: Settings, name: str) -> str:
    return next((u.ib or "" for u in settings.dashboard.users if u.name == name), "")


def _start_dashboard(settings: Settings, port: int, metrics: CollectorRegistry) -> str:
    """The dashboard page in this process, the one that holds the embedded store, on loopback
    only. Its range defaults to all data: the simulated clock runs ahead of the wall clock."""
    from services.dashboard.server import start_dashboard_thread

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:  # taken (another demo?): any free port will do
            port = _free_port()
    start_dashboard_thread(settings, port, default_range=("all", "all"), registries=[metrics])
    return f"http://127.0.0.1:{port}/"


def status_line(row: Sequence[Any], clock_ms: int) -> str:
    """One status line from STATUS_SQL's row: "no deal yet" until there is one (an empty
    table's max(time) is 1970)."""
    deals, ops, accounts, logins, commissions, dead, last, alerts = row
    latest = f"latest deal {last:%Y-%m-%d %H:%M:%S}" if deals else "no deal yet"
    return (f"[demo] simulated {iso_minute(clock_ms)} | deals {deals:>8,} | payments & balance ops "
            f"{ops:>6,} | accounts {accounts:>5,} | logins {logins:>6,} | IB commission rows "
            f"{commissions:>7,} | alerts {alerts:>5,} | dead letters {dead:>3,} | {latest}")


def iso_minute(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def _wait_for_engine(settings: Settings, stop: threading.Event, limit_s: float = 90.0) -> None:
    """Hold the simulation until the engine has stored its first rows (it starts in seconds;
    the simulated clock would otherwise run days ahead of what is stored meanwhile)."""
    store = Store(settings.clickhouse_dsn(), settings.clickhouse.database)
    deadline = time.monotonic() + limit_s
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            if store.scalar("SELECT count() FROM accounts"):
                return
            stop.wait(0.5)
    finally:
        store.close()


def _status(settings: Settings, stop: threading.Event, clock: SimClock) -> None:
    store = Store(settings.clickhouse_dsn(), settings.clickhouse.database)
    wait = 2.0  # the first line soon: the engine's first batches land within seconds
    while not stop.wait(wait):
        wait = 5.0
        print(status_line(store.query(STATUS_SQL)[1][0], clock.ms), flush=True)
    store.close()


def _summary(settings: Settings, stats: Stats, started: float, clock: SimClock, start_ms: int) -> str:
    """The paragraph printed when the demo stops: what was sent, what was stored, how long."""
    kinds: dict[str, int] = {}
    for topic, n in stats.by_topic.items():
        kind = "payment webhooks" if topic.startswith("psp.") else KIND_OF_TOPIC.get(topic, topic)
        kinds[kind] = kinds.get(kind, 0) + n
    sent = ", ".join(f"{n:,} {kind}" for kind, n in sorted(kinds.items(), key=lambda kv: -kv[1]))
    try:
        store = Store(settings.clickhouse_dsn(), settings.clickhouse.database)
        sql = "SELECT " + ", ".join(f"(SELECT count() FROM {t})" for t in SUMMARY_TABLES)
        counts = store.query(sql)[1][0]
        store.close()
        stored = ", ".join(f"{n:,} {t.replace('_', ' ')}"
                           for t, n in zip(SUMMARY_TABLES, counts, strict=True))
    except Exception as exc:  # the store is gone (an interrupted start): say so, keep the rest
        stored = f"unknown ({str(exc).splitlines()[0][:120]})"
    elapsed = time.monotonic() - started
    failed = f" ({stats.post_failures:,} webhook posts failed)" if stats.post_failures else ""
    return (f"[demo] summary: {elapsed:,.0f} s of wall time, {(clock.ms - start_ms) / 3_600_000:,.1f} "
            f"simulated hours; sent {stats.events:,} events ({sent or 'none'}){failed}, "
            f"{stats.cases:,} suspicious cases injected; stored {stored}.")


# raw topic -> what the summary calls it
KIND_OF_TOPIC = {
    "mt5.deals": "deals", "mt4.trades": "deals", "mt5.users": "accounts", "mt4.users": "accounts",
    "mt5.accounts": "accounts", "mt5.ticks": "quotes", "mt4.ticks": "quotes",
    "mt5.logins": "logins", "mt4.logins": "logins", "crm.accounts": "CRM events",
    "ctrader.events": "cTrader events",
}


def run_demo(settings: Settings, *, events: int, rate: float, seed: int, duration: float = 0,
             accounts: int = 2_000, dashboard_port: int = 8050) -> int:
    from devtools.simulator.brokerage import Brokerage

    broker = None
    if settings.kafka.bootstrap == "local":
        from devtools.kafka.local_broker import LocalKafka, ensure_jars

        ensure_jars()
        local = LocalKafka(home_dir())
        broker = None if local.status() else local  # stop at the end only what we started
        bootstrap = local.start().bootstrap
        print(f"[demo] local Kafka at {bootstrap}", flush=True)
    else:
        bootstrap = settings.kafka.bootstrap

    # The brokerage fills in the payment providers it simulates, and its IB trees become the
    # commission configuration, as a broker's partner programme would be.
    # suspicious behaviour a few times more often than a real book has it, so compliance's
    # dashboard has something to show within the first minutes
    started = time.monotonic()
    start_ms = int(time.time() * 1000)
    sim = Brokerage(settings, seed, accounts=accounts, start_ms=start_ms, typology_rate=3)
    clock = SimClock(start_ms)  # every part of the demo reads the simulated time from here
    partners = home_dir() / "demo-partners"
    partners.mkdir(parents=True, exist_ok=True)
    files = []
    for tenant, doc in sim.partner_configs().items():
        path = partners / f"commissions-{tenant}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
        files.append(str(path))
    settings = sim.settings.model_copy(update={
        "psp": _widened(sim.settings.psp),
        "kafka": settings.kafka.model_copy(update={"bootstrap": bootstrap, "topic_prefix": "demo."}),
        "clickhouse": settings.clickhouse.model_copy(update={"database": DEMO_DATABASE}),
        "commissions": files,
    })
    _reset(settings, bootstrap)
    # Kafka refuses a message stamped over an hour ahead of its wall clock by default; the
    # demo's own topics take the simulated time, which runs days ahead
    ensure_topics(bootstrap, all_topics(settings), config={"message.timestamp.after.max.ms": str(2**63 - 1)},
                  replication_factor=settings.kafka.replication_factor)
    prepare_store(settings).close()
    port = _free_port()
    receiver_metrics, stop_receiver = _start_receiver(settings, bootstrap, port, clock)
    print(f"[demo] ClickHouse: {settings.clickhouse_dsn()}", flush=True)
    print(f"[demo] webhook receiver: http://127.0.0.1:{port}/webhooks/<provider>", flush=True)
    if dashboard_port:
        page_settings, passwords = demo_logins(settings)
        url = _start_dashboard(page_settings, dashboard_port, receiver_metrics)
        print(f"[demo] dashboards: {url} — log in as " + ", ".join(
            f"{name} / {password}" + (" (every tenant)" if name == "admin" else
                                      f" ({_partner_ib(page_settings, name)}'s partner tree)"
                                      if name.endswith("-partner") else f" ({name} only)")
            for name, password in passwords.items()), flush=True)
    print(f"[demo] simulated brokerage: {accounts:,} accounts, seed {seed}, "
          f"{f'{events:,} events' if events else 'endless'} at {rate:,.0f}/s; "
          + (f"stops after {duration:,.0f} s (or Ctrl-C)" if duration > 0 else "Ctrl-C stops"),
          flush=True)
    print("[demo] IB partner trees: " + ", ".join(files), flush=True)

    prefix = settings.kafka.topic_prefix

    stop = threading.Event()

    def until_stopped(envelopes: Iterable[Envelope]) -> Iterator[Envelope]:
        for i, envelope in enumerate(envelopes):
            if stop.is_set():
                return
            if i == WARM_UP:  # the simulated clock waits for the engine, not the other way
                _wait_for_engine(settings, stop)
            yield envelope

    def publish_fn(envelopes: Iterable[Envelope]) -> int:
        # stamped with the simulated event time, as a bridge stamps its events' time
        return publish(bootstrap, until_stopped(envelopes), topic_prefix=prefix)

    stats = Stats()  # filled by the simulator as it runs

    def simulate() -> None:
        # events=0: endless, with suspicious cases planned over a 30-day horizon from the start;
        # webhooks posted as simulated (their simulated time), judged by the same clock
        sim.run_live(publish_fn, rate, events, bursts=True, post_url=f"http://127.0.0.1:{port}",
                     clock=clock, resign=False, stats=stats)

    simulator = threading.Thread(target=simulate, daemon=True, name="simulator")
    simulator.start()
    threading.Thread(target=_status, args=(settings, stop, clock), daemon=True, name="status").start()
    if duration > 0:
        # The same clean stop as Ctrl-C: inputs end, sinks flush, the snapshot is consistent.
        threading.Timer(duration, lambda: os.kill(os.getpid(), signal.SIGTERM)).start()
    try:
        run_kafka(settings, recovery_dir=home_dir() / "demo-recovery", clock=clock.now)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        simulator.join(30)  # webhooks in flight are answered before Kafka goes away
        stop_receiver()
        if broker is not None:
            broker.stop()
    stats.cases = len(sim.truth())
    print(_summary(settings, stats, started, clock, start_ms), flush=True)
    print("[demo] stopped. The data stays in the embedded ClickHouse; query it with `brokerstream sql`,"
          f" --database {DEMO_DATABASE}, e.g. brokerstream sql --database {DEMO_DATABASE} "
          "\"SELECT tenant, ib_id, own, override FROM ib_payouts_monthly ORDER BY total DESC LIMIT 10\"")
    return 0


def _widened(psp: PspSettings) -> PspSettings:
    """The simulated providers with freshness windows in simulated time (SIM_TOLERANCE_S); a
    check switched off (tolerance 0) stays off."""
    providers = {name: cfg if cfg.tolerance_s == 0 else cfg.model_copy(
        update={"tolerance_s": max(cfg.tolerance_s or 0, SIM_TOLERANCE_S)})
        for name, cfg in psp.providers.items()}
    return psp.model_copy(update={"providers": providers})


def _reset(settings: Settings, bootstrap: str) -> None:
    """Each demo run starts a fresh simulated world: its topics, database and snapshots."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    prefix = settings.kafka.topic_prefix
    old = [t for t in admin.list_topics(timeout=30).topics if t.startswith(prefix)]
    if old:
        for future in admin.delete_topics(old, operation_timeout=30).values():
            future.result()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(
            t.startswith(prefix) for t in admin.list_topics(timeout=30).topics
        ):
            time.sleep(0.2)
    shutil.rmtree(home_dir() / "demo-recovery", ignore_errors=True)
    store = Store(settings.clickhouse_dsn(), "default")
    store.client.command(f"DROP DATABASE IF EXISTS {DEMO_DATABASE}")
    store.close()
