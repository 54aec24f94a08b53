"""AML rules: hand-built sequences just under and just over each threshold."""

from __future__ import annotations

from typing import Any

from tests.test_rules_builders import account, acct, at, deal, engine, feed, ledger, login, psp


def test_large_transaction_threshold() -> None:
    eng = engine("large_transaction", threshold=50000)
    assert feed(eng, [ledger("49999.99", at(0))]) == []
    alerts = feed(eng, [ledger("50000", at(1), login=101)])
    assert [a.subject for a in alerts] == [acct(101)]
    assert alerts[0].facts["threshold"] == 50000.0 and alerts[0].rule_id == "large_transaction"
    assert "50,000 USD" in alerts[0].summary
    # withdrawals only when configured
    assert feed(eng, [ledger("-60000", at(2), login=102)]) == []
    assert feed(engine("large_transaction", withdrawals=True), [ledger("-60000", at(2))])


def test_large_transaction_ignores_psp_duplicate_of_the_ledger() -> None:
    assert feed(engine("large_transaction"), [psp("70000", at(0))]) == []


def test_structuring_under_and_over() -> None:
    p: dict[str, Any] = {"threshold": 10000, "lower_ratio": 0.9, "min_count": 3, "window_hours": 48}
    # two in the band, one below the band: no alert
    assert (
        feed(engine("structuring", **p), [ledger(9800, at(0)), ledger(9500, at(5)), ledger(8999, at(10))])
        == []
    )
    # three in the band but the third is outside the window
    assert (
        feed(engine("structuring", **p), [ledger(9800, at(0)), ledger(9500, at(5)), ledger(9900, at(49))])
        == []
    )
    # one at the threshold itself is reportable anyway, so not structuring
    assert (
        feed(engine("structuring", **p), [ledger(9800, at(0)), ledger(9500, at(5)), ledger(10000, at(9))])
        == []
    )
    alerts = feed(
        engine("structuring", **p), [ledger(9800, at(0)), ledger(9500, at(5)), ledger(9900, at(22))]
    )
    assert len(alerts) == 1
    a = alerts[0]
    assert a.facts["deposits"] == 3 and a.facts["total"] == 29200.0 and len(a.evidence) == 3
    assert a.summary == "3 deposits totalling 29,200 USD in 22 h, each between 90% and 100% of 10,000"


def test_deposit_withdraw_no_trading() -> None:
    p: dict[str, Any] = {"lookback_hours": 96, "withdraw_ratio": 0.8, "max_lots": 0.1, "min_deposit": 100}
    # withdrew 79 %: no alert
    assert (
        feed(engine("deposit_withdraw_no_trading", **p), [ledger(5000, at(0)), ledger(-3950, at(10))]) == []
    )
    # traded more than 0.1 lots in between: no alert
    assert (
        feed(
            engine("deposit_withdraw_no_trading", **p),
            [ledger(5000, at(0)), deal(at(1), lots="0.11"), ledger(-5000, at(10))],
        )
        == []
    )
    # withdrawal after the lookback: no alert
    assert (
        feed(engine("deposit_withdraw_no_trading", **p), [ledger(5000, at(0)), ledger(-5000, at(97))]) == []
    )
    alerts = feed(
        engine("deposit_withdraw_no_trading", **p),
        [ledger(5000, at(0)), deal(at(1), lots="0.1"), ledger(-4000, at(10))],
    )
    assert len(alerts) == 1 and alerts[0].facts["ratio"] == 0.8 and alerts[0].facts["lots"] == 0.1


def test_rapid_cycling() -> None:
    ops = [ledger(1000, at(0)), ledger(-1000, at(1)), ledger(1000, at(2)), ledger(-1000, at(3))]
    assert feed(engine("rapid_in_out_cycling", min_cycles=3), ops) == []
    alerts = feed(
        engine("rapid_in_out_cycling", min_cycles=3), [*ops, ledger(1000, at(4)), ledger(-900, at(5))]
    )
    assert len(alerts) == 1 and alerts[0].facts["cycles"] == 3


def test_payer_name_mismatch() -> None:
    opened = account(name="José Gómez Ruiz")
    same = [psp(500, at(1), payer="JOSE GOMEZ"), psp(500, at(2), payer="Gomez Ruiz, José")]
    assert feed(engine("payer_name_mismatch"), [opened, *same]) == []
    alerts = feed(engine("payer_name_mismatch"), [opened, psp(500, at(3), payer="Maria Gomez")])
    assert len(alerts) == 1 and alerts[0].facts["score"] < 85
    assert feed(engine("payer_name_mismatch"), [opened, psp(500, at(3), payer="Peter Novak")])
    # pending or a withdrawal: not a third-party deposit
    assert (
        feed(engine("payer_name_mismatch"), [opened, psp(500, at(3), payer="Peter Novak", status="pending")])
        == []
    )


def test_withdrawal_to_other_instrument_or_country() -> None:
    base = [psp(500, at(0), fp="card-1", country="DE")]
    assert (
        feed(engine("withdrawal_other_instrument"), [*base, psp(-400, at(5), fp="card-1", country="DE")])
        == []
    )
    alerts = feed(
        engine("withdrawal_other_instrument"), [*base, psp(-400, at(5), fp="wallet-9", country="DE")]
    )
    assert len(alerts) == 1 and alerts[0].facts["new_instrument"] is True
    alerts = feed(engine("withdrawal_other_instrument"), [*base, psp(-400, at(5), fp="card-1", country="CY")])
    assert len(alerts) == 1 and alerts[0].facts["new_country"] is True


def test_shared_instrument_counts_clients_not_accounts() -> None:
    people = [
        account(100, name="A One", client_id="C1"),
        account(101, name="A One", client_id="C1"),
        account(102, name="B Two", client_id="C2"),
        account(103, name="C Three", client_id="C3"),
    ]
    ops = [
        psp(100, at(1), login=100, fp="x"),
        psp(100, at(2), login=101, fp="x"),
        psp(100, at(3), login=102, fp="x"),
    ]
    assert feed(engine("shared_instrument", min_accounts=3), [*people, *ops]) == []
    alerts = feed(
        engine("shared_instrument", min_accounts=3), [*people, *ops, psp(100, at(4), login=103, fp="x")]
    )
    assert len(alerts) == 1 and alerts[0].subject == "instrument:x" and alerts[0].facts["clients"] == 3
    assert set(alerts[0].facts["accounts"]) == {acct(100), acct(101), acct(102), acct(103)}


def test_many_instruments() -> None:
    ops = [psp(100, at(i), fp=f"card-{i}") for i in range(3)]
    assert feed(engine("many_instruments", max_instruments=3), ops) == []
    alerts = feed(engine("many_instruments", max_instruments=3), [*ops, psp(100, at(4), fp="card-9")])
    assert len(alerts) == 1 and alerts[0].facts["instruments"] == 4
    assert feed(engine("many_instruments", max_instruments=3), [*ops, psp(100, at(25), fp="card-9")]) == []


def test_dormant_reactivation() -> None:
    p: dict[str, Any] = {"dormant_days": 180, "min_amount": 1000, "trigger": "any"}
    # 179 days quiet: not dormant
    assert feed(engine("dormant_reactivation", **p), [deal(at(-24 * 179)), ledger(5000, at(0))]) == []
    # dormant, but the money moved is under the minimum
    assert feed(engine("dormant_reactivation", **p), [deal(at(-24 * 181)), ledger(999, at(0))]) == []
    alerts = feed(engine("dormant_reactivation", **p), [deal(at(-24 * 181)), ledger(5000, at(0))])
    assert len(alerts) == 1 and alerts[0].facts["dormant_days"] > 180


def test_dormant_reactivation_on_withdrawal_by_default() -> None:
    """The default trigger is money taken out after waking (the pass-through pattern)."""
    p: dict[str, Any] = {"dormant_days": 180, "min_amount": 1000}
    woke = [deal(at(-24 * 181)), ledger(5000, at(0))]
    assert feed(engine("dormant_reactivation", **p), woke) == []
    alerts = feed(engine("dormant_reactivation", **p), [*woke, ledger(-4000, at(48))])
    assert len(alerts) == 1 and alerts[0].facts["amount"] == -4000 and "out" in alerts[0].summary
    # outside the window after waking: nothing
    late = [*woke, ledger(-4000, at(24 * 31))]
    assert feed(engine("dormant_reactivation", **p, window_days=30), late) == []


def test_dormant_reactivation_seeded_from_last_access() -> None:
    """The platform's last login (MT5 LastAccess) tells what happened before the engine watched."""
    eng = engine("dormant_reactivation", dormant_days=180, min_amount=1000)
    records = [account(100, at(-1), last_access=at(-24 * 200)), login(at(0)), ledger(3000, at(1)),
               ledger(-3000, at(30))]
    alerts = feed(eng, records)
    assert len(alerts) == 1 and round(alerts[0].facts["dormant_days"]) == 200
    # an account the platform saw recently is not dormant
    recent = [account(100, at(-1), last_access=at(-24 * 20)), login(at(0)), ledger(3000, at(1)),
              ledger(-3000, at(30))]
    assert feed(engine("dormant_reactivation", dormant_days=180, min_amount=1000), recent) == []


def test_high_risk_jurisdiction() -> None:
    hr = ["IR", "YE"]
    assert (
        feed(
            engine("high_risk_jurisdiction", high_risk=hr),
            [account(country="DE"), psp(100, at(1), country="FR")],
        )
        == []
    )
    assert len(feed(engine("high_risk_jurisdiction", high_risk=hr), [account(country="IR")])) == 1
    assert len(feed(engine("high_risk_jurisdiction", high_risk=hr), [psp(100, at(1), country="YE")])) == 1
    # 5.169.0.0/16 is a Yemeni block in the synthetic geo-IP file
    assert len(feed(engine("high_risk_jurisdiction", high_risk=hr), [login(at(1), ip="5.169.1.2")])) == 1


def test_chargeback() -> None:
    assert feed(engine("chargeback"), [psp(300, at(0))]) == []
    alerts = feed(
        engine("chargeback"),
        [psp(-300, at(0), status="chargeback", kind="chargeback", key="psp:praxis:1:chargeback")],
    )
    assert len(alerts) == 1 and alerts[0].evidence == ["psp:praxis:1"]  # the payment


def test_name_score_token_aware() -> None:
    from risk_rules.aml.rules import name_score

    assert name_score("José Gómez Ruiz", "GOMEZ, JOSE") == 100
    assert name_score("J. Smith", "John Smith") == 100
    assert name_score("Maria Romero", "Martina Romero") < 85  # a relative, not the holder
    assert name_score("Budi Setiawan", "Andi Setiawan") < 85
    assert name_score("Jon Smith", "John Smith") >= 85


def test_payer_name_cooldown_is_per_third_party() -> None:
    opened = account(name="Katharina Muller")
    ops = [
        psp(500, at(1), payer="Piotr Zielinski"),
        psp(500, at(2), payer="Piotr Zielinski"),
        psp(500, at(3), payer="Katerina Pappas"),
    ]
    alerts = feed(engine("payer_name_mismatch", cooldown_hours=168), [opened, *ops])
    assert [a.facts["payer_name"] for a in alerts] == ["Piotr Zielinski", "Katerina Pappas"]
