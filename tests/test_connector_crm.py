"""CRM / KYC account events (`crm.accounts`, the format of docs/crm.md) -> AccountUpdate."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.crm import EVENTS, READERS, read_crm_account
from connectors.fields import Rejected
from connectors.mt5_accounts import read_mt5_users
from connectors.registry import Normaliser
from connectors.routing import Router
from pipelines.config import parse_settings
from schemas.account_state import merge_account
from schemas.envelope import Envelope
from schemas.events import AccountUpdate, DeadLetter

DOCS = Path(__file__).resolve().parent.parent / "docs" / "crm.md"
SERVER = "ACME-MT5-Live"
SETTINGS = parse_settings({
    "tenants": [
        {"id": "acme", "servers": [
            {"name": SERVER, "platform": "mt5", "currency": "USD"},
            {"name": "ACME-MT4", "platform": "mt4", "currency": "USD", "utc_offset_minutes": 120},
        ]},
        {"id": "zenith", "servers": [{"name": "Zenith-cTrader", "platform": "ctrader"}]},
    ],
})
ROUTER = Router(SETTINGS)
TS = 1_732_530_000_000
EVENT_TIME = datetime(2024, 11, 24, 8, 15, tzinfo=UTC)  # "2024-11-24T10:15:00+02:00"


def envelope(value: dict[str, Any] | bytes, server: str | None = None) -> Envelope:
    headers = {} if server is None else {"server": server}
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    return Envelope(topic="crm.accounts", value=raw, timestamp_ms=TS, key="70001", headers=headers,
                    partition=2, offset=41)


def crm_event(**fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "event": "account_opened", "event_id": "crm-7f3a9c01", "time": "2024-11-24T10:15:00+02:00",
        "tenant": "acme", "platform": "mt5", "server": SERVER, "login": 70001,
        "client_id": "C-100231", "name": "Jane Doe", "email": "jane.doe@example.com",
        "country": "DE", "date_of_birth": "1988-04-17", "kyc_status": "pending",
    }
    doc.update(fields)
    return {k: v for k, v in doc.items() if v is not None}


def read(value: dict[str, Any] | bytes, server: str | None = None) -> AccountUpdate:
    record = read_crm_account(envelope(value, server), ROUTER)
    assert AccountUpdate.model_validate(record.model_dump()) == record
    return record


def rejected(value: dict[str, Any] | bytes, reason: str, server: str | None = None) -> Rejected:
    with pytest.raises(Rejected, match=reason) as exc:
        read_crm_account(envelope(value, server), ROUTER)
    return exc.value


# -- the documented examples ----------------------------------------------------------------------


def doc_examples() -> dict[str, dict[str, Any]]:
    """The JSON example under each event heading of docs/crm.md."""
    text = DOCS.read_text(encoding="utf-8")
    found = re.findall(r"### `(\w+)`\s+```json\n(.*?)```", text, flags=re.S)
    return {event: json.loads(body) for event, body in found}


def test_docs_show_a_readable_example_of_every_event() -> None:
    examples = doc_examples()
    assert sorted(examples) == sorted(EVENTS)
    for event, example in examples.items():
        assert example["event"] == event
        record = read(example, SERVER)  # the updated example relies on the header
        assert (record.origin, record.event, record.account_key) == ("crm", event, f"mt5:{SERVER}:70001")
    line = re.search(r'^\{"topic": "crm.accounts".*$', DOCS.read_text(encoding="utf-8"), flags=re.M)
    assert line is not None
    envelope_doc = json.loads(line.group(0))
    assert read(envelope_doc["value"].encode(), SERVER).kyc_status == "approved"


# -- events -----------------------------------------------------------------------------------------


def test_account_opened() -> None:
    u = read(crm_event())
    assert (u.account_key, u.tenant, u.platform, u.server, u.login) == (
        f"mt5:{SERVER}:70001", "acme", "mt5", SERVER, 70001)
    assert (u.origin, u.event, u.status) == ("crm", "account_opened", "active")
    assert (u.client_id, u.name, u.email, u.country) == ("C-100231", "Jane Doe", "jane.doe@example.com", "DE")
    assert (u.date_of_birth, u.kyc_status) == (date(1988, 4, 17), "pending")
    assert u.time == EVENT_TIME and u.registration == EVENT_TIME
    ms = int(EVENT_TIME.timestamp() * 1000)
    assert u.version == ms * 4  # opened ranks like an add
    assert (u.group, u.currency, u.leverage, u.balance, u.agent, u.agent_from) == (None,) * 6
    assert u.source == "crm.accounts/2/41"


def test_updated_kyc_ib_and_closed() -> None:
    ms = int(EVENT_TIME.timestamp() * 1000)
    updated = read({"event": "account_updated", "time": ms, "login": "70001", "country": "Austria",
                    "email": "jane@doe.example"}, SERVER)
    assert (updated.country, updated.email, updated.status, updated.registration) == (
        "AT", "jane@doe.example", None, None)
    assert (updated.name, updated.kyc_status, updated.date_of_birth) == (None, None, None)
    assert updated.time == EVENT_TIME and updated.version == ms * 4 + 1

    kyc = read({"event": "kyc_status", "time": "2024-11-25T09:02:11Z", "server": SERVER,
                "login": 70001, "kyc_status": "Approved"})
    assert kyc.kyc_status == "approved"
    assert kyc.time == datetime(2024, 11, 25, 9, 2, 11, tzinfo=UTC)

    ib = read({"event": "ib_assigned", "time": "2024-11-26T14:00:00Z", "server": SERVER,
               "login": 70001, "ib_id": "IB-4711", "effective_from": "2024-12-01T00:00:00+01:00"})
    assert (ib.agent, ib.agent_from) == ("IB-4711", datetime(2024, 11, 30, 23, 0, tzinfo=UTC))
    default_from = read({"event": "ib_assigned", "time": "2024-11-26T14:00:00Z", "server": SERVER,
                         "login": 70001, "ib_id": 4711})
    assert (default_from.agent, default_from.agent_from) == ("4711", default_from.time)
    ended = read({"event": "ib_assigned", "time": "2024-11-27T14:00:00Z", "server": SERVER,
                  "login": 70001, "ib_id": ""})
    assert ended.agent == ""  # says: no IB from now on

    closed = read({"event": "account_closed", "time": ms, "server": SERVER, "login": 70001})
    assert (closed.status, closed.version) == ("closed", ms * 4 + 2)


def test_time_forms() -> None:
    for written in ("2024-11-24T08:15:00Z", "2024-11-24T08:15:00+00:00", "2024-11-24 03:15:00-05:00",
                    "2024-11-24T10:15:00.000+02:00", 1_732_436_100_000, "1732436100000"):
        assert read(crm_event(time=written)).time == EVENT_TIME, written
    assert read(crm_event(time="2024-11-24T08:15:00.123456Z")).version == (1_732_436_100_123) * 4


def test_platform_and_tenant_are_checked_against_the_server() -> None:
    inferred = read(crm_event(platform=None, tenant=None))
    assert inferred.platform == "mt5"
    mt4 = read(crm_event(server="ACME-MT4", platform="MT4"))
    assert mt4.account_key == "mt4:ACME-MT4:70001"
    ctrader = read(crm_event(server="Zenith-cTrader", platform=None, tenant="zenith"))
    assert (ctrader.tenant, ctrader.platform) == ("zenith", "ctrader")
    assert read(crm_event(server=None), SERVER).server == SERVER
    assert read(crm_event(), SERVER).server == SERVER  # field and header agreeing


@pytest.mark.parametrize(
    ("fields", "header", "reason", "stage"),
    [
        ({"tenant": "zenith"}, None,
         "tenant 'zenith' does not match server 'ACME-MT5-Live', which belongs to tenant 'acme'", "route"),
        ({"platform": "mt4"}, None, "server 'ACME-MT5-Live' is configured as mt5, but the event says "
         "platform 'mt4'", "route"),
        ({"platform": "mt6"}, None, "'platform' must be mt5, mt4 or ctrader", "validate"),
        ({"server": "Nowhere-MT5"}, None, "server 'Nowhere-MT5' is not assigned to any tenant", "route"),
        ({"server": None}, None, r"missing field 'server' \(or the 'server' header\)", "route"),
        ({}, "ACME-MT4", "field 'server' 'ACME-MT5-Live' and header 'server' 'ACME-MT4' disagree",
         "route"),
    ],
)
def test_routing_rejects(fields: dict[str, Any], header: str | None, reason: str, stage: str) -> None:
    assert rejected(crm_event(**fields), reason, header).stage == stage


# -- rejects ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"event": "account_renamed"}, "unknown event 'account_renamed' \\(known: account_opened, "),
        ({"event": None}, "missing field 'event'"),
        ({"login": None}, "missing field 'login'"),
        ({"login": "seventy"}, "'login': expected an integer"),
        ({"login": -1}, "'login' is out of range"),
        ({"time": None}, "missing field 'time'"),
        ({"time": "2024-11-24T10:15:00"}, "has no UTC offset"),
        ({"time": "2024-11-24"}, "has no UTC offset"),
        ({"time": "24/11/2024 10:15"}, "neither an ISO 8601 time nor epoch milliseconds"),
        ({"time": "2300-01-01T00:00:00Z"}, "not a plausible time"),
        ({"time": "0001-01-01T00:00:00+01:00"}, "out of range"),
        ({"time": 10**16}, "not a plausible time"),
        ({"time": True}, "expected a time"),
        ({"date_of_birth": "17/04/1988"}, "'date_of_birth': '17/04/1988' is not a date written YYYY-MM-DD"),
        ({"date_of_birth": "1988-4-17"}, "is not a date written YYYY-MM-DD"),
        ({"date_of_birth": "1988-02-30"}, "'date_of_birth': '1988-02-30' is not a valid date"),
        ({"date_of_birth": "2024-11-25"}, "'date_of_birth': 2024-11-25 is after the event .*in the future"),
        ({"date_of_birth": "1899-12-31"}, "before 1900"),
        ({"kyc_status": "verified"}, "'kyc_status' must be pending, approved, rejected or expired"),
        ({"event": "kyc_status", "kyc_status": None}, "missing field 'kyc_status'"),
        ({"event": "ib_assigned"}, "missing field 'ib_id'"),
        ({"effective_from": "2024-12-01T00:00:00Z"}, "'effective_from' without 'ib_id'"),
        ({"ib_id": "IB-1", "effective_from": "soon"}, "'effective_from': 'soon' is neither"),
        ({"ib_id": {"id": 1}}, "'ib_id': expected text"),
        ({"country": "Narnia"}, "'country': 'Narnia' is neither an ISO 3166-1 code nor a known country"),
        ({"name": ["Jane"]}, "'name': expected text"),
    ],
)
def test_malformed_events_are_rejected(fields: dict[str, Any], reason: str) -> None:
    assert rejected(crm_event(**fields), reason).stage == "validate"


def test_just_valid_values() -> None:
    assert read(crm_event(date_of_birth="2024-11-24")).date_of_birth == date(2024, 11, 24)  # born today
    assert read(crm_event(date_of_birth="1900-01-01")).date_of_birth == date(1900, 1, 1)
    # the first plausible instant (connectors.fields.plausible_times)
    assert read(crm_event(time=946684800000, date_of_birth=None)).time == datetime(2000, 1, 1, tzinfo=UTC)
    assert read(crm_event(login=str(2**63 - 1))).login == 2**63 - 1
    assert read(crm_event(country="United States of America")).country == "US"
    assert read(crm_event(country="deu")).country == "DE"
    sparse = read({"event": "account_updated", "time": 946684800000, "server": SERVER, "login": 1,
                   "unknown_field": {"kept": "out"}, "name": "", "email": None})
    assert (sparse.name, sparse.email) == (None, None)


def test_not_json_or_not_an_object() -> None:
    assert rejected(b"\xff\xfe", "not JSON").stage == "decode"
    assert rejected(b"[1, 2]", "expected a JSON object, got list").stage == "decode"


# -- the merged account -----------------------------------------------------------------------------


def test_crm_and_platform_merge_field_by_field() -> None:
    platform_user = read_mt5_users(
        Envelope(topic="mt5.users", timestamp_ms=int(EVENT_TIME.timestamp() * 1000) - 60_000,
                 headers={"server": SERVER}, partition=0, offset=1,
                 value=orjson.dumps({"Login": "70001", "Group": "real\\std", "Name": "J. Doe",
                                     "Country": "Germany", "Leverage": "100", "Rights": "1"})),
        ROUTER)
    state, account = merge_account(None, platform_user)
    kyc = read({"event": "kyc_status", "time": "2024-11-24T08:15:00Z", "server": SERVER,
                "login": 70001, "kyc_status": "approved", "name": "Jane Doe"})
    state, account = merge_account(state, kyc)
    assert (account.group, account.leverage, account.country) == ("real\\std", 100, "DE")
    assert (account.kyc_status, account.name, account.status) == ("approved", "Jane Doe", "active")
    closed = read({"event": "account_closed", "time": "2024-11-24T09:00:00Z", "server": SERVER,
                   "login": 70001})
    _, account = merge_account(state, closed)
    assert account.status == "closed"


def test_reader_by_topic_and_dead_letters() -> None:
    assert {"crm.accounts": read_crm_account} == READERS
    normalise = Normaliser(ROUTER, READERS)
    assert isinstance(normalise(envelope(crm_event()))[0], AccountUpdate)
    (dead,) = normalise(envelope(crm_event(tenant="zenith")))
    assert isinstance(dead, DeadLetter) and dead.stage == "route" and "tenant 'zenith'" in dead.reason


# -- fuzz -------------------------------------------------------------------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12) | st.integers(min_value=-(2**70), max_value=2**70).map(str)
    | st.sampled_from(["", "0", "mt4", "mt5", "ctrader", "acme", "zenith", "approved", "Germany",
                       "2024-11-24", "2024-02-30", "1988-04-17", "2024-11-24T10:00:00Z",
                       "9999-12-31T23:59:59-23:59", "ACME-MT4", "Zenith-cTrader", *EVENTS]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=500, deadline=None)
@given(
    overrides=st.dictionaries(
        st.sampled_from(["event", "event_id", "time", "tenant", "platform", "server", "login",
                         "client_id", "name", "email", "country", "date_of_birth", "kyc_status",
                         "ib_id", "effective_from"]),
        _json_values, max_size=6),
    garbage=st.binary(max_size=40), use_garbage=st.booleans(),
    header=st.sampled_from([None, SERVER, "ACME-MT4", "Nowhere"]),
)
def test_fuzz_never_raises_anything_but_rejected(
    overrides: dict[str, Any], garbage: bytes, use_garbage: bool, header: str | None
) -> None:
    raw = garbage if use_garbage else json.dumps({**crm_event(), **overrides}).encode()
    try:
        record = read_crm_account(envelope(raw, header), ROUTER)
    except Rejected as exc:
        assert exc.reason
        return
    assert AccountUpdate.model_validate(record.model_dump()) == record
