"""Praxis cashier notifications (JSON POST) -> `BalanceOperation`s. Topic `psp.praxis`.

Signature
    Header ``GT-Authentication`` = hex SHA-384 of the concatenated values of ``merchant_id``,
    ``application_key``, ``timestamp``, ``customer.customer_token``, ``session.order_id``,
    ``transaction.tid``, ``transaction.currency``, ``transaction.amount``,
    ``transaction.conversion_rate``, ``transaction.processed_currency``,
    ``transaction.processed_amount``, then the merchant secret; absent or null values are
    skipped. ``timestamp`` (unix seconds) must be within the tolerance of now (default 3600 s,
    ``tolerance_s`` in the provider settings; Praxis re-sends unanswered notifications about
    every 5 minutes). When configured, ``merchant_id`` and ``application_key`` must match.
    Our answer is ``{"status": 0, "description": "Ok", "version", "timestamp"}`` signed the same
    way over ``status`` and ``timestamp`` (see `ack`).

Which trading account
    ``customer.customer_token`` is a Praxis hash of the customer's identity and can't name an
    account, so brokers put it in the order id they choose: ``session.order_id`` (the cashier
    session's order id, echoed on every notification and covered by the signature) reads
    ``<server>:<login>[:<reference>]``. ``session.cid`` (the broker's customer id) may carry
    ``<server>:<login>`` too; it is not signed, so it must agree with the order id and is used
    alone only with ``allow_unsigned_account: true``.

    Not signed by Praxis: ``transaction_status`` and ``transaction_type`` (and the card and
    customer details). A replay with an edited status is limited by the freshness check and
    the duplicate check; reconcile with Praxis' find-transaction for anything disputed.

Transaction and direction
    The transaction is ``transaction.tid``. ``transaction_type`` sale / authorization ->
    deposit (positive), payout -> withdrawal (negative), refund -> its own negative operation of
    kind ``refund`` (Praxis books a refund as a transaction of its own). Amounts are integer
    minor units of ``transaction.currency`` (ISO 4217 exponents; ``currency_exponents`` in the
    provider settings for others, e.g. crypto).

Statuses
    initialized, pending, pending_async, requested, authorized, in progress -> pending;
    approved -> approved; rejected, declined -> declined; cancelled/canceled -> cancelled;
    error -> failed; chargeback -> chargeback (plus a reversing ``:chargeback`` op);
    reversed (refund done at the PSP) -> refunded (plus a reversing ``:refund`` op);
    refund, partial_refund -> refunded without a reversing op, because the refund itself arrives
    as a ``refund`` transaction with its own amount. A notification without a transaction
    (an expired cashier session) books nothing.

Instrument
    Cards: BIN + last 4 + expiry from ``transaction.card`` (``card_number`` is masked by Praxis;
    a full number would be cut to BIN + last 4). Wallets: ``wallet.account_identifier``
    (an e-mail is lower-cased). Payer name: ``card.card_holder``, else the customer's names.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from typing import Any

import orjson

from connectors.fields import Rejected
from connectors.psp.common import (
    ISO_EXPONENTS,
    Account,
    Kind,
    Payment,
    PspContext,
    Routing,
    SignatureError,
    account_instrument,
    account_ref,
    build_ops,
    card_instrument,
    check_fresh,
    context,
    country2,
    currency_code,
    digits,
    env_time,
    equal,
    expiry_text,
    from_unix_s,
    header,
    map_status,
    maybe,
    method_from_name,
    minor_units,
    need,
    obj,
    parse_json_object,
    pick_account,
    require_secret,
    routing_from,
    text,
    tolerance,
)
from connectors.psp.settings import PspProviderSettings
from schemas.envelope import Envelope
from schemas.events import BalanceOperation

PROVIDER = "praxis"
TOPIC = "psp.praxis"
CONTENT_TYPE = "application/json"
SIGNATURE_HEADER = "GT-Authentication"
DEFAULT_TOLERANCE_S = 3600

SIGNED_FIELDS: tuple[tuple[str, ...], ...] = (
    ("merchant_id",), ("application_key",), ("timestamp",), ("customer", "customer_token"),
    ("session", "order_id"), ("transaction", "tid"), ("transaction", "currency"),
    ("transaction", "amount"), ("transaction", "conversion_rate"),
    ("transaction", "processed_currency"), ("transaction", "processed_amount"),
)

STATUSES = {
    "initialized": "pending", "pending": "pending", "pending_async": "pending",
    "requested": "pending", "authorized": "pending", "in progress": "pending",
    "in_progress": "pending", "approved": "approved", "rejected": "declined",
    "declined": "declined", "cancelled": "cancelled", "canceled": "cancelled",
    "error": "failed", "chargeback": "chargeback", "reversed": "refunded",
    "refund": "refunded", "partial_refund": "refunded",
}
BOOKED_ELSEWHERE = frozenset({"refund", "partial_refund"})
KINDS: dict[str, Kind] = {"sale": "deposit", "authorization": "deposit", "authorize": "deposit",
         "payout": "withdrawal", "refund": "refund"}


def _value(doc: Mapping[str, Any], path: tuple[str, ...]) -> str:
    node: Any = doc
    for part in path[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, dict):
        return ""
    return text(node, path[-1])


def signature(doc: Mapping[str, Any], secret: str) -> str:
    payload = "".join(_value(doc, path) for path in SIGNED_FIELDS) + secret
    return hashlib.sha384(payload.encode("utf-8")).hexdigest()


def verify(
    raw_body: bytes,
    headers: Mapping[str, str],
    secret: str,
    *,
    merchant_id: str = "",
    application_key: str = "",
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> None:
    """Raise SignatureError unless GT-Authentication matches and the timestamp is fresh."""
    require_secret(secret, PROVIDER)
    sig = header(headers, SIGNATURE_HEADER).strip()
    if not sig:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    doc = parse_json_object(raw_body)
    try:
        expected = signature(doc, secret)
    except Rejected:
        raise SignatureError("a signed field is not a scalar") from None
    if not equal(sig.lower(), expected):
        raise SignatureError(f"{SIGNATURE_HEADER} does not match")
    if merchant_id and not equal(_value(doc, ("merchant_id",)), merchant_id):
        raise SignatureError("merchant_id is not the configured merchant", "foreign_merchant")
    if application_key and not equal(_value(doc, ("application_key",)), application_key):
        raise SignatureError("application_key is not the configured application",
                             "foreign_merchant")
    session = obj(doc, "session") if isinstance(doc.get("session"), dict) else {}
    signed = maybe(lambda: account_ref(text(session, "order_id"), "session.order_id"))
    unsigned = maybe(lambda: account_ref(text(session, "cid"), "session.cid"))
    if signed and unsigned and (signed.server, signed.login) != (unsigned.server, unsigned.login):
        raise SignatureError("session.cid names another account than the signed order_id",
                             "tampered")
    stamp = _value(doc, ("timestamp",))
    if not digits(stamp) or len(stamp) > 12:
        raise SignatureError(f"timestamp {stamp[:20]!r} is not unix seconds")
    check_fresh(int(stamp), tolerance_s, time.time() if now is None else now, "timestamp")


def verify_for(raw_body: bytes, headers: Mapping[str, str], cfg: PspProviderSettings,
               secret: str, now: float | None = None) -> None:
    verify(raw_body, headers, secret, merchant_id=cfg.merchant_id,
           application_key=cfg.application_key,
           tolerance_s=tolerance(cfg, DEFAULT_TOLERANCE_S), now=now)


def ack(raw_body: bytes, secret: str, now: float) -> tuple[bytes, str, dict[str, str]]:
    """The answer Praxis expects: status 0, signed over status + timestamp."""
    version = "1.3"
    try:
        doc = parse_json_object(raw_body)
        version = text(doc, "version") or version
    except Rejected:
        pass
    stamp = int(now)
    body = orjson.dumps({"status": 0, "description": "Ok", "version": version,
                         "timestamp": stamp})
    sig = hashlib.sha384(f"0{stamp}{secret}".encode()).hexdigest()
    return body, "application/json; charset=utf-8", {SIGNATURE_HEADER: sig}


def _session_id(doc: Mapping[str, Any]) -> str:
    session = obj(doc, "session")
    return text(session, "order_id") or text(session, "auth_token")


def dedupe_id(raw_body: bytes, headers: Mapping[str, str]) -> str:
    doc = parse_json_object(raw_body)
    tx = obj(doc, "transaction")
    if tx:
        return f"{need(tx, 'tid')}:{need(tx, 'transaction_status')}"
    session = obj(doc, "session")
    return f"session:{need(session, 'order_id')}:{text(session, 'session_status')}"


def _account(doc: Mapping[str, Any], allow_unsigned: bool) -> Account:
    session = obj(doc, "session")
    cid = text(session, "cid")
    unsigned = maybe(lambda: account_ref(cid, "session.cid")) if cid else None
    return pick_account(maybe(lambda: account_ref(text(session, "order_id"),
                                                  "session.order_id")),
                        unsigned, allow_unsigned, "session.order_id", "session.cid", "Praxis")


def routing(raw_body: bytes, headers: Mapping[str, str]) -> Routing:
    doc = parse_json_object(raw_body)
    tx = obj(doc, "transaction")
    txn = text(tx, "tid") or _session_id(doc)
    if not txn:
        raise Rejected("neither transaction.tid nor session.order_id is present")
    return routing_from(txn, lambda: _account(doc, True))


def read_praxis(env: Envelope, settings: object) -> list[BalanceOperation]:
    """One `psp.praxis` message -> its operations. Raises Rejected with the reason."""
    ctx: PspContext = context(settings)
    cfg = ctx.provider(PROVIDER)
    doc = parse_json_object(env.value)
    tx = obj(doc, "transaction")
    if not tx:
        return []  # an expired cashier session: no money moved
    tid = need(tx, "tid")
    raw_status = need(tx, "transaction_status").strip().lower()
    status = map_status(STATUSES, raw_status, "Praxis", "transaction_status")
    raw_type = need(tx, "transaction_type").strip().lower()
    kind = KINDS.get(raw_type)
    if kind is None:
        raise Rejected(f"Praxis transaction_type {raw_type!r} is not sale, authorization, "
                       "payout or refund")
    currency = currency_code(need(tx, "currency"), "transaction.currency")
    amount = minor_units(tx.get("amount"), "transaction.amount", currency,
                         {**ISO_EXPONENTS, **cfg.currency_exponents})
    card = obj(tx, "card") or obj(tx, "card_data")
    wallet = obj(tx, "wallet") or obj(tx, "wallet_data")
    pm = text(tx, "payment_method")
    if card:
        method = "card"
        instrument = card_instrument(text(card, "card_number"),
                                     expiry_text(text(card, "card_exp")))
        holder = text(card, "card_holder")
    else:
        method = method_from_name(pm, "ewallet" if wallet else "")
        instrument = account_instrument(method or "ewallet",
                                        text(wallet, "account_identifier")) if wallet else ""
        holder = ""
    customer = obj(doc, "customer")
    if not holder:
        holder = " ".join(x for x in (text(customer, "first_name").strip(),
                                      text(customer, "last_name").strip()) if x)
    stamp = doc.get("timestamp")
    payment = Payment(
        provider=PROVIDER, txn_id=tid, kind=kind,
        amount=amount, currency=currency, status=status, account=_account(doc, cfg.allow_unsigned_account),
        time=from_unix_s(stamp, "timestamp") if stamp not in (None, "") else env_time(env),
        method=method, payer_name=holder, country=country2(text(customer, "country")),
        instrument=instrument, comment=text(obj(doc, "session"), "order_id"),
        book_reversal=raw_status not in BOOKED_ELSEWHERE,
    )
    return build_ops(env, ctx, payment)
