"""Nuvei payment DMNs (Direct Merchant Notifications, form POST) -> `BalanceOperation`s.
Topic `psp.nuvei`.

Signature
    ``advanceResponseChecksum`` = hex SHA-256(secret key + totalAmount + currency +
    responseTimeStamp + PPP_TransactionID + Status + productId), values exactly as posted.
    ``responseTimeStamp`` (``YYYY-MM-DD.HH:MM:SS``, read as UTC) must be within the tolerance
    of now: default one day (``tolerance_s``), because a DMN that Nuvei re-sends keeps its
    original, signed time and Nuvei does not document the zone it is written in.
    When configured, ``merchant_id`` must match.

Which trading account
    The checksum covers only totalAmount, currency, responseTimeStamp, PPP_TransactionID,
    Status and productId, so the account must be in the signed ``productId``, which the broker
    sets when it opens the payment: ``productId = "<server>:<login>[:<reference>]"``. Brokers
    may also echo it in ``customField1`` (``<server>:<login>``) or ``merchant_unique_id``
    (``clientUniqueId``, ``<server>:<login>:<reference>``): those are unsigned, so they must
    agree with ``productId`` (a DMN where they disagree is refused as tampered) and are used
    alone only with ``allow_unsigned_account: true``.

Transaction and direction
    ``transactionType`` says what happened; the transaction is ``TransactionID`` (falling back
    to ``PPP_TransactionID``):

    * Sale -> deposit (positive). Auth -> the same deposit, pending until it is settled;
      Settle and Void are new states of the authorised transaction (``relatedTransactionId``):
      a settled auth is approved, a voided one cancelled.
    * Payout -> withdrawal (negative).
    * Credit (refund) and Chargeback arrive as transactions of their own that point at the
      payment (``relatedTransactionId``) and carry the amount actually reversed (possibly
      partial): they become the reversing operation ``psp:nuvei:<payment>:refund`` /
      ``:chargeback`` (negative). The payment's own row keeps its state, because the DMN does
      not carry the original amount.

Not signed by Nuvei, and therefore only as trustworthy as the transport: TransactionID,
    transactionType, relatedTransactionId and the card/customer fields. The freshness check
    and the duplicate check limit what a replay can do; allow-list Nuvei's DMN addresses at the
    edge.

Statuses
    APPROVED -> approved (refunded / chargeback for the reversals), PENDING -> pending,
    DECLINED -> declined, ERROR -> failed.

Instrument
    Cards: ``bin`` + ``last4Digits`` + ``expMonth``/``expYear``; alternative payment methods:
    the customer's ``email`` (lower-cased). Payer name: ``nameOnCard``, else first/last name.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from datetime import UTC, datetime

from connectors.fields import Rejected
from connectors.psp.common import (
    Account,
    Kind,
    Payment,
    PspContext,
    Routing,
    SignatureError,
    account_ref,
    build_ops,
    card_instrument,
    check_fresh,
    context,
    country2,
    currency_code,
    email_instrument,
    equal,
    expiry,
    map_status,
    maybe,
    method_from_name,
    money,
    parse_form,
    pick_account,
    require_secret,
    routing_from,
    tolerance,
)
from connectors.psp.settings import PspProviderSettings
from schemas.envelope import Envelope
from schemas.events import BalanceOperation

PROVIDER = "nuvei"
TOPIC = "psp.nuvei"
CONTENT_TYPE = "application/x-www-form-urlencoded"
DEFAULT_TOLERANCE_S = 86_400

STATUSES = {"APPROVED": "approved", "PENDING": "pending", "DECLINED": "declined",
            "ERROR": "failed"}
# transactionType -> (kind, key the state belongs to, suffix of the reversing op)
DEPOSIT_TYPES = frozenset({"sale", "sale3d", "auth", "auth3d", "initauth3d"})
RELATED_TYPES = frozenset({"settle", "void"})
REVERSAL_TYPES: dict[str, Kind] = {"credit": "refund", "refund": "refund",
                                   "chargeback": "chargeback"}


def checksum(form: Mapping[str, str], secret: str) -> str:
    payload = "".join((secret, form.get("totalAmount", ""), form.get("currency", ""),
                       form.get("responseTimeStamp", ""), form.get("PPP_TransactionID", ""),
                       form.get("Status", ""), form.get("productId", "")))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def response_time(value: str) -> datetime:
    for fmt in ("%Y-%m-%d.%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.strptime(value.strip(), fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise Rejected(f"responseTimeStamp {value[:40]!r} is not YYYY-MM-DD.HH:MM:SS")


def verify(
    raw_body: bytes,
    headers: Mapping[str, str],
    secret: str,
    *,
    merchant_id: str = "",
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> None:
    """Raise SignatureError unless advanceResponseChecksum matches and the DMN is fresh."""
    require_secret(secret, PROVIDER)
    form = parse_form(raw_body)
    sig = form.get("advanceResponseChecksum", "").strip()
    if not sig:
        raise SignatureError("missing advanceResponseChecksum")
    if not equal(sig.lower(), checksum(form, secret)):
        raise SignatureError("advanceResponseChecksum does not match")
    if merchant_id and not equal(form.get("merchant_id", ""), merchant_id):
        raise SignatureError("merchant_id is not the configured merchant", "foreign_merchant")
    signed, unsigned = maybe(lambda: _signed_account(form)), maybe(lambda: _field_account(form))
    if signed and unsigned and (signed.server, signed.login) != (unsigned.server, unsigned.login):
        raise SignatureError("customField1/merchant_unique_id name another account than the "
                             "signed productId", "tampered")
    try:
        signed_at = response_time(form.get("responseTimeStamp", "")).timestamp()
    except Rejected as exc:
        raise SignatureError(exc.reason) from None
    check_fresh(signed_at, tolerance_s, time.time() if now is None else now, "responseTimeStamp")


def verify_for(raw_body: bytes, headers: Mapping[str, str], cfg: PspProviderSettings,
               secret: str, now: float | None = None) -> None:
    verify(raw_body, headers, secret, merchant_id=cfg.merchant_id,
           tolerance_s=tolerance(cfg, DEFAULT_TOLERANCE_S), now=now)


def ack(raw_body: bytes, secret: str, now: float) -> tuple[bytes, str, dict[str, str]]:
    """Nuvei only needs an HTTP 200."""
    return b"OK", "text/plain; charset=utf-8", {}


def _txn(form: Mapping[str, str]) -> str:
    txn = form.get("TransactionID", "").strip() or form.get("PPP_TransactionID", "").strip()
    if not txn:
        raise Rejected("missing field 'TransactionID' (and 'PPP_TransactionID')")
    return txn


def dedupe_id(raw_body: bytes, headers: Mapping[str, str]) -> str:
    form = parse_form(raw_body)
    status = form.get("Status", "").strip()
    if not status:
        raise Rejected("missing field 'Status'")
    return f"{_txn(form)}:{status}:{form.get('transactionType', '').strip()}"


def _signed_account(form: Mapping[str, str]) -> Account:
    return account_ref(form.get("productId", ""), "productId")


def _field_account(form: Mapping[str, str]) -> Account | None:
    if form.get("customField1", "").strip():
        return account_ref(form["customField1"], "customField1")
    unique = form.get("merchant_unique_id", "") or form.get("clientUniqueId", "")
    return account_ref(unique, "merchant_unique_id") if unique else None


def _account(form: Mapping[str, str], allow_unsigned: bool) -> Account:
    return pick_account(maybe(lambda: _signed_account(form)), _field_account(form),
                        allow_unsigned, "productId", "customField1/merchant_unique_id",
                        "Nuvei advanceResponseChecksum")


def routing(raw_body: bytes, headers: Mapping[str, str]) -> Routing:
    form = parse_form(raw_body)
    return routing_from(_txn(form), lambda: _account(form, True))


def read_nuvei(env: Envelope, settings: object) -> list[BalanceOperation]:
    """One `psp.nuvei` message -> its operations. Raises Rejected with the reason."""
    ctx: PspContext = context(settings)
    cfg = ctx.provider(PROVIDER)
    form = parse_form(env.value)
    txn = _txn(form)
    raw_status = form.get("Status", "").strip().upper()
    status = map_status(STATUSES, raw_status, "Nuvei", "Status")
    raw_type = form.get("transactionType", "").strip().lower() or "sale"
    related = form.get("relatedTransactionId", "").strip()
    suffix = ""
    if raw_type in DEPOSIT_TYPES:
        kind: Kind = "deposit"
        if raw_type != "sale" and raw_type != "sale3d" and status == "approved":
            status = "pending"  # authorised, not captured yet
    elif raw_type in RELATED_TYPES:
        if raw_type == "void" and status != "approved":
            return []  # a failed void changes nothing
        kind, txn = "deposit", related or txn
        status = "cancelled" if raw_type == "void" else status
    elif raw_type == "payout":
        kind = "withdrawal"
    elif raw_type in REVERSAL_TYPES:
        kind = REVERSAL_TYPES[raw_type]
        txn, suffix = related or txn, f":{kind}"
        if status == "approved":
            status = "refunded" if kind == "refund" else "chargeback"
    else:
        raise Rejected(f"Nuvei transactionType {raw_type!r} is not Sale, Auth, Settle, Void, "
                       "Credit, Chargeback or Payout")
    currency = currency_code(form.get("currency", ""), "currency")
    amount = money(form.get("totalAmount", ""), "totalAmount")
    pm = form.get("payment_method", "")
    method = method_from_name(pm, "card" if form.get("last4Digits") else "ewallet")
    if method == "card":
        instrument = card_instrument("", expiry(form.get("expMonth", ""), form.get("expYear", "")),
                                     form.get("bin", ""), form.get("last4Digits", ""))
    else:
        instrument = email_instrument(form.get("email", ""))
    name = form.get("nameOnCard", "").strip() or " ".join(
        x for x in (form.get("first_name", "").strip(), form.get("last_name", "").strip()) if x)
    payment = Payment(
        provider=PROVIDER, txn_id=txn, kind=kind, amount=amount, currency=currency,
        status=status, account=_account(form, cfg.allow_unsigned_account),
        time=response_time(form.get("responseTimeStamp", "")), method=method, payer_name=name,
        country=country2(form.get("countryCode", "")) or country2(form.get("country", "")),
        instrument=instrument, comment=form.get("merchant_unique_id", ""), key_suffix=suffix,
    )
    return build_ops(env, ctx, payment)
