"""MetaTrader 4 (Manager API records as JSON) -> canonical records.

Topics and readers (headers: `server`, the MT4 server name; values may be JSON numbers or
strings; unknown extra fields are ignored):

- `mt4.trades` -> `read_mt4_trade`: a TradeRecord -> a list of `Deal`s or one
  `BalanceOperation`. The transaction is the `event` header (add / update / delete) or, when
  that is absent, the `transaction` header with the Manager API code ("0" ADD, "1" DELETE,
  "2" UPDATE).
- `mt4.users` -> `read_mt4_users`, which dispatches on the record:
  - a MarginLevel record (the Manager API's margin pumping: login, group, leverage, updated,
    balance, equity, volume, margin, margin_free, margin_level, margin_type, level_type) ->
    `read_mt4_margin_level`: `AccountUpdate` "account_state" with balance, equity, margin,
    margin_free and margin_level (percent, as MT4 reports it);
  - anything else is a UserRecord -> `read_mt4_user`: `AccountUpdate` (user_add / user_update
    / user_delete). A UserRecord has balance and credit but no equity or margin (only the
    previous day's `prevequity`, which is not today's equity and is not read).
- `mt4.logins` -> `read_mt4_online`: an online record -> `Login`.
- `mt4.ticks` -> `read_mt4_tick`: a TickInfo -> `Quote`.

Every MT4 time (open_time, close_time, regdate, lastdate, online time, tick ctm/time) is in
the trade *server's* zone; it becomes UTC through the server's configured `timezone` (DST-aware)
or, without one, its fixed `utc_offset_minutes` (connectors/server_time.py).

From positions to deals
-----------------------
MT4 keeps one TradeRecord per position: it is added when opened (close_time 0), then
updated in place when closed. Canonical deals are per fill, as on MT5, so that exposure and
P&L logic downstream is the same for every platform. A cmd 0/1 record therefore maps to:

- open (close_time 0): one deal `mt4:{server}:{order}:in` -- side buy (cmd 0) / sell (cmd 1),
  lots = volume / 100, price open_price, time open_time, position_id = order;
- closed (close_time > 0): the same `:in` deal again (so a replay, or a closed record seen
  before its open, still yields the opening fill) plus `mt4:{server}:{order}:out` with the
  opposite side, price close_price, time close_time, and the record's profit, storage
  (-> swap), commission and taxes (-> fee). The `:in` deal carries no money: everything the
  position realised is on its `:out` deal, so summing deal profits gives realised P&L.

Every deal of one message carries that message's version, so storage keeping the highest
version per key always holds the record's latest state.

Partial close. Closing 0.40 of a 1.00 lot order #100 makes MT4 (1) update #100 to the
*closed part*: volume 40, close_time/close_price/profit set, comment "to #101", and (2) add
a new open order #101 for the remainder: volume 60, the original open_time and open_price,
comment "from #100". In deals:

    #100 open  1.00        -> 100:in +1.00
    #100 closed part 0.40  -> 100:in +0.40 (replaces +1.00: newer version), 100:out -0.40
    #101 "from #100" 0.60  -> 101:in +0.60 (own key, own position_id 101)
    #101 closed 0.60       -> 101:in +0.60, 101:out -0.60
                              latest per key: +0.40 -0.40 +0.60 -0.60 = 0

Because the remainder keeps the original open_time, a point-in-time rebuild still sees
0.40 + 0.60 = 1.00 lots open between the open and the partial close. Realised profit is
profit(#100 closed part) + profit(#101). Each link of a chain (#101 -> #102 -> ...) is its
own position_id; the "to #" / "from #" comments keep the link. While the two messages of one
partial close are in flight, exposure is briefly off by the remainder (one arrived, the
other not yet); it is exact once both are in.

Deletes. The delete transaction, or a record in state DELETED, yields the same records as
tombstones (is_deleted, event "delete", so the version ranks above an update in the same
millisecond). Pending orders (cmd 2..5) are not fills and yield nothing; when one triggers,
MT4 updates the record to cmd 0/1 and the open deal appears then. Balance (cmd 6) and
credit (cmd 7) records become balance operations with the signed amount from `profit`.

Contract size: TradeRecord has none; it comes from `schemas.contract_sizes`.

Reason: the TradeRecord reason (client, expert, dealer, ...). MT4 marks closes by stop loss,
take profit and stop out only in the comment ("[sl]", "[tp]", "so: ..."): the `:out` deal
of such a record gets reason sl / tp / so, like MT5 out deals.
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
    PRICE_LIMIT,
    Rejected,
    as_decimal,
    as_id,
    as_int,
    as_login,
    decode_json_object,
    from_epoch_ms,
    mul8,
    optional_decimal,
    optional_str,
    required,
    server_event_time,
)
from connectors.routing import Router, ServerInfo
from schemas.contract_sizes import contract_size_for
from schemas.envelope import Envelope
from schemas.events import (
    AccountUpdate,
    BalanceOperation,
    Deal,
    Entry,
    Login,
    Quote,
    Side,
    account_update,
    event_version,
)
from schemas.mt4 import (
    BALANCE_COMMANDS,
    CLOSED_STATES,
    PENDING_COMMANDS,
    POSITION_COMMANDS,
    TRADE_COMMANDS,
    TRADE_REASONS,
    TRADE_STATES,
    TRANSACTIONS,
    TS_DELETED,
    VOLUME_SCALE,
)
from schemas.symbols import canonical_symbol

PLATFORM: Final = "mt4"
TOPIC_TRADES = "mt4.trades"
TOPIC_USERS = "mt4.users"
TOPIC_LOGINS = "mt4.logins"
TOPIC_TICKS = "mt4.ticks"
ZERO = Decimal(0)

Record = Deal | BalanceOperation | Login | Quote | AccountUpdate

LoginKind = Literal["login", "logout", "failed"]

_OPPOSITE: dict[Side, Side] = {"buy": "sell", "sell": "buy"}
_LOGIN_KINDS: dict[str, LoginKind] = {"login": "login", "logout": "logout", "failed": "failed"}
_USER_EVENTS = {"add": "user_add", "update": "user_update", "delete": "user_delete"}
# Epoch values at or above this are milliseconds (1e11 s is the year 5138; 1e11 ms is 1973).
_MS_THRESHOLD = 10**11


# -- shared reading -------------------------------------------------------------------------


def transaction_event(env: Envelope) -> str:
    """add / update / delete from the `event` header, else the `transaction` header (0/1/2)."""
    if env.headers.get("event"):
        return Router.deal_event(env)
    code = env.headers.get("transaction")
    if code is None or code == "":
        return "add"
    event = TRANSACTIONS.get(code.strip())
    if event is None:
        raise Rejected(
            f"'transaction' header must be 0 (add), 1 (delete) or 2 (update), got {code!r}",
            "route",
        )
    return event


def _int_or_zero(doc: dict[str, Any], name: str) -> int:
    value = doc.get(name)
    if value is None or value == "":
        return 0
    return as_int(value, name)


def _login(doc: dict[str, Any]) -> int:
    return as_login(required(doc, "login"), "login")


def _seconds(doc: dict[str, Any], name: str, *, needed: bool) -> int:
    """A server-time field in seconds: 0 when absent (unless needed), never negative."""
    seconds = as_int(required(doc, name), name) if needed else _int_or_zero(doc, name)
    if seconds < 0 or (needed and seconds == 0):
        raise Rejected(f"field {name!r} must be a positive server time in seconds, got {seconds}")
    return seconds


def _utc(seconds: int, info: ServerInfo, name: str) -> datetime:
    """A server-time field -> UTC, if plausible (fields.plausible_times)."""
    return server_event_time(seconds * 1000, name, info.clock)


# -- mt4.trades -----------------------------------------------------------------------------


def _close_reason(comment: str, reason: str) -> str:
    text = comment.strip().lower()
    if "[sl]" in text:
        return "sl"
    if "[tp]" in text:
        return "tp"
    if text.startswith("so:"):
        return "so"
    return reason


def _deals(doc: dict[str, Any], cmd: int, state: int, common: dict[str, Any]) -> list[Record]:
    info: ServerInfo = common["info"]
    order = common["order"]
    platform_symbol = str(required(doc, "symbol")).strip()
    if not platform_symbol:
        raise Rejected("missing field 'symbol'")
    volume = as_int(required(doc, "volume"), "volume")
    lots = Decimal(volume).scaleb(-VOLUME_SCALE)
    if not 0 < lots < PRICE_LIMIT:
        raise Rejected(f"a trade needs a positive volume in range, got {volume} (1/100 lot)")
    open_price = as_decimal(required(doc, "open_price"), "open_price", PRICE)
    if open_price < 0:
        raise Rejected(f"field 'open_price' must not be negative, got {open_price}")
    open_time = _seconds(doc, "open_time", needed=True)
    # close_time decides whether the position is closed: it is what MT4 sets on closing.
    close_time = _seconds(doc, "close_time", needed=False)
    if close_time == 0 and state in CLOSED_STATES:
        raise Rejected(
            f"state {TRADE_STATES[state]} but close_time is 0: the close cannot be placed in time"
        )
    contract_size = contract_size_for(platform_symbol)
    units = mul8(lots, contract_size)
    comment = optional_str(doc, "comment")
    reason_code = _int_or_zero(doc, "reason")
    reason = TRADE_REASONS.get(reason_code, f"unknown_{reason_code}")
    deleted = common["event"] == "delete"

    # Read once, before any deal is built: a bad value rejects the whole record.
    money_fields = {name: optional_decimal(doc, name)
                    for name in ("profit", "storage", "commission", "taxes")}
    open_at = _utc(open_time, info, "open_time")
    close_at = _utc(close_time, info, "close_time") if close_time > 0 else open_at

    def deal(entry: Entry, side: Side, price: Decimal, at: datetime, money: bool, why: str) -> Deal:
        return Deal.from_checked(
            deal_key=f"mt4:{info.server.name}:{order}:{entry}",
            tenant=info.tenant,
            platform=PLATFORM,
            server=info.server.name,
            login=common["login"],
            deal_id=f"{order}:{entry}",
            order_id=str(order),
            position_id=str(order),
            symbol=canonical_symbol(platform_symbol),
            platform_symbol=platform_symbol,
            side=side,
            entry=entry,
            lots=lots,
            signed_lots=lots if side == "buy" else -lots,
            contract_size=contract_size,
            units=units,
            price=price,
            notional=mul8(units, price),
            profit=money_fields["profit"] if money else ZERO,
            swap=money_fields["storage"] if money else ZERO,
            commission=money_fields["commission"] if money else ZERO,
            fee=money_fields["taxes"] if money else ZERO,
            currency=info.server.currency,
            reason=why,
            canceled=False,
            comment=comment,
            external_id="",
            time=at,
            event=common["event"],
            version=common["version"],
            is_deleted=deleted,
            source=common["source"],
        )

    side = POSITION_COMMANDS[cmd]
    deals: list[Record] = [deal("in", side, open_price, open_at, False, reason)]
    if close_time > 0:
        close_price = as_decimal(required(doc, "close_price"), "close_price", PRICE)
        if close_price < 0:
            raise Rejected(f"field 'close_price' must not be negative, got {close_price}")
        deals.append(
            deal("out", _OPPOSITE[side], close_price, close_at, True, _close_reason(comment, reason))
        )
    return deals


def _balance(doc: dict[str, Any], cmd: int, common: dict[str, Any]) -> BalanceOperation:
    info: ServerInfo = common["info"]
    order = common["order"]
    return BalanceOperation.from_checked(
        op_key=f"mt4:{info.server.name}:{order}",
        tenant=info.tenant,
        platform=PLATFORM,
        server=info.server.name,
        login=common["login"],
        op_id=str(order),
        kind=BALANCE_COMMANDS[cmd],
        amount=as_decimal(required(doc, "profit"), "profit"),
        currency=info.server.currency,
        # status, provider, method, payer, instrument, country: the model's defaults
        comment=optional_str(doc, "comment"),
        time=_utc(_seconds(doc, "open_time", needed=True), info, "open_time"),
        event=common["event"],
        version=common["version"],
        is_deleted=common["event"] == "delete",
        source=common["source"],
    )


def read_mt4_trade(env: Envelope, router: Router) -> list[Record]:
    """One `mt4.trades` TradeRecord -> its deals (0, 1 or 2) or balance operation."""
    event = transaction_event(env)
    info = router.server_of(env, PLATFORM)
    doc = decode_json_object(env.value)
    order = as_id(required(doc, "order"), "order", end=2**63)
    login = _login(doc)
    cmd = as_int(required(doc, "cmd"), "cmd")
    if cmd not in TRADE_COMMANDS:
        raise Rejected(f"unknown cmd {cmd} (MT4 knows 0..7: buy, sell, 4 pending types, balance, credit)")
    state = _int_or_zero(doc, "state")  # unknown states are accepted: close_time decides
    if cmd in PENDING_COMMANDS:
        return []
    if state == TS_DELETED:
        event = "delete"
    common = {
        "info": info,
        "order": order,
        "login": login,
        "event": event,
        "version": event_version(env.timestamp_ms, event),
        "source": env.source,
    }
    if cmd in BALANCE_COMMANDS:
        return [_balance(doc, cmd, common)]
    return _deals(doc, cmd, state, common)


# -- mt4.users ------------------------------------------------------------------------------


def _text(doc: dict[str, Any], name: str) -> str | None:
    """A text field; absent or empty means the platform says nothing about it."""
    value = doc.get(name)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _country(doc: dict[str, Any]) -> str | None:
    # MT4 keeps the country as free text: a code or a name as the dealer typed it ("Iran",
    # "Syrian Arab Republic", "DEU"), read as ISO 3166-1 alpha-2; what no country is says nothing.
    text = _text(doc, "country")
    if text is not None and len(text) == 2 and text.isascii() and text.isalpha():
        return text.upper()
    return country_code(text) if text is not None else None


def _optional_decimal_or_none(doc: dict[str, Any], name: str) -> Decimal | None:
    value = doc.get(name)
    if value is None or value == "":
        return None
    return as_decimal(value, name)


def read_mt4_user(env: Envelope, router: Router) -> AccountUpdate:
    """One `mt4.users` UserRecord -> what the platform says about the account."""
    event = transaction_event(env)
    info = router.server_of(env, PLATFORM)
    return _user(decode_json_object(env.value), env, info, event)


def _user(doc: dict[str, Any], env: Envelope, info: ServerInfo, event: str) -> AccountUpdate:
    login = _login(doc)
    leverage: int | None = None
    if doc.get("leverage") not in (None, ""):
        # the accounts table stores it as UInt32
        leverage = as_id(doc["leverage"], "leverage", zero=True, end=2**32) or None
    agent = _int_or_zero(doc, "agent_account")
    if not 0 <= agent < 2**63:
        raise Rejected(f"field 'agent_account' must be a login, got {agent}")
    regdate = _seconds(doc, "regdate", needed=False)
    lastdate = _seconds(doc, "lastdate", needed=False)
    status: str | None = None
    if event == "delete":
        status = "closed"
    elif doc.get("enable") not in (None, ""):
        status = "active" if as_int(doc["enable"], "enable") else "disabled"
    return account_update(
        platform=PLATFORM, server=info.server.name, login=login, tenant=info.tenant,
        event=_USER_EVENTS[event],
        name=_text(doc, "name"),
        group=_text(doc, "group"),
        country=_country(doc),
        email=_text(doc, "email"),
        currency=info.server.currency,
        leverage=leverage,
        agent=str(agent) if agent else None,
        registration=_utc(regdate, info, "regdate") if regdate else None,
        last_access=_utc(lastdate, info, "lastdate") if lastdate else None,
        status=status,
        balance=_optional_decimal_or_none(doc, "balance"),
        credit=_optional_decimal_or_none(doc, "credit"),
        time=from_epoch_ms(env.timestamp_ms),
        version=event_version(env.timestamp_ms, event),
        source=env.source,
    )


# MarginLevel fields a UserRecord never has: their presence names the record.
_MARGIN_FIELDS: Final = ("equity", "margin", "margin_free", "margin_level")


def is_margin_level(doc: dict[str, Any]) -> bool:
    """A MarginLevel record (trading state) rather than a UserRecord."""
    return any(name in doc for name in _MARGIN_FIELDS)


def _margin_level(doc: dict[str, Any], env: Envelope, info: ServerInfo) -> AccountUpdate:
    login = _login(doc)
    return account_update(
        platform=PLATFORM, server=info.server.name, login=login, tenant=info.tenant,
        event="account_state",
        balance=_optional_decimal_or_none(doc, "balance"),
        # a MarginLevel has no credit: the UserRecord's stands
        equity=_optional_decimal_or_none(doc, "equity"),
        margin=_optional_decimal_or_none(doc, "margin"),
        margin_free=_optional_decimal_or_none(doc, "margin_free"),
        margin_level=_optional_decimal_or_none(doc, "margin_level"),
        time=from_epoch_ms(env.timestamp_ms),
        # a snapshot ranks with updates: within one millisecond the later message wins
        version=event_version(env.timestamp_ms, "update"),
        source=env.source,
    )


def read_mt4_margin_level(env: Envelope, router: Router) -> AccountUpdate:
    """One MarginLevel record on `mt4.users` -> the account's balance, equity and margin."""
    transaction_event(env)  # checked, but a snapshot is a snapshot whatever the header says
    info = router.server_of(env, PLATFORM)
    return _margin_level(decode_json_object(env.value), env, info)


def read_mt4_users(env: Envelope, router: Router) -> AccountUpdate:
    """The `mt4.users` reader: a MarginLevel becomes an account state, anything else a user."""
    event = transaction_event(env)
    info = router.server_of(env, PLATFORM)
    doc = decode_json_object(env.value)
    if is_margin_level(doc):
        return _margin_level(doc, env, info)
    return _user(doc, env, info, event)


# -- mt4.logins -----------------------------------------------------------------------------


def _ip(value: Any) -> str:
    """The client address: a dotted (or IPv6) string, or ConOnline's 32-bit integer."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        text = value.strip()
        if text[:2].lower() == "0x":
            try:
                value = int(text, 16)
            except ValueError:
                raise Rejected(f"field 'ip': {value!r} is not a hexadecimal integer") from None
        elif not text.isdigit():
            try:
                return str(ipaddress.ip_address(text))
            except ValueError:
                raise Rejected(
                    f"field 'ip': {value!r} is neither an IP address nor an integer"
                ) from None
        else:
            value = int(text)
    number = as_int(value, "ip")
    if not -(2**31) <= number < 2**32:
        raise Rejected(f"field 'ip': {number} does not fit in 32 bits")
    # ConOnline.ip is an in_addr: the four octets in network order in memory (first octet at
    # the lowest address), read as an integer on little-endian x86 -- so the FIRST octet is
    # the LOWEST byte of the number: 0x0100007F is 7F 00 00 01 = 127.0.0.1. A negative value
    # is the same 32 bits read as a signed int.
    return str(ipaddress.IPv4Address((number & 0xFFFFFFFF).to_bytes(4, "little")))


def read_mt4_online(env: Envelope, router: Router) -> Login:
    """One `mt4.logins` online record -> a `Login` (kind from the record, else the header)."""
    info = router.server_of(env, PLATFORM)
    doc = decode_json_object(env.value)
    login = _login(doc)
    raw_kind = doc.get("kind") or env.headers.get("event") or "login"
    kind = _LOGIN_KINDS.get(str(raw_kind).strip().lower())
    if kind is None:
        raise Rejected(f"login kind must be login, logout or failed, got {raw_kind!r}")
    seconds = _seconds(doc, "time", needed=True)
    time = _utc(seconds, info, "time")
    time_ms = info.clock.to_utc_ms(seconds * 1000)
    counter = doc.get("counter")
    session_id = "" if counter in (None, "") else str(as_id(counter, "counter", zero=True))
    return Login.from_checked(
        login_key=f"mt4:{info.server.name}:{login}:{time_ms}:{kind}",
        tenant=info.tenant,
        platform=PLATFORM,
        server=info.server.name,
        login=login,
        kind=kind,
        ip=_ip(doc.get("ip")),
        device="",
        session_id=session_id,
        client_type="",
        build="",
        time=time,
        version=event_version(env.timestamp_ms, "add"),
        source=env.source,
    )


# -- mt4.ticks ------------------------------------------------------------------------------


def _tick_time(doc: dict[str, Any], info: ServerInfo) -> datetime:
    ctm = _int_or_zero(doc, "ctm")
    if ctm < 0:
        raise Rejected(f"field 'ctm' must not be negative, got {ctm}")
    if ctm:
        # ctm is milliseconds when the bridge sends them; the Manager API's own ctm is seconds.
        ms = ctm if ctm >= _MS_THRESHOLD else ctm * 1000
        return server_event_time(ms, "ctm", info.clock)
    return _utc(_seconds(doc, "time", needed=True), info, "time")


def read_mt4_tick(env: Envelope, router: Router) -> Quote:
    """One `mt4.ticks` TickInfo -> a `Quote` (MT4 always sends both sides)."""
    info = router.server_of(env, PLATFORM)
    doc = decode_json_object(env.value)
    platform_symbol = str(required(doc, "symbol")).strip()
    if not platform_symbol:
        raise Rejected("missing field 'symbol'")
    return Quote.from_checked(
        tenant=info.tenant,
        platform=PLATFORM,
        server=info.server.name,
        symbol=canonical_symbol(platform_symbol),
        platform_symbol=platform_symbol,
        bid=as_decimal(required(doc, "bid"), "bid", PRICE),
        ask=as_decimal(required(doc, "ask"), "ask", PRICE),
        time=_tick_time(doc, info),
        source=env.source,
    )


READERS: dict[str, Callable[[Envelope, Router], Record | list[Record]]] = {
    TOPIC_TRADES: read_mt4_trade,
    TOPIC_USERS: read_mt4_users,
    TOPIC_LOGINS: read_mt4_online,
    TOPIC_TICKS: read_mt4_tick,
}
"""Topic -> reader, for the registry."""
