"""Builders of canonical records for the rule tests (no tests here)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import count
from typing import Any

from devtools.simulator.sanctions import DATA as SIM_DATA
from risk_rules.alerts import Alert
from risk_rules.engine import CsvGeoIP, RuleEngine, RulesConfig, RuleSettings
from schemas.events import AccountUpdate, BalanceOperation, Deal, Login
from schemas.identity import account_key

T0 = datetime(2024, 11, 25, 8, 0, tzinfo=UTC)
DATA = SIM_DATA
SERVER = "ACME-MT5-Live"
_ids = count(1000)


def at(hours: float = 0, minutes: float = 0, seconds: float = 0) -> datetime:
    return T0 + timedelta(hours=hours, minutes=minutes, seconds=seconds)


def acct(login: int = 100) -> str:
    return account_key("mt5", SERVER, login)


def ledger(amount: float | str, t: datetime, login: int = 100, currency: str = "USD") -> BalanceOperation:
    n = next(_ids)
    return BalanceOperation(
        op_key=f"mt5:{SERVER}:{n}",
        tenant="acme",
        platform="mt5",
        server=SERVER,
        login=login,
        op_id=str(n),
        kind="balance",
        amount=Decimal(str(amount)),
        currency=currency,
        time=t,
        version=n,
        source="test",
    )


def psp(
    amount: float | str,
    t: datetime,
    login: int = 100,
    status: str = "approved",
    fp: str = "card-1",
    payer: str = "",
    country: str = "DE",
    kind: str = "",
    key: str = "",
) -> BalanceOperation:
    n = next(_ids)
    return BalanceOperation(
        op_key=key or f"psp:praxis:{n}",
        tenant="acme",
        platform="psp",
        server=SERVER,
        login=login,
        op_id=str(n),
        kind=kind or ("deposit" if float(amount) > 0 else "withdrawal"),
        amount=Decimal(str(amount)),
        currency="USD",
        status=status,
        provider="praxis",
        method="card",
        payer_name=payer,
        instrument_fingerprint=fp,
        country=country,
        time=t,
        version=n,
        source="test",
    )


def login(
    t: datetime, login_no: int = 100, ip: str = "4.97.0.1", kind: str = "login", device: str = ""
) -> Login:
    ms = int(t.timestamp() * 1000)
    return Login(
        login_key=f"mt5:{SERVER}:{login_no}:{ms}:{kind}:{next(_ids)}",
        tenant="acme",
        platform="mt5",
        server=SERVER,
        login=login_no,
        kind=kind,
        ip=ip,
        device=device,
        time=t,
        version=ms,
        source="test",
    )


def deal(
    t: datetime,
    login_no: int = 100,
    side: str = "buy",
    entry: str = "in",
    lots: str = "1",
    symbol: str = "EURUSD",
    position: str = "",
    profit: str = "0",
) -> Deal:
    n = next(_ids)
    lot = Decimal(lots)
    return Deal(
        deal_key=f"mt5:{SERVER}:{n}",
        tenant="acme",
        platform="mt5",
        server=SERVER,
        login=login_no,
        deal_id=str(n),
        position_id=position or str(n),
        symbol=symbol,
        platform_symbol=symbol,
        side=side,
        entry=entry,
        lots=lot,
        signed_lots=lot if side == "buy" else -lot,
        contract_size=Decimal(100000),
        units=lot * 100000,
        price=Decimal("1.08"),
        notional=lot * 100000 * Decimal("1.08"),
        profit=Decimal(profit),
        currency="USD",
        reason="client",
        time=t,
        version=n,
        source="test",
    )


def account(login_no: int = 100, t: datetime = T0, **fields: Any) -> AccountUpdate:
    return AccountUpdate(
        account_key=acct(login_no),
        tenant="acme",
        platform="mt5",
        server=SERVER,
        login=login_no,
        origin="crm",
        event="account_opened",
        time=t,
        version=int(t.timestamp() * 1000) * 4 + next(_ids) % 4,
        source="test",
        **fields,
    )


def engine(
    rule_id: str,
    cooldown_hours: float = 24,
    mode: str = "alert",
    high_risk: list[str] | None = None,
    screener: Any = None,
    **params: Any,
) -> RuleEngine:
    config = RulesConfig(
        version=1,
        high_risk_countries=high_risk or [],
        rules=[RuleSettings(id=rule_id, version=1, cooldown_hours=cooldown_hours, mode=mode, params=params)],
    )
    return RuleEngine(
        config, geo=CsvGeoIP(DATA / "geoip_synthetic.csv"), screener=screener, servers={SERVER: "mt5"}
    )


def feed(eng: RuleEngine, records: list[Any]) -> list[Alert]:
    return eng.run(records)
