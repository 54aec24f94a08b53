"""The account key (`schemas.identity`): the one way to build and split `platform:server:login`."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipelines.store import Store
from schemas.identity import ACCOUNT_KEY_SQL, account_key, account_key_of, parse_account_key
from tests.test_rules_builders import deal


def test_the_key_is_platform_server_login() -> None:
    assert account_key("mt5", "ACME-MT5-Live", 1001) == "mt5:ACME-MT5-Live:1001"


def test_a_record_names_its_account() -> None:
    d = deal(datetime(2025, 1, 6, tzinfo=UTC), login_no=1001)
    assert account_key_of(d) == f"mt5:{d.server}:1001" == account_key(d.platform, d.server, d.login)


@pytest.mark.parametrize("key", ["mt5:ACME-MT5-Live:1001", "ctrader:demo:a:7", "mt4:S:0"])
def test_parse_undoes_build(key: str) -> None:
    assert account_key(*parse_account_key(key)) == key


def test_a_server_may_hold_colons() -> None:
    assert parse_account_key("ctrader:demo:a:7") == ("ctrader", "demo:a", 7)


@pytest.mark.parametrize("key", ["", "mt5", "mt5:S", "mt5::1", ":S:1", "mt5:S:x", "mt5:S:-1"])
def test_a_malformed_key_is_refused_with_its_text(key: str) -> None:
    with pytest.raises(ValueError, match="is not 'platform:server:login'"):
        parse_account_key(key)


def test_clickhouse_computes_the_same_key(store: Store) -> None:
    sql = ACCOUNT_KEY_SQL.replace("platform", "'mt5'").replace("server", "'ACME:Live'").replace(
        "login", "toUInt64(1001)")
    [(key,)] = store.query(f"SELECT {sql}")[1]
    assert key == account_key("mt5", "ACME:Live", 1001)
