"""Attacks on the payment webhooks, each proven refused with nothing produced.

What an attacker has: genuine notifications (a captured body and its signature: from logs, a
proxy, an old backup), the documented signing schemes, and the receiver's URL. What they don't
have: the secrets. Every test posts to the real receiver (`create_app`, recording publisher,
the replay guard in a SQLite file) and, where a body could reach the engine some other way,
reads it with the connector: "refused" means a 4xx and no Kafka message, and the connector
raising `Rejected` (a dead letter with the reason), never an operation.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
import pytest
from fastapi.testclient import TestClient

from connectors.fields import Rejected
from connectors.psp import coinspaid, nuvei, praxis, skrill, stripe
from connectors.psp.replay_guard import ReplayGuard
from pipelines.config import Settings, parse_settings
from schemas.events import BalanceOperation
from services.webhooks import create_app
from tests.test_psp_connectors import (
    CONFIG,
    NOW,
    SECRETS,
    coinspaid_doc,
    coinspaid_request,
    env,
    nuvei_form,
    praxis_doc,
    praxis_request,
    skrill_form,
    stripe_event,
    stripe_request,
)
from tests.test_webhooks import FORM, RecordingPublisher

NUVEI_STAMP = "2025-11-24.16:00:00"  # = NOW


class Receiver:
    """The receiver over a replay file, with a clock the test moves and a restart."""

    def __init__(self, db: Path, window: int = 3600) -> None:
        doc: dict[str, Any] = {**CONFIG, "psp": {**CONFIG["psp"], "replay_db": str(db),
                                                 "replay_window_s": window}}
        self.settings: Settings = parse_settings(doc, "attack test")
        self.now = float(NOW)
        self.publisher = RecordingPublisher()
        self.client = TestClient(create_app(self.settings, self.publisher, clock=lambda: self.now))

    def post(self, provider: str, body: bytes, headers: dict[str, str]) -> int:
        return self.client.post(f"/webhooks/{provider}", content=body, headers=headers).status_code

    def restart(self) -> None:
        self.client.close()
        self.client = TestClient(create_app(self.settings, self.publisher, clock=lambda: self.now))

    @property
    def published(self) -> int:
        return len(self.publisher.messages)


@pytest.fixture
def rx(tmp_path: Path) -> Iterator[Receiver]:
    r = Receiver(tmp_path / "replay.sqlite3")
    yield r
    r.client.close()


def refused(rx: Receiver, provider: str, body: bytes, headers: dict[str, str]) -> int:
    """Post; assert a 4xx and that nothing was published. Returns the code."""
    before = rx.published
    code = rx.post(provider, body, headers)
    assert 400 <= code < 500, (provider, code, body[:200])
    assert rx.published == before
    return code


READERS: dict[str, Callable[..., list[BalanceOperation]]] = {
    "skrill": skrill.read_skrill, "praxis": praxis.read_praxis,
    "coinspaid": coinspaid.read_coinspaid, "nuvei": nuvei.read_nuvei,
    "stripe": stripe.read_stripe,
}


def unreadable(settings: Settings, provider: str, body: bytes) -> None:
    """The engine side: the body, had it reached Kafka, is a dead letter (Rejected)."""
    with pytest.raises(Rejected) as exc:
        READERS[provider](env(f"psp.{provider}", body), settings)
    assert exc.value.reason


def form_with(body: bytes, **over: str) -> bytes:
    """A posted form with some values replaced, everything else (signature too) kept."""
    pairs = dict(parse_qsl(body.decode(), keep_blank_values=True))
    pairs.update(over)
    return urlencode(pairs).encode()


def skrill_signed(**over: str) -> bytes:
    """A Skrill form signed with the real secret word (the provider 'meant' these values)."""
    return skrill_form(over.pop("status", "2"), **over)


# -- Praxis: the concatenation ------------------------------------------------------------------


def praxis_shifted(doc: dict[str, Any], order_id: str, tid: str) -> dict[str, Any]:
    out = orjson.loads(orjson.dumps(doc))
    out["session"]["order_id"] = order_id
    out["transaction"]["tid"] = int(tid) if tid.isdigit() else tid
    return out


def test_praxis_digits_moved_between_tid_and_order_id_are_refused(rx: Receiver) -> None:
    genuine = praxis_doc(tid=55012345)
    body, headers = praxis_request(genuine)
    assert rx.post("praxis", body, headers) == 200 and rx.published == 1
    order, tid = genuine["session"]["order_id"], str(genuine["transaction"]["tid"])
    joined = order + tid
    shifted = 0
    for cut in range(len(order) - 6, len(joined)):  # every other split of the same characters
        o, t = joined[:cut], joined[cut:]
        if (o, t) == (order, tid) or not t or t[0] == "0":
            continue
        doc = praxis_shifted(genuine, o, t)
        attack = orjson.dumps(doc)
        assert praxis.signature(doc, SECRETS["praxis"]) == headers["GT-Authentication"]
        refused(rx, "praxis", attack, headers)
        unreadable(rx.settings, "praxis", attack)  # an order id ending in a digit
        shifted += 1
    assert shifted >= 8 and rx.published == 1


def test_praxis_shift_into_another_account_refused_even_unseen(rx: Receiver) -> None:
    # an old-style order id without a reference: moving one digit changes the login. The
    # genuine one itself is refused now (its end can't be told from the tid's start)...
    genuine = praxis_doc(tid=15501)
    genuine["session"]["order_id"] = "ACME-MT5-Live:100"
    body, headers = praxis_request(genuine)
    assert refused(rx, "praxis", body, headers) == 401
    # ...and so is every variant, sent first, before any genuine copy
    for order, tid in (("ACME-MT5-Live:1001", "5501"), ("ACME-MT5-Live:10015", "501")):
        attack = orjson.dumps(praxis_shifted(genuine, order, tid))
        refused(rx, "praxis", attack, headers)
        unreadable(rx.settings, "praxis", attack)
    assert rx.published == 0


def test_praxis_other_boundaries_are_pinned(rx: Receiver) -> None:
    good = praxis_doc()
    cases: list[dict[str, Any]] = []
    d = orjson.loads(orjson.dumps(good))  # timestamp digit moved into the customer token
    d["timestamp"] = int(str(NOW)[:-1])
    d["customer"]["customer_token"] = str(NOW)[-1] + d["customer"]["customer_token"]
    cases.append(d)
    d = orjson.loads(orjson.dumps(good))  # token char moved into the order id
    d["customer"]["customer_token"] = d["customer"]["customer_token"][:-1]
    d["session"]["order_id"] = good["customer"]["customer_token"][-1] + d["session"]["order_id"]
    cases.append(d)
    d = orjson.loads(orjson.dumps(good))  # application_key char moved into the timestamp
    d["application_key"], d["timestamp"] = "acme-cashie", f"r{NOW}"
    cases.append(d)
    d = orjson.loads(orjson.dumps(good))  # amount digits moved into the conversion rate
    d["transaction"]["amount"], d["transaction"]["conversion_rate"] = 15000, "01.000000"
    cases.append(d)
    d = orjson.loads(orjson.dumps(good))  # currency letter moved onto the tid
    d["transaction"]["currency"], d["transaction"]["tid"] = "SD", "5501U"
    cases.append(d)
    for doc in cases:
        body = orjson.dumps(doc)
        refused(rx, "praxis", body, {**praxis_request(good)[1]})
    assert rx.published == 0


def test_praxis_unsigned_status_and_type_are_bound_to_the_first_body(rx: Receiver) -> None:
    rejected_doc = praxis_doc("rejected", tid=7001)
    body, headers = praxis_request(rejected_doc)
    assert rx.post("praxis", body, headers) == 200
    for status, ttype in (("approved", "sale"), ("chargeback", "sale"), ("rejected", "refund")):
        edited = praxis_doc(status, ttype, tid=7001)
        assert refused(rx, "praxis", orjson.dumps(edited), headers) == 401
    rx.restart()  # the first sight is on disk: a restart doesn't forget it
    assert refused(rx, "praxis", orjson.dumps(praxis_doc("approved", tid=7001)), headers) == 401
    assert rx.published == 1
    # a direction the signed order id does not allow is refused even unseen
    payout = praxis_doc("approved", "payout", tid=7002)
    refused(rx, "praxis", *praxis_request(payout))
    unreadable(rx.settings, "praxis", orjson.dumps(payout))


def test_praxis_without_transaction_is_refused_and_a_dead_letter(rx: Receiver) -> None:
    doc = praxis_doc()
    del doc["transaction"]
    body, headers = praxis_request(doc)
    refused(rx, "praxis", body, headers)
    unreadable(rx.settings, "praxis", body)
    unreadable(rx.settings, "praxis", b'{"merchant_id": "API-Acme"}')


def test_praxis_type_confusion_and_amount_formats(rx: Receiver) -> None:
    for tx in ({"amount": 150000.0}, {"amount": "1.5e5"}, {"amount": True}, {"amount": -150000},
               {"amount": "0150000"}, {"tid": "05501"}, {"tid": 5501.0}, {"currency": "usd"},
               {"currency": "US1"}, {"transaction_status": "Approved"},
               {"transaction_status": " approved"}, {"transaction_status": ["approved"]},
               {"transaction_type": {"sale": 1}}, {"amount": "150000 "}):
        doc = praxis_doc(**tx)
        body, headers = praxis_request(doc)  # signed as the provider would sign these values
        refused(rx, "praxis", body, headers)
        unreadable(rx.settings, "praxis", body)
    assert rx.published == 0


# -- Nuvei --------------------------------------------------------------------------------------


def test_nuvei_edited_transaction_id_books_nothing_new(rx: Receiver) -> None:
    body = nuvei_form()
    assert rx.post("nuvei", body, FORM) == 200
    genuine_key = one_key(rx.settings, "nuvei", body)
    for n in range(5):
        attack = form_with(body, TransactionID=f"71200000001987654{n}")
        refused(rx, "nuvei", attack, FORM)
        # had it arrived first, it is still the same operation (the signed PPP id)
        assert one_key(rx.settings, "nuvei", attack) == genuine_key
    assert rx.published == 1


def one_key(settings: Settings, provider: str, body: bytes) -> str:
    [op] = READERS[provider](env(f"psp.{provider}", body), settings)
    return op.op_key


def test_nuvei_type_flips_and_unsigned_identities_are_refused(rx: Receiver) -> None:
    body = nuvei_form(PPP_TransactionID="412345679")
    assert rx.post("nuvei", body, FORM) == 200
    for ttype in ("Payout", "Credit", "Chargeback", "Auth"):
        refused(rx, "nuvei", form_with(body, transactionType=ttype), FORM)
    for ttype in ("Credit", "Chargeback", "Settle", "Void"):  # genuine, but whose payment?
        genuine = nuvei_form(ttype=ttype, relatedTransactionId="711000000019876543",
                             PPP_TransactionID="412345680")
        refused(rx, "nuvei", genuine, FORM)
        unreadable(rx.settings, "nuvei", genuine)
    assert rx.published == 1


def test_nuvei_formats_pin_the_checksum_boundaries(rx: Receiver) -> None:
    for over in ({"totalAmount": "1e3"}, {"totalAmount": "-49.99"}, {"totalAmount": "49.99 "},
                 {"totalAmount": "049.99"}, {"currency": "usd"}, {"Status": "approved"},
                 {"Status": "APPROVEDX"}, {"PPP_TransactionID": "0412345678"},
                 {"responseTimeStamp": "2025-11-24 16:00:00"},
                 {"totalAmount": "49.9", "currency": "9USD"}):
        body = nuvei_form(**over)  # checksummed by the provider's formula
        refused(rx, "nuvei", body, FORM)
        unreadable(rx.settings, "nuvei", body)
    assert rx.published == 0


# -- Skrill -------------------------------------------------------------------------------------


def test_skrill_replay_is_refused_after_the_window_even_after_a_restart(rx: Receiver) -> None:
    body = skrill_form()
    assert rx.post("skrill", body, FORM) == 200 and rx.published == 1
    rx.now += 600
    assert rx.post("skrill", body, FORM) == 200 and rx.published == 1  # a retry: not again
    rx.restart()
    assert rx.post("skrill", body, FORM) == 200 and rx.published == 1  # still not again
    rx.now += 3600
    assert refused(rx, "skrill", body, FORM) == 401  # a replay, an hour after first sight
    rx.restart()
    assert refused(rx, "skrill", body, FORM) == 401


def test_skrill_signed_formats_and_unsigned_fields(rx: Receiver) -> None:
    for over in ({"mb_amount": "1e3"}, {"mb_amount": "-25.46"}, {"mb_amount": "+25.46"},
                 {"mb_amount": " 25.46"}, {"mb_amount": "25.46 "}, {"mb_amount": "0x19"},
                 {"mb_currency": "eur"}, {"mb_currency": "EUR "}, {"status": " 2"},
                 {"status": "02"}, {"mb_amount": "25.4", "mb_currency": "6EUR"}):
        body = skrill_signed(**over)
        refused(rx, "skrill", body, FORM)
    body = skrill_form(transaction_id="ACME-MT5-Live:1001:dep-2002")
    # a currency swap or a moved merchant digit under the same signature
    for attack in (form_with(body, mb_currency="USD"),
                   form_with(body, merchant_id="29920229",
                             transaction_id="5ACME-MT5-Live:1001:dep-2002")):
        refused(rx, "skrill", attack, FORM)
    # a deposit turned into a payout by editing the unsigned wallets (direction is signed)
    flip = form_with(body, pay_from_email="pay@acme.example", pay_to_email="x@example.com")
    assert refused(rx, "skrill", flip, FORM) == 401
    # payout-only statuses on a deposit reference
    refused(rx, "skrill", skrill_signed(status="-4"), FORM)
    assert rx.post("skrill", body, FORM) == 200
    for edit in ({"amount": "9000.00", "currency": "USD"}, {"server": "ACME-MT4-Live"},
                 {"pay_from_email": "other@example.com"}):
        refused(rx, "skrill", form_with(body, **edit), FORM)  # unsigned fields: bound
    assert rx.published == 1


def test_skrill_duplicated_fields_and_missing_signature(rx: Receiver) -> None:
    body = skrill_form()
    refused(rx, "skrill", body + b"&status=-3", FORM)
    refused(rx, "skrill", body + b"&mb_amount=99.00", FORM)
    refused(rx, "skrill", form_with(body, md5sig=""), FORM)


# -- CoinsPaid ----------------------------------------------------------------------------------


def test_coinspaid_replay_window_and_restart(rx: Receiver) -> None:
    body = orjson.dumps(coinspaid_doc(txn=42))
    headers = coinspaid_request(body)
    assert rx.post("coinspaid", body, headers) == 200 and rx.published == 1
    rx.restart()
    rx.now += 3601
    assert refused(rx, "coinspaid", body, headers) == 401


def test_coinspaid_duplicated_keys_and_amount_tricks(rx: Receiver) -> None:
    good = orjson.dumps(coinspaid_doc(txn=43))
    dup = good[:-1] + b',"status":"confirmed"}'  # "status" twice, signed byte for byte
    refused(rx, "coinspaid", dup, coinspaid_request(dup))
    for amount in ("1e3", "-6.5", "6.5 ", "+6.5", "0x10"):  # signed, but not an amount
        doc = coinspaid_doc(txn=44, currency_received={"currency": "BTC", "amount": amount})
        unreadable(rx.settings, "coinspaid", orjson.dumps(doc))
    float_doc = orjson.dumps(coinspaid_doc(txn=45, currency_received={"currency": "BTC",
                                                                      "amount": 6.5}))
    unreadable(rx.settings, "coinspaid", float_doc)
    refused(rx, "coinspaid", good, coinspaid_request(good, secret="guess"))
    refused(rx, "coinspaid", good, {"X-Processing-Key": "pk_acme"})


# -- Stripe -------------------------------------------------------------------------------------


def test_stripe_replay_of_an_event_id_after_the_window(rx: Receiver) -> None:
    body = orjson.dumps(stripe_event(evt="evt_replay"))
    assert rx.post("stripe", body, stripe_request(body)) == 200
    rx.now += 3601
    # freshly signed (as a captured signature can't be, but as Stripe's retry would be)
    fresh = stripe_request(body, t=int(rx.now))
    assert refused(rx, "stripe", body, fresh) == 401
    refused(rx, "stripe", body, stripe_request(body))  # the captured signature: stale
    assert rx.published == 1


def test_stripe_tampered_and_odd_amounts(rx: Receiver) -> None:
    body = orjson.dumps(stripe_event(evt="evt_t"))
    headers = stripe_request(body)
    refused(rx, "stripe", body.replace(b'"usd"', b'"eur"'), headers)  # currency swap
    refused(rx, "stripe", body.replace(b"2000", b"9000"), headers)
    for amount in (-2000, 2000.0, "2e3", True):
        o = {"id": "pi_odd", "object": "payment_intent", "amount": amount,
             "currency": "usd", "metadata": {"server": "ACME-MT5-Live", "login": "1001"}}
        unreadable(rx.settings, "stripe", orjson.dumps(stripe_event(evt="evt_o", obj=o)))
    dup = body[:-1] + b',"type":"payment_intent.succeeded"}'
    refused(rx, "stripe", dup, stripe_request(dup))


# -- every provider -----------------------------------------------------------------------------


def signed_requests() -> dict[str, tuple[bytes, dict[str, str]]]:
    cp = orjson.dumps(coinspaid_doc(txn=77))
    st = orjson.dumps(stripe_event(evt="evt_77"))
    return {"skrill": (skrill_form(transaction_id="ACME-MT5-Live:1001:dep-77"), FORM),
            "praxis": praxis_request(praxis_doc(tid=77)),
            "coinspaid": (cp, coinspaid_request(cp)),
            "nuvei": (nuvei_form(PPP_TransactionID="77"), FORM),
            "stripe": (st, stripe_request(st))}


@pytest.mark.parametrize("provider", ["skrill", "praxis", "coinspaid", "nuvei", "stripe"])
def test_unsigned_or_wrongly_signed_is_refused(rx: Receiver, provider: str) -> None:
    body, headers = signed_requests()[provider]
    unsigned = {k: v for k, v in headers.items() if k.lower() == "content-type"}
    if provider in ("skrill", "nuvei"):
        sig = "md5sig" if provider == "skrill" else "advanceResponseChecksum"
        stripped = urlencode([(k, v) for k, v in parse_qsl(body.decode()) if k != sig]).encode()
        refused(rx, provider, stripped, unsigned)
        forged = hashlib.md5(b"x").hexdigest().upper() if provider == "skrill" else \
            hmac.new(b"guess", body, hashlib.sha256).hexdigest()
        refused(rx, provider, form_with(body, **{sig: forged}), unsigned)
    else:
        refused(rx, provider, body, unsigned)
    assert rx.post(provider, body, headers) == 200  # the genuine one still passes
    assert rx.published == 1


@pytest.mark.parametrize("provider", ["skrill", "praxis", "coinspaid", "nuvei", "stripe"])
def test_every_provider_publishes_a_notification_once(tmp_path: Path, provider: str) -> None:
    rx = Receiver(tmp_path / "r.sqlite3")
    body, headers = signed_requests()[provider]
    for _ in range(3):
        assert rx.post(provider, body, headers) == 200
        rx.restart()
    assert rx.published == 1
    guard = ReplayGuard(rx.settings.psp)
    assert guard.count(provider) == 1
    guard.close()
