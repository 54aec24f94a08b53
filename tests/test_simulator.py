"""The simulated brokerage: deterministic, time-ordered, readable by every connector without a
dead letter, webhooks that pass their provider's verify(), and a ground truth whose cases are
plausible and point at events the connectors really produce."""

from __future__ import annotations

import hashlib
import http.server
import ipaddress
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from brokerstream.publish import read_envelopes
from commissions.config import parse_commissions
from connectors import crm, mt4, mt5_accounts, registry
from connectors.countries import country_code
from connectors.psp.common import psp_readers
from connectors.registry import READERS, Normaliser
from connectors.routing import Router
from devtools.simulator import cli
from devtools.simulator.brokerage import Brokerage
from devtools.simulator.geo import GEOIP, HIGH_RISK_COUNTRIES, geoip_csv
from devtools.simulator.payments import MODULES, verify_webhook
from devtools.simulator.sanctions import ALT_FILE, GEOIP_FILE, SDN_FILE, alt_csv, load_list, sdn_csv
from devtools.simulator.typologies import LARGE_THRESHOLD, REPORTING_THRESHOLD, TYPOLOGIES
from pipelines.config import Settings, load_settings, parse_settings
from schemas.envelope import Envelope, envelope_from_json_line
from schemas.events import AccountUpdate, BalanceOperation, DeadLetter, Deal, Login
from schemas.identity import account_key_of

SAMPLE = 200_000
ACCOUNTS = 3_000


# The example configuration's tenants, without a `psp` section: the simulator brings its own
# merchant accounts (the example file, with its own, is used by the large sample below).
FIXED = parse_settings({"tenants": [
    {"id": "acme", "servers": [
        {"name": "ACME-MT5-Live", "platform": "mt5", "currency": "USD"},
        {"name": "ACME-MT4-Live", "platform": "mt4", "currency": "USD", "utc_offset_minutes": 120},
        {"name": "ACME-cTrader", "platform": "ctrader", "currency": "USD"}]},
    {"id": "zenith", "servers": [
        {"name": "Zenith-MT5", "platform": "mt5", "currency": "EUR"},
        {"name": "Zenith-MT4", "platform": "mt4", "currency": "EUR", "utc_offset_minutes": 120}]},
]}, "test")


@pytest.fixture(scope="module")
def settings() -> Settings:
    return FIXED


@pytest.fixture(scope="module")
def example() -> Settings:
    return load_settings()


def normaliser(sim: Brokerage) -> Normaliser:
    """Every connector: the registry's, plus the modules' own readers for topics the registry
    does not list (yet)."""
    full = getattr(registry, "readers_for", None)
    readers = dict(full(sim.settings)) if full is not None else dict(READERS)
    for module_readers in (mt4.READERS, mt5_accounts.READERS, crm.READERS,
                           psp_readers(sim.settings)):
        for topic, reader in module_readers.items():
            readers.setdefault(topic, reader)
    return Normaliser(Router(sim.settings), readers)


def digest(envelopes: Iterator[Envelope]) -> str:
    h = hashlib.sha256()
    for env in envelopes:
        h.update(env.to_json_line())
    return h.hexdigest()


# -- determinism and order ----------------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_other_bytes(settings: Settings) -> None:
    a = Brokerage(settings, seed=11, accounts=800, events=30_000)
    b = Brokerage(settings, seed=11, accounts=800, events=30_000)
    c = Brokerage(settings, seed=12, accounts=800, events=30_000)
    da, db, dc = digest(a.envelopes(30_000)), digest(b.envelopes(30_000)), digest(c.envelopes(30_000))
    assert da == db
    assert da != dc
    assert orjson.dumps(a.truth()) == orjson.dumps(b.truth())


def test_a_run_continues_where_it_stopped(settings: Settings) -> None:
    whole = Brokerage(settings, seed=5, accounts=500, events=20_000)
    parts = Brokerage(settings, seed=5, accounts=500, events=20_000)
    first = list(parts.envelopes(8_000)) + list(parts.envelopes(12_000))
    assert [e.to_json_line() for e in first] == [e.to_json_line() for e in whole.envelopes(20_000)]


# -- one large sample, checked many ways --------------------------------------------------------


class Sample:
    """What one pass over SAMPLE envelopes found."""

    def __init__(self, settings: Settings) -> None:
        self.sim = Brokerage(settings, seed=1, accounts=ACCOUNTS, events=SAMPLE)
        self.sim.keep_webhooks()
        normalise = normaliser(self.sim)
        self.topics: Counter[str] = Counter()
        self.records: Counter[str] = Counter()
        self.dead: list[tuple[str, str, bytes]] = []
        self.unverified: list[tuple[str, str]] = []
        self.out_of_order = 0
        self.keys: set[str] = set()
        self.deals: dict[str, Deal] = {}
        self.webhooks = 0
        self.first_ms = self.last_ms = 0
        last = 0
        started = time.perf_counter()
        for i, (env, hook) in enumerate(self.sim.stream(SAMPLE)):
            if env.timestamp_ms < last:
                self.out_of_order += 1
            last = env.timestamp_ms
            self.first_ms = self.first_ms or env.timestamp_ms
            self.topics[env.topic] += 1
            located = Envelope(env.topic, env.value, env.timestamp_ms, env.key, env.headers, -1, i)
            for record in normalise(located):
                self.records[type(record).__name__] += 1
                if isinstance(record, DeadLetter):
                    self.dead.append((env.topic, record.reason, env.value[:300]))
                elif isinstance(record, Deal):
                    self.keys.add(record.deal_key)
                    self.deals[record.deal_key] = record
                elif isinstance(record, BalanceOperation):
                    self.keys.add(record.op_key)
                elif isinstance(record, Login):
                    self.keys.add(record.login_key)
                elif isinstance(record, AccountUpdate):
                    self.keys.add(record.account_key)
            if env.topic.startswith("psp."):
                self.webhooks += 1
                assert hook is not None
                try:
                    verify_webhook(hook, self.sim.psp, env.timestamp_ms / 1000)
                except Exception as exc:  # SignatureError / StaleError
                    self.unverified.append((env.topic, repr(exc)))
        self.last_ms = last
        self.seconds = time.perf_counter() - started
        self.truth = self.sim.truth()


@pytest.fixture(scope="module")
def sample(example: Settings) -> Sample:
    return Sample(example)


def test_sample_is_time_ordered_and_covers_every_source(sample: Sample) -> None:
    assert sample.out_of_order == 0
    expected = {"mt5.deals", "mt5.users", "mt5.logins", "mt5.ticks", "mt4.trades", "mt4.users",
                "mt4.logins", "mt4.ticks", "ctrader.events", "crm.accounts", "psp.skrill",
                "psp.praxis", "psp.coinspaid", "psp.nuvei", "psp.stripe"}
    assert expected <= set(sample.topics)
    ticks = sum(n for t, n in sample.topics.items() if t.endswith(".ticks"))
    assert 0.2 < ticks / SAMPLE < 0.6  # quotes are a large share, not all of it
    print(f"\n{SAMPLE:,} envelopes over {(sample.last_ms - sample.first_ms) / 86_400_000:.1f} "
          f"simulated days: {dict(sample.topics)}")


def test_every_message_is_read_without_a_dead_letter(sample: Sample) -> None:
    assert sample.dead == []
    for kind in ("Deal", "BalanceOperation", "Login", "Quote", "AccountUpdate"):
        assert sample.records[kind] > 0, kind


def test_every_webhook_passes_its_providers_verify(sample: Sample) -> None:
    assert sample.webhooks > 100
    assert sample.unverified == []


def test_deals_look_like_a_brokerage(sample: Sample) -> None:
    deals = list(sample.deals.values())
    lots = sorted(float(d.lots) for d in deals if d.entry == "in")
    assert lots[0] >= 0.01
    small = sum(1 for x in lots if x <= 1) / len(lots)
    assert small > 0.6  # many 0.01-1 lot trades ...
    assert lots[-1] >= 5  # ... and a fat tail
    platforms = Counter(d.platform for d in deals)
    assert set(platforms) == {"mt4", "mt5", "ctrader"}
    reasons = Counter(d.reason for d in deals)
    assert reasons["sl"] and reasons["tp"] and reasons["so"]  # stop-outs happen
    assert any(d.entry == "inout" for d in deals)  # netting reversals (MT5)
    assert any(d.comment.startswith("to #") for d in deals)  # MT4 partial closes
    profits = [float(d.profit) for d in deals if d.entry == "out"]
    assert any(p > 0 for p in profits) and any(p < 0 for p in profits)
    # profit = price move x volume x contract size (quote currency USD on a USD account)
    fills = Counter((d.server, d.position_id) for d in deals)
    opens = {(d.server, d.position_id): d for d in deals if d.entry == "in"}
    checked = 0
    for d in deals:
        o = opens.get((d.server, d.position_id))
        if (d.entry != "out" or o is None or d.platform != "mt5" or d.currency != "USD"
                or d.symbol not in ("EURUSD", "GBPUSD", "XAUUSD", "US30") or o.lots != d.lots
                or fills[(d.server, d.position_id)] != 2 or d.event != "add"):
            continue  # one open, one close of the same volume
        move = (d.price - o.price) * (1 if o.side == "buy" else -1)
        assert abs(float(move * d.units) - float(d.profit)) < 0.02, (o, d)
        checked += 1
    assert checked > 20


def test_rate_of_a_200k_sample(sample: Sample) -> None:
    # No timed assertion: the machine is shared. The rate includes reading every message back.
    print(f"\n{SAMPLE:,} events generated and read back in {sample.seconds:.1f} s "
          f"({SAMPLE / sample.seconds:,.0f}/s)")


def test_file_mode_200k(settings: Settings, tmp_path: Path) -> None:
    sim = Brokerage(settings, seed=3, events=SAMPLE)
    stats = sim.write_files(tmp_path / "sim.jsonl", tmp_path / "truth.jsonl", SAMPLE)
    print(f"\nfile mode: {stats.summary()}")
    assert stats.events == SAMPLE
    assert sum(stats.by_topic.values()) == SAMPLE
    lines = (tmp_path / "sim.jsonl").read_bytes().splitlines()
    assert len(lines) == SAMPLE
    first = envelope_from_json_line(lines[0], 1)
    assert first.headers.get("server") and first.timestamp_ms >= sim.start_ms
    binary = next(line for line in lines if b'"encoding":"base64"' in line)
    assert envelope_from_json_line(binary, 2).topic == "ctrader.events"
    truth = [orjson.loads(x) for x in (tmp_path / "truth.jsonl").read_bytes().splitlines()]
    assert len(truth) == stats.cases == sum(stats.by_typology.values())


# -- the ground truth ---------------------------------------------------------------------------

ACCOUNT_KEY = re.compile(r"^(mt4|mt5|ctrader):[^:]+:\d+$")


def test_every_typology_is_in_the_truth_with_plausible_fields(sample: Sample) -> None:
    by_typology: dict[str, list[dict[str, Any]]] = {}
    for case in sample.truth:
        by_typology.setdefault(case["typology"], []).append(case)
    assert set(by_typology) == set(TYPOLOGIES)
    tenants = {t.id for t in sample.sim.settings.tenants}
    for case in sample.truth:
        assert case["tenant"] in tenants
        assert re.fullmatch(r"TC-\d{6}", case["case_id"])
        assert case["start"] <= case["end"]
        assert case["start"].endswith("Z") and case["end"].endswith("Z")
        assert case["event_ids"], case
        assert case["accounts"] and all(ACCOUNT_KEY.match(a) for a in case["accounts"]), case
        kind = case["subject_kind"]
        if kind == "account":
            assert ACCOUNT_KEY.match(case["subject"]) and case["subject"] in case["accounts"]
        elif kind == "ip":
            ipaddress.ip_address(case["subject"])
        elif kind == "instrument":
            assert re.fullmatch(r"[0-9a-f]{64}", case["subject"])
        # the case points at events the connectors really produced
        assert any(e in sample.keys for e in case["event_ids"] if not e.startswith("crm-")) or \
            all(e.startswith("crm-") for e in case["event_ids"]), case
    for c in by_typology["structuring"]:
        d = c["details"]
        assert d["deposits"] >= 3 and all(a < REPORTING_THRESHOLD for a in d["amounts"])
        assert d["total"] > REPORTING_THRESHOLD and d["window_hours"] <= 24
    for c in by_typology["large_transaction"]:
        assert c["details"]["amount"] >= LARGE_THRESHOLD
    for c in by_typology["impossible_travel"]:
        d = c["details"]
        assert d["distance_km"] >= 3_000 and d["minutes"] <= 60
        assert d["first_country"] != d["second_country"]
    for c in by_typology["failed_login_burst"]:
        assert c["details"]["attempts"] >= 10
        assert sum(1 for e in c["event_ids"] if e.endswith(":failed")) >= 5
    for c in by_typology["shared_instrument"]:
        assert len(c["accounts"]) >= 4
    for c in by_typology["shared_ip_device"]:
        assert len(c["accounts"]) >= 5 and c["subject"] == c["details"]["ip"]
    for c in by_typology["mirror_trades"]:
        assert len(c["accounts"]) == 2 and c["details"]["pairs"] >= 8
    for c in by_typology["latency_arbitrage"]:
        assert c["details"]["episodes"] >= 8
    for c in by_typology["sanctioned_name"]:
        listed = {e.ent_num: e for e in load_list()}
        entry = listed[c["details"]["list_entry"]]
        assert entry.individual and c["details"]["listed_name"] == entry.name
        assert c["details"]["date_of_birth"] == entry.dob
    for c in by_typology["high_risk_country"]:
        assert c["details"]["country"] in HIGH_RISK_COUNTRIES
    for c in by_typology["dormant_reactivation"]:
        assert c["details"]["dormant_days"] >= 180
    for c in by_typology["payer_name_mismatch"]:
        assert c["details"]["payer_name"] != c["details"]["account_name"]
    for c in by_typology["deposit_withdraw_no_trading"]:
        assert c["details"]["trades"] <= 2
    for c in by_typology["chargeback"]:
        assert c["details"]["provider"] in ("praxis", "nuvei", "stripe")
    for c in by_typology["structuring_across_accounts"]:
        d = c["details"]
        assert len(c["accounts"]) == d["accounts"] >= 2 and d["deposits"] >= 3
        assert all(REPORTING_THRESHOLD * 0.9 <= a < REPORTING_THRESHOLD for a in d["amounts"])
    for c in by_typology["split_withdrawal"]:
        assert c["details"]["parts"] >= 3 and 0.8 < c["details"]["withdrawn_share"] < 1
    for c in by_typology["card_testing"]:
        assert c["details"]["cards"] >= 6 and c["details"]["provider"] in ("praxis", "nuvei", "stripe")
    for c in by_typology["mt4_country_name"]:
        d = c["details"]
        assert c["subject"].startswith("mt4:") and d["country"] in HIGH_RISK_COUNTRIES
        assert len(d["typed"]) > 2 and country_code(d["typed"]) == d["country"]


def test_latency_arbitrage_trades_are_short_and_mostly_profitable(sample: Sample) -> None:
    for case in (c for c in sample.truth if c["typology"] == "latency_arbitrage"):
        outs = [sample.deals[e] for e in case["event_ids"]
                if e in sample.deals and sample.deals[e].entry == "out"]
        if len(outs) < 5:
            continue
        assert sum(1 for d in outs if d.profit > 0) / len(outs) > 0.6
        opens = {(d.server, d.position_id): d for d in sample.deals.values() if d.entry == "in"}
        holds = [(d.time - opens[(d.server, d.position_id)].time).total_seconds() for d in outs
                 if (d.server, d.position_id) in opens]
        assert holds and max(holds) < 60


def test_mirror_trades_are_opposite_and_close_in_time(sample: Sample) -> None:
    for case in (c for c in sample.truth if c["typology"] == "mirror_trades"):
        first, second = case["accounts"]
        ins = [sample.deals[e] for e in case["event_ids"]
               if e in sample.deals and sample.deals[e].entry == "in"]
        a = [d for d in ins if account_key_of(d) == first]
        b = [d for d in ins if account_key_of(d) == second]
        matched = 0
        for x in a:
            for y in b:
                if x.symbol == y.symbol and x.side != y.side and x.lots == y.lots and \
                        0 <= (y.time - x.time).total_seconds() <= 10:
                    matched += 1
                    break
        assert matched >= min(len(a), len(b)) * 0.8


# -- reference data -----------------------------------------------------------------------------


def test_sanctions_files_are_in_the_sdn_layout() -> None:
    assert SDN_FILE.read_text(encoding="utf-8") == sdn_csv()
    assert ALT_FILE.read_text(encoding="utf-8") == alt_csv()
    entries = load_list()
    assert len(entries) >= 20 and any(not e.individual for e in entries)
    for line in SDN_FILE.read_text(encoding="utf-8").splitlines():
        assert line.count(",-0- ") >= 5  # the null marker OFAC writes
    individuals = [e for e in entries if e.individual]
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", e.dob) and ", " in e.name for e in individuals)
    assert sum(len(e.aliases) for e in entries) >= 20


def test_geoip_file_matches_the_ip_plan() -> None:
    path = GEOIP_FILE
    assert path.read_text(encoding="utf-8") == geoip_csv()
    for block in GEOIP.blocks:
        net = ipaddress.ip_network(block.cidr)
        assert net.is_global, block


def test_partner_trees_are_valid_commission_configurations(settings: Settings) -> None:
    sim = Brokerage(settings, seed=2, accounts=400)
    configs = sim.partner_configs()
    assert set(configs) == {"acme", "zenith"}
    for doc in configs.values():
        config = parse_commissions(doc)
        levels = {ib.id: ib.parent for ib in config.ibs}
        depth = max(_depth(ib, levels) for ib in levels)
        assert 3 <= depth <= 4
        assert all(re.fullmatch(r"IB-\d+", ib) for ib in levels)


def _depth(ib: str, parents: dict[str, str | None]) -> int:
    d = 1
    node = parents[ib]
    while node is not None:
        d += 1
        node = parents[node]
    return d


def test_webhooks_are_signed_with_the_configured_secrets(example: Settings) -> None:
    sim = Brokerage(example, seed=4, accounts=300)
    assert set(sim.psp) == set(example.psp.providers)
    for name, psp in sim.psp.items():
        assert psp.secret == example.psp.secret_for(name)
        assert psp.tenant == example.psp.providers[name].tenant


def test_without_a_psp_section_the_simulator_brings_its_merchant_accounts(
        settings: Settings) -> None:
    sim = Brokerage(settings, seed=8, accounts=600, events=40_000)
    assert set(sim.psp) == {"skrill", "praxis", "coinspaid", "nuvei", "stripe"}
    assert {p.tenant for p in sim.psp.values()} == {"acme", "zenith"}
    sim.keep_webhooks()
    normalise = normaliser(sim)
    hooks = 0
    for i, (env, hook) in enumerate(sim.stream(40_000)):
        located = Envelope(env.topic, env.value, env.timestamp_ms, env.key, env.headers, -1, i)
        assert not [r for r in normalise(located) if isinstance(r, DeadLetter)], env
        if hook is not None:
            verify_webhook(hook, sim.psp, env.timestamp_ms / 1000)
            hooks += 1
    assert hooks > 20


# -- the command line and live mode -------------------------------------------------------------


def test_cli_file_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sim.jsonl"
    code = cli.main(["--events", "5000", "--seed", "9", "--accounts", "300", "--out", str(out),
                     "--partners", str(tmp_path / "partners")], settings=FIXED)
    assert code == 0
    assert len(list(read_envelopes(out))) == 5_000
    assert (tmp_path / "sim.truth.jsonl").exists()
    assert (tmp_path / "partners" / "commissions-acme.yaml").exists()
    captured = capsys.readouterr()
    text = captured.err  # progress and summary on stderr: stdout stays free for data
    assert "5,000 events" in text and "injected cases" in text and str(out) in text
    assert not captured.out
    assert cli.main(["--events", "10"], settings=FIXED) == 2  # neither --out nor --kafka


class _Receiver(http.server.BaseHTTPRequestHandler):
    """A stand-in for the webhook receiver: verifies each post as the real one does."""

    sim: Brokerage
    results: list[tuple[str, bool]]

    def do_POST(self) -> None:
        provider = self.path.rsplit("/", 1)[-1]
        body = self.rfile.read(int(self.headers["Content-Length"]))
        psp = self.sim.psp[provider]
        try:
            MODULES[provider].verify_for(body, dict(self.headers), psp.cfg, psp.secret, time.time())
            ok = True
        except Exception:
            ok = False
        self.results.append((provider, ok))
        self.send_response(200 if ok else 401)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args: Any) -> None:
        pass


def test_run_live_paces_publishes_and_posts_webhooks(settings: Settings) -> None:
    sim = Brokerage(settings, seed=6, accounts=400, events=8_000,
                    start_ms=int(time.time() * 1000))
    _Receiver.sim = sim
    _Receiver.results = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    published: list[Envelope] = []
    try:
        stats = sim.run_live(lambda envs: published.extend(envs), rate=0, n=8_000, bursts=True,
                             post_url=f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
    assert stats.events == 8_000
    assert stats.posted > 0 and stats.post_failures == 0
    assert all(ok for _, ok in _Receiver.results)
    assert not any(env.topic.startswith("psp.") for env in published)
    assert len(published) + stats.posted == 8_000
    # pacing: 400 events at 2,000/s take about 0.2 s
    paced = Brokerage(settings, seed=6, accounts=200, events=400)
    started = time.monotonic()
    paced.run_live(lambda envs: sum(1 for _ in envs), rate=2_000, n=400)
    assert time.monotonic() - started >= 0.15


def test_cli_live_mode_hands_envelopes_to_the_callers_publisher(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seen: dict[str, Any] = {}

    def publish(bootstrap: str, envelopes: Any, topic_prefix: str = "") -> int:
        seen["bootstrap"], seen["prefix"] = bootstrap, topic_prefix
        seen["envelopes"] = list(envelopes)
        return len(seen["envelopes"])

    truth = tmp_path / "live-truth.jsonl"
    code = cli.main(["--kafka", "--rate", "0", "--events", "3000", "--accounts", "300",
                     "--truth", str(truth)], publish=publish, bootstrap=lambda s: "broker:9092",
                    settings=FIXED)
    assert code == 0
    assert seen["bootstrap"] == "broker:9092" and len(seen["envelopes"]) == 3_000
    now_ms = time.time() * 1000
    assert abs(seen["envelopes"][0].timestamp_ms - now_ms) < 3_600_000  # live: starts now
    assert truth.exists()
    assert "3,000 events" in capsys.readouterr().err
    assert cli.main(["--kafka", "--events", "10"], settings=FIXED) == 2  # no publisher given
