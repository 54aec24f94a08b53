"""Payment connectors: signatures exactly as the providers document them (with their published
example values), the lifecycle of one transaction, signs, fingerprints and a fuzz.

Signatures in the payload builders below are computed independently of the code under test,
straight from each provider's documented formula.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.fields import Rejected
from connectors.psp import coinspaid, common, nuvei, praxis, skrill, stripe
from connectors.psp.common import (
    PspContext,
    SignatureError,
    StaleError,
    fingerprint,
    lifecycle_version,
    scrub_pans,
)
from pipelines.config import ConfigError, Settings, parse_settings
from schemas.envelope import Envelope
from schemas.events import BalanceOperation

NOW = 1_764_000_000  # the wall clock of these tests (unix seconds)
SECRETS = {"skrill": "mysecret", "praxis": "PraxisMerchantSecret", "coinspaid": "AbCdEfG123456",
           "nuvei": "NuveiSecretKey", "stripe": "whsec_test_secret"}
PAN = "4111111111111111"

CONFIG: dict[str, Any] = {
    "tenants": [
        {"id": "acme", "servers": [{"name": "ACME-MT5-Live", "platform": "mt5"},
                                   {"name": "ACME-MT4-Live", "platform": "mt4"}]},
        {"id": "zenith", "servers": [{"name": "Zenith-MT5", "platform": "mt5"}]},
    ],
    "psp": {
        "fingerprint_salt": "test-salt",
        "replay_db": ":memory:",  # a fresh receiver forgets (test_psp_attacks.py uses files)
        "providers": {
            "skrill": {"tenant": "acme", "secret": SECRETS["skrill"], "merchant_id": "299202295",
                       "merchant_email": "pay@acme.example"},
            "praxis": {"tenant": "acme", "secret": SECRETS["praxis"], "merchant_id": "API-Acme",
                       "application_key": "acme-cashier"},
            "coinspaid": {"tenant": "acme", "secret": SECRETS["coinspaid"], "key": "pk_acme"},
            "nuvei": {"tenant": "acme", "secret": SECRETS["nuvei"], "merchant_id": "1234567"},
            "stripe": {"tenant": "acme", "secret": SECRETS["stripe"]},
        },
    },
}


def make_settings() -> Settings:
    return parse_settings(CONFIG, "test")


@pytest.fixture(scope="module")
def cfg() -> Settings:
    return make_settings()


def env(topic: str, body: bytes, ts_ms: int = NOW * 1000, offset: int = 1) -> Envelope:
    return Envelope(topic=topic, value=body, timestamp_ms=ts_ms,
                    headers={"content-type": "x", "received_at": "2025-11-24T16:00:00.000Z"},
                    partition=0, offset=offset)


# -- payloads, signed as documented ------------------------------------------------------------


def skrill_form(status: str = "2", secret: str = SECRETS["skrill"], **over: str | None) -> bytes:
    form: dict[str, str | None] = {
        "pay_to_email": "pay@acme.example", "pay_from_email": "Client@Example.COM",
        "merchant_id": "299202295", "customer_id": "5001",
        "transaction_id": "ACME-MT5-Live:1001:dep-2001",
        "mb_transaction_id": "170032056", "mb_amount": "25.46", "mb_currency": "EUR",
        "status": status, "amount": "30.00", "currency": "USD", "payment_type": "WLT",
        "merchant_fields": "platform,server,login", "platform": "mt5",
        "server": "ACME-MT5-Live", "login": "1001",
    }
    form.update(over)
    fields = {k: v for k, v in form.items() if v is not None}
    word = hashlib.md5(secret.encode()).hexdigest().upper()
    signed = (fields.get("merchant_id", "") + fields.get("transaction_id", "") + word
              + fields.get("mb_amount", "") + fields.get("mb_currency", "")
              + fields.get("status", ""))
    fields.setdefault("md5sig", hashlib.md5(signed.encode()).hexdigest().upper())
    return urlencode(fields).encode()


def praxis_doc(status: str = "approved", ttype: str = "sale", tid: int = 5501,
               amount: int = 150000, currency: str = "USD", **tx: Any) -> dict[str, Any]:
    transaction: dict[str, Any] = {
        "transaction_type": ttype, "transaction_status": status, "tid": tid,
        "transaction_id": "13397", "currency": currency, "amount": amount,
        "conversion_rate": "1.000000", "processed_currency": currency,
        "processed_amount": amount, "fee": 0, "payment_method": "Credit Card",
        "payment_processor": "TestCardProcessor", "gateway": None,
        "card": {"card_token": "J-4-a0vPhjZ9R75JP98VDUFgbh9y8sYr", "card_type": "VISA",
                 "card_number": "411111******1111", "card_exp": "12/2024",
                 "card_issuer_name": "Random Bank, London", "card_issuer_country": "GB"},
        "wallet": None,
    }
    transaction.update(tx)
    return {
        "merchant_id": "API-Acme", "application_key": "acme-cashier",
        "conversion_rate": "1.000000",
        "customer": {"customer_token": "87cfb23a8f1e68e162c276b754d9c061", "country": "GB",
                     "first_name": "John", "last_name": "Johnson", "avs_alert": 0,
                     "verification_alert": None},
        "session": {"auth_token": "8a7sd87a8sd778ac961062c6bedddb8", "intent": "payment",
                    "session_status": "created", "order_id": "ACME-MT5-Live:1001:ord-77a",
                    "currency": currency, "amount": amount, "cid": "client-1001"},
        "transaction": transaction,
        "version": "1.3",
        "timestamp": NOW,
    }


def praxis_signature(doc: Mapping[str, Any], secret: str = SECRETS["praxis"]) -> str:
    """The documented concatenation, written out by hand (null values skipped)."""
    cust, sess, tx = doc.get("customer") or {}, doc.get("session") or {}, doc.get("transaction") or {}
    values = [doc.get("merchant_id"), doc.get("application_key"), doc.get("timestamp"),
              cust.get("customer_token"), sess.get("order_id"), tx.get("tid"),
              tx.get("currency"), tx.get("amount"), tx.get("conversion_rate"),
              tx.get("processed_currency"), tx.get("processed_amount")]
    text = "".join(str(v) for v in values if v is not None) + secret
    return hashlib.sha384(text.encode()).hexdigest()


def praxis_request(doc: dict[str, Any], secret: str = SECRETS["praxis"]) -> tuple[bytes, dict[str, str]]:
    return orjson.dumps(doc), {"GT-Authentication": praxis_signature(doc, secret),
                               "Content-Type": "application/json; charset=utf-8"}


def coinspaid_doc(status: str = "confirmed", kind: str = "deposit", txn: int = 1,
                  **over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": txn, "type": kind,
        "crypto_address": {"id": 1, "currency": "BTC",
                           "address": "39mFf3X46YzUtfdwVQpYXPCMydc74ccbAZ",
                           "foreign_id": "ACME-MT5-Live:1001", "tag": None},
        "currency_sent": {"currency": "BTC", "amount": "6.53157512"},
        "currency_received": {"currency": "BTC", "amount": "6.53157512",
                              "amount_minus_fee": "6.5119800"},
        "transactions": [{"id": 1, "currency": "BTC", "transaction_type": "blockchain",
                          "type": kind, "address": "39mFf3X46YzUtfdwVQpYXPCMydc74ccbAZ",
                          "tag": None, "amount": "6.53157512",
                          "txid": "3950ad8149421a850d01dff88f024810e363ac18c9e8dd9bc0b9116e7937ad93",
                          "confirmations": 3}],
        "fees": [{"type": "deposit", "currency": "BTC", "amount": "0.01959472"}],
        "error": "", "status": status,
    }
    doc.update(over)
    return doc


def coinspaid_request(body: bytes, secret: str = SECRETS["coinspaid"],
                      key: str = "pk_acme") -> dict[str, str]:
    sig = hmac.new(secret.encode(), body, hashlib.sha512).hexdigest()
    return {"X-Processing-Key": key, "X-Processing-Signature": sig,
            "Content-Type": "application/json"}


def nuvei_form(status: str = "APPROVED", ttype: str = "Sale", txn: str = "711000000019876543",
               secret: str = SECRETS["nuvei"], stamp: str = "2025-11-24.16:00:00",
               **over: str | None) -> bytes:
    form: dict[str, str | None] = {
        "ppp_status": "OK", "Status": status, "ExErrCode": "0", "ErrCode": "0",
        "PPP_TransactionID": "412345678", "TransactionID": txn, "userid": "user_98765",
        "merchant_unique_id": "ACME-MT5-Live:1001:inv-100123", "merchant_id": "1234567",
        "merchant_site_id": "987654", "responseTimeStamp": stamp,
        "productId": "ACME-MT5-Live:1001", "totalAmount": "49.99", "currency": "USD",
        "transactionType": ttype, "payment_method": "cc_card", "nameOnCard": "Alex Doe",
        "bin": "411111", "last4Digits": "1111", "expMonth": "12", "expYear": "27",
        "cardCompany": "VISA", "countryCode": "US", "customField1": "ACME-MT5-Live:1001",
    }
    form.update(over)
    fields = {k: v for k, v in form.items() if v is not None}
    signed = (secret + fields.get("totalAmount", "") + fields.get("currency", "")
              + fields.get("responseTimeStamp", "") + fields.get("PPP_TransactionID", "")
              + fields.get("Status", "") + fields.get("productId", ""))
    fields.setdefault("advanceResponseChecksum", hashlib.sha256(signed.encode()).hexdigest())
    return urlencode(fields).encode()


NUVEI_NOW = 1_764_000_000.0  # = 2025-11-24 16:00:00 UTC


def stripe_event(event_type: str = "payment_intent.succeeded", evt: str = "evt_1",
                 obj: dict[str, Any] | None = None, **over: Any) -> dict[str, Any]:
    o: dict[str, Any] = obj or {
        "id": "pi_3Mtw", "object": "payment_intent", "amount": 2000, "amount_received": 2000,
        "currency": "usd", "status": "succeeded", "payment_method_types": ["card"],
        "metadata": {"server": "ACME-MT5-Live", "login": "1001", "platform": "mt5"},
    }
    doc = {"id": evt, "object": "event", "api_version": "2024-06-20", "created": NOW,
           "type": event_type, "livemode": False, "data": {"object": o}}
    doc.update(over)
    return doc


def stripe_request(body: bytes, secret: str = SECRETS["stripe"], t: int = NOW,
                   extra_v1: tuple[str, ...] = ()) -> dict[str, str]:
    sig = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    parts = [f"t={t}", *(f"v1={v}" for v in extra_v1), f"v1={sig}", "v0=6ffbb59b2300aae63f27"]
    return {"Stripe-Signature": ",".join(parts), "Content-Type": "application/json"}


def charge(pi: str = "pi_3Mtw", **over: Any) -> dict[str, Any]:
    c: dict[str, Any] = {
        "id": "ch_3Mtw", "object": "charge", "amount": 2000, "amount_refunded": 0,
        "currency": "usd", "payment_intent": pi, "status": "succeeded",
        "billing_details": {"name": "Jenny Rosen", "email": "jenny@example.com",
                            "address": {"country": "DE"}},
        "payment_method_details": {"type": "card", "card": {
            "brand": "visa", "last4": "4242", "exp_month": 8, "exp_year": 2026, "country": "US"}},
        "metadata": {"server": "ACME-MT5-Live", "login": "1001"},
    }
    c.update(over)
    return c


# -- published example values ------------------------------------------------------------------


def test_coinspaid_published_signature_example() -> None:
    # docs.cryptoprocessing.com (CoinsPaid), "Authorisation": secret AbCdEfG123456.
    body = b'{"currency":"BTC","foreign_id":"123456"}'
    published = ("03c25fcf7cd35e7d995e402cd5d51edd72d48e1471e865907967809a0c189ba55b90815f2"
                 "0e2bb10f82c7a9e9d865546fda58989c2ae9e8e2ff7bc29195fa1ec")
    assert coinspaid.signature(body, "AbCdEfG123456") == published
    coinspaid.verify(body, {"X-Processing-Key": "k", "X-Processing-Signature": published},
                     "AbCdEfG123456", key="k")


def test_nuvei_published_checksum_example() -> None:
    # A public Nuvei plugin test vector (secret THE_SECRET_KEY).
    form = {"totalAmount": "115", "currency": "USD", "responseTimeStamp": "2020-03-14.16:22:34",
            "PPP_TransactionID": "3453459", "Status": "APPROVED", "productId": "NA"}
    published = "aaa9ad16c8ed9f172dff505e4eeb8929b9c77cfed3e38127d55d42e33a70c762"
    assert nuvei.checksum(form, "THE_SECRET_KEY") == published
    body = urlencode({**form, "advanceResponseChecksum": published}).encode()
    nuvei.verify(body, {}, "THE_SECRET_KEY", tolerance_s=0)
    with pytest.raises(StaleError):
        nuvei.verify(body, {}, "THE_SECRET_KEY", now=NUVEI_NOW)


def test_skrill_published_concatenation_example() -> None:
    # Paysafe/Skrill docs: merchant 299202295, transaction frn123merid, 20.45 GBP; the secret
    # word's upper-case MD5 is EE38B95C14D6CC07F48EF550C4474EE3 (the same building block
    # and order as md5sig, which appends the status).
    form = {"merchant_id": "299202295", "transaction_id": "frn123merid", "mb_amount": "20.45",
            "mb_currency": "GBP", "status": "2"}
    assert skrill.signed_string(form, "EE38B95C14D6CC07F48EF550C4474EE3") == (
        "299202295frn123meridEE38B95C14D6CC07F48EF550C4474EE320.45GBP2")
    assert skrill.secret_word_hash("mysecret") == hashlib.md5(b"mysecret").hexdigest().upper()


# -- signatures: good, bad, tampered, stale -----------------------------------------------------


def test_skrill_signature() -> None:
    body = skrill_form()
    skrill.verify(body, {}, SECRETS["skrill"], merchant_id="299202295",
                  merchant_email="pay@acme.example")
    with pytest.raises(SignatureError):
        skrill.verify(body, {}, "other", merchant_id="299202295")
    with pytest.raises(SignatureError):  # tampered amount
        skrill.verify(body.replace(b"mb_amount=25.46", b"mb_amount=95.46"), {}, SECRETS["skrill"])
    with pytest.raises(SignatureError):
        skrill.verify(skrill_form(md5sig=""), {}, SECRETS["skrill"])
    with pytest.raises(SignatureError):
        skrill.verify(body, {}, "")
    with pytest.raises(SignatureError) as foreign:
        skrill.verify(body, {}, SECRETS["skrill"], merchant_id="999")
    assert foreign.value.code == "foreign_merchant"
    with pytest.raises(SignatureError):
        skrill.verify(body, {}, SECRETS["skrill"], merchant_email="someone@else.example")
    # sha2sig, when Skrill sends it, must match too
    form = dict(item.split("=", 1) for item in body.decode().split("&"))
    with pytest.raises(SignatureError):
        skrill.verify(body + b"&sha2sig=" + b"AB" * 32, {}, SECRETS["skrill"])
    assert form["md5sig"] == skrill.md5sig(
        {"merchant_id": "299202295", "transaction_id": "ACME-MT5-Live:1001:dep-2001",
         "mb_amount": "25.46",
         "mb_currency": "EUR", "status": "2"}, SECRETS["skrill"])
    with pytest.raises(Rejected):  # a field given twice is ambiguous, whatever its signature
        skrill.verify(body + b"&status=2", {}, SECRETS["skrill"])
    # merchant_fields are not signed: naming another account than transaction_id is tampering
    with pytest.raises(SignatureError) as tampered:
        skrill.verify(body.replace(b"login=1001", b"login=1002"), {}, SECRETS["skrill"])
    assert tampered.value.code == "tampered"


def test_praxis_signature() -> None:
    body, headers = praxis_request(praxis_doc())
    kw: dict[str, Any] = {"merchant_id": "API-Acme", "application_key": "acme-cashier",
                          "now": NOW}
    praxis.verify(body, headers, SECRETS["praxis"], **kw)
    praxis.verify(body, {"gt-authentication": headers["GT-Authentication"].upper()},
                  SECRETS["praxis"], **kw)
    with pytest.raises(SignatureError):
        praxis.verify(body, headers, "wrong", **kw)
    with pytest.raises(SignatureError):
        praxis.verify(body.replace(b"150000", b"950000"), headers, SECRETS["praxis"], **kw)
    with pytest.raises(SignatureError):
        praxis.verify(body, {}, SECRETS["praxis"], **kw)
    ids = {"merchant_id": "API-Acme", "application_key": "acme-cashier"}
    with pytest.raises(StaleError):
        praxis.verify(body, headers, SECRETS["praxis"], tolerance_s=60, now=NOW + 61, **ids)
    praxis.verify(body, headers, SECRETS["praxis"], tolerance_s=60, now=NOW + 59, **ids)
    with pytest.raises(SignatureError) as unconfigured:  # the fixed start of the concatenation
        praxis.verify(body, headers, SECRETS["praxis"], now=NOW)
    assert unconfigured.value.code == "not_configured"
    other_body, other_headers = praxis_request({**praxis_doc(), "merchant_id": "API-Other"})
    with pytest.raises(SignatureError):
        praxis.verify(other_body, other_headers, SECRETS["praxis"], **kw)
    # session.cid is not signed: naming another account than the order id is tampering
    tampered_doc = praxis_doc()
    tampered_doc["session"]["cid"] = "ACME-MT5-Live:1002"
    with pytest.raises(SignatureError) as tampered:
        praxis.verify(*praxis_request(tampered_doc), SECRETS["praxis"], **kw)
    assert tampered.value.code == "tampered"
    # absent values are skipped: no conversion rate, no processed amount
    doc = praxis_doc(conversion_rate=None, processed_currency=None, processed_amount=None)
    praxis.verify(*praxis_request(doc), SECRETS["praxis"], **kw)


def test_coinspaid_signature() -> None:
    body = orjson.dumps(coinspaid_doc())
    headers = coinspaid_request(body)
    coinspaid.verify(body, headers, SECRETS["coinspaid"], key="pk_acme")
    with pytest.raises(SignatureError):
        coinspaid.verify(body, coinspaid_request(body, key="pk_other"), SECRETS["coinspaid"],
                         key="pk_acme")
    with pytest.raises(SignatureError):
        coinspaid.verify(body + b" ", headers, SECRETS["coinspaid"], key="pk_acme")
    with pytest.raises(SignatureError):
        coinspaid.verify(body, coinspaid_request(body, secret="nope"), SECRETS["coinspaid"],
                         key="pk_acme")
    with pytest.raises(SignatureError):
        coinspaid.verify(body, {"X-Processing-Key": "pk_acme"}, SECRETS["coinspaid"],
                         key="pk_acme")


def test_nuvei_signature() -> None:
    body = nuvei_form()
    nuvei.verify(body, {}, SECRETS["nuvei"], merchant_id="1234567", now=NUVEI_NOW)
    with pytest.raises(SignatureError):
        nuvei.verify(body, {}, "wrong", now=NUVEI_NOW)
    with pytest.raises(SignatureError):
        nuvei.verify(body.replace(b"totalAmount=49.99", b"totalAmount=99.99"), {},
                     SECRETS["nuvei"], now=NUVEI_NOW)
    with pytest.raises(SignatureError):
        nuvei.verify(body, {}, SECRETS["nuvei"], merchant_id="7654321", now=NUVEI_NOW)
    with pytest.raises(StaleError):
        nuvei.verify(body, {}, SECRETS["nuvei"], tolerance_s=300, now=NUVEI_NOW + 301)
    with pytest.raises(SignatureError):  # a signed but unreadable time can't be checked
        nuvei.verify(nuvei_form(stamp="yesterday"), {}, SECRETS["nuvei"], now=NUVEI_NOW)
    with pytest.raises(SignatureError) as tampered:  # customField1 is outside the checksum
        nuvei.verify(nuvei_form(customField1="ACME-MT5-Live:1002"), {}, SECRETS["nuvei"],
                     now=NUVEI_NOW)
    assert tampered.value.code == "tampered"


def test_stripe_signature() -> None:
    body = orjson.dumps(stripe_event())
    headers = stripe_request(body)
    stripe.verify(body, headers, SECRETS["stripe"], now=NOW)
    # several v1 (secret rotation): any one matching is enough
    stripe.verify(body, stripe_request(body, extra_v1=("00" * 32,)), SECRETS["stripe"], now=NOW)
    with pytest.raises(SignatureError):
        stripe.verify(body, headers, "whsec_other", now=NOW)
    with pytest.raises(SignatureError):
        stripe.verify(body.replace(b"2000", b"9000"), headers, SECRETS["stripe"], now=NOW)
    with pytest.raises(StaleError):
        stripe.verify(body, headers, SECRETS["stripe"], now=NOW + 301)
    with pytest.raises(StaleError):
        stripe.verify(body, headers, SECRETS["stripe"], now=NOW - 301)
    stripe.verify(body, headers, SECRETS["stripe"], now=NOW + 299)
    with pytest.raises(SignatureError):
        stripe.verify(body, {"Stripe-Signature": "t=abc,v1=00"}, SECRETS["stripe"], now=NOW)
    with pytest.raises(SignatureError):
        stripe.verify(body, {"Stripe-Signature": f"t={NOW}"}, SECRETS["stripe"], now=NOW)
    assert stripe.sign_header(body, SECRETS["stripe"], NOW).split(",")[1] in \
        headers["Stripe-Signature"]


# -- reading: lifecycle, direction, amounts -----------------------------------------------------


def one(ops: list[BalanceOperation]) -> BalanceOperation:
    assert len(ops) == 1, ops
    return ops[0]


def test_skrill_lifecycle_pending_approved_chargeback(cfg: Settings) -> None:
    t = NOW * 1000
    pending = one(skrill.read_skrill(env("psp.skrill", skrill_form("0"), t), cfg))
    approved = one(skrill.read_skrill(env("psp.skrill", skrill_form("2"), t + 5_000), cfg))
    back = skrill.read_skrill(env("psp.skrill", skrill_form("-3"), t + 86_400_000 * 30), cfg)
    key = "psp:skrill:ACME-MT5-Live:1001:dep-2001"
    assert pending.op_key == approved.op_key == back[0].op_key == key
    assert (pending.status, approved.status, back[0].status) == ("pending", "approved",
                                                                 "chargeback")
    assert pending.version < approved.version < back[0].version
    assert approved.amount == Decimal("25.46") and approved.currency == "EUR"  # signed fields
    assert approved.kind == "deposit" and approved.tenant == "acme"
    assert approved.server == "ACME-MT5-Live" and approved.login == 1001
    assert approved.platform == "psp" and approved.provider == "skrill"
    assert approved.method == "ewallet"
    de = one(skrill.read_skrill(env("psp.skrill", skrill_form(country="DEU")), cfg))
    assert de.country == "DE"  # Skrill sends alpha-3
    reversal = back[1]
    assert reversal.op_key == key + ":chargeback" and approved.comment == "skrill 170032056"
    assert reversal.kind == "chargeback" and reversal.amount == Decimal("-25.46")
    assert reversal.login == 1001 and reversal.status == "chargeback"
    # what moved: approved + chargeback states of both operations net to zero
    assert back[0].amount + reversal.amount == 0


def test_versions_later_state_wins_even_at_equal_timestamps(cfg: Settings) -> None:
    t = NOW * 1000
    same = [one(skrill.read_skrill(env("psp.skrill", skrill_form(s), t), cfg)) for s in "02"]
    assert same[0].version < same[1].version
    # a provider retry of "pending" delivered a minute after "approved" does not roll back
    late_pending = one(skrill.read_skrill(env("psp.skrill", skrill_form("0"), t + 60_000), cfg))
    assert late_pending.version < same[1].version
    # replaying the same message gives the same key and version: harmless downstream
    again = one(skrill.read_skrill(env("psp.skrill", skrill_form("2"), t, offset=99), cfg))
    assert (again.op_key, again.version) == (same[1].op_key, same[1].version)
    assert lifecycle_version(t, "chargeback") > lifecycle_version(t, "refunded") > \
        lifecycle_version(t, "declined") > lifecycle_version(t, "pending")


def test_praxis_lifecycle_and_refund_transaction(cfg: Settings) -> None:
    t = NOW * 1000
    states = ["pending", "approved", "chargeback"]
    results = [praxis.read_praxis(env("psp.praxis", praxis_request(praxis_doc(s))[0], t + i),
                                  cfg) for i, s in enumerate(states)]
    main = [r[0] for r in results]
    assert [m.status for m in main] == states
    assert len({m.op_key for m in main}) == 1 and main[0].op_key == "psp:praxis:5501"
    assert main[0].version < main[1].version < main[2].version
    assert main[1].amount == Decimal("1500.00") and main[1].currency == "USD"
    assert main[1].payer_name == "John Johnson" and main[1].country == "GB"
    assert main[1].method == "card" and main[1].comment == "ACME-MT5-Live:1001:ord-77a"
    assert [o.op_key for o in results[2]] == ["psp:praxis:5501", "psp:praxis:5501:chargeback"]
    assert results[2][1].amount == Decimal("-1500.00")
    # a refund is a transaction of its own (kind refund, negative); the sale's "refund" status
    # does not book the money a second time
    refund = one(praxis.read_praxis(env("psp.praxis", praxis_request(
        praxis_doc("approved", "refund", tid=5600, amount=50000))[0]), cfg))
    assert refund.kind == "refund" and refund.amount == Decimal("-500.00")
    assert refund.status == "approved"
    sale_refunded = one(praxis.read_praxis(env("psp.praxis", praxis_request(
        praxis_doc("partial_refund"))[0]), cfg))
    assert sale_refunded.status == "refunded" and sale_refunded.amount == Decimal("1500.00")
    # "reversed" (refunded at the PSP, no Praxis refund transaction) books the reversal
    reversed_ = praxis.read_praxis(env("psp.praxis", praxis_request(praxis_doc("reversed"))[0]),
                                   cfg)
    assert [o.op_key for o in reversed_] == ["psp:praxis:5501", "psp:praxis:5501:refund"]
    # an expired session (no transaction) books nothing
    expired = {**praxis_doc(), "transaction": None}
    assert praxis.read_praxis(env("psp.praxis", orjson.dumps(expired)), cfg) == []


def test_withdrawals_are_negative(cfg: Settings) -> None:
    payout = one(skrill.read_skrill(env("psp.skrill", skrill_form(
        "2", pay_from_email="PAY@acme.example", pay_to_email="client@example.com",
        merchant_fields=None, platform=None, server=None, login=None,
        transaction_id="ACME-MT4-Live:2002:wd-9", amount=None, currency=None)), cfg))
    assert payout.op_key == "psp:skrill:ACME-MT4-Live:2002:wd-9"
    assert payout.kind == "withdrawal" and payout.amount == Decimal("-25.46")
    assert payout.currency == "EUR" and (payout.server, payout.login) == ("ACME-MT4-Live", 2002)
    payout_doc = praxis_doc("approved", "payout", amount=12345)
    payout_doc["session"]["order_id"] = "ACME-MT5-Live:1001:WD-77a"  # a payout reference
    px = one(praxis.read_praxis(env("psp.praxis", praxis_request(payout_doc)[0]), cfg))
    assert px.kind == "withdrawal" and px.amount == Decimal("-123.45")
    cp = one(coinspaid.read_coinspaid(env("psp.coinspaid", orjson.dumps(coinspaid_doc(
        kind="withdrawal", foreign_id="ACME-MT5-Live:1001:wd-1",
        currency_sent={"currency": "BTC", "amount": "0.02000000"}))), cfg))
    assert cp.kind == "withdrawal" and cp.amount == Decimal("-0.02000000")
    assert cp.method == "crypto"
    nv = one(nuvei.read_nuvei(env("psp.nuvei", nuvei_form(
        ttype="Payout", productId="ACME-MT5-Live:1001:WD-5")), cfg))
    assert nv.kind == "withdrawal" and nv.amount == Decimal("-49.99")
    po = {"id": "po_1", "object": "payout", "amount": 1100, "currency": "eur",
          "metadata": {"server": "ACME-MT5-Live", "login": "1001"}}
    st_ = one(stripe.read_stripe(env("psp.stripe", orjson.dumps(stripe_event(
        "payout.paid", obj=po))), cfg))
    assert st_.kind == "withdrawal" and st_.amount == Decimal("-11.00")
    assert st_.currency == "EUR" and st_.status == "approved"


def test_amounts_are_exact_decimals(cfg: Settings) -> None:
    dep = one(coinspaid.read_coinspaid(env("psp.coinspaid", orjson.dumps(coinspaid_doc(
        currency_received={"currency": "USDT", "amount": "0.10000001"}))), cfg))
    assert dep.amount == Decimal("0.10000001") and str(dep.amount) == "0.10000001"
    assert dep.op_key == "psp:coinspaid:1" and dep.status == "approved"
    jpy = one(praxis.read_praxis(env("psp.praxis", praxis_request(
        praxis_doc(amount=5000, currency="JPY"))[0]), cfg))
    assert jpy.amount == Decimal("5000")
    bhd = one(praxis.read_praxis(env("psp.praxis", praxis_request(
        praxis_doc(amount=1234, currency="BHD"))[0]), cfg))
    assert bhd.amount == Decimal("1.234")
    with pytest.raises(Rejected, match="decimal strings"):  # floats never become money
        coinspaid.read_coinspaid(env("psp.coinspaid", orjson.dumps(coinspaid_doc(
            currency_received={"currency": "BTC", "amount": 0.1}))), cfg)
    for bad in ("-1", "abc", "NaN", "1e999", ""):
        with pytest.raises(Rejected):
            skrill.read_skrill(env("psp.skrill", skrill_form(mb_amount=bad)), cfg)


def test_unknown_accounts_and_statuses_are_rejected(cfg: Settings) -> None:
    cases: list[tuple[Callable[..., Any], str, bytes]] = [
        (skrill.read_skrill, "psp.skrill", skrill_form(
            transaction_id="Nowhere-MT5:1001:x", server="Nowhere-MT5")),
        (skrill.read_skrill, "psp.skrill", skrill_form(  # another tenant's server
            transaction_id="Zenith-MT5:1001:x", server="Zenith-MT5")),
        (skrill.read_skrill, "psp.skrill", skrill_form(platform="mt4")),  # wrong platform
        (skrill.read_skrill, "psp.skrill", skrill_form(login="12a")),
        (skrill.read_skrill, "psp.skrill", skrill_form(transaction_id="dep-1")),  # unsigned only
        (skrill.read_skrill, "psp.skrill", skrill_form(login="1002")),  # disagrees
        (skrill.read_skrill, "psp.skrill", skrill_form(status="7")),
        (praxis.read_praxis, "psp.praxis", orjson.dumps({**praxis_doc(), "session": {
            "order_id": "order-without-account"}})),
        (coinspaid.read_coinspaid, "psp.coinspaid", orjson.dumps(coinspaid_doc(
            crypto_address={"address": "x", "foreign_id": None}))),
        (coinspaid.read_coinspaid, "psp.coinspaid", orjson.dumps(coinspaid_doc(
            kind="exchange"))),
        (nuvei.read_nuvei, "psp.nuvei", nuvei_form(productId="Deposit", customField1=None,
                                                   merchant_unique_id="inv-1")),
        (nuvei.read_nuvei, "psp.nuvei", nuvei_form(productId="Deposit")),  # unsigned only
        (stripe.read_stripe, "psp.stripe", orjson.dumps(stripe_event(obj={
            "id": "pi_x", "amount": 100, "currency": "usd", "metadata": {}}))),
    ]
    for read, topic, body in cases:
        with pytest.raises(Rejected) as exc:
            read(env(topic, body), cfg)
        assert exc.value.reason


def test_unsigned_account_fields_are_never_enough() -> None:
    # the old allow_unsigned_account let an unsigned field name the account: no longer
    doc = {**CONFIG, "psp": {**CONFIG["psp"], "providers": {
        name: {**p, "allow_unsigned_account": True}
        for name, p in CONFIG["psp"]["providers"].items()}}}
    with pytest.raises(ConfigError, match="allow_unsigned_account"):
        parse_settings(doc, "test")
    cfg = make_settings()
    with pytest.raises(Rejected, match="signature does not cover"):
        skrill.read_skrill(env("psp.skrill", skrill_form(transaction_id="dep-1")), cfg)
    with pytest.raises(Rejected, match="signature does not cover"):
        nuvei.read_nuvei(env("psp.nuvei", nuvei_form(productId="Deposit")), cfg)
    with pytest.raises(Rejected, match="signed transaction_id"):  # disagreeing: never
        skrill.read_skrill(env("psp.skrill", skrill_form(login="1002")), cfg)


def test_nuvei_auth_and_the_dmns_whose_payment_is_unsigned(cfg: Settings) -> None:
    # the signed PPP_TransactionID is the transaction; TransactionID only goes to the comment
    auth = one(nuvei.read_nuvei(env("psp.nuvei", nuvei_form(ttype="Auth", txn="900")), cfg))
    assert auth.op_key == "psp:nuvei:412345678" and auth.status == "pending"
    assert "900" in auth.comment
    assert auth.payer_name == "Alex Doe" and auth.country == "US" and auth.method == "card"
    # Settle, Void, Credit and Chargeback name the payment only in relatedTransactionId,
    # outside the checksum: refused by the receiver, a dead letter if one reaches the engine
    for ttype in ("Settle", "Void", "Credit", "Chargeback"):
        body = nuvei_form(ttype=ttype, txn="901", relatedTransactionId="900")
        with pytest.raises(SignatureError) as refused:
            nuvei.verify(body, {}, SECRETS["nuvei"], now=NUVEI_NOW)
        assert refused.value.code == "unsigned_identity"
        with pytest.raises(Rejected, match="relatedTransactionId"):
            nuvei.read_nuvei(env("psp.nuvei", body), cfg)


def test_stripe_refund_and_dispute(cfg: Settings) -> None:
    refunded = stripe.read_stripe(env("psp.stripe", orjson.dumps(stripe_event(
        "charge.refunded", evt="evt_2", obj=charge(amount_refunded=500, refunded=False)))), cfg)
    assert [o.op_key for o in refunded] == ["psp:stripe:pi_3Mtw", "psp:stripe:pi_3Mtw:refund"]
    assert refunded[0].amount == Decimal("20.00") and refunded[1].amount == Decimal("-5.00")
    assert refunded[0].payer_name == "Jenny Rosen" and refunded[0].country == "DE"
    dispute = {"id": "dp_1", "object": "dispute", "amount": 2000, "currency": "usd",
               "charge": charge(), "payment_intent": "pi_3Mtw", "status": "needs_response",
               "metadata": {}}
    lost = stripe.read_stripe(env("psp.stripe", orjson.dumps(stripe_event(
        "charge.dispute.created", evt="evt_3", obj=dispute))), cfg)
    assert [(o.op_key, o.status, o.amount) for o in lost] == [
        ("psp:stripe:pi_3Mtw", "chargeback", Decimal("20.00")),
        ("psp:stripe:pi_3Mtw:chargeback", "chargeback", Decimal("-20.00"))]
    won = stripe.read_stripe(env("psp.stripe", orjson.dumps(stripe_event(
        "charge.dispute.closed", evt="evt_4", obj={**dispute, "status": "won"})),
        NOW * 1000 + 40 * 86_400_000), cfg)
    assert [(o.op_key, o.status) for o in won] == [
        ("psp:stripe:pi_3Mtw", "approved"), ("psp:stripe:pi_3Mtw:chargeback", "cancelled")]
    assert won[1].version > lost[1].version
    ignored = stripe_event("customer.created", obj={"id": "cus_1"})
    assert stripe.read_stripe(env("psp.stripe", orjson.dumps(ignored)), cfg) == []


def test_dedupe_ids_are_provider_id_and_status() -> None:
    assert skrill.dedupe_id(skrill_form("0"), {}) == "ACME-MT5-Live:1001:dep-2001:0"
    assert skrill.dedupe_id(skrill_form("2"), {}) == "ACME-MT5-Live:1001:dep-2001:2"
    assert praxis.dedupe_id(praxis_request(praxis_doc())[0], {}) == "5501:approved"
    assert coinspaid.dedupe_id(orjson.dumps(coinspaid_doc("not_confirmed")), {}) == \
        "1:not_confirmed"
    assert nuvei.dedupe_id(nuvei_form(), {}) == "412345678:APPROVED:Sale"  # the signed id
    assert stripe.dedupe_id(orjson.dumps(stripe_event()), {}) == \
        "evt_1:payment_intent.succeeded"
    route = praxis.routing(praxis_request(praxis_doc())[0], {})
    assert (route.txn_id, route.server, route.login, route.key) == (
        "5501", "ACME-MT5-Live", "1001", "1001")
    unknown = coinspaid.routing(orjson.dumps(coinspaid_doc(crypto_address={})), {})
    assert (unknown.server, unknown.key) == ("", "1")


# -- fingerprints and card numbers --------------------------------------------------------------


def all_text(op: BalanceOperation) -> str:
    return " ".join(str(v) for v in op.model_dump().values())


def test_fingerprints_never_hold_the_pan(cfg: Settings) -> None:
    masked = one(praxis.read_praxis(env("psp.praxis", praxis_request(praxis_doc())[0]), cfg))
    full_card = {"card_number": PAN, "card_exp": "12/24", "card_holder": f"J J {PAN}"}
    full = one(praxis.read_praxis(env("psp.praxis", praxis_request(praxis_doc(
        card=full_card))[0]), cfg))
    assert PAN not in all_text(full)
    assert "411111******1111" in full.payer_name
    # BIN + last 4 + expiry: the same card, masked or not, has the same fingerprint
    assert full.instrument_fingerprint == masked.instrument_fingerprint
    assert len(full.instrument_fingerprint) == 64
    int(full.instrument_fingerprint, 16)
    expected = fingerprint("acme", "test-salt", "card:411111:1111:12/2024")
    assert full.instrument_fingerprint == expected
    # tenant-scoped: another tenant's salt gives another fingerprint
    assert fingerprint("zenith", "test-salt", "card:411111:1111:12/2024") != expected
    # e-wallets: the e-mail, lower-cased
    a = one(skrill.read_skrill(env("psp.skrill", skrill_form()), cfg))
    b = one(skrill.read_skrill(env("psp.skrill", skrill_form(
        pay_from_email=" client@example.com ")), cfg))
    assert a.instrument_fingerprint == b.instrument_fingerprint != ""
    # crypto: the address
    c = one(coinspaid.read_coinspaid(env("psp.coinspaid", orjson.dumps(coinspaid_doc())), cfg))
    assert c.instrument_fingerprint == fingerprint(
        "acme", "test-salt", "crypto:39mFf3X46YzUtfdwVQpYXPCMydc74ccbAZ")
    # a PAN in a free-text field is masked too
    stripe_op = stripe.read_stripe(env("psp.stripe", orjson.dumps(stripe_event(
        "charge.succeeded", obj=charge(description=f"card {PAN[:4]} {PAN[4:8]} {PAN[8:12]} "
                                                   f"{PAN[12:]}")))), cfg)[0]
    assert "4111 1111 1111 1111" not in stripe_op.comment
    assert stripe_op.comment == "card 4111 11** **** 1111"


def test_scrub_pans_masks_card_numbers_under_any_key() -> None:
    # no key is trusted for its name (an "id" can hold a card number); see tests/test_pan_masking.py
    doc = {"id": 4111111111111111, "tid": "4111111111111111",
           "card": {"card_number": PAN, "note": f"paid with {PAN}"}, "n": 5555555555554444}
    body, count = scrub_pans(orjson.dumps(doc), form=False)
    out = orjson.loads(body)
    assert count == 5 and out["id"] == "411111******1111" and out["tid"] == "411111******1111"
    assert out["card"] == {"card_number": "411111******1111",
                           "note": "paid with 411111******1111"}
    assert out["n"] == "555555******4444"
    form, count = scrub_pans(urlencode({"TransactionID": PAN, "cardNumber": PAN}).encode(), True)
    assert count == 2 and PAN.encode() not in form
    assert b"cardNumber=411111%2A%2A%2A%2A%2A%2A1111" in form
    untouched = orjson.dumps(coinspaid_doc())
    assert scrub_pans(untouched, form=False) == (untouched, 0)


# -- the context the normaliser uses ----------------------------------------------------------


def test_psp_readers_for_the_normaliser(cfg: Settings) -> None:
    readers = common.psp_readers(cfg)
    assert sorted(readers) == ["psp.coinspaid", "psp.nuvei", "psp.praxis", "psp.skrill",
                               "psp.stripe"]
    ops = readers["psp.skrill"](env("psp.skrill", skrill_form()), object())
    assert ops[0].op_key == "psp:skrill:ACME-MT5-Live:1001:dep-2001"
    ctx = PspContext.from_settings(cfg)
    assert skrill.read_skrill(env("psp.skrill", skrill_form()), ctx) == ops
    bare = parse_settings({"tenants": CONFIG["tenants"]}, "test")
    with pytest.raises(Rejected, match="not configured"):
        skrill.read_skrill(env("psp.skrill", skrill_form()), bare)


def test_secret_from_environment(monkeypatch: pytest.MonkeyPatch, cfg: Settings) -> None:
    assert cfg.psp.secret_for("skrill") == SECRETS["skrill"]
    monkeypatch.setenv("BROKERSTREAM_PSP_SKRILL_SECRET", "from-env")
    assert cfg.psp.secret_for("skrill") == "from-env"
    assert cfg.psp.secret_for("unknown") == ""
    with pytest.raises(ValueError, match="unknown provider"):
        parse_settings({**CONFIG, "psp": {"providers": {"skril": {"tenant": "acme"}}}})


# -- fuzz: only SignatureError / Rejected ever leave a connector ------------------------------

MODULES = {"skrill": skrill, "praxis": praxis, "coinspaid": coinspaid, "nuvei": nuvei,
           "stripe": stripe}
FUZZ_CFG = make_settings()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10),
                                                                      children, max_size=4),
    max_leaves=12,
)
header_maps = st.dictionaries(
    st.sampled_from(["GT-Authentication", "Stripe-Signature", "X-Processing-Key",
                     "X-Processing-Signature", "content-type", "x-other"]),
    st.text(max_size=80), max_size=5)


def exercise(name: str, body: bytes, headers: Mapping[str, str]) -> None:
    module = MODULES[name]
    calls: list[Callable[[], Any]] = [
        lambda: module.verify_for(body, headers, FUZZ_CFG.psp.providers[name], SECRETS[name],
                                  NOW),
        lambda: module.dedupe_id(body, headers),
        lambda: module.routing(body, headers),
        lambda: getattr(module, f"read_{name}")(env(f"psp.{name}", body), FUZZ_CFG),
        lambda: scrub_pans(body, name in ("skrill", "nuvei")),
    ]
    for call in calls:
        with contextlib.suppress(SignatureError, Rejected):
            call()


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(MODULES)), body=st.binary(max_size=300), headers=header_maps)
def test_fuzz_random_bodies(name: str, body: bytes, headers: dict[str, str]) -> None:
    exercise(name, body, headers)


def _template(name: str) -> tuple[dict[str, Any], bool]:
    if name == "praxis":
        return praxis_doc(), False
    if name == "coinspaid":
        return coinspaid_doc(), False
    if name == "stripe":
        return stripe_event(obj=charge()), False
    form = skrill_form() if name == "skrill" else nuvei_form()
    return dict(item.split("=", 1) for item in form.decode().split("&")), True


@settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(MODULES)), data=st.data())
def test_fuzz_mutated_signed_payloads(name: str, data: st.DataObject) -> None:
    """Valid payloads with fields replaced by anything, then signed properly: the readers see
    every odd value behind a good signature and still only say Rejected."""
    doc, is_form = _template(name)
    path = data.draw(st.sampled_from(sorted(_paths(doc))))
    replacement = data.draw(st.text(max_size=25) if is_form else json_values)
    _set(doc, path, replacement)
    if is_form:
        body = urlencode(doc).encode()
        if name == "skrill":
            body = skrill_form(**{k: v for k, v in doc.items() if k != "md5sig"})
        else:
            body = nuvei_form(**{k: v for k, v in doc.items() if k != "advanceResponseChecksum"})
        headers: dict[str, str] = {}
    else:
        body = json.dumps(doc).encode()  # (stdlib: big integers and NaN too)
        if name == "praxis":
            try:
                headers = {"GT-Authentication": praxis_signature(doc)}
            except (TypeError, AttributeError):
                headers = {}
        elif name == "coinspaid":
            headers = coinspaid_request(body)
        else:
            headers = stripe_request(body)
    exercise(name, body, headers)


def _paths(doc: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    out = set()
    for key, value in doc.items():
        out.add((*prefix, key))
        if isinstance(value, dict):
            out |= _paths(value, (*prefix, key))
    return out


def _set(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = doc
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
