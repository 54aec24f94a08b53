"""Stripe-style events (JSON POST) -> `BalanceOperation`s. Topic `psp.stripe`.

Signature
    ``Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>``; several
    ``v1`` may be present (secret rotation) and any match is enough; other schemes (``v0``) are
    ignored. Rejected when ``|now - t|`` exceeds the tolerance (300 s, ``tolerance_s``). Stripe
    signs every delivery attempt afresh, so retries are never stale.

Which trading account
    ``metadata.server`` and ``metadata.login`` (and optionally ``metadata.platform``) on the
    PaymentIntent (Stripe copies nothing by itself: brokers set the same metadata on the
    PaymentIntent, its charges and payouts). Disputes carry no metadata of their own: the
    dispute's ``metadata``, else an embedded (expanded) ``charge`` or ``payment_intent``
    object's metadata is used; a bare dispute without any is rejected (dead letter) with the
    reason, so it can be replayed once the account is known.

Transaction and direction
    The transaction is the PaymentIntent id (``object.id`` for payment_intent.* events,
    ``object.payment_intent`` for charges and disputes, the charge id without one);
    payouts (``payout.*``, ``po_...``) are withdrawals (negative). Amounts are integer minor
    units (Stripe's zero- and three-decimal currencies are known).

Events and statuses
    payment_intent.created / processing / requires_action / amount_capturable_updated ->
    pending; payment_intent.succeeded, charge.succeeded, charge.captured -> approved;
    payment_intent.payment_failed, charge.failed -> declined; payment_intent.canceled,
    charge.expired -> cancelled; charge.pending -> pending; charge.refunded -> refunded plus a
    reversing ``:refund`` op of ``amount_refunded`` (cumulative, so partial refunds add up);
    charge.dispute.created / funds_withdrawn / closed (lost) -> chargeback plus a reversing
    ``:chargeback`` op of the disputed amount; charge.dispute.funds_reinstated / closed (won)
    -> approved again and the ``:chargeback`` op cancelled. payout.created / updated ->
    pending, payout.paid -> approved, payout.failed -> failed, payout.canceled -> cancelled.
    Other event types book nothing.

Instrument
    Cards: ``payment_method_details.card`` (``iin`` when present, ``last4``, ``exp_month``,
    ``exp_year``). Payer name and country: ``billing_details``.
"""

from __future__ import annotations

import hashlib
import hmac
import time
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
    account_fields,
    build_ops,
    card_instrument,
    check_fresh,
    context,
    country2,
    currency_code,
    digits,
    email_instrument,
    env_time,
    equal,
    expiry,
    from_unix_s,
    header,
    map_status,
    method_from_name,
    minor_units,
    need,
    obj,
    parse_json_object,
    require_secret,
    routing_from,
    text,
    tolerance,
)
from connectors.psp.settings import PspProviderSettings
from schemas.envelope import Envelope
from schemas.events import BalanceOperation

PROVIDER = "stripe"
TOPIC = "psp.stripe"
CONTENT_TYPE = "application/json"
SIGNATURE_HEADER = "Stripe-Signature"
DEFAULT_TOLERANCE_S = 300

STRIPE_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(("BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX",
                     "VND", "VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "JOD", "KWD", "OMR", "TND"), 3),
}

EVENTS: dict[str, str] = {
    "payment_intent.created": "pending", "payment_intent.processing": "pending",
    "payment_intent.requires_action": "pending",
    "payment_intent.amount_capturable_updated": "pending",
    "payment_intent.succeeded": "approved", "payment_intent.payment_failed": "declined",
    "payment_intent.canceled": "cancelled",
    "charge.pending": "pending", "charge.succeeded": "approved", "charge.captured": "approved",
    "charge.failed": "declined", "charge.expired": "cancelled", "charge.refunded": "refunded",
    "charge.dispute.created": "chargeback", "charge.dispute.funds_withdrawn": "chargeback",
    "charge.dispute.funds_reinstated": "approved", "charge.dispute.closed": "chargeback",
    "payout.created": "pending", "payout.updated": "pending", "payout.paid": "approved",
    "payout.failed": "failed", "payout.canceled": "cancelled",
}


def signature(raw_body: bytes, timestamp: str, secret: str) -> str:
    signed = timestamp.encode("ascii") + b"." + raw_body
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def sign_header(raw_body: bytes, secret: str, timestamp: int) -> str:
    """The header a sender would send (used by tests and the benchmark)."""
    return f"t={timestamp},v1={signature(raw_body, str(timestamp), secret)}"


def verify(
    raw_body: bytes,
    headers: Mapping[str, str],
    secret: str,
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> None:
    """Raise SignatureError unless a v1 signature matches and t is within the tolerance."""
    require_secret(secret, PROVIDER)
    value = header(headers, SIGNATURE_HEADER)
    if not value:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    stamp, candidates = "", []
    for item in value.split(","):
        name, sep, val = item.strip().partition("=")
        if not sep:
            continue
        if name == "t" and not stamp:
            stamp = val.strip()
        elif name == "v1":
            candidates.append(val.strip().lower())
    if not digits(stamp) or len(stamp) > 12:
        raise SignatureError(f"{SIGNATURE_HEADER} has no usable timestamp")
    if not candidates:
        raise SignatureError(f"{SIGNATURE_HEADER} has no v1 signature")
    expected = signature(raw_body, stamp, secret)
    matched = False
    for candidate in candidates:  # no early exit: the time taken doesn't depend on which matched
        matched |= equal(candidate, expected)
    if not matched:
        raise SignatureError("no v1 signature matches the body")
    check_fresh(int(stamp), tolerance_s, time.time() if now is None else now, "signature time t")


def verify_for(raw_body: bytes, headers: Mapping[str, str], cfg: PspProviderSettings,
               secret: str, now: float | None = None) -> None:
    verify(raw_body, headers, secret, tolerance_s=tolerance(cfg, DEFAULT_TOLERANCE_S), now=now)


def replay_id(raw_body: bytes, headers: Mapping[str, str]) -> tuple[str, bool]:
    """The event id: Stripe signs the whole body, and t, afresh on every delivery attempt."""
    return need(parse_json_object(raw_body), "id"), False


def ack(raw_body: bytes, secret: str, now: float) -> tuple[bytes, str, dict[str, str]]:
    return b'{"received":true}', "application/json", {}


def _event(raw_body: bytes) -> tuple[dict[str, Any], str, dict[str, Any]]:
    doc = parse_json_object(raw_body)
    event_type = need(doc, "type")
    return doc, event_type, obj(obj(doc, "data"), "object")


def dedupe_id(raw_body: bytes, headers: Mapping[str, str]) -> str:
    doc, event_type, _ = _event(raw_body)
    return f"{need(doc, 'id')}:{event_type}"


def _txn(event_type: str, o: Mapping[str, Any]) -> str:
    if event_type.startswith(("payment_intent.", "payout.")):
        return need(o, "id")
    pi = o.get("payment_intent")
    if isinstance(pi, dict):
        pi = pi.get("id")
    if isinstance(pi, str) and pi:
        return pi
    charge = o.get("charge")
    if isinstance(charge, dict):
        charge = charge.get("id")
    if event_type.startswith("charge.dispute.") and isinstance(charge, str) and charge:
        return charge
    return need(o, "id")


def _metadata(o: Mapping[str, Any]) -> dict[str, Any]:
    meta = obj(o, "metadata")
    if meta.get("login") is None:
        for name in ("charge", "payment_intent"):
            nested = o.get(name)
            inner = nested.get("metadata") if isinstance(nested, dict) else None
            if isinstance(inner, dict) and inner.get("login") is not None:
                return inner
    return meta


def _account(o: Mapping[str, Any]) -> PspAccount:
    meta = _metadata(o)
    if not meta.get("login"):
        raise Rejected(f"{text(o, 'object') or 'object'} {text(o, 'id')[:60]!r} has no "
                       "metadata.login/metadata.server naming the trading account", "route")
    return account_fields(text(meta, "server"), text(meta, "login"), text(meta, "platform"),
                          "stripe metadata")


def routing(raw_body: bytes, headers: Mapping[str, str]) -> Routing:
    doc, event_type, o = _event(raw_body)
    try:
        txn = _txn(event_type, o)
    except Rejected:
        txn = need(doc, "id")
    return routing_from(txn, lambda: _account(o))


def _method(o: Mapping[str, Any], details: Mapping[str, Any]) -> str:
    kind = text(details, "type")
    if not kind:
        types = o.get("payment_method_types")
        kind = types[0] if isinstance(types, list) and len(types) == 1 and isinstance(
            types[0], str) else ""
    if kind == "card" or details.get("card"):
        return "card"
    return method_from_name(kind, "ewallet" if kind else "")


def read_stripe(env: Envelope, settings: object) -> list[BalanceOperation]:
    """One `psp.stripe` message -> its operations. Raises Rejected with the reason."""
    ctx: PspContext = context(settings)
    cfg = ctx.provider(PROVIDER)
    doc, event_type, o = _event(env.value)
    if event_type not in EVENTS:
        return []  # not a money event (customer.*, invoice.*, ...)
    status = map_status(EVENTS, event_type, "Stripe", "event type")
    dispute_won = False
    if event_type == "charge.dispute.closed":
        outcome = text(o, "status")
        if outcome == "won":
            status, dispute_won = "approved", True
        elif outcome != "lost":
            return []  # warning_closed and the like: no money moved
    elif event_type == "charge.dispute.funds_reinstated":
        dispute_won = True
    kind: Kind = "withdrawal" if event_type.startswith("payout.") else "deposit"
    currency = currency_code(need(o, "currency"), "currency")
    exponents = {**STRIPE_EXPONENTS, **cfg.currency_exponents}
    amount_field = "amount"
    if event_type == "payment_intent.succeeded" and o.get("amount_received"):
        amount_field = "amount_received"
    amount = minor_units(o.get(amount_field), amount_field, currency, exponents)
    reversed_ = None
    if event_type == "charge.refunded":
        reversed_ = minor_units(o.get("amount_refunded"), "amount_refunded", currency, exponents)
    details = obj(o, "payment_method_details")
    card = obj(details, "card")
    billing = obj(o, "billing_details")
    instrument = ""
    if card:
        instrument = card_instrument(
            "", expiry(text(card, "exp_month"), text(card, "exp_year")), text(card, "iin"),
            text(card, "last4"))
    elif text(billing, "email") and _method(o, details) == "ewallet":
        instrument = email_instrument(text(billing, "email"))
    created = doc.get("created")
    payment = Payment(
        provider=PROVIDER, txn_id=_txn(event_type, o), kind=kind, amount=amount,
        currency=currency, status=status, account=_account(o),
        time=from_unix_s(created, "created") if created is not None else env_time(env),
        method="bank" if kind == "withdrawal" else _method(o, details),
        payer_name=text(billing, "name"),
        country=country2(text(obj(billing, "address"), "country")) or country2(
            text(card, "country")),
        instrument=instrument, comment=text(o, "description"), reversal_amount=reversed_,
    )
    ops = build_ops(env, ctx, payment)
    if dispute_won:  # the money came back: the chargeback's reversing op no longer counts
        ops += build_ops(env, ctx, Payment(
            provider=PROVIDER, txn_id=payment.txn_id, kind="chargeback", amount=amount,
            currency=currency, status="cancelled", account=payment.account, time=payment.time,
            method=payment.method, payer_name=payment.payer_name, country=payment.country,
            instrument=instrument, comment=payment.comment, key_suffix=":chargeback"))
    return ops
