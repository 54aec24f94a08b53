"""The typologies brokers asked for, just under and just over each threshold of the rules file:
structuring across a client's accounts, one deposit withdrawn in parts, card testing, and an MT4
country typed as a name (read through the MT4 connector from its documented user record)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from risk_rules.engine import load_rules_config
from risk_rules.settings import DEFAULT_RULES_FILE
from schemas.events import AccountUpdate, BalanceOperation
from schemas.identity import account_key
from tests.test_connector_mt4 import user_record, users
from tests.test_rules_builders import SERVER, account, acct, at, deal, engine, feed, ledger, psp

ACROSS: dict[str, Any] = {"threshold": 10000, "lower_ratio": 0.9, "min_count": 3, "min_accounts": 2,
                          "window_hours": 48}


def _on(login_no: int, amount: float, hours: float, server: str = SERVER,
        platform: str = "mt5") -> BalanceOperation:
    op = ledger(amount, at(hours), login=login_no)
    if server != SERVER:
        op = op.model_copy(update={"server": server, "platform": platform,
                                   "op_key": f"{platform}:{server}:{op.op_id}"})
    return op


def _client(login_no: int, client_id: str = "", name: str = "Ana Souza",
            server: str = SERVER, platform: str = "mt5") -> AccountUpdate:
    rec = account(login_no, client_id=client_id, name=name, date_of_birth=date(1985, 6, 1))
    if server != SERVER:
        rec = rec.model_copy(update={"server": server, "platform": platform,
                                     "account_key": account_key(platform, server, login_no)})
    return rec


def test_the_rules_file_has_the_new_rules_and_their_thresholds() -> None:
    rules = {r.id: r for r in load_rules_config(DEFAULT_RULES_FILE).rules}
    assert rules["structuring_across_accounts"].params == ACROSS
    assert rules["split_withdrawal"].params == {"min_deposit": 500, "min_parts": 3, "withdraw_ratio": 0.8,
                                                "max_lots": 0.1, "window_hours": 168}
    assert rules["card_testing"].params == {"min_cards": 5, "window_minutes": 60}


def test_structuring_across_accounts_under_and_over() -> None:
    mt4 = "ACME-MT4-Live"
    people = [_client(101, "C-7"), _client(102, "7", server=mt4, platform="mt4")]  # CRM and MT5 ids

    def run(ops: list[BalanceOperation], **p: Any) -> list[Any]:
        eng = engine("structuring_across_accounts", **{**ACROSS, **p})
        eng.ctx.server_platform[mt4] = "mt4"
        return feed(eng, [*people, *ops])

    two_accounts = [_on(101, 9800, 0), _on(102, 9500, 5, mt4, "mt4"), _on(101, 9900, 20)]
    alerts = run(two_accounts)
    assert len(alerts) == 1
    a = alerts[0]
    assert a.facts["deposits"] == 3 and a.facts["accounts"] == [f"mt4:{mt4}:102", acct(101)]
    assert a.facts["total"] == 29200.0 and a.subject == "client:crm:7"
    # under: one account only (that is `structuring`'s case), or two in the band
    assert run([_on(101, 9800, 0), _on(101, 9500, 5), _on(101, 9900, 20)]) == []
    assert run(two_accounts[:2]) == []
    # under: the third outside the window; one below the band; one at the threshold
    assert run([*two_accounts[:2], _on(101, 9900, 49)]) == []
    assert run([*two_accounts[:2], _on(101, 8999, 20)]) == []
    assert run([*two_accounts[:2], _on(101, 10000, 20)]) == []
    # min_accounts 3: two accounts are not enough
    assert run(two_accounts, min_accounts=3) == []
    # accounts of different clients are not one client
    other = [_client(101, "C-7"), _client(102, "C-8", name="Bruno Lima")]
    eng = engine("structuring_across_accounts", **ACROSS)
    assert feed(eng, [*other, _on(101, 9800, 0), _on(102, 9500, 5), _on(101, 9900, 20)]) == []


def test_structuring_across_accounts_by_name_and_birth_date_and_deletes() -> None:
    # no CRM id on the second account: the same normalised name and birth date
    people = [_client(101, "C-7", name="Ana Souza"), _client(102, "", name="SOUZA, ANA")]
    a, b, c = _on(101, 9800, 0), _on(102, 9500, 5), _on(101, 9900, 20)
    assert len(feed(engine("structuring_across_accounts", **ACROSS), [*people, a, b, c])) == 1
    # a deleted booking leaves the window
    gone = b.model_copy(update={"event": "delete", "version": b.version + 10**6})
    assert feed(engine("structuring_across_accounts", **ACROSS), [*people, a, b, gone, c]) == []


SPLIT: dict[str, Any] = {"min_deposit": 500, "min_parts": 3, "withdraw_ratio": 0.8, "max_lots": 0.1,
                         "window_hours": 168}


def test_split_withdrawal_under_and_over() -> None:
    def run(ops: list[Any], **p: Any) -> list[Any]:
        return feed(engine("split_withdrawal", **{**SPLIT, **p}), ops)

    dep = [ledger(10000, at(0))]
    parts = [ledger(-3000, at(10)), ledger(-3000, at(30)), ledger(-2500, at(50))]  # 85 %
    alerts = run([*dep, *parts])
    assert len(alerts) == 1 and alerts[0].facts["parts"] == 3 and alerts[0].facts["ratio"] == 0.85
    assert alerts[0].evidence == [dep[0].op_key] + [p.op_key for p in parts]
    # under: two parts; 79 % in three parts; traded 0.11 lots; the last part after the window
    assert run([*dep, *parts[:2]]) == []
    assert run([*dep, *parts[:2], ledger(-1900, at(50))]) == []
    assert run([*dep, deal(at(1), lots="0.11"), *parts]) == []
    assert run([*dep, *parts[:2], ledger(-2500, at(169))]) == []
    # 0.1 lots is allowed; a deposit under min_deposit is not watched
    assert len(run([*dep, deal(at(1), lots="0.1"), *parts])) == 1
    assert run([ledger(499, at(0)), ledger(-150, at(1)), ledger(-150, at(2)), ledger(-150, at(3))]) == []
    # the min_parts threshold: four wanted, three given
    assert run([*dep, *parts], min_parts=4) == []
    # one big withdrawal is deposit_withdraw_no_trading's case, not this one
    assert run([*dep, ledger(-9000, at(10))]) == []


def test_split_withdrawal_forgets_a_deleted_part() -> None:
    dep, p1, p2 = ledger(10000, at(0)), ledger(-3000, at(10)), ledger(-3000, at(30))
    gone = p2.model_copy(update={"event": "delete", "version": p2.version + 10**6})
    assert feed(engine("split_withdrawal", **SPLIT), [dep, p1, p2, gone, ledger(-2500, at(50))]) == []


def _declined(n: int, minutes: float, login: int = 100, method: str = "card") -> BalanceOperation:
    op = psp(10, at(0, minutes), login=login, status="declined", fp=f"card-{n}")
    return op.model_copy(update={"method": method})


def test_card_testing_under_and_over() -> None:
    def run(ops: list[BalanceOperation], **p: Any) -> list[Any]:
        return feed(engine("card_testing", **{"min_cards": 5, "window_minutes": 60, **p}), ops)

    five = [_declined(i, i * 10) for i in range(5)]  # 5 cards in 40 minutes
    alerts = run(five)
    assert len(alerts) == 1 and alerts[0].facts["cards"] == 5 and alerts[0].subject == acct(100)
    # under: four cards; five but over 61 minutes; the same card five times; approved ones
    assert run(five[:4]) == []
    assert run([*five[:4], _declined(4, 61)]) == []
    assert run([_declined(1, i) for i in range(5)]) == []
    assert run([op.model_copy(update={"status": "approved"}) for op in five]) == []
    # e-wallets are not cards; cards of different accounts are not one account's
    assert run([_declined(i, i, method="ewallet") for i in range(5)]) == []
    assert run([_declined(i, i, login=100 + i) for i in range(5)]) == []
    # the threshold is the rules file's: six wanted
    assert run(five, min_cards=6) == []


def _mt4_user(country: str) -> AccountUpdate:
    """The MT4 connector's reading of a documented user record whose country was typed."""
    return users(user_record(country=country), "update")


@pytest.mark.parametrize(("typed", "alerts"), [
    ("Iran", 1), ("Syrian Arab Republic", 1), ("Burma", 1), ("North Korea", 1), ("YE", 1),
    ("Ireland", 0), ("Germany", 0), ("Atlantis", 0),
])
def test_an_mt4_country_typed_as_a_name_is_screened(typed: str, alerts: int) -> None:
    hr = ["IR", "KP", "MM", "SY", "YE", "HT", "SS"]
    got = feed(engine("high_risk_jurisdiction", high_risk=hr), [_mt4_user(typed)])
    assert len(got) == alerts
    if alerts:
        assert got[0].facts["via"] == "account" and got[0].facts["country"] in hr


def test_in_the_dataflow_steps_a_deletion_reaches_the_tenant_engine() -> None:
    """Account stage engine -> re-keyed by tenant -> the linked engine, as pipelines/rules_step does."""
    from pipelines.rules_step import AccountRulesStep, LinkedRulesStep, RuleResources
    from risk_rules.engine import RulesConfig, RuleSettings

    config = RulesConfig(version=1, rules=[RuleSettings(
        id="structuring_across_accounts", version=1, params=ACROSS)])
    res = RuleResources(config, None, None, {SERVER: "mt5"}, shards=4, dedup_days=14)
    first, linked = AccountRulesStep(res, None), LinkedRulesStep(res, None)

    def run(records: list[Any]) -> list[Any]:
        engines: dict[str, Any] = {}
        tenant_engines: dict[str, Any] = {}
        alerts: list[Any] = []
        for r in records:
            key = r.account_key if isinstance(r, AccountUpdate) else acct(r.login)
            engines[key], out = first(engines.get(key), r)
            for item in out:
                if isinstance(item, tuple):
                    shard, payload = item
                    tenant_engines[shard], produced = linked(tenant_engines.get(shard), payload)
                    alerts.extend(produced)
                else:
                    alerts.append(item)
        return alerts

    people = [_client(101, "C-7"), _client(102, "C-7")]
    a, b, c = _on(101, 9800, 0), _on(102, 9500, 5), _on(101, 9900, 20)
    assert len(run([*people, a, b, c])) == 1
    gone = b.model_copy(update={"event": "delete", "version": b.version + 10**6})
    assert run([*people, a, b, gone, c]) == []


def test_a_chargeback_booked_on_the_platform_is_not_a_withdrawal() -> None:
    # the provider reports the chargeback; the broker then debits the account: not money taken out
    dep = ledger(1500, at(0))
    back = psp(-1500, at(70), status="chargeback", kind="chargeback", key="psp:praxis:9:chargeback")
    debit = ledger(-1500, at(72))
    p = {"lookback_hours": 96, "withdraw_ratio": 0.8, "max_lots": 0.1, "min_deposit": 100}
    assert feed(engine("deposit_withdraw_no_trading", **p), [dep, back, debit]) == []
    # without the provider's report the same debit reads as a withdrawal
    assert len(feed(engine("deposit_withdraw_no_trading", **p), [dep, debit])) == 1
    # a later deposit does not hide the parts taken out of an earlier one
    parts = [ledger(-3000, at(10)), ledger(-3000, at(30)), ledger(-2500, at(50))]
    ops = [ledger(10000, at(0)), parts[0], ledger(600, at(20)), *parts[1:]]
    assert len(feed(engine("split_withdrawal", **SPLIT), ops)) == 1
