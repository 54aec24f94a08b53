"""Payments keep every fact: the notifications of one payment merge field by field in the
account stage, in any order; the Nuvei account comes from the signed productId whatever
merchant_unique_id holds. Payloads are the documented formats (tests/test_psp_connectors.py)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.psp import nuvei, stripe
from connectors.psp.common import fingerprint
from pipelines.account_stage import AccountShard, AccountStage
from pipelines.config import Settings
from pipelines.dataflow import _account_rows, _record_rows
from pipelines.store import Store
from pipelines.tables import BALANCE_OPERATIONS, to_row
from schemas.events import BalanceOperation
from schemas.payment_merge import FACT_FIELDS, PaymentMerger, merge_payment
from tests.test_psp_connectors import (
    NOW,
    NUVEI_NOW,
    SECRETS,
    charge,
    env,
    make_settings,
    nuvei_form,
    stripe_event,
)


@pytest.fixture(scope="module")
def cfg() -> Settings:
    return make_settings()


def _stage_run(records: list[BalanceOperation]) -> tuple[AccountShard, list[BalanceOperation]]:
    """The account stage alone (no exposure, commissions or rules): what it would store."""
    stage = AccountStage(None, False, None, None)
    shard = None
    stored: list[BalanceOperation] = []
    for r in records:
        shard, outs = stage(shard, [r])
        stored.extend(p for o in outs for p in o.payments)
    assert shard is not None
    return shard, stored


def _latest(stored: list[BalanceOperation]) -> dict[str, BalanceOperation]:
    """What a latest-version table holds: per op key the highest version, the last written on ties."""
    out: dict[str, BalanceOperation] = {}
    for op in stored:
        have = out.get(op.op_key)
        if have is None or op.version >= have.version:
            out[op.op_key] = op
    return out


def _stripe_ops(cfg: Settings, order: tuple[int, ...]) -> list[BalanceOperation]:
    """payment_intent.succeeded (no billing details) and charge.succeeded (payer, card), received
    at distinct times in the given order."""
    bodies = [orjson.dumps(stripe_event("payment_intent.succeeded", "evt_pi")),
              orjson.dumps(stripe_event("charge.succeeded", "evt_ch", obj=charge()))]
    ops: list[BalanceOperation] = []
    for rank, i in enumerate(order):
        ops.extend(stripe.read_stripe(env("psp.stripe", bodies[i], ts_ms=NOW * 1000 + rank * 1500,
                                          offset=rank + 1), cfg))
    return ops


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_stripe_intent_and_charge_in_either_order_keep_the_payer_and_the_card(
        cfg: Settings, order: tuple[int, int]) -> None:
    shard, stored = _stage_run(_stripe_ops(cfg, order))
    final = _latest(stored)["psp:stripe:pi_3Mtw"]
    # independently from the raw charge: billing name, country and the card's fingerprint
    assert final.payer_name == "Jenny Rosen"
    assert final.country == "DE"
    assert final.instrument_fingerprint == fingerprint("acme", "test-salt", "card::4242:08/2026")
    assert final.status == "approved" and final.amount == Decimal("20.00")
    # the stored rows are the merged ones, written by the account stage, not the raw records
    ops = _stripe_ops(cfg, order)
    assert _record_rows(ops) == []
    from pipelines.account_stage import AccountOutputs
    rows = _account_rows(("s", AccountOutputs(payments=stored)))
    assert [r.table for r in rows] == [BALANCE_OPERATIONS] and len(rows[0].rows) == len(stored)
    assert shard.slots  # the merge is state of the account's slot (snapshots keep it)


def test_the_card_fingerprint_names_the_card(cfg: Settings) -> None:
    # guard the expected value above: the connector's own fingerprint of the charge's card
    (op,) = stripe.read_stripe(env("psp.stripe", orjson.dumps(
        stripe_event("charge.succeeded", "evt_ch", obj=charge()))), cfg)
    assert op.instrument_fingerprint == fingerprint("acme", "test-salt", "card::4242:08/2026")


def _notification(version: int, status: str, **facts: str) -> BalanceOperation:
    return BalanceOperation(
        op_key="psp:stripe:pi_1", tenant="acme", platform="psp", server="ACME-MT5-Live", login=1001,
        op_id="pi_1", kind="deposit", amount=Decimal("20"), currency="USD", status=status,
        provider="stripe", time=datetime(2025, 11, 24, 16, tzinfo=UTC), version=version,
        source="psp.stripe/0/1", **facts)


FACT = st.sampled_from(["", "", "a", "b"])
NOTIFICATION = st.builds(
    lambda v, s, f: _notification(v, s, **dict(zip(FACT_FIELDS, f, strict=True))),
    st.integers(0, 5), st.sampled_from(["pending", "approved", "chargeback"]),
    st.tuples(*[FACT] * len(FACT_FIELDS)))


@settings(max_examples=300, deadline=None)
@given(st.lists(NOTIFICATION, min_size=1, max_size=6), st.randoms(use_true_random=False))
def test_notifications_in_any_order_merge_to_the_same_record(
        notes: list[BalanceOperation], rnd: object) -> None:
    shuffled = list(notes)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    finals = []
    for seq in (notes, shuffled, list(reversed(notes))):
        state = None
        for n in seq:
            state, merged = merge_payment(state, n)
        finals.append(merged)
    assert finals[0] == finals[1] == finals[2]
    final = finals[0]
    # independently: each fact is the value of the highest version that said one (ties: the
    # larger value), the rest comes from the highest version
    for name in FACT_FIELDS:
        said = [(n.version, getattr(n, name)) for n in notes if getattr(n, name)]
        assert getattr(final, name) == (max(said)[1] if said else "")
    assert final.version == max(n.version for n in notes)
    # a later notification never erases a fact
    for n in notes:
        for name in FACT_FIELDS:
            if getattr(n, name):
                assert getattr(final, name)


def test_every_order_of_a_stripe_payment_through_the_stage_stores_one_record(cfg: Settings) -> None:
    bodies = [
        orjson.dumps(stripe_event("payment_intent.created", "evt_1", obj={
            "id": "pi_3Mtw", "object": "payment_intent", "amount": 2000, "currency": "usd",
            "payment_method_types": ["card"],
            "metadata": {"server": "ACME-MT5-Live", "login": "1001", "platform": "mt5"}})),
        orjson.dumps(stripe_event("payment_intent.succeeded", "evt_2")),
        orjson.dumps(stripe_event("charge.succeeded", "evt_3", obj=charge())),
    ]
    finals = set()
    for order in itertools.permutations(range(3)):
        # received in this order, one second apart: versions follow arrival
        ops = [op for rank, i in enumerate(order) for op in stripe.read_stripe(
            env("psp.stripe", bodies[i], ts_ms=NOW * 1000 + rank * 1000, offset=rank + 1), cfg)]
        merger = PaymentMerger()
        merged = [merger(op) for op in ops]
        _, stored = _stage_run(ops)
        assert stored == merged  # the stage and the sequential merger agree
        final = _latest(stored)["psp:stripe:pi_3Mtw"]
        assert final.status == "approved"
        finals.add((final.payer_name, final.instrument_fingerprint, final.country))
    assert finals == {("Jenny Rosen", fingerprint("acme", "test-salt", "card::4242:08/2026"), "DE")}


@pytest.mark.parametrize("unique", ["ORD-2025-778812", "778812", "inv:42", "Other-Srv:9999:x", ""])
def test_nuvei_account_comes_from_the_signed_product_id_whatever_merchant_unique_id_holds(
        cfg: Settings, unique: str) -> None:
    # Nuvei defines merchant_unique_id as the merchant's own order id
    body = nuvei_form(merchant_unique_id=unique, customField1=None)
    nuvei.verify(body, {}, SECRETS["nuvei"], merchant_id="1234567", now=NUVEI_NOW)
    (op,) = nuvei.read_nuvei(env("psp.nuvei", body), cfg)
    assert (op.server, op.login, op.amount) == ("ACME-MT5-Live", 1001, Decimal("49.99"))
    assert nuvei.routing(body, {}).login == "1001"


def test_nuvei_custom_field_still_must_agree(cfg: Settings) -> None:
    from connectors.psp.common import SignatureError

    with pytest.raises(SignatureError):
        nuvei.verify(nuvei_form(customField1="ACME-MT5-Live:1002"), {}, SECRETS["nuvei"],
                     now=NUVEI_NOW)


def test_the_stored_payment_keeps_every_fact_in_clickhouse(cfg: Settings, store: Store) -> None:
    """Real ClickHouse SQL (chdb): the stage's rows, written one batch at a time as the sink does,
    read back through the `balance_operations` view. The charge (with the payer) is received
    before the intent (without): the row written last has the intent's higher version and, merged,
    the charge's facts."""
    _, stored = _stage_run(_stripe_ops(cfg, (1, 0)))
    for op in stored:
        table, row = to_row(op)
        store.insert_rows(table.name, table.columns, [row])
    _, rows = store.query("SELECT op_key, status, payer_name, country, instrument_fingerprint, "
                          "amount FROM balance_operations")
    assert rows == [("psp:stripe:pi_3Mtw", "approved", "Jenny Rosen", "DE",
                     fingerprint("acme", "test-salt", "card::4242:08/2026"), Decimal("20"))]
