"""`brokerstream demo`: the whole simulated brokerage against the engine, on one machine.

A seeded brokerage (two tenants; MT4, MT5 and cTrader servers; an IB hierarchy; quotes,
trading, payments, logins, injected suspicious behaviour) publishes live into the local Kafka;
its payment webhooks are posted, signed, to the webhook receiver running here; the engine
consumes every raw topic into the embedded ClickHouse, IB commissions included; a status line
shows what has landed.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator

import yaml
from prometheus_client import CollectorRegistry

from brokerstream.engine import prepare_store, run_kafka
from brokerstream.publish import publish
from pipelines.config import Settings, home_dir
from pipelines.store import Store
from pipelines.topics import ensure_kafka_topics
from schemas.envelope import Envelope

DEMO_DATABASE = "brokerstream_demo"
STATUS_SQL = (
    "SELECT (SELECT count() FROM deals), (SELECT count() FROM balance_operations), "
    "(SELECT count() FROM accounts), (SELECT count() FROM logins), "
    "(SELECT count() FROM ib_commissions), (SELECT count() FROM dead_letters), "
    "(SELECT max(time) FROM deals)"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_receiver(settings: Settings, bootstrap: str, port: int
                    ) -> tuple[CollectorRegistry, Callable[[], None]]:
    """The webhook receiver in this process (uvicorn in a thread), publishing to Kafka;
    returns its metrics' registry (the dashboard page shows them) and how to stop it (before
    Kafka stops: its producer would otherwise log every reconnection attempt)."""
    import uvicorn

    from services.webhooks import KafkaPublisher, create_app

    publisher = KafkaPublisher(bootstrap, timeout_s=settings.psp.publish_timeout_s)
    app = create_app(settings, publisher)
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


def _status(settings: Settings, stop: threading.Event) -> None:
    store = Store(settings.clickhouse_dsn(), settings.clickhouse.database)
    while not stop.wait(5):
        deals, ops, accounts, logins, commissions, dead, last = store.query(STATUS_SQL)[1][0]
        print(f"[demo] deals {deals:>8,} | payments & balance ops {ops:>6,} | accounts {accounts:>5,} "
              f"| logins {logins:>6,} | IB commission rows {commissions:>7,} | dead letters {dead:>3,} "
              f"| latest deal {last:%Y-%m-%d %H:%M:%S}", flush=True)
    store.close()


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
    sim = Brokerage(settings, seed, accounts=accounts, start_ms=int(time.time() * 1000), typology_rate=3)
    partners = home_dir() / "demo-partners"
    partners.mkdir(parents=True, exist_ok=True)
    files = []
    for tenant, doc in sim.partner_configs().items():
        path = partners / f"commissions-{tenant}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
        files.append(str(path))
    settings = sim.settings.model_copy(update={
        "kafka": settings.kafka.model_copy(update={"bootstrap": bootstrap, "topic_prefix": "demo."}),
        "clickhouse": settings.clickhouse.model_copy(update={"database": DEMO_DATABASE}),
        "commissions": files,
    })
    _reset(settings, bootstrap)
    ensure_kafka_topics(settings, bootstrap)
    prepare_store(settings).close()
    port = _free_port()
    receiver_metrics, stop_receiver = _start_receiver(settings, bootstrap, port)
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
        for envelope in envelopes:
            if stop.is_set():
                return
            yield envelope

    def publish_fn(envelopes: Iterable[Envelope]) -> int:
        return publish(bootstrap, until_stopped(envelopes), topic_prefix=prefix, stamp_now=True)

    def simulate() -> None:
        # events=0: endless, with suspicious cases planned over a 30-day horizon from the start
        sim.run_live(publish_fn, rate, events, bursts=True, post_url=f"http://127.0.0.1:{port}")

    simulator = threading.Thread(target=simulate, daemon=True, name="simulator")
    simulator.start()
    threading.Thread(target=_status, args=(settings, stop), daemon=True, name="status").start()
    if duration > 0:
        # The same clean stop as Ctrl-C: inputs end, sinks flush, the snapshot is consistent.
        threading.Timer(duration, lambda: os.kill(os.getpid(), signal.SIGTERM)).start()
    try:
        run_kafka(settings, recovery_dir=home_dir() / "demo-recovery")
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        simulator.join(30)  # webhooks in flight are answered before Kafka goes away
        stop_receiver()
        if broker is not None:
            broker.stop()
    print("[demo] stopped. The data stays in the embedded ClickHouse; query it with `brokerstream sql`,"
          f" --database {DEMO_DATABASE}, e.g. brokerstream sql --database {DEMO_DATABASE} "
          "\"SELECT tenant, ib_id, own, override FROM ib_payouts_monthly ORDER BY total DESC LIMIT 10\"")
    return 0


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
