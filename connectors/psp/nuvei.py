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
    may also echo it in ``customField1`` (``<server>:<login>``): unsigned, so it must agree with
    ``productId`` (a DMN where it disagrees is refused as tampered) and is never used alone.
    ``merchant_unique_id`` (``clientUniqueId``) is the merchant's own order id: whatever it holds
    (an order number, or an account reference), it only goes to the comment.

Transaction and direction
    The transaction is the signed ``PPP_TransactionID`` (Nuvei's ``TransactionID`` is outside
    the checksum, so it only goes to the comment). Every checksummed field must be in a
    format that pins its boundaries (see `check_signed_formats`). Sale -> deposit (positive),
    Auth -> the same deposit, pending; Payout -> withdrawal (negative) — the direction comes
    from the signed productId (a payout's reference starts with ``payout_prefix``) and the
    unsigned ``transactionType`` must agree. Settle, Void, Credit and Chargeback DMNs name the
    payment they change only in ``relatedTransactionId``, outside the checksum: they are
    refused (``unsigned_identity``) and must be confirmed through Nuvei's API or reports.

    ``transactionType`` (Sale vs Auth) and the card/customer fields stay unsigned: the replay
    guard makes the first body seen under a checksum binding (`connectors.psp.replay_guard`).

Statuses
    APPROVED -> approved (refunded / chargeback for the reversals), PENDING -> pending,
    DECLINED -> declined, ERROR -> failed.

Instrument
    Cards: ``bin`` + ``last4Digits`` + ``expMonth``/``expYear``; alternative payment methods:
    the customer's ``email`` (lower-cased). Payer name: ``nameOnCard``, else first/last name.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime

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
    card_instrument,
    check_fresh,
    check_merchant,
    context,
    country2,
    email_instrument,
    equal,
    expiry,
    is_payout_ref,
    maybe,
    method_from_name,
    money,
    need,
    parse_form,
    pick_account,
    require_secret,
    routing_from,
    signed_account,
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


_AMOUNT = re.compile(r"(?:0|[1-9][0-9]{0,14})(?:\.[0-9]{1,8})?")
_CURRENCY = re.compile(r"[A-Z]{3}")
_STAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\.[0-9]{2}:[0-9]{2}:[0-9]{2}")
_PPP = re.compile(r"[1-9][0-9]{0,19}")
_PRODUCT = re.compile(r"[^\x00-\x1f\x7f]{1,200}")
_SIG = re.compile(r"[0-9A-Fa-f]{64}")
# Their DMN names the payment they change only in relatedTransactionId, outside the checksum.
UNSIGNED_IDENTITY = frozenset({"settle", "void", "credit", "refund", "chargeback"})


def checksum(form: Mapping[str, str], secret: str) -> str:
    payload = "".join((secret, form.get("totalAmount", ""), form.get("currency", ""),
                       form.get("responseTimeStamp", ""), form.get("PPP_TransactionID", ""),
                       form.get("Status", ""), form.get("productId", "")))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def response_time(value: str) -> datetime:
    if not _STAMP.fullmatch(value):
        raise Rejected(f"responseTimeStamp {value[:40]!r} is not YYYY-MM-DD.HH:MM:SS")
    try:
        return datetime.strptime(value, "%Y-%m-%d.%H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        raise Rejected(f"responseTimeStamp {value[:40]!r} is not a time") from None


def check_signed_formats(form: Mapping[str, str]) -> None:
    """Rejected unless the checksummed fields have formats that pin their boundaries:
    totalAmount digits and a dot, currency three capitals, responseTimeStamp its fixed 19
    characters, PPP_TransactionID digits, Status a known word (none a prefix of another),
    productId the rest. Characters moved between fields break one of these."""
    amount, currency = form.get("totalAmount", ""), form.get("currency", "")
    if not _AMOUNT.fullmatch(amount):
        raise Rejected(f"totalAmount {amount[:20]!r} is not a plain decimal amount")
    if not _CURRENCY.fullmatch(currency):
        raise Rejected(f"currency {currency[:10]!r} is not a 3-letter code")
    response_time(form.get("responseTimeStamp", ""))
    if not _PPP.fullmatch(form.get("PPP_TransactionID", "")):
        raise Rejected("PPP_TransactionID (the signed transaction id) is missing or not digits")
    if form.get("Status", "") not in STATUSES:
        raise Rejected(f"Status {form.get('Status', '')[:12]!r} is not a Nuvei status")
    if not _PRODUCT.fullmatch(form.get("productId", "")):
        raise Rejected("productId is missing or has control characters")


def _direction(form: Mapping[str, str], payout_prefix: str) -> Kind:
    """deposit / withdrawal from the signed productId; the unsigned transactionType must
    agree, and types whose identity is unsigned are refused (confirm them through Nuvei)."""
    raw_type = form.get("transactionType", "") or "Sale"
    lower = raw_type.lower()
    if lower in UNSIGNED_IDENTITY:
        raise SignatureError(f"a {raw_type} DMN names its payment only in relatedTransactionId, "
                             "which the checksum does not cover: confirm it through Nuvei's "
                             "API", "unsigned_identity")
    if lower not in DEPOSIT_TYPES and lower != "payout":
        raise SignatureError(f"Nuvei transactionType {raw_type[:20]!r} is not Sale, Auth or "
                             "Payout")
    payout = is_payout_ref(form.get("productId", "").upper(), payout_prefix.upper())
    if (lower == "payout") != payout:
        raise SignatureError(f"transactionType {raw_type!r} disagrees with the signed productId "
                             f"({'a payout' if payout else 'not a payout'} reference)", "tampered")
    return "withdrawal" if payout else "deposit"


def verify(
    raw_body: bytes,
    headers: Mapping[str, str],
    secret: str,
    *,
    merchant_id: str = "",
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
    payout_prefix: str = "WD",
) -> None:
    """Raise SignatureError unless advanceResponseChecksum matches, the checksummed fields are
    in unambiguous formats, the unsigned fields agree, and the DMN is fresh."""
    require_secret(secret, PROVIDER)
    form = parse_form(raw_body)
    sig = form.get("advanceResponseChecksum", "").strip()
    if not sig:
        raise SignatureError("missing advanceResponseChecksum")
    if not _SIG.fullmatch(sig) or not equal(sig.lower(), checksum(form, secret)):
        raise SignatureError("advanceResponseChecksum does not match")
    check_merchant(form.get("merchant_id", ""), merchant_id)
    signed = signed_account(lambda: _signed_account(form), lambda: _field_account(form),
                            "customField1 names another account than the signed productId")
    try:
        check_signed_formats(form)
    except Rejected as exc:
        raise SignatureError(exc.reason) from None
    if signed is not None:  # a DMN of a payment page the broker didn't open is read as such
        _direction(form, payout_prefix)
    signed_at = response_time(form["responseTimeStamp"]).timestamp()
    check_fresh(signed_at, tolerance_s, time.time() if now is None else now, "responseTimeStamp")


def verify_for(raw_body: bytes, headers: Mapping[str, str], cfg: PspProviderSettings,
               secret: str, now: float | None = None) -> None:
    verify(raw_body, headers, secret, merchant_id=cfg.merchant_id,
           tolerance_s=tolerance(cfg, DEFAULT_TOLERANCE_S), now=now,
           payout_prefix=cfg.payout_prefix)


def replay_id(raw_body: bytes, headers: Mapping[str, str]) -> tuple[str, bool]:
    """The checksum itself: TransactionID, transactionType and the rest are not signed, so
    the first body seen under a checksum is the only one accepted with it."""
    return parse_form(raw_body).get("advanceResponseChecksum", "").strip().lower(), True


ack = ack_ok  # Nuvei only needs an HTTP 200


def _txn(form: Mapping[str, str]) -> str:
    """The signed PPP_TransactionID (Nuvei's TransactionID is outside the checksum)."""
    txn = form.get("PPP_TransactionID", "")
    if not _PPP.fullmatch(txn):
        raise Rejected("missing or malformed field 'PPP_TransactionID' (the signed id)")
    return txn


def dedupe_id(raw_body: bytes, headers: Mapping[str, str]) -> str:
    form = parse_form(raw_body)
    status = need(form, "Status")
    return f"{_txn(form)}:{status}:{form.get('transactionType', '')}"


def _signed_account(form: Mapping[str, str]) -> PspAccount:
    return account_ref(form.get("productId", ""), "productId")


def _field_account(form: Mapping[str, str]) -> PspAccount | None:
    """The unsigned echo in customField1. ``merchant_unique_id`` (``clientUniqueId``) is the
    merchant's own order id as Nuvei defines it: whatever it holds, it never names the account."""
    if form.get("customField1", "").strip():
        return account_ref(form["customField1"], "customField1")
    return None


def _account(form: Mapping[str, str]) -> PspAccount:
    """Only the signed productId names the account; the unsigned echoes must agree."""
    return pick_account(maybe(lambda: _signed_account(form)), _field_account(form),
                        False, "productId", "customField1",
                        "Nuvei advanceResponseChecksum")


def routing(raw_body: bytes, headers: Mapping[str, str]) -> Routing:
    form = parse_form(raw_body)
    return routing_from(_txn(form), lambda: _account(form))


def read_nuvei(env: Envelope, settings: object) -> list[BalanceOperation]:
    """One `psp.nuvei` message -> its operations. Raises Rejected with the reason."""
    ctx: PspContext = context(settings)
    cfg = ctx.provider(PROVIDER)
    form = parse_form(env.value)
    check_signed_formats(form)
    txn = _txn(form)
    status = STATUSES[form["Status"]]
    try:
        kind = _direction(form, cfg.payout_prefix)
    except SignatureError as exc:
        raise Rejected(exc.reason, "validate") from None
    raw_type = (form.get("transactionType", "") or "Sale").lower()
    if raw_type not in ("sale", "sale3d") and kind == "deposit" and status == "approved":
        status = "pending"  # authorised, not captured: the capture is confirmed through Nuvei
    amount = money(form["totalAmount"], "totalAmount")
    currency = form["currency"]
    pm = form.get("payment_method", "")
    method = method_from_name(pm, "card" if form.get("last4Digits") else "ewallet")
    if method == "card":
        instrument = card_instrument("", expiry(form.get("expMonth", ""), form.get("expYear", "")),
                                     form.get("bin", ""), form.get("last4Digits", ""))
    else:
        instrument = email_instrument(form.get("email", ""))
    name = form.get("nameOnCard", "").strip() or " ".join(
        x for x in (form.get("first_name", "").strip(), form.get("last_name", "").strip()) if x)
    gateway = form.get("TransactionID", "").strip()
    payment = Payment(
        provider=PROVIDER, txn_id=txn, kind=kind, amount=amount, currency=currency,
        status=status, account=_account(form),
        time=response_time(form["responseTimeStamp"]), method=method, payer_name=name,
        country=country2(form.get("countryCode", "")) or country2(form.get("country", "")),
        instrument=instrument,
        comment=" ".join(x for x in (form.get("merchant_unique_id", ""),
                                     f"nuvei {gateway}" if gateway else "") if x),
    )
    return build_ops(env, ctx, payment)
