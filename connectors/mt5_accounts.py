"""MetaTrader 5 users, account states, logins and ticks (Web API / Manager API JSON) -> canonical
`AccountUpdate` / `Login` / `Quote`.

Topics and readers (header `server`: the MT5 server name; values may be JSON strings, as the
Web API sends them, or numbers; a Web API `{"retcode": .., "answer": {..}}` is unwrapped;
unknown extra fields are ignored):

- `mt5.users` -> `read_mt5_users`, which dispatches on the message:
  - an IMTAccount (MarginLevel or Equity present, no Group) -> `read_mt5_account_state`:
    `AccountUpdate` event "account_state" with balance, credit, margin, margin_free,
    margin_level and equity;
  - anything else is an IMTUser -> `read_mt5_user`: `AccountUpdate` event user_add /
    user_update / user_delete from the `event` header (add / update / delete, absent = add).
- `mt5.logins` -> `read_mt5_login`: an online record (IMTOnline) -> `Login`. The kind is the
  record's `Kind` field, else the `event` header, else "login": login / logout / failed (a
  failed authorisation is how MT5 reports a failed login).
- `mt5.ticks` -> `read_mt5_tick`: an MqlTick plus its `symbol` -> `Quote`.

What a user record says nothing about stays None ("this source says nothing"): an empty text,
Agent 0 (no IB), Leverage 0, ClientID 0, Registration 0. Status comes from the Rights bit
USER_RIGHT_ENABLED (active / disabled); a deleted user is "closed". MT5's own `Status` field is
free text a broker fills as it likes: it is not read. The country is a name on MT5 ("Germany"):
it becomes an ISO 3166-1 alpha-2 code through `connectors.countries`; an unknown name says
nothing.

Every MT5 time read here (Registration, LastAccess, the online record's Time, the tick's time /
time_msc) is stamped in the trade server's zone: it becomes UTC through the server's configured
`timezone` (DST-aware) or, without one, its fixed `utc_offset_minutes`. An account update's own time and
version are the envelope's (when the platform emitted it).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any, Final, Literal

from connectors.countries import country_code
from connectors.fields import (
    PRICE,
    Rejected,
    as_decimal,
    as_int,
    as_login,
    decode_json_object,
    from_epoch_ms,
    required,
    server_event_time,
)
from connectors.routing import Router, ServerInfo
from schemas.envelope import Envelope
from schemas.events import AccountUpdate, Login, Quote, event_version
from schemas.identity import account_key
from schemas.symbols import canonical_symbol

PLATFORM: Final = "mt5"
TOPIC_USERS = "mt5.users"
TOPIC_LOGINS = "mt5.logins"
TOPIC_TICKS = "mt5.ticks"

Record = AccountUpdate | Login | Quote
LoginKind = Literal["login", "logout", "failed"]

_USER_EVENTS = {"add": "user_add", "update": "user_update", "delete": "user_delete"}
_LOGIN_KINDS: dict[str, LoginKind] = {"login": "login", "logout": "logout", "failed": "failed"}

# IMTUser::EnUsersRights: the account may connect.
USER_RIGHT_ENABLED: Final = 0x1

# IMTUser::EnUsersConnectionTypes (IMTOnline::Type) -> canonical client type.
CLIENT_TYPES: Final[dict[int, str]] = {
    0: "desktop",  # USER_TYPE_CLIENT: the client terminal
    1: "mobile",  # USER_TYPE_CLIENT_WINMOBILE
    2: "mobile",  # USER_TYPE_CLIENT_WINPHONE
    3: "api",  # USER_TYPE_CLIENT_API_WEB: the client Web API
    4: "mobile",  # USER_TYPE_CLIENT_IPHONE
    5: "mobile",  # USER_TYPE_CLIENT_ANDROID
    6: "mobile",  # USER_TYPE_CLIENT_BLACKBERRY
    11: "web",  # USER_TYPE_CLIENT_WEB: the WebTerminal
    32: "admin",  # USER_TYPE_ADMIN: administrator terminal
    33: "manager",  # USER_TYPE_MANAGER: manager terminal
    34: "manager_api",  # USER_TYPE_MANAGER_API
    36: "admin_api",  # USER_TYPE_ADMIN_API
    37: "manager_api",  # USER_TYPE_MANAGER_API_WEB: the manager Web API
}

# MqlTick flags: what changed in this tick (other bits occur and are accepted).
TICK_FLAG_BID: Final = 2
TICK_FLAG_ASK: Final = 4

_MAX_LOGIN: Final = 2**63
_MAX_LEVERAGE: Final = 2**32


# -- shared reading ---------------------------------------------------------------------------


def _text(doc: dict[str, Any], *names: str) -> str | None:
    """The first of `names` with a non-empty text; None says nothing."""
    for name in names:
        value = doc.get(name)
        if value is None or isinstance(value, dict | list):
            continue
        text = str(value).strip()
        if text:
            return text
    return None


def _present(doc: dict[str, Any], name: str) -> bool:
    value = doc.get(name)
    return value is not None and value != ""


def _login(doc: dict[str, Any]) -> int:
    return as_login(required(doc, "Login"), "Login")


def _count(doc: dict[str, Any], name: str, limit: int = _MAX_LOGIN) -> int:
    """A non-negative integer field; 0 when absent."""
    if not _present(doc, name):
        return 0
    number = as_int(doc[name], name)
    if not 0 <= number < limit:
        raise Rejected(f"field {name!r} must be a non-negative integer in range, got {number}")
    return number


def _money(doc: dict[str, Any], name: str) -> Decimal | None:
    return as_decimal(doc[name], name) if _present(doc, name) else None


def _server_time(ms: int, info: ServerInfo, name: str) -> datetime:
    """Milliseconds stamped in the server's zone -> UTC, if plausible (fields.plausible_times)."""
    return server_event_time(ms, name, info.clock)


def _seconds(doc: dict[str, Any], name: str, info: ServerInfo) -> datetime | None:
    """A server-time field in seconds; absent or 0 says nothing."""
    seconds = _count(doc, name)
    return _server_time(seconds * 1000, info, name) if seconds else None


# -- mt5.users --------------------------------------------------------------------------------


def is_account_state(doc: dict[str, Any]) -> bool:
    """An IMTAccount (trading state) rather than an IMTUser: margin figures and no Group."""
    return "Group" not in doc and ("MarginLevel" in doc or "Equity" in doc)


def _name(doc: dict[str, Any]) -> str | None:
    name = _text(doc, "Name")
    if name is not None:
        return name
    parts = [_text(doc, part) for part in ("FirstName", "MiddleName", "LastName")]
    return " ".join(part for part in parts if part) or None


def _user(doc: dict[str, Any], env: Envelope, info: ServerInfo, event: str) -> AccountUpdate:
    login = _login(doc)
    leverage = _count(doc, "Leverage", _MAX_LEVERAGE)
    agent = _count(doc, "Agent")
    client_id = _count(doc, "ClientID")
    status: str | None = None
    if event == "delete":
        status = "closed"
    elif _present(doc, "Rights"):
        status = "active" if _count(doc, "Rights", 2**64) & USER_RIGHT_ENABLED else "disabled"
    return AccountUpdate.trusted({
        "account_key": account_key(PLATFORM, info.server.name, login),
        "tenant": info.tenant,
        "platform": PLATFORM,
        "server": info.server.name,
        "login": login,
        "origin": "platform",
        "event": _USER_EVENTS[event],
        "name": _name(doc),
        "group": _text(doc, "Group"),
        "country": country_code(_text(doc, "Country")),
        "email": _text(doc, "EMail", "Email"),
        "currency": info.server.currency,
        "leverage": leverage or None,
        "agent": str(agent) if agent else None,
        "agent_from": None,
        "client_id": str(client_id) if client_id else None,
        "registration": _seconds(doc, "Registration", info),
        "last_access": _seconds(doc, "LastAccess", info),
        "date_of_birth": None,
        "kyc_status": None,
        "status": status,
        "balance": _money(doc, "Balance"),
        "credit": _money(doc, "Credit"),
        "equity": None,
        "margin": None,
        "margin_free": None,
        "margin_level": None,
        "time": from_epoch_ms(env.timestamp_ms),
        "version": event_version(env.timestamp_ms, event),
        "source": env.source,
    })


def _account_state(doc: dict[str, Any], env: Envelope, info: ServerInfo) -> AccountUpdate:
    login = _login(doc)
    return AccountUpdate.trusted({
        "account_key": account_key(PLATFORM, info.server.name, login),
        "tenant": info.tenant,
        "platform": PLATFORM,
        "server": info.server.name,
        "login": login,
        "origin": "platform",
        "event": "account_state",
        "name": None,
        "group": None,
        "country": None,
        "email": None,
        "currency": None,
        "leverage": None,
        "agent": None,
        "agent_from": None,
        "client_id": None,
        "registration": None,
        "last_access": None,
        "date_of_birth": None,
        "kyc_status": None,
        "status": None,
        "balance": _money(doc, "Balance"),
        "credit": _money(doc, "Credit"),
        "equity": _money(doc, "Equity"),
        "margin": _money(doc, "Margin"),
        "margin_free": _money(doc, "MarginFree"),
        "margin_level": _money(doc, "MarginLevel"),
        "time": from_epoch_ms(env.timestamp_ms),
        # A snapshot ranks with updates: within one millisecond the later message wins.
        "version": event_version(env.timestamp_ms, "update"),
        "source": env.source,
    })


def read_mt5_user(env: Envelope, router: Router) -> AccountUpdate:
    """One IMTUser on `mt5.users` -> what the platform says about the account."""
    event = router.deal_event(env)
    info = router.server_of(env, PLATFORM)
    return _user(decode_json_object(env.value, unwrap_answer=True), env, info, event)


def read_mt5_account_state(env: Envelope, router: Router) -> AccountUpdate:
    """One IMTAccount on `mt5.users` -> the account's trading state (balance, margin, equity)."""
    router.deal_event(env)  # checked, but a snapshot is a snapshot whatever the header says
    info = router.server_of(env, PLATFORM)
    return _account_state(decode_json_object(env.value, unwrap_answer=True), env, info)


def read_mt5_users(env: Envelope, router: Router) -> AccountUpdate:
    """The `mt5.users` reader: an IMTAccount becomes an account state, anything else a user."""
    event = router.deal_event(env)
    info = router.server_of(env, PLATFORM)
    doc = decode_json_object(env.value, unwrap_answer=True)
    if is_account_state(doc):
        return _account_state(doc, env, info)
    return _user(doc, env, info, event)


# -- mt5.logins -------------------------------------------------------------------------------


def _ip(doc: dict[str, Any]) -> str:
    text = _text(doc, "Address")
    if text is None:
        return ""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise Rejected(f"field 'Address': {text!r} is not an IP address") from None


def _client_type(doc: dict[str, Any]) -> str:
    value = doc.get("Type")
    if value is None or value == "":
        return ""
    if isinstance(value, str) and not value.strip().lstrip("-").isdigit():
        return value.strip().lower()  # a bridge that already names the type
    code = as_int(value, "Type")
    return CLIENT_TYPES.get(code, f"unknown_{code}")


def _number_text(doc: dict[str, Any], name: str) -> str:
    """An unsigned 64-bit integer field kept as text ("" when absent)."""
    return str(_count(doc, name, 2**64)) if _present(doc, name) else ""


def read_mt5_login(env: Envelope, router: Router) -> Login:
    """One `mt5.logins` online record -> a `Login` (kind from the record, else the header)."""
    info = router.server_of(env, PLATFORM)
    doc = decode_json_object(env.value, unwrap_answer=True)
    login = _login(doc)
    raw_kind = _text(doc, "Kind", "kind") or env.headers.get("event") or "login"
    kind = _LOGIN_KINDS.get(raw_kind.strip().lower())
    if kind is None:
        raise Rejected(f"login kind must be login, logout or failed, got {raw_kind!r}")
    seconds = as_int(required(doc, "Time"), "Time")
    if seconds <= 0:
        raise Rejected(f"field 'Time' must be a positive server time in seconds, got {seconds}")
    time = _server_time(seconds * 1000, info, "Time")
    time_ms = info.clock.to_utc_ms(seconds * 1000)
    return Login.trusted({
        "login_key": f"{PLATFORM}:{info.server.name}:{login}:{time_ms}:{kind}",
        "tenant": info.tenant,
        "platform": PLATFORM,
        "server": info.server.name,
        "login": login,
        "kind": kind,
        "ip": _ip(doc),
        "device": _text(doc, "ComputerID") or "",
        "session_id": _number_text(doc, "SessionID"),
        "client_type": _client_type(doc),
        "build": _number_text(doc, "Build"),
        "time": time,
        "version": event_version(env.timestamp_ms, "add"),
        "source": env.source,
    })


# -- mt5.ticks --------------------------------------------------------------------------------


def _tick_time(doc: dict[str, Any], info: ServerInfo) -> datetime:
    if _present(doc, "time_msc"):
        msc = as_int(doc["time_msc"], "time_msc")
        if msc != 0:
            return _server_time(msc, info, "time_msc")
    if not _present(doc, "time"):
        raise Rejected("missing field 'time_msc' (or 'time')")
    seconds = as_int(doc["time"], "time")
    if seconds <= 0:
        raise Rejected(f"field 'time' must be a positive server time in seconds, got {seconds}")
    return _server_time(seconds * 1000, info, "time")


def _price(doc: dict[str, Any], name: str, flags: int, flag: int) -> Decimal | None:
    """A side of the tick; 0 (or absent) without its flag means "not changed": None."""
    price = as_decimal(doc[name], name, PRICE) if _present(doc, name) else None
    if (price is None or price == 0) and not flags & flag:
        return None
    if price is None:
        raise Rejected(f"field {name!r} is flagged as changed but missing")
    return price


def read_mt5_tick(env: Envelope, router: Router) -> Quote | list[Quote]:
    """One `mt5.ticks` MqlTick -> a `Quote`; a tick that changes neither bid nor ask (a last
    price or volume only) has no quote to keep: an empty list."""
    info = router.server_of(env, PLATFORM)
    doc = decode_json_object(env.value, unwrap_answer=True)
    platform_symbol = _text(doc, "symbol", "Symbol")
    if platform_symbol is None:
        raise Rejected("missing field 'symbol'")
    flags = _count(doc, "flags", 2**64)
    bid = _price(doc, "bid", flags, TICK_FLAG_BID)
    ask = _price(doc, "ask", flags, TICK_FLAG_ASK)
    time = _tick_time(doc, info)
    if bid is None and ask is None:
        return []
    return Quote.trusted({
        "tenant": info.tenant,
        "platform": PLATFORM,
        "server": info.server.name,
        "symbol": canonical_symbol(platform_symbol),
        "platform_symbol": platform_symbol,
        "bid": bid,
        "ask": ask,
        "time": time,
        "source": env.source,
    })


READERS: dict[str, Callable[[Envelope, Router], Record | list[Quote]]] = {
    TOPIC_USERS: read_mt5_users,
    TOPIC_LOGINS: read_mt5_login,
    TOPIC_TICKS: read_mt5_tick,
}
"""Topic -> reader, for the registry."""
