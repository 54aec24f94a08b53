"""Reconciliation (docs/reconciliation.md): the matcher per break kind (under and over the
tolerance, resolved by a later event, sides arriving out of order), a property (clean pairs in
any order within the tolerance never break), the dataflow on a simulated history checked
against the simulator's ground truth (every injected break found with its kind, nothing else),
and `brokerstream recon report`."""

from __future__ import annotations

import csv
import io
import pickle
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from brokerstream.cli import main as cli_main
from brokerstream.engine import run_replay
from brokerstream.publish import write_envelopes
from connectors.registry import Normaliser, readers_for
from connectors.routing import Router
from devtools.simulator.brokerage import Brokerage
from pipelines.config import ConfigError, Settings, parse_settings
from pipelines.recon_step import ReconStep, Tick, recon_inputs
from pipelines.store import Store
from pipelines.tables import ALERTS, RECONCILIATION_BREAKS
from reconciliation import BREAK_KINDS, Break, Matcher, ReconSettings, platform_reference
from reconciliation.matcher import BreakAged
from schemas.events import BalanceOperation
from tests.conftest import TEST_CONFIG

T0 = datetime(2024, 11, 25, 9, 0, tzinfo=UTC)
TOL = 3600  # deposits
WTOL = 86_400  # withdrawals, refunds, chargebacks
RECON = ReconSettings(enabled=True, tolerance_s=TOL, withdrawal_tolerance_s=WTOL,
                      alert_after_s=2 * 86_400, keep_days=10)
_version = iter(range(1, 10**9))


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def psp(txn: str, kind: str, amount: str, status: str, t: float, *, provider: str = "praxis",
        currency: str = "USD", login: int = 5001, suffix: str = "", comment: str = "",
        version: int | None = None) -> BalanceOperation:
    return BalanceOperation(
        op_key=f"psp:{provider}:{txn}{suffix}", tenant="acme", platform="psp", server="ACME-MT5-Live",
        login=login, op_id=txn, kind=kind, amount=Decimal(amount), currency=currency, status=status,
        provider=provider, comment=comment, time=at(t),
        version=next(_version) if version is None else version, source="test")


def plat(deal: int, amount: str, comment: str, t: float, *, currency: str = "USD",
         login: int = 5001, event: str = "add", version: int | None = None) -> BalanceOperation:
    return BalanceOperation(
        op_key=f"mt5:ACME-MT5-Live:{deal}", tenant="acme", platform="mt5", server="ACME-MT5-Live",
        login=login, op_id=str(deal), kind="balance", amount=Decimal(amount), currency=currency,
        comment=comment, time=at(t), event=event,  # type: ignore[arg-type]
        is_deleted=event == "delete", version=next(_version) if version is None else version,
        source="test")


class Run:
    """A matcher and everything it said."""

    def __init__(self, settings: ReconSettings = RECON) -> None:
        self.m = Matcher("acme", settings)
        self.out: list[Break | BreakAged] = []

    def feed(self, *ops: BalanceOperation) -> list[Break | BreakAged]:
        new: list[Break | BreakAged] = []
        for o in ops:
            new += self.m.feed(o)
        self.out += new
        return new

    def tick(self, seconds: float) -> list[Break | BreakAged]:
        new = self.m.tick(at(seconds))
        self.out += new
        return new

    def breaks(self) -> list[Break]:
        return [b for b in self.out if isinstance(b, Break)]

    def events(self) -> list[tuple[str, str]]:
        return [(b.kind, b.event) for b in self.breaks()]

    def open(self) -> dict[str, Break]:
        return {b.break_id: b for b in self.m.open_breaks()}


# -- references -------------------------------------------------------------------------------


def test_platform_comment_names_provider_and_reference() -> None:
    providers = RECON.providers
    assert platform_reference("Deposit praxis 1234567", providers) == ("praxis", "1234567")
    assert platform_reference("Withdrawal Skrill WD100234", providers) == ("skrill", "WD100234")
    assert platform_reference("Deposit bank wire DP100", providers) is None
    assert platform_reference("praxis", providers) is None  # no reference after the name


def test_a_deposit_matched_in_time_makes_no_break() -> None:
    r = Run()
    r.feed(psp("111", "deposit", "100.00", "pending", 0), psp("111", "deposit", "100.00", "approved", 30),
           plat(9001, "100.00", "Deposit praxis 111", 60))
    r.tick(11 * 86_400)
    assert r.out == []
    [book] = r.m.accounts.values()
    assert book.groups == {} and book.alias == {}, "a settled payment is forgotten after keep_days"
    assert list(book.settled) == ["psp:praxis:111"], "only its id is remembered"


def test_the_merchant_reference_matches_too() -> None:
    """Skrill's transaction id is the broker's `<server>:<login>:<reference>`; the platform
    names the reference."""
    r = Run()
    r.feed(psp("ACME-MT5-Live:5001:DP100234", "deposit", "50", "approved", 0, provider="skrill"),
           plat(9002, "50", "Deposit skrill DP100234", 5))
    r.tick(TOL * 3)
    assert r.out == []


# -- one test per kind -------------------------------------------------------------------------


def test_missing_on_platform_opens_after_the_tolerance_and_resolves_when_booked() -> None:
    r = Run()
    r.feed(psp("222", "deposit", "250.00", "approved", 0))
    assert r.tick(TOL - 1) == []  # under the tolerance: waiting
    [opened] = r.tick(TOL)
    assert isinstance(opened, Break)
    assert (opened.break_id, opened.kind, opened.event, opened.status) == (
        "missing_on_platform:psp:praxis:222", "missing_on_platform", "opened", "open")
    assert opened.psp_amount == Decimal("250.00") and opened.platform_op_key == ""
    assert opened.basis_time == at(0) and opened.detected_at == at(TOL)
    [resolved] = r.feed(plat(9003, "250.00", "Deposit praxis 222", TOL + 600))
    assert isinstance(resolved, Break)
    assert (resolved.event, resolved.status, resolved.resolved_at) == ("resolved", "resolved", at(TOL + 600))
    assert resolved.resolution == "closed by mt5:ACME-MT5-Live:9003"
    assert resolved.version > opened.version


def test_missing_at_psp_and_the_late_psp_notification() -> None:
    """The platform credit comes first (out of order); the PSP's notice after the tolerance."""
    r = Run()
    r.feed(plat(9004, "75.50", "Deposit praxis 333", 0))
    assert r.tick(TOL - 1) == []
    assert r.tick(TOL) and r.events() == [("missing_at_psp", "opened")]
    [b] = r.open().values()
    assert b.break_id == "missing_at_psp:mt5:ACME-MT5-Live:9004" and b.psp_op_key == ""
    r.feed(psp("333", "deposit", "75.50", "approved", TOL + 100))
    assert r.events() == [("missing_at_psp", "opened"), ("missing_at_psp", "resolved")]
    assert r.open() == {}


def test_a_late_psp_notice_within_the_tolerance_opens_nothing() -> None:
    r = Run()
    r.feed(plat(9005, "75.50", "Deposit praxis 334", 0))
    r.feed(psp("334", "deposit", "75.50", "approved", TOL - 10))
    r.tick(TOL * 5)
    assert r.out == []


def test_amount_exact_to_the_cent() -> None:
    r = Run()
    r.feed(psp("444", "deposit", "100.001", "approved", 0), plat(9006, "100.00", "Deposit praxis 444", 1))
    assert r.out == [], "the same cent"
    r = Run()
    r.feed(psp("445", "deposit", "100.00", "approved", 0), plat(9007, "100.01", "Deposit praxis 445", 1))
    assert r.events() == [("amount_mismatch", "opened")]
    [b] = r.open().values()
    assert (b.psp_amount, b.platform_amount) == (Decimal("100.00"), Decimal("100.01"))
    # the dealer corrects the booking: a new version of the same deal
    r.feed(plat(9007, "100.00", "Deposit praxis 445", 1, event="update"))
    assert r.events()[-1] == ("amount_mismatch", "resolved")


def test_currency_mismatch_between_iso_currencies_only() -> None:
    r = Run()
    r.feed(psp("555", "deposit", "100.00", "approved", 0, currency="GBP"),
           plat(9008, "100.00", "Deposit praxis 555", 2))
    assert r.events() == [("currency_mismatch", "opened")]
    r = Run()  # a crypto provider reports the coin: matched on the reference, no amount compared
    r.feed(psp("556", "deposit", "0.0021", "approved", 0, provider="coinspaid", currency="BTC"),
           plat(9009, "100.00", "Deposit coinspaid 556", 2))
    r.tick(TOL * 2)
    assert r.out == []


def test_status_mismatch_credited_but_declined_then_reversed() -> None:
    r = Run()
    r.feed(psp("666", "deposit", "300", "pending", 0), plat(9010, "300", "Deposit praxis 666", 10),
           psp("666", "deposit", "300", "declined", 20))
    assert r.tick(20 + TOL - 1) == []
    r.tick(20 + TOL)
    [b] = r.open().values()
    assert b.kind == "status_mismatch" and b.psp_status == "declined" and b.platform_op_key.endswith(":9010")
    r.feed(plat(9011, "-300", "Reversed praxis 666", 20 + TOL + 50))  # the broker takes it back
    assert r.events() == [("status_mismatch", "opened"), ("status_mismatch", "resolved")]


def test_duplicate_credit_opens_at_once_and_a_deleted_copy_resolves_it() -> None:
    r = Run()
    r.feed(psp("777", "deposit", "500", "approved", 0), plat(9012, "500", "Deposit praxis 777", 5),
           plat(9013, "500", "Deposit praxis 777", 6))
    assert r.events() == [("duplicate_credit", "opened")]
    [b] = r.open().values()
    assert b.break_id == "duplicate_credit:psp:praxis:777" and b.platform_op_key.endswith(":9013")
    r.feed(plat(9013, "500", "Deposit praxis 777", 6, event="delete"))
    assert r.events()[-1] == ("duplicate_credit", "resolved") and r.open() == {}


def test_chargeback_not_reversed_on_the_platform() -> None:
    r = Run()
    r.feed(psp("888", "deposit", "1000", "approved", 0), plat(9014, "1000", "Deposit praxis 888", 5),
           psp("888", "deposit", "1000", "chargeback", 86_400),
           psp("888", "chargeback", "-1000", "chargeback", 86_400, suffix=":chargeback"))
    assert r.tick(86_400 + WTOL - 1) == []
    r.tick(86_400 + WTOL)
    [b] = r.open().values()
    assert b.break_id == "reversal_not_booked:psp:praxis:888:chargeback" and b.psp_amount == Decimal(-1000)
    r.feed(plat(9015, "-1000", "Chargeback praxis 888", 86_400 + WTOL + 60))
    assert r.events() == [("reversal_not_booked", "opened"), ("reversal_not_booked", "resolved")]


def test_a_praxis_refund_is_its_own_transaction_under_the_same_order_id() -> None:
    order = "ACME-MT5-Live:5001:DP100345-PX"
    r = Run()
    r.feed(psp("901", "deposit", "80", "approved", 0, comment=order),
           plat(9016, "80", "Deposit praxis 901", 3),
           psp("955", "refund", "-80", "refunded", 3 * 86_400, comment=order),
           plat(9017, "-80", "Refund praxis 955", 3 * 86_400 + 600))
    r.tick(20 * 86_400)
    assert r.out == []


def test_withdrawals_debit_first_and_a_declined_payout_must_come_back() -> None:
    r = Run()
    # the back office debits, the payout exists at the provider an hour later
    r.feed(plat(9018, "-200", "Withdrawal skrill WD100400", 0),
           psp("ACME-MT5-Live:5001:WD100400", "withdrawal", "-200", "pending", 3600, provider="skrill"),
           psp("ACME-MT5-Live:5001:WD100400", "withdrawal", "-200", "approved", 7200, provider="skrill"))
    r.tick(WTOL * 3)
    assert r.out == []
    r = Run()
    r.feed(plat(9019, "-200", "Withdrawal skrill WD100401", 0),
           psp("ACME-MT5-Live:5001:WD100401", "withdrawal", "-200", "declined", 3600, provider="skrill"))
    r.tick(3600 + WTOL)
    assert r.events() == [("status_mismatch", "opened")]
    r.feed(plat(9020, "200", "Returned skrill WD100401", 3600 + WTOL + 1))
    assert r.events()[-1] == ("status_mismatch", "resolved")


def test_a_platform_reversal_the_psp_never_reported() -> None:
    """Nuvei chargebacks are confirmed at Nuvei, not by a DMN: the platform's debit against a
    deposit the provider still reports approved is `missing_at_psp`, naming both sides."""
    r = Run()
    r.feed(psp("412345678", "deposit", "90", "approved", 0, provider="nuvei"),
           plat(9021, "90", "Deposit nuvei 412345678", 4),
           plat(9022, "-90", "Chargeback nuvei 412345678", 86_400))
    r.tick(86_400 + WTOL)
    [b] = r.open().values()
    assert b.break_id == "missing_at_psp:mt5:ACME-MT5-Live:9022"
    assert b.psp_op_key == "psp:nuvei:412345678" and b.platform_amount == Decimal(-90)


def test_an_old_open_break_is_aged_once() -> None:
    r = Run()
    r.feed(psp("999", "deposit", "10", "approved", 0))
    r.tick(TOL)
    assert r.tick(2 * 86_400 - 1) == []
    [aged] = r.tick(2 * 86_400)
    assert isinstance(aged, BreakAged) and aged.brk.kind == "missing_on_platform"
    assert aged.age_s == 2 * 86_400 and aged.at == at(2 * 86_400)
    assert r.tick(5 * 86_400) == []  # once


def test_a_break_stays_until_it_resolves_but_settled_payments_leave() -> None:
    r = Run()
    r.feed(psp("1001", "deposit", "10", "approved", 0), psp("1002", "deposit", "20", "approved", 0),
           plat(9023, "20", "Deposit praxis 1002", 5))
    r.tick(40 * 86_400)
    groups = [g.gid for book in r.m.accounts.values() for g in book.groups.values()]
    assert groups == ["praxis|1001"], "the matched payment is forgotten, the broken one kept"


def test_a_chargeback_after_the_deposit_was_forgotten() -> None:
    """keep_days (10 here) after a matched deposit its group is forgotten, its id remembered
    (`settled_days`): a chargeback 60 days later is not taken for an unbooked deposit."""
    r = Run()
    r.feed(psp("1201", "deposit", "700", "approved", 0), plat(9030, "700", "Deposit praxis 1201", 5))
    r.tick(11 * 86_400)
    assert [list(b.settled) for b in r.m.accounts.values()] == [["psp:praxis:1201"]]
    day60 = 60 * 86_400
    r.feed(psp("1201", "deposit", "700", "chargeback", day60),
           psp("1201", "chargeback", "-700", "chargeback", day60, suffix=":chargeback"),
           plat(9031, "-700", "Chargeback praxis 1201", day60 + 3600))
    r.tick(day60 + 3 * WTOL)
    assert r.out == []
    day64 = 64 * 86_400
    r.feed(psp("1202", "deposit", "50", "approved", day64), plat(9032, "50", "Deposit praxis 1202", day64))
    r.tick(day64 + 19 * 86_400)
    r.feed(psp("1202", "deposit", "50", "chargeback", day64 + 20 * 86_400),
           psp("1202", "chargeback", "-50", "chargeback", day64 + 20 * 86_400, suffix=":chargeback"))
    r.tick(day64 + 20 * 86_400 + WTOL)
    assert r.events() == [("reversal_not_booked", "opened")], "only the unbooked reversal"
    r.feed(plat(9033, "-50", "Chargeback praxis 1202", day64 + 21 * 86_400 + 60))
    r.tick(400 * 86_400)
    assert r.m.accounts == {}, "settled ids leave after settled_days"


def test_a_restored_snapshot_continues_as_if_never_stopped() -> None:
    ops = [psp("1101", "deposit", "10", "approved", 0), plat(9024, "11", "Deposit praxis 1101", 5),
           psp("1102", "deposit", "30", "approved", 10), plat(9025, "30", "Deposit praxis 1199", 20),
           psp("1103", "deposit", "40", "approved", 30)]
    whole = Run()
    whole.feed(*ops)
    whole.tick(TOL * 3)
    half = Run()
    half.feed(*ops[:3])
    pickle.dumps(half.m)  # a snapshot in between: only touched accounts are pickled again
    half.m = pickle.loads(pickle.dumps(half.m))
    half.feed(*ops[3:])
    half.tick(TOL * 3)
    assert [b.row() for b in half.breaks()] == [b.row() for b in whole.breaks()]
    assert {b.kind for b in whole.breaks()} == {"amount_mismatch", "missing_on_platform", "missing_at_psp"}


# -- the property ------------------------------------------------------------------------------

PROVIDERS = ["praxis", "coinspaid", "nuvei", "skrill", "stripe"]
pair = st.tuples(
    st.sampled_from(["deposit", "withdrawal"]),
    st.integers(min_value=1, max_value=10**9),  # cents
    st.sampled_from(PROVIDERS),
    st.integers(min_value=0, max_value=30 * 86_400),  # PSP time, s
    st.integers(min_value=-TOL // 2 + 1, max_value=TOL // 2 - 1),  # platform time - PSP time
    st.integers(min_value=0, max_value=TOL // 2 - 1),  # PSP side arrives this late
    st.integers(min_value=0, max_value=TOL // 2 - 1),  # platform side arrives this late
    st.integers(min_value=5001, max_value=5004),
)


@hsettings(max_examples=60, deadline=None)
@given(st.lists(pair, min_size=1, max_size=25))
def test_clean_pairs_in_any_order_within_the_tolerance_never_break(pairs: list[Any]) -> None:
    same = ReconSettings(enabled=True, tolerance_s=TOL, withdrawal_tolerance_s=TOL,
                         alert_after_s=TOL, keep_days=1, settled_days=2)
    arrivals: list[tuple[float, int, BalanceOperation]] = []
    for i, (kind, cents, provider, t, d, late_psp, late_plat, login) in enumerate(pairs):
        amount = Decimal(cents).scaleb(-2) * (1 if kind == "deposit" else -1)
        txn = f"T{i}"
        word = "Deposit" if kind == "deposit" else "Withdrawal"
        arrivals.append((t + late_psp, 2 * i, psp(txn, kind, str(amount), "approved", t,
                                                   provider=provider, login=login)))
        booking = plat(20_000 + i, str(amount), f"{word} {provider} {txn}", t + d, login=login)
        arrivals.append((t + d + late_plat, 2 * i + 1, booking))
    r = Run(same)
    for _, _, o in sorted(arrivals, key=lambda a: (a[0], a[1])):
        r.feed(o)
    r.tick(40 * 86_400)
    assert r.out == []
    assert r.m.accounts == {} and r.m.heap == [], "nothing left after keep_days + settled_days"


# -- the dataflow on a simulated history, against the simulator's ground truth -------------------

TOLERANCE_OF = {"missing_on_platform": TOL, "missing_at_psp": WTOL, "status_mismatch": WTOL,
                "reversal_not_booked": WTOL}
MARGIN = timedelta(hours=2)  # basis times of the truth and of the engine differ by seconds


class History:
    def __init__(self, sim: Brokerage, path: Path, settings: Settings) -> None:
        self.sim, self.path, self.settings = sim, path, settings


def _history(tmp: Path, chdb_dir: Path, rate: float) -> History:
    base = parse_settings({**TEST_CONFIG, "recon": {
        "enabled": True, "tolerance_s": TOL, "withdrawal_tolerance_s": WTOL,
        "alert_after_s": 2 * 86_400}}, "test config")
    sim = Brokerage(base, seed=11, accounts=300, events=30_000, days=10, typology_rate=30.0,
                    recon_breaks=rate)
    path = tmp / f"recon-{rate}.jsonl"
    write_envelopes(path, sim.envelopes(30_000))
    clickhouse = base.clickhouse.model_copy(update={"dsn": f"chdb://{chdb_dir}",
                                                    "database": f"rc_{uuid.uuid4().hex[:10]}"})
    settings = sim.settings.model_copy(update={"clickhouse": clickhouse})
    run_replay(settings, [path])
    return History(sim, path, settings)


@pytest.fixture(scope="module")
def injected(tmp_path_factory: pytest.TempPathFactory, chdb_dir: Path) -> History:
    return _history(tmp_path_factory.mktemp("recon"), chdb_dir, 0.15)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory, chdb_dir: Path) -> History:
    return _history(tmp_path_factory.mktemp("recon-clean"), chdb_dir, 0.0)


def _store(h: History) -> Store:
    return Store(h.settings.clickhouse_dsn(), h.settings.clickhouse.database)


def _last_time(h: History) -> datetime:
    normalise = Normaliser(Router(h.settings), readers_for(h.settings))
    from brokerstream.publish import read_envelopes

    last = datetime(2000, 1, 1, tzinfo=UTC)
    for env in read_envelopes(h.path):
        for r in normalise(env):
            t = getattr(r, "time", None)
            if isinstance(t, datetime) and type(r).__name__ in ("Deal", "BalanceOperation", "Login"):
                last = max(last, t)
    return last


def _due(truth: list[dict[str, Any]], last: datetime) -> set[str]:
    out = set()
    for t in truth:
        basis = datetime.fromisoformat(t["basis"].replace("Z", "+00:00"))
        wait = timedelta(seconds=TOLERANCE_OF.get(t["kind"], 0))
        if basis + wait + MARGIN <= last:
            out.add(t["break_id"])
    return out


def test_every_injected_break_is_found_with_its_kind_and_nothing_else(injected: History) -> None:
    store = _store(injected)
    try:
        rows = store.query("SELECT break_id, kind, status FROM reconciliation_breaks")[1]
        versions = store.scalar("SELECT count() FROM reconciliation_breaks_store")
    finally:
        store.close()
    found = {bid: kind for bid, kind, _ in rows}
    every = injected.sim.recon_truth(every=True)
    truth = {t["break_id"]: t["kind"] for t in every}
    assert {t["kind"] for t in every if t["injected"]} == set(BREAK_KINDS), "each kind injected"
    false = set(found) - set(truth)
    assert not false, f"breaks the simulator did not make: {sorted(false)[:5]}"
    due = _due(injected.sim.recon_truth(), _last_time(injected))
    missed = due - set(found)
    assert not missed, f"injected breaks not found: {sorted(missed)[:5]}"
    assert all(found[b] == truth[b] for b in found)
    assert len(due) >= 30 and versions >= len(found)
    print("recon truth", Counter(truth.values()), "found", Counter(found.values()))


def test_no_false_break_on_clean_data(clean: History) -> None:
    store = _store(clean)
    try:
        rows = store.query("SELECT break_id, kind, psp_op_key FROM reconciliation_breaks")[1]
    finally:
        store.close()
    truth = clean.sim.recon_truth(every=True)
    assert not any(t["injected"] for t in truth)
    # the only breaks in clean data are the Nuvei reversals no DMN reports (a real gap)
    assert {r[0] for r in rows} <= {t["break_id"] for t in truth}
    assert all(kind == "missing_at_psp" and psp_key.startswith("psp:nuvei:") for _, kind, psp_key in rows)


def test_aged_breaks_are_alerts(injected: History) -> None:
    store = _store(injected)
    try:
        alerts = store.query("""SELECT a.subject, a.severity, a.evidence,
                                       JSONExtractString(a.facts, 'break_id'), a.event_time, a.detected_at
                                FROM alerts AS a WHERE a.rule_id = 'recon.break_aged'""")[1]
        breaks = {r[0]: r[1:] for r in store.query(
            "SELECT break_id, basis_time, kind FROM reconciliation_breaks")[1]}
    finally:
        store.close()
    assert alerts
    for subject, severity, evidence, break_id, event_time, detected_at in alerts:
        basis, _ = breaks[break_id]
        assert event_time == basis and detected_at - basis >= timedelta(days=2)
        assert subject.count(":") == 2 and evidence
        assert severity in ("medium", "high")


def test_the_stage_keys_by_tenant_and_ticks_with_the_batch() -> None:
    o = psp("1", "deposit", "1", "approved", 0)
    [(tenant, items)] = recon_inputs([o])
    assert tenant == "acme" and items[0] is o and items[-1] == Tick("acme", at(0))
    step = ReconStep(RECON, {"ACME-MT5-Live": "mt5"})
    matcher, rows = step(None, o)
    matcher, rows = step(matcher, Tick("acme", at(3 * 86_400)))
    tables = [t for t, _ in rows]
    assert tables == [RECONCILIATION_BREAKS, ALERTS]
    assert rows[1][1][6] == "mt5:ACME-MT5-Live:5001"  # the alert's subject is the account key


# -- configuration and the report ----------------------------------------------------------------


def test_a_bad_recon_setting_fails_at_start_naming_the_field() -> None:
    with pytest.raises(ConfigError, match=r"recon\.tolerance_s"):
        parse_settings({**TEST_CONFIG, "recon": {"tolerance_s": 0}}, "test config")
    with pytest.raises(ConfigError, match=r"recon\.alert_after"):
        parse_settings({**TEST_CONFIG, "recon": {"alert_after": 5}}, "test config")


def _config_file(h: History, tmp: Path) -> Path:
    path = tmp / "recon.yaml"
    doc = {"tenants": TEST_CONFIG["tenants"],
           "clickhouse": {"dsn": h.settings.clickhouse_dsn(), "database": "brokerstream_unused"}}
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def test_recon_report_csv(injected: History, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config_file(injected, tmp_path)
    db = injected.settings.clickhouse.database
    # the day with the most PSP operations, computed from the raw history
    normalise = Normaliser(Router(injected.settings), readers_for(injected.settings))
    from brokerstream.publish import read_envelopes

    latest: dict[str, BalanceOperation] = {}
    for env in read_envelopes(injected.path):
        for r in normalise(env):
            if isinstance(r, BalanceOperation) and r.platform == "psp" and (
                    r.op_key not in latest or latest[r.op_key].version <= r.version):
                latest[r.op_key] = r
    days = Counter(o.time.date() for o in latest.values())
    day = sorted(days, key=lambda d: (-days[d], d))[0]
    out = tmp_path / "report.csv"
    assert cli_main(["recon", "report", "--date", day.isoformat(), "--database", db,
                     "--config", str(config), "--out", str(out)]) == 0
    assert "PSP operations" in capsys.readouterr().out
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    summary = [r for r in rows if r["section"] == "summary"]
    breaks = [r for r in rows if r["section"] == "break"]
    expected_ops = Counter((o.tenant, o.provider) for o in latest.values() if o.time.date() == day)
    have = {(r["tenant"], r["provider"]): int(r["ops"]) for r in summary if int(r["ops"])}
    assert have == dict(expected_ops)
    named = {t["psp_op_key"] for t in injected.sim.recon_truth(every=True) if t["psp_op_key"]}
    for r in summary:
        ops = [o for o in latest.values() if o.time.date() == day and (o.tenant, o.provider) == (
            r["tenant"], r["provider"])]
        unmatched = sum(o.op_key in named for o in ops)
        assert int(r["matched"]) == len(ops) - unmatched
        if ops:
            assert Decimal(r["match_rate"]) == (Decimal(len(ops) - unmatched) / len(ops)).quantize(
                Decimal("0.0001"))
    assert all(r["basis_time"].startswith(day.isoformat()) for r in breaks)
    assert {r["status"] for r in breaks} <= {"open", "resolved"}
    # one tenant only
    assert cli_main(["recon", "report", "--date", day.isoformat(), "--database", db, "--tenant",
                     "zenith", "--config", str(config)]) == 0
    lines = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert lines and {r["tenant"] for r in lines} == {"zenith"}


def test_recon_report_refuses_bad_dates_and_creates_no_database(
        injected: History, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config_file(injected, tmp_path)
    for bad in ("2024-13-01", "yesterday", "2024-2-1"):
        assert cli_main(["recon", "report", "--date", bad, "--config", str(config)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("brokerstream: --date") and err.count("\n") == 1
    name = f"nothere_{uuid.uuid4().hex[:8]}"
    assert cli_main(["recon", "report", "--date", "2024-11-25", "--database", name,
                     "--config", str(config)]) == 2
    assert name in capsys.readouterr().err
    store = _store(injected)
    try:
        assert not store.scalar("SELECT count() FROM system.databases WHERE name = {n:String}", {"n": name})
    finally:
        store.close()
