"""Payment providers as the simulated brokerage uses them: which tenant has which merchant
account, and the signed webhook each provider sends for each state of a transaction.

Every webhook is built in the provider's own format (form POST or JSON) and signed exactly as
the provider signs (with the connector module's own signing helper where it has one, else the
documented formula), so it passes `connectors.psp.<provider>.verify`. The broker's reference
to the trading account goes in the field the signature covers (`<server>:<login>:<reference>`).

What reaches Kafka is what the webhook receiver (`services/webhooks.py`) writes: the raw
body (card numbers masked, which never happens here: only masked numbers are sent), keyed by
the account login, with headers provider / content-type / received_at / server.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import orjson

from connectors.psp import coinspaid, nuvei, praxis, skrill, stripe
from connectors.psp.common import fingerprint, scrub_pans
from connectors.psp.settings import PROVIDER_NAMES, PspProviderSettings, PspSettings

if TYPE_CHECKING:
    from devtools.simulator.typologies import Case
    from devtools.simulator.world import Instrument, SimAccount

# Secrets and merchant identities of the simulated merchant accounts (never real ones).
SIM_SECRETS: dict[str, str] = {
    "skrill": "sim-skrill-secret-word",
    "praxis": "sim-praxis-merchant-secret",
    "coinspaid": "sim-coinspaid-secret-key",
    "nuvei": "sim-nuvei-secret-key",
    "stripe": "whsec_sim_stripe_endpoint_secret",
}
SIM_FINGERPRINT_SALT = "sim-fingerprint-salt"
# Which methods a provider takes, in the simulated brokerage.
METHODS: dict[str, frozenset[str]] = {
    "skrill": frozenset({"ewallet", "bank"}),
    "praxis": frozenset({"card", "ewallet", "bank"}),
    "coinspaid": frozenset({"crypto"}),
    "nuvei": frozenset({"card", "ewallet"}),
    "stripe": frozenset({"card"}),
}
CARD_PROVIDERS = ("praxis", "nuvei", "stripe")
CONTENT_TYPES = {
    "skrill": "application/x-www-form-urlencoded",
    "praxis": "application/json",
    "coinspaid": "application/json",
    "nuvei": "application/x-www-form-urlencoded",
    "stripe": "application/json; charset=utf-8",
}
MODULES: dict[str, Any] = {"skrill": skrill, "praxis": praxis, "coinspaid": coinspaid,
                           "nuvei": nuvei, "stripe": stripe}


def _merchant(provider: str, tenant: str) -> dict[str, str]:
    """Merchant identity fields of a simulated merchant account."""
    digest = int(hashlib.sha256(f"{provider}:{tenant}".encode()).hexdigest()[:8], 16)
    if provider == "skrill":
        return {"merchant_id": str(290_000_000 + digest % 10_000_000),
                "merchant_email": f"payments@{tenant}.example.com"}
    if provider == "praxis":
        return {"merchant_id": f"API-{tenant.capitalize()}", "application_key": f"{tenant}-cashier"}
    if provider == "coinspaid":
        return {"key": f"pk_{tenant}_{digest:08x}"}
    if provider == "nuvei":
        return {"merchant_id": str(1_000_000_000 + digest % 1_000_000_000)}
    return {}


def simulated_psp_settings(tenant_ids: Sequence[str], base: PspSettings | None = None) -> PspSettings:
    """The `psp` section the simulated webhooks verify against.

    Providers already configured in `base` keep their tenant and identity (a missing secret is
    filled with the simulator's); the others are given to the tenants in turn (with two
    tenants: skrill, coinspaid and stripe to the first, praxis and nuvei to the second)."""
    base = base or PspSettings()
    providers: dict[str, PspProviderSettings] = {}
    for i, name in enumerate(PROVIDER_NAMES):
        cfg = base.providers.get(name)
        if cfg is not None:
            if not base.secret_for(name):
                cfg = cfg.model_copy(update={"secret": SIM_SECRETS[name]})
            providers[name] = cfg
        elif tenant_ids:
            tenant = tenant_ids[i % len(tenant_ids)] if len(tenant_ids) > 1 else tenant_ids[0]
            if len(tenant_ids) == 2:
                tenant = tenant_ids[0] if name in ("skrill", "coinspaid", "stripe") else tenant_ids[1]
            providers[name] = PspProviderSettings(
                tenant=tenant, secret=SIM_SECRETS[name], **_merchant(name, tenant))
    return base.model_copy(update={
        "providers": providers,
        "fingerprint_salt": base.fingerprint_salt or SIM_FINGERPRINT_SALT,
        # a simulated world is new on every run and reuses its seeded ids: its first
        # sightings must not outlive the process (a real deployment keeps them on disk)
        "replay_db": base.replay_db or ":memory:",
    })


@dataclass(slots=True, eq=False)
class Psp:
    name: str
    tenant: str
    cfg: PspProviderSettings
    secret: str
    merchant_id: str
    merchant_email: str
    app_key: str
    key: str


def providers_from(psp: PspSettings) -> dict[str, Psp]:
    out: dict[str, Psp] = {}
    for name, cfg in psp.providers.items():
        defaults = _merchant(name, cfg.tenant)
        out[name] = Psp(
            name=name, tenant=cfg.tenant, cfg=cfg, secret=psp.secret_for(name),
            merchant_id=cfg.merchant_id or defaults.get("merchant_id", ""),
            merchant_email=cfg.merchant_email or defaults.get("merchant_email", ""),
            app_key=cfg.application_key or defaults.get("application_key", ""),
            key=cfg.key or defaults.get("key", ""),
        )
    return out


# -- transactions -------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class Txn:
    """One payment at one provider, through all its notifications."""

    psp: Psp
    kind: str  # deposit / withdrawal
    acc: SimAccount
    amount: float  # in `currency`
    currency: str
    instrument: Instrument
    payer_first: str
    payer_last: str
    country: str
    ref: str  # the broker's reference: "<server>:<login>:<reference>"
    txn_id: str  # the transaction id the connector keys on (op_key psp:<provider>:<txn_id>)
    created_ms: int
    ids: dict[str, str] = field(default_factory=dict)  # provider-specific ids
    case: Case | None = None
    coin_amount: str = ""  # CoinsPaid: the amount in the coin
    status: str = "pending"
    credited_ms: int = 0
    booked: float = 0.0  # amount booked on the trading account (account currency)
    recon: str = ""  # a reconciliation break injected into this payment (cashier.py)

    @property
    def op_key(self) -> str:
        return f"psp:{self.psp.name}:{self.txn_id}"

    @property
    def payer_name(self) -> str:
        return f"{self.payer_first} {self.payer_last}".strip()


def _hex(rng: random.Random, n: int) -> str:
    return f"{rng.getrandbits(4 * n):0{n}x}"


_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _b62(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(_B62) for _ in range(n))


def new_txn(rng: random.Random, psp: Psp, kind: str, acc: SimAccount, amount: float,
            instrument: Instrument, now_ms: int, seq: int, payer: tuple[str, str] | None = None,
            country: str = "") -> Txn:
    """A transaction with the ids its provider would give it."""
    # a payout's reference starts with the payout prefix: the direction is signed with it
    ref = f"{acc.server.name}:{acc.login}:{'DP' if kind == 'deposit' else psp.cfg.payout_prefix}{seq}"
    first, last = payer or (acc.client.first, acc.client.last)
    txn = Txn(psp=psp, kind=kind, acc=acc, amount=round(amount, 2), currency=acc.server.currency,
              instrument=instrument, payer_first=first, payer_last=last,
              country=country or acc.client.country.code, ref=ref, txn_id="", created_ms=now_ms)
    name = psp.name
    if name == "skrill":
        txn.ids["mb"] = str(rng.randint(4_000_000_000, 4_999_999_999))
        txn.txn_id = ref  # the signed transaction_id is the transaction
    elif name == "praxis":
        # Praxis signs order_id and tid back to back: an order id ending in a letter keeps
        # digits of the tid from passing as part of it
        txn.ref = f"{ref}-PX"
        txn.ids["tid"] = str(rng.randint(1_000_000, 9_999_999))
        txn.ids["transaction_id"] = str(rng.randint(10_000_000, 99_999_999))
        txn.ids["auth_token"] = _hex(rng, 32)
        txn.ids["card_token"] = _b62(rng, 32)
        txn.txn_id = txn.ids["tid"]
    elif name == "coinspaid":
        txn.ids["id"] = str(rng.randint(10_000_000, 99_999_999))
        txn.ids["address_id"] = str(rng.randint(100_000, 999_999))
        txn.ids["txid"] = _hex(rng, 64)
        txn.txn_id = txn.ids["id"]
    elif name == "nuvei":
        txn.ids["ppp"] = str(rng.randint(400_000_000, 499_999_999))
        txn.ids["tid"] = str(rng.randint(711_000_000_000_000_000, 711_999_999_999_999_999))
        txn.ids["userid"] = f"user_{acc.client.cid}"
        txn.txn_id = txn.ids["ppp"]  # the checksummed id (TransactionID is not signed)
    else:  # stripe
        if kind == "deposit":
            txn.ids["pi"] = "pi_3" + _b62(rng, 23)
            txn.ids["ch"] = "ch_3" + _b62(rng, 23)
            txn.ids["cus"] = "cus_" + _b62(rng, 14)
            txn.txn_id = txn.ids["pi"]
        else:
            txn.ids["po"] = "po_1" + _b62(rng, 23)
            txn.txn_id = txn.ids["po"]
    return txn


# -- the webhooks -------------------------------------------------------------------------------

Built = tuple[bytes, dict[str, str]]


def _money(amount: float) -> str:
    return f"{amount:.2f}"


def _minor(amount: float) -> int:
    return round(amount * 100)


def _skrill(txn: Txn, status: str, t_s: int, rng: random.Random) -> Built:
    psp = txn.psp
    inst = txn.instrument
    payout = txn.kind == "withdrawal"
    code = {"pending": "0", "approved": "2", "declined": "-2", "cancelled": "-1",
            "chargeback": "-3", "refunded": "-4"}[status]
    form: dict[str, str] = {
        "pay_to_email": inst.email if payout else psp.merchant_email,
        "pay_from_email": psp.merchant_email if payout else inst.email,
        "merchant_id": psp.merchant_id,
        "customer_id": str(txn.acc.client.cid + 90_000_000),
        "transaction_id": txn.ref,
        "mb_transaction_id": txn.ids["mb"],
        "mb_amount": _money(txn.amount),
        "mb_currency": txn.currency,
        "status": code,
    }
    form["md5sig"] = skrill.md5sig(form, psp.secret)
    form["amount"] = _money(txn.amount)
    form["currency"] = txn.currency
    if code == "-2":
        form["failed_reason_code"] = rng.choice(("01", "03", "05", "12", "28"))
    form["payment_type"] = "WLT" if inst.kind == "ewallet" else "OBT"
    form["merchant_fields"] = "platform,server,login"
    form["platform"] = txn.acc.server.platform
    form["server"] = txn.acc.server.name
    form["login"] = str(txn.acc.login)
    return urlencode(form).encode(), {"Content-Type": CONTENT_TYPES["skrill"],
                                      "User-Agent": "Skrill-Status/1.0"}


_PRAXIS_STATUS = {"pending": "pending", "approved": "approved", "declined": "rejected",
                  "cancelled": "cancelled", "chargeback": "chargeback", "refunded": "approved"}
# Praxis signs its `timestamp` but not the status: two statuses of one payment made in the same
# second would carry one signature, and the receiver accepts only the first body it saw under a
# signature (docs/payments.md). Real Praxis stamps each notification when it sends it; the
# simulator, whose clock can put two statuses in one second, stamps each status a second later.
_PRAXIS_STEP = {status: i for i, status in enumerate(_PRAXIS_STATUS)}


def _praxis(txn: Txn, status: str, t_s: int, rng: random.Random) -> Built:
    psp = txn.psp
    inst = txn.instrument
    client = txn.acc.client
    minor = _minor(txn.amount)
    if status == "refunded":  # Praxis books a refund as a transaction of its own
        ttype, tid = "refund", txn.ids.get("refund_tid", txn.ids["tid"])
    else:
        ttype, tid = ("sale" if txn.kind == "deposit" else "payout"), txn.ids["tid"]
    card = None
    wallet = None
    if inst.kind == "card":
        method = "Credit Card"
        card = {
            "card_token": txn.ids["card_token"], "card_type": inst.brand,
            "card_number": f"{inst.bin}******{inst.last4}",
            "card_exp": f"{inst.exp_month:02d}/{inst.exp_year}",
            "card_issuer_name": "Simulated Issuing Bank", "card_issuer_country": inst.issuer_country,
            "card_holder": f"{txn.payer_first} {txn.payer_last}".upper(),
        }
    elif inst.kind == "ewallet":
        method = "Neteller"
        wallet = {"account_identifier": inst.email, "wallet_type": "neteller"}
    else:
        method = "Bank Transfer"
        wallet = {"account_identifier": inst.iban or f"IBAN-{client.cid}", "wallet_type": "bank"}
    doc: dict[str, Any] = {
        "merchant_id": psp.merchant_id,
        "application_key": psp.app_key,
        "conversion_rate": "1.000000",
        "customer": {
            "customer_token": hashlib.md5(str(client.cid).encode()).hexdigest(),
            "country": txn.country,
            "first_name": client.first,
            "last_name": client.last,
            "avs_alert": 0,
            "verification_alert": None,
        },
        "session": {
            "auth_token": txn.ids["auth_token"],
            "intent": "payment" if txn.kind == "deposit" else "withdrawal",
            "session_status": "created",
            "order_id": txn.ref,
            "currency": txn.currency,
            "amount": minor,
            "cid": client.crm_id,
        },
        "transaction": {
            "transaction_type": ttype,
            "transaction_status": _PRAXIS_STATUS[status],
            "tid": int(tid),
            "transaction_id": txn.ids["transaction_id"],
            "currency": txn.currency,
            "amount": minor,
            "conversion_rate": "1.000000",
            "processed_currency": txn.currency,
            "processed_amount": minor,
            "fee": 0,
            "payment_method": method,
            "payment_processor": "SimAcquirer" if card else "SimApm",
            "gateway": None,
            "card": card,
            "wallet": wallet,
        },
        "version": "1.3",
        "timestamp": t_s + _PRAXIS_STEP[status],
    }
    return orjson.dumps(doc), {"Content-Type": CONTENT_TYPES["praxis"],
                               praxis.SIGNATURE_HEADER: praxis.signature(doc, psp.secret)}


def _coinspaid(txn: Txn, status: str, t_s: int, rng: random.Random) -> Built:
    psp = txn.psp
    inst = txn.instrument
    deposit = txn.kind == "deposit"
    coin = inst.coin or "USDT"
    amount = txn.coin_amount
    fee = f"{float(amount) * 0.005:.8f}".rstrip("0").rstrip(".") if coin != "USDT" else \
        f"{float(amount) * 0.005:.2f}"
    cs_status = {"pending": "not_confirmed" if deposit else "processing", "approved": "confirmed",
                 "declined": "cancelled", "cancelled": "cancelled"}[status]
    doc: dict[str, Any] = {"id": int(txn.ids["id"]), "type": "deposit" if deposit else "withdrawal"}
    if deposit:
        doc["crypto_address"] = {"id": int(txn.ids["address_id"]), "currency": coin,
                                 "address": inst.address,
                                 "foreign_id": f"{txn.acc.server.name}:{txn.acc.login}",
                                 "tag": None}
    else:
        doc["foreign_id"] = txn.ref
        doc["crypto_address"] = {"currency": coin, "address": inst.address, "tag": None}
    doc["currency_sent"] = {"currency": coin, "amount": amount}
    doc["currency_received"] = {"currency": coin, "amount": amount,
                                "amount_minus_fee": f"{float(amount) - float(fee):.8f}"
                                if coin != "USDT" else f"{float(amount) - float(fee):.2f}"}
    doc["transactions"] = [{
        "id": int(txn.ids["id"]) + 7, "currency": coin, "transaction_type": "blockchain",
        "type": doc["type"], "address": inst.address, "tag": None, "amount": amount,
        "txid": txn.ids["txid"], "confirmations": 0 if cs_status == "not_confirmed" else 3,
    }]
    doc["fees"] = [{"type": "fee_crypto_deposit" if deposit else "fee_crypto_withdrawal",
                    "currency": coin, "amount": fee}]
    doc["error"] = ""
    doc["status"] = cs_status
    body = orjson.dumps(doc)
    return body, {"Content-Type": CONTENT_TYPES["coinspaid"], coinspaid.KEY_HEADER: psp.key,
                  coinspaid.SIGNATURE_HEADER: coinspaid.signature(body, psp.secret)}


def _nuvei(txn: Txn, status: str, t_s: int, rng: random.Random) -> Built:
    psp = txn.psp
    inst = txn.instrument
    stamp = datetime.fromtimestamp(t_s, UTC).strftime("%Y-%m-%d.%H:%M:%S")
    related = ""
    tid = txn.ids["tid"]
    ppp = txn.ids["ppp"]
    nstatus = {"pending": "PENDING", "approved": "APPROVED", "declined": "DECLINED",
               "cancelled": "DECLINED", "chargeback": "APPROVED", "refunded": "APPROVED"}[status]
    if status == "chargeback":
        ttype, related, tid = "Chargeback", tid, txn.ids.setdefault("cb_tid", str(int(tid) + 17))
        ppp = txn.ids.setdefault("cb_ppp", str(int(ppp) + 3))
    elif status == "refunded":
        ttype, related, tid = "Credit", tid, txn.ids.setdefault("rf_tid", str(int(tid) + 11))
        ppp = txn.ids.setdefault("rf_ppp", str(int(ppp) + 2))
    else:
        ttype = "Sale" if txn.kind == "deposit" else "Payout"
    form: dict[str, str] = {
        "ppp_status": "OK" if nstatus != "DECLINED" else "FAIL",
        "Status": nstatus,
        "ExErrCode": "0" if nstatus != "DECLINED" else "-1",
        "ErrCode": "0" if nstatus != "DECLINED" else "-1100",
        "PPP_TransactionID": ppp,
        "TransactionID": tid,
        "userid": txn.ids["userid"],
        "merchant_unique_id": txn.ref,
        "merchant_id": psp.merchant_id,
        "merchant_site_id": str(int(psp.merchant_id) % 1_000_000 + 100_000)
        if psp.merchant_id.isdigit() else "100001",
        "responseTimeStamp": stamp,
        "productId": txn.ref,
        "totalAmount": _money(txn.amount),
        "currency": txn.currency,
        "transactionType": ttype,
    }
    if related:
        form["relatedTransactionId"] = related
    if inst.kind == "card":
        form.update({
            "payment_method": "cc_card", "nameOnCard": f"{txn.payer_first} {txn.payer_last}",
            "bin": inst.bin, "last4Digits": inst.last4, "expMonth": f"{inst.exp_month:02d}",
            "expYear": f"{inst.exp_year % 100:02d}", "cardCompany": inst.brand.capitalize(),
        })
    else:
        form.update({"payment_method": "apmgw_Neteller", "email": inst.email})
    form["first_name"] = txn.payer_first
    form["last_name"] = txn.payer_last
    form["countryCode"] = txn.country
    form["customField1"] = f"{txn.acc.server.name}:{txn.acc.login}"
    form["advanceResponseChecksum"] = nuvei.checksum(form, psp.secret)
    return urlencode(form).encode(), {"Content-Type": CONTENT_TYPES["nuvei"]}


def _stripe_charge(txn: Txn, created: int, refunded: int = 0) -> dict[str, Any]:
    inst = txn.instrument
    meta = {"server": txn.acc.server.name, "login": str(txn.acc.login),
            "platform": txn.acc.server.platform}
    return {
        "id": txn.ids["ch"], "object": "charge", "amount": _minor(txn.amount),
        "amount_captured": _minor(txn.amount), "amount_refunded": refunded,
        "currency": txn.currency.lower(), "customer": txn.ids["cus"],
        "description": f"Deposit {txn.ref}", "payment_intent": txn.ids["pi"],
        "metadata": meta, "paid": True, "captured": True, "refunded": refunded > 0,
        "status": "succeeded", "created": created,
        "billing_details": {"name": txn.payer_name, "email": txn.acc.client.email,
                            "address": {"country": txn.country}},
        "payment_method_details": {"type": "card", "card": {
            "brand": inst.brand.lower(), "country": inst.issuer_country,
            "exp_month": inst.exp_month, "exp_year": inst.exp_year, "last4": inst.last4,
            "funding": "credit" if inst.bin[0] == "5" else "debit", "iin": inst.bin,
        }},
    }


def _stripe(txn: Txn, status: str, t_s: int, rng: random.Random, event_type: str = "",
            sign_s: int = 0) -> Built:
    psp = txn.psp
    created_s = txn.created_ms // 1000
    meta = {"server": txn.acc.server.name, "login": str(txn.acc.login),
            "platform": txn.acc.server.platform}
    if txn.kind == "withdrawal":
        event_type = event_type or {"pending": "payout.created", "approved": "payout.paid",
                                    "declined": "payout.failed", "cancelled": "payout.canceled"}[status]
        obj: dict[str, Any] = {
            "id": txn.ids["po"], "object": "payout", "amount": _minor(txn.amount),
            "currency": txn.currency.lower(), "arrival_date": created_s + 2 * 86400,
            "method": "standard", "type": "bank_account", "created": created_s,
            "status": {"payout.created": "pending", "payout.paid": "paid",
                       "payout.failed": "failed", "payout.canceled": "canceled"}[event_type],
            "description": f"Withdrawal {txn.ref}", "metadata": meta,
        }
    elif event_type == "charge.failed":  # a card declined: the charge names the card
        obj = {**_stripe_charge(txn, created_s), "status": "failed", "paid": False,
               "captured": False, "amount_captured": 0, "failure_code": "card_declined",
               "outcome": {"type": "issuer_declined", "reason": "generic_decline"}}
    elif status in ("pending", "declined", "cancelled") or event_type.startswith("payment_intent"):
        event_type = event_type or {"pending": "payment_intent.created",
                                    "declined": "payment_intent.payment_failed",
                                    "cancelled": "payment_intent.canceled",
                                    "approved": "payment_intent.succeeded"}[status]
        obj = {
            "id": txn.ids["pi"], "object": "payment_intent", "amount": _minor(txn.amount),
            "amount_received": _minor(txn.amount) if status == "approved" else 0,
            "currency": txn.currency.lower(), "customer": txn.ids["cus"],
            "description": f"Deposit {txn.ref}", "metadata": meta,
            "payment_method_types": ["card"], "created": created_s,
            "status": {"pending": "requires_payment_method", "approved": "succeeded",
                       "declined": "requires_payment_method", "cancelled": "canceled"}[status],
            "latest_charge": txn.ids["ch"] if status == "approved" else None,
        }
    elif status == "approved":
        event_type = "charge.succeeded"
        obj = _stripe_charge(txn, created_s)
    elif status == "refunded":
        event_type = "charge.refunded"
        obj = _stripe_charge(txn, created_s, refunded=_minor(txn.amount))
    else:  # chargeback: a dispute, with the charge expanded so it names the account
        event_type = "charge.dispute.created"
        obj = {
            "id": txn.ids.setdefault("dp", "dp_1" + _b62(rng, 23)), "object": "dispute",
            "amount": _minor(txn.amount), "currency": txn.currency.lower(),
            "charge": _stripe_charge(txn, created_s), "payment_intent": txn.ids["pi"],
            "reason": rng.choice(("fraudulent", "fraudulent", "product_not_received",
                                  "unrecognized", "credit_not_processed")),
            "status": "needs_response", "created": t_s, "metadata": {},
        }
    doc = {
        "id": "evt_" + _b62(rng, 24), "object": "event", "api_version": "2024-06-20",
        "created": t_s, "data": {"object": obj}, "livemode": True, "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None}, "type": event_type,
    }
    body = orjson.dumps(doc)
    return body, {"Content-Type": CONTENT_TYPES["stripe"],
                  stripe.SIGNATURE_HEADER: stripe.sign_header(body, psp.secret, sign_s or t_s)}


_BUILDERS: dict[str, Callable[[Txn, str, int, random.Random], Built]] = {
    "skrill": _skrill, "praxis": _praxis, "coinspaid": _coinspaid, "nuvei": _nuvei,
    "stripe": _stripe,
}


@dataclass(slots=True)
class Webhook:
    """One HTTP notification as the provider posts it, and as the receiver publishes it."""

    provider: str
    body: bytes  # what the receiver publishes (the posted body, card numbers masked)
    http_headers: dict[str, str]  # what the provider sent (signature headers included)
    key: str
    headers: dict[str, str]  # what the receiver writes to Kafka
    txn: Txn
    status: str
    posted: bytes = b""  # the body as posted (differs from `body` only if a PAN was masked)
    extra: str = ""  # the event type, where a status has several (Stripe)
    t_ms: int = 0  # when the provider made it


def received_at(t_ms: int) -> str:
    return datetime.fromtimestamp(t_ms / 1000, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def build_webhook(txn: Txn, status: str, t_ms: int, sign_s: int = 0, extra: str = "",
                  received_ms: int = 0) -> Webhook:
    """The notification for `status` of `txn` made at t_ms, received at `received_ms`
    (default t_ms). Stripe signs each delivery afresh: its header is signed at `sign_s`
    (default: when made); the other providers re-send the same signed notification.

    Provider-made ids (Stripe event and dispute ids, ...) depend only on the transaction and
    the status, so the same notification built again is the same event."""
    name = txn.psp.name
    t_s = t_ms // 1000
    rng = random.Random(f"{name}:{txn.txn_id}:{txn.kind}:{status}:{extra}")
    if name == "stripe":
        body, http = _stripe(txn, status, t_s, rng, extra, sign_s)
    else:
        body, http = _BUILDERS[name](txn, status, t_s, rng)
    module = MODULES[name]
    route = module.routing(body, http)
    value, masked = scrub_pans(body, CONTENT_TYPES[name].endswith("urlencoded"))
    headers = {"provider": name, "content-type": http.get("Content-Type", module.CONTENT_TYPE),
               "received_at": received_at(received_ms or t_ms), "server": route.server}
    if masked:  # pragma: no cover - the simulator only ever sends masked card numbers
        headers["pan_masked"] = "1"
    return Webhook(name, value, http, route.key, headers, txn, status, posted=body, extra=extra,
                   t_ms=t_ms)


def instrument_fingerprint(tenant: str, psp: PspSettings, instrument: Instrument) -> str:
    """What the payment connectors compute for this instrument (see connectors.psp.common)."""
    return fingerprint(tenant, psp.salt(), instrument.normalised)


def verify_webhook(hook: Webhook, psp: Mapping[str, Psp], now_s: float) -> None:
    """Raise SignatureError unless the provider's own verify accepts the webhook (tests)."""
    p = psp[hook.provider]
    MODULES[hook.provider].verify_for(hook.posted or hook.body, hook.http_headers, p.cfg,
                                      p.secret, now_s)

