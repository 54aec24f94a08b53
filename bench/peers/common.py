"""What every Python leg of bench/bench_peers.py shares: the MT5 deal parse, the output tables and
the Arrow insert. Imported by the floor (project venv) and by the Quix Streams and Pathway apps
(their own venvs), so it needs only orjson, pyarrow and clickhouse-connect[chdb].

The parse reads the real MT5 Web API JSON (every value a string): Action 0/1 trades (13/14
canceled, no position effect), other Actions move money (no position effect); Volume is in
1/10000 lot and is summed as an integer so the net lots of every leg agree exactly. A `delete`
reverses a deal; an `update` re-sends it (the simulator's corrections change Profit and Comment,
not Volume), so it moves no position — a deliberate simplification: the peers keep no per-deal
state, brokerstream does.

    python common.py verify --dsn chdb:///dir --layout peer|brokerstream   # JSON on stdout
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable
from typing import Any

import orjson
import pyarrow as pa

BATCH = 50_000  # rows per deals insert, as the engine's pipeline.batch_rows
VOLUME_SCALE = 10_000  # MT5 Volume: 1/10000 lot
SUFFIX_CHARS = "abcdefghijklmnopqrstuvwxyz"

# one row of the peers' `deals` table, in column order
DEAL_COLUMNS: list[tuple[str, pa.DataType, str]] = [
    ("deal_key", pa.string(), "String"),
    ("server", pa.string(), "LowCardinality(String)"),
    ("login", pa.uint64(), "UInt64"),
    ("deal_id", pa.uint64(), "UInt64"),
    ("action", pa.uint8(), "UInt8"),
    ("entry", pa.uint8(), "UInt8"),
    ("event", pa.string(), "LowCardinality(String)"),
    ("symbol", pa.string(), "LowCardinality(String)"),
    ("platform_symbol", pa.string(), "LowCardinality(String)"),
    ("volume", pa.int64(), "Int64"),
    ("signed_volume", pa.int64(), "Int64"),
    ("contract_size", pa.float64(), "Float64"),
    ("price", pa.float64(), "Float64"),
    ("profit", pa.float64(), "Float64"),
    ("commission", pa.float64(), "Float64"),
    ("time_msc", pa.int64(), "Int64"),
    ("partition", pa.int32(), "Int32"),
    ("offset", pa.int64(), "Int64"),
]
ARROW_SCHEMA = pa.schema([(name, typ) for name, typ, _ in DEAL_COLUMNS])
N_COLS = len(DEAL_COLUMNS)
I_LOGIN, I_SYMBOL, I_SIGNED, I_CONTRACT, I_PRICE = 2, 7, 10, 11, 12

DDL = [
    "CREATE TABLE IF NOT EXISTS deals (" + ", ".join(f"`{n}` {ch}" for n, _, ch in DEAL_COLUMNS)
    + ") ENGINE = MergeTree ORDER BY tuple()",
    # latest net position per account and symbol (seq: the writer's flush number)
    "CREATE TABLE IF NOT EXISTS positions (login UInt64, symbol LowCardinality(String), "
    "net_volume Int64, seq UInt64) ENGINE = ReplacingMergeTree(seq) ORDER BY (login, symbol)",
    # exposure per symbol: net lots, net units, notional at the last price seen
    "CREATE TABLE IF NOT EXISTS exposure (symbol LowCardinality(String), net_volume Int64, "
    "net_units Float64, notional Float64, seq UInt64) ENGINE = ReplacingMergeTree(seq) ORDER BY symbol",
]

Row = tuple[Any, ...]


def peer_args(*extra: tuple[str, dict[str, Any]]) -> argparse.Namespace:
    """The command line every leg takes (--bootstrap, --topic, --dsn), plus its own options."""
    parser = argparse.ArgumentParser()
    for name in ("--bootstrap", "--topic", "--dsn"):
        parser.add_argument(name, required=True)
    for name, options in extra:
        parser.add_argument(name, **options)
    return parser.parse_args()


def canonical_symbol(platform_symbol: str) -> str:
    """EURUSD.r / EURUSDm -> EURUSD: the generic decoration rules (brokerstream has a symbol book)."""
    return platform_symbol.split(".", 1)[0].rstrip(SUFFIX_CHARS)


def parse_deal(value: bytes | str, server: str, event: str, partition: int, offset: int) -> Row:
    """One `mt5.deals` message -> a `deals` row (DEAL_COLUMNS order)."""
    doc = orjson.loads(value)
    action = int(doc["Action"])
    trade = action in (0, 1, 13, 14)
    volume = int(doc["Volume"]) if trade else 0
    signed = volume if action == 0 else -volume if action == 1 else 0
    if event == "delete":
        signed = -signed
    elif event == "update":
        signed = 0
    platform_symbol = doc.get("Symbol", "")
    deal_id = int(doc["Deal"])
    return (
        f"mt5:{server}:{deal_id}", server, int(doc["Login"]), deal_id, action, int(doc.get("Entry", 0)),
        event, canonical_symbol(platform_symbol), platform_symbol, volume, signed,
        float(doc.get("ContractSize") or 0), float(doc.get("Price") or 0), float(doc.get("Profit") or 0),
        float(doc.get("Commission") or 0), int(doc["TimeMsc"]), partition, offset,
    )


def header(headers: Iterable[tuple[str, Any]] | None, name: str) -> str:
    for k, v in headers or ():
        if k == name:
            return v.decode() if isinstance(v, bytes) else str(v)
    return ""


def client(dsn: str) -> Any:
    import clickhouse_connect

    ch = clickhouse_connect.get_client(dsn=dsn)
    for stmt in DDL:
        ch.command(stmt)
    return ch


def insert_deals(ch: Any, rows: list[Row]) -> None:
    """Rows -> one Arrow table -> one insert (column-wise transpose, no per-cell Python objects kept)."""
    if not rows:
        return
    cols = list(zip(*rows, strict=True))
    table = pa.Table.from_arrays([pa.array(c, type=t) for c, (_, t, _) in zip(cols, DEAL_COLUMNS,
                                                                             strict=True)],
                                 schema=ARROW_SCHEMA)
    ch.insert_arrow("deals", table)


class Exposure:
    """Per-symbol net volume / units and last price, fed with deal rows."""

    def __init__(self) -> None:
        self.net: dict[str, int] = {}
        self.units: dict[str, float] = {}
        self.price: dict[str, float] = {}

    def add(self, row: Row) -> None:
        signed = row[I_SIGNED]
        if not signed:
            return
        sym = row[I_SYMBOL]
        self.net[sym] = self.net.get(sym, 0) + signed
        self.units[sym] = self.units.get(sym, 0.0) + signed / VOLUME_SCALE * row[I_CONTRACT]
        self.price[sym] = row[I_PRICE]

    def write(self, ch: Any, seq: int) -> None:
        rows = [[s, v, self.units[s], self.units[s] * self.price[s], seq] for s, v in self.net.items()]
        if rows:
            ch.insert("exposure", rows, column_names=["symbol", "net_volume", "net_units", "notional", "seq"])


def write_positions(ch: Any, positions: dict[tuple[int, str], int], seq: int) -> None:
    rows = [[login, sym, net, seq] for (login, sym), net in positions.items()]
    if rows:
        ch.insert("positions", rows, column_names=["login", "symbol", "net_volume", "seq"])


def ready() -> None:
    """Tell the bench that start-up (imports, ClickHouse, tables) is over: the clock starts here."""
    print(f"READY {time.time():.6f}", flush=True)


def done(n: int) -> None:
    print(f"DONE {time.time():.6f} {n}", flush=True)


# ---- verification (run in the project venv against a leg's ClickHouse directory) -------------

def verify(dsn: str, layout: str) -> dict[str, Any]:
    import clickhouse_connect

    ch = clickhouse_connect.get_client(dsn=dsn)
    if layout == "peer":
        rows = ch.query("SELECT count(), uniqExact(partition, offset), uniqExact(deal_key) FROM deals"
                        ).result_rows[0]
        net = ch.query("SELECT symbol, argMax(net_volume, seq) / 10000 FROM exposure GROUP BY symbol"
                       ).result_rows
        pos = ch.query("SELECT count(), countIf(v != 0) FROM (SELECT argMax(net_volume, seq) AS v "
                       "FROM positions GROUP BY login, symbol)").result_rows[0]
        return {"rows": rows[0], "messages": rows[1], "deal_keys": rows[2],
                "net": {s: float(v) for s, v in net}, "positions": pos[1]}
    db = "brokerstream"
    # *_store tables keep every version (add/update/delete): one row per message read, unless a
    # background merge of the ReplacingMergeTree collapsed versions already — `messages` counts
    # distinct Kafka offsets (`source`) that survive, `deal_keys` the distinct deals.
    q = (f"SELECT count(), uniqExact(source), uniqExact(k) FROM ("
         f"SELECT deal_key AS k, source FROM {db}.deals_store UNION ALL "
         f"SELECT op_key AS k, source FROM {db}.balance_operations_store)")
    rows = ch.query(q).result_rows[0]
    dead = ch.query(f"SELECT count() FROM {db}.dead_letters_store").result_rows[0][0]
    net = ch.query(f"SELECT symbol, sum(net_lots) FROM {db}.exposure GROUP BY symbol").result_rows
    deals_net = ch.query(f"SELECT symbol, sum(signed_lots) FROM {db}.deals GROUP BY symbol").result_rows
    pos = ch.query(f"SELECT count() FROM {db}.positions").result_rows[0][0]
    return {"rows": rows[0], "messages": rows[1], "deal_keys": rows[2], "dead_letters": dead,
            "net": {s: float(v) for s, v in net}, "deals_net": {s: float(v) for s, v in deals_net},
            "positions": pos}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["verify"])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--layout", choices=["peer", "brokerstream"], default="peer")
    args = parser.parse_args()
    json.dump(verify(args.dsn, args.layout), sys.stdout)


if __name__ == "__main__":
    main()
