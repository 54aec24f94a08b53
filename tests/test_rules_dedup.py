"""One alert per fact: chargebacks (read from the providers' documented payloads), redeliveries
and corrections collapse into one alert; deleted bookings leave the windows; corrected amounts are
re-evaluated; one person across platforms is one client; the IP kind the geo data knows is
honoured; a CoinsPaid deposit address is the broker's; cool-downs per subject kind."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import orjson
import pytest

from connectors.psp import praxis, skrill, stripe
from pipelines.config import Settings
from risk_rules.engine import RulesConfig, RuleSettings, cooldown_hours
from schemas.events import AccountUpdate, BalanceOperation
from schemas.identity import account_key
from schemas.payment_merge import PaymentMerger
from tests.test_psp_connectors import (
    NOW,
    charge,
    env,
    make_settings,
    praxis_doc,
    praxis_request,
    skrill_form,
    stripe_event,
)
from tests.test_rules_builders import SERVER, account, acct, at, engine, feed, ledger, login, psp


@pytest.fixture(scope="module")
def cfg() -> Settings:
    return make_settings()


def _chargeback_ops(cfg: Settings, provider: str) -> list[BalanceOperation]:
    """The provider's approved deposit, then its chargeback notification (both operations)."""
    t = NOW * 1000
    if provider == "skrill":
        return [op for i, s in enumerate(("2", "-3")) for op in skrill.read_skrill(
            env("psp.skrill", skrill_form(s), t + i * 86_400_000, offset=i + 1), cfg)]
    if provider == "praxis":
        return [op for i, s in enumerate(("approved", "chargeback")) for op in praxis.read_praxis(
            env("psp.praxis", praxis_request(praxis_doc(s))[0], t + i * 86_400_000, offset=i + 1), cfg)]
    dispute = {"id": "dp_1", "object": "dispute", "amount": 2000, "currency": "usd",
               "charge": charge(), "payment_intent": "pi_3Mtw", "status": "needs_response",
               "metadata": {}}
    return [op for i, body in enumerate((
        stripe_event("charge.succeeded", "evt_1", obj=charge()),
        stripe_event("charge.dispute.created", "evt_2", obj=dispute),
    )) for op in stripe.read_stripe(env("psp.stripe", orjson.dumps(body), t + i * 86_400_000,
                                        offset=i + 1), cfg)]


@pytest.mark.parametrize("provider", ["skrill", "praxis", "stripe"])
def test_a_chargeback_is_one_alert(cfg: Settings, provider: str) -> None:
    ops = _chargeback_ops(cfg, provider)
    back = [o for o in ops if o.status == "chargeback"]
    assert len(back) == 2  # the deposit marked charged back and its reversing entry
    eng = engine("chargeback", cooldown_hours=0)
    merge = PaymentMerger()
    alerts = feed(eng, [merge(o) for o in ops])
    assert len(alerts) == 1 and alerts[0].rule_id == "chargeback"
    assert alerts[0].evidence == [back[0].op_key]
    # the provider re-sends the chargeback notification: still one alert
    assert feed(eng, [merge(o) for o in _chargeback_ops(cfg, provider)[-2:]]) == []


def test_two_chargebacks_of_two_payments_are_two_alerts() -> None:
    ops = [psp(-300, at(0), status="chargeback", kind="chargeback", key="psp:praxis:1:chargeback"),
           psp(300, at(0), status="chargeback", key="psp:praxis:1"),
           psp(-200, at(1), status="chargeback", kind="chargeback", key="psp:praxis:2:chargeback")]
    assert [a.evidence for a in feed(engine("chargeback", cooldown_hours=0), ops)] == [
        ["psp:praxis:1"], ["psp:praxis:2"]]


def _again(op: BalanceOperation, **update: Any) -> BalanceOperation:
    """A later version of the same platform operation (a correction or a deletion)."""
    return op.model_copy(update={"version": op.version + 1_000_000, **update})


STRUCT: dict[str, Any] = {"threshold": 10000, "lower_ratio": 0.9, "min_count": 3, "window_hours": 48}


def test_a_deleted_duplicate_booking_leaves_the_structuring_window() -> None:
    a, b = ledger(9800, at(0)), ledger(9500, at(5))
    dup = ledger(9800, at(0, 1))  # the dealer booked the first one twice, then deleted the copy
    # under: the copy deleted before the second deposit, two in the band
    assert feed(engine("structuring", **STRUCT), [a, dup, _again(dup, event="delete"), b]) == []
    assert feed(engine("structuring", **STRUCT), [a, dup, _again(dup, is_deleted=True), b]) == []
    # what it was before: the copy counted as a third deposit
    assert len(feed(engine("structuring", **STRUCT), [a, dup, b])) == 1
    # over: a third real deposit after the deletion
    alerts = feed(engine("structuring", **STRUCT),
                  [a, dup, _again(dup, event="delete"), b, ledger(9900, at(20))])
    assert len(alerts) == 1 and dup.op_key not in alerts[0].evidence and alerts[0].facts["deposits"] == 3


def test_a_corrected_amount_is_re_evaluated() -> None:
    # large_transaction: 40,000 corrected to 60,000 alerts; a repeat of the correction does not
    first = ledger(40000, at(0))
    eng = engine("large_transaction", threshold=50000)
    assert feed(eng, [first]) == []
    fixed = _again(first, amount=Decimal(60000))
    alerts = feed(eng, [fixed])
    assert len(alerts) == 1 and alerts[0].facts["amount"] == 60000.0
    assert feed(eng, [_again(fixed)]) == []  # a redelivery of the correction: same fact
    # structuring: a third deposit corrected out of the band leaves the window ...
    a, b, c = ledger(9800, at(0)), ledger(9500, at(5)), ledger(8000, at(6))
    eng = engine("structuring", **STRUCT)
    assert feed(eng, [a, b, c]) == []
    # ... corrected into the band it counts
    assert len(feed(eng, [_again(c, amount=Decimal(9700))])) == 1
    eng = engine("structuring", **STRUCT)
    assert len(feed(eng, [a, b, ledger(9700, at(6))])) == 1


def test_a_corrected_withdrawal_under_the_ratio_does_not_alert() -> None:
    p = {"lookback_hours": 96, "withdraw_ratio": 0.8, "max_lots": 0.1, "min_deposit": 100}
    dep = ledger(5000, at(0))
    eng = engine("deposit_withdraw_no_trading", **p)
    # the deposit was corrected down to 1,000 before the 3,950 withdrawal: 395 % -> alert; corrected
    # up to 5,000 again: 79 % -> none
    assert len(feed(eng, [dep, _again(dep, amount=Decimal(1000)), ledger(-3950, at(10))])) == 1
    eng = engine("deposit_withdraw_no_trading", **p)
    assert feed(eng, [dep, ledger(-3950, at(10))]) == []


def _person(login_no: int, platform: str, name: str, client_id: str = "",
            dob: date | None = date(1979, 3, 14)) -> AccountUpdate:
    rec = account(login_no, name=name, client_id=client_id, date_of_birth=dob)
    if platform != "mt5":
        server = "ACME-MT4-Live"
        rec = rec.model_copy(update={"platform": platform, "server": server,
                                     "account_key": account_key(platform, server, login_no)})
    return rec


def test_one_person_spelled_three_ways_across_platforms_is_one_client() -> None:
    people = [
        _person(101, "mt5", "Jürgen Müller-Strauß", client_id="C-1"),  # CRM-linked
        _person(102, "mt4", "MUELLER-STRAUSS, JUERGEN"),  # MT4: no CRM id, ASCII capitals
        _person(103, "mt5", "Juergen Muller Strauss"),
    ]
    mt4 = "ACME-MT4-Live"
    card = [psp(100, at(1), login=101, fp="card-9"),
            psp(100, at(2), login=102, fp="card-9").model_copy(update={"server": mt4}),
            psp(100, at(3), login=103, fp="card-9")]
    servers_eng = engine("shared_instrument", min_accounts=3)
    servers_eng.ctx.server_platform[mt4] = "mt4"
    # under: one person behind three accounts, plus one other client = 2 clients
    other = [_person(104, "mt5", "Anna Kowalska"), psp(100, at(4), login=104, fp="card-9")]
    assert feed(servers_eng, [*people, *card, *other]) == []
    # over: a third client
    third = [_person(105, "mt5", "Jürgen Müller-Strauß", dob=date(1990, 1, 1)),  # another birth date
             psp(100, at(5), login=105, fp="card-9")]
    alerts = feed(servers_eng, third)
    assert len(alerts) == 1 and alerts[0].facts["clients"] == 3 and len(alerts[0].facts["accounts"]) == 5


def test_shared_ip_ignores_a_mobile_carrier_address() -> None:
    people = [account(100 + i, client_id=f"C{i}") for i in range(4)]
    mobile = [login(at(i), login_no=100 + i, ip="68.108.3.4") for i in range(4)]  # DE mobile
    home = [login(at(i), login_no=100 + i, ip="4.97.3.4") for i in range(4)]  # DE residential
    assert feed(engine("shared_ip", min_accounts=4, ignore_kinds=["mobile"]), [*people, *mobile]) == []
    assert len(feed(engine("shared_ip", min_accounts=4, ignore_kinds=["mobile"]), [*people, *home])) == 1
    # without the kind (or with the kind not configured) the address counts as any other
    assert len(feed(engine("shared_ip", min_accounts=4), [*people, *mobile])) == 1


def test_impossible_travel_allows_for_where_a_mobile_carrier_puts_its_gateway() -> None:
    de, tr_mobile, in_mobile = "4.97.0.1", "96.114.0.1", "146.37.0.1"  # ~1,740 and ~6,000 km apart
    se_home = "21.12.0.1"  # ~810 km
    p = {"max_speed_kmh": 1000, "min_distance_km": 500, "mobile_min_distance_km": 2000}

    def alerts(to: str, **over: float) -> int:
        return len(feed(engine("impossible_travel", **{**p, **over}),
                        [login(at(0), ip=de), login(at(0, 10), ip=to)]))

    # residential to residential, 810 km in 10 minutes: travel no one can do
    assert alerts(se_home) == 1
    # under: to a mobile address 1,740 km away; over: 6,000 km to a mobile address
    assert alerts(tr_mobile) == 0
    assert alerts(in_mobile) == 1
    # the threshold is configurable: 1,500 km lets the 1,740 km one alert
    assert alerts(tr_mobile, mobile_min_distance_km=1500) == 1


def test_a_coinspaid_payout_is_not_to_another_instrument_because_of_the_deposit_address() -> None:
    def coinspaid(amount: int, t: Any, fp: str) -> BalanceOperation:
        return psp(amount, t, fp=fp).model_copy(update={"provider": "coinspaid", "method": "crypto"})

    # the deposit arrived on the broker's address; the payout goes to the client's wallet
    ops = [coinspaid(1000, at(0), "broker-address-7"), coinspaid(-900, at(5), "client-wallet")]
    assert feed(engine("withdrawal_other_instrument"), ops) == []
    # a card deposit and a payout to a wallet never used: alerts
    ops = [psp(1000, at(0), fp="card-1"), coinspaid(-900, at(5), "client-wallet")]
    assert len(feed(engine("withdrawal_other_instrument"), ops)) == 1


def test_cool_down_per_subject_kind_or_subject() -> None:
    rs = RuleSettings(id="shared_ip", version=1, cooldown_hours=168,
                      cooldown_subjects={"ip": 6, "ip:9.9.9.9": 0})
    assert cooldown_hours(rs, "ip:1.2.3.4") == 6 and cooldown_hours(rs, "ip:9.9.9.9") == 0
    assert cooldown_hours(rs, acct(100)) == 168
    # in the engine: a second failed-login burst on the account 7 h later alerts with a 6 h override
    eng_cfg = RulesConfig(version=1, rules=[RuleSettings(
        id="failed_logins_account", version=1, cooldown_hours=24, cooldown_subjects={"account": 6},
        params={"min_failures": 3, "window_minutes": 30})])
    from risk_rules.engine import RuleEngine

    eng = RuleEngine(eng_cfg, servers={SERVER: "mt5"})
    burst = [login(at(0, i), kind="failed") for i in range(3)]
    later = [login(at(7, i), kind="failed") for i in range(3)]
    assert len(eng.run(burst)) == 1 and len(eng.run(later)) == 1
    eng = RuleEngine(eng_cfg.model_copy(update={"rules": [eng_cfg.rules[0].model_copy(
        update={"cooldown_subjects": {}})]}), servers={SERVER: "mt5"})
    assert len(eng.run(burst)) == 1 and eng.run(later) == []
