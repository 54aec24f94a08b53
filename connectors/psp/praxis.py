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
    ``<server>:<login>:<reference>``, and must not end in a digit: the signed concatenation
    puts ``transaction.tid`` (all digits) right after it, so digits moved from one to the
    other would otherwise keep the signature. Every signed field has a pinned format (see
    `check_signed_formats`); ``merchant_id`` and ``application_key`` must be configured.
    ``session.cid`` (the broker's customer id) may carry ``<server>:<login>`` too; it is not
    signed, so it must agree with the order id and is never used alone.

    Not signed by Praxis: ``transaction_status`` and ``transaction_type`` (and the card and
    customer details). The type must agree with the signed order id's direction (a payout's
    reference starts with ``payout_prefix``); the replay guard makes the first body seen under
    a signature binding, so an edited copy is refused. Confirm approvals through Praxis'
    find-transaction where it matters (see docs/payments.md, Known limits).

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
    as a ``refund`` transaction with its own amount. A notification whose ``transaction`` is
    null (an expired cashier session) books nothing; one without ``transaction`` is refused.

Instrument
    Cards: BIN + last 4 + expiry from ``transaction.card`` (``card_number`` is masked by Praxis;
    a full number would be cut to BIN + last 4). Wallets: ``wallet.account_identifier``
    (an e-mail is lower-cased). Payer name: ``card.card_holder``, else the customer's names.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Mapping
from typing import Any

import orjson

from connectors.fields import Rejected
from connectors.psp.common import (
    ISO_EXPONENTS,
    Kind,
    Payment,
    PspAccount,
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
    equal,
    expiry_text,
    from_unix_s,
    header,
    is_payout_ref,
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
    signed_account,
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


_SIG = re.compile(r"[0-9A-Fa-f]{96}")
_TIMESTAMP = re.compile(r"[0-9]{10}")  # unix seconds, 2001-2286: a fixed width
_TOKEN = re.compile(r"[0-9A-Fa-f]{32}")  # customer_token: Praxis' 32-hex hash
_TID = re.compile(r"[1-9][0-9]{0,19}")
_MINOR = re.compile(r"0|[1-9][0-9]{0,19}")
_CURRENCY = re.compile(r"[A-Z]{3,10}")  # letters only: digits would blur tid|currency|amount
_RATE = re.compile(r"(?:0|[1-9][0-9]{0,11})(?:\.[0-9]{1,20})?")
_ORDER = re.compile(r"[^\x00-\x1f\x7f]{1,50}")


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


def _integer(node: Mapping[str, Any], name: str, pattern: re.Pattern[str], label: str) -> str:
    """An integer field as Praxis sends it (a JSON integer, or its digits in a string)."""
    value = node.get(name)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise SignatureError(f"{label} must be an integer, got {type(value).__name__}")
    printed = str(value)
    if not pattern.fullmatch(printed):
        raise SignatureError(f"{label} {printed[:24]!r} is not in its fixed format")
    return printed


def _string(node: Mapping[str, Any], name: str, pattern: re.Pattern[str], label: str) -> str:
    value = node.get(name)
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise SignatureError(f"{label} {str(value)[:60]!r} is not in its fixed format")
    return value


def check_signed_formats(doc: Mapping[str, Any], merchant_id: str, application_key: str,
                         payout_prefix: str) -> None:
    """SignatureError unless every field of the signed concatenation has a format that pins
    its boundaries, so characters moved from one field to the next can't keep the signature:
    merchant_id and application_key are the configured ones (a fixed prefix), timestamp has
    10 digits, customer_token 32 hex, session.order_id reads '<server>:<login>:<reference>'
    and does not end in a digit (transaction.tid, all digits, follows it), currency and
    processed_currency are letters, amounts plain integers. The unsigned transaction_type
    must agree with the signed order id's direction (payout references start with the payout
    prefix)."""
    if not merchant_id or not application_key:
        raise SignatureError("Praxis merchant_id and application_key must be configured: they "
                             "are the fixed start of the signed concatenation", "not_configured")
    if not equal(_value(doc, ("merchant_id",)), merchant_id):
        raise SignatureError("merchant_id is not the configured merchant", "foreign_merchant")
    if not equal(_value(doc, ("application_key",)), application_key):
        raise SignatureError("application_key is not the configured application",
                             "foreign_merchant")
    _integer(doc, "timestamp", _TIMESTAMP, "timestamp")
    customer, session = doc.get("customer"), doc.get("session")
    if not isinstance(customer, dict) or not isinstance(session, dict):
        raise SignatureError("customer and session must be objects")
    _string(customer, "customer_token", _TOKEN, "customer.customer_token")
    order = _string(session, "order_id", _ORDER, "session.order_id")
    if order[-1].isdigit() or maybe(lambda: account_ref(order, "session.order_id")) is None:
        raise SignatureError("session.order_id must read '<server>:<login>:<reference>' and "
                             "not end in a digit (transaction.tid follows it when signed)",
                             "unsigned_identity")
    if "transaction" not in doc:
        raise SignatureError("no transaction object (null for an expired session)")
    tx = doc["transaction"]
    if tx is None:
        return
    if not isinstance(tx, dict):
        raise SignatureError("transaction must be an object or null")
    _integer(tx, "tid", _TID, "transaction.tid")
    _string(tx, "currency", _CURRENCY, "transaction.currency")
    _integer(tx, "amount", _MINOR, "transaction.amount")
    if tx.get("conversion_rate") is not None:
        rate = tx["conversion_rate"]
        if isinstance(rate, bool) or not isinstance(rate, int | float | str) or \
                not _RATE.fullmatch(text(tx, "conversion_rate")):
            raise SignatureError("transaction.conversion_rate is not a plain decimal")
    if tx.get("processed_currency") is not None:
        _string(tx, "processed_currency", _CURRENCY, "transaction.processed_currency")
    if tx.get("processed_amount") is not None:
        _integer(tx, "processed_amount", _MINOR, "transaction.processed_amount")
    status, ttype = tx.get("transaction_status"), tx.get("transaction_type")
    if not isinstance(status, str) or status not in STATUSES:
        raise SignatureError(f"transaction_status {str(status)[:20]!r} is not a Praxis status")
    if not isinstance(ttype, str) or ttype not in KINDS:
        raise SignatureError(f"transaction_type {str(ttype)[:20]!r} is not sale, authorization, "
                             "payout or refund")
    payout = is_payout_ref(order.upper(), payout_prefix.upper())
    if (KINDS[ttype] == "withdrawal") != payout:
        raise SignatureError(f"transaction_type {ttype!r} disagrees with the signed order id "
                             f"({'a payout' if payout else 'not a payout'} reference)", "tampered")


def verify(
    raw_body: bytes,
    headers: Mapping[str, str],
    secret: str,
    *,
    merchant_id: str = "",
    application_key: str = "",
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
    payout_prefix: str = "WD",
) -> None:
    """Raise SignatureError unless GT-Authentication matches, every signed field is in a
    format that pins its boundaries, and the timestamp is fresh."""
    require_secret(secret, PROVIDER)
    sig = header(headers, SIGNATURE_HEADER).strip()
    if not sig:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    doc = parse_json_object(raw_body)
    try:
        expected = signature(doc, secret)
    except Rejected:
        raise SignatureError("a signed field is not a scalar") from None
    if not _SIG.fullmatch(sig) or not equal(sig.lower(), expected):
        raise SignatureError(f"{SIGNATURE_HEADER} does not match")
    if merchant_id and not equal(_value(doc, ("merchant_id",)), merchant_id):
        raise SignatureError("merchant_id is not the configured merchant", "foreign_merchant")
    if application_key and not equal(_value(doc, ("application_key",)), application_key):
        raise SignatureError("application_key is not the configured application",
                             "foreign_merchant")
    session = obj(doc, "session") if isinstance(doc.get("session"), dict) else {}
    signed_account(lambda: account_ref(text(session, "order_id"), "session.order_id"),
                   lambda: maybe(lambda: account_ref(text(session, "cid"), "session.cid")),
                   "session.cid names another account than the signed order_id")
    check_signed_formats(doc, merchant_id, application_key, payout_prefix)
    stamp = _value(doc, ("timestamp",))
    check_fresh(int(stamp), tolerance_s, time.time() if now is None else now, "timestamp")


def verify_for(raw_body: bytes, headers: Mapping[str, str], cfg: PspProviderSettings,
               secret: str, now: float | None = None) -> None:
    verify(raw_body, headers, secret, merchant_id=cfg.merchant_id,
           application_key=cfg.application_key,
           tolerance_s=tolerance(cfg, DEFAULT_TOLERANCE_S), now=now,
           payout_prefix=cfg.payout_prefix)


def replay_id(raw_body: bytes, headers: Mapping[str, str]) -> tuple[str, bool]:
    """The signature itself: transaction_status and transaction_type are not signed, so the
    first body seen under a signature is the only one accepted with it."""
    return header(headers, SIGNATURE_HEADER).strip().lower(), True


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


def _account(doc: Mapping[str, Any]) -> PspAccount:
    """Only the signed session.order_id names the account; session.cid must agree."""
    session = obj(doc, "session")
    cid = text(session, "cid")
    unsigned = maybe(lambda: account_ref(cid, "session.cid")) if cid else None
    return pick_account(maybe(lambda: account_ref(text(session, "order_id"),
                                                  "session.order_id")),
                        unsigned, False, "session.order_id", "session.cid", "Praxis")


def routing(raw_body: bytes, headers: Mapping[str, str]) -> Routing:
    doc = parse_json_object(raw_body)
    tx = obj(doc, "transaction")
    txn = text(tx, "tid") or _session_id(doc)
    if not txn:
        raise Rejected("neither transaction.tid nor session.order_id is present")
    return routing_from(txn, lambda: _account(doc))


def read_praxis(env: Envelope, settings: object) -> list[BalanceOperation]:
    """One `psp.praxis` message -> its operations. Raises Rejected with the reason."""
    ctx: PspContext = context(settings)
    cfg = ctx.provider(PROVIDER)
    doc = parse_json_object(env.value)
    try:  # what the receiver checked; a message that didn't come through it is checked here
        check_signed_formats(doc, cfg.merchant_id, cfg.application_key, cfg.payout_prefix)
    except SignatureError as exc:
        raise Rejected(f"Praxis notification: {exc.reason}", "validate") from None
    if doc["transaction"] is None:
        return []  # an expired cashier session (transaction null, as Praxis sends it): no money
    tx = obj(doc, "transaction")
    tid = need(tx, "tid")
    raw_status = tx["transaction_status"]
    status = map_status(STATUSES, raw_status, "Praxis", "transaction_status")
    kind = KINDS[tx["transaction_type"]]
    currency = tx["currency"]
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
    payment = Payment(
        provider=PROVIDER, txn_id=tid, kind=kind,
        amount=amount, currency=currency, status=status, account=_account(doc),
        time=from_unix_s(doc["timestamp"], "timestamp"),
        method=method, payer_name=holder, country=country2(text(customer, "country")),
        instrument=instrument, comment=text(obj(doc, "session"), "order_id"),
        book_reversal=raw_status not in BOOKED_ELSEWHERE,
    )
    return build_ops(env, ctx, payment)
