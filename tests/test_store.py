"""The data contract on real ClickHouse SQL (embedded chdb): each fact once, latest version."""

from __future__ import annotations

from decimal import Decimal

from connectors.mt5 import read_mt5_deal
from connectors.routing import Router
from pipelines.config import Settings
from pipelines.store import Store, migrations
from pipelines.tables import COLUMNS_BY_TABLE, table_batches, to_row
from tests.helpers import T0, envelope, mt5_deal


def _write(store: Store, records: list[object]) -> None:
    for batch in table_batches(map(to_row, records)):
        store.insert_rows(batch.table.name, batch.table.columns, batch.rows)


def test_migrations_are_idempotent(store: Store) -> None:
    assert store.migrate() == []  # the fixture already applied them
    versions = [v for v, _, _ in migrations()]
    assert store.scalar("SELECT count() FROM schema_migrations FINAL") == len(versions)
    for table in ("deals", "balance_operations", "dead_letters"):
        store.query(f"SELECT * FROM {table} LIMIT 1")


def test_update_shows_latest_values_once_and_delete_removes(store: Store, settings: Settings) -> None:
    router = Router(settings)
    add = read_mt5_deal(envelope(mt5_deal(Deal=1, Price="1.08500")), router)
    other = read_mt5_deal(envelope(mt5_deal(Deal=2)), router)
    upd = read_mt5_deal(envelope(mt5_deal(Deal=1, Price="1.09000"), event="update", ts=T0 + 5), router)
    gone = read_mt5_deal(envelope(mt5_deal(Deal=2), event="delete", ts=T0 + 9), router)
    _write(store, [add, other])
    _write(store, [upd, add])  # the add redelivered after its update: must not win
    _write(store, [gone, other])
    _, rows = store.query("SELECT deal_id, price FROM deals ORDER BY deal_id")
    assert rows == [("1", Decimal("1.09"))]


def test_redelivered_balance_operation_counts_once(store: Store, settings: Settings) -> None:
    op = read_mt5_deal(envelope(mt5_deal(Action=2, Profit="500.00")), Router(settings))
    for _ in range(3):
        _write(store, [op])
    assert store.scalar("SELECT count() FROM balance_operations") == 1
    assert store.scalar("SELECT sum(amount) FROM balance_operations") == Decimal("500")


def test_dead_letter_keeps_non_utf8_bytes_exactly(store: Store, settings: Settings) -> None:
    from connectors.registry import Normaliser

    raw = b"\x08\xee\xff\x00garbage\x9c"
    [dl] = Normaliser(Router(settings))(envelope(raw, topic="mt5.deals"))
    _write(store, [dl])
    assert store.scalar("SELECT hex(raw) FROM dead_letters") == raw.hex().upper()


def test_every_table_the_engine_writes_has_an_arrow_schema(store: Store) -> None:
    for table, columns in COLUMNS_BY_TABLE.items():
        assert len(store.arrow_schema(table, columns)) == len(columns), table
