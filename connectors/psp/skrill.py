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
    as tampered), ``platform`` must match the server's configured platform, and they are used
    alone only with ``allow_unsigned_account: true``.

Transaction and direction
    The transaction is the signed ``transaction_id`` (falling back to Skrill's
    ``mb_transaction_id`` when a payment has none, which then needs ``allow_unsigned_account``
    for its account anyway); ``mb_transaction_id`` goes to the comment. A notification whose
    ``pay_from_email`` is the configured ``merchant_email`` (or whose status only exists for
    payouts: 1 scheduled, -4 returned) is a payout, booked negative; everything else is a
    deposit, positive. Amounts are the signed ``mb_amount`` in ``mb_currency`` (the merchant
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
from collections.abc import Mapping

from connectors.fields import Rejected
from connectors.psp.common import (
    Account,
    Payment,
    PspContext,
    Routing,
    SignatureError,
    account_fields,
    account_ref,
    build_ops,
    context,
    country2,
    currency_code,
    email_instrument,
    env_time,
    equal,
    map_status,
    maybe,
    money,
    parse_form,
    pick_account,
    require_secret,
    routing_from,
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


def verify(
    raw_body: bytes,
    headers: Mapping[str, str],
    secret: str,
    *,
    merchant_id: str = "",
    merchant_email: str = "",
) -> None:
    """Raise SignatureError unless the notification is signed with our secret word."""
    require_secret(secret, PROVIDER)
    form = parse_form(raw_body)
    sig = form.get("md5sig", "")
    if not sig:
        raise SignatureError("missing md5sig")
    if not equal(sig.upper(), md5sig(form, secret)):
        raise SignatureError("md5sig does not match")
    sig2 = form.get("sha2sig", "")
    if sig2 and not equal(sig2.upper(), sha2sig(form, secret)):
        raise SignatureError("sha2sig does not match")
    if merchant_id and not equal(form.get("merchant_id", ""), merchant_id):
        raise SignatureError("merchant_id is not the configured merchant", "foreign_merchant")
    signed, unsigned = maybe(lambda: _signed_account(form)), maybe(lambda: _field_account(form))
    if signed and unsigned and (signed.server, signed.login) != (unsigned.server, unsigned.login):
        raise SignatureError("merchant fields name another account than the signed "
                             "transaction_id", "tampered")
    if merchant_email:
        ours = merchant_email.strip().lower()
        if ours not in (form.get("pay_to_email", "").strip().lower(),
                        form.get("pay_from_email", "").strip().lower()):
            raise SignatureError("neither pay_to_email nor pay_from_email is the merchant's",
                                 "foreign_merchant")


def verify_for(raw_body: bytes, headers: Mapping[str, str], cfg: PspProviderSettings,
               secret: str, now: float | None = None) -> None:
    verify(raw_body, headers, secret, merchant_id=cfg.merchant_id,
           merchant_email=cfg.merchant_email)


def ack(raw_body: bytes, secret: str, now: float) -> tuple[bytes, str, dict[str, str]]:
    """Skrill wants a plain HTTP 200 (it re-posts until it gets one)."""
    return b"OK", "text/plain; charset=utf-8", {}


def _txn(form: Mapping[str, str]) -> str:
    txn = form.get("transaction_id", "").strip() or form.get("mb_transaction_id", "").strip()
    if not txn:
        raise Rejected("missing field 'transaction_id' (and 'mb_transaction_id')")
    return txn


def dedupe_id(raw_body: bytes, headers: Mapping[str, str]) -> str:
    form = parse_form(raw_body)
    status = form.get("status", "").strip()
    if not status:
        raise Rejected("missing field 'status'")
    return f"{_txn(form)}:{status}"


def _signed_account(form: Mapping[str, str]) -> Account:
    return account_ref(form.get("transaction_id", ""), "transaction_id")


def _field_account(form: Mapping[str, str]) -> Account | None:
    if not (form.get("login") or form.get("server")):
        return None
    return account_fields(form.get("server", ""), form.get("login", ""),
                          form.get("platform", ""), "skrill merchant fields")


def _account(form: Mapping[str, str], allow_unsigned: bool) -> Account:
    return pick_account(maybe(lambda: _signed_account(form)), _field_account(form),
                        allow_unsigned, "transaction_id", "merchant_fields server/login",
                        "Skrill md5sig")


def routing(raw_body: bytes, headers: Mapping[str, str]) -> Routing:
    form = parse_form(raw_body)
    return routing_from(_txn(form), lambda: _account(form, True))


def _is_payout(form: Mapping[str, str], cfg: PspProviderSettings) -> bool:
    if form.get("status", "").strip() in PAYOUT_ONLY:
        return True
    ours = cfg.merchant_email.strip().lower()
    return bool(ours) and form.get("pay_from_email", "").strip().lower() == ours


def read_skrill(env: Envelope, settings: object) -> list[BalanceOperation]:
    """One `psp.skrill` message -> its operations. Raises Rejected with the reason."""
    ctx: PspContext = context(settings)
    cfg = ctx.provider(PROVIDER)
    form = parse_form(env.value)
    txn = _txn(form)
    status = map_status(STATUSES, form.get("status", "").strip(), "Skrill", "status")
    payout = _is_payout(form, cfg)
    amount = money(form.get("mb_amount", ""), "mb_amount")
    currency = currency_code(form.get("mb_currency", ""), "mb_currency")
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
        amount=amount, currency=currency, status=status,
        account=_account(form, cfg.allow_unsigned_account),
        time=env_time(env), method=method, payer_name=name,
        country=country2(form.get("country", "")), instrument=instrument,
        comment=f"skrill {form.get('mb_transaction_id', '').strip()}".strip(),
    )
    return build_ops(env, ctx, payment)
