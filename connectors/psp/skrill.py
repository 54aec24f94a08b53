"""Skrill status_url notifications (form POST) -> `BalanceOperation`s. Topic `psp.skrill`.

Signature
    ``md5sig = UPPER(MD5(merchant_id + transaction_id + UPPER(MD5(secret word)) + mb_amount +
    mb_currency + status))`` over the posted values exactly as posted. When Skrill also sends
    ``sha2sig`` (enabled on request) it is the SHA-256 of the same string and is checked too.
    When configured, ``merchant_id`` must match, and the merchant email must be the receiving
    (``pay_to_email``, deposits) or sending (``pay_from_email``, payouts) wallet.

Which trading account
    ``md5sig`` covers only merchant_id, transaction_id, mb_amount, mb_currency and status, so
    the account must be in a signed field: brokers set ``transaction_id`` — their own unique
    reference, required for payouts too — to ``<server>:<login>:<reference>``. Brokers may also
    pass ``merchant_fields=platform,server,login`` (Skrill posts those back): they are unsigned,
    so they must agree with ``transaction_id`` (a notification where they disagree is refused
    as tampered), ``platform`` must match the server's configured platform, and they are never
    used alone. ``merchant_id`` must be configured (it is the fixed start of the signed string),
    and the signed values must be in pinned formats: ``mb_amount`` a plain decimal,
    ``mb_currency`` three capitals, ``status`` a known code. Skrill signs no time: the replay
    guard (`connectors.psp.replay_guard`) accepts an id only within its window.

Transaction and direction
    The transaction is the signed ``transaction_id``; ``mb_transaction_id`` goes to the
    comment. A notification whose signed reference starts with ``payout_prefix`` (``WD``) is a
    payout, booked negative (its ``pay_from_email`` must be the configured ``merchant_email``;
    the payout-only statuses 1 scheduled and -4 returned need a payout reference); everything
    else is a deposit, positive (``pay_to_email`` the merchant's). Amounts are the signed
    ``mb_amount`` in ``mb_currency`` (the merchant
    wallet's currency); the unsigned ``amount``/``currency`` the broker asked for are not
    booked.

Statuses
    2 processed -> approved, 0 pending -> pending, -1 -> cancelled, -2 -> failed,
    -3 -> chargeback (plus a reversing ``:chargeback`` op), payouts: 1 scheduled -> pending,
    -4 returned by the recipient's bank -> refunded (plus a reversing ``:refund`` op, positive).

Country
    Skrill posts the customer's ``country`` as ISO 3166-1 alpha-3; it is kept as alpha-2.

Instrument
    The customer's Skrill wallet email (lower-cased) for wallet payments; Skrill sends no card
    details, so card payments through Skrill carry no fingerprint.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

from connectors.fields import Rejected
from connectors.psp.common import (
    Payment,
    PspAccount,
    PspContext,
    Routing,
    SignatureError,
    account_fields,
    account_ref,
    ack_ok,
    build_ops,
    check_merchant,
    context,
    country2,
    email_instrument,
    env_time,
    equal,
    is_payout_ref,
    map_status,
    maybe,
    money,
    need,
    parse_form,
    pick_account,
    require_secret,
    routing_from,
    signed_account,
)
from connectors.psp.settings import PspProviderSettings
from schemas.envelope import Envelope
from schemas.events import BalanceOperation

PROVIDER = "skrill"
TOPIC = "psp.skrill"
CONTENT_TYPE = "application/x-www-form-urlencoded"

STATUSES = {"2": "approved", "0": "pending", "-1": "cancelled", "-2": "failed",
            "-3": "chargeback", "1": "pending", "-4": "refunded"}
PAYOUT_ONLY = frozenset({"1", "-4"})

CARD_TYPES = frozenset({"ACC", "VSA", "MSC", "VSE", "VSD", "MAE", "AMX", "DIN", "JCB", "GCB",
                        "DNK", "PSP", "CSI", "ELV"})
BANK_TYPES = frozenset({"OBT", "GIR", "DID", "SFT", "EBT", "IDL", "NPY", "PLI", "EPY", "PWY",
                        "GLU", "ALI", "ADB", "AOB", "ACI", "TRUSTLY", "RSB"})


def secret_word_hash(secret_word: str) -> str:
    return hashlib.md5(secret_word.encode("utf-8")).hexdigest().upper()


def signed_string(form: Mapping[str, str], secret_hash: str) -> str:
    return "".join((form.get("merchant_id", ""), form.get("transaction_id", ""), secret_hash,
                    form.get("mb_amount", ""), form.get("mb_currency", ""), form.get("status", "")))


def md5sig(form: Mapping[str, str], secret_word: str) -> str:
    return hashlib.md5(signed_string(form, secret_word_hash(secret_word)).encode()).hexdigest().upper()


def sha2sig(form: Mapping[str, str], secret_word: str) -> str:
    payload = signed_string(form, secret_word_hash(secret_word)).encode()
    return hashlib.sha256(payload).hexdigest().upper()


_AMOUNT = re.compile(r"(?:0|[1-9][0-9]{0,14})(?:\.[0-9]{1,8})?")
_CURRENCY = re.compile(r"[A-Z]{3}")
_SIG = re.compile(r"[0-9A-Fa-f]{32}")
_SIG2 = re.compile(r"[0-9A-Fa-f]{64}")
_TXN = re.compile(r"[^\x00-\x20\x7f]{1,100}")  # Skrill allows 100 characters, no spaces


def _signed_values(form: Mapping[str, str], merchant_id: str) -> tuple[str, str, str, str]:
    """The signed fields, in formats that make the concatenation unambiguous: merchant_id is
    the configured one (a fixed prefix), the secret's hash ends transaction_id, mb_amount is
    digits and a dot, mb_currency three capitals, status a known code (none is a prefix of
    another). Moving characters between fields breaks one of these, so it can't verify."""
    if not merchant_id:
        raise SignatureError("no Skrill merchant_id is configured: transaction_id starts "
                             "where merchant_id ends, so it must be fixed", "not_configured")
    txn, amount = form.get("transaction_id", ""), form.get("mb_amount", "")
    currency, status = form.get("mb_currency", ""), form.get("status", "")
    if not _TXN.fullmatch(txn):
        raise SignatureError("transaction_id is missing or not 1-100 visible characters")
    if not _AMOUNT.fullmatch(amount):
        raise SignatureError(f"mb_amount {amount[:20]!r} is not a plain decimal amount")
    if not _CURRENCY.fullmatch(currency):
        raise SignatureError(f"mb_currency {currency[:10]!r} is not a 3-letter code")
    if status not in STATUSES:
        raise SignatureError(f"status {status[:10]!r} is not a Skrill status code")
    return txn, amount, currency, status


def verify(
    raw_body: bytes,
    headers: Mapping[str, str],
    secret: str,
    *,
    merchant_id: str = "",
    merchant_email: str = "",
    payout_prefix: str = "WD",
) -> None:
    """Raise SignatureError unless the notification is signed with our secret word, in
    unambiguous formats, for our merchant, and its unsigned fields agree with the signed."""
    require_secret(secret, PROVIDER)
    form = parse_form(raw_body)
    sig = form.get("md5sig", "")
    if not sig:
        raise SignatureError("missing md5sig")
    if not _SIG.fullmatch(sig) or not equal(sig.upper(), md5sig(form, secret)):
        raise SignatureError("md5sig does not match")
    sig2 = form.get("sha2sig", "")
    if sig2 and (not _SIG2.fullmatch(sig2) or not equal(sig2.upper(), sha2sig(form, secret))):
        raise SignatureError("sha2sig does not match")
    check_merchant(form.get("merchant_id", ""), merchant_id)
    signed_account(lambda: _signed_account(form), lambda: _field_account(form),
                   "merchant fields name another account than the signed transaction_id")
    txn, _, _, status = _signed_values(form, merchant_id)
    payout = _signed_payout(txn, status, payout_prefix)
    if merchant_email:
        ours = merchant_email.strip().lower()
        wallet = "pay_from_email" if payout else "pay_to_email"
        if form.get(wallet, "").strip().lower() != ours:
            other = "pay_to_email" if payout else "pay_from_email"
            code = "tampered" if form.get(other, "").strip().lower() == ours else \
                "foreign_merchant"
            raise SignatureError(f"the signed transaction_id says {'payout' if payout else 'deposit'}"
                                 f", so {wallet} must be the merchant's", code)


def verify_for(raw_body: bytes, headers: Mapping[str, str], cfg: PspProviderSettings,
               secret: str, now: float | None = None) -> None:
    verify(raw_body, headers, secret, merchant_id=cfg.merchant_id,
           merchant_email=cfg.merchant_email, payout_prefix=cfg.payout_prefix)


def replay_id(raw_body: bytes, headers: Mapping[str, str]) -> tuple[str, bool]:
    """Signed transaction_id + status: Skrill signs no time. The first body is binding."""
    form = parse_form(raw_body)
    return f"{form.get('transaction_id', '')}:{form.get('status', '')}", True


ack = ack_ok  # Skrill wants a plain HTTP 200 (it re-posts until it gets one)


def _txn(form: Mapping[str, str]) -> str:
    txn = form.get("transaction_id", "")
    if not _TXN.fullmatch(txn):
        raise Rejected("missing or malformed field 'transaction_id' (the signed transaction "
                       "id; Skrill's own mb_transaction_id is not signed)")
    return txn


def dedupe_id(raw_body: bytes, headers: Mapping[str, str]) -> str:
    form = parse_form(raw_body)
    status = need(form, "status")
    return f"{_txn(form)}:{status}"


def _signed_account(form: Mapping[str, str]) -> PspAccount:
    return account_ref(form.get("transaction_id", ""), "transaction_id")


def _field_account(form: Mapping[str, str]) -> PspAccount | None:
    if not (form.get("login") or form.get("server")):
        return None
    return account_fields(form.get("server", ""), form.get("login", ""),
                          form.get("platform", ""), "skrill merchant fields")


def _account(form: Mapping[str, str]) -> PspAccount:
    """Only the signed transaction_id names the account; merchant fields must agree."""
    return pick_account(maybe(lambda: _signed_account(form)), _field_account(form),
                        False, "transaction_id", "merchant_fields server/login", "Skrill md5sig")


def routing(raw_body: bytes, headers: Mapping[str, str]) -> Routing:
    form = parse_form(raw_body)
    return routing_from(_txn(form), lambda: _account(form))


def _signed_payout(txn: str, status: str, prefix: str) -> bool:
    """Payout or deposit, from signed values only: the reference of the signed transaction_id
    (payouts start with the payout prefix); the payout-only statuses must agree."""
    payout = is_payout_ref(txn.upper(), prefix.upper())
    if status in PAYOUT_ONLY and not payout:
        raise SignatureError(f"status {status} exists for payouts only, but transaction_id "
                             "is not a payout reference", "tampered")
    return payout


def read_skrill(env: Envelope, settings: object) -> list[BalanceOperation]:
    """One `psp.skrill` message -> its operations. Raises Rejected with the reason."""
    ctx: PspContext = context(settings)
    cfg = ctx.provider(PROVIDER)
    form = parse_form(env.value)
    txn = _txn(form)
    status = map_status(STATUSES, form.get("status", ""), "Skrill", "status")
    try:
        payout = _signed_payout(txn, form.get("status", ""), cfg.payout_prefix)
    except SignatureError as exc:
        raise Rejected(exc.reason, "validate") from None
    amount = money(form.get("mb_amount", ""), "mb_amount")
    currency = form.get("mb_currency", "")
    if not _CURRENCY.fullmatch(currency):
        raise Rejected(f"field 'mb_currency': {currency[:10]!r} is not a 3-letter code")
    payment_type = form.get("payment_type", "").strip().upper()
    if payment_type in CARD_TYPES:
        method, instrument = "card", ""
    else:
        method = "bank" if payment_type in BANK_TYPES else "ewallet"
        wallet = form.get("pay_to_email" if payout else "pay_from_email", "")
        instrument = email_instrument(wallet) if method == "ewallet" else ""
    name = " ".join(x for x in (form.get("firstname", "").strip(),
                                form.get("lastname", "").strip()) if x)
    payment = Payment(
        provider=PROVIDER, txn_id=txn, kind="withdrawal" if payout else "deposit",
        amount=amount, currency=currency, status=status, account=_account(form),
        time=env_time(env), method=method, payer_name=name,
        country=country2(form.get("country", "")), instrument=instrument,
        comment=f"skrill {form.get('mb_transaction_id', '').strip()}".strip(),
    )
    return build_ops(env, ctx, payment)
