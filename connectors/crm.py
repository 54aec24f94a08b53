"""CRM / KYC account events (topic `crm.accounts`) -> canonical `AccountUpdate` (origin "crm").

The format is brokerstream's own, documented for CRMs in `docs/crm.md`: one JSON object per
event, keyed by login. Events:

- `account_opened`  -- the CRM opened a trading account: status "active", registration = time;
- `account_updated` -- client details changed;
- `kyc_status`      -- the KYC state changed: `kyc_status` pending / approved / rejected / expired;
- `ib_assigned`     -- the account belongs to IB `ib_id` from `effective_from` (default: `time`);
                       an empty `ib_id` ends the assignment;
- `account_closed`  -- status "closed".

Every event may carry the client fields (`client_id`, `name`, `email`, `country`,
`date_of_birth`, `kyc_status`, `ib_id` / `effective_from`); a field left out (or null) says
nothing about it. `time` (ISO 8601 with a UTC offset, or epoch milliseconds) is the event time:
the update's time and version come from it, so a replay gives the same result. The server comes
from the `server` field or the `server` header (they must agree when both are given); `platform`,
when given, must be the server's platform; `tenant`, when given, must be the server's tenant.

Rejected, with the reason: not a JSON object, unknown event, missing login, a time or date that
cannot be read, a date of birth in the future (of the event) or before 1900, an unknown KYC
status or country, a tenant or platform that does not match the server.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

from connectors.countries import country_code
from connectors.fields import (
    EPOCH,
    Rejected,
    as_int,
    as_login,
    check_time,
    check_time_ms,
    decode_json_object,
    from_epoch_ms,
    required,
)
from connectors.routing import Router, ServerInfo
from schemas.envelope import Envelope
from schemas.events import AccountUpdate, event_version
from schemas.identity import account_key

TOPIC = "crm.accounts"
PLATFORMS: Final = ("mt5", "mt4", "ctrader")
EVENTS: Final = ("account_opened", "account_updated", "kyc_status", "ib_assigned", "account_closed")
KYC_STATUSES: Final = ("pending", "approved", "rejected", "expired")

# Rank of each event inside one millisecond (see `schemas.events.event_version`).
_RANKS: Final = {"account_opened": "add", "account_closed": "delete"}
# Dates the tables can hold (Date32 runs from 1900 to 2299); times must be plausible
# (connectors.fields.plausible_times).
_FIRST_BIRTH: Final = date(1900, 1, 1)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MS = timedelta(milliseconds=1)


def _text(doc: dict[str, Any], name: str) -> str | None:
    """A text field: a string or a number; absent, null or empty says nothing."""
    value = doc.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise Rejected(f"field {name!r}: expected text, got {value!r}")
    text = str(value).strip()
    return text or None


def read_instant(value: Any, name: str) -> datetime:
    """An ISO 8601 time with a UTC offset, or epoch milliseconds -> UTC datetime."""
    if isinstance(value, bool):
        raise Rejected(f"field {name!r}: expected a time, got {value!r}")
    if isinstance(value, int | float) or (isinstance(value, str) and value.strip().isdigit()):
        ms = as_int(value.strip() if isinstance(value, str) else value, name)
        return from_epoch_ms(check_time_ms(ms, name))
    if not isinstance(value, str):
        raise Rejected(f"field {name!r}: expected a time, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise Rejected(
            f"field {name!r}: {value!r} is neither an ISO 8601 time nor epoch milliseconds"
        ) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise Rejected(f"field {name!r}: {value!r} has no UTC offset (write Z or +hh:mm)")
    try:
        instant = parsed.astimezone(UTC)
    except OverflowError:
        raise Rejected(f"field {name!r}: {value!r} is out of range") from None
    return check_time(instant, name)


def _birth_date(doc: dict[str, Any], on: datetime) -> date | None:
    text = _text(doc, "date_of_birth")
    if text is None:
        return None
    if not _DATE.match(text):
        raise Rejected(f"field 'date_of_birth': {text!r} is not a date written YYYY-MM-DD")
    try:
        born = date.fromisoformat(text)
    except ValueError:
        raise Rejected(f"field 'date_of_birth': {text!r} is not a valid date") from None
    if born > on.date():
        raise Rejected(f"field 'date_of_birth': {text} is after the event ({on.date()}): in the future")
    if born < _FIRST_BIRTH:
        raise Rejected(f"field 'date_of_birth': {text} is before 1900")
    return born


def _kyc(doc: dict[str, Any], needed: bool) -> str | None:
    text = _text(doc, "kyc_status")
    if text is None:
        if needed:
            raise Rejected("missing field 'kyc_status' (pending, approved, rejected or expired)")
        return None
    status = text.lower()
    if status not in KYC_STATUSES:
        raise Rejected(f"field 'kyc_status' must be pending, approved, rejected or expired, got {text!r}")
    return status


def _country(doc: dict[str, Any]) -> str | None:
    text = _text(doc, "country")
    if text is None:
        return None
    code = country_code(text)
    if code is None:
        raise Rejected(f"field 'country': {text!r} is neither an ISO 3166-1 code nor a known country name")
    return code


def _server(env: Envelope, doc: dict[str, Any], router: Router) -> ServerInfo:
    field = _text(doc, "server")
    header = env.headers.get("server") or None
    if field is not None and header is not None and field != header:
        raise Rejected(f"field 'server' {field!r} and header 'server' {header!r} disagree", "route")
    name = field or header
    if name is None:
        raise Rejected("missing field 'server' (or the 'server' header)", "route")
    platform = _text(doc, "platform")
    if platform is not None and platform.lower() not in PLATFORMS:
        raise Rejected(f"field 'platform' must be mt5, mt4 or ctrader, got {platform!r}")
    wanted = platform.lower() if platform is not None else None
    probe = replace(env, headers={**env.headers, "server": name})
    order = [wanted] if wanted else []
    order += [p for p in PLATFORMS if p != wanted]
    first: Rejected | None = None
    for candidate in order:
        try:
            info = router.server_of(probe, candidate)
        except Rejected as exc:
            first = first or exc
            continue
        if wanted is not None and candidate != wanted:
            raise Rejected(
                f"server {name!r} is configured as {candidate}, but the event says platform {wanted!r}",
                "route",
            )
        return info
    assert first is not None
    raise first


def _agent(doc: dict[str, Any], event: str, time: datetime) -> tuple[str | None, datetime | None]:
    """(IB id, from when) -- ("", ...) ends an assignment, (None, None) says nothing."""
    value = doc.get("ib_id")
    if value is None:
        if event == "ib_assigned":
            raise Rejected("missing field 'ib_id' (an empty string ends the assignment)")
        if doc.get("effective_from") is not None:
            raise Rejected("field 'effective_from' without 'ib_id': nothing to date")
        return None, None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise Rejected(f"field 'ib_id': expected text, got {value!r}")
    effective = doc.get("effective_from")
    start = time if effective is None or effective == "" else read_instant(effective, "effective_from")
    return str(value).strip(), start


def read_crm_account(env: Envelope, router: Router) -> AccountUpdate:
    """One `crm.accounts` event -> what the CRM says about the account. Raises Rejected."""
    doc = decode_json_object(env.value)
    event = _text(doc, "event")
    if event is None:
        raise Rejected(f"missing field 'event' ({', '.join(EVENTS)})")
    if event not in EVENTS:
        raise Rejected(f"unknown event {event!r} (known: {', '.join(EVENTS)})")
    time = read_instant(required(doc, "time"), "time")
    info = _server(env, doc, router)
    tenant = _text(doc, "tenant")
    if tenant is not None and tenant != info.tenant:
        raise Rejected(
            f"tenant {tenant!r} does not match server {info.server.name!r}, which belongs to "
            f"tenant {info.tenant!r}",
            "route",
        )
    login = as_login(required(doc, "login"), "login")
    _text(doc, "event_id")  # optional: checked to be text, not stored
    agent, agent_from = _agent(doc, event, time)
    status = {"account_opened": "active", "account_closed": "closed"}.get(event)
    time_ms = (time - EPOCH) // _MS
    return AccountUpdate.trusted({
        "account_key": account_key(info.server.platform, info.server.name, login),
        "tenant": info.tenant,
        "platform": info.server.platform,
        "server": info.server.name,
        "login": login,
        "origin": "crm",
        "event": event,
        "name": _text(doc, "name"),
        "group": None,
        "country": _country(doc),
        "email": _text(doc, "email"),
        "currency": None,
        "leverage": None,
        "agent": agent,
        "agent_from": agent_from,
        "client_id": _text(doc, "client_id"),
        "registration": time if event == "account_opened" else None,
        "last_access": None,
        "date_of_birth": _birth_date(doc, time),
        "kyc_status": _kyc(doc, needed=event == "kyc_status"),
        "status": status,
        "balance": None,
        "credit": None,
        "equity": None,
        "margin": None,
        "margin_free": None,
        "margin_level": None,
        "time": time,
        "version": event_version(time_ms, _RANKS.get(event, "update")),
        "source": env.source,
    })


READERS: dict[str, Callable[[Envelope, Router], AccountUpdate]] = {TOPIC: read_crm_account}
"""Topic -> reader, for the registry."""
