"""`brokerstream sanctions rescreen` over a real embedded ClickHouse: account holders and PSP
payer/beneficiary names screened against installed lists, alerts for new hits only, idempotent."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import orjson
import pytest
import yaml

from brokerstream.cli import main
from pipelines.config import Settings
from pipelines.rules_step import alert_row
from pipelines.store import Store
from pipelines.tables import ACCOUNTS, ALERTS, BALANCE_OPERATIONS, to_row
from risk_rules.alerts import Alert
from schemas.account_state import merge_account
from schemas.events import Account
from tests.conftest import TEST_CONFIG
from tests.test_rules_builders import SERVER, account, acct, at, psp

DATA = Path(__file__).resolve().parent / "data"


def _account(login: int, name: str, dob: date | None = None) -> Account:
    return merge_account(None, account(login, at(login - 100), name=name, date_of_birth=dob))[1]


@pytest.fixture
def config(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config file for the test's store, lists installed under a fresh home."""
    monkeypatch.setenv("BROKERSTREAM_HOME", str(tmp_path / "home"))
    assert main(["reference", "load", "--ofac-sdn", str(DATA / "ofac_sdn_sample.csv"),
                 "--ofac-alt", str(DATA / "ofac_alt_sample.csv"), "--eu", str(DATA / "eu_sample.csv")]) == 0
    doc = {**TEST_CONFIG, "rules": {"geoip": "none"},  # the installed lists, the default
           "clickhouse": {"dsn": settings.clickhouse.dsn, "database": settings.clickhouse.database}}
    path = tmp_path / "brokerstream.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def _fill(store: Store) -> None:
    accounts = [
        _account(101, "Ilsena Varnakova", date(1968, 2, 3)),  # listed holder (OFAC 7001)
        _account(102, "Peter Novak"),
        _account(103, "Anna Schmidt"),
        _account(104, "Đorđe Janković"),  # listed holder (EU 900202), no date of birth known
        _account(105, "Ilsena Varnakova", date(1990, 1, 1)),  # same name, another birth date
    ]
    ops = [
        psp(500, at(1), login=102, payer="Peter Novak"),  # the holder paying
        psp(500, at(2), login=102, payer="Yousef AL-QARRADI"),  # listed payer (7002)
        psp(700, at(3), login=102, payer="Yousef Al Qarradi"),  # the same payer again
        psp(-300, at(4), login=103, payer="Mei Lin Zhouran"),  # listed beneficiary (7004)
        psp(900, at(5), login=103, payer="Juergen Mueller-Strauss", status="pending"),  # not approved
        psp(200, at(6), login=103, payer="Maria Lopez"),
        psp(-900, at(7), login=101, payer="Anna Schmidt", status="pending"),  # a payout under way
        psp(-100, at(8), login=101, payer="Mei Lin Zhouran", status="failed"),  # never paid
    ]
    for table, records in ((ACCOUNTS, accounts), (BALANCE_OPERATIONS, ops)):
        store.insert_rows(table.name, table.columns, [to_row(r)[1] for r in records])


def _alerts(store: Store) -> list[tuple[str, dict[str, object]]]:
    _, rows = store.query("SELECT subject, facts FROM alerts WHERE rule_id = 'sanctions_screening' "
                          "ORDER BY subject, facts")
    return [(subject, orjson.loads(facts)) for subject, facts in rows]


def test_rescreen_raises_new_hits_once(
    store: Store, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _fill(store)
    # the live rule already alerted on the first holder
    live = Alert(alert_id="live-1", rule_id="sanctions_screening", rule_version=1, category="aml",
                 severity="critical", tenant="acme", subject=acct(101), summary="live",
                 facts={"party": "account holder", "entry": "7001", "list": "OFAC"},
                 evidence=[acct(101)], event_time=at(0), detected_at=at(0))
    store.insert_rows(ALERTS.name, ALERTS.columns, [alert_row(live)[1]])

    assert main(["sanctions", "rescreen", "--config", str(config)]) == 0
    out = capsys.readouterr()
    # 5 holders + 4 third-party names (the holder's own payment, the pending deposit and the
    # failed payout left out; the pending payout's beneficiary in)
    assert "client base in" in out.err and "5 account holders, 4 payer/beneficiary names" in out.err
    assert "screened 9 names" in out.err and "3 new, 1 unchanged" in out.err  # summaries: stderr
    assert "screened          9 / 9 names (100%)" in out.err
    expected = {  # written down from the lists and the clients above
        (acct(101), "account holder", "7001"),  # the live alert
        (acct(102), "payer", "7002"),
        (acct(103), "beneficiary", "7004"),
        (acct(104), "account holder", "900202"),
    }
    got = _alerts(store)
    assert {(s, f["party"], f["entry"]) for s, f in got} == expected
    new = [f for s, f in got if f.get("rescreen")]
    assert len(new) == 3 and all(f["min_score"] == 88 for f in new)
    payer = next(f for f in new if f["party"] == "payer")
    assert payer["party_name"] in ("Yousef AL-QARRADI", "Yousef Al Qarradi") and payer["list"] == "OFAC"

    # a second run: nothing new
    assert main(["sanctions", "rescreen", "--config", str(config)]) == 0
    assert "0 new, 4 unchanged" in capsys.readouterr().err
    assert len(_alerts(store)) == 4


def test_rescreen_dry_run_and_tenant(store: Store, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fill(store)
    assert main(["sanctions", "rescreen", "--config", str(config), "--dry-run"]) == 0
    assert "4 new, 0 unchanged; dry run: no alert written" in capsys.readouterr().err
    assert _alerts(store) == []
    assert main(["sanctions", "rescreen", "--config", str(config), "--tenant", "zenith"]) == 0
    assert "screened 0 names" in capsys.readouterr().err
    assert main(["sanctions", "rescreen", "--config", str(config), "--tenant", "nope"]) == 2
    assert "--tenant nope: not in the configuration" in capsys.readouterr().err


def test_rescreen_without_lists_refuses(store: Store, config: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("BROKERSTREAM_HOME", str(tmp_path / "empty-home"))
    assert main(["sanctions", "rescreen", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("brokerstream: no sanctions lists: nobody is screened") and err.count("\n") == 1
    assert json.dumps(SERVER)  # the builders' server is the test config's
