"""Engine: configuration, determinism, cool-down, observe-only mode, the example file."""

from __future__ import annotations

from datetime import timedelta

import pytest

from risk_rules.alerts import Alert, alert_id
from risk_rules.engine import (
    ConfigError,
    CsvGeoIP,
    RuleEngine,
    load_rules_config,
    parse_rules_config,
)
from risk_rules.settings import DEFAULT_RULES_FILE
from tests.test_rules_builders import DATA, SERVER, acct, at, engine, feed, ledger, login, psp

EXAMPLE = DEFAULT_RULES_FILE


def _day() -> list[object]:
    out: list[object] = []
    for i in range(4):
        out += [ledger(9700 + i, at(i * 3), login=100), psp(500, at(i), login=101, fp=f"c{i}")]
        out += [login(at(i, j), login_no=102, ip="8.8.8.8", kind="failed") for j in range(12)]
    out += [
        ledger(60000, at(10), login=103),
        login(at(11), login_no=104, ip="4.97.0.1"),
        login(at(12), login_no=104, ip="43.209.0.1"),
    ]
    return out


def test_example_config_loads_every_rule() -> None:
    config = load_rules_config(EXAMPLE)
    eng = RuleEngine(config, geo=CsvGeoIP(DATA / "geoip_synthetic.csv"), servers={SERVER: "mt5"})
    assert {rs.id for rs, _ in eng.rules} == {r.id for r in config.rules if r.enabled}


def test_same_events_twice_give_the_same_alerts() -> None:
    records = _day()
    first = RuleEngine(load_rules_config(EXAMPLE), geo=CsvGeoIP(DATA / "geoip_synthetic.csv")).run(records)
    second = RuleEngine(load_rules_config(EXAMPLE), geo=CsvGeoIP(DATA / "geoip_synthetic.csv")).run(records)
    assert first and [a.model_dump() for a in first] == [a.model_dump() for a in second]
    assert {a.rule_id for a in first} >= {
        "structuring",
        "failed_logins_account",
        "large_transaction",
        "many_instruments",
        "impossible_travel",
    }
    assert len({a.alert_id for a in first}) == len(first)


def test_alert_id_depends_on_rule_version_subject_evidence() -> None:
    base = alert_id("r", 1, "s", ["b", "a"])
    assert base == alert_id("r", 1, "s", ["a", "b"])
    assert (
        len(
            {
                base,
                alert_id("r", 2, "s", ["a", "b"]),
                alert_id("r", 1, "t", ["a", "b"]),
                alert_id("r", 1, "s", ["a"]),
                alert_id("r", 1, "s", ["a", "b"], at(0)),
            }
        )
        == 5
    )


def test_cooldown_per_rule_and_subject() -> None:
    ops = [
        ledger(60000, at(0)),
        ledger(60000, at(23)),
        ledger(60000, at(24)),
        ledger(60000, at(1), login=101),
    ]
    alerts = feed(engine("large_transaction", cooldown_hours=24), ops)
    assert [(a.subject, a.event_time - at(0)) for a in alerts] == [
        (acct(100), timedelta(0)),
        (acct(100), timedelta(hours=24)),
        (acct(101), timedelta(hours=1)),
    ]
    assert len(feed(engine("large_transaction", cooldown_hours=0), ops)) == 4


def test_observe_mode_and_detected_at() -> None:
    eng = engine("large_transaction", mode="observe")
    (alert,) = eng.on_record(ledger(60000, at(0)), detected_at=at(5))
    assert isinstance(alert, Alert) and alert.mode == "observe" and alert.detected_at == at(5)
    (alert,) = engine("large_transaction").on_record(ledger(60000, at(0)))
    assert alert.detected_at == alert.event_time == at(0) and alert.mode == "alert"


def test_resent_webhook_is_not_counted_twice() -> None:
    op = psp(500, at(0), fp="c1")
    eng = engine("many_instruments", max_instruments=1)
    assert feed(eng, [op, op]) == []


def test_disabled_rule_does_not_run() -> None:
    doc = {"version": 1, "rules": [{"id": "large_transaction", "version": 1, "enabled": False}]}
    assert RuleEngine(parse_rules_config(doc)).run([ledger(90000, at(0))]) == []


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"version": 1, "rules": [{"id": "nope", "version": 1}]}, "rules[nope].id: unknown rule"),
        (
            {"version": 1, "rules": [{"id": "structuring", "version": 1, "params": {"threshold": -5}}]},
            "rules[structuring].params.threshold",
        ),
        (
            {"version": 1, "rules": [{"id": "structuring", "version": 1, "params": {"treshold": 5}}]},
            "rules[structuring].params.treshold",
        ),
        ({"version": 1, "rules": [{"id": "structuring", "version": 1, "mode": "loud"}]}, "rules.0.mode"),
        (
            {"version": 1, "rules": [{"id": "chargeback", "version": 1}, {"id": "chargeback", "version": 2}]},
            "listed twice",
        ),
        ({"version": 1, "high_risk_countries": ["Iran"], "rules": []}, "high_risk_countries"),
        ({"rules": []}, "version"),
    ],
)
def test_bad_config_names_the_field(doc: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_rules_config(doc)


def test_geoip_lookup() -> None:
    geo = CsvGeoIP(DATA / "geoip_synthetic.csv")
    point = geo("4.97.12.34")
    assert point is not None and point.country == "DE" and point.kind == "residential"
    assert geo("not-an-ip") is None and geo("0.0.0.1") is None
