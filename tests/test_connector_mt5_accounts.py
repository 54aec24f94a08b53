"""MT5 users, account states, logins and ticks -> AccountUpdate / Login / Quote.

Messages have the shapes an MT5 Web API bridge publishes (IMTUser / IMTAccount / IMTOnline as
JSON with every value a string; MqlTick with its symbol). `ACME-MT5-Live` runs on UTC;
`ACME-MT5-Asia` stamps its times at UTC+2, so its server times read two hours later than the
UTC instants they stand for.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.countries import COUNTRY_NAMES, country_code
from connectors.fields import Rejected
from connectors.mt5_accounts import (
    CLIENT_TYPES,
    READERS,
    is_account_state,
    read_mt5_account_state,
    read_mt5_login,
    read_mt5_tick,
    read_mt5_user,
    read_mt5_users,
)
from connectors.registry import Normaliser
from connectors.routing import Router
from pipelines.config import parse_settings
from schemas.envelope import Envelope
from schemas.events import AccountUpdate, DeadLetter, Login, Quote

SERVER = "ACME-MT5-Live"
OFFSET_SERVER = "ACME-MT5-Asia"
SETTINGS = parse_settings({
    "tenants": [
        {"id": "acme", "servers": [
            {"name": SERVER, "platform": "mt5", "currency": "USD"},
            {"name": OFFSET_SERVER, "platform": "mt5", "currency": "EUR", "utc_offset_minutes": 120},
            {"name": "ACME-MT4", "platform": "mt4", "currency": "USD"},
        ]},
    ],
})
ROUTER = Router(SETTINGS)

TS = 1_732_442_400_000  # envelope time: 2024-11-24 10:00:00 UTC
REG_UTC = datetime(2023, 5, 2, 8, 30, tzinfo=UTC)
REG_S = int(REG_UTC.timestamp())
LOGIN_UTC = datetime(2024, 11, 24, 9, 59, 58, tzinfo=UTC)
LOGIN_S = int(LOGIN_UTC.timestamp())
TWO_HOURS = 2 * 3600


def envelope(topic: str, value: dict[str, Any] | bytes, server: str | None = SERVER,
             event: str | None = None, ts: int = TS) -> Envelope:
    headers = {} if server is None else {"server": server}
    if event is not None:
        headers["event"] = event
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    return Envelope(topic=topic, value=raw, timestamp_ms=ts, key="70001", headers=headers,
                    partition=0, offset=7)


def checked(record: Any) -> Any:
    """Readers build records with `trusted`: they must pass their model's own validation."""
    assert type(record).model_validate(record.model_dump()) == record
    return record


def imt_user(**fields: Any) -> dict[str, str]:
    """An IMTUser as the Web API `/api/user/get` answers it: every value a string."""
    doc = {
        "Login": "70001", "Group": "real\\standard-usd", "CertSerialNumber": "0", "Rights": "483",
        "Registration": str(REG_S), "LastAccess": str(LOGIN_S), "LastPassChange": str(REG_S),
        "LastIP": "203.0.113.7", "Name": "Jane Doe", "FirstName": "Jane", "LastName": "Doe",
        "MiddleName": "", "Company": "", "Account": "", "Country": "Germany", "Language": "0",
        "ClientID": "100231", "City": "Berlin", "State": "", "ZipCode": "10115",
        "Address": "Unter den Linden 1", "Phone": "+49301234567", "Email": "jane@example.com",
        "ID": "", "Status": "RE", "Comment": "", "Color": "4278190080", "PhonePassword": "",
        "Leverage": "100", "Agent": "7001", "CurrencyDigits": "2", "Balance": "10250.75",
        "Credit": "0.00", "InterestRate": "0.00", "CommissionDaily": "0.00",
        "CommissionMonthly": "0.00", "BalancePrevDay": "10250.75", "BalancePrevMonth": "9800.00",
        "EquityPrevDay": "10311.20", "EquityPrevMonth": "9800.00", "MQID": "", "LeadSource": "",
        "LeadCampaign": "",
    }
    doc.update({k: v for k, v in fields.items() if v is not None})
    return {k: v for k, v in doc.items() if fields.get(k, "") is not None}


def imt_account(**fields: Any) -> dict[str, str]:
    """An IMTAccount as the Web API `/api/user/account/get` answers it."""
    doc = {
        "Login": "70001", "CurrencyDigits": "2", "Balance": "10250.75", "Credit": "500.00",
        "Margin": "1085.00", "MarginFree": "9726.95", "MarginLevel": "1044.19",
        "MarginLeverage": "100", "Profit": "61.20", "Storage": "-1.20", "Commission": "0.00",
        "Floating": "61.20", "Equity": "10811.95", "SOActivation": "0", "SOTime": "0",
        "SOLevel": "0.00", "SOEquity": "0.00", "SOMargin": "0.00", "Assets": "0.00",
        "Liabilities": "0.00", "BlockedCommission": "0.00", "BlockedProfit": "0.00",
        "MarginInitial": "0.00", "MarginMaintenance": "0.00",
    }
    doc.update(fields)
    return doc


def online(**fields: Any) -> dict[str, str]:
    """An IMTOnline as a bridge publishes it on connect."""
    doc = {"SessionID": "4815162342", "Login": "70001", "Group": "real\\standard-usd",
           "Address": "203.0.113.7", "Type": "0", "Build": "4755", "Time": str(LOGIN_S),
           "ComputerID": "A1B2C3D4E5F60718"}
    doc.update(fields)
    return doc


def tick(**fields: Any) -> dict[str, Any]:
    """An MqlTick (as a bridge serialises it) plus the symbol it belongs to."""
    doc: dict[str, Any] = {"symbol": "EURUSD.r", "time": str(LOGIN_S), "bid": "1.08501",
                           "ask": "1.08512", "last": "0", "volume": "0",
                           "time_msc": str(LOGIN_S * 1000 + 250), "flags": "6",
                           "volume_real": "0"}
    doc.update(fields)
    return {k: v for k, v in doc.items() if v is not None}


def user(value: dict[str, Any], event: str | None = None, server: str = SERVER) -> AccountUpdate:
    out = read_mt5_users(envelope("mt5.users", value, server, event), ROUTER)
    assert isinstance(out, AccountUpdate)
    return checked(out)


def login(value: dict[str, Any], event: str | None = None, server: str = SERVER) -> Login:
    return checked(read_mt5_login(envelope("mt5.logins", value, server, event), ROUTER))


def quote(value: dict[str, Any], server: str = SERVER) -> Quote:
    out = read_mt5_tick(envelope("mt5.ticks", value, server), ROUTER)
    assert isinstance(out, Quote)
    return checked(out)


# -- users --------------------------------------------------------------------------------------


def test_web_api_user_becomes_an_account_update() -> None:
    u = user(imt_user())
    assert (u.account_key, u.origin, u.event) == (f"mt5:{SERVER}:70001", "platform", "user_add")
    assert (u.tenant, u.platform, u.server, u.login) == ("acme", "mt5", SERVER, 70001)
    assert (u.name, u.group, u.email) == ("Jane Doe", "real\\standard-usd", "jane@example.com")
    assert (u.country, u.currency, u.leverage) == ("DE", "USD", 100)
    assert (u.agent, u.client_id) == ("7001", "100231")
    assert u.registration == REG_UTC
    assert (u.balance, u.credit) == (Decimal("10250.75"), Decimal("0.00"))
    assert u.status == "active"  # Rights 483 = 0x1E3: USER_RIGHT_ENABLED set
    assert (u.equity, u.margin, u.margin_level, u.date_of_birth, u.kyc_status) == (None,) * 5
    assert u.time == datetime.fromtimestamp(TS / 1000, UTC)
    assert u.version == TS * 4
    assert u.source == "mt5.users/0/7"
    assert read_mt5_user(envelope("mt5.users", imt_user()), ROUTER) == u


def test_web_api_answer_wrapper_and_numbers_read_the_same() -> None:
    wrapped = {"retcode": "0 Done", "answer": imt_user()}
    assert user(wrapped) == user(imt_user())
    numbers: dict[str, Any] = {k: int(v) if v.isdigit() else v for k, v in imt_user().items()}
    numbers["Balance"] = 10250.75
    assert numbers["Login"] == 70001 and numbers["Registration"] == REG_S
    assert user(numbers) == user(imt_user())


def test_user_events_from_the_header() -> None:
    assert user(imt_user(), "update").event == "user_update"
    assert user(imt_user(), "update").version == TS * 4 + 1
    deleted = user(imt_user(), "delete")
    assert (deleted.event, deleted.status, deleted.version) == ("user_delete", "closed", TS * 4 + 2)
    with pytest.raises(Rejected, match="'event' header must be add, update or delete") as exc:
        read_mt5_users(envelope("mt5.users", imt_user(), event="modify"), ROUTER)
    assert exc.value.stage == "route"


def test_what_a_user_leaves_empty_says_nothing() -> None:
    u = user(imt_user(Agent="0", Leverage="0", ClientID="0", Registration="0", Email="",
                      Name="", Rights="482", Country="Atlantis"), "update")
    assert (u.agent, u.leverage, u.client_id, u.registration, u.email) == (None,) * 5
    assert u.name == "Jane Doe"  # from FirstName / LastName when Name is empty
    assert u.status == "disabled"  # Rights without USER_RIGHT_ENABLED
    assert u.country is None  # a name no table knows says nothing
    sparse = user({"Login": "70001", "Balance": "12.5", "Group": "real\\vip"}, "update")
    assert (sparse.name, sparse.status, sparse.country, sparse.balance) == (
        None, None, None, Decimal("12.5"))
    assert sparse.credit is None
    manager_api = user(imt_user(Email=None, EMail="jd@example.org"))  # IMTUser::EMail spelling
    assert manager_api.email == "jd@example.org"


@pytest.mark.parametrize(
    ("country", "code"),
    [("Germany", "DE"), ("United States", "US"), ("United Kingdom", "GB"), ("Russia", "RU"),
     ("Korea, South", "KR"), ("South Korea", "KR"), ("Czech Republic", "CZ"), ("Turkey", "TR"),
     ("Türkiye", "TR"), ("Côte d'Ivoire", "CI"), ("Ivory Coast", "CI"), ("Viet Nam", "VN"),
     ("Hong Kong", "HK"), ("United Arab Emirates", "AE"), ("Saint Kitts and Nevis", "KN"),
     ("St. Lucia", "LC"), ("Trinidad & Tobago", "TT"), ("Bosnia and Herzegovina", "BA"),
     ("DE", "DE"), ("de", "DE"), ("DEU", "DE"), ("UK", "GB"), ("  germany ", "DE"),
     ("Kosovo", "XK"), ("", None), ("Narnia", None), ("ZZ", None), ("Germany!", None)],
)
def test_country_names_become_alpha_2(country: str, code: str | None) -> None:
    assert country_code(country) == code
    assert user(imt_user(Country=country)).country == code


def test_country_table_covers_iso_3166() -> None:
    assert len(COUNTRY_NAMES) == 250  # 249 ISO 3166-1 entries and Kosovo (XK)
    for alpha2, name in COUNTRY_NAMES.items():
        assert country_code(name) == alpha2
        assert country_code(alpha2.lower()) == alpha2


def test_registration_is_server_time() -> None:
    u = user(imt_user(Registration=str(REG_S + TWO_HOURS)), server=OFFSET_SERVER)
    assert u.registration == REG_UTC
    assert (u.currency, u.account_key) == ("EUR", f"mt5:{OFFSET_SERVER}:70001")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ({"Name": "no login", "Group": "real"}, "missing field 'Login'"),
        (imt_user(Login="-1"), "'Login' is out of range"),
        (imt_user(Login=str(2**63)), "'Login' is out of range"),
        (imt_user(Leverage="high"), "'Leverage': expected an integer"),
        (imt_user(Leverage="-100"), "'Leverage' must be a non-negative integer"),
        (imt_user(Leverage=str(2**32)), "'Leverage' must be a non-negative integer"),
        (imt_user(Balance="1.000,50"), "'Balance': expected a number"),
        (imt_user(Balance="NaN"), "'Balance': 'NaN' is not a finite number"),
        (imt_user(Agent="-3"), "'Agent' must be a non-negative integer"),
        (imt_user(Registration="-5"), "'Registration' must be a non-negative integer"),
        (imt_user(Registration=str(10**12)), "'Registration': .* is not a plausible time"),
        (imt_user(Rights="all"), "'Rights': expected an integer"),
    ],
)
def test_malformed_users_are_rejected(value: dict[str, Any], reason: str) -> None:
    with pytest.raises(Rejected, match=reason):
        read_mt5_users(envelope("mt5.users", value), ROUTER)


def test_just_valid_user_values() -> None:
    assert user(imt_user(Login=str(2**63 - 1))).login == 2**63 - 1
    assert user(imt_user(Leverage=str(2**32 - 1))).leverage == 2**32 - 1
    assert user(imt_user(Login="0")).login == 0
    # the first plausible second (connectors.fields.plausible_times)
    assert user(imt_user(Registration="946684800")).registration == datetime(2000, 1, 1, tzinfo=UTC)


def test_routing_rejects() -> None:
    with pytest.raises(Rejected, match="missing 'server' header") as exc:
        read_mt5_users(envelope("mt5.users", imt_user(), server=None), ROUTER)
    assert exc.value.stage == "route"
    with pytest.raises(Rejected, match="configured as mt4"):
        read_mt5_users(envelope("mt5.users", imt_user(), server="ACME-MT4"), ROUTER)
    with pytest.raises(Rejected, match="not JSON") as exc:
        read_mt5_users(envelope("mt5.users", b"{not json"), ROUTER)
    assert exc.value.stage == "decode"
    with pytest.raises(Rejected, match="expected a JSON object, got list"):
        read_mt5_users(envelope("mt5.users", b"[1, 2]"), ROUTER)


# -- account states -----------------------------------------------------------------------------


def test_account_state_snapshot() -> None:
    assert is_account_state(imt_account()) and not is_account_state(imt_user())
    state = user(imt_account())
    assert (state.event, state.origin, state.account_key) == ("account_state", "platform",
                                                              f"mt5:{SERVER}:70001")
    assert (state.balance, state.credit, state.equity) == (
        Decimal("10250.75"), Decimal("500.00"), Decimal("10811.95"))
    assert (state.margin, state.margin_free, state.margin_level) == (
        Decimal("1085.00"), Decimal("9726.95"), Decimal("1044.19"))
    for name in ("name", "group", "country", "email", "currency", "leverage", "agent", "status",
                 "registration", "kyc_status"):
        assert getattr(state, name) is None, name
    assert state.version == TS * 4 + 1
    direct = read_mt5_account_state(envelope("mt5.users", imt_account()), ROUTER)
    assert direct == state
    # Only Equity (no MarginLevel) and no Group is still a state; a user with Group never is.
    assert user({"Login": "70001", "Equity": "5.5"}).event == "account_state"
    assert user({"Login": "70001", "Equity": "5.5", "Group": "real"}).event == "user_add"
    wrapped = user({"retcode": "0 Done", "answer": imt_account()})
    assert wrapped == state


def test_malformed_account_states_are_rejected() -> None:
    with pytest.raises(Rejected, match="'MarginLevel': expected a number"):
        read_mt5_users(envelope("mt5.users", imt_account(MarginLevel="n/a")), ROUTER)
    with pytest.raises(Rejected, match="missing field 'Login'"):
        read_mt5_users(envelope("mt5.users", {"Equity": "1.0", "MarginLevel": "0"}), ROUTER)
    with pytest.raises(Rejected, match=r"'Equity': .* is out of range"):
        read_mt5_users(envelope("mt5.users", imt_account(Equity="1e30")), ROUTER)


# -- logins -------------------------------------------------------------------------------------


def test_online_record_becomes_a_login() -> None:
    rec = login(online())
    assert (rec.kind, rec.tenant, rec.platform, rec.server, rec.login) == (
        "login", "acme", "mt5", SERVER, 70001)
    assert rec.time == LOGIN_UTC
    assert rec.login_key == f"mt5:{SERVER}:70001:{LOGIN_S * 1000}:login"
    assert (rec.ip, rec.device, rec.session_id) == ("203.0.113.7", "A1B2C3D4E5F60718", "4815162342")
    assert (rec.client_type, rec.build) == ("desktop", "4755")
    assert rec.version == TS * 4


def test_login_kinds_from_header_and_field() -> None:
    assert login(online(), "logout").kind == "logout"
    failed = login(online(), "failed")
    assert failed.kind == "failed" and failed.login_key.endswith(":failed")
    assert login(online(Kind="FAILED"), "logout").kind == "failed"  # the record's own kind wins
    with pytest.raises(Rejected, match="login, logout or failed, got 'kicked'"):
        read_mt5_login(envelope("mt5.logins", online(), event="kicked"), ROUTER)


@pytest.mark.parametrize(
    ("code", "name"),
    [("0", "desktop"), ("3", "api"), ("4", "mobile"), ("5", "mobile"), ("11", "web"),
     ("33", "manager"), ("34", "manager_api"), ("37", "manager_api"), ("35", "unknown_35"),
     ("WebTerminal", "webterminal"), ("", "")],
)
def test_client_types(code: str, name: str) -> None:
    assert login(online(Type=code)).client_type == name


def test_client_type_table_is_the_mt5_enumeration() -> None:
    assert set(CLIENT_TYPES) == {0, 1, 2, 3, 4, 5, 6, 11, 32, 33, 34, 36, 37}


def test_login_details() -> None:
    assert login(online(Address="2001:db8::1")).ip == "2001:db8::1"
    bare = login({"Login": "70001", "Time": str(LOGIN_S)})
    assert (bare.ip, bare.device, bare.session_id, bare.client_type, bare.build) == ("",) * 5
    shifted = login(online(Time=str(LOGIN_S + TWO_HOURS)), server=OFFSET_SERVER)
    assert shifted.time == LOGIN_UTC
    assert shifted.login_key == f"mt5:{OFFSET_SERVER}:70001:{LOGIN_S * 1000}:login"
    assert login(online(Time="946684800")).time == datetime(2000, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (online(Login=""), "missing field 'Login'"),
        ({"Login": "70001"}, "missing field 'Time'"),
        (online(Time="0"), "'Time' must be a positive server time"),
        (online(Time="soon"), "'Time': expected an integer"),
        (online(Time=str(10**11)), "'Time': .* is not a plausible time"),
        (online(Address="1.2.3"), "'Address': '1.2.3' is not an IP address"),
        (online(Address="203.0.113.7:443"), "is not an IP address"),
        (online(SessionID="-1"), "'SessionID' must be a non-negative integer"),
        (online(Build="x"), "'Build': expected an integer"),
    ],
)
def test_malformed_logins_are_rejected(value: dict[str, Any], reason: str) -> None:
    with pytest.raises(Rejected, match=reason):
        read_mt5_login(envelope("mt5.logins", value), ROUTER)


def test_login_on_a_server_in_utc_plus_2_at_the_epoch_is_rejected() -> None:
    # 01:00 server time on 2000-01-01 is 23:00 the day before in UTC: before the plausible times.
    with pytest.raises(Rejected, match="not a plausible time"):
        read_mt5_login(envelope("mt5.logins", online(Time="946688400"), OFFSET_SERVER), ROUTER)


# -- ticks --------------------------------------------------------------------------------------


def test_tick_becomes_a_quote() -> None:
    q = quote(tick())
    assert (q.symbol, q.platform_symbol) == ("EURUSD", "EURUSD.r")
    assert (q.bid, q.ask) == (Decimal("1.08501"), Decimal("1.08512"))
    assert q.time == LOGIN_UTC.replace(microsecond=250_000)  # time_msc preferred
    assert (q.tenant, q.platform, q.server, q.source) == ("acme", "mt5", SERVER, "mt5.ticks/0/7")


def test_tick_time_falls_back_to_seconds_and_applies_the_offset() -> None:
    assert quote(tick(time_msc=None)).time == LOGIN_UTC
    assert quote(tick(time_msc="0")).time == LOGIN_UTC
    shifted = quote(tick(time_msc=str((LOGIN_S + TWO_HOURS) * 1000 + 5)), server=OFFSET_SERVER)
    assert shifted.time == LOGIN_UTC.replace(microsecond=5_000)
    numbers = quote({"symbol": "XAUUSD", "time": LOGIN_S, "time_msc": LOGIN_S * 1000,
                     "bid": 2650.1, "ask": 2650.45, "flags": 6})
    assert (numbers.bid, numbers.ask, numbers.symbol) == (Decimal("2650.1"), Decimal("2650.45"), "XAUUSD")


def test_unchanged_sides_are_none_not_zero() -> None:
    only_bid = quote(tick(ask="0", flags="2"))
    assert (only_bid.bid, only_bid.ask) == (Decimal("1.08501"), None)
    only_ask = quote(tick(bid="0", flags=str(4 | 16)))
    assert (only_ask.bid, only_ask.ask) == (None, Decimal("1.08512"))
    # A side that is not flagged but carries a price is the current price: kept.
    assert quote(tick(flags="2")).ask == Decimal("1.08512")
    # Flagged as changed to 0 is 0.
    assert quote(tick(bid="0", flags="6")).bid == Decimal(0)
    # Unknown flag bits are accepted.
    assert quote(tick(flags=str(2 | 4 | 128 | 1024 | 2**40))).bid == Decimal("1.08501")
    # No flags at all: zeros are "not changed".
    assert quote(tick(bid="0", flags=None)).bid is None
    # A last/volume tick changes neither side: nothing to quote.
    last_only = read_mt5_tick(envelope("mt5.ticks", tick(bid="0", ask="0", last="1.0851",
                                                         volume="3", flags=str(8 | 16))), ROUTER)
    assert last_only == []


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (tick(symbol=None), "missing field 'symbol'"),
        (tick(symbol="  "), "missing field 'symbol'"),
        (tick(time=None, time_msc=None), r"missing field 'time_msc' \(or 'time'\)"),
        (tick(time="0", time_msc="0"), "'time' must be a positive server time"),
        (tick(time_msc="-1"), "'time_msc': -1 ms .* is not a plausible time"),
        (tick(time_msc=str(10**16)), "'time_msc': .* is not a plausible time"),
        (tick(bid="abc"), "'bid': expected a number"),
        (tick(ask="1e9"), "'ask': '1e9' is out of range"),
        (tick(bid=None, flags="6"), "'bid' is flagged as changed but missing"),
        (tick(flags="-2"), "'flags' must be a non-negative integer"),
    ],
)
def test_malformed_ticks_are_rejected(value: dict[str, Any], reason: str) -> None:
    with pytest.raises(Rejected, match=reason):
        read_mt5_tick(envelope("mt5.ticks", value), ROUTER)


def test_just_valid_tick_prices() -> None:
    assert quote(tick(ask="999999999.99999999")).ask == Decimal("999999999.99999999")
    assert quote(tick(time_msc="946684800001")).time == datetime(2000, 1, 1, 0, 0, 0, 1000, tzinfo=UTC)


# -- registry -----------------------------------------------------------------------------------


def test_readers_by_topic_and_dead_letters() -> None:
    expected = {"mt5.users": read_mt5_users, "mt5.logins": read_mt5_login, "mt5.ticks": read_mt5_tick}
    assert expected == READERS
    normalise = Normaliser(ROUTER, READERS)
    assert isinstance(normalise(envelope("mt5.users", imt_user()))[0], AccountUpdate)
    assert isinstance(normalise(envelope("mt5.logins", online()))[0], Login)
    assert isinstance(normalise(envelope("mt5.ticks", tick()))[0], Quote)
    assert normalise(envelope("mt5.ticks", tick(bid="0", ask="0", flags="8"))) == []
    (dead,) = normalise(envelope("mt5.logins", online(Time="0")))
    assert isinstance(dead, DeadLetter) and "'Time' must be a positive" in dead.reason


# -- fuzz: only a record or Rejected, never another exception -----------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8) | st.integers(min_value=-(2**70), max_value=2**70).map(str)
    | st.sampled_from(["0", "", "1.5", "NaN", "1e400", "-0", "Germany", "203.0.113.7"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


def _fuzz(reader: Any, topic: str, base: dict[str, Any], overrides: dict[str, Any], garbage: bytes,
          use_garbage: bool, event: str | None) -> None:
    doc = {**base, **overrides}
    raw = garbage if use_garbage else json.dumps(doc).encode()  # big ints and NaN included
    for server in (SERVER, OFFSET_SERVER):
        try:
            out = reader(envelope(topic, raw, server, event), ROUTER)
        except Rejected as exc:
            assert exc.reason
            continue
        for record in out if isinstance(out, list) else [out]:
            checked(record)


_EVENTS = st.sampled_from([None, "add", "update", "delete", "failed", "logout", "x"])


@settings(max_examples=300, deadline=None)
@given(
    overrides=st.dictionaries(
        st.sampled_from(["Login", "Group", "Name", "FirstName", "LastName", "Country", "Email",
                         "EMail", "Leverage", "Agent", "ClientID", "Registration", "Balance",
                         "Credit", "Rights", "Margin", "MarginFree", "MarginLevel", "Equity"]),
        _json_values, max_size=6),
    garbage=st.binary(max_size=40), use_garbage=st.booleans(), state=st.booleans(), event=_EVENTS,
)
def test_fuzz_users(overrides: dict[str, Any], garbage: bytes, use_garbage: bool, state: bool,
                    event: str | None) -> None:
    base = imt_account() if state else imt_user()
    _fuzz(read_mt5_users, "mt5.users", base, overrides, garbage, use_garbage, event)


@settings(max_examples=300, deadline=None)
@given(
    overrides=st.dictionaries(
        st.sampled_from(["SessionID", "Login", "Group", "Address", "Type", "Build", "Time",
                         "ComputerID", "Kind"]),
        _json_values, max_size=5),
    garbage=st.binary(max_size=40), use_garbage=st.booleans(), event=_EVENTS,
)
def test_fuzz_logins(overrides: dict[str, Any], garbage: bytes, use_garbage: bool,
                     event: str | None) -> None:
    _fuzz(read_mt5_login, "mt5.logins", online(), overrides, garbage, use_garbage, event)


@settings(max_examples=300, deadline=None)
@given(
    overrides=st.dictionaries(
        st.sampled_from(["symbol", "time", "time_msc", "bid", "ask", "last", "volume", "flags"]),
        _json_values, max_size=5),
    garbage=st.binary(max_size=40), use_garbage=st.booleans(),
)
def test_fuzz_ticks(overrides: dict[str, Any], garbage: bytes, use_garbage: bool) -> None:
    _fuzz(read_mt5_tick, "mt5.ticks", tick(), overrides, garbage, use_garbage, None)


def test_last_access_is_read_in_server_time() -> None:
    """LastAccess (the platform's last login) feeds the dormant-account rule."""
    assert user(imt_user()).last_access == LOGIN_UTC
    shifted = user(imt_user(LastAccess=str(LOGIN_S + TWO_HOURS)), server=OFFSET_SERVER)
    assert shifted.last_access == LOGIN_UTC
    assert user(imt_user(LastAccess="0")).last_access is None
