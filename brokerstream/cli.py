"""`brokerstream` command line. Every subcommand has --help."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from brokerstream import withdrawal_cli
from pipelines.config import ConfigError, Settings, home_dir, load_settings


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config)


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config", metavar="FILE",
        help="configuration file (default: $BROKERSTREAM_CONFIG or examples/brokerstream.yaml)",
    )


# ---- kafka -----------------------------------------------------------------------------

def cmd_kafka(args: argparse.Namespace) -> int:
    from devtools.kafka.local_broker import LocalKafka, ensure_jars
    from pipelines.topics import ensure_kafka_topics

    broker = LocalKafka(home_dir())
    if args.action == "fetch":
        print(f"Kafka jars ready in {ensure_jars()}")
        return 0
    if args.action == "up":
        settings = _settings(args)
        ensure_jars()
        state = broker.start(port=args.port)
        created = ensure_kafka_topics(settings, state.bootstrap)
        print(f"Kafka is up at {state.bootstrap} (pid {state.pid}, data in {state.data_dir})")
        if created:
            print(f"created topics: {', '.join(sorted(created))}")
        return 0
    if args.action == "down":
        print("Kafka stopped" if broker.stop() else "Kafka was not running")
        return 0
    running = broker.status()
    if running is None:
        print("Kafka is not running (start it with: brokerstream kafka up)")
        return 3
    print(f"Kafka is running at {running.bootstrap} (pid {running.pid}, data in {running.data_dir})")
    return 0


# ---- engine ----------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    from brokerstream.engine import run_kafka
    from brokerstream.progress import EngineCounts, note

    settings = _settings(args)
    addresses = args.addresses.split(";") if args.addresses else None
    print(f"brokerstream engine: Kafka -> ClickHouse ({settings.clickhouse_dsn()})", flush=True)
    if args.dashboard_port:
        print(f"dashboard page: http://127.0.0.1:{args.dashboard_port}/", flush=True)
    started, counts = time.monotonic(), EngineCounts()
    try:
        run_kafka(
            settings,
            exit_at_end=args.exit_at_end,
            recovery_dir=Path(args.recovery_dir) if args.recovery_dir else None,
            recovery=not args.no_recovery,
            workers=args.workers,
            process_id=args.process_id,
            addresses=addresses,
            metrics_port=args.metrics_port,
            dashboard_port=args.dashboard_port,
        )
    finally:  # stopped (Ctrl-C, SIGTERM, the end of the topics) or failed: what it did
        scope = "" if not args.process_id else f" (process {args.process_id})"
        note(counts.summary(f"engine stopped{scope}", started,
                            f"{settings.clickhouse.database} ({settings.clickhouse_dsn()})"))
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from brokerstream.engine import run_replay
    from brokerstream.progress import EngineCounts, note, spinner

    settings = _settings(args)
    paths = [Path(p) for p in args.files]
    note(f"replaying {', '.join(map(str, paths))} -> {settings.clickhouse_dsn()}")
    if args.rules:
        return _backtest(settings, paths, args)
    if args.withdrawal_policy:  # a withdrawal policy backtest (brokerstream/withdrawal_cli.py)
        return withdrawal_cli.run_cli(settings, paths, args)
    started, counts = time.monotonic(), EngineCounts()
    # --progress-every prints its own lines: no spinner over them
    with spinner("replaying…", tty=None if not args.progress_every else False):
        run_replay(settings, paths, recovery_dir=Path(args.recovery_dir) if args.recovery_dir else None,
                   progress_every=args.progress_every)
    note(counts.summary("replay done", started,
                        f"{settings.clickhouse.database} ({settings.clickhouse_dsn()})"))
    return 0


def _backtest(settings: Settings, paths: list[Path], args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from brokerstream.backtest import format_report, run_backtest
    from brokerstream.progress import note, took

    started = time.monotonic()
    report = run_backtest(settings, paths, args.rules, args.baseline_rules)
    print(format_report(report))  # the comparison: data, on stdout
    if args.report:
        Path(args.report).write_text(json.dumps(asdict(report), indent=2), encoding="utf-8")
    note(f"backtest done in {took(started)}: {len(report.rules):,} rules compared, "
         f"{len(report.changed()):,} alert differently; two replays of {', '.join(map(str, paths))}"
         + (f"; report written to {args.report}" if args.report else ""))
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from pipelines.store import Store

    settings = _settings(args)
    store = Store(settings.clickhouse_dsn(), settings.clickhouse.database)
    applied = store.migrate()
    store.close()
    print("applied: " + ", ".join(applied) if applied else "schema is up to date")
    return 0


def cmd_sql(args: argparse.Namespace) -> int:
    from brokerstream.output import FORMATS
    from pipelines.store import open_reader

    settings = _settings(args)
    store = open_reader(settings.clickhouse_dsn(), args.database or settings.clickhouse.database)
    try:
        columns, rows = store.query(args.query)
    except Exception as exc:  # the server's answer to the query (syntax, unknown table...)
        raise QueryError(_server_message(exc)) from None
    finally:
        store.close()
    print(FORMATS[args.format](columns, rows))
    return 0


class QueryError(Exception):
    """ClickHouse refused a query the user wrote."""


def _server_message(exc: Exception) -> str:
    """ClickHouse's own words, without the driver's wrapping: `Code: 62. ... (SYNTAX_ERROR)`."""
    text = str(exc).strip()
    start = text.find("Code: ")
    text = text[start:] if start >= 0 else text
    return " ".join(text.split())[:600]


def cmd_config(args: argparse.Namespace) -> int:
    settings = _settings(args)
    servers = sum(len(t.servers) for t in settings.tenants)
    print(f"config OK: {len(settings.tenants)} tenants, {servers} servers; "
          f"Kafka {settings.kafka.bootstrap}; ClickHouse {settings.clickhouse_dsn()}")
    return 0


# ---- traffic ---------------------------------------------------------------------------

def _mt5_servers(settings: Settings) -> list[str]:
    return [s.name for t in settings.tenants for s in t.servers if s.platform == "mt5"]


def run_simulate(argv: Sequence[str]) -> int:
    """`brokerstream simulate ...`: the simulated brokerage (its own options, see --help)."""
    from brokerstream.engine import kafka_bootstrap
    from brokerstream.publish import publish
    from devtools.simulator.cli import main as simulate_main
    from pipelines.topics import ensure_kafka_topics
    from schemas.envelope import Envelope

    def bootstrap(settings: Settings) -> str:
        address = kafka_bootstrap(settings)
        ensure_kafka_topics(settings, address)
        return address

    def publish_live(address: str, envelopes: Iterable[Envelope], topic_prefix: str = "") -> int:
        return publish(address, envelopes, topic_prefix=topic_prefix, stamp_now=True)

    return simulate_main(argv, publish=publish_live, bootstrap=bootstrap)


def cmd_simulate_mt5(args: argparse.Namespace) -> int:
    from brokerstream.publish import publish, write_envelopes
    from devtools.simulator.mt5 import Mt5DealSimulator

    settings = _settings(args)
    sim = Mt5DealSimulator(
        _mt5_servers(settings), accounts=args.accounts, seed=args.seed,
        malformed_rate=args.malformed_rate,
    )
    started = time.perf_counter()
    if args.kafka:
        from brokerstream.engine import kafka_bootstrap
        from pipelines.topics import ensure_kafka_topics

        bootstrap = kafka_bootstrap(settings)
        ensure_kafka_topics(settings, bootstrap)
        n = publish(
            bootstrap, sim.envelopes(args.events), rate=args.rate,
            topic_prefix=settings.kafka.topic_prefix,
            progress=lambda k: print(f"  {k:,} published", flush=True) if k % 100_000 == 0 else None,
        )
    else:
        if not args.out:
            print("simulate: give --out FILE (file mode) or --kafka (live mode)", file=sys.stderr)
            return 2
        n = write_envelopes(Path(args.out), sim.envelopes(args.events))
    took = time.perf_counter() - started
    print(f"{n:,} events ({sim.malformed:,} malformed) in {took:.1f} s ({n / took:,.0f}/s)")
    return 0


def cmd_produce(args: argparse.Namespace) -> int:
    from brokerstream.engine import kafka_bootstrap
    from brokerstream.publish import publish, read_envelopes
    from pipelines.topics import ensure_kafka_topics

    settings = _settings(args)
    bootstrap = kafka_bootstrap(settings)
    ensure_kafka_topics(settings, bootstrap)
    started = time.perf_counter()
    n = publish(bootstrap, read_envelopes(Path(args.file)), rate=args.rate,
                topic_prefix=settings.kafka.topic_prefix)
    print(f"{n:,} messages acknowledged by Kafka in {time.perf_counter() - started:.1f} s")
    return 0


def cmd_webhooks(args: argparse.Namespace) -> int:
    from brokerstream.engine import kafka_bootstrap
    from services.webhooks import run_webhooks

    settings = _settings(args)
    configured = ", ".join(sorted(settings.psp.providers)) or "none (add a psp section)"
    print(f"webhook receiver on http://{args.host}:{args.port}/webhooks/<provider>; "
          f"providers: {configured}", flush=True)
    run_webhooks(settings, args.port, args.host, bootstrap=kafka_bootstrap(settings))
    return 0


def _read_new_password() -> str:
    """A password from the terminal (asked twice, not echoed) or one line of stdin."""
    import getpass

    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if first != getpass.getpass("again: "):
            raise ValueError("the two passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def cmd_hash_password(args: argparse.Namespace) -> int:
    from services.dashboard.auth import hash_password

    try:
        password = _read_new_password()
        if len(password) < 12:
            raise ValueError("use at least 12 characters")
        print(hash_password(password))
    except ValueError as exc:
        print(f"brokerstream: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from services.dashboard.server import DashboardError, run_dashboard

    if args.action == "hash-password":
        return cmd_hash_password(args)
    settings = _settings(args)
    database = args.database or settings.clickhouse.database
    print(f"dashboard page on http://{args.host}:{args.port}/ over {settings.clickhouse_dsn()} "
          f"(database {database})", flush=True)
    try:
        run_dashboard(settings, args.port, args.host, database=database)
    except DashboardError as exc:
        print(f"brokerstream: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_tenants(args: argparse.Namespace) -> int:
    from services import tenant_grants as tg

    settings = _settings(args)
    known = [t.id for t in settings.tenants]
    chosen = args.tenant or known
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        print(f"brokerstream: no tenant {', '.join(unknown)} (tenants are {', '.join(known)})",
              file=sys.stderr)
        return 2
    if args.action == "grafana":
        import yaml

        datasources, dashboards = tg.grafana_tenant_provisioning(known)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        head = ("# Generated by `brokerstream tenants grafana` from the configuration's tenants: one\n"
                "# Grafana organisation per tenant (ids from 2, in configuration order).\n")
        for name, doc in (("datasources.yaml", datasources), ("dashboards.yaml", dashboards)):
            (out / name).write_text(head + yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        print(f"wrote {out / 'datasources.yaml'} and {out / 'dashboards.yaml'}")
        return 0

    from pipelines.store import Store

    database = args.database or settings.clickhouse.database
    store = Store(settings.clickhouse_dsn(), database)
    try:
        objects = tg.schema_objects(store.client, store.database)
        statements = tg.tenant_grants_sql(store.database, objects, chosen, tg.passwords_from_env(chosen))
        if args.apply:
            for statement in statements:
                try:
                    store.client.command(statement)
                except Exception as exc:
                    hint = (" — embedded ClickHouse (chdb) has no access control: print the SQL and "
                            "run it on a ClickHouse server" if store.embedded else "")
                    print(f"brokerstream: {tg.redact(statement)[:200]}: {str(exc).splitlines()[0][:300]}"
                          f"{hint}", file=sys.stderr)
                    return 2
            print(f"applied {len(statements)} statements: users {', '.join(map(tg.user_name, chosen))}; "
                  f"row policies on {len(objects) - len(tg.EXEMPT)} tables and views", file=sys.stderr)
        else:
            print(";\n".join(statements) + ";")
    except tg.GrantError as exc:
        print(f"brokerstream: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from devtools.demo import run_demo

    return run_demo(_settings(args), events=args.events, rate=args.rate, seed=args.seed,
                    duration=args.duration, accounts=args.accounts,
                    dashboard_port=args.dashboard_port)


# ---- parser ----------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="brokerstream",
        description="Real-time trade and risk engine for Forex/CFD brokers "
        "(Kafka -> Bytewax -> ClickHouse).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("kafka", help="the local single-node Kafka broker (KRaft)",
                       description="Start, stop or inspect the project's own local Kafka broker. "
                       "Jars are fetched from Maven Central once into ~/.cache/brokerstream.")
    p.add_argument("action", choices=["up", "down", "status", "fetch"])
    p.add_argument("--port", type=int, help="listener port for `up` (default: a free port)")
    _add_config(p)
    p.set_defaults(func=cmd_kafka)

    p = sub.add_parser("run", help="run the engine on the Kafka raw topics",
                       description="Consume the raw topics, normalise, and write ClickHouse. "
                       "Resumes from its recovery snapshots after a stop or crash.")
    _add_config(p)
    p.add_argument("--exit-at-end", action="store_true",
                   help="stop when every partition is read to its end (bounded runs)")
    p.add_argument("--recovery-dir", help="recovery snapshots (default: $BROKERSTREAM_HOME/recovery)")
    p.add_argument("--no-recovery", action="store_true", help="run without recovery snapshots")
    p.add_argument("-w", "--workers", type=int, default=1, help="worker threads in this process")
    p.add_argument("-i", "--process-id", type=int, help="this process's index in a cluster")
    p.add_argument("-a", "--addresses", help="cluster addresses, ';'-separated host:port")
    p.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on 127.0.0.1:PORT")
    p.add_argument("--dashboard-port", type=int,
                   help="serve the dashboard page on 127.0.0.1:PORT from the engine's process "
                   "(the one process that can open the embedded store)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("replay", help="run the same dataflow over JSON Lines envelope files",
                       description="Re-run history: each line is {topic, key, value, headers, "
                       "timestamp}. Deterministic ids make a replay idempotent.")
    p.add_argument("files", nargs="+", metavar="FILE")
    _add_config(p)
    p.add_argument("--recovery-dir", help="make the replay resumable with snapshots here")
    p.add_argument("--progress-every", type=int, default=100_000, metavar="N",
                   help="print events/s to stderr every N events (default 100,000; 0: quiet)")
    p.add_argument("--rules", metavar="RULES.yaml",
                   help="backtest: replay with this rules file and with the rules in force (into "
                   "scratch databases <database>_backtest_*) and report, per rule, the alerts each "
                   "raises and the subjects that differ")
    p.add_argument("--baseline-rules", metavar="RULES.yaml",
                   help="backtest: compare with this file instead of the configured rules.file")
    p.add_argument("--report", metavar="FILE.json", help="backtest: also write the report as JSON")
    withdrawal_cli.add_arguments(p)
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("sql", help="run a query against the configured ClickHouse",
                       description="Run one SQL query in the brokerstream database and print it.")
    p.add_argument("query")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument("--database", help="another database than the configured one "
                   "(the demo writes to brokerstream_demo)")
    _add_config(p)
    p.set_defaults(func=cmd_sql)

    p = sub.add_parser("migrate", help="apply pending schema migrations")
    _add_config(p)
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("config", help="validate the configuration and summarise it")
    _add_config(p)
    p.set_defaults(func=cmd_config)

    sub.add_parser("simulate", help="a simulated brokerage: every platform, PSPs, logins, "
                   "injected AML/fraud cases with ground truth (see `brokerstream simulate --help`)",
                   add_help=False)

    p = sub.add_parser("simulate-mt5", help="plain MT5 deal traffic (benchmarks, load tests)",
                       description="Seeded, deterministic MT5 deal traffic: to a JSON Lines file "
                       "(--out) or live into Kafka (--kafka --rate R).")
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--accounts", type=int, default=2_000)
    p.add_argument("--malformed-rate", type=float, default=0.0,
                   help="share of deliberately unreadable messages (0..1)")
    p.add_argument("--out", metavar="FILE", help="write envelopes to this JSON Lines file")
    p.add_argument("--kafka", action="store_true", help="publish into Kafka instead")
    p.add_argument("--rate", type=float, default=0.0, help="messages per second (0 = max)")
    _add_config(p)
    p.set_defaults(func=cmd_simulate_mt5)

    p = sub.add_parser("produce", help="publish a JSON Lines envelope file into Kafka")
    p.add_argument("file")
    p.add_argument("--rate", type=float, default=0.0, help="messages per second (0 = max)")
    _add_config(p)
    p.set_defaults(func=cmd_produce)

    # -- reports: statement, report, commissions (brokerstream/reports_cli.py) --
    from brokerstream.reports_cli import register as register_reports

    register_reports(sub)
    # -- end reports --

    # -- reconciliation (issue 16): `recon report` lives in brokerstream/recon_cli.py --
    from brokerstream.recon_cli import add_recon_parser
    add_recon_parser(sub, _add_config)
    # -- end reconciliation --

    p = sub.add_parser("webhooks", help="the payment providers' webhook receiver",
                       description="Receive PSP webhooks at /webhooks/<provider> (skrill, praxis, "
                       "coinspaid, nuvei, stripe), check each provider's signature, and answer "
                       "2xx only once Kafka has the raw event (acks=all).")
    p.add_argument("--port", type=int, default=8090)
    p.add_argument("--host", default="127.0.0.1")
    _add_config(p)
    p.set_defaults(func=cmd_webhooks)

    p = sub.add_parser("dashboard", help="the dashboards as a local web page (no Grafana needed)",
                       description="Serve the dashboards/ definitions as a web page over ClickHouse: "
                       "charts, tables, auto-refresh. The embedded store opens in one process only: "
                       "use this for a store no engine is using, or a ClickHouse server; while an "
                       "engine runs, start it with `brokerstream run --dashboard-port P` instead "
                       "(`brokerstream demo` serves the page itself).")
    p.add_argument("action", nargs="?", choices=["serve", "hash-password"], default="serve",
                   help="serve (default) the page; hash-password: read a password (terminal: asked "
                   "twice; else one stdin line) and print its argon2 hash for dashboard.users")
    p.add_argument("--port", type=int, default=8050, help="port to serve on (default 8050)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--database", help="another database than the configured one "
                   "(the demo writes to brokerstream_demo)")
    _add_config(p)
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser("tenants", help="tenant isolation on a ClickHouse server and Grafana",
                       description="grants: the SQL that creates one ClickHouse user per tenant "
                       "(tenant_<id>, password from $BROKERSTREAM_TENANT_<ID>_CLICKHOUSE_PASSWORD) and "
                       "row policies on every table and view (printed, or run with --apply). "
                       "grafana: Grafana provisioning with one organisation and data source per tenant. "
                       "See docs/production.md, Tenant isolation.")
    p.add_argument("action", choices=["grants", "grafana"])
    p.add_argument("--tenant", action="append", metavar="ID",
                   help="only this tenant's user (repeatable; default: every tenant)")
    p.add_argument("--apply", action="store_true", help="grants: run the statements on the configured "
                   "ClickHouse (its user needs access management) instead of printing them")
    p.add_argument("--database", help="grants: another database than the configured one")
    p.add_argument("--out", default="dashboards/provisioning/tenants",
                   help="grafana: directory for datasources.yaml and dashboards.yaml")
    _add_config(p)
    p.set_defaults(func=cmd_tenants)

    p = sub.add_parser("demo", help="simulated brokerage -> Kafka -> engine -> ClickHouse",
                       description="Start the local Kafka, publish simulated traffic live, run the "
                       "engine and print what lands in ClickHouse. Ctrl-C stops.")
    p.add_argument("--events", type=int, default=0, help="events to simulate (0 = endless)")
    p.add_argument("--rate", type=float, default=1_500.0, help="events per second")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--accounts", type=int, default=2_000)
    p.add_argument("--duration", type=float, default=0, help="stop after this many seconds (0 = Ctrl-C)")
    p.add_argument("--dashboard-port", type=int, default=8050,
                   help="serve the dashboard page on 127.0.0.1:PORT (0 = off; a free port if taken)")
    _add_config(p)
    p.set_defaults(func=cmd_demo)

    # ---- reference data and sanctions (brokerstream/reference_cli.py, sanctions_cli.py) ----
    from brokerstream import reference_cli, sanctions_cli

    reference_cli.add_parser(sub, _add_config)
    sanctions_cli.add_parser(sub, _add_config)

    # -- alert cases (issue 16): brokerstream/alerts_cli.py --
    from brokerstream.alerts_cli import add_alerts_parser

    add_alerts_parser(sub, _add_config)
    from brokerstream.output import one_line_errors

    return one_line_errors(parser)  # every command's argument errors: one line, exit 2


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["simulate"]:  # the simulator parses its own options
        try:
            return run_simulate(argv[1:])
        except KeyboardInterrupt:
            return 130
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from brokerstream.engine import EngineError
    from commissions import CommissionConfigError
    from pipelines.store import StoreUnavailable
    from risk_rules.engine import ConfigError as RulesConfigError
    from withdrawals import PolicyError

    try:
        return int(args.func(args))
    except (ConfigError, CommissionConfigError, RulesConfigError, PolicyError, EngineError,
            FileNotFoundError, StoreUnavailable, QueryError) as exc:
        print(f"brokerstream: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
