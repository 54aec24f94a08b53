"""CoinsPaid (crypto processing) callbacks (JSON POST) -> `BalanceOperation`s.
Topic `psp.coinspaid`.

Signature
    ``X-Processing-Signature`` = hex HMAC-SHA512(secret key, raw body), and
    ``X-Processing-Key`` must equal the configured public key. The body is checked byte for
    byte, before it is parsed. CoinsPaid sends no timestamp, so there is no freshness check:
    the replay guard (`connectors.psp.replay_guard`) accepts an ``id:status`` only within its
    window of first sight, kept on disk across restarts.

Which trading account
    Deposits arrive on an address the broker took with ``/addresses/take`` giving a
    ``foreign_id``: brokers take one address per account with ``foreign_id =
    "<server>:<login>"``, echoed as ``crypto_address.foreign_id``. Withdrawals are requested with
    the broker's own ``foreign_id = "<server>:<login>:<withdrawal reference>"``, echoed at the top
    level. Either may be given, the top-level one wins; ``end_user_reference`` is the fallback.

Transaction and direction
    The transaction is CoinsPaid's ``id``; the same callback can arrive more than once.
    ``deposit`` / ``deposit_exchange`` -> deposit (positive) of ``currency_received``
    (what reached the broker's balance, before CoinsPaid fees); ``withdrawal`` /
    ``withdrawal_exchange`` -> withdrawal (negative) of ``currency_sent`` (what left the
    broker's balance). Amounts are decimal strings. Other types are rejected.

Statuses
    not_confirmed, pending, processing -> pending; confirmed -> approved; cancelled ->
    cancelled; declined -> declined; error / failed -> failed.

Instrument
    The crypto address (``crypto_address.address``: the customer's own deposit address, or
    the withdrawal's destination); EVM (0x) addresses are lower-cased.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from connectors.fields import Rejected
from connectors.psp.common import (
    Kind,
    Payment,
    PspAccount,
    PspContext,
    Routing,
    SignatureError,
    account_ref,
    ack_ok,
    build_ops,
    context,
    crypto_instrument,
    currency_code,
    env_time,
    equal,
    header,
    map_status,
    need,
    need_money,
    obj,
    parse_json_object,
    require_secret,
    routing_from,
    text,
)
from connectors.psp.settings import PspProviderSettings
from schemas.envelope import Envelope
from schemas.events import BalanceOperation

PROVIDER = "coinspaid"
TOPIC = "psp.coinspaid"
CONTENT_TYPE = "application/json"
KEY_HEADER = "X-Processing-Key"
SIGNATURE_HEADER = "X-Processing-Signature"

STATUSES = {"not_confirmed": "pending", "pending": "pending", "processing": "pending",
            "confirmed": "approved", "cancelled": "cancelled", "canceled": "cancelled",
            "declined": "declined", "error": "failed", "failed": "failed"}
KINDS: dict[str, Kind] = {"deposit": "deposit", "deposit_exchange": "deposit",
                          "withdrawal": "withdrawal", "withdrawal_exchange": "withdrawal"}


def signature(raw_body: bytes, secret: str) -> str:
    return hmac.new(secret.encode("utf-8"), raw_body, hashlib.sha512).hexdigest()


def verify(raw_body: bytes, headers: Mapping[str, str], secret: str, *, key: str) -> None:
    """Raise SignatureError unless the key is ours and the body is signed with our secret."""
    require_secret(secret, PROVIDER)
    if not key:
        raise SignatureError("no CoinsPaid public key is configured", "not_configured")
    sent_key = header(headers, KEY_HEADER).strip()
    if not sent_key:
        raise SignatureError(f"missing {KEY_HEADER} header")
    if not equal(sent_key, key):
        raise SignatureError(f"{KEY_HEADER} is not the configured key", "foreign_merchant")
    sig = header(headers, SIGNATURE_HEADER).strip()
    if not sig:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    if not equal(sig.lower(), signature(raw_body, secret)):
        raise SignatureError(f"{SIGNATURE_HEADER} does not match the body")


def verify_for(raw_body: bytes, headers: Mapping[str, str], cfg: PspProviderSettings,
               secret: str, now: float | None = None) -> None:
    verify(raw_body, headers, secret, key=cfg.key)


def replay_id(raw_body: bytes, headers: Mapping[str, str]) -> tuple[str, bool]:
    """id + status: CoinsPaid signs no time, so only the replay window stops an old callback.
    The whole body is signed, so a re-sent callback with other content is still genuine."""
    doc = parse_json_object(raw_body)
    return f"{need(doc, 'id')}:{need(doc, 'status')}", False


ack = ack_ok  # CoinsPaid only needs an HTTP 200


def dedupe_id(raw_body: bytes, headers: Mapping[str, str]) -> str:
    doc = parse_json_object(raw_body)
    return f"{need(doc, 'id')}:{need(doc, 'status')}"


def _account(doc: Mapping[str, Any]) -> PspAccount:
    for where, value in (("foreign_id", text(doc, "foreign_id")),
                         ("crypto_address.foreign_id",
                          text(obj(doc, "crypto_address"), "foreign_id")),
                         ("end_user_reference", text(doc, "end_user_reference"))):
        if value:
            return account_ref(value, where)
    raise Rejected("no trading account: neither foreign_id nor crypto_address.foreign_id "
                   "is set ('<server>:<login>[:<reference>]')", "route")


def routing(raw_body: bytes, headers: Mapping[str, str]) -> Routing:
    doc = parse_json_object(raw_body)
    return routing_from(need(doc, "id"), lambda: _account(doc))


def read_coinspaid(env: Envelope, settings: object) -> list[BalanceOperation]:
    """One `psp.coinspaid` message -> its operations. Raises Rejected with the reason."""
    ctx: PspContext = context(settings)
    ctx.provider(PROVIDER)
    doc = parse_json_object(env.value)
    txn = need(doc, "id")
    status = map_status(STATUSES, need(doc, "status").strip().lower(), "CoinsPaid", "status")
    raw_type = need(doc, "type").strip().lower()
    kind = KINDS.get(raw_type)
    if kind is None:
        raise Rejected(f"CoinsPaid callback type {raw_type!r} moves no client money "
                       f"(known: {', '.join(KINDS)})")
    side = "currency_received" if kind == "deposit" else "currency_sent"
    block = obj(doc, side)
    amount = need_money(block, "amount", f"{side}.amount")
    currency = currency_code(need(block, "currency"), f"{side}.currency")
    address = obj(doc, "crypto_address")
    payment = Payment(
        provider=PROVIDER, txn_id=txn, kind=kind, amount=amount, currency=currency,
        status=status, account=_account(doc), time=env_time(env), method="crypto",
        instrument=crypto_instrument(text(address, "address")),
        comment=text(doc, "foreign_id") or text(address, "foreign_id"),
    )
    return build_ops(env, ctx, payment)
